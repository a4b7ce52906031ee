"""The embedded default dataset: procedurally generated shapes filled with oriented gratings.

Why it exists: `v1sweep train` and the smoke sweep must run from a fresh clone, offline, in
about a minute on a laptop CPU. So the package carries a generator instead of data files.

What it is. Ten classes; each is one *shape* (disc, square, triangle, ring, cross) filled with
one *oriented grating* (orientation 0/45/90/135 degrees, low or high spatial frequency). Every
shape occurs in two classes, which differ either in grating orientation (disc, triangle, cross)
or in grating spatial frequency (square, ring), so no single cue separates the classes:
a classifier needs the shape (low-SF, edge structure) *and* the orientation *and* the spatial
frequency of the texture -- the kind of structure a V1-like Gabor front-end encodes. Within
shape pairs the gratings differ by 90 degrees or by ~2.2x in SF, so the classes stay separable
under the study's +-30 degree rotation augmentation. Nuisance variation, independent of the
class: object position (+-18 % of the image), size (radius 22-34 %), rotation (+-12 degrees,
the grating turns with the shape), grating phase, SF jitter (+-15 %), object and grating colour,
contrast, and a coloured 1/f ("pink", natural-image-like) noise background of random
luminance, colour and contrast, plus a little pixel noise. Object and texture are rendered at
twice the resolution and box-filtered, so edges and fine gratings are anti-aliased.

Deterministic: the same (n, image_size, seed, split) gives identical uint8 tensors on every
machine with the same torch version (CPU torch ops on one thread, so float reductions do not
depend on the core count). Train and test are drawn
from independent streams of the same seed; classes are exactly balanced (labels cycle, then
are shuffled). Any image size >= 8 px works (the range of data.image_size); 32 and 64 px are the intended ones. 2,500 images
of 32 px take well under a second on one CPU core.

What it is not: a benchmark of the study, a stand-in for CIFAR-10 or Tiny ImageNet, or a
measure of corruption robustness. Accuracies on it say only that the pipeline learns; they
are not comparable to any published number.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

SHAPES = ("disc", "square", "triangle", "ring", "cross")
LOW_SF, HIGH_SF = 1.0, 2.2   # grating cycles per object radius (before jitter)

# (shape, grating orientation in degrees, "low" | "high" spatial frequency), one row per class.
CLASS_SPECS: tuple[tuple[str, int, str], ...] = (
    ("disc", 0, "low"), ("disc", 90, "low"),
    ("square", 45, "low"), ("square", 45, "high"),
    ("triangle", 0, "high"), ("triangle", 90, "high"),
    ("ring", 135, "low"), ("ring", 135, "high"),
    ("cross", 45, "high"), ("cross", 135, "high"),
)
CLASSES: tuple[str, ...] = tuple(f"{s}_{o}deg_{f}sf" for s, o, f in CLASS_SPECS)
NUM_CLASSES = len(CLASSES)

_SPLIT_STREAM = {"train": 0, "test": 1}
_CHUNK = 256  # images rendered at once; bounds memory at 64 px


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, well mixed (numpy SeedSequence); stable across platforms."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def generate(n: int, image_size: int = 32, seed: int = 0, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """`n` images of the synthetic task: uint8 (n, 3, S, S) and int64 labels (n,)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if image_size < 8:  # the documented range of data.image_size starts at 8 (v1sweep.config)
        raise ValueError(f"synthetic images need image_size >= 8, got {image_size}")
    if split not in _SPLIT_STREAM:
        raise ValueError(f"split must be one of {sorted(_SPLIT_STREAM)}, got {split!r}")
    gen = torch.Generator().manual_seed(derive_seed(seed, _SPLIT_STREAM[split], image_size))
    labels = torch.arange(n, dtype=torch.int64) % NUM_CLASSES
    labels = labels[torch.randperm(n, generator=gen)]
    images = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
    with _single_threaded():
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            images[start:stop] = _render(labels[start:stop], image_size, gen)
    return images, labels


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """Run torch ops on one thread: the float reductions then do not depend on the core count
    (bit-identical images everywhere), and small ops avoid thread start-up and contention costs
    (on a busy 2-core machine two threads were 10x slower than one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _u(gen: torch.Generator, n: int, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return torch.rand((n, *shape), generator=gen) * (hi - lo) + lo


def pink_noise(n: int, channels: int, size: int, gen: torch.Generator, exponent: float = 1.0) -> torch.Tensor:
    """(n, channels, size, size) noise with amplitude spectrum 1/f^exponent, zero mean, unit std."""
    white = torch.randn((n, channels, size, size), generator=gen)
    spec = torch.fft.rfft2(white)
    fy = torch.fft.fftfreq(size).abs()[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    f = torch.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    amp = f.pow(-exponent)
    amp[0, 0] = 0.0
    noise = torch.fft.irfft2(spec * amp, s=(size, size))
    noise = noise - noise.mean(dim=(-2, -1), keepdim=True)
    return noise / noise.std(dim=(-2, -1), keepdim=True).clamp_min(1e-8)


def _sdf_disc(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(u ** 2 + v ** 2) - 0.95


def _sdf_square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # half-side 0.8 (area ~ the disc's)
    return torch.maximum(u.abs(), v.abs()) - 0.8


def _sdf_triangle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Equilateral, one vertex pointing down the image (y grows downwards), inradius 0.55."""
    d = torch.full_like(u, -math.inf)
    for k in range(3):
        a = math.radians(90 + 120 * k)
        d = torch.maximum(d, u * math.cos(a) - v * math.sin(a) - 0.55)
    return d


