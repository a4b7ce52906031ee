"""V1 front-end: Gabor convention, fast block vs a naive dense formulation, noise, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from v1sweep.frontend import VOneBlock, gabor_kernels
from v1sweep.rf.params import RFParams


def make_rf(n_simple: int, n_complex: int, seed: int = 0, sf_max: float = 11.0, colors=(0, 1, 2),
            split_colour: bool = False) -> RFParams:
    """Random RF parameters drawn directly with numpy (independent of the samplers).

    `split_colour`: the quadrature filters draw their own channel (the 2020 VOneNet code)."""
    rng = np.random.default_rng(seed)
    n = n_simple + n_complex
    color = rng.choice(np.asarray(colors), n).astype(np.int64)
    return RFParams(
        sf=np.exp(rng.uniform(np.log(0.5), np.log(sf_max), n)),
        theta=rng.uniform(0, 180, n), phase=rng.uniform(0, 360, n),
        nx=10 ** rng.uniform(-1, 0.2, n), ny=10 ** rng.uniform(-1, 0.2, n),
        color=color, complex=np.r_[np.zeros(n_simple, bool), np.ones(n_complex, bool)],
        color_quadrature=rng.choice(np.asarray(colors), n).astype(np.int64) if split_colour else None)


def scalar_gabor(sf, theta_deg, phase_deg, nx, ny, ppd, ksize) -> np.ndarray:
    """The published VOneNet formula, one pixel at a time (obviously correct, slow)."""
    f = sf / ppd
    sx, sy = nx / f, ny / f
    t, p = math.radians(theta_deg), math.radians(phase_deg)
    half = ksize // 2
    g = np.zeros((ksize, ksize))
    for a in range(ksize):
        for b in range(ksize):
            i, j = a - half, b - half
            xr = i * math.cos(t) + j * math.sin(t)
            yr = -i * math.sin(t) + j * math.cos(t)
            g[a, b] = (math.exp(-0.5 * (xr ** 2 / sx ** 2 + yr ** 2 / sy ** 2)) / (2 * math.pi * sx * sy)
                       * math.cos(2 * math.pi * f * xr + p))
    return g


def naive_vone(x, rf, *, image_size, visual_degrees, ksize, stride, k_exc) -> torch.Tensor:
    """Per-unit loop, as the published VOneNet: two dense 3-channel filter banks (q0 at the unit's
    phase, q1 at phase + 90), each kernel zero except on the one channel its bank drew for the unit."""
    ppd = image_size / visual_degrees
    outs = []
    for u in range(len(rf)):
        def response(phase_deg, channel):
            w = torch.zeros(1, 3, ksize, ksize, dtype=x.dtype)
            w[0, int(channel)] = torch.as_tensor(
                scalar_gabor(rf.sf[u], rf.theta[u], phase_deg, rf.nx[u], rf.ny[u], ppd, ksize), dtype=x.dtype)
            return F.conv2d(x, w, stride=stride, padding=ksize // 2)
        q0 = response(rf.phase[u], rf.color[u])
        if rf.complex[u]:
            q1 = response(rf.phase[u] + 90, rf.color_quadrature[u])
            outs.append(k_exc * torch.sqrt(q0 ** 2 + q1 ** 2) / math.sqrt(2))
        else:
            outs.append(k_exc * torch.relu(q0))
    return torch.cat(outs, 1)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# ------------------------------------------------------------------------ Gabor bank
def test_gabor_kernels_match_scalar_formula():
    rf = make_rf(5, 4, seed=1)
    k = gabor_kernels(rf, image_size=64, visual_degrees=2, ksize=15, dtype=torch.float64)
    q = gabor_kernels(rf, image_size=64, visual_degrees=2, ksize=15, phase_offset=90, dtype=torch.float64)
    assert k.shape == (9, 15, 15) and k.dtype == torch.float64
    for u in range(len(rf)):
        ref = scalar_gabor(rf.sf[u], rf.theta[u], rf.phase[u], rf.nx[u], rf.ny[u], 32.0, 15)
        ref_q = scalar_gabor(rf.sf[u], rf.theta[u], rf.phase[u] + 90, rf.nx[u], rf.ny[u], 32.0, 15)
        np.testing.assert_allclose(k[u].numpy(), ref, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(q[u].numpy(), ref_q, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("sf,theta", [(2.0, 0.0), (4.0, 30.0), (8.0, 90.0), (5.0, 135.0), (3.0, 160.0)])
def test_gabor_fft_peak_at_requested_sf_and_orientation(sf, theta):
    image_size, degrees, ksize, pad = 64, 2.0, 95, 512
    rf = RFParams(sf=np.array([sf]), theta=np.array([theta]), phase=np.array([0.0]), nx=np.array([1.2]),
                  ny=np.array([1.2]), color=np.array([0]), complex=np.array([False]))
    k = gabor_kernels(rf, image_size=image_size, visual_degrees=degrees, ksize=ksize, dtype=torch.float64)[0]
    spectrum = np.abs(np.fft.fft2(k.numpy(), s=(pad, pad)))
    a, b = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    freqs = np.fft.fftfreq(pad)  # cycles/pixel
    f_row, f_col = freqs[a], freqs[b]
    f_expected = sf / (image_size / degrees)
    assert abs(math.hypot(f_row, f_col) - f_expected) <= 1.5 / pad
    # Carrier cos(2 pi f (i cos t + j sin t)): frequency vector (rows, cols) = f (cos t, sin t), up to sign.
    angle = math.degrees(math.atan2(f_col, f_row)) % 180
    diff = min(abs(angle - theta), 180 - abs(angle - theta))
    assert diff <= math.degrees(1.5 / pad / f_expected) + 0.5


def test_orientation_convention_theta0_varies_along_rows():
    rf = RFParams(sf=np.array([4.0]), theta=np.array([0.0]), phase=np.array([0.0]), nx=np.array([0.8]),
                  ny=np.array([0.8]), color=np.array([0]), complex=np.array([False]))
    k = gabor_kernels(rf, image_size=64, visual_degrees=2, ksize=31)[0]
    centre = 15
    assert (k[centre, :] > 0).all()  # along the columns only the envelope changes
    assert (k[:, centre] < 0).any()  # along the rows the carrier changes sign


# ------------------------------------------------------------------------ fast block == naive
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("impl", ["split", "grouped"])
@pytest.mark.parametrize("counts,colors", [((6, 5), (0, 1, 2)), ((0, 4), (0, 2)), ((5, 0), (1,)), ((3, 7), (0, 1, 2))])
def test_block_equals_naive_dense_formulation(stride, impl, counts, colors):
    rf = make_rf(*counts, seed=sum(counts) + stride, colors=colors)
    geom = dict(image_size=24, visual_degrees=1.0, ksize=9, stride=stride, k_exc=25.0)
    torch.manual_seed(0)
    x = torch.randn(3, 3, 24, 24)
    block = VOneBlock(rf, impl=impl, **geom)
    out = block(x)
    ref = naive_vone(x, rf, **geom)
    expected_hw = math.ceil(24 / stride)
    assert out.shape == (3, sum(counts), expected_hw, expected_hw)
    assert rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize("impl", ["split", "grouped"])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])
@pytest.mark.parametrize("counts", [(5, 7), (0, 6)])
def test_quadrature_filter_on_another_colour_equals_naive(impl, grad, counts):
    """vonenet2020: a complex cell's quadrature filter may read another channel than its phase filter."""
    rf = make_rf(*counts, seed=11, split_colour=True)
    assert rf.split_colour
    geom = dict(image_size=24, visual_degrees=1.0, ksize=9, stride=2, k_exc=25.0)
    x = torch.randn(2, 3, 24, 24).requires_grad_(grad)
    out = VOneBlock(rf, impl=impl, **geom)(x)
    ref = naive_vone(x.detach(), rf, **geom)
    assert rel_err(out.detach(), ref) <= 1e-5
    one_colour = RFParams(**{f: getattr(rf, f) for f in ("sf", "theta", "phase", "nx", "ny", "color", "complex")})
    assert rel_err(VOneBlock(one_colour, impl=impl, **geom)(x.detach()), ref) > 1e-2  # the channel matters
    if grad:
        w = torch.randn_like(out)
        (out * w).sum().backward()
        x2 = x.detach().clone().requires_grad_(True)
        (naive_vone(x2, rf, **geom) * w).sum().backward()
        assert rel_err(x.grad, x2.grad) <= 1e-5


