"""Batched image operations the corruptions share: padding modes, filters, resampling, line blur.

Images are (B, C, H, W) float tensors. Border modes are named after their numpy/OpenCV meaning:
`reflect101` (OpenCV default, scipy 'mirror': dcb|abcd|cba), `symmetric` (scipy 'reflect':
dcba|abcd|dcba) and `edge` (scipy 'nearest', ImageMagick's edge virtual pixels).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

PAD_MODES = ("reflect101", "symmetric", "edge")


def pad_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """Source index of every position of an axis of length n padded by (before, after)."""
    i = np.arange(-before, n + after)
    if mode == "edge" or n == 1:
        return np.clip(i, 0, n - 1)
    if mode == "symmetric":
        i = np.mod(i, 2 * n)
        return np.where(i >= n, 2 * n - 1 - i, i)
    if mode == "reflect101":
        i = np.mod(i, 2 * n - 2)
        return np.where(i >= n, 2 * n - 2 - i, i)
    raise ValueError(f"unknown pad mode {mode!r}; valid: {', '.join(PAD_MODES)}")


def pad2d(x: Tensor, ph: int, pw: int, mode: str) -> Tensor:
    """Pad the last two axes by ph rows and pw columns on each side."""
    h, w = x.shape[-2:]
    if mode == "edge":
        return F.pad(x, (pw, pw, ph, ph), mode="replicate")
    if mode == "reflect101" and ph < h and pw < w:
        return F.pad(x, (pw, pw, ph, ph), mode="reflect")
    if ph:
        x = x.index_select(-2, torch.as_tensor(pad_index(h, ph, ph, mode), device=x.device))
    if pw:
        x = x.index_select(-1, torch.as_tensor(pad_index(w, pw, pw, mode), device=x.device))
    return x


def scipy_gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The 1-D kernel of scipy.ndimage.gaussian_filter (radius int(truncate*sigma + 0.5))."""
    if sigma <= 1e-15:
        return np.ones(1)
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def cv2_gaussian_kernel(ksize: int, sigma: float) -> np.ndarray:
    """The 1-D kernel of cv2.getGaussianKernel for sigma > 0."""
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    w = np.exp(-(x ** 2) / (2 * sigma * sigma))
    return w / w.sum()


def conv2d(x: Tensor, kernel: np.ndarray, mode: str) -> Tensor:
    """Correlate every channel with the same 2-D kernel (odd sizes), border `mode`, as the sum of
    separable filters given by the kernel's SVD (exact; rank <= kernel size)."""
    h, w = x.shape[-2:]
    u, sv, vt = np.linalg.svd(np.asarray(kernel, dtype=np.float64))
    pairs = [(filter_matrix(h, tuple(u[:, i] * sv[i]), mode), filter_matrix(w, tuple(vt[i]), mode))
             for i in np.flatnonzero(sv > sv[0] * 1e-12)]
    return separable_sum(x, pairs)


# ---------------------------------------------------------------- separable linear maps
# Along one axis, padding + correlation and every resampling used here (scipy zoom, PIL box) are
# linear maps R (n_out x n_in). Applying them as dense matrix products is exact and, at these
# image sizes, much faster than shifted slices or 1-channel convolutions.


