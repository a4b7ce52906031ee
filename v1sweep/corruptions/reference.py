"""A straightforward per-image numpy / scipy / PIL formulation of all 19 corruptions.

Each corruption names its formulation here in its registration (`reference="v1sweep.corruptions.
reference:<function>"`); `reference_for(name)` resolves it.

This is the published generator's shape of computation (one image at a time, numpy RNG, scipy
filters, Python loops where it loops) without OpenCV, ImageMagick or scikit-image. The speed
benchmark (`v1sweep bench corruptions`) measures it as the baseline of the batched suite. Inputs
and outputs are (H, W, 3) float64 arrays in [0, 1]; `rng` is a `numpy.random.Generator`.
"""
from __future__ import annotations

import importlib
import io
from typing import Any, Callable

import numpy as np
import scipy.ndimage as ndi
from PIL import Image

from v1sweep.corruptions.base import REGISTRY
from v1sweep.corruptions.params import get_params
from v1sweep.corruptions.textures import frost_images, resolve_frost

RefFn = Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]


def reference_for(name: str) -> RefFn:
    """The per-image formulation registered with corruption `name` (`reference=`: 'module:function'
    or a callable); ValueError when it has none."""
    ref = REGISTRY.meta(name)["reference"]
    if ref is None:
        raise ValueError(f"corruption {name!r} has no reference formulation")
    if isinstance(ref, str):
        module, attr = ref.split(":")
        ref = getattr(importlib.import_module(module), attr)
    return ref


def _gauss(img: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    sig = (sigma, sigma, 0) if img.ndim == 3 else sigma
    return ndi.gaussian_filter(img, sig, mode=mode, truncate=truncate)


def _clipped_zoom(img: np.ndarray, zoom: float) -> np.ndarray:
    h = img.shape[0]
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    out = ndi.zoom(img[top:top + ch, top:top + ch], (zoom, zoom) + (1,) * (img.ndim - 2), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim:trim + h, trim:trim + h]


def _motion(img: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    width = 2 * radius + 1
    k = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    a = np.deg2rad(angle)
    for i in range(width):
        dx, dy = int(np.ceil(i * np.cos(a) - 0.5)), int(np.ceil(i * np.sin(a) - 0.5))
        rows = np.clip(np.arange(h) + dy, 0, h - 1)
        cols = np.clip(np.arange(w) + dx, 0, w - 1)
        out += k[i] * img[rows][:, cols]
    return out


def _rgb2hsv(x: np.ndarray) -> np.ndarray:
    v = x.max(-1)
    delta = v - x.min(-1)
    s = np.where(delta > 0, delta / np.where(v > 0, v, 1), 0)
    d = np.where(delta > 0, delta, 1)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    h = np.where(r == v, (g - b) / d, np.where(g == v, 2 + (b - r) / d, 4 + (r - g) / d))
    h = np.where(delta > 0, (h / 6) % 1, 0)
    return np.stack([h, s, v], -1)


def _hsv2rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    out = np.zeros(hsv.shape)
    for k in range(6):
        out[i == k] = choices[k][i == k]
    return out


def gaussian_noise(x, c, rng):
    return x + rng.normal(size=x.shape, scale=c)


def shot_noise(x, c, rng):
    return rng.poisson(x * c) / c


def impulse_noise(x, c, rng):
    out = x.copy()
    flip = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    out[flip & salt], out[flip & ~salt] = 1.0, 0.0
    return out


def speckle_noise(x, c, rng):
    return x + x * rng.normal(size=x.shape, scale=c)


def defocus_blur(x, c, rng):
    grid = np.arange(-8, 9)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx ** 2 + yy ** 2) <= c[0] ** 2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-((np.arange(3) - 1) ** 2) / (2 * c[1] ** 2))
    g /= g.sum()
    kernel = ndi.correlate(disk, np.outer(g, g), mode="mirror")
    return np.stack([ndi.correlate(x[..., d], kernel, mode="mirror") for d in range(3)], -1)


def glass_blur(x, c, rng):
    sigma, delta, iterations = c
    h, w = x.shape[:2]
    img = np.floor(_gauss(x, sigma) * 255 + 1e-3).astype(np.uint8)
    for _ in range(iterations):
        for hh in range(h - delta, delta, -1):
            for ww in range(w - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=2)
                hp, wp = hh + dy, ww + dx
                # the published line: on numpy views it copies (hp, wp) into (hh, ww) and leaves
                # (hp, wp) unchanged (not a swap)
                img[hh, ww], img[hp, wp] = img[hp, wp], img[hh, ww]
    return _gauss(img / 255.0, sigma)