def test_block_output_size_is_ceil_of_stride():
    rf = make_rf(2, 2)
    block = VOneBlock(rf, image_size=33, visual_degrees=1.5, ksize=7, stride=2, k_exc=1.0)
    assert block(torch.rand(1, 3, 33, 33)).shape == (1, 4, 17, 17)


def test_block_float64_matches_naive_tightly():
    rf = make_rf(4, 4, seed=5)
    geom = dict(image_size=20, visual_degrees=0.625, ksize=7, stride=2, k_exc=3.0)
    x = torch.randn(2, 3, 20, 20, dtype=torch.float64)
    block = VOneBlock(rf, **geom).double()
    assert rel_err(block(x), naive_vone(x, rf, **geom)) <= 1e-7


def test_block_input_gradient_equals_naive():
    rf = make_rf(3, 3, seed=7)
    geom = dict(image_size=16, visual_degrees=0.5, ksize=7, stride=2, k_exc=5.0)
    x = torch.randn(2, 3, 16, 16) + 2.0
    w = torch.randn(2, 6, 8, 8)
    x1 = x.clone().requires_grad_(True)
    (VOneBlock(rf, **geom)(x1) * w).sum().backward()
    x2 = x.clone().requires_grad_(True)
    (naive_vone(x2, rf, **geom) * w).sum().backward()
    assert rel_err(x1.grad, x2.grad) <= 1e-5


