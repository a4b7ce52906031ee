"""In-silico electrophysiology: grating protocol, property formulas, Gabor recovery, V1 scores."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from v1sweep.analysis import neurophysiology as nphys
from v1sweep.analysis.gratings import SFS, GratingProtocol, make_gratings
from v1sweep.analysis.v1_benchmarks import get_benchmark, list_benchmarks
from v1sweep.frontend import VOneBlock
from v1sweep.rf.params import RFParams

ORI12 = np.arange(0, 180, 15.0)


# ----------------------------------------------------------------------------- protocol
def test_protocol_grid_and_nyquist():
    assert len(SFS) == 22
    assert np.allclose(np.diff(np.log2(SFS)), 0.25)
    assert SFS[0] == pytest.approx(2 ** -1.375) and SFS[-1] == pytest.approx(2 ** 3.875)
    p = GratingProtocol(image_size=32, visual_degrees=2.0)  # ppd 16 -> Nyquist 8 cpd
    assert max(p.sfs) <= 8.0 and len(p.sfs) + len(p.skipped_sfs) == 22
    assert all(f > 8.0 for f in p.skipped_sfs) and "Nyquist" in p.note
    assert p.shape == (3, len(p.sfs), 12, 8) and len(p) == int(np.prod(p.shape))
    with pytest.raises(ValueError, match="Nyquist"):
        GratingProtocol(image_size=8, visual_degrees=8.0, sfs=(4.0,))


def test_grating_pixels_follow_the_formula():
    size, deg = 33, 3.0
    ppd = size / deg
    img = make_gratings([2.0], [30.0], [45.0], [1.0], image_size=size, visual_degrees=deg)[0].double()
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    i, j = (rows - size // 2) / ppd, (cols - size // 2) / ppd
    t = np.deg2rad(30.0)
    expected = 0.5 + 0.5 * np.cos(2 * np.pi * 2.0 * (i * np.cos(t) + j * np.sin(t)) + np.deg2rad(45.0))
    expected[i ** 2 + j ** 2 > 1.0] = 0.5
    assert np.allclose(img.numpy(), expected, atol=1e-6)
    # theta = 0: the carrier runs along rows (RFParams convention), constant along each row
    flat = make_gratings([2.0], [0.0], [0.0], [10.0], image_size=size, visual_degrees=deg)[0]
    assert torch.allclose(flat, flat[:, :1].expand_as(flat))


# ----------------------------------------------------------------------------- formulas
def test_circular_variance_of_cos2_curve_is_one_half():
    for theta0 in (0.0, 20.0, 77.0):
        curve = np.cos(np.deg2rad(ORI12 - theta0)) ** 2
        # sum cos^2 e^{2i theta} = 12/4 e^{2i theta0} and sum cos^2 = 6 (12 uniform samples) -> CV = 1/2
        assert nphys.circular_variance(curve, ORI12) == pytest.approx(0.5, abs=1e-12)
    assert nphys.circular_variance(np.ones(12), ORI12) == pytest.approx(1.0)
    delta = np.zeros(12)
    delta[4] = 3.0
    assert nphys.circular_variance(delta, ORI12) == pytest.approx(0.0, abs=1e-12)


def test_circular_variance_matches_a_loop():
    rng = np.random.default_rng(0)
    curves = rng.random((20, 12))
    fast = nphys.circular_variance(curves, ORI12)
    for c, v in zip(curves, fast):
        re = sum(r * np.cos(2 * np.deg2rad(t)) for r, t in zip(c, ORI12))
        im = sum(r * np.sin(2 * np.deg2rad(t)) for r, t in zip(c, ORI12))
        assert v == pytest.approx(1 - np.hypot(re, im) / np.abs(c).sum(), abs=1e-12)


def _bandwidth_reference(curve: np.ndarray, step: float) -> float:
    """Brute force: walk the periodic linear interpolation on a 0.001-deg grid from the peak."""
    n = len(curve)
    peak = int(np.argmax(curve))
    thr = curve[peak] / np.sqrt(2)
    grid = np.arange(0, 90 + 1e-9, 0.001)
    xs = np.arange(n + 1) * step
    halves = []
    for sign in (1, -1):
        vals = np.interp(grid, xs, np.r_[curve, curve[0]][(peak + sign * np.arange(n + 1)) % n])
        below = np.flatnonzero(vals < thr)
        halves.append(grid[below[0]] if len(below) else 90.0)
    return float(np.mean(halves))


def test_orientation_bandwidth_triangle_and_reference():
    # Triangle: 1 at the peak, linear to 0 at +-45 deg -> half-width 45 (1 - 1/sqrt(2)) exactly.
    dist = np.minimum(np.abs(ORI12 - 60.0), 180 - np.abs(ORI12 - 60.0))
    tri = np.clip(1 - dist / 45.0, 0, None)
    assert nphys.orientation_bandwidth(tri, 15.0)[0] == pytest.approx(45 * (1 - 1 / np.sqrt(2)), abs=1e-9)
    assert nphys.orientation_bandwidth(np.ones(12), 15.0)[0] == pytest.approx(90.0)
    rng = np.random.default_rng(1)
    curves = rng.random((15, 12)) ** 3
    fast = nphys.orientation_bandwidth(curves, 15.0)
    for c, v in zip(curves, fast):
        assert v == pytest.approx(_bandwidth_reference(c, 15.0), abs=2e-3)


def test_orth_pref_ratio_and_preferred_orientation():
    curve = 1.0 + np.cos(np.deg2rad(2 * (ORI12 - 45.0)))  # peak 2 at 45, orthogonal (135) 0
    assert nphys.orth_pref_ratio(curve)[0] == pytest.approx(0.0, abs=1e-12)
    curve2 = curve + 1.0
    assert nphys.orth_pref_ratio(curve2)[0] == pytest.approx(1.0 / 3.0)
    # a parabola sampled around 52 deg: the 3-point vertex recovers 52 exactly (also across 0/180)
    for true in (52.0, 3.0, 176.0):
        d = (ORI12 - true + 90) % 180 - 90
        par = 10 - (d / 15.0) ** 2
        assert nphys.preferred_orientation(par, ORI12)[0] == pytest.approx(true % 180, abs=1e-9)


def test_peak_sf_and_sf_bandwidth():
    sfs = np.asarray(SFS)
    log_sf = np.log2(sfs)
    true = 2 ** 1.1
    par = 5 - ((log_sf - np.log2(true)) / 0.25) ** 2
    assert nphys.peak_sf(par, sfs)[0] == pytest.approx(true, rel=1e-9)
    # triangle in log2 SF centred on a grid point, half-width w octaves at zero:
    # 1/sqrt(2) crossings at +-d, d = w (1 - 1/sqrt(2)); % = 100 (2^d - 2^-d) / (2^d + 2^-d)
    w, mu = 1.5, log_sf[10]
    tri = np.clip(1 - np.abs(log_sf - mu) / w, 0, None)
    pct, octv = nphys.sf_bandwidth(tri, sfs)
    d = w * (1 - 1 / np.sqrt(2))
    assert octv[0] == pytest.approx(2 * d, abs=1e-9)
    assert pct[0] == pytest.approx(100 * (2 ** d - 2 ** -d) / (2 ** d + 2 ** -d), abs=1e-7)
    low_pass = 1.0 / (1.0 + sfs)  # never falls on the low side -> not band-pass -> NaN
    assert np.isnan(nphys.sf_bandwidth(low_pass, sfs)[0][0])


def test_modulation_ratio_formula():
    phases = np.deg2rad(np.arange(0, 360, 45.0))
    rect = np.maximum(0, np.cos(phases + 0.3))
    dc, ac = nphys.modulation_ratio(rect[None])
    # by hand: DC = mean; AC = 2 |sum r e^{-i phi}| / 8
    assert dc[0] == pytest.approx(rect.mean())
    assert ac[0] == pytest.approx(2 * abs(np.sum(rect * np.exp(-1j * phases))) / 8)
    lin = 3.0 + 2.0 * np.cos(phases - 1.0)
    dc, ac = nphys.modulation_ratio(lin[None])
    assert (dc[0], ac[0]) == (pytest.approx(3.0), pytest.approx(2.0))
    dc, _ = nphys.modulation_ratio(lin[None], baseline=np.array([1.0]))
    assert dc[0] == pytest.approx(2.0)


# ----------------------------------------------------------------------------- Gabor recovery
THETAS = np.array([0, 30, 60, 90, 120, 150, 15, 45, 75, 105, 135, 165], float)
SF_TRUE = np.array([2, 3, 5, 2.5, 4, 1.5, 2, 3, 5, 2.5, 4, 1.5], float)


@pytest.fixture(scope="module")
def gabor_units() -> pd.DataFrame:
    n = len(THETAS)
    rf = RFParams(sf=SF_TRUE, theta=THETAS, phase=np.linspace(0, 330, n), nx=np.full(n, 0.7),
                  ny=np.full(n, 0.8), color=np.arange(n) % 3, complex=np.arange(n) >= 6)
    block = VOneBlock(rf, image_size=64, visual_degrees=4.0, ksize=31, stride=2, k_exc=25.0)
    protocol = GratingProtocol(image_size=64, visual_degrees=4.0, radii=(1.0, 2.0))
    resp, base = nphys.measure_responses(block, protocol, batch_size=1024)
    assert np.allclose(base, 0.0)  # mid-grey is 0 after normalisation: the block is silent
    return nphys.unit_properties(resp, protocol, base)


def test_gabor_block_recovers_orientation_and_sf(gabor_units):
    d = np.abs((gabor_units["preferred_orientation"] - THETAS + 90) % 180 - 90)
    assert (d <= 7.5).all(), d.tolist()  # within half a grating step
    err_oct = np.abs(np.log2(gabor_units["peak_sf"] / SF_TRUE))
    assert (err_oct <= 0.25).all(), err_oct.tolist()
    assert gabor_units["responsive"].all()


def test_gabor_simple_and_complex_modulation(gabor_units):
    mr = gabor_units["modulation_ratio"].to_numpy()
    assert (mr[:6] > 1).all() and (mr[6:] < 1).all(), mr.tolist()
    # half-wave rectified sinusoid sampled at 8 phases: F1/F0 about pi/2
    assert np.all(np.abs(mr[:6] - np.pi / 2) < 0.2)
    assert list(gabor_units["cell_type"]) == ["simple"] * 6 + ["complex"] * 6
    # a Gabor with 0.7-0.8 carrier periods under the envelope is sharply tuned
    assert (gabor_units["circular_variance"] < 0.3).all()
    assert (gabor_units["orientation_bandwidth"] < 20).all()
    assert (gabor_units["orth_pref_ratio"] < 0.05).all()


def test_batching_does_not_change_responses():
    rf = RFParams(sf=np.array([2.0, 3.0]), theta=np.array([10.0, 100.0]), phase=np.array([0.0, 90.0]),
                  nx=np.array([0.5, 0.6]), ny=np.array([0.5, 0.9]), color=np.array([0, 2]),
                  complex=np.array([False, True]))
    block = VOneBlock(rf, image_size=32, visual_degrees=2.0, ksize=15, stride=2, k_exc=1.0)
    protocol = GratingProtocol(image_size=32, visual_degrees=2.0, sfs=(1.0, 2.0, 4.0), radii=(1.0,))
    a, _ = nphys.measure_responses(block, protocol, batch_size=7)
    b, _ = nphys.measure_responses(block, protocol, batch_size=1000)
    assert np.allclose(a, b, atol=1e-6)
    # one condition by hand: the centre output of the block for that grating
    x = make_gratings([2.0], [30.0], [45.0], [1.0], image_size=32, visual_degrees=2.0)
    direct = block(((x - 0.5) / 0.5)[:, None].expand(-1, 3, -1, -1))[0, :, 8, 8]
    k = (protocol.sfs.index(2.0), protocol.orientations.index(30.0), protocol.phases.index(45.0))
    assert np.allclose(a[:, 0, k[0], k[1], k[2]], direct.numpy(), atol=1e-6)


@pytest.mark.parametrize("ksize,position", [(15, None), (15, (3, 12)), (41, (0, 15))])
def test_fast_patch_path_equals_the_full_forward(ksize, position):
    rng = np.random.default_rng(3)
    n = 10
    rf = RFParams(sf=rng.uniform(1, 6, n), theta=rng.uniform(0, 180, n), phase=rng.uniform(0, 360, n),
                  nx=rng.uniform(0.2, 1, n), ny=rng.uniform(0.2, 1, n), color=rng.integers(0, 3, n),
                  complex=np.arange(n) >= 4)
    block = VOneBlock(rf, image_size=32, visual_degrees=2.0, ksize=ksize, stride=2, k_exc=25.0)
    protocol = GratingProtocol(image_size=32, visual_degrees=2.0, sfs=(1.0, 3.0), radii=(0.7,),
                               orientations=tuple(ORI12), phases=tuple(np.arange(0, 360, 45.0)))
    fast, _ = nphys.measure_responses(block, protocol, position=position, fast=True)
    full, _ = nphys.measure_responses(block, protocol, position=position, fast=False)
    assert np.abs(fast).max() > 0
    assert np.allclose(fast, full, rtol=1e-4, atol=1e-4 * np.abs(full).max())


# ----------------------------------------------------------------------------- hooks on a full model
def test_layers_of_a_full_model_through_hooks():
    from v1sweep.config import trial as cfgmod
    from v1sweep.trial.models import build_model
    from v1sweep.rf import sample

    cfg = cfgmod.from_dict({"data": {"image_size": 32},
                            "frontend": {"n_simple": 4, "n_complex": 4, "ksize": 15, "visual_degrees": 2.0,
                                         "sf_max": 8.0, "k_exc": 25.0},
                            "model": {"backbone": "tiny", "bottleneck": 8}})
    rf = sample("biological", 4, 4, seed=0, sf_max=8.0)
    torch.manual_seed(0)
    model = build_model(cfg, rf, num_classes=10)
    kw = dict(image_size=32, visual_degrees=2.0, radii=(1.0,), sfs=SFS[4:20:2])
    direct = nphys.electrophysiology(model.vone, **kw)  # fast path: the centre patch only
    hooked = nphys.electrophysiology(model, layer="vone", fast=False, **kw)  # full forward + hook
    cols = list(nphys.PROPERTY_COLUMNS)
    pd.testing.assert_frame_equal(direct.units[cols], hooked.units[cols], rtol=1e-4, atol=1e-5)
    later = nphys.electrophysiology(model, layer="bottleneck", **kw)
    assert len(later.units) == 8 and set(later.scores["benchmark"]) == set(list_benchmarks())
    assert model.training  # mode restored


# ----------------------------------------------------------------------------- V1 scores
def _units_from_histogram(bench_name: str, cell_type: str = "simple") -> pd.DataFrame:
    bench = get_benchmark(bench_name)
    e = np.asarray(bench.edges)
    centres = (e[:-1] + e[1:]) / 2
    values = np.repeat(centres, np.asarray(bench.counts, dtype=int))
    return pd.DataFrame({bench.property: values, "responsive": True, "cell_type": cell_type})


@pytest.mark.parametrize("name", list_benchmarks(scored_only=True))
def test_identical_distribution_scores_one(name):
    bench = get_benchmark(name)
    cell = bench.cells if bench.cells != "all" else "simple"
    units = _units_from_histogram(name, cell)
    table = nphys.compare_to_v1(units, [name])
    assert table.loc[0, "score"] == pytest.approx(1.0)
    assert table.loc[0, "n_model"] == bench.n
    boot = nphys.compare_to_v1(units, [name], n_boot=50, seed=0)
    assert 0.75 < boot.loc[0, "score"] <= 1.0


def test_point_mass_scores_near_zero_and_cell_filter():
    bench = get_benchmark("sf_bandwidth")
    units = pd.DataFrame({"sf_bandwidth": np.full(40, 99.0), "responsive": True, "cell_type": "complex"})
    assert nphys.compare_to_v1(units, ["sf_bandwidth"]).loc[0, "score"] < 0.05
    # the simple-cell benchmark sees no simple units: reported, not scored
    row = nphys.compare_to_v1(units, ["sf_bandwidth/simple"]).iloc[0]
    assert np.isnan(row["score"]) and row["n_model"] == 0 and "no responsive" in row["note"]
    assert bench.n == 73


def test_ringach_entries_need_counts():
    units = pd.DataFrame({"circular_variance": np.linspace(0, 1, 30), "responsive": True, "cell_type": "simple"})
    row = nphys.compare_to_v1(units, ["circular_variance"]).iloc[0]
    assert np.isnan(row["score"]) and "not bundled" in row["note"]
    counts = np.histogram(units["circular_variance"], bins=get_benchmark("circular_variance").edges)[0]
    mine = get_benchmark("circular_variance").with_counts(counts, "test counts")
    assert nphys.compare_to_v1(units, [mine]).loc[0, "score"] == pytest.approx(1.0)


def test_orientation_wraps_into_de_valois_bins():
    units = pd.DataFrame({"preferred_orientation": [170.0, 10.0, 100.0], "responsive": True,
                          "cell_type": "simple"})
    vals = get_benchmark("preferred_orientation").select(units)
    assert np.allclose(sorted(vals), [-10.0, 10.0, 100.0])


def test_property_histogram_figure(tmp_path, gabor_units):
    path = nphys.plot_property_histograms(gabor_units, tmp_path / "props.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_benchmark_ceiling_is_the_score_of_data_samples_and_flags_unresolvable():
    from v1sweep.rf.similarity import ks_similarity

    counts = np.array([2.0, 90.0, 6.0, 2.0])
    edges = np.arange(5.0)
    n, draws = 30, 400
    got = nphys.benchmark_ceiling(counts, n, draws, np.random.default_rng(1))
    # textbook: draw n values from the data histogram (uniform inside bins) and score them
    rng = np.random.default_rng(2)
    direct = []
    for _ in range(draws):
        b = rng.choice(4, size=n, p=counts / counts.sum())
        direct.append(ks_similarity(b + rng.uniform(0, 1, n), edges, counts))
    assert got["ceiling"] == pytest.approx(np.mean(direct), abs=0.02)
    assert got["resolvable"]  # 30 units tell this peaked histogram from flat
    flat_data = nphys.benchmark_ceiling([25, 24, 26, 25], 16, draws, np.random.default_rng(1))
    assert not flat_data["resolvable"]  # a near-flat histogram cannot be told from flat
    units = pd.DataFrame({"preferred_orientation": np.random.default_rng(0).uniform(0, 180, 16),
                          "responsive": True, "cell_type": "simple"})
    row = nphys.compare_to_v1(units, ["preferred_orientation"], ceiling_draws=200).iloc[0]
    assert row.norm_score == pytest.approx(row.score / row.ceiling) and not row.resolvable
    assert "not resolvable" in row.note
