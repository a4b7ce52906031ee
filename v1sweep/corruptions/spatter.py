"""Spatter (extra corruption): water drops (severities 1-3) or mud (4-5) from a thresholded,
smoothed Normal layer.

Water follows the published OpenCV pipeline on the 8-bit liquid layer: Canny edges (50, 150),
distance to the nearest edge (exact Euclidean here; OpenCV's DIST_L2 mask-5 chamfer differs by
a few percent), truncated at 20, 3x3 box blur, histogram equalisation, an emboss filter, box
blur; the liquid layer times that map, normalised, tints the image pale turquoise.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from v1sweep.corruptions.base import REF, register
from v1sweep.registry import lazy_module

if TYPE_CHECKING:  # the catalogue imports this module without torch or numpy
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import Tensor

    from v1sweep.corruptions import ops
    from v1sweep.corruptions.rng import CounterRNG
else:
    np = lazy_module("numpy")
    torch = lazy_module("torch")
    F = lazy_module("torch.nn.functional")
    ops = lazy_module("v1sweep.corruptions.ops")

_TG22 = 0.4142135623730950


def canny(img: Tensor, low: float, high: float) -> Tensor:
    """cv2.Canny (aperture 3, L1 gradient) of (B, 1, H, W) images with values in [0, 255]; bool."""
    sobel_x = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    gx = ops.conv2d(img, sobel_x, "edge")
    gy = ops.conv2d(img, sobel_x.T.copy(), "edge")
    mag = gx.abs() + gy.abs()
    h, w = img.shape[-2:]
    mp = F.pad(mag, (1, 1, 1, 1))

    def nb(dy: int, dx: int) -> Tensor:
        return mp[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    ax, ay = gx.abs(), gy.abs()
    horizontal = ay < ax * _TG22
    vertical = ay > ax * (_TG22 + 2.0)
    same_sign = (gx < 0) == (gy < 0)
    keep_h = (mag > nb(0, -1)) & (mag >= nb(0, 1))
    keep_v = (mag > nb(-1, 0)) & (mag >= nb(1, 0))
    # diagonal: s = 1 when the gradient components share a sign, compare (-1, -s) and (+1, +s)
    keep_d = torch.where(same_sign, (mag > nb(-1, -1)) & (mag > nb(1, 1)), (mag > nb(-1, 1)) & (mag > nb(1, -1)))
    nms = torch.where(horizontal, keep_h, torch.where(vertical, keep_v, keep_d))
    candidate = nms & (mag > low)
    edges = candidate & (mag > high)
    while True:  # hysteresis: grow strong edges through 8-connected candidates
        grown = _dilate3(edges) & candidate
        if torch.equal(grown, edges):
            return edges
        edges = grown


def _dilate3(m: Tensor) -> Tensor:
    """3 x 3 binary dilation of (B, 1, H, W) bool masks (zero border), as two 1-D passes."""
    p = F.pad(m.to(torch.uint8), (1, 1, 1, 1))
    rows = p[..., :-2, :] | p[..., 1:-1, :] | p[..., 2:, :]
    return (rows[..., :-2] | rows[..., 1:-1] | rows[..., 2:]).bool()


def edge_distance(edges: Tensor, cap: float) -> Tensor:
    """Euclidean distance of every pixel to the nearest True pixel of (B, 1, H, W), capped at `cap`
    (also where an image has no edge). Column pass: distance to the nearest edge above and below
    by cumulative maxima of edge rows; row pass: min over x' of g(x')^2 + (x - x')^2, chunked."""
    b, _, h, w = edges.shape
    dev = edges.device
    e = edges[:, 0]
    rows = torch.arange(h, device=dev).view(1, h, 1).expand(b, h, w)
    far = h + int(cap) + 1
    above = torch.where(e, rows, torch.full_like(rows, -far)).cummax(1).values
    below = torch.where(e, rows, torch.full_like(rows, h - 1 + far)).flip(1).cummin(1).values.flip(1)
    g = torch.minimum(rows - above, below - rows).clamp_(max=far).to(torch.float32)  # (B, H, W)
    g2 = g * g
    rx = torch.arange(w, device=dev, dtype=torch.float32)
    dxx = (rx[:, None] - rx[None, :]) ** 2  # (W, W')
    out = torch.empty(b, 1, h, w, device=dev)
    chunk = max(1, (1 << 22) // (h * w * w))
    for s in range(0, b, chunk):
        d = (g2[s:s + chunk, :, None, :] + dxx).amin(3)  # (n, H, W)
        out[s:s + chunk, 0] = d.sqrt_().clamp_(max=cap)
    return out


def equalize_hist(img: Tensor) -> Tensor:
    """cv2.equalizeHist per image of (B, 1, H, W) integer-valued floats in [0, 255]."""
    b = img.shape[0]
    vals = img.reshape(b, -1).to(torch.int64)
    total = vals.shape[1]
    hist = torch.zeros(b, 256, device=img.device).scatter_add_(1, vals, torch.ones_like(vals, dtype=torch.float32))
    first = (hist > 0).to(torch.int64).argmax(1, keepdim=True)
    h_first = hist.gather(1, first)
    cdf = hist.cumsum(1)
    scale = 255.0 / (total - h_first).clamp_min(1.0)
    lut = torch.round((cdf - h_first) * scale).clamp_(0, 255)
    out = lut.gather(1, vals).view_as(img)
    constant = (h_first == total).view(b, 1, 1, 1)
    return torch.where(constant, first.view(b, 1, 1, 1).to(img.dtype), out)


# (mu, sigma, blur sigma, threshold, scale, mode: 0 water / 1 mud) per severity
SPATTER_PARAMS = {
    "cifar10": [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1)],
    "tinyimagenet": [(0.62, 0.1, 0.7, 0.7, 0.6, 0), (0.65, 0.1, 0.8, 0.7, 0.6, 0),
                     (0.65, 0.3, 1, 0.69, 0.6, 0), (0.65, 0.1, 0.7, 0.68, 0.6, 1),
                     (0.65, 0.1, 0.5, 0.67, 0.6, 1)],
}


@register("spatter", category="weather", benchmark=False, order=18, deterministic=False, monotone=False,
          params=SPATTER_PARAMS, reference=f"{REF}:spatter")
def spatter(x: Tensor, p: tuple, rng: CounterRNG) -> Tensor:
    mu, sd, blur_sigma, threshold, scale, mode = p
    b, c, h, w = x.shape
    liquid = rng.normal("liquid", (1, h, w), mean=mu, std=sd)
    liquid = ops.gaussian_filter(liquid, blur_sigma, mode="edge")
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mode == 0:  # water
        layer8 = torch.floor(liquid.clamp(0, 1) * 255 + 1e-3)
        edges = canny(layer8, 50.0, 150.0)
        dist = edge_distance(edges, 20.0)
        dist = torch.floor(ops.box_blur3(dist) + 1e-3)
        dist = equalize_hist(dist)
        emboss = np.array([[-2.0, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = torch.round(ops.conv2d(dist, emboss, "reflect101")).clamp_(0, 255)
        dist = ops.box_blur3(dist)
        m = layer8 * dist
        peak = m.reshape(b, -1).amax(1).view(b, 1, 1, 1)
        m = torch.where(peak > 0, m / peak.clamp_min(1e-12), torch.zeros_like(m)) * scale
        color = torch.tensor([175 / 255, 238 / 255, 238 / 255], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x + m * color
    # mud
    m = (liquid > threshold).to(x.dtype)
    m = ops.gaussian_filter(m, scale, mode="edge")
    m = torch.where(m < 0.8, torch.zeros_like(m), m)
    color = torch.tensor([63 / 255, 42 / 255, 20 / 255], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x * (1 - m) + color * m