def _sdf_ring(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # annulus between radii 0.5 and 1.0
    return (torch.sqrt(u ** 2 + v ** 2) - 0.75).abs() - 0.25


def _sdf_cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # plus sign, arms 0.33 wide (half), 1.0 long
    arm1 = torch.maximum(u.abs() - 1.0, v.abs() - 0.33)
    arm2 = torch.maximum(u.abs() - 0.33, v.abs() - 1.0)
    return torch.minimum(arm1, arm2)


_SDF = (_sdf_disc, _sdf_square, _sdf_triangle, _sdf_ring, _sdf_cross)  # same order as SHAPES


def _shape_distance(shape_id: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed distance (in object radii, negative inside) of each image's shape; (n, H, W)."""
    d = torch.empty_like(u)
    for i, sdf in enumerate(_SDF):
        sel = (shape_id == i).nonzero().flatten()
        if len(sel):
            d[sel] = sdf(u[sel], v[sel])
    return d


def _render(labels: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Render one chunk of images for `labels`; uint8 (n, 3, size, size)."""
    n = labels.shape[0]
    if n == 0:
        return torch.empty((0, 3, size, size), dtype=torch.uint8)
    specs = [CLASS_SPECS[int(c)] for c in range(NUM_CLASSES)]
    shape_of = torch.tensor([SHAPES.index(s) for s, _, _ in specs])[labels]
    theta_of = torch.tensor([math.radians(o) for _, o, _ in specs])[labels]
    sf_of = torch.tensor([LOW_SF if f == "low" else HIGH_SF for _, _, f in specs])[labels]

    # Per-image nuisance parameters (all independent of the class).
    cx, cy = _u(gen, n, 0.32, 0.68), _u(gen, n, 0.32, 0.68)
    radius = _u(gen, n, 0.22, 0.34)
    rot = torch.deg2rad(_u(gen, n, -12.0, 12.0))
    ori = theta_of + rot + torch.deg2rad(_u(gen, n, -6.0, 6.0))
    sf = sf_of * _u(gen, n, 0.85, 1.15)
    phase = _u(gen, n, 0.0, 2 * math.pi)
    obj_mean = _u(gen, n, 0.2, 0.8, 3)
    tint = _u(gen, n, 0.4, 1.0, 3) * torch.where(torch.rand((n, 1), generator=gen) < 0.5, 1.0, -1.0)
    obj_contrast = _u(gen, n, 0.12, 0.4)
    bg_mean = _u(gen, n, 0.2, 0.8, 3)
    bg_contrast = _u(gen, n, 0.04, 0.16)
    bg_chroma = _u(gen, n, 0.0, 0.5)
    pixel_noise = _u(gen, n, 0.0, 0.02)

    # Object: rendered at 2x and box-filtered (anti-aliased edges and fine gratings).
    ss = 2 * size
    coords = (torch.arange(ss, dtype=torch.float32) + 0.5) / ss
    x = coords[None, None, :] - cx[:, None, None]
    y = coords[None, :, None] - cy[:, None, None]
    cos_r, sin_r = torch.cos(rot)[:, None, None], torch.sin(rot)[:, None, None]
    r = radius[:, None, None]
    u = (x * cos_r + y * sin_r) / r
    v = (-x * sin_r + y * cos_r) / r
    dist = _shape_distance(shape_of, u, v)
    edge_px = 0.5 / (r * ss)  # half a super-sampled pixel, in object radii
    mask = torch.sigmoid(-dist / edge_px)
    # Grating in image coordinates: orientation `ori` (0 = vertical bars, angle counter-clockwise).
    xx = x / r
    yy = y / r
    carrier = xx * torch.cos(ori)[:, None, None] - yy * torch.sin(ori)[:, None, None]
    grating = torch.sin(2 * math.pi * sf[:, None, None] * carrier + phase[:, None, None])
    obj = obj_mean[:, :, None, None] + (obj_contrast[:, None] * tint)[:, :, None, None] * grating[:, None]
    obj_img = F.avg_pool2d(obj * mask[:, None], 2)
    mask_lo = F.avg_pool2d(mask[:, None], 2)

    # Background: coloured 1/f noise (luminance plus weaker chroma).
    lum = pink_noise(n, 1, size, gen)
    chroma = pink_noise(n, 3, size, gen)
    bg = bg_mean[:, :, None, None] + bg_contrast[:, None, None, None] * (
        lum + bg_chroma[:, None, None, None] * chroma)

    img = obj_img + (1 - mask_lo) * bg
    img = img + pixel_noise[:, None, None, None] * torch.randn(img.shape, generator=gen)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)
