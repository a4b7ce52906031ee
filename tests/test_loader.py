"""BatchLoader (coverage, seeding, identity without augmentation) and Augment (statistics, torchvision parity)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v1sweep.config.trial import DataConfig
from v1sweep.data import Augment, BatchLoader, normalize


def indexed_images(n: int, size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i holds i % 256 in channel 0 and i // 256 in channel 1, so a batch tells its indices."""
    idx = torch.arange(n)
    x = torch.zeros((n, 3, size, size), dtype=torch.uint8)
    x[:, 0] = (idx % 256).to(torch.uint8)[:, None, None]
    x[:, 1] = (idx // 256).to(torch.uint8)[:, None, None]
    return x, idx.clone()


def batch_indices(xb: torch.Tensor) -> torch.Tensor:
    """Invert `indexed_images` on a normalised batch."""
    u8 = torch.round((xb * 0.5 + 0.5) * 255).long()
    return u8[:, 0, 0, 0] + 256 * u8[:, 1, 0, 0]


def test_normalize_matches_the_study_formula():
    x = torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8).view(1, 1, 1, 5).expand(1, 3, 1, 5).contiguous()
    before = x.clone()
    y = normalize(x)
    ref = (x.double() / 255 - 0.5) / 0.5
    assert y.dtype == torch.float32 and torch.allclose(y.double(), ref, atol=1e-6)
    assert y[0, 0, 0, 0] == -1 and y[0, 0, 0, -1] == 1
    assert torch.equal(x, before)
    f = torch.rand(2, 3, 4, 4)
    f_before = f.clone()
    assert torch.allclose(normalize(f), (f - 0.5) / 0.5) and torch.equal(f, f_before)


@pytest.mark.parametrize("n,bs,drop_last", [(103, 10, False), (103, 10, True), (100, 25, False), (7, 64, False)])
def test_every_sample_exactly_once_per_epoch(n, bs, drop_last):
    x, y = indexed_images(n)
    loader = BatchLoader(x, y, bs, shuffle=True, seed=3, device="cpu", drop_last=drop_last)
    expected_batches = n // bs if drop_last else math.ceil(n / bs)
    assert len(loader) == expected_batches
    for epoch in range(2):
        loader.set_epoch(epoch)
        seen = []
        batches = list(loader)
        assert len(batches) == expected_batches
        for xb, yb in batches:
            assert xb.dtype == torch.float32 and yb.dtype == torch.int64 and xb.shape[1:] == (3, 4, 4)
            assert torch.equal(batch_indices(xb), yb)  # labels stay with their images
            seen.append(yb)
        seen = torch.cat(seen)
        if drop_last:
            assert len(seen) == expected_batches * bs and len(set(seen.tolist())) == len(seen)
        else:
            assert sorted(seen.tolist()) == list(range(n))


def test_permutation_per_epoch_and_seed():
    x, y = indexed_images(200)

    def order(seed, epoch):
        loader = BatchLoader(x, y, 32, shuffle=True, seed=seed, device="cpu")
        loader.set_epoch(epoch)
        return torch.cat([yb for _, yb in loader])

    e0, e1 = order(0, 0), order(0, 1)
    assert not torch.equal(e0, e1)
    assert torch.equal(e0, order(0, 0)) and torch.equal(e1, order(0, 1))  # reproducible (resume)
    assert not torch.equal(e0, order(1, 0))
    assert not torch.equal(e0, torch.arange(200))
    plain = BatchLoader(x, y, 32, shuffle=False, device="cpu")
    assert torch.equal(torch.cat([yb for _, yb in plain]), torch.arange(200))


