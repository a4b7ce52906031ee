"""RF sampling strategies: published V1 tables, uniform controls and interpolations between them.

Every strategy draws the same base random numbers in a fixed order from
`np.random.default_rng(seed)` (PCG64), then maps them through per-property quantile functions:

    u_ori   U(0,1)   orientation
    z_sf    N(0,1)   SF        } Gaussian copula: z_nx' = r*z_sf + sqrt(1-r^2)*z_nx,
    z_nx    N(0,1)   nx        } u = Phi(z) (r = 0 for uncoupled units)
    u_ny    U(0,1)   ny (conditional quantile given the nx bin)
    z_ny    N(0,1)   ny of unif2/unif3 (log10 ny ~ N(log10 nx, 0.22), clipped)
    phase   U(0,1) * 360
    color   integers in {0, 1, 2}
    u_mix   U(0,1), 4 x n   mixture selections (ori, sf, nxny, coupling)
    color_q integers in {0, 1, 2}   quadrature colour, drawn last and only for presets whose
                                    complex cells read a second colour (vonenet2020)

A property's value is lerp(Q_unif(u), Q_bio(u), w) in its sampling space (degrees, log2 SF,
log10 nx/ny) with w = alpha (quantile mode) or w = [u_mix < alpha] (mixture mode). So `unif1` is
w = 0, `biological` is w = 1, and `interpolated` moves between them; results depend only on the
seed and numpy's PCG64 stream, never on torch or global random state.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from v1sweep.registry import Registry
from v1sweep.rf.catalog import MODES, SF_TRUNCATIONS, Option, check_options
from v1sweep.rf.custom import load_custom
from v1sweep.rf.empirical import DEFAULT_PRESET, N_COLORS, Histogram, Preset, get_preset
from v1sweep.rf.params import RFParams

UNIF2_NY_SIGMA = 0.22  # log10 ny ~ Normal(log10 nx, 0.22) in the published UNIF2/UNIF3 code
ALPHAS = ("alpha_ori", "alpha_sf", "alpha_nxny", "alpha_coupling")
# the histogram file the `custom` strategy's example (tests, docs) reads
EXAMPLE_CUSTOM = Path(__file__).resolve().parents[2] / "examples" / "custom_rf.yaml"


@dataclass(frozen=True)
class Recipe:
    """How to map the base draws: weight of the biological side per property, couplings."""

    tables: Preset
    alpha_ori: float = 1.0
    alpha_sf: float = 1.0
    alpha_nxny: float = 1.0
    alpha_coupling: float = 1.0
    mode: str = "mixture"
    uniform_ny: str = "independent"  # or "gaussian" (unif2/unif3: ny around nx)


# A strategy: (tables of the preset, validated options) -> Recipe, registered with its metadata
# (see `v1sweep.rf.catalog`: description, options, uniform_control, example).
RecipeFn = Callable[[Preset, dict[str, Any]], Recipe]
STRATEGIES: Registry[RecipeFn] = Registry("RF sampling strategy", required=("description",))


@STRATEGIES.register("biological", description="published V1 tables (De Valois 1982a/b, Ringach 2002), "
                     "sf-nx copula 0.75", options=(), uniform_control=None, example={})
def _biological(tables: Preset, opts: dict[str, Any]) -> Recipe:
    return Recipe(tables)


@STRATEGIES.register("unif1", description="every property independent and uniform (log-uniform) over the "
                     "biological ranges", options=(), uniform_control=1, example={})
def _unif1(tables: Preset, opts: dict[str, Any]) -> Recipe:
    return Recipe(tables, 0.0, 0.0, 0.0, 0.0)


STRATEGIES.add("uniform", _unif1, description="alias of unif1", options=(), uniform_control=0, example={})


@STRATEGIES.register("unif2", description="unif1 + nx-ny coupling: log10 ny ~ Normal(log10 nx, 0.22), "
                     "clipped to the range", options=(), uniform_control=2, example={})
def _unif2(tables: Preset, opts: dict[str, Any]) -> Recipe:
    return Recipe(tables, 0.0, 0.0, 0.0, 0.0, uniform_ny="gaussian")


@STRATEGIES.register("unif3", description="unif2 + sf-nx Gaussian copula (correlation of the preset, 0.75)",
                     options=(), uniform_control=3, example={})
def _unif3(tables: Preset, opts: dict[str, Any]) -> Recipe:
    return Recipe(tables, 0.0, 0.0, 0.0, 1.0, uniform_ny="gaussian")


def _alpha_option(name: str, doc: str) -> Option:
    return Option(name, float, doc, None, range=(0, 1), config_key=name)


@STRATEGIES.register(
    "interpolated", description="unif1 (alpha 0) -> biological (alpha 1); per-property alphas; mixture | quantile",
    options=(_alpha_option("alpha", "uniform (0) -> biological (1); the default of every per-property alpha"),
             *(_alpha_option(name, f"{name[6:]}: uniform (0) -> biological (1)") for name in ALPHAS),
             Option("mode", str, "mixture: a share alpha of units biological | quantile: every unit in between",
                    "mixture", choices=MODES, config_key="mode")),
    uniform_control=None, example={"alpha": 0.5})
def _interpolated(tables: Preset, opts: dict[str, Any]) -> Recipe:
    given: dict[str, Any] = {name: opts[name] if opts.get(name) is not None else opts.get("alpha") for name in ALPHAS}
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise ValueError(f"strategy 'interpolated' needs rf option 'alpha' (the default for every property) "
                         f"or all of {', '.join(ALPHAS)}; missing: {', '.join(missing)}")
    a = {name: float(given[name]) for name in ALPHAS}  # checked against the schema (`recipe_for`)
    return Recipe(tables, alpha_ori=a["alpha_ori"], alpha_sf=a["alpha_sf"], alpha_nxny=a["alpha_nxny"],
                  alpha_coupling=a["alpha_coupling"], mode=opts.get("mode") or "mixture")


@STRATEGIES.register(
    "custom", description="biological sampling from the histograms in the file given by option 'path'",
    options=(Option("path", str, "a YAML or CSV histogram file", required=True, config_key="custom_path"),),
    uniform_control=None, example={"path": str(EXAMPLE_CUSTOM)})
def _custom(tables: Preset, opts: dict[str, Any]) -> Recipe:
    return Recipe(load_custom(opts["path"], tables))




def truncate_sf(hist: Histogram, sf_max: float, cell: str, truncation: str = "drop") -> Histogram:
    """The SF histogram limited to `sf_max` cpd.

    ``drop`` (default, the published VOneNet `generate_gabor_param`): keep the bin edges <= sf_max,
    i.e. drop every bin whose upper edge exceeds it; the support ends at the last such edge.
    ``cut``: the histogram conditioned on SF <= sf_max: the straddling bin is cut at sf_max and
    keeps the log2-proportional share of its count (the density is log-uniform inside bins).
    """
    if truncation not in SF_TRUNCATIONS:
        raise ValueError(f"rf option 'sf_truncation' must be one of {', '.join(SF_TRUNCATIONS)}, got {truncation!r}")
    edges = np.asarray(hist.edges, dtype=np.float64)
    if sf_max >= edges[-1]:
        return hist
    if sf_max <= edges[0]:
        raise ValueError(f"rf option 'sf_max' ({sf_max} cpd) is at or below the lowest SF bin edge "
                         f"{edges[0]} cpd of the {cell} table")
    counts = np.asarray(hist.counts, dtype=np.float64)
    if truncation == "drop":
        keep = int(np.searchsorted(edges, sf_max, side="right"))  # edges[:keep] <= sf_max
        if keep < 2:
            raise ValueError(f"rf option 'sf_max' ({sf_max} cpd) is below the upper edge {edges[1]} cpd of "
                             f"the lowest {cell} SF bin: sf_truncation 'drop' keeps no bin (use 'cut')")
        new_edges, counts = edges[:keep], counts[:keep - 1].copy()
    else:
        keep = int(np.searchsorted(edges, sf_max, side="left"))  # edges[:keep] < sf_max
        new_edges, counts = np.append(edges[:keep], sf_max), counts[:keep].copy()
        lo, hi = edges[keep - 1], edges[keep]
        counts[-1] *= (math.log2(sf_max) - math.log2(lo)) / (math.log2(hi) - math.log2(lo))
    if counts.sum() <= 0:
        raise ValueError(f"rf option 'sf_max' ({sf_max} cpd) leaves no {cell} units: the {cell} SF "
                         f"table has no counts below it")
    return Histogram(tuple(float(v) for v in new_edges), tuple(float(v) for v in counts))


def quantile_rows(u: np.ndarray, edges_t: np.ndarray, probs: np.ndarray, rows: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Inverse CDF of histograms that are uniform inside bins (in the space of `edges_t`).

    `probs` is (R, B); unit k uses row `rows[k]`. Returns the values and their bin indices; zero
    bins are never chosen, rows without mass are treated as uniform.
    """
    p = np.asarray(probs, dtype=np.float64)
    p = np.where(p.sum(1, keepdims=True) > 0, p, 1.0)
    p = p / p.sum(1, keepdims=True)
    cdf = np.concatenate([np.zeros((len(p), 1)), np.cumsum(p, axis=1)], axis=1)
    cdf[:, -1] = 1.0
    last = p.shape[1] - 1 - np.argmax(p[:, ::-1] > 0, axis=1)
    c = cdf[rows]
    idx = np.minimum((c[:, 1:-1] <= u[:, None]).sum(1), last[rows])
    lo = c[np.arange(len(u)), idx]
    t = np.clip((u - lo) / p[rows, idx], 0.0, 1.0)
    return edges_t[idx] + t * (edges_t[idx + 1] - edges_t[idx]), idx


