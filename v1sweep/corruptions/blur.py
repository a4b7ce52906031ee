"""Blur corruptions: defocus, glass, motion, zoom, gaussian."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from v1sweep.corruptions import ops
from v1sweep.corruptions.base import register
from v1sweep.corruptions.rng import CounterRNG


@lru_cache(maxsize=64)
def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The published `disk`: a normalised disk on a 17 x 17 grid (radius <= 8; else 2r+1),
    anti-aliased by a 3 x 3 (5 x 5 beyond radius 8) Gaussian with reflect-101 borders, then
    cropped to its non-zero support."""
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


@register("defocus_blur")
def defocus_blur(x: Tensor, p: tuple[float, float], rng: CounterRNG) -> Tensor:
    """Convolution with an anti-aliased disk (cv2.filter2D, reflect-101 border)."""
    return ops.conv2d(x, disk_kernel(float(p[0]), float(p[1])), "reflect101")


@register("gaussian_blur")
def gaussian_blur(x: Tensor, sigma: float, rng: CounterRNG) -> Tensor:
    """skimage.filters.gaussian: scipy Gaussian, truncate 4, 'nearest' (edge) border."""
    return ops.gaussian_filter(x, sigma, mode="edge")


@register("glass_blur")
def glass_blur(x: Tensor, p: tuple[float, int, int], rng: CounterRNG) -> Tensor:
    """Gaussian blur, quantise to uint8 (truncating), `iterations` raster passes (bottom-right to
    top-left) that swap each pixel with a random neighbour at offsets in [-delta, delta), blur again.

    The swaps are sequential within an image, so the loop runs over pixel positions and each
    step swaps that position in every image of the batch at once (a gather and two scatters).
    """
    sigma, delta, iterations = float(p[0]), int(p[1]), int(p[2])
    b, c, h, w = x.shape
    x = ops.quantize_uint8(ops.gaussian_filter(x, sigma, mode="edge"), "floor")
    hs = range(h - delta, delta, -1)
    ws = range(w - delta, delta, -1)
    positions = torch.tensor([hh * w + ww for hh in hs for ww in ws], dtype=torch.int64, device=x.device)
    n_pos = positions.numel()
    if n_pos:
        offsets = rng.randint("swap", (iterations, n_pos, 2), -delta, delta)  # (B, it, pos, [dx, dy])
        targets = positions.view(1, 1, n_pos) + offsets[..., 1] * w + offsets[..., 0]
        pix = x.permute(0, 2, 3, 1).reshape(b, h * w, c).contiguous()
        rows = torch.arange(b, device=x.device)
        pos_list = positions.tolist()
        for it in range(iterations):
            tgt = targets[:, it]
            for k, pos in enumerate(pos_list):
                q = tgt[:, k]
                here = pix[:, pos].clone()
                pix[:, pos] = pix[rows, q]
                pix[rows, q] = here
        x = pix.view(b, h, w, c).permute(0, 3, 1, 2)
    return ops.gaussian_filter(x.contiguous(), sigma, mode="edge")


@register("motion_blur")
def motion_blur(x: Tensor, p: tuple[float, float], rng: CounterRNG) -> Tensor:
    """ImageMagick motion blur (radius, sigma) at an angle U(-45, 45) degrees per image."""
    angles = rng.uniform("angle", (1,), -45.0, 45.0)[:, 0]
    return ops.line_blur(x, int(p[0]), float(p[1]), angles)


@register("zoom_blur")
def zoom_blur(x: Tensor, factors: np.ndarray, rng: CounterRNG) -> Tensor:
    """(x + sum over factors of clipped_zoom(x, f)) / (len(factors) + 1), factors from 1."""
    h, w = x.shape[-2:]
    pairs = [(np.eye(h), np.eye(w))]
    pairs += [(ops.zoom_matrix(h, float(f)), ops.zoom_matrix(w, float(f))) for f in factors]
    return ops.separable_sum(x, pairs) / len(pairs)
