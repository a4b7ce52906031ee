"""RF sampling: published histograms reproduced, couplings, interpolation, determinism, bad input.

Reference distributions are written here from the published numbers (not read from the code under
test) wherever the test is about the numbers themselves.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from v1sweep.rf import RFParams, catalog, list_strategies, sample
from v1sweep.rf.custom import load_custom
from v1sweep.rf.sampling import draw, recipe_for
from v1sweep.testing.rf import StrategyContract

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "custom_rf.yaml"
N = 20_000
P_MIN = 1e-3  # fixed seeds: the p-values are fixed numbers; a wrong table gives p ~ 0

# The published numbers, restated (De Valois 1982a/b, Ringach 2002; see docs/rf_sampling.md).
ORI_EDGES = [-22.5, 22.5, 67.5, 112.5, 157.5]
ORI_COUNTS = [66, 49, 77, 54]
TINY_SF_EDGES = [0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0, 11.2]
TINY_SF_SIMPLE = [4, 4, 8, 25, 33, 26, 28, 12, 8]
TINY_SF_COMPLEX = [0, 0, 9, 9, 7, 10, 23, 12, 14]
VONE_SF_EDGES = [0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0]
VONE_SF = [4, 4, 8, 25, 32, 26, 28, 12]
RINGACH = np.array([[2, 0, 1, 0, 0], [8, 9, 4, 1, 0], [1, 2, 19, 17, 3], [0, 0, 1, 7, 4], [0, 0, 0, 0, 0]], float)
TABLES = {
    "tinyimagenet2023": dict(sf_simple=(TINY_SF_EDGES, TINY_SF_SIMPLE), sf_complex=(TINY_SF_EDGES, TINY_SF_COMPLEX),
                             nxny=(np.logspace(-1, 0, 5), RINGACH[:4, :4])),
    "vonenet2020": dict(sf_simple=(VONE_SF_EDGES, VONE_SF), sf_complex=(VONE_SF_EDGES, VONE_SF),
                        nxny=(np.logspace(-1, 0.2, 6), RINGACH)),
}
SPEARMAN_075 = 6 / np.pi * np.arcsin(0.75 / 2)

# options a strategy cannot run without: each strategy's registered example
REQUIRED_OPTIONS = {name: catalog.example(name) for name in list_strategies() if catalog.example(name)}


def _opts(name: str) -> dict:
    return dict(REQUIRED_OPTIONS.get(name, {}))


def _wrap_ori(theta: np.ndarray) -> np.ndarray:
    return np.where(theta >= 157.5, theta - 180.0, theta)


def _chi2_p(values: np.ndarray, edges, counts) -> float:
    """Chi-square p of binned values vs the table; empty table bins must stay empty."""
    h = np.histogram(values, bins=np.asarray(edges, float))[0]
    assert h.sum() == len(values), "values outside the table's support"
    p = np.asarray(counts, float) / np.sum(counts)
    assert np.all(h[p == 0] == 0), f"draws in empty bins: {h[p == 0]}"
    return stats.chisquare(h[p > 0], p[p > 0] * len(values)).pvalue


def _piecewise_cdf(edges, counts, log: bool):
    """CDF of a histogram that is uniform inside bins (in log space if `log`)."""
    e = np.log(np.asarray(edges, float)) if log else np.asarray(edges, float)
    cdf = np.concatenate([[0.0], np.cumsum(counts) / np.sum(counts)])
    return lambda x: np.interp(np.log(x) if log else x, e, cdf)


# ---------------------------------------------------------------- shared checks over the registry
class TestStrategyContract(StrategyContract):
    """`v1sweep.testing.rf.check_strategy`'s parts on every registered strategy."""


def test_registry_lists_the_contract_strategies():
    assert {"biological", "unif1", "uniform", "unif2", "unif3", "interpolated", "custom"} <= set(list_strategies())
    assert REQUIRED_OPTIONS == {"interpolated": {"alpha": 0.5}, "custom": {"path": str(EXAMPLE)}}
    assert catalog.uniform_controls() == ("uniform", "unif1", "unif2", "unif3")