@lru_cache(maxsize=512)
def filter_matrix(n: int, kernel: tuple[float, ...], mode: str) -> np.ndarray:
    """The (n x n) matrix of correlating an axis of length n with `kernel` under border `mode`."""
    k = len(kernel)
    src = pad_index(n, k // 2, k // 2, mode)
    m = np.zeros((n, n))
    for t, wt in enumerate(kernel):
        np.add.at(m, (np.arange(n), src[t:t + n]), wt)
    return m


def taps_matrix(taps: "Taps", n_in: int) -> np.ndarray:
    index, weight = taps
    m = np.zeros((index.shape[0], n_in))
    for t in range(index.shape[1]):
        np.add.at(m, (np.arange(index.shape[0]), index[:, t]), weight[:, t])
    return m


def separable_sum(x: Tensor, pairs: list[tuple[np.ndarray, np.ndarray]]) -> Tensor:
    """sum over (Mh, Mw) in `pairs` of Mh @ x @ Mw^T, for every image and channel.

    Few terms: per term, one matrix product over all rows and one broadcast batched product.
    Four or more terms on a small image (Kronecker matrix <= 64 MiB): products with the summed
    Kronecker matrix sum(Mh (x) Mw), cut into strips of output rows that read only the input rows
    they depend on (measured faster from 4 terms on at 32 px).
    """
    b, c, h, w = x.shape
    ho, wo = pairs[0][0].shape[0], pairs[0][1].shape[0]
    dev, dt = x.device, x.dtype
    n = len(pairs)
    if n >= 4 and h * w * ho * wo * 4 <= (64 << 20):
        key = tuple((mh.tobytes(), mh.shape, mw.tobytes(), mw.shape) for mh, mw in pairs)
        flat_in = x.reshape(b * c, h * w)
        out = torch.empty(b * c, ho * wo, dtype=dt, device=dev)
        for lo, hi, in_lo, in_hi, block in _kron_blocks(key, str(dt), str(dev)):
            out[:, lo:hi] = flat_in[:, in_lo:in_hi] @ block
        return out.view(b, c, ho, wo)
    total: Tensor | None = None
    flat = x.reshape(b * c * h, w)
    for mh, mw in pairs:
        y = (flat @ torch.as_tensor(mw.T, dtype=dt, device=dev)).view(b * c, h, wo)
        z = torch.matmul(torch.as_tensor(mh, dtype=dt, device=dev), y)
        total = z if total is None else total.add_(z)
    assert total is not None, "separable_sum needs at least one pair"
    return total.view(b, c, ho, wo)


@lru_cache(maxsize=32)
def _kron_blocks(parts: tuple, dtype: str, device: str) -> list[tuple[int, int, int, int, Tensor]]:
    """The summed Kronecker matrix, transposed and cut into strips of output rows, each with the
    contiguous range of input pixels it reads (the maps are banded, so a strip reads a fraction)."""
    ho, h = parts[0][1]
    wo, w = parts[0][3]
    total = np.zeros((ho * wo, h * w))
    for bh, sh, bw, sw in parts:  # accumulate each Kronecker product from the factors' non-zeros
        mh = np.frombuffer(bh, dtype=np.float64).reshape(sh)
        mw = np.frombuffer(bw, dtype=np.float64).reshape(sw)
        ry, cy = np.nonzero(mh)
        rx, cx = np.nonzero(mw)
        rows = (ry[:, None] * wo + rx[None, :]).ravel()
        cols = (cy[:, None] * w + cx[None, :]).ravel()
        np.add.at(total, (rows, cols), (mh[ry, cy][:, None] * mw[rx, cx][None, :]).ravel())
    strip = max(1, min(ho, 4096 // max(1, wo * 8)))  # output image rows per block
    blocks = []
    for r0 in range(0, ho, strip):
        lo, hi = r0 * wo, min(ho, r0 + strip) * wo
        cols = np.flatnonzero(np.abs(total[lo:hi]).sum(0) > 0)
        in_lo, in_hi = (int(cols.min()), int(cols.max()) + 1) if len(cols) else (0, 1)
        block = torch.as_tensor(np.ascontiguousarray(total[lo:hi, in_lo:in_hi].T),
                                dtype=getattr(torch, dtype.split(".")[-1]), device=device)
        blocks.append((lo, hi, in_lo, in_hi, block))
    return blocks


def sep_conv(x: Tensor, kernel: np.ndarray, mode: str) -> Tensor:
    """Correlate every channel with `kernel` along rows and then columns."""
    if len(kernel) == 1:
        return x * float(kernel[0])
    h, w = x.shape[-2:]
    key = tuple(float(v) for v in kernel)
    return separable_sum(x, [(filter_matrix(h, key, mode), filter_matrix(w, key, mode))])


def gaussian_filter(x: Tensor, sigma: float, mode: str = "edge", truncate: float = 4.0) -> Tensor:
    """scipy.ndimage.gaussian_filter over the two spatial axes (skimage.filters.gaussian's defaults)."""
    return sep_conv(x, scipy_gaussian_kernel(sigma, truncate), mode)


def box_blur3(x: Tensor) -> Tensor:
    """cv2.blur(x, (3, 3)) with its default reflect-101 border."""
    return sep_conv(x, np.full(3, 1.0 / 3.0), "reflect101")


# ---------------------------------------------------------------- resampling
Taps = tuple[np.ndarray, np.ndarray]  # (index (n_out, T) int64, weight (n_out, T) float64)


@lru_cache(maxsize=256)
def clipped_zoom_taps(n: int, zoom: float) -> Taps:
    """Taps of the published `clipped_zoom` along one axis of length n.

    Centre crop of ceil(n / zoom) pixels, scipy.ndimage.zoom (order 1, corner-aligned grid) to
    round(crop * zoom) pixels, then the centre n pixels of that.
    """
    ch = int(np.ceil(n / zoom))
    top = (n - ch) // 2
    m = int(round(ch * zoom))
    trim = (m - n) // 2
    scale = (ch - 1) / (m - 1) if m > 1 else 0.0
    coord = (np.arange(n) + trim) * scale
    i0 = np.clip(np.floor(coord).astype(np.int64), 0, ch - 1)
    frac = coord - i0
    i1 = np.minimum(i0 + 1, ch - 1)
    return np.stack([i0 + top, i1 + top], 1), np.stack([1 - frac, frac], 1)


def zoom_matrix(n: int, zoom: float) -> np.ndarray:
    return taps_matrix(clipped_zoom_taps(n, float(zoom)), n)


def clipped_zoom(x: Tensor, zoom: float) -> Tensor:
    h, w = x.shape[-2:]
    return separable_sum(x, [(zoom_matrix(h, zoom), zoom_matrix(w, zoom))])


@lru_cache(maxsize=256)
def pil_box_taps(n_in: int, n_out: int) -> Taps:
    """Coefficients of PIL's BOX resampling (Resample.c precompute_coeffs) from n_in to n_out."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    rows = []
    for xx in range(n_out):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        ws = []
        for xi in range(xmin, xmax):
            arg = (xi - center + 0.5) / filterscale
            ws.append((xi, 1.0 if -0.5 < arg <= 0.5 else 0.0))
        total = sum(w for _, w in ws)
        rows.append([(i, w / total) for i, w in ws if w > 0])
    width = max(len(r) for r in rows)
    index = np.zeros((n_out, width), dtype=np.int64)
    weight = np.zeros((n_out, width))
    for o, r in enumerate(rows):
        for t, (i, w) in enumerate(r):
            index[o, t], weight[o, t] = i, w
    return index, weight


def pil_box_matrix(n_in: int, n_out: int) -> np.ndarray:
    return taps_matrix(pil_box_taps(n_in, n_out), n_in)


# ---------------------------------------------------------------- motion (line) blur
def line_blur(x: Tensor, radius: int, sigma: float, angles_deg: Tensor) -> Tensor:
    """ImageMagick-style motion blur with one angle per image.

    A one-sided Gaussian-weighted line of width 2*radius + 1 taps: output(x, y) =
    sum_i k_i * input(x + round(i cos a), y + round(i sin a)), edge virtual pixels.

    The images are sorted by angle: each tap's rounded offset changes with the angle only at a
    few break points, so along the sorted batch every tap is a handful of runs of images that
    share one offset, each run one strided slice (no gathers). Taps are summed in order, so the
    result does not depend on the batch.
    """
    b, c, h, w = x.shape
    width = 2 * int(math.ceil(radius)) + 1
    i = torch.arange(width, dtype=torch.float64, device=x.device)
    kernel = torch.exp(-(i * i) / (2 * sigma * sigma))
    kernel = (kernel / kernel.sum()).to(x.dtype)
    a = torch.deg2rad(angles_deg.to(torch.float64, copy=True)).to(x.device)
    order = torch.argsort(a, stable=True)
    a = a[order]
    # ImageMagick: offset = ceil(i * cos(a) - 0.5), ceil(i * sin(a) - 0.5)
    ox = torch.ceil(i[None, :] * torch.cos(a)[:, None] - 0.5).to(torch.int64)  # (B, width)
    oy = torch.ceil(i[None, :] * torch.sin(a)[:, None] - 0.5).to(torch.int64)
    # offsets never exceed width - 1: pad once with edge pixels
    r = width - 1
    xp = pad2d(x.index_select(0, order), r, r, "edge")
    weights = kernel.tolist()
    change = ((ox[1:] != ox[:-1]) | (oy[1:] != oy[:-1])).t().contiguous()  # (width, B - 1)
    ox_l, oy_l = ox.t().tolist(), oy.t().tolist()
    out = torch.empty_like(x)
    for t in range(width):
        starts = [0] + [int(v) + 1 for v in torch.nonzero(change[t], as_tuple=True)[0].tolist()]
        for s, e in zip(starts, starts[1:] + [b]):
            dx, dy = ox_l[t][s], oy_l[t][s]
            part = xp[s:e, :, r + dy:r + dy + h, r + dx:r + dx + w]
            if t == 0:  # 0 + k0 * x, as the accumulation would start
                torch.mul(part, weights[0], out=out[s:e])
            else:
                out[s:e].add_(part, alpha=weights[t])
    return torch.empty_like(out).index_copy_(0, order, out)


def rgb_to_gray(x: Tensor) -> Tensor:
    """cv2.COLOR_RGB2GRAY weights; (B, 3, H, W) -> (B, 1, H, W)."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def quantize_uint8(x: Tensor, how: str = "round", guard: float = 1e-3) -> Tensor:
    """Values k/255 as after a uint8 round trip (`floor` = numpy astype(uint8) truncation)."""
    y = x.clamp(0, 1) * 255
    # floor: a small guard keeps values that are integers up to float rounding (a blurred flat
    # patch) on their integer, as float64 arithmetic would. float32 errors here are ~1e-5 grey
    # levels; the wider default 1e-3 is what snow has always used.
    y = torch.floor(y + guard) if how == "floor" else torch.round(y)
    return y / 255