def motion_blur(x, c, rng):
    return _motion(x, int(c[0]), c[1], rng.uniform(-45, 45))


def zoom_blur(x, c, rng):
    out = np.zeros_like(x)
    for f in c:
        out += _clipped_zoom(x, f)
    return (x + out) / (len(c) + 1)


def gaussian_blur(x, c, rng):
    return _gauss(x, c)


def snow(x, c, rng):
    h, w = x.shape[:2]
    layer = rng.normal(size=(h, w), loc=c[0], scale=c[1])
    layer = _clipped_zoom(layer, c[2])
    layer[layer < c[3]] = 0
    layer = np.floor(np.clip(layer, 0, 1) * 255) / 255
    layer = np.round(_motion(layer[..., None], int(c[4]), c[5], rng.uniform(-135, -45)) * 255) / 255
    gray = (x @ np.array([0.299, 0.587, 0.114]))[..., None]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, gray * 1.5 + 0.5)
    return x + layer + np.rot90(layer, k=2)


def frost(x, c, rng):
    h, w = x.shape[:2]
    tex = frost_images(resolve_frost("published"))[rng.integers(5)]
    th, tw = max(h, round(tex.shape[1] * c[2])), max(w, round(tex.shape[2] * c[2]))
    pil = Image.fromarray(np.round(tex.transpose(1, 2, 0) * 255).astype(np.uint8)).resize((tw, th), Image.BILINEAR)
    tex = np.asarray(pil, dtype=np.float64) / 255
    top, left = rng.integers(0, max(th - h, 1)), rng.integers(0, max(tw - w, 1))
    return c[0] * x + c[1] * tex[top:top + h, left:left + w]


def _plasma(mapsize: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    m = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0
    while step >= 2:
        half = step // 2
        corner = m[0::step, 0::step]
        sq = corner + np.roll(corner, -1, 0)
        sq = sq + np.roll(sq, -1, 1)
        m[half::step, half::step] = sq / 4 + wibble * rng.uniform(-wibble, wibble, sq.shape)
        dr, ul = m[half::step, half::step], m[0::step, 0::step]
        lt = dr + np.roll(dr, 1, 0) + ul + np.roll(ul, -1, 1)
        m[0::step, half::step] = lt / 4 + wibble * rng.uniform(-wibble, wibble, lt.shape)
        tt = dr + np.roll(dr, 1, 1) + ul + np.roll(ul, -1, 0)
        m[half::step, 0::step] = tt / 4 + wibble * rng.uniform(-wibble, wibble, tt.shape)
        step //= 2
        wibble /= decay
    m -= m.min()
    return m / m.max()


def fog(x, c, rng):
    h = x.shape[0]
    mapsize = 1 << max(1, int(np.ceil(np.log2(h))))
    max_val = x.max()
    x = x + c[0] * _plasma(mapsize, c[1], rng)[:h, :h][..., None]
    return x * max_val / (max_val + c[0])


def brightness(x, c, rng):
    hsv = _rgb2hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _hsv2rgb(hsv)


def saturate(x, c, rng):
    hsv = _rgb2hsv(x)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return _hsv2rgb(hsv)


def contrast(x, c, rng):
    m = x.mean(axis=(0, 1), keepdims=True)
    return (x - m) * c + m


def elastic_transform(x, c, rng):
    h, w = x.shape[:2]
    alpha, sigma, affine = c[0] * h, c[1] * h, c[2] * h
    center, square = np.array([h // 2, w // 2], float), min(h, w) // 3
    pts1 = np.array([center + square, [center[0] + square, center[1] - square], center - square])
    pts2 = pts1 + rng.uniform(-affine, affine, size=pts1.shape)
    fwd = np.linalg.solve(np.c_[pts1, np.ones(3)], pts2).T  # (2, 3): [x', y'] = A [x, y, 1]
    inv = np.linalg.inv(fwd[:, :2])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    src = inv @ (np.stack([xx.ravel(), yy.ravel()]) - fwd[:, 2:])
    coords = [src[1].reshape(h, w), src[0].reshape(h, w)]
    x = np.stack([ndi.map_coordinates(x[..., d], coords, order=1, mode="mirror") for d in range(3)], -1)
    dx = _gauss(rng.uniform(-1, 1, size=(h, w)), sigma, "reflect", 3) * alpha
    dy = _gauss(rng.uniform(-1, 1, size=(h, w)), sigma, "reflect", 3) * alpha
    coords = [yy + dy, xx + dx]
    return np.stack([ndi.map_coordinates(x[..., d], coords, order=1, mode="reflect") for d in range(3)], -1)


def pixelate(x, c, rng):
    h, w = x.shape[:2]
    pil = Image.fromarray(np.round(x * 255).astype(np.uint8))
    pil = pil.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX)
    return np.asarray(pil, dtype=np.float64) / 255


def jpeg_compression(x, c, rng):
    buf = io.BytesIO()
    Image.fromarray(np.round(x * 255).astype(np.uint8)).save(buf, "JPEG", quality=int(c))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float64) / 255


def _canny(img: np.ndarray, low: float, high: float) -> np.ndarray:
    gx = ndi.correlate(img, np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]), mode="nearest")
    gy = ndi.correlate(img, np.array([[-1.0, -2, -1], [0, 0, 0], [1, 2, 1]]), mode="nearest")
    mag = np.abs(gx) + np.abs(gy)
    h, w = img.shape
    mp = np.pad(mag, 1)
    keep = np.zeros((h, w), bool)
    for i in range(h):
        for j in range(w):
            m, ax, ay = mag[i, j], abs(gx[i, j]), abs(gy[i, j])
            if m <= low:
                continue
            if ay < ax * 0.41421356:
                keep[i, j] = m > mp[i + 1, j] and m >= mp[i + 1, j + 2]
            elif ay > ax * 2.41421356:
                keep[i, j] = m > mp[i, j + 1] and m >= mp[i + 2, j + 1]
            else:
                s = 1 if (gx[i, j] < 0) == (gy[i, j] < 0) else -1
                keep[i, j] = m > mp[i, j + 1 - s] and m > mp[i + 2, j + 1 + s]
    strong = keep & (mag > high)
    return ndi.binary_propagation(strong, structure=np.ones((3, 3)), mask=keep)