@pytest.mark.parametrize("preset", ["tinyimagenet2023", "vonenet2020"])
@pytest.mark.parametrize("name", list_strategies())
def test_every_strategy_shapes_ranges_and_determinism(name, preset):
    opts = _opts(name)
    rf = sample(name, 300, 200, seed=3, preset=preset, **opts)
    assert isinstance(rf, RFParams) and len(rf) == 500
    assert rf.n_simple == 300 and rf.n_complex == 200
    assert not rf.complex[:300].any() and rf.complex[300:].all() and rf.complex.dtype == bool
    for f in ("sf", "theta", "phase", "nx", "ny"):
        assert getattr(rf, f).dtype == np.float64 and np.all(np.isfinite(getattr(rf, f)))
    assert np.all((rf.theta >= 0) & (rf.theta < 180))
    assert np.all((rf.phase >= 0) & (rf.phase < 360))
    assert set(np.unique(rf.color)) == {0, 1, 2}
    tables = load_custom(EXAMPLE) if name == "custom" else None
    for cx, key in ((False, "sf_simple"), (True, "sf_complex")):
        if tables is not None:
            lo, hi = getattr(tables, key).support
        else:
            lo, hi = TABLES[preset][key][0][0], TABLES[preset][key][0][-1]
        sf = rf.sf[rf.complex == cx]
        assert np.all((sf >= lo * (1 - 1e-12)) & (sf <= hi * (1 + 1e-12))), (key, sf.min(), sf.max())
    edges = np.asarray(tables.nxny.nx_edges) if tables is not None else TABLES[preset]["nxny"][0]
    for v in (rf.nx, rf.ny):
        assert np.all((v >= edges[0] * (1 - 1e-12)) & (v <= edges[-1] * (1 + 1e-12)))
    assert sample(name, 300, 200, seed=3, preset=preset, **opts) == rf
    other = sample(name, 300, 200, seed=4, preset=preset, **opts)
    assert not np.array_equal(other.sf, rf.sf) and not np.array_equal(other.theta, rf.theta)


@pytest.mark.parametrize("name", list_strategies())
def test_every_strategy_single_cell_type_sf_max_and_unknown_option(name):
    opts = _opts(name)
    assert sample(name, 7, 0, seed=0, **opts).n_complex == 0
    assert sample(name, 0, 7, seed=0, **opts).n_simple == 0
    rf = sample(name, 500, 500, seed=0, sf_max=4.0, **opts)
    assert rf.sf.max() <= 4.0
    with pytest.raises(ValueError, match="not_an_option"):
        sample(name, 4, 4, seed=0, not_an_option=1, **opts)


# ---------------------------------------------------------------- biological reproduces the tables
@pytest.mark.parametrize("preset", ["tinyimagenet2023", "vonenet2020"])
def test_biological_reproduces_published_histograms(preset):
    rf = sample("biological", N, N, seed=11, preset=preset)
    t = TABLES[preset]
    theta = _wrap_ori(rf.theta)
    assert _chi2_p(theta, ORI_EDGES, ORI_COUNTS) > P_MIN
    assert stats.kstest(theta, _piecewise_cdf(ORI_EDGES, ORI_COUNTS, log=False)).pvalue > P_MIN
    for cx, key in ((False, "sf_simple"), (True, "sf_complex")):
        sf = rf.sf[rf.complex == cx]
        edges, counts = t[key]
        assert _chi2_p(sf, edges, counts) > P_MIN, key
        assert stats.kstest(sf, _piecewise_cdf(edges, counts, log=True)).pvalue > P_MIN, key
    edges, joint = t["nxny"]
    for sel in (~rf.complex, rf.complex):  # Ringach's table is used for both cell types
        nx, ny = rf.nx[sel], rf.ny[sel]
        assert _chi2_p(nx, edges, joint.sum(1)) > P_MIN
        assert _chi2_p(ny, edges, joint.sum(0)) > P_MIN
        assert stats.kstest(nx, _piecewise_cdf(edges, joint.sum(1), log=True)).pvalue > P_MIN
        h2 = np.histogram2d(nx, ny, bins=[edges, edges])[0]
        p2 = joint / joint.sum()
        assert np.all(h2[p2 == 0] == 0)
        assert stats.chisquare(h2[p2 > 0], p2[p2 > 0] * len(nx)).pvalue > P_MIN
    assert stats.chisquare(np.bincount(rf.color), np.full(3, 2 * N / 3)).pvalue > P_MIN
    assert stats.kstest(rf.phase, stats.uniform(0, 360).cdf).pvalue > P_MIN


