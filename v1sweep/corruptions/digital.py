"""Digital corruptions: contrast, elastic transform, pixelate, JPEG, saturate."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from v1sweep.corruptions.base import REF, register
from v1sweep.registry import lazy_module

if TYPE_CHECKING:  # the catalogue imports this module without torch
    import torch
    import torch.nn.functional as F
    from torch import Tensor

    from v1sweep.corruptions import ops
    from v1sweep.corruptions.rng import CounterRNG
else:
    torch = lazy_module("torch")
    F = lazy_module("torch.nn.functional")
    ops = lazy_module("v1sweep.corruptions.ops")


@register("contrast", category="digital", benchmark=True, order=12, deterministic=True, monotone=True,
          params={"cifar10": [0.75, 0.5, 0.4, 0.3, 0.15], "tinyimagenet": [0.4, 0.3, 0.2, 0.1, 0.05]},
          reference=f"{REF}:contrast")
def contrast(x: Tensor, c: float, rng: CounterRNG) -> Tensor:
    """(x - m) * c + m with m the per-image, per-channel mean."""
    m = x.mean(dim=(-2, -1), keepdim=True)
    return (x - m) * c + m


@register("saturate", category="digital", benchmark=False, order=19, deterministic=True, monotone=False,
          params={"cifar10": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
                  "tinyimagenet": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)]},
          reference=f"{REF}:saturate")
def saturate(x: Tensor, p: tuple[float, float], rng: CounterRNG) -> Tensor:
    """HSV saturation S * a + b, clipped to [0, 1]. At fixed hue and value every channel is
    V * (1 - S * w(hue)), so the HSV round trip is closed-form; gray pixels have hue 0 (red), as
    in skimage, so an offset b > 0 tints them red."""
    a, offset = p
    v = x.amax(1, keepdim=True)
    mn = x.amin(1, keepdim=True)
    delta = v - mn
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    s_new = (s * a + offset).clamp(0.0, 1.0)
    colored = v - (v - x) * (s_new / s.clamp_min(1e-12))
    gray_w = torch.tensor([0.0, 1.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    gray = v * (1 - s_new * gray_w)
    return torch.where(delta > 0, colored, gray)


@register("pixelate", category="digital", benchmark=True, order=14, deterministic=True, monotone=True,
          params={"cifar10": [0.95, 0.9, 0.85, 0.75, 0.65], "tinyimagenet": [0.9, 0.8, 0.7, 0.6, 0.5]},
          reference=f"{REF}:pixelate")
def pixelate(x: Tensor, c: float, rng: CounterRNG) -> Tensor:
    """PIL BOX resize to int(size * c), then BOX resize back (nearest-like upsampling)."""
    h, w = x.shape[-2:]
    sh, sw = max(1, int(h * c)), max(1, int(w * c))
    mh = ops.pil_box_matrix(sh, h) @ ops.pil_box_matrix(h, sh)
    mw = ops.pil_box_matrix(sw, w) @ ops.pil_box_matrix(w, sw)
    return ops.separable_sum(x, [(mh, mw)])


def _jpeg_codec():
    """(encode, decode) of torchvision.io (libjpeg-turbo, ~3x faster than PIL here and byte-identical
    to PIL's default encoder: 4:2:0 chroma subsampling, standard tables), or None to use PIL."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchvision.io import decode_jpeg, encode_jpeg
    except Exception:  # torchvision missing or without its image codecs
        return None
    return encode_jpeg, decode_jpeg


def _jpeg_pil(img: Tensor, quality: int) -> Tensor:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)


def jpeg_roundtrip(u8: Tensor, quality: int) -> Tensor:
    """uint8 (B, 3, H, W) CPU images encoded and decoded as JPEG at `quality` (PIL's defaults:
    4:2:0 chroma subsampling, standard tables); uint8 (B, 3, H, W)."""
    if u8.shape[0] == 0:
        return u8.clone()
    codec = _jpeg_codec()
    if codec is None:
        return torch.stack([_jpeg_pil(img, int(quality)) for img in u8])
    encode, decode = codec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.stack(decode(encode(list(u8), quality=int(quality))))