def _quantile(u: np.ndarray, edges_t: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return quantile_rows(u, edges_t, np.asarray(probs)[None, :], np.zeros(len(u), dtype=np.int64))


def _weight(alpha: float, u_mix: np.ndarray, mode: str) -> np.ndarray | float:
    return (u_mix < alpha).astype(np.float64) if mode == "mixture" else alpha


def _lerp(unif: np.ndarray, bio: np.ndarray, w: np.ndarray | float) -> np.ndarray:
    return (1.0 - w) * unif + w * bio


def draw(recipe: Recipe, n_simple: int, n_complex: int, seed: int) -> RFParams:
    """Draw `n_simple + n_complex` units following `recipe` (see the module docstring)."""
    from scipy.special import ndtr  # here, not at import: the catalogue loads this module for names only

    t, mode = recipe.tables, recipe.mode
    n = n_simple + n_complex
    cx = np.zeros(n, dtype=bool)
    cx[n_simple:] = True
    rng = np.random.default_rng(seed)
    u_ori = rng.random(n)
    z_sf = rng.standard_normal(n)
    z_nx = rng.standard_normal(n)
    u_ny = rng.random(n)
    z_ny = rng.standard_normal(n)
    phase = np.minimum(rng.random(n) * 360.0, np.nextafter(360.0, 0.0))
    color = rng.integers(0, N_COLORS, size=n, dtype=np.int64)
    u_mix = rng.random((4, n))
    color_q = None
    if t.quadrature_color == "independent":  # drawn after every other property: their draws stay the same
        color_q = rng.integers(0, N_COLORS, size=n, dtype=np.int64)

    # orientation: uniform on [0, 180) vs the De Valois bins (uniform inside), then wrapped
    e = np.asarray(t.orientation.edges, dtype=np.float64)
    ori_bio, _ = _quantile(u_ori, e, t.orientation.probs)
    theta = np.mod(_lerp(180.0 * u_ori, ori_bio, _weight(recipe.alpha_ori, u_mix[0], mode)), 180.0)
    theta = np.where(theta >= 180.0, 0.0, theta)

    # sf-nx Gaussian copula: coupled units share correlation rho
    if mode == "mixture":
        rho = np.where(u_mix[3] < recipe.alpha_coupling, t.sf_nx_rho, 0.0)
    else:
        rho = np.full(n, recipe.alpha_coupling * t.sf_nx_rho)
    u_sf = ndtr(z_sf)
    u_nx = ndtr(rho * z_sf + np.sqrt(1.0 - rho ** 2) * z_nx)

    # SF per cell type, log2-uniform inside bins
    w_sf = _weight(recipe.alpha_sf, u_mix[1], mode)
    log_sf = np.empty(n)
    for is_complex in (False, True):
        sel = cx == is_complex
        if not sel.any():
            continue
        h = t.sf(is_complex)
        e2 = np.log2(np.asarray(h.edges, dtype=np.float64))
        bio, _ = _quantile(u_sf[sel], e2, h.probs)
        unif = e2[0] + u_sf[sel] * (e2[-1] - e2[0])
        log_sf[sel] = _lerp(unif, bio, w_sf[sel] if isinstance(w_sf, np.ndarray) else w_sf)
    sf = np.exp2(log_sf)

    # nx from the row marginal, ny from that row's conditional, log10-uniform inside bins
    j = t.nxny
    ex, ey = np.log10(np.asarray(j.nx_edges, float)), np.log10(np.asarray(j.ny_edges, float))
    nx_bio, row = _quantile(u_nx, ex, j.probs.sum(1))
    ny_bio, _ = quantile_rows(u_ny, ey, j.probs, row)
    nx_unif = ex[0] + u_nx * (ex[-1] - ex[0])
    if recipe.uniform_ny == "gaussian":
        ny_unif = np.clip(nx_unif + UNIF2_NY_SIGMA * z_ny, ey[0], ey[-1])
    else:
        ny_unif = ey[0] + u_ny * (ey[-1] - ey[0])
    w_n = _weight(recipe.alpha_nxny, u_mix[2], mode)
    nx = 10.0 ** _lerp(nx_unif, nx_bio, w_n)
    ny = 10.0 ** _lerp(ny_unif, ny_bio, w_n)
    return RFParams(sf=sf, theta=theta, phase=phase, nx=nx, ny=ny, color=color, complex=cx,
                    color_quadrature=color_q)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"rf option {name!r} must be an integer >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"rf option {name!r} must be >= 0, got {value}")
    return int(value)


def get_strategy(strategy: str) -> RecipeFn:
    try:
        return STRATEGIES.get(strategy)
    except ValueError as exc:
        raise ValueError(f"rf option 'strategy': {exc}") from None


def recipe_for(strategy: str, **options: Any) -> Recipe:
    """Validate `options` for `strategy` (its schema in `v1sweep.rf.catalog`) and resolve its tables
    (preset, custom file, sf_max)."""
    recipe_fn = get_strategy(strategy)
    check_options(strategy, options)
    preset = get_preset(options.get("preset") or DEFAULT_PRESET)
    recipe = recipe_fn(preset, options)
    mode = options.get("sf_truncation") or "drop"
    sf_max = options.get("sf_max")
    if sf_max is not None:
        tables = recipe.tables
        tables = dataclasses.replace(
            tables, sf_simple=truncate_sf(tables.sf_simple, float(sf_max), "simple", mode),
            sf_complex=truncate_sf(tables.sf_complex, float(sf_max), "complex", mode))
        recipe = dataclasses.replace(recipe, tables=tables)
    return recipe


def sample(strategy: str, n_simple: int, n_complex: int, seed: int, **options: Any) -> RFParams:
    """Sample RF parameters of `n_simple` simple then `n_complex` complex units.

    Options: `preset`, `sf_max`, `sf_truncation` ("drop" | "cut", see `truncate_sf`) (all
    strategies); `alpha`, `alpha_ori`, `alpha_sf`, `alpha_nxny`, `alpha_coupling`, `mode`
    (interpolated); `path` (custom). Same seed -> identical arrays.
    """
    n_simple, n_complex = _count(n_simple, "n_simple"), _count(n_complex, "n_complex")
    if n_simple + n_complex == 0:
        raise ValueError("rf options 'n_simple' and 'n_complex' are both 0; the V1 block needs >= 1 unit")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"rf option 'seed' must be an integer >= 0, got {seed!r}")
    return draw(recipe_for(strategy, **options), n_simple, n_complex, int(seed))


def list_strategies() -> list[str]:
    """Names of the registered sampling strategies."""
    return STRATEGIES.names()


def describe_strategies() -> dict[str, str]:
    """Name -> one-line description, for help texts."""
    return {name: str(meta["description"]) for name, meta in STRATEGIES.catalogue().items()}