def test_augment_off_is_exact_identity():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50, 3, 8, 8), generator=gen, dtype=torch.uint8)
    y = torch.arange(50)
    for augment in (None, Augment(rotation=0, translate=0, scale=(1, 1), hflip=False)):
        loader = BatchLoader(x, y, 16, shuffle=True, seed=1, device="cpu", augment=augment)
        loader.set_epoch(2)
        for xb, yb in loader:
            assert torch.equal(xb, normalize(x[yb]))
    assert Augment.from_config(DataConfig(augment=False)) is None
    a = Augment.from_config(DataConfig(rotation=10, translate=0.1, scale_min=1.0, scale_max=1.5, hflip=False))
    assert a == Augment(rotation=10, translate=0.1, scale=(1.0, 1.5), hflip=False)
    assert Augment.from_config(DataConfig()) == Augment()  # the config defaults are the study's


def test_augmented_loader_is_seeded():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 16, 16), generator=gen, dtype=torch.uint8)
    y = torch.arange(40)

    def run(seed, epoch):
        loader = BatchLoader(x, y, 16, shuffle=True, seed=seed, device="cpu", augment=Augment())
        loader.set_epoch(epoch)
        return torch.cat([xb for xb, _ in loader])

    assert torch.equal(run(0, 0), run(0, 0))
    assert not torch.equal(run(0, 0), run(0, 1))
    a, labels = run(0, 0), torch.cat([yb for _, yb in BatchLoader(x, y, 16, seed=0, device="cpu")])
    assert not torch.equal(a, normalize(x[labels]))  # something was augmented


def test_augment_matches_torchvision_functional():
    """Same parameters -> same pixels as torchvision's F.affine (nearest, fill 0) followed by F.hflip."""
    tvf = pytest.importorskip("torchvision.transforms.functional")
    from torchvision.transforms import InterpolationMode

    gen = torch.Generator().manual_seed(0)
    for h, w in ((32, 32), (24, 40)):
        imgs = torch.rand((24, 3, h, w), generator=gen)
        aug = Augment(rotation=30, translate=0.1, scale=(0.8, 1.3), hflip=True)
        params = aug.sample(24, h, w, gen)
        ours = aug.apply(imgs, params)
        for i in range(24):
            ref = tvf.affine(imgs[i], angle=float(params["angle"][i]),
                             translate=[int(params["tx"][i]), int(params["ty"][i])],
                             scale=float(params["scale"][i]), shear=[0.0, 0.0],
                             interpolation=InterpolationMode.NEAREST, fill=0.0)
            if params["flip"][i]:
                ref = tvf.hflip(ref)
            mismatch = (ours[i] != ref).any(dim=0).float().mean().item()
            assert mismatch < 0.01, (h, w, i, mismatch)  # only rounding ties of nearest may differ


def _bar_angle(img: torch.Tensor) -> float:
    """Orientation (degrees, counter-clockwise from horizontal) of the bright pixels' principal axis."""
    ys, xs = torch.nonzero(img > 0.5, as_tuple=True)
    xs, ys = xs.double() - xs.double().mean(), -(ys.double() - ys.double().mean())  # y up
    cxx, cyy, cxy = (xs * xs).mean(), (ys * ys).mean(), (xs * ys).mean()
    return math.degrees(0.5 * math.atan2(2 * cxy, cxx - cyy))


