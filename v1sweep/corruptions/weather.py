"""Weather corruptions: snow, frost, fog, brightness (spatter lives in spatter.py)."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

from v1sweep.corruptions.base import REF, register
from v1sweep.registry import lazy_module

if TYPE_CHECKING:  # the catalogue imports this module without torch or numpy
    import torch
    import torch.nn.functional as F
    from torch import Tensor

    from v1sweep.corruptions import ops, textures
    from v1sweep.corruptions.rng import CounterRNG
else:
    torch = lazy_module("torch")
    F = lazy_module("torch.nn.functional")
    ops = lazy_module("v1sweep.corruptions.ops")
    textures = lazy_module("v1sweep.corruptions.textures")

# (mu, sigma, zoom, threshold, blur radius, blur sigma, blend) per severity
SNOW_PARAMS = {
    "cifar10": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
    "tinyimagenet": [(0.1, 0.2, 1, 0.6, 8, 3, 0.8), (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
                     (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
                     (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)],
}
# (image weight, frost weight, texture scale)
FROST_PARAMS = {
    "cifar10": [(1, 0.2, 0.2), (1, 0.3, 0.2), (0.9, 0.4, 0.2), (0.85, 0.4, 0.2), (0.75, 0.45, 0.2)],
    "tinyimagenet": [(1, 0.3, 0.3), (0.9, 0.4, 0.3), (0.8, 0.45, 0.3), (0.75, 0.5, 0.3), (0.7, 0.55, 0.3)],
}


@register("snow", category="weather", benchmark=True, order=8, deterministic=False, monotone=False,
          params=SNOW_PARAMS, reference=f"{REF}:snow")
def snow(x: Tensor, p: tuple, rng: CounterRNG) -> Tensor:
    """A Normal(mu, sigma) layer, zoomed, thresholded, stored as 8 bit, motion-blurred at an angle
    U(-135, -45); the image is brightened towards 1.5 * gray + 0.5 and the layer and its 180-degree
    rotation are added."""
    mu, sd, zoom, threshold, radius, sigma, blend = p
    b, c, h, w = x.shape
    layer = rng.normal("layer", (1, h, w), mean=mu, std=sd)
    layer = ops.clipped_zoom(layer, float(zoom))
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = ops.quantize_uint8(layer, "floor")
    angles = rng.uniform("angle", (1,), -135.0, -45.0)[:, 0]
    layer = ops.quantize_uint8(ops.line_blur(layer, int(radius), float(sigma), angles), "round")
    gray = ops.rgb_to_gray(x)
    x = blend * x + (1 - blend) * torch.maximum(x, gray * 1.5 + 0.5)
    return x + layer + torch.flip(layer, dims=(-2, -1))


@lru_cache(maxsize=16)
def _frost_textures(source: str, scale: float, h: int, w: int, device: str) -> tuple[Tensor, ...]:
    """Textures resized by `scale` (bilinear, no antialiasing, as cv2.resize INTER_LINEAR), and
    enlarged further where needed so that an h x w crop fits."""
    out = []
    for tex in textures.frost_images(source):
        t = torch.from_numpy(tex).unsqueeze(0)
        th, tw = max(1, round(t.shape[-2] * scale)), max(1, round(t.shape[-1] * scale))
        grow = max(h / th, w / tw, 1.0)
        th, tw = math.ceil(th * grow), math.ceil(tw * grow)
        t = F.interpolate(t, size=(th, tw), mode="bilinear", align_corners=False, antialias=False)
        out.append(t[0].clamp(0, 1).to(device))
    return tuple(out)


@register("frost", category="weather", benchmark=True, order=9, deterministic=False, monotone=False,
          params=FROST_PARAMS, reference=f"{REF}:frost")
def frost(x: Tensor, p: tuple, rng: CounterRNG) -> Tensor:
    """clip(a * x + b * crop), the crop taken at a random place of a random frost texture.
    `p` = (a, b, texture scale[, texture source]); `apply` appends the source it resolved."""
    a, weight, scale = p[:3]
    source = p[3] if len(p) > 3 else textures.resolve_frost("published")
    b, c, h, w = x.shape
    texs = _frost_textures(source, float(scale), h, w, str(x.device))
    which = rng.randint("texture", (1,), 0, len(texs))[:, 0]
    u = rng.uniform("crop", (2,)).to(torch.float64)
    crops = torch.empty_like(x)
    for k, tex in enumerate(texs):
        sel = torch.nonzero(which == k, as_tuple=True)[0]
        if not sel.numel():
            continue
        th, tw = tex.shape[-2:]
        top = (u[sel, 0] * max(th - h, 1)).floor().to(torch.int64).clamp_(0, th - h)
        left = (u[sel, 1] * max(tw - w, 1)).floor().to(torch.int64).clamp_(0, tw - w)
        rows = top[:, None] + torch.arange(h, device=x.device)
        cols = left[:, None] + torch.arange(w, device=x.device)
        crops[sel] = tex[:, rows[:, :, None], cols[:, None, :]].permute(1, 0, 2, 3).to(x.dtype)
    return a * x + weight * crops


def plasma_fractal(rng: CounterRNG, mapsize: int, wibbledecay: float, device: torch.device) -> Tensor:
    """Diamond-square height maps (B, mapsize, mapsize) in [0, 1], one per image, as published:
    new points = mean of 4 neighbours / 4 * 4 + wibble * U(-wibble, wibble), wibble 100 / decay^level."""
    m = torch.zeros(rng.batch, mapsize, mapsize, device=device)
    step, wibble, level = mapsize, 100.0, 0

    def wibbled(total: Tensor, tag: str) -> Tensor:
        return total / 4 + wibble * rng.uniform(f"{level}{tag}", tuple(total.shape[1:]), -wibble, wibble)

    while step >= 2:
        half = step // 2
        corner = m[:, 0::step, 0::step]
        sq = corner + torch.roll(corner, -1, 1)
        sq = sq + torch.roll(sq, -1, 2)
        m[:, half::step, half::step] = wibbled(sq, "s")
        dr, ul = m[:, half::step, half::step], m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled(dr + torch.roll(dr, 1, 1) + ul + torch.roll(ul, -1, 2), "l")
        m[:, half::step, 0::step] = wibbled(dr + torch.roll(dr, 1, 2) + ul + torch.roll(ul, -1, 1), "t")
        step //= 2
        wibble /= wibbledecay
        level += 1
    flat = m.view(rng.batch, -1)
    flat -= flat.min(1, keepdim=True).values
    flat /= flat.max(1, keepdim=True).values.clamp_min(1e-12)
    return m


@register("fog", category="weather", benchmark=True, order=10, deterministic=False, monotone=True,
          params={"cifar10": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
                  "tinyimagenet": [(0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)]},
          reference=f"{REF}:fog")
def fog(x: Tensor, p: tuple[float, float], rng: CounterRNG) -> Tensor:
    """(x + mix * fractal) * max / (max + mix), max = the image's largest value. The fractal map
    is the next power of two >= the image size (32 for CIFAR-10, 64 for Tiny ImageNet), cropped."""
    mix, decay = p
    b, c, h, w = x.shape
    mapsize = 1 << max(1, math.ceil(math.log2(max(h, w))))
    fractal = plasma_fractal(rng, mapsize, float(decay), x.device)[:, None, :h, :w]
    max_val = x.reshape(b, -1).max(1).values.view(b, 1, 1, 1)
    return (x + mix * fractal) * max_val / (max_val + mix)


def scale_value(x: Tensor, new_v: Tensor, v: Tensor) -> Tensor:
    """RGB with HSV value v replaced by new_v (hue and saturation kept; black -> gray new_v)."""
    ratio = new_v / v.clamp_min(1e-12)
    return torch.where(v > 0, x * ratio, new_v.expand_as(x))


@register("brightness", category="weather", benchmark=True, order=11, deterministic=True, monotone=True,
          params={"cifar10": [0.05, 0.1, 0.15, 0.2, 0.3], "tinyimagenet": [0.1, 0.2, 0.3, 0.4, 0.5]},
          reference=f"{REF}:brightness")
def brightness(x: Tensor, c: float, rng: CounterRNG) -> Tensor:
    """HSV value + c, clipped to 1. RGB is linear in V at fixed hue and saturation, so the HSV
    round trip is a per-pixel rescale."""
    v = x.amax(1, keepdim=True)
    return scale_value(x, (v + c).clamp(max=1.0), v)
