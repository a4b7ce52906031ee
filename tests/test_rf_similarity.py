"""Similarity of RF parameters to V1 tables: KS score, log-space Wasserstein, joint and coupling."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from v1sweep.rf import RFParams, sample
from v1sweep.rf.empirical import TINYIMAGENET2023, VONENET2020
from v1sweep.rf.similarity import (
    circular_wasserstein,
    coupling_similarity,
    effective_sf,
    expected_spearman,
    joint_ks_similarity,
    joint_wasserstein_log,
    ks_similarity,
    rf_similarity,
    wasserstein_log,
)

PROPS = ("orientation", "sf_simple", "sf_complex", "nx", "ny", "nxny", "sf_nx")


def _ks_reference(values, edges, counts) -> float:
    """1 - KS/KS_max written out with loops (Brain-Score V1 definition)."""
    nb = len(counts)
    model = [0.0] * nb
    for v in values:
        v = min(max(v, edges[0]), edges[-1])
        for b in range(nb):
            if edges[b] <= v < edges[b + 1] or (b == nb - 1 and v == edges[-1]):
                model[b] += 1
                break
    fm, fd, sm, sd = [], [], 0.0, 0.0
    for b in range(nb):
        sm += model[b] / len(values)
        sd += counts[b] / sum(counts)
        fm.append(sm)
        fd.append(sd)
    ks = max(abs(a - b) for a, b in zip(fm, fd))
    first = max(abs(1.0 - d) for d in fd)  # point mass on the first bin: cumulative 1 everywhere
    last = max(abs((1.0 if b == nb - 1 else 0.0) - fd[b]) for b in range(nb))
    return 1.0 - ks / max(first, last)


@pytest.mark.parametrize("seed", range(6))
def test_ks_similarity_matches_direct_formula(seed):
    rng = np.random.default_rng(seed)
    nb = int(rng.integers(2, 10))
    edges = np.cumsum(rng.uniform(0.1, 1.0, nb + 1))
    counts = rng.integers(0, 20, nb).astype(float)
    counts[rng.integers(nb)] += 1
    values = rng.uniform(edges[0] - 1, edges[-1] + 1, int(rng.integers(1, 300)))
    expected = _ks_reference(list(values), list(edges), list(counts))
    assert ks_similarity(values, edges, counts) == pytest.approx(expected, abs=1e-12)


def test_ks_similarity_identical_and_point_masses():
    edges, counts = [0, 1, 2, 3, 4], [5, 3, 1, 1]
    same = np.repeat([0.5, 1.5, 2.5, 3.5], counts)
    assert ks_similarity(same, edges, counts) == 1.0
    # F_data = .5 .8 .9 1: the last-bin point mass is the farthest (KS .9), the first-bin one KS .5
    assert ks_similarity(np.full(10, 1e9), edges, counts) == pytest.approx(0.0, abs=1e-12)
    assert ks_similarity(np.full(10, -1e9), edges, counts) == pytest.approx(1 - 0.5 / 0.9)
    rng = np.random.default_rng(0)
    draws = rng.uniform(0, 1, 50_000) + rng.choice(4, 50_000, p=np.array(counts) / 10)
    assert ks_similarity(draws, edges, counts) > 0.99


def test_wasserstein_log_against_scipy():
    rng = np.random.default_rng(1)
    edges, counts = np.array([0.5, 1.0, 2.0, 4.0, 8.0]), np.array([1.0, 4.0, 0.0, 2.0])
    cdf = np.concatenate([[0], np.cumsum(counts) / counts.sum()])
    dense = np.interp((np.arange(200_000) + 0.5) / 200_000, cdf, np.log2(edges))  # the histogram's quantiles
    for values in (rng.uniform(0.3, 12, 57), np.full(5, 3.0), 2 ** rng.normal(1, 1, 400)):
        ours = wasserstein_log(values, edges, counts, base=2)
        assert ours == pytest.approx(stats.wasserstein_distance(np.log2(values), dense), abs=2e-4)
        ours10 = wasserstein_log(values, edges, counts, base=10)
        assert ours10 == pytest.approx(ours * np.log10(2), rel=1e-9)
    lin = rng.uniform(-30, 200, 99)
    e_lin = np.array([-22.5, 22.5, 67.5, 112.5, 157.5])
    c_lin = np.array([66, 49, 77, 54.0])
    cdf_lin = np.concatenate([[0], np.cumsum(c_lin) / c_lin.sum()])
    dense_lin = np.interp((np.arange(200_000) + 0.5) / 200_000, cdf_lin, e_lin)
    assert wasserstein_log(lin, e_lin, c_lin, base=None) == pytest.approx(
        stats.wasserstein_distance(lin, dense_lin), abs=0.01)


def test_wasserstein_log_exact_cases():
    # point mass at the bottom of a single log-uniform bin [1, 4]: W1 = E|U(0, 2)| = 1 octave
    assert wasserstein_log([1.0], [1.0, 4.0], [1]) == pytest.approx(1.0, abs=1e-12)
    assert wasserstein_log([2.0, 2.0], [1.0, 4.0], [1]) == pytest.approx(0.5, abs=1e-12)
    # samples at the exact quantiles of the histogram: distance -> 0
    q = 2 ** ((np.arange(1000) + 0.5) / 1000 * 2)
    assert wasserstein_log(q, [1.0, 4.0], [1]) < 1e-3


def _joint_ks_reference(x, y, ex, ey, counts):
    h = np.zeros_like(np.asarray(counts, float))
    for a, b in zip(np.clip(x, ex[0], ex[-1]), np.clip(y, ey[0], ey[-1])):
        i = min(np.searchsorted(ex, a, side="right") - 1, len(ex) - 2)
        j = min(np.searchsorted(ey, b, side="right") - 1, len(ey) - 2)
        h[i, j] += 1
    p, d = h / h.sum(), np.asarray(counts, float) / np.sum(counts)
    F = lambda m: np.array([[m[:i + 1, :j + 1].sum() for j in range(m.shape[1])] for i in range(m.shape[0])])
    ks = np.abs(F(p) - F(d)).max()
    corners = []
    for i, j in ((0, 0), (0, d.shape[1] - 1), (d.shape[0] - 1, 0), (d.shape[0] - 1, d.shape[1] - 1)):
        m = np.zeros_like(d)
        m[i, j] = 1
        corners.append(np.abs(F(m) - F(d)).max())
    return 1 - ks / max(corners)


def test_joint_ks_similarity():
    j = TINYIMAGENET2023.nxny
    ex, ey, c = np.asarray(j.nx_edges), np.asarray(j.ny_edges), np.asarray(j.counts, float)
    rng = np.random.default_rng(2)
    for _ in range(4):
        x, y = 10 ** rng.uniform(-1.2, 0.1, 200), 10 ** rng.uniform(-1.2, 0.1, 200)
        s = joint_ks_similarity(x, y, ex, ey, c)
        assert s == pytest.approx(_joint_ks_reference(x, y, ex, ey, c), abs=1e-12)
        assert 0.0 <= s <= 1.0
    cx, cy = np.sqrt(ex[:-1] * ex[1:]), np.sqrt(ey[:-1] * ey[1:])
    xs = np.concatenate([np.full(int(c[i, k]), cx[i]) for i in range(4) for k in range(4)])
    ys = np.concatenate([np.full(int(c[i, k]), cy[k]) for i in range(4) for k in range(4)])
    assert joint_ks_similarity(xs, ys, ex, ey, c) == 1.0
    scores = [joint_ks_similarity([cx[i]] * 5, [cy[k]] * 5, ex, ey, c) for i in (0, -1) for k in (0, -1)]
    assert min(scores) == pytest.approx(0.0, abs=1e-12)


def test_joint_wasserstein_reduces_to_1d_on_one_row():
    ex = np.array([0.1, 0.2, 0.4, 0.8])
    counts = np.array([[0, 0, 0], [3, 1, 2], [0, 0, 0]], float)
    centres = np.log2(np.sqrt(ex[:-1] * ex[1:]))
    y = np.array([0.15, 0.15, 0.7, 0.3])
    x = np.full(len(y), 0.3)
    ours = joint_wasserstein_log(x, y, ex, ex, counts)
    ref = stats.wasserstein_distance(centres[[0, 0, 2, 1]], centres, v_weights=counts[1])  # y's bins: 0 0 2 1
    assert ours == pytest.approx(ref, abs=1e-9)
    diagonal = [0.15, 0.3, 0.7] * 2
    assert joint_wasserstein_log(diagonal, diagonal, ex, ex, np.eye(3)) == pytest.approx(0, abs=1e-9)


def test_expected_spearman_and_coupling_score():
    rng = np.random.default_rng(3)
    z = rng.multivariate_normal([0, 0], [[1, 0.75], [0.75, 1]], 100_000)
    assert expected_spearman(0.75) == pytest.approx(stats.spearmanr(z[:, 0], z[:, 1]).statistic, abs=0.005)
    assert coupling_similarity(0.7, 0.7) == 1.0
    assert coupling_similarity(-1.0, 0.7) == pytest.approx(0.0)
    assert coupling_similarity(0.0, 0.7) == pytest.approx(1 - 0.7 / 1.7)


def test_rf_similarity_biological_near_one_uniform_lower():
    bio = rf_similarity(sample("biological", 20_000, 20_000, seed=1))
    uni = rf_similarity(sample("unif1", 20_000, 20_000, seed=1))
    for prop in PROPS:
        assert bio[f"rf_similarity/{prop}"] > 0.98, prop
        assert bio[f"rf_similarity/{prop}"] > uni[f"rf_similarity/{prop}"], prop
    for prop in PROPS[:-1]:
        assert bio[f"rf_wasserstein/{prop}"] < uni[f"rf_wasserstein/{prop}"], prop
    assert bio["rf_similarity"] > 0.98 > 0.9 > uni["rf_similarity"]
    for d in (bio, uni):
        per = {k.split("/")[1]: v for k, v in d.items() if k.startswith("rf_similarity/")}
        assert len(per) == len(PROPS)
        # documented weights: orientation, SF (simple/complex by unit count, here equal), the joint
        # envelope score (nx, ny weight 0) and the coupling, each group once
        expected = np.mean([per["orientation"], (per["sf_simple"] + per["sf_complex"]) / 2, per["nxny"],
                            per["sf_nx"]])
        assert d["rf_similarity"] == pytest.approx(expected, abs=1e-12)


def test_rf_similarity_point_mass_far_away_is_near_zero():
    # far below every table: for these tables the first-bin point mass is the farthest one (KS_max)
    n = 64
    rf = RFParams(sf=np.full(n, 1e-3), theta=np.full(n, 60.0), phase=np.zeros(n), nx=np.full(n, 1e-4),
                  ny=np.full(n, 1e-4), color=np.zeros(n, np.int64), complex=np.arange(n) >= n // 2)
    d = rf_similarity(rf)
    for prop in ("sf_simple", "sf_complex", "nx", "ny", "nxny"):
        assert d[f"rf_similarity/{prop}"] == pytest.approx(0.0, abs=1e-12), prop
    for prop in ("sf_simple", "sf_complex", "nx", "ny"):
        assert d[f"rf_wasserstein/{prop}"] > 8, prop  # > 8 octaves away
    # the joint distance is on the data's grid (values clipped): all mass moves to the corner cell
    j = TINYIMAGENET2023.nxny
    c = np.log2(np.sqrt(np.asarray(j.nx_edges)[:-1] * np.asarray(j.nx_edges)[1:]))
    p = np.asarray(j.counts, float) / np.sum(j.counts)
    to_corner = sum(p[i, k] * np.hypot(c[i] - c[0], c[k] - c[0]) for i in range(4) for k in range(4))
    assert d["rf_wasserstein/nxny"] == pytest.approx(to_corner, abs=1e-7)
    assert d["rf_similarity/orientation"] < 0.5
    assert d["rf_similarity"] < 0.2


def test_rf_similarity_skips_absent_units_and_takes_presets():
    d = rf_similarity(sample("biological", 200, 0, seed=0))
    assert "rf_similarity/sf_simple" in d and "rf_similarity/sf_complex" not in d
    assert "rf_wasserstein/sf_complex" not in d
    few = rf_similarity(sample("biological", 2, 0, seed=0))  # too few units for a rank correlation
    assert "rf_similarity/sf_nx" not in few
    rf = sample("biological", 500, 500, seed=0, preset="vonenet2020")
    assert rf_similarity(rf, "vonenet2020") == rf_similarity(rf, VONENET2020)
    assert all(isinstance(v, float) and np.isfinite(v) for v in rf_similarity(rf).values())


def test_plot_rf_histograms_writes_png(tmp_path):
    from matplotlib.image import imread

    from v1sweep.rf.plots import plot_rf_histograms

    out = plot_rf_histograms(sample("unif2", 100, 50, seed=0), tmp_path / "sub" / "rf.png")
    img = imread(out)
    assert img.shape[0] > 300 and img.shape[1] > 600 and img[..., :3].std() > 0.05
    out = plot_rf_histograms(sample("biological", 0, 20, seed=0), tmp_path / "c.png", preset="vonenet2020")
    assert out.stat().st_size > 10_000


def test_circular_wasserstein_wraps_orientation():
    # data uniform on [90, 180), model a point mass at 0 (= 180): on the circle the mean distance
    # min(x, 180 - x) over x in [90, 180) is 45 degrees (on the line it would be 135)
    assert circular_wasserstein([0.0] * 7, (0, 90, 180), (0, 1)) == pytest.approx(45.0, abs=1e-6)
    assert circular_wasserstein([179.0], (-22.5, 157.5), (1,)) == pytest.approx(45.0, abs=1e-6)
    # brute force: min over c of the integral |F_m - F_d - c| on a fine grid of one period
    rng = np.random.default_rng(0)
    edges, counts = (-22.5, 22.5, 67.5, 112.5, 157.5), (66, 49, 77, 54)
    values = rng.uniform(0, 180, 40)
    grid = np.linspace(-22.5, 157.5, 360_001)[:-1]
    vals = -22.5 + np.mod(values + 22.5, 180)
    fm = np.searchsorted(np.sort(vals), grid, side="right") / len(vals)
    fd = np.interp(grid, edges, np.concatenate([[0], np.cumsum(counts) / np.sum(counts)]))
    g = fm - fd
    brute = min(np.abs(g - c).mean() * 180 for c in np.linspace(g.min(), g.max(), 2001))
    assert circular_wasserstein(values, edges, counts) == pytest.approx(brute, rel=2e-3)


def test_normalised_similarity_is_comparable_across_unit_counts():
    small = [rf_similarity(sample("biological", 16, 16, seed=s)) for s in range(100, 110)]
    large = rf_similarity(sample("biological", 512, 512, seed=100))
    # raw scores of data-like units depend on n (KS sampling noise); normalised ones are ~1 at both
    assert np.mean([d["rf_similarity"] for d in small]) < large["rf_similarity"] - 0.05
    assert np.mean([d["rf_normsim"] for d in small]) == pytest.approx(1.0, abs=0.03)
    assert large["rf_normsim"] == pytest.approx(1.0, abs=0.02)
    # the ceiling is the mean aggregate score of 20 biological draws of the same size (seeds 0..19)
    draws = [rf_similarity(sample("biological", 16, 16, seed=k), normalise=False)["rf_similarity"] for k in range(20)]
    assert small[0]["rf_similarity_ceiling"] == pytest.approx(np.mean(draws), abs=1e-12)
    assert small[0]["rf_normsim"] == pytest.approx(small[0]["rf_similarity"] / np.mean(draws))


def test_effective_sf_recovers_a_wide_gabor_and_flags_truncation():
    ppd = 32.0
    half = 48
    i, j = np.mgrid[-half:half + 1, -half:half + 1]
    def kernel(sf_cpd, n_cycles, size):
        f = sf_cpd / ppd
        sigma = n_cycles / f
        k = np.exp(-0.5 * (i ** 2 + j ** 2) / sigma ** 2) * np.cos(2 * np.pi * f * i)
        c = half - size // 2
        return k[c:c + size, c:c + size]
    # a filter that fits its kernel is read at its nominal SF (within the 1/128 grid step)
    got = effective_sf(np.stack([kernel(4.0, 1.0, 97)]), ppd, pad=256)
    assert got[0] == pytest.approx(4.0, abs=ppd / 256)
    # a low-SF filter truncated to 15 px reads far from nominal (> 0.5 octave)
    low = effective_sf(np.stack([kernel(0.6, 1.0, 15)]), ppd)
    assert abs(np.log2(low[0] / 0.6)) > 0.5