def test_kernels_buffers_are_published_convention_and_not_parameters():
    rf = make_rf(3, 4, seed=2)
    block = VOneBlock(rf, image_size=32, visual_degrees=1.0, ksize=11, stride=2, k_exc=25.0)
    assert list(block.parameters()) == []
    torch.testing.assert_close(block.kernels, gabor_kernels(rf, image_size=32, visual_degrees=1.0, ksize=11))
    torch.testing.assert_close(block.kernels_quadrature, gabor_kernels(
        rf.subset(rf.complex), image_size=32, visual_degrees=1.0, ksize=11, phase_offset=90))
    assert set(block.state_dict()) == {"kernels", "kernels_quadrature"}


def test_load_state_dict_rebuilds_convolution_weights():
    geom = dict(image_size=16, visual_degrees=0.5, ksize=7, stride=1, k_exc=2.0)
    a = VOneBlock(make_rf(3, 3, seed=1, colors=(0,)), **geom)
    b = VOneBlock(make_rf(3, 3, seed=2, colors=(0,)), **geom)
    x = torch.randn(2, 3, 16, 16)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b(x), a(x))


def test_bfloat16_close_to_float32():
    rf = make_rf(4, 4, seed=3)
    block = VOneBlock(rf, image_size=16, visual_degrees=0.5, ksize=7, stride=2, k_exc=25.0)
    x = torch.randn(2, 3, 16, 16)
    ref = block(x)
    out = block.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert rel_err(out.float(), ref) <= 3e-2


# ------------------------------------------------------------------------ noise
def _noise_block(noise: str, **kw) -> VOneBlock:
    return VOneBlock(make_rf(4, 4, seed=11), image_size=16, visual_degrees=0.5, ksize=7, stride=1, noise=noise, **kw)


def test_no_noise_is_deterministic():
    block = _noise_block("none", k_exc=25.0)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(block(x), block(x), rtol=0, atol=0)


