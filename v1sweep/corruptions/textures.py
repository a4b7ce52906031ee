"""Frost textures: the published frost photographs (default), or a seeded procedural stand-in.

The published frost corruption blends a random crop of one of five frost photographs
(frost1-3.png, frost4-5.jpg; the generator draws randint(5), so frost6.jpg is never used). The
PyPI package `imagecorruptions`, a dependency of v1sweep, ships them as data files. Importing that
package fails on current setuptools (it imports `pkg_resources`), so the files are located without
importing it (`importlib.util.find_spec`, else the distribution's file list) and read with PIL.

`eval.frost` chooses: `published` (the photographs) or `procedural` (five textures of ridged
diamond-square noise with an icy tint, generated from fixed seeds; they are not the photographs).
`resolve_frost(choice)` names the source actually used; it is part of the materialized-set key and
is recorded by the trial. When `published` is asked for but the files are missing (a broken
install), frost falls back to the procedural textures with a warning on stderr.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
FROST_CHOICES = ("published", "procedural")
PHOTOS = "imagecorruptions-photos"
PROCEDURAL_VERSION = "procedural-1"
# (height, width) of the photographs, reused for the procedural stand-ins
_PHOTO_SHAPES = ((600, 900), (315, 560), (315, 560), (350, 527), (495, 660))
_warned: set[str] = set()


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in FROST_FILES)


def frost_dir() -> Path | None:
    """Folder holding the photographs of the installed `imagecorruptions`, or None."""
    try:
        spec = importlib.util.find_spec("imagecorruptions")  # finds, does not execute, the package
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if _complete(Path(location) / "frost"):
            return Path(location) / "frost"
    try:  # e.g. a zip-safe or unusual layout: ask the distribution where its files are
        dist = importlib.metadata.distribution("imagecorruptions")
        folder = Path(str(dist.locate_file("imagecorruptions/frost")))
    except (importlib.metadata.PackageNotFoundError, OSError, TypeError):
        return None
    return folder if _complete(folder) else None


def resolve_frost(choice: str = "published") -> str:
    """The texture source for `eval.frost` = `choice`: PHOTOS or PROCEDURAL_VERSION.

    `published` without the photographs on disk falls back to the procedural textures and says so
    on stderr (once per process) and as a warning; the caller records the returned source."""
    if choice not in FROST_CHOICES:
        raise ValueError(f"frost must be one of {', '.join(FROST_CHOICES)}, got {choice!r}")
    if choice == "procedural":
        return PROCEDURAL_VERSION
    if frost_dir() is not None:
        return PHOTOS
    message = ("WARNING: the published frost photographs (data files of the `imagecorruptions` package, a "
               "v1sweep dependency) are not installed; frost falls back to PROCEDURAL textures, which are "
               "not comparable with CIFAR-10-C / Tiny-ImageNet-C. Reinstall with `pip install "
               "imagecorruptions`, or set eval.frost: procedural to ask for them explicitly.")
    if "fallback" not in _warned:
        _warned.add("fallback")
        print(message, file=sys.stderr, flush=True)
    warnings.warn(message, RuntimeWarning, stacklevel=2)
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
    elif source != PHOTOS:
        raise ValueError(f"unknown frost texture source {source!r}; valid: {PHOTOS}, {PROCEDURAL_VERSION}")
    else:
        from PIL import Image

        folder = frost_dir()
        if folder is None:
            raise ValueError("frost photographs not found (pip install imagecorruptions)")
        arrays = []
        for name in FROST_FILES:
            with Image.open(folder / name) as im:
                arrays.append(np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0)
    return tuple(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32) for a in arrays)