def test_biological_and_unif3_have_the_sf_nx_copula():
    for name in ("biological", "unif3"):
        rf = sample(name, N, N, seed=5)
        for sel in (~rf.complex, rf.complex):
            r = stats.spearmanr(rf.sf[sel], rf.nx[sel]).statistic
            assert abs(r - SPEARMAN_075) < 0.02, (name, r)
    for name in ("unif1", "unif2"):
        rf = sample(name, N, N, seed=5)
        assert abs(stats.spearmanr(rf.sf, rf.nx).statistic) < 0.03, name


# ---------------------------------------------------------------- the uniform controls
def test_unif1_independent_uniform_over_the_biological_ranges():
    rf = sample("unif1", N, N, seed=2)
    assert stats.kstest(rf.theta, stats.uniform(0, 180).cdf).pvalue > P_MIN
    lo, hi = np.log2(0.5), np.log2(11.2)
    for sel in (~rf.complex, rf.complex):
        assert stats.kstest(np.log2(rf.sf[sel]), stats.uniform(lo, hi - lo).cdf).pvalue > P_MIN
    for v in (rf.nx, rf.ny):
        assert stats.kstest(np.log10(v), stats.uniform(-1, 1).cdf).pvalue > P_MIN
    for a, b in ((rf.nx, rf.ny), (rf.sf, rf.nx), (rf.sf, rf.ny), (rf.theta, rf.sf)):
        assert abs(stats.spearmanr(a, b).statistic) < 0.03
    assert stats.kstest(rf.phase, stats.uniform(0, 360).cdf).pvalue > P_MIN
    assert sample("uniform", 50, 50, seed=9) == sample("unif1", 50, 50, seed=9)


@pytest.mark.parametrize("name", ["unif2", "unif3"])
def test_unif2_unif3_nx_ny_coupling_matches_reference(name):
    rf = sample(name, N, N, seed=8)
    lnx, lny = np.log10(rf.nx), np.log10(rf.ny)
    rng = np.random.default_rng(123)  # the published rule, written out
    ref_nx = rng.uniform(-1, 0, 2 * N)
    ref_ny = np.clip(ref_nx + rng.normal(0, 0.22, 2 * N), -1, 0)
    assert stats.kstest(lnx, stats.uniform(-1, 1).cdf).pvalue > P_MIN
    assert stats.ks_2samp(lny - lnx, ref_ny - ref_nx).pvalue > P_MIN
    assert stats.ks_2samp(lny, ref_ny).pvalue > P_MIN
    r = np.corrcoef(lnx, lny)[0, 1]
    assert abs(r - np.corrcoef(ref_nx, ref_ny)[0, 1]) < 0.02 and r > 0.6
    u1 = sample("unif1", N, N, seed=8)
    assert abs(np.corrcoef(np.log10(u1.nx), np.log10(u1.ny))[0, 1]) < 0.03


# ---------------------------------------------------------------- interpolation
PROPS = {
    "theta": lambda rf: rf.theta, "sf_simple": lambda rf: np.log2(rf.sf[~rf.complex]),
    "sf_complex": lambda rf: np.log2(rf.sf[rf.complex]), "nx": lambda rf: rf.nx, "ny": lambda rf: rf.ny,
    "ny/nx": lambda rf: rf.ny / rf.nx, "sf*nx": lambda rf: rf.sf * rf.nx,
}