@pytest.mark.parametrize("noise", ["gaussian", "neuronal"])
def test_frozen_noise_is_reproducible_and_batch_independent(noise):
    block = _noise_block(noise, k_exc=25.0)
    x = torch.randn(5, 3, 16, 16)
    assert not torch.equal(block(x), block(x))  # fresh noise each call
    block.freeze_noise(3)
    first = block(x)
    torch.testing.assert_close(block(x), first, rtol=0, atol=0)
    torch.testing.assert_close(block(x[:2]), first[:2], rtol=0, atol=0)  # sample i keeps its draw
    other = _noise_block(noise, k_exc=25.0)
    other.freeze_noise(3)
    other(x[:1])  # a smaller batch first must not change later draws
    torch.testing.assert_close(other(x), first, rtol=0, atol=0)
    block.freeze_noise(4)
    assert not torch.equal(block(x), first)
    block.unfreeze_noise()
    assert not block.noise_frozen and not torch.equal(block(x), block(x))


def _clean_and_noisy(noise: str, k_exc: float, **kw):
    clean = _noise_block("none", k_exc=k_exc)
    noisy = _noise_block(noise, k_exc=k_exc, **kw)
    torch.manual_seed(0)
    x = torch.randn(16, 3, 16, 16)
    return clean(x), noisy(x)


def test_gaussian_noise_statistics():
    clean, noisy = _clean_and_noisy("gaussian", k_exc=200.0, noise_scale=0.5)
    assert (noisy >= 0).all()
    big = clean > 4.0  # far from the rectification
    d = (noisy - clean)[big]
    assert d.numel() > 5000
    assert abs(float(d.mean())) < 0.05
    assert abs(float(d.std()) / 0.5 - 1) < 0.05


def test_neuronal_noise_is_poisson_like():
    scale, level = 0.35, 0.07
    clean, noisy = _clean_and_noisy("neuronal", k_exc=8000.0, noise_scale=scale, noise_level=level)
    assert (noisy >= 0).all()
    big = clean > 200.0  # rate >= 70: rectification is > 8 sd away
    assert big.sum() > 5000
    rate = scale * clean[big] + level
    # Noise in the rate domain has variance equal to the rate (Poisson-like), mean zero.
    z = (noisy[big] - clean[big]) * scale / torch.sqrt(rate + 1e-4)
    assert abs(float(z.mean())) < 0.05
    assert abs(float(z.std()) - 1) < 0.05
    # So the response-domain spread grows like sqrt(rate): higher responses are noisier.
    d = (noisy - clean)[big]
    hi = clean[big] > clean[big].median()
    assert d[hi].std() > 1.2 * d[~hi].std()


# ------------------------------------------------------------------------ bad input
def test_even_ksize_is_rejected():
    with pytest.raises(ValueError, match="ksize"):
        VOneBlock(make_rf(2, 2), image_size=16, visual_degrees=0.5, ksize=8, stride=1, k_exc=1.0)
    with pytest.raises(ValueError, match="ksize"):
        gabor_kernels(make_rf(2, 2), image_size=16, visual_degrees=0.5, ksize=4)


def test_sf_above_nyquist_names_units_and_suggests_visual_degrees():
    rf = make_rf(4, 4, sf_max=3.0)
    sf = rf.sf.copy()
    sf[[2, 5]] = [9.0, 12.0]  # 32 px over 2 deg: Nyquist 8 cpd
    bad = RFParams(sf=sf, theta=rf.theta, phase=rf.phase, nx=rf.nx, ny=rf.ny, color=rf.color, complex=rf.complex)
    with pytest.raises(ValueError) as info:
        VOneBlock(bad, image_size=32, visual_degrees=2.0, ksize=7, stride=1, k_exc=1.0)
    msg = str(info.value)
    assert "2 of 8" in msg and "indices 2, 5" in msg and "max sf 12" in msg
    assert "visual_degrees <= 1.333" in msg
    VOneBlock(bad, image_size=32, visual_degrees=1.333, ksize=7, stride=1, k_exc=1.0)  # the suggestion works