def test_rotation_range_measured_on_a_bar():
    size = 65
    bar = torch.zeros(1, 1, size, size)
    bar[0, 0, size // 2 - 1:size // 2 + 2, 8:-8] = 1.0  # horizontal bar through the centre
    n = 400
    aug = Augment(rotation=30, translate=0, scale=(1, 1), hflip=False, interpolation="bilinear")
    gen = torch.Generator().manual_seed(7)
    params = aug.sample(n, size, size, gen)
    out = aug.apply(bar.expand(n, 1, size, size).contiguous(), params)
    measured = np.array([_bar_angle(out[i, 0]) for i in range(n)])
    assert np.abs(measured).max() <= 31.0  # within +-30 (plus measurement error)
    assert measured.min() < -26 and measured.max() > 26  # and the range is used
    # torchvision's convention (F.affine docs): a positive angle turns the image clockwise
    assert np.abs(measured + params["angle"].numpy()).max() < 1.5
    assert abs(measured.mean()) < 3.0 and 14 < measured.std() < 20  # uniform(-30, 30): std 17.3


def test_flip_rate_and_parameter_distributions():
    size, n = 32, 4000
    left = torch.zeros(1, 1, size, size)
    left[..., : size // 2] = 1.0
    gen = torch.Generator().manual_seed(11)
    aug = Augment()
    params = aug.sample(n, size, size, gen)
    flips_only = Augment(rotation=0, translate=0, scale=(1, 1), hflip=True)
    out = flips_only.apply(left.expand(n, 1, size, size).contiguous(), params)
    right_bright = (out[:, 0, :, size // 2:].mean(dim=(1, 2)) > 0.5)
    assert torch.equal(right_bright, params["flip"])
    assert abs(right_bright.float().mean().item() - 0.5) < 0.04
    angle, tx, ty, scale = params["angle"], params["tx"], params["ty"], params["scale"]
    assert angle.abs().max() <= 30 and angle.min() < -29 and angle.max() > 29
    max_shift = round(0.05 * size)  # torchvision: round(uniform(-1.6, 1.6)) for 32 px
    assert torch.equal(tx, tx.round()) and tx.abs().max() == max_shift and ty.abs().max() == max_shift
    assert set(tx.long().tolist()) == {-2, -1, 0, 1, 2}
    # P(round(U(-1.6, 1.6)) == 0) = 1/3.2
    assert abs((tx == 0).float().mean().item() - 1 / 3.2) < 0.03
    assert scale.min() >= 1.0 and scale.max() <= 1.2 and abs(scale.mean().item() - 1.1) < 0.01


def test_fill_is_black_and_centre_is_kept():
    white = torch.ones(1, 3, 32, 32)
    params = {"angle": torch.tensor([30.0]), "tx": torch.tensor([0.0]), "ty": torch.tensor([0.0]),
              "scale": torch.tensor([1.0]), "flip": torch.tensor([False])}
    out = Augment().apply(white, params)
    assert (out[0, :, 0, 0] == 0).all() and (out[0, :, 16, 16] == 1).all()
    # through the loader, the black fill becomes -1 after normalisation
    x = torch.full((64, 3, 32, 32), 255, dtype=torch.uint8)
    loader = BatchLoader(x, torch.zeros(64, dtype=torch.int64), 64, seed=0, device="cpu",
                         augment=Augment(rotation=30, translate=0, scale=(1, 1), hflip=False))
    xb, _ = next(iter(loader))
    assert xb.min() == -1 and xb.max() == 1 and (xb[:, :, 16, 16] == 1).all()


def test_bad_arguments_are_rejected():
    x, y = indexed_images(10)
    with pytest.raises(ValueError, match="uint8"):
        BatchLoader(x.float(), y, 4, device="cpu")
    with pytest.raises(ValueError, match="labels must have shape"):
        BatchLoader(x, y[:5], 4, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(x, y, 0, device="cpu")
    with pytest.raises(ValueError, match="scale"):
        Augment(scale=(1.2, 1.0))
    with pytest.raises(ValueError, match="interpolation"):
        Augment(interpolation="bicubic")


@pytest.mark.gpu
def test_loader_on_cuda_covers_every_sample():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x, y = indexed_images(300, size=16)
    loader = BatchLoader(x, y, 64, seed=0, device="cuda", augment=Augment())
    assert loader.images.is_cuda
    loader.set_epoch(1)
    seen = []
    for xb, yb in loader:
        assert xb.is_cuda and yb.is_cuda and xb.dtype == torch.float32
        seen.append(yb.cpu())
    assert sorted(torch.cat(seen).tolist()) == list(range(300))
    plain = BatchLoader(x, y, 64, seed=0, device="cuda")
    for xb, yb in plain:
        assert torch.equal(batch_indices(xb.cpu()), yb.cpu())
