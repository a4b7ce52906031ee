"""Blur corruptions: defocus, glass, motion, zoom, gaussian."""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from v1sweep.corruptions.base import REF, register
from v1sweep.registry import lazy_module

if TYPE_CHECKING:  # the catalogue imports this module without torch or numpy
    import numpy as np
    import torch
    from torch import Tensor

    from v1sweep.corruptions import ops
    from v1sweep.corruptions.rng import CounterRNG
else:
    np = lazy_module("numpy")
    torch = lazy_module("torch")
    ops = lazy_module("v1sweep.corruptions.ops")


@lru_cache(maxsize=64)
def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The published `disk`: a normalised disk on a 17 x 17 grid (radius <= 8; else 2r+1),
    anti-aliased by a 3 x 3 (5 x 5 beyond radius 8) Gaussian with reflect-101 borders, then
    cropped to its non-zero support."""
    grid: np.ndarray
    if radius <= 8:
        grid, ksize = np.arange(-8, 8 + 1), 3
    else:
        grid, ksize = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    g = ops.cv2_gaussian_kernel(ksize, alias_blur)
    padded = np.pad(disk, ksize // 2, mode="reflect")  # numpy 'reflect' == reflect-101
    n = disk.shape[0]
    tmp = sum(g[i] * padded[i:i + n, :] for i in range(ksize))
    kernel = sum(g[j] * tmp[:, j:j + n] for j in range(ksize))
    nz = np.argwhere(kernel > 0)
    c = n // 2
    r = int(np.abs(nz - c).max()) if len(nz) else 0
    return kernel[c - r:c + r + 1, c - r:c + r + 1]


@lru_cache(maxsize=64)
def _separable_terms(radius: float, alias_blur: float) -> tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]:
    """The disk kernel as a sum of separable (column, row) kernels via its SVD (exact: rank <= size)."""
    kernel = disk_kernel(radius, alias_blur)
    u, sv, vt = np.linalg.svd(kernel)
    keep = sv > sv[0] * 1e-12
    return tuple((tuple(u[:, i] * sv[i]), tuple(vt[i])) for i in np.flatnonzero(keep))


@register("defocus_blur", category="blur", benchmark=True, order=4, deterministic=True, monotone=True,
          params={"cifar10": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
                  "tinyimagenet": [(0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)]},
          reference=f"{REF}:defocus_blur")
def defocus_blur(x: Tensor, p: tuple[float, float], rng: CounterRNG) -> Tensor:
    """Convolution with an anti-aliased disk (cv2.filter2D, reflect-101 border), computed as a sum
    of separable filters (the kernel's SVD)."""
    h, w = x.shape[-2:]
    pairs = [(ops.filter_matrix(h, col, "reflect101"), ops.filter_matrix(w, row, "reflect101"))
             for col, row in _separable_terms(float(p[0]), float(p[1]))]
    return ops.separable_sum(x, pairs)


@register("gaussian_blur", category="blur", benchmark=False, order=17, deterministic=True, monotone=True,
          params={"cifar10": [0.4, 0.6, 0.7, 0.8, 1.0], "tinyimagenet": [0.5, 0.75, 1.0, 1.25, 1.5]},
          reference=f"{REF}:gaussian_blur")
def gaussian_blur(x: Tensor, sigma: float, rng: CounterRNG) -> Tensor:
    """skimage.filters.gaussian: scipy Gaussian, truncate 4, 'nearest' (edge) border."""
    return ops.gaussian_filter(x, sigma, mode="edge")


def _pass_sources(pos: Tensor, tgt: Tensor, n_pixels: int) -> Tensor:
    """Where each visited pixel's value comes from after one sequential pass of copies.

    `pos` (P,) are the visited flat positions in loop order (decreasing), `tgt` (B, P) the flat
    position each copies from. Position pos[j] receives the value (h', w') holds at its turn:
    a position not visited after it in the pass (tgt <= pos, or a border pixel the pass never
    writes) still holds its value from the start of the pass; a visited position with tgt > pos
    was already written, so it holds what *its* source held. Following those links (pointer
    doubling; a chain only moves forward, so it ends) gives every pixel's source in the pass-start
    image, and the whole pass becomes one gather: identical to the sequential loop. With delta 1
    no offset points forward and the targets are the sources.
    """
    follow = tgt > pos
    if not bool(follow.any()):
        return tgt
    column = torch.full((n_pixels,), -1, dtype=torch.int64, device=pos.device)
    column[pos] = torch.arange(pos.numel(), device=pos.device)
    src = tgt.clone()
    link = column[src]  # column of the source if it is a visited position, else -1
    follow &= link >= 0
    while bool(follow.any()):
        k = torch.where(follow, link, torch.zeros_like(link))
        src = torch.where(follow, src.gather(1, k), src)
        nxt = follow.gather(1, k)
        link = torch.where(follow, link.gather(1, k), link)
        follow = follow & nxt
    return src


# np.uint8 truncation of float32 values: a value within this many grey levels below an integer
# counts as that integer (float32 rounding of a whole grey level); narrow, so that truncation
# otherwise matches float64 arithmetic (a 1e-3 guard moved ~0.1 % of the values up a level)
TRUNCATE_GUARD = 1e-4


@register("glass_blur", category="blur", benchmark=True, order=5, deterministic=False, monotone=False,
          params={"cifar10": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
                  "tinyimagenet": [(0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)]},
          reference=f"{REF}:glass_blur")
def glass_blur(x: Tensor, p: tuple[float, int, int], rng: CounterRNG) -> Tensor:
    """Gaussian blur, quantise to uint8 (truncating), `iterations` passes of local copies, blur.

    A pass visits rows h = H - delta .. delta + 1 and, within each, columns w = W - delta ..
    delta + 1 (bottom-right to top-left) and draws an offset (dx, dy) in [-delta, delta) per
    pixel. The published line `x[h, w], x[h', w'] = x[h', w'], x[h, w]` reads like a swap but
    runs on numpy views: it copies the neighbour (h + dy, w + dx) into (h, w) and leaves the
    neighbour unchanged, and later steps read earlier writes. That copy is reproduced exactly:
    each pass is a map "pixel <- source pixel" (`_pass_sources`), the passes' maps are composed,
    and one gather moves the pixels.
    """
    sigma, delta, iterations = float(p[0]), int(p[1]), int(p[2])
    b, c, h, w = x.shape
    board = ops.quantize_uint8(ops.gaussian_filter(x, sigma, mode="edge"), "floor", TRUNCATE_GUARD)
    rows, cols = range(h - delta, delta, -1), range(w - delta, delta, -1)
    if len(rows) and len(cols):
        pos = torch.tensor([hh * w + ww for hh in rows for ww in cols], dtype=torch.int64, device=x.device)
        dx = rng.randint("dx", (iterations, pos.numel()), -delta, delta)  # (B, it, pos)
        dy = rng.randint("dy", (iterations, pos.numel()), -delta, delta)
        source: Tensor | None = None  # (B, H*W): which original pixel each pixel holds so far
        for it in range(iterations):
            step = torch.arange(h * w, device=x.device).repeat(b, 1)
            src = _pass_sources(pos, dy[:, it].mul(w).add_(dx[:, it]).add_(pos), h * w)
            # visited pixels form the block [delta+1, H-delta] x [delta+1, W-delta], in reverse raster order
            step.view(b, h, w)[:, rows[-1]:rows[0] + 1, cols[-1]:cols[0] + 1] = \
                src.view(b, len(rows), len(cols)).flip(1, 2)
            source = step if source is None else source.gather(1, step)
        if source is not None:
            board = board.reshape(b, c, h * w).gather(2, source.unsqueeze(1).expand(b, c, -1)).view(b, c, h, w)
    return ops.gaussian_filter(board, sigma, mode="edge")


@register("motion_blur", category="blur", benchmark=True, order=6, deterministic=False, monotone=True,
          params={"cifar10": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
                  "tinyimagenet": [(10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)]},
          reference=f"{REF}:motion_blur")
def motion_blur(x: Tensor, p: tuple[float, float], rng: CounterRNG) -> Tensor:
    """ImageMagick motion blur (radius, sigma) at an angle U(-45, 45) degrees per image."""
    angles = rng.uniform("angle", (1,), -45.0, 45.0)[:, 0]
    return ops.line_blur(x, int(p[0]), float(p[1]), angles)


def zoom_factors(end: float) -> np.ndarray:
    """The zoom factors of a published table entry: np.arange(1, end, 0.01), exactly as published.

    For end = 1.06 and 1.11 float rounding makes the range include `end` itself (7 and 12
    factors), for the others it stops below it. (The tables keep the end values so that importing
    the catalogue needs no numpy.)"""
    return np.arange(1, end, 0.01)


@register("zoom_blur", category="blur", benchmark=True, order=7, deterministic=True, monotone=True,
          params={"cifar10": (1.06, 1.11, 1.16, 1.21, 1.26), "tinyimagenet": (1.06, 1.11, 1.16, 1.21, 1.26)},
          decode=zoom_factors, reference=f"{REF}:zoom_blur")
def zoom_blur(x: Tensor, factors: np.ndarray, rng: CounterRNG) -> Tensor:
    """(x + sum over factors of clipped_zoom(x, f)) / (len(factors) + 1), factors from 1."""
    h, w = x.shape[-2:]
    pairs = [(np.eye(h), np.eye(w))]
    pairs += [(ops.zoom_matrix(h, float(f)), ops.zoom_matrix(w, float(f))) for f in factors]
    return ops.separable_sum(x, pairs) / len(pairs)