@pytest.mark.parametrize("shape", [(3, 16, 16), (2, 1, 16, 16), (2, 4, 16, 16), (2, 3, 16, 16, 1), (2, 3, 18, 16)])
def test_wrong_input_shape(shape):
    block = VOneBlock(make_rf(2, 2), image_size=16, visual_degrees=0.5, ksize=7, stride=1, k_exc=1.0)
    with pytest.raises(ValueError, match="VOneBlock"):
        block(torch.zeros(shape))


@pytest.mark.parametrize("kw,match", [
    (dict(noise="poisson"), "noise"), (dict(stride=0), "stride"), (dict(k_exc=-1.0), "k_exc"),
    (dict(impl="fft"), "impl"), (dict(visual_degrees=0.0), "visual_degrees"),
    (dict(noise="neuronal", noise_scale=0.0), "noise_scale"), (dict(noise_level=-1.0), "noise_level"),
])
def test_bad_options(kw, match):
    opts = dict(image_size=16, visual_degrees=0.5, ksize=7, stride=1, k_exc=1.0)
    opts.update(kw)
    with pytest.raises(ValueError, match=match):
        VOneBlock(make_rf(2, 2), **opts)


@pytest.mark.parametrize("field,value,match", [("nx", 0.0, "rf.nx"), ("sf", -1.0, "rf.sf"),
                                               ("color", 3, "rf.color"), ("theta", np.nan, "rf.theta")])
def test_bad_rf_values(field, value, match):
    rf = make_rf(2, 2)
    values = {f: getattr(rf, f).copy() for f in ("sf", "theta", "phase", "nx", "ny", "color", "complex")}
    values[field][1] = value
    with pytest.raises(ValueError, match=match):
        VOneBlock(RFParams(**values), image_size=16, visual_degrees=0.5, ksize=7, stride=1, k_exc=1.0)


def test_empty_rf_is_rejected():
    empty = make_rf(0, 0)
    with pytest.raises(ValueError, match="no units"):
        VOneBlock(empty, image_size=16, visual_degrees=0.5, ksize=7, stride=1, k_exc=1.0)


# ------------------------------------------------------------------------ integration with the samplers
def test_block_from_sampled_rf_params_equals_naive():
    try:
        from v1sweep.rf import list_strategies, sample
    except ImportError:
        pytest.skip("v1sweep.rf.sample not available")
    geom = dict(image_size=32, visual_degrees=1.0, ksize=9, stride=2, k_exc=25.0)  # Nyquist 16 cpd
    x = torch.randn(2, 3, 32, 32)
    for strategy in ("biological", "unif1"):
        assert strategy in list_strategies()
        rf = sample(strategy, 6, 6, seed=1)
        out = VOneBlock(rf, **geom)(x)
        assert out.shape == (2, 12, 16, 16)
        assert rel_err(out, naive_vone(x, rf, **geom)) <= 1e-5


@pytest.mark.parametrize("preset,split", [("vonenet2020", True), ("tinyimagenet2023", False)])
def test_preset_colour_per_filter(preset, split):
    """vonenet2020 draws the quadrature filter's channel again (2/3 of complex units read two
    channels); tinyimagenet2023 (the 2023 code) uses one channel per unit. The block follows."""
    from v1sweep.rf import sample

    rf = sample("biological", 300, 300, seed=2, preset=preset, sf_max=8.0)
    cplx = rf.complex
    differ = float(np.mean(rf.color[cplx] != rf.color_quadrature[cplx]))
    np.testing.assert_array_equal(rf.color_quadrature[~cplx], rf.color[~cplx])
    if split:
        assert 0.6 < differ < 0.73  # independent uniform draws over 3 channels: 2/3
        assert sorted(np.unique(rf.color_quadrature[cplx])) == [0, 1, 2]
    else:
        assert differ == 0.0
    small = rf.subset(np.r_[np.arange(4), 300 + np.arange(8)])
    geom = dict(image_size=32, visual_degrees=1.0, ksize=9, stride=2, k_exc=25.0)
    x = torch.randn(2, 3, 32, 32)
    assert rel_err(VOneBlock(small, **geom)(x), naive_vone(x, small, **geom)) <= 1e-5