@register("jpeg_compression", category="digital", benchmark=True, order=15, deterministic=True, monotone=True,
          params={"cifar10": [80, 65, 58, 50, 40], "tinyimagenet": [65, 58, 50, 40, 25]},
          reference=f"{REF}:jpeg_compression")
def jpeg_compression(x: Tensor, quality: int, rng: CounterRNG) -> Tensor:
    """Encode and decode each 8-bit image as JPEG at `quality` on the CPU (PIL-equivalent)."""
    u8 = (x.clamp(0, 1) * 255).round_().to(torch.uint8).cpu()
    return jpeg_roundtrip(u8, int(quality)).to(device=x.device, dtype=x.dtype) / 255


def _affine_inverse(m: Tensor) -> Tensor:
    """Inverse of (B, 2, 3) affine maps."""
    a = m[:, :, :2]
    inv = torch.linalg.inv(a)
    t = -(inv @ m[:, :, 2:])
    return torch.cat([inv, t], dim=2)


# (alpha, sigma, affine) as fractions of the image size
ELASTIC_PARAMS = {
    "cifar10": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)],
    "tinyimagenet": [(0, 0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06), (0.1, 0.03, 0.03), (0.16, 0.03, 0.02)],
}


@register("elastic_transform", category="digital", benchmark=True, order=13, deterministic=False, monotone=False,
          params=ELASTIC_PARAMS, reference=f"{REF}:elastic_transform")
def elastic_transform(x: Tensor, p: tuple[float, float, float], rng: CounterRNG) -> Tensor:
    """Random affine (three points moved by U(-affine, affine), cv2.warpAffine bilinear with
    reflect-101 border), then a displacement field of U(-1, 1) noise smoothed by a Gaussian
    (sigma, truncate 3, symmetric border) times alpha, sampled bilinearly with a symmetric border
    (scipy map_coordinates mode='reflect'). alpha, sigma, affine are fractions of the image size."""
    b, c, h, w = x.shape
    size = max(h, w)
    alpha, sigma, affine = p[0] * size, p[1] * size, p[2] * size
    dev = x.device
    # --- random affine, as cv2.getAffineTransform(pts1, pts2) + warpAffine
    center = torch.tensor([h // 2, w // 2], dtype=torch.float64)
    square = min(h, w) // 3
    pts1 = torch.stack([center + square, torch.stack([center[0] + square, center[1] - square]), center - square])
    pts2 = pts1.unsqueeze(0) + rng.uniform("affine", (3, 2), -affine, affine).to(torch.float64).cpu()
    src = torch.cat([pts1, torch.ones(3, 1, dtype=torch.float64)], 1)  # (3, 3) rows [x, y, 1]
    fwd = torch.linalg.solve(src.unsqueeze(0).expand(b, 3, 3), pts2).transpose(1, 2)  # (B, 2, 3)
    inv = _affine_inverse(fwd).to(device=dev, dtype=torch.float32)
    ys, xs = torch.meshgrid(torch.arange(h, device=dev, dtype=torch.float32),
                            torch.arange(w, device=dev, dtype=torch.float32), indexing="ij")
    pix = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, h * w, 3)
    src_xy = (pix @ inv.transpose(1, 2)).view(b, h, w, 2)  # source (x, y) of every output pixel
    norm = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=dev)
    grid = src_xy * norm - 1.0
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    # --- smoothed random displacement
    if alpha == 0:
        return x
    field = rng.uniform("field", (2, h, w), -1.0, 1.0)
    field = ops.gaussian_filter(field, sigma, mode="symmetric", truncate=3.0) * alpha
    dx, dy = field[:, 0], field[:, 1]
    gx = (xs + dx + 0.5) * (2.0 / w) - 1.0  # align_corners=False pixel centres
    gy = (ys + dy + 0.5) * (2.0 / h) - 1.0
    return F.grid_sample(x, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="reflection",
                         align_corners=False)
