"""Similarity of sampled RF parameters to the published V1 tables (cheap: runs in every trial).

Per property two numbers:
- `rf_similarity/<prop>`: Brain-Score-style 1 - KS/KS_max on the data's bins (1 = same histogram,
  0 = as far as the farthest point mass). Deterministic given the RF parameters.
- `rf_wasserstein/<prop>`: Wasserstein-1 distance in octaves (log2) between the model's values and
  the table read as log-uniform inside bins; orientation in degrees on the 180-degree circle
  (0 and 179 degrees are 1 degree apart).
Properties: orientation, sf_simple, sf_complex, nx, ny, nxny (joint), sf_nx (coupling). Properties
whose units are absent (e.g. no complex units) are left out.

`rf_similarity` is an explicitly weighted mean over four property *groups*, each counted once
(`GROUPS`): orientation; spatial frequency (sf_simple and sf_complex weighted by their unit
counts); envelope shape (the joint nx-ny score only: nx and ny alone are its marginals and are
reported but carry weight 0, so the shape is not counted three times); and the sf-nx coupling.

A KS score of n units drawn from the data itself is below 1 and grows with n (KS sampling noise),
so raw scores are not comparable across unit counts. `rf_similarity_ceiling(/<prop>)` is the mean
score of `CEILING_DRAWS` same-size samples from the data (the `biological` sampler of the same
preset), and `rf_normsim(/<prop>)` = score / ceiling: 1 = as V1-like as the data itself at
this unit count (it can exceed 1 by chance). `effective_sf` measures each filter's spatial
frequency from its kernel, for the `rf_similarity_eff*` metrics the trial logs.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from v1sweep.rf.empirical import DEFAULT_PRESET, Preset, get_preset
from v1sweep.rf.params import RFParams

MIN_UNITS_CORR = 3  # a cell type needs this many units to enter the sf-nx rank correlation


def _hist(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    v = np.clip(np.asarray(values, dtype=np.float64), edges[0], edges[-1])
    return np.histogram(v, bins=edges)[0].astype(np.float64)


def ks_similarity(values: Any, edges: Any, counts: Any) -> float:
    """1 - KS/KS_max of `values` against the histogram (`edges`, `counts`), on the data's bins.

    Values are clipped to the outer edges. KS is the largest gap between the cumulative
    histograms; KS_max the KS between the data and a point mass on its first or last bin,
    whichever is larger (Marques et al. 2021, Brain-Score V1). Result in [0, 1].
    """
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if len(e) != len(c) + 1:
        raise ValueError(f"ks_similarity: {len(c)} counts but {len(e) - 1} bins")
    h = _hist(values, e)
    if h.sum() == 0:
        raise ValueError("ks_similarity: no values")
    fm, fd = np.cumsum(h) / h.sum(), np.cumsum(c) / c.sum()
    ks = float(np.max(np.abs(fm - fd)))
    ks_max = float(max(1.0 - fd[0], fd[:-1].max(initial=0.0)))
    return 1.0 if ks_max == 0 else 1.0 - ks / ks_max


def _integral_abs_linear(ga: np.ndarray, gb: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Integral of |g| over intervals where g is linear from ga to gb."""
    same = ga * gb >= 0
    denom = np.where(same, 1.0, np.abs(ga) + np.abs(gb))
    return width * np.where(same, np.abs(ga + gb) / 2, (ga ** 2 + gb ** 2) / (2 * denom))