@pytest.mark.parametrize("mode", ["mixture", "quantile"])
def test_interpolation_endpoints(mode):
    for alpha, ref in ((0.0, "unif1"), (1.0, "biological")):
        assert sample("interpolated", 200, 200, seed=1, alpha=alpha, mode=mode) == sample(ref, 200, 200, seed=1)
        a = sample("interpolated", N // 2, N // 2, seed=21, alpha=alpha, mode=mode)
        b = sample(ref, N // 2, N // 2, seed=22)
        for prop, get in PROPS.items():
            assert stats.ks_2samp(get(a), get(b)).pvalue > P_MIN, (alpha, prop)


def _w1_log2(values: np.ndarray, edges, counts) -> float:
    """W1 in log2 space against a log-uniform-in-bins histogram, by dense quantiles (scipy)."""
    e = np.log2(np.asarray(edges, float))
    cdf = np.concatenate([[0.0], np.cumsum(counts) / np.sum(counts)])
    q = np.interp((np.arange(4000) + 0.5) / 4000, cdf, e)
    return stats.wasserstein_distance(np.log2(values), q)


@pytest.mark.parametrize("mode", ["mixture", "quantile"])
def test_interpolation_distance_to_biological_decreases_with_alpha(mode):
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    d_sf, d_nx, ks_ori = [], [], []
    ori_cdf = _piecewise_cdf(ORI_EDGES, ORI_COUNTS, log=False)
    for a in alphas:  # same seed: common random numbers make the comparison sharp
        rf = sample("interpolated", N, 0, seed=4, alpha=a, mode=mode)
        d_sf.append(_w1_log2(rf.sf, TINY_SF_EDGES, TINY_SF_SIMPLE))
        d_nx.append(_w1_log2(rf.nx, np.logspace(-1, 0, 5), RINGACH[:4, :4].sum(1)))
        ks_ori.append(stats.kstest(_wrap_ori(rf.theta), ori_cdf).statistic)
    for d in (d_sf, d_nx, ks_ori):
        assert all(x > y for x, y in zip(d, d[1:])), d
    if mode == "quantile":  # a Wasserstein geodesic: distance falls linearly in alpha
        for a, d in zip(alphas, d_sf):
            assert abs(d - (1 - a) * d_sf[0]) < 0.02, (a, d)


def test_per_property_alphas_override_alpha():
    bio, uni = sample("biological", 300, 300, seed=6), sample("unif1", 300, 300, seed=6)
    rf = sample("interpolated", 300, 300, seed=6, alpha=0.0, alpha_sf=1.0)
    np.testing.assert_array_equal(rf.sf, bio.sf)
    np.testing.assert_array_equal(rf.theta, uni.theta)
    np.testing.assert_array_equal(rf.nx, uni.nx)
    rf = sample("interpolated", 300, 300, seed=6, alpha_sf=0.0, alpha_ori=1.0, alpha_nxny=1.0, alpha_coupling=1.0)
    np.testing.assert_array_equal(rf.theta, bio.theta)
    np.testing.assert_array_equal(rf.sf, uni.sf)
    np.testing.assert_array_equal(rf.ny, bio.ny)


@pytest.mark.parametrize("mode,expected", [("mixture", 0.5 * SPEARMAN_075),
                                           ("quantile", 6 / np.pi * np.arcsin(0.375 / 2))])
def test_alpha_coupling_interpolates_the_copula(mode, expected):
    rf = sample("interpolated", N, 0, seed=7, alpha=1.0, alpha_coupling=0.5, mode=mode)
    assert abs(stats.spearmanr(rf.sf, rf.nx).statistic - expected) < 0.02


# ---------------------------------------------------------------- sf_max and custom files
def test_sf_max_truncates_the_distribution():
    rf = sample("biological", N, 0, seed=3, sf_max=4.0)  # 4.0 is a bin edge: bins above are dropped
    assert _chi2_p(rf.sf, TINY_SF_EDGES[:7], TINY_SF_SIMPLE[:6]) > P_MIN
    rf = sample("biological", N, 0, seed=3, sf_max=3.0, sf_truncation="cut")  # conditional on sf <= 3
    full = _piecewise_cdf(TINY_SF_EDGES, TINY_SF_SIMPLE, log=True)
    assert rf.sf.max() <= 3.0
    assert stats.kstest(rf.sf, lambda x: np.minimum(full(x) / full(3.0), 1.0)).pvalue > P_MIN
    u = sample("unif1", N, 0, seed=3, sf_max=4.0)
    assert stats.kstest(np.log2(u.sf), stats.uniform(-1, 3).cdf).pvalue > P_MIN
    assert sample("biological", 50, 50, seed=1, sf_max=11.5) == sample("biological", 50, 50, seed=1)


@pytest.mark.parametrize("cell", ["simple", "complex"])
def test_sf_max_below_the_top_edge_drops_bins_as_published(cell):
    """The published VOneNet keeps the SF bin edges <= sf_max: at sf_max 10 cpd the 8-11.2 bin is
    dropped and the support ends at 8 cpd, for the biological and the uniform draws alike."""
    n_s, n_c = (N, 0) if cell == "simple" else (0, N)
    counts = TINY_SF_SIMPLE if cell == "simple" else TINY_SF_COMPLEX
    rf = sample("biological", n_s, n_c, seed=5, sf_max=10.0)
    assert rf.sf.max() <= 8.0
    assert _chi2_p(rf.sf, TINY_SF_EDGES[:9], counts[:8]) > P_MIN
    assert sample("biological", n_s, n_c, seed=5, sf_max=10.0, sf_truncation="drop") == rf
    u = sample("unif1", n_s, n_c, seed=5, sf_max=10.0)
    assert stats.kstest(np.log2(u.sf), stats.uniform(-1, 4).cdf).pvalue > P_MIN  # log2 U(0.5, 8)


@pytest.mark.parametrize("cell", ["simple", "complex"])
def test_sf_max_cut_option_keeps_the_straddling_bin_below_sf_max(cell):
    n_s, n_c = (N, 0) if cell == "simple" else (0, N)
    counts = TINY_SF_SIMPLE if cell == "simple" else TINY_SF_COMPLEX
    rf = sample("biological", n_s, n_c, seed=5, sf_max=10.0, sf_truncation="cut")
    assert 8.0 < rf.sf.max() <= 10.0
    full = _piecewise_cdf(TINY_SF_EDGES, counts, log=True)
    assert stats.kstest(rf.sf, lambda x: np.minimum(full(x) / full(10.0), 1.0)).pvalue > P_MIN
    u = sample("unif1", n_s, n_c, seed=5, sf_max=10.0, sf_truncation="cut")
    assert stats.kstest(np.log2(u.sf), stats.uniform(-1, np.log2(10.0) + 1).cdf).pvalue > P_MIN


def test_quadrature_colour_per_preset_and_csv_round_trip(tmp_path):
    """vonenet2020 (2020 code) draws the quadrature filter's channel again; tinyimagenet2023 does not.
    The extra draw comes last, so every other property is the one the 2020 draw gives without it."""
    old = sample("biological", 500, 500, seed=9, preset="vonenet2020")
    cx = old.complex
    assert old.split_colour and 0.6 < np.mean(old.color[cx] != old.color_quadrature[cx]) < 0.73
    recipe = recipe_for("biological", preset="vonenet2020")
    one_colour = draw(dataclasses.replace(recipe, tables=dataclasses.replace(recipe.tables, quadrature_color="same")),
                      500, 500, 9)
    for f in ("sf", "theta", "phase", "nx", "ny", "color", "complex"):
        np.testing.assert_array_equal(getattr(one_colour, f), getattr(old, f))
    new = sample("biological", 500, 500, seed=9)
    assert not new.split_colour and np.array_equal(new.color_quadrature, new.color)
    old.to_csv(tmp_path / "old.csv")
    assert (tmp_path / "old.csv").read_text().splitlines()[0].endswith(",color_quadrature")
    assert RFParams.from_csv(tmp_path / "old.csv") == old
    new.to_csv(tmp_path / "new.csv")
    assert (tmp_path / "new.csv").read_text().splitlines()[0] == "sf,theta,phase,nx,ny,color,complex"
    assert RFParams.from_csv(tmp_path / "new.csv") == new
    assert old.subset(np.arange(600, 700)).split_colour


def test_custom_yaml_tables_are_sampled_and_missing_sections_come_from_preset(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text("sf:\n  edges: [1, 2, 4, 8]\n  counts: [1, 0, 3]\n")
    rf = sample("custom", N, N, seed=2, path=str(path))
    assert _chi2_p(rf.sf, [1, 2, 4, 8], [1, 0, 3]) > P_MIN
    bio = sample("biological", N, N, seed=2)
    for f in ("theta", "nx", "ny", "phase", "color"):
        np.testing.assert_array_equal(getattr(rf, f), getattr(bio, f))
    rf = sample("custom", N, N, seed=2, path=str(EXAMPLE))
    assert _chi2_p(rf.sf[rf.complex], [0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0, 11.2],
                   [1, 2, 1, 2, 5, 15, 13, 9, 3, 2]) > P_MIN
    assert _chi2_p(_wrap_ori(rf.theta), ORI_EDGES, [110, 83, 100, 92]) > P_MIN


def test_custom_csv_equals_yaml(tmp_path):
    t = load_custom(EXAMPLE)
    rows = ["table,lo,hi,ny_lo,ny_hi,value"]
    for name in ("orientation", "sf_simple", "sf_complex"):
        h = getattr(t, name)
        rows += [f"{name},{lo!r},{hi!r},,,{c!r}" for lo, hi, c in zip(h.edges, h.edges[1:], h.counts)]
    e = t.nxny.nx_edges
    rows += [f"nxny,{e[i]!r},{e[i + 1]!r},{e[j]!r},{e[j + 1]!r},{t.nxny.counts[i][j]!r}"
             for j in reversed(range(4)) for i in range(4)]  # any row order
    rows.append("sf_nx_rho,,,,,0.75")
    csv_path = tmp_path / "h.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    from_yaml = sample("custom", 100, 100, seed=1, path=str(EXAMPLE))
    assert sample("custom", 100, 100, seed=1, path=str(csv_path)) == from_yaml


BAD_CUSTOM = {
    "negative counts": ("h.yaml", "sf:\n  edges: [1, 2, 4]\n  counts: [1, -2]\n", ">= 0"),
    "length mismatch": ("h.yaml", "sf:\n  edges: [1, 2, 4]\n  counts: [1, 2, 3]\n", "shape"),
    "non-increasing edges": ("h.yaml", "sf_simple:\n  edges: [1, 4, 2]\n  counts: [1, 2]\n", "increasing"),
    "nxny shape": ("h.yaml", "nxny:\n  edges: [0.1, 0.3, 1]\n  counts: [[1, 2, 3], [1, 2, 3]]\n", "shape"),
    "zero sf edge": ("h.yaml", "sf:\n  edges: [0, 2, 4]\n  counts: [1, 2]\n", "> 0"),
    "all zero": ("h.yaml", "sf:\n  edges: [1, 2, 4]\n  counts: [0, 0]\n", "zero"),
    "orientation span": ("h.yaml", "orientation:\n  edges: [0, 100, 200]\n  counts: [1, 1]\n", "180"),
    "rho": ("h.yaml", "sf_nx_rho: 1.5\n", "sf_nx_rho"),
    "unknown section": ("h.yaml", "sf_typo:\n  edges: [1, 2]\n  counts: [1]\n", "unknown section"),
    "not a mapping": ("h.yaml", "- 1\n- 2\n", "mapping"),
    "bad yaml": ("h.yaml", "sf: [1, 2\n", "YAML"),
    "sf and sf_simple": ("h.yaml", "sf: {edges: [1, 2], counts: [1]}\nsf_simple: {edges: [1, 2], counts: [1]}\n",
                         "not both"),
    "csv gap": ("h.csv", "table,lo,hi,ny_lo,ny_hi,value\nsf,1,2,,,1\nsf,3,4,,,1\n", "contiguous"),
    "csv missing cell": ("h.csv", "table,lo,hi,ny_lo,ny_hi,value\nnxny,0.1,0.3,0.1,0.3,1\nnxny,0.3,1,0.1,0.3,1\n"
                         "nxny,0.1,0.3,0.3,1,1\n", "missing"),
    "csv negative": ("h.csv", "table,lo,hi,ny_lo,ny_hi,value\nsf,1,2,,,-1\nsf,2,4,,,1\n", ">= 0"),
    "csv header": ("h.csv", "name,lo,hi,value\nsf,1,2,1\n", "header"),
    "csv unknown table": ("h.csv", "table,lo,hi,ny_lo,ny_hi,value\nfoo,1,2,,,1\n", "unknown table"),
    "extension": ("h.txt", "sf: {edges: [1, 2], counts: [1]}\n", "file type"),
}


@pytest.mark.parametrize("case", list(BAD_CUSTOM))
def test_bad_custom_file_names_option_and_file(case, tmp_path):
    fname, text, needle = BAD_CUSTOM[case]
    path = tmp_path / fname
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        sample("custom", 4, 4, seed=0, path=str(path))
    msg = str(err.value)
    assert "'path'" in msg and fname in msg and needle in msg, msg


# ---------------------------------------------------------------- determinism
def test_golden_values_pin_the_random_stream():
    """Same seed -> the same numbers on any machine; a changed draw order shows up here."""
    rf = sample("biological", 3, 2, seed=0)
    np.testing.assert_allclose(rf.sf, GOLDEN["sf"], rtol=1e-9)
    np.testing.assert_allclose(rf.theta, GOLDEN["theta"], rtol=1e-9)
    np.testing.assert_allclose(rf.phase, GOLDEN["phase"], rtol=1e-9)
    np.testing.assert_allclose(rf.nx, GOLDEN["nx"], rtol=1e-9)
    np.testing.assert_allclose(rf.ny, GOLDEN["ny"], rtol=1e-9)
    np.testing.assert_array_equal(rf.color, GOLDEN["color"])


GOLDEN = {  # sample("biological", 3, 2, seed=0), numpy PCG64
    "sf": [3.72938293283871, 6.64861109184846, 5.24649628569203, 2.22598237321923, 1.38129679334011],
    "theta": [91.8657906317987, 22.8375290074703, 164.372377423844, 160.272135231831, 119.220399036056],
    "phase": [138.123919534278, 358.995576885916, 353.100721959443, 246.795114413050, 234.165339456414],
    "nx": [0.350449568782971, 0.535365920509727, 0.241427680995560, 0.263613353875025, 0.169280613189451],
    "ny": [0.355357416847445, 0.834697452084024, 0.228386666526484, 0.160713339223103, 0.144048157598721],
    "color": [2, 2, 2, 1, 2],
}


def test_independent_of_global_random_state():
    np.random.seed(1)
    a = sample("interpolated", 50, 50, seed=3, alpha=0.3)
    state = np.random.get_state()[1].copy()
    np.random.seed(2)
    b = sample("interpolated", 50, 50, seed=3, alpha=0.3)
    assert a == b
    np.random.seed(1)
    sample("biological", 50, 50, seed=3)
    assert np.array_equal(np.random.get_state()[1], state)


# ---------------------------------------------------------------- bad input
BAD_CALLS = [
    (("nope", 4, 4, 0), {}, "nope"),
    (("biological", -1, 4, 0), {}, "n_simple"),
    (("biological", 4, -2, 0), {}, "n_complex"),
    (("biological", 0, 0, 0), {}, "n_simple"),
    (("biological", 2.5, 4, 0), {}, "n_simple"),
    (("biological", 4, 4, -1), {}, "seed"),
    (("biological", 4, 4, 0), {"alpha": 0.5}, "alpha"),
    (("unif1", 4, 4, 0), {"path": "x.yaml"}, "path"),
    (("biological", 4, 4, 0), {"preset": "imagenet"}, "preset"),
    (("interpolated", 4, 4, 0), {"alpha": 1.5}, "alpha"),
    (("interpolated", 4, 4, 0), {"alpha": -0.1}, "alpha"),
    (("interpolated", 4, 4, 0), {"alpha": 0.5, "alpha_sf": 2.0}, "alpha_sf"),
    (("interpolated", 4, 4, 0), {"alpha": "0.5"}, "alpha"),
    (("interpolated", 4, 4, 0), {}, "alpha"),
    (("interpolated", 4, 4, 0), {"alpha_sf": 0.5}, "alpha_ori"),
    (("interpolated", 4, 4, 0), {"alpha": 0.5, "mode": "geodesic"}, "mode"),
    (("biological", 4, 4, 0), {"sf_max": 0.4}, "sf_max"),
    (("biological", 4, 4, 0), {"sf_max": -1.0}, "sf_max"),
    (("biological", 4, 4, 0), {"sf_max": 0.9}, "complex"),  # no complex counts below 1 cpd
    (("biological", 4, 4, 0), {"sf_max": 0.6}, "keeps no bin"),  # below the first bin's upper edge
    (("biological", 4, 4, 0), {"sf_max": 0.6, "sf_truncation": "cut"}, "complex"),
    (("biological", 4, 4, 0), {"sf_truncation": "clip"}, "sf_truncation"),
    (("custom", 4, 4, 0), {}, "path"),
    (("custom", 4, 4, 0), {"path": "does/not/exist.yaml"}, "not found"),
]


@pytest.mark.parametrize("args,kwargs,needle", BAD_CALLS,
                         ids=[f"{a[0]}-{n}-{i}" for i, (a, k, n) in enumerate(BAD_CALLS)])
def test_bad_input_raises_value_error_naming_the_option(args, kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        sample(*args, **kwargs)


def test_unknown_strategy_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        sample("biologcal", 4, 4, 0)
    for name in list_strategies():
        assert name in str(err.value)
