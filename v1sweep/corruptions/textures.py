"""Frost textures: the photographs of the `imagecorruptions` wheel, or a seeded procedural stand-in.

The published frost corruption blends a random crop of one of five frost photographs
(frost1-3.png, frost4-5.jpg; the generator draws randint(5), so frost6.jpg is never used). The
PyPI package `imagecorruptions` ships them as data files. Importing that package fails on current
setuptools, so the files are located with `importlib.util.find_spec` (which does not execute the
package) and read with PIL. Without the package, five procedural textures (ridged diamond-square
noise with an icy tint, generated from fixed seeds) stand in; they are not the photographs.

`V1SWEEP_FROST=package|procedural|auto` (default auto) forces a source; `frost_source()` names the
one in use and is part of the materialized-set cache key.
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
PROCEDURAL_VERSION = "procedural-1"
# (height, width) of the photographs, reused for the procedural stand-ins
_PHOTO_SHAPES = ((600, 900), (315, 560), (315, 560), (350, 527), (495, 660))


def frost_dir() -> Path | None:
    """Folder holding the photographs of an installed `imagecorruptions`, or None."""
    try:
        spec = importlib.util.find_spec("imagecorruptions")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "frost"
        if all((folder / f).is_file() for f in FROST_FILES):
            return folder
    return None


def frost_source() -> str:
    """'imagecorruptions-photos' or 'procedural-1' (after the V1SWEEP_FROST override)."""
    choice = os.environ.get("V1SWEEP_FROST", "auto").strip().lower() or "auto"
    if choice not in ("auto", "package", "procedural"):
        raise ValueError(f"V1SWEEP_FROST must be auto, package or procedural, got {choice!r}")
    if choice == "procedural":
        return PROCEDURAL_VERSION
    if frost_dir() is not None:
        return "imagecorruptions-photos"
    if choice == "package":
        raise ValueError("V1SWEEP_FROST=package but the frost photographs of the `imagecorruptions` "
                         "package are not installed (pip install --no-deps imagecorruptions)")
    return PROCEDURAL_VERSION


def _plasma(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square fractal in [0, 1] (numpy; used once per procedural texture)."""
    m = np.zeros((size, size))
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        corner = m[0:size:step, 0:size:step]
        sq = corner + np.roll(corner, -1, 0)
        sq = sq + np.roll(sq, -1, 1)
        m[half:size:step, half:size:step] = sq / 4 + wibble * rng.uniform(-wibble, wibble, sq.shape)
        dr, ul = m[half:size:step, half:size:step], m[0:size:step, 0:size:step]
        lt = dr + np.roll(dr, 1, 0) + ul + np.roll(ul, -1, 1)
        m[0:size:step, half:size:step] = lt / 4 + wibble * rng.uniform(-wibble, wibble, lt.shape)
        tt = dr + np.roll(dr, 1, 1) + ul + np.roll(ul, -1, 0)
        m[half:size:step, 0:size:step] = tt / 4 + wibble * rng.uniform(-wibble, wibble, tt.shape)
        step //= 2
        wibble /= decay
    m -= m.min()
    return m / m.max()


def _procedural(k: int) -> np.ndarray:
    """Texture k (H, W, 3) float in [0, 1]: ridged fractal veins over a hazy base, icy tint."""
    h, w = _PHOTO_SHAPES[k]
    rng = np.random.default_rng(20190000 + k)
    base = _plasma(1024, 1.8, rng)[:h, :w]
    veins = np.zeros((h, w))
    for octave, weight in ((1.6, 0.6), (2.2, 0.4)):
        ridge = 1.0 - np.abs(2.0 * _plasma(1024, octave, rng)[:h, :w] - 1.0)
        veins += weight * ridge ** 8
    value = 0.45 * base + 0.9 * veins
    value = (value - value.mean()) / (value.std() + 1e-8) * 0.16 + 0.55
    tint = np.array([0.86, 0.93, 1.0])
    return np.clip(value[..., None] * tint, 0, 1)


@lru_cache(maxsize=4)
def frost_images(source: str) -> tuple[np.ndarray, ...]:
    """The five textures as float32 (3, H, W) arrays in [0, 1] at their native size."""
    if source == PROCEDURAL_VERSION:
        arrays = [_procedural(k) for k in range(len(FROST_FILES))]
    else:
        from PIL import Image

        folder = frost_dir()
        if folder is None:
            raise ValueError("frost photographs not found (pip install --no-deps imagecorruptions)")
        arrays = []
        for name in FROST_FILES:
            with Image.open(folder / name) as im:
                arrays.append(np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0)
    return tuple(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32) for a in arrays)