def wasserstein_log(values: Any, edges: Any, counts: Any, base: float | None = 2.0) -> float:
    """Exact Wasserstein-1 distance between the values and the histogram, in log-`base` space.

    The histogram is uniform inside bins in that space (log-uniform in linear units); `base=None`
    measures in linear units (orientation). W1 = integral of |F_model - F_data|.
    """
    def tr(x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x if base is None else np.log(x) / math.log(base)

    x, e = np.sort(tr(values)), tr(edges)
    c = np.asarray(counts, dtype=np.float64)
    if len(e) != len(c) + 1:
        raise ValueError(f"wasserstein_log: {len(c)} counts but {len(e) - 1} bins")
    if len(x) == 0:
        raise ValueError("wasserstein_log: no values")
    cdf = np.concatenate([[0.0], np.cumsum(c) / c.sum()])
    pts = np.sort(np.concatenate([x, e]))
    a, b = pts[:-1], pts[1:]
    fm = np.searchsorted(x, a, side="right") / len(x)
    ga = np.interp(a, e, cdf, left=0.0, right=1.0) - fm
    gb = np.interp(b, e, cdf, left=0.0, right=1.0) - fm
    return float(_integral_abs_linear(ga, gb, b - a).sum())


def joint_ks_similarity(x: Any, y: Any, x_edges: Any, y_edges: Any, counts: Any) -> float:
    """2-D analogue of `ks_similarity`: 1 - KS/KS_max with KS the largest gap between the
    lower-left cumulative histograms F(i, j) = P(X in bins <= i, Y in bins <= j), and KS_max that
    of the farthest point mass on one of the four corner cells. Result in [0, 1]."""
    ex, ey = np.asarray(x_edges, dtype=np.float64), np.asarray(y_edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    xv = np.clip(np.asarray(x, dtype=np.float64), ex[0], ex[-1])
    yv = np.clip(np.asarray(y, dtype=np.float64), ey[0], ey[-1])
    h = np.histogram2d(xv, yv, bins=[ex, ey])[0]
    if h.sum() == 0:
        raise ValueError("joint_ks_similarity: no values")

    def cum(p: np.ndarray) -> np.ndarray:
        return np.cumsum(np.cumsum(p / p.sum(), axis=0), axis=1)

    fd = cum(c)
    ks = float(np.max(np.abs(cum(h) - fd)))
    ks_max = 0.0
    for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        point = np.zeros_like(c)
        point[i, j] = 1.0
        ks_max = max(ks_max, float(np.max(np.abs(cum(point) - fd))))
    return 1.0 if ks_max == 0 else 1.0 - ks / ks_max


def joint_wasserstein_log(x: Any, y: Any, x_edges: Any, y_edges: Any, counts: Any, base: float = 2.0) -> float:
    """Wasserstein-1 between the model's and the data's 2-D histograms on the data's grid, cells
    at their centres in log-`base` space, Euclidean ground distance (a small linear program)."""
    from scipy.optimize import linprog

    ex, ey = np.asarray(x_edges, dtype=np.float64), np.asarray(y_edges, dtype=np.float64)
    xv = np.clip(np.asarray(x, dtype=np.float64), ex[0], ex[-1])
    yv = np.clip(np.asarray(y, dtype=np.float64), ey[0], ey[-1])
    pm = np.histogram2d(xv, yv, bins=[ex, ey])[0].ravel()
    pd = np.asarray(counts, dtype=np.float64).ravel()
    pm, pd = pm / pm.sum(), pd / pd.sum()
    lx, ly = np.log(ex) / math.log(base), np.log(ey) / math.log(base)
    cx, cy = np.meshgrid((lx[:-1] + lx[1:]) / 2, (ly[:-1] + ly[1:]) / 2, indexing="ij")
    centres = np.stack([cx.ravel(), cy.ravel()], axis=1)
    src, dst = np.flatnonzero(pm > 0), np.flatnonzero(pd > 0)
    cost = np.linalg.norm(centres[src][:, None] - centres[dst][None], axis=2)
    ns, nd = len(src), len(dst)
    a_eq = np.zeros((ns + nd, ns * nd))
    for k in range(ns):
        a_eq[k, k * nd:(k + 1) * nd] = 1.0
    for k in range(nd):
        a_eq[ns + k, k::nd] = 1.0
    res = linprog(cost.ravel(), A_eq=a_eq[:-1], b_eq=np.concatenate([pm[src], pd[dst]])[:-1],
                  bounds=(0, None), method="highs")
    if not res.success:  # pragma: no cover - a transport problem with equal masses is always feasible
        raise RuntimeError(f"joint_wasserstein_log: {res.message}")
    return float(res.fun)


def expected_spearman(rho: float) -> float:
    """Spearman correlation of a Gaussian copula with Pearson correlation `rho`."""
    return 6.0 / math.pi * math.asin(rho / 2.0)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def sf_nx_spearman(rf: RFParams) -> float:
    """Spearman r of (sf, nx) within each cell type, averaged weighted by unit count (the cell
    types have different SF tables, so pooling them would dilute the rank correlation)."""
    rs, ws = [], []
    for sel in (~rf.complex, rf.complex):
        if sel.sum() >= MIN_UNITS_CORR:
            r = _spearman(rf.sf[sel], rf.nx[sel])
            if not math.isnan(r):
                rs.append(r)
                ws.append(float(sel.sum()))
    return float(np.average(rs, weights=ws)) if rs else float("nan")


def coupling_similarity(r_model: float, r_data: float) -> float:
    """1 - |r_model - r_data| / (1 + |r_data|): 1 when equal, 0 at the farthest possible r (-1 or 1)."""
    return 1.0 - abs(r_model - r_data) / (1.0 + abs(r_data))


# Property groups of the aggregate score and their weights (each group counts once).
GROUPS: dict[str, tuple[str, ...]] = {"orientation": ("orientation",), "sf": ("sf_simple", "sf_complex"),
                                      "envelope": ("nxny",), "coupling": ("sf_nx",)}
GROUP_WEIGHTS: dict[str, float] = {"orientation": 1.0, "sf": 1.0, "envelope": 1.0, "coupling": 1.0}
CEILING_DRAWS = 20
ORIENTATION_PERIOD = 180.0


def circular_wasserstein(values: Any, edges: Any, counts: Any, period: float = ORIENTATION_PERIOD) -> float:
    """Wasserstein-1 on the circle of length `period` between the values and the histogram (uniform
    inside bins; bins cover one period). W1 = min_c integral |F_model - F_data - c| over one period
    (the circle's transport cost); c is the median of that difference under arc length."""
    e = np.asarray(edges, dtype=np.float64)
    lo = e[0]
    if not np.isclose(e[-1] - lo, period):
        raise ValueError(f"circular_wasserstein: bins span {e[-1] - lo}, not one period {period}")
    x = np.sort(lo + np.mod(np.asarray(values, dtype=np.float64) - lo, period))
    c = np.asarray(counts, dtype=np.float64)
    if len(x) == 0:
        raise ValueError("circular_wasserstein: no values")
    cdf = np.concatenate([[0.0], np.cumsum(c) / c.sum()])
    pts = np.unique(np.concatenate([x, e]))
    a, b = pts[:-1], pts[1:]
    fm = np.searchsorted(x, a, side="right") / len(x)
    ga, gb = np.interp(a, e, cdf) - fm, np.interp(b, e, cdf) - fm
    width = b - a
    lo_c, hi_c = float(min(ga.min(), gb.min())), float(max(ga.max(), gb.max()))
    half = width.sum() / 2
    for _ in range(80):  # bisection for the arc-length median of the piecewise-linear difference
        mid = (lo_c + hi_c) / 2
        span = gb - ga
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(np.abs(span) > 0, np.clip((mid - ga) / span, 0, 1), (ga <= mid).astype(float))
        below = np.where(span >= 0, frac, 1 - frac)
        if (width * below).sum() < half:
            lo_c = mid
        else:
            hi_c = mid
    mid = (lo_c + hi_c) / 2
    return float(_integral_abs_linear(ga - mid, gb - mid, width).sum())


def _scores(rf: RFParams, p: Preset) -> dict[str, float]:
    """The per-property KS scores (and the model's sf-nx rank correlation)."""
    out: dict[str, float] = {}
    o = p.orientation
    theta = o.edges[0] + np.mod(rf.theta - o.edges[0], ORIENTATION_PERIOD)  # wrap onto the De Valois bins
    out["orientation"] = ks_similarity(theta, o.edges, o.counts)
    for name, sel in (("sf_simple", ~rf.complex), ("sf_complex", rf.complex)):
        if sel.any():
            h = getattr(p, name)
            out[name] = ks_similarity(rf.sf[sel], h.edges, h.counts)
    j = p.nxny
    out["nx"] = ks_similarity(rf.nx, j.nx.edges, j.nx.counts)
    out["ny"] = ks_similarity(rf.ny, j.ny.edges, j.ny.counts)
    out["nxny"] = joint_ks_similarity(rf.nx, rf.ny, j.nx_edges, j.ny_edges, j.counts)
    r_model = sf_nx_spearman(rf)
    if not math.isnan(r_model):
        out["sf_nx"] = coupling_similarity(r_model, expected_spearman(p.sf_nx_rho))
        out["_spearman"] = r_model
    return out


def aggregate(scores: dict[str, float], n_simple: int, n_complex: int) -> float:
    """The weighted aggregate of per-property scores (module doc, `GROUPS` / `GROUP_WEIGHTS`)."""
    total = weight = 0.0
    unit_w = {"sf_simple": float(n_simple), "sf_complex": float(n_complex)}
    for group, props in GROUPS.items():
        have = [q for q in props if q in scores and np.isfinite(scores[q])]
        if not have:
            continue
        w = np.array([unit_w.get(q, 1.0) for q in have])
        w = np.ones(len(have)) if w.sum() == 0 else w
        total += GROUP_WEIGHTS[group] * float(np.average([scores[q] for q in have], weights=w))
        weight += GROUP_WEIGHTS[group]
    return total / weight if weight else float("nan")


_CEILINGS: dict[tuple, dict[str, float]] = {}  # keyed by the (frozen, hashable) Preset itself


def similarity_ceiling(n_simple: int, n_complex: int, preset: str | Preset = DEFAULT_PRESET,
                       draws: int = CEILING_DRAWS) -> dict[str, float]:
    """Mean per-property and aggregate score of `draws` samples of the same unit counts drawn from
    the data (the `biological` sampler of `preset`, seeds 0..draws-1); cached."""
    from v1sweep.rf.sampling import sample

    p = get_preset(preset)
    key = (int(n_simple), int(n_complex), p, int(draws))
    if key not in _CEILINGS:
        runs = []
        for k in range(draws):
            d = _scores(sample("biological", n_simple, n_complex, seed=k, preset=p), p)
            d["all"] = aggregate(d, n_simple, n_complex)
            runs.append(d)
        _CEILINGS[key] = {q: float(np.mean([r[q] for r in runs if q in r])) for q in runs[0] if q != "_spearman"}
    return dict(_CEILINGS[key])


def rf_similarity(rf: RFParams, preset: str | Preset = DEFAULT_PRESET, *, normalise: bool = True
                  ) -> dict[str, float]:
    """Per-property and aggregate similarity of `rf` to the preset's published tables (module doc);
    with `normalise`, also the same-size data ceiling and the normalised scores."""
    p = get_preset(preset)
    sc = _scores(rf, p)
    out: dict[str, float] = {}
    for q, v in sc.items():
        if q == "_spearman":
            out["rf_spearman/sf_nx"] = v
        else:
            out[f"rf_similarity/{q}"] = v
    o = p.orientation
    out["rf_wasserstein/orientation"] = circular_wasserstein(rf.theta, o.edges, o.counts, ORIENTATION_PERIOD)
    for name, sel in (("sf_simple", ~rf.complex), ("sf_complex", rf.complex)):
        if sel.any():
            h = getattr(p, name)
            out[f"rf_wasserstein/{name}"] = wasserstein_log(rf.sf[sel], h.edges, h.counts)
    j = p.nxny
    for name, values, h in (("nx", rf.nx, j.nx), ("ny", rf.ny, j.ny)):
        out[f"rf_wasserstein/{name}"] = wasserstein_log(values, h.edges, h.counts)
    out["rf_wasserstein/nxny"] = joint_wasserstein_log(rf.nx, rf.ny, j.nx_edges, j.ny_edges, j.counts)
    n_simple, n_complex = int((~rf.complex).sum()), int(rf.complex.sum())
    out["rf_similarity"] = aggregate(sc, n_simple, n_complex)
    if normalise:
        ceiling = similarity_ceiling(n_simple, n_complex, p)
        out["rf_similarity_ceiling"] = ceiling["all"]
        out["rf_normsim"] = out["rf_similarity"] / ceiling["all"]
        for q, v in sc.items():
            if q in ceiling and ceiling[q] > 0:
                out[f"rf_normsim/{q}"] = v / ceiling[q]
    return {k: float(v) for k, v in out.items()}


def effective_sf(kernels: Any, ppd: float, quadrature: Any | None = None, pad: int = 256) -> np.ndarray:
    """Each filter's preferred spatial frequency (cpd), read from its kernel's amplitude spectrum.

    `kernels` (N, k, k) as the front-end builds them (truncated to k x k); `quadrature` (N, k, k)
    optional partners: the energy |K|^2 + |Q|^2 is used for those (complex cells), |K| otherwise.
    The kernel is zero-padded to `pad` x `pad`; the radius of the spectral peak, in cycles per
    pixel times `ppd`, is the effective SF. A
    filter whose peak is at DC gets the lowest non-zero frequency, 1 / pad cycles per pixel.
    """
    k = np.asarray(kernels, dtype=np.float64)
    pad = max(int(pad), k.shape[-1])
    power = np.abs(np.fft.rfft2(k, s=(pad, pad))) ** 2
    if quadrature is not None:
        power = power + np.abs(np.fft.rfft2(np.asarray(quadrature, dtype=np.float64), s=(pad, pad))) ** 2
    fy = np.fft.fftfreq(pad)[:, None]
    fx = np.fft.rfftfreq(pad)[None, :]
    radius = np.sqrt(fy ** 2 + fx ** 2)
    flat = power.reshape(len(k), -1)
    peak = np.take(radius.ravel(), np.argmax(flat, axis=1))
    return np.maximum(peak, 1.0 / pad) * float(ppd)


def effective_rf(rf: RFParams, sf: Any) -> RFParams:
    """`rf` with its SFs replaced by the effective ones; nx, ny (envelope widths in cycles) scale
    with them because the envelope's width in degrees is what the kernel keeps."""
    import dataclasses

    sf = np.asarray(sf, dtype=np.float64)
    ratio = sf / np.asarray(rf.sf, dtype=np.float64)
    return dataclasses.replace(rf, sf=sf, nx=np.asarray(rf.nx) * ratio, ny=np.asarray(rf.ny) * ratio)
