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


@lru_cache(maxsize=64)
def _separable_terms(radius: float, alias_blur: float) -> tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]:
    """The disk kernel as a sum of separable (column, row) kernels via its SVD (exact: rank <= size)."""
    kernel = disk_kernel(radius, alias_blur)
    u, sv, vt = np.linalg.svd(kernel)
    keep = sv > sv[0] * 1e-12
    return tuple((tuple(u[:, i] * sv[i]), tuple(vt[i])) for i in np.flatnonzero(keep))


@register("defocus_blur")
def defocus_blur(x: Tensor, p: tuple[float, float], rng: CounterRNG) -> Tensor:
    """Convolution with an anti-aliased disk (cv2.filter2D, reflect-101 border), computed as a sum
    of separable filters (the kernel's SVD)."""
    h, w = x.shape[-2:]
    pairs = [(ops.filter_matrix(h, col, "reflect101"), ops.filter_matrix(w, row, "reflect101"))
             for col, row in _separable_terms(float(p[0]), float(p[1]))]
    return ops.separable_sum(x, pairs)


@register("gaussian_blur")
def gaussian_blur(x: Tensor, sigma: float, rng: CounterRNG) -> Tensor:
    """skimage.filters.gaussian: scipy Gaussian, truncate 4, 'nearest' (edge) border."""
    return ops.gaussian_filter(x, sigma, mode="edge")


@register("glass_blur")
def glass_blur(x: Tensor, p: tuple[float, int, int], rng: CounterRNG) -> Tensor:
    """Gaussian blur, quantise to uint8 (truncating), `iterations` raster passes (bottom-right to
    top-left) that swap each pixel with a random neighbour at offsets in [-delta, delta), blur again.

    The swaps are sequential within an image, so the loop runs over pixel positions and each step
    swaps that position in every image of the batch at once. The 8-bit RGB of a pixel is packed
    into one int32 and the image stored position-major (H*W, B), so a step is one row copy, one
    gather and one scatter of B integers.
    """
    sigma, delta, iterations = float(p[0]), int(p[1]), int(p[2])
    b, c, h, w = x.shape
    q8 = (ops.quantize_uint8(ops.gaussian_filter(x, sigma, mode="edge"), "floor") * 255).round_().to(torch.int32)
    code = (q8[:, 0] << 16) | (q8[:, 1] << 8) | q8[:, 2]  # (B, H, W)
    positions = [hh * w + ww for hh in range(h - delta, delta, -1) for ww in range(w - delta, delta, -1)]
    if positions:
        n_pos = len(positions)
        pos_t = torch.tensor(positions, dtype=torch.int64, device=x.device)
        dx = rng.randint("dx", (iterations, n_pos), -delta, delta)  # (B, it, pos)
        dy = rng.randint("dy", (iterations, n_pos), -delta, delta)
        targets = dy.mul_(w).add_(dx).add_(pos_t).mul_(b).add_(torch.arange(b, device=x.device).view(b, 1, 1))
        flat_targets = targets.permute(1, 2, 0).contiguous()  # (it, pos, B): index into (H*W, B)
        board = code.view(b, h * w).t().contiguous()  # (H*W, B)
        flat = board.view(-1)
        for it in range(iterations):
            tgt = flat_targets[it]
            for k, pos in enumerate(positions):
                here = board[pos].clone()
                board[pos] = flat.index_select(0, tgt[k])
                flat.index_copy_(0, tgt[k], here)
        code = board.t().reshape(b, h, w)
    rgb = torch.stack([(code >> 16) & 255, (code >> 8) & 255, code & 255], dim=1).to(x.dtype) / 255
    return ops.gaussian_filter(rgb, sigma, mode="edge")


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