def spatter(x, c, rng):
    h, w = x.shape[:2]
    liquid = _gauss(rng.normal(size=(h, w), loc=c[0], scale=c[1]), c[2])
    liquid[liquid < c[3]] = 0
    if c[5] == 0:
        layer8 = np.floor(np.clip(liquid, 0, 1) * 255 + 1e-3)
        edges = _canny(layer8, 50, 150)
        dist = ndi.distance_transform_edt(~edges) if edges.any() else np.full((h, w), 20.0)
        dist = np.minimum(dist, 20)
        dist = np.floor(ndi.uniform_filter(dist, 3, mode="mirror") + 1e-3)
        hist = np.bincount(dist.astype(int).ravel(), minlength=256)
        first = int(np.argmax(hist > 0))
        if hist[first] == dist.size:
            dist = np.full_like(dist, first)
        else:
            lut = np.round((np.cumsum(hist) - hist[first]) * (255.0 / (dist.size - hist[first])))
            dist = np.clip(lut, 0, 255)[dist.astype(int)]
        dist = np.clip(np.round(ndi.correlate(dist, np.array([[-2.0, -1, 0], [-1, 1, 1], [0, 1, 2]]),
                                              mode="mirror")), 0, 255)
        dist = ndi.uniform_filter(dist, 3, mode="mirror")
        m = layer8 * dist
        m = m / m.max() * c[4] if m.max() > 0 else m
        return x + m[..., None] * np.array([175, 238, 238]) / 255
    m = _gauss((liquid > c[3]).astype(np.float64), c[4])
    m[m < 0.8] = 0
    return x * (1 - m[..., None]) + np.array([63, 42, 20]) / 255 * m[..., None]


def apply_reference(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Per-image loop over (N, H, W, 3) float images in [0, 1]; one numpy Generator per image."""
    param = get_params(name, severity, images.shape[1])
    fn = reference_for(name)
    out = np.empty_like(images)
    for i, img in enumerate(images):
        rng = np.random.default_rng([seed, severity, i])
        out[i] = np.clip(fn(img, param, rng), 0, 1)
    return out
