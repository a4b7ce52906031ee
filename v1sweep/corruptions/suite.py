"""The corruption suite: `list_corruptions()` and `apply(images, name, severity, seed, indices)`.

Every corruption works on a whole batch at once, on whatever device the batch is on. Random
corruptions draw from a counter-based generator keyed by (seed, name, severity, dataset index of
the image), so an image's corruption is the same in any batch, in any order, at any batch size.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from v1sweep.corruptions.base import REGISTRY
from v1sweep.corruptions.catalog import CORRUPTIONS, SEVERITIES, registered  # imports the FAMILY_MODULES
from v1sweep.corruptions.params import get_params
from v1sweep.corruptions.rng import CounterRNG
from v1sweep.corruptions.textures import resolve_frost


# Pixels (B * H * W) per internal chunk: elementwise chains run 2-3x faster when their operands fit
# in cache; glass blur loops over pixel positions, so it prefers many images per step.
CHUNK_PIXELS = 1 << 18
CHUNK_PIXELS_BY_NAME = {"glass_blur": 1 << 21}


def chunk_size(name: str, height: int, width: int) -> int:
    """Images per internal chunk of `apply` for this corruption and image size."""
    return max(1, CHUNK_PIXELS_BY_NAME.get(name, CHUNK_PIXELS) // (height * width))


def list_corruptions() -> list[str]:
    """The 19 corruption names in catalog order (15 benchmark corruptions, then the 4 extras)."""
    return list(CORRUPTIONS)


def check_name(name: str) -> str:
    """`name` if it is registered (a published corruption or a plugin), else ValueError listing them."""
    if name not in REGISTRY:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(registered())}")
    return name


def check_severity(severity: int) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ValueError(f"severity must be an integer in 1-5, got {severity!r}")
    return severity


def check_images(images: Tensor) -> None:
    """ValueError unless `images` is a float (B, 3, H, W) tensor with values in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if images.shape[2] < 4 or images.shape[3] < 4:
        raise ValueError(f"images must be at least 4 x 4 pixels, got {tuple(images.shape[2:])}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [0, 1], got dtype {images.dtype} "
                         "(convert uint8 with images.float() / 255)")
    if images.numel():
        lo, hi = torch.aminmax(images.detach())
        if bool(torch.isnan(lo) | torch.isnan(hi)):
            raise ValueError("images contain NaN")
        if float(lo) < 0.0 or float(hi) > 1.0:
            raise ValueError(f"images must lie in [0, 1], got values in [{float(lo):.4g}, {float(hi):.4g}]")


def _indices(indices: Sequence[int] | Tensor | None, batch: int) -> Tensor:
    if indices is None:
        return torch.arange(batch, dtype=torch.int64)
    idx = torch.as_tensor(indices)
    if idx.dim() != 1 or idx.numel() != batch:
        raise ValueError(f"indices must be a 1-D sequence of {batch} dataset indices, got shape {tuple(idx.shape)}")
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
    if batch and int(idx.min()) < 0:
        raise ValueError("indices must be non-negative")
    return idx.to(torch.int64)


def apply(images: Tensor, name: str, severity: int, seed: int = 0,
          indices: Sequence[int] | Tensor | None = None, *, table: str | None = None,
          frost: str = "published") -> Tensor:
    """Corrupt a float (B, 3, H, W) batch in [0, 1]; returns a tensor of the same shape and dtype.

    Large batches are processed in chunks (`chunk_size`); results do not depend on it. `indices` are the dataset indices of the images (default 0..B-1): they, `seed`, `name` and
    `severity` fix each image's randomness. `table` forces a parameter table ('cifar10' or
    'tinyimagenet'); by default it follows the image size (see `params.table_for`). `frost` picks
    the frost textures: 'published' (the published photographs; falls back to the procedural ones
    with a warning when their files are missing) or 'procedural' (see `textures`).
    """
    check_name(name)
    check_severity(severity)
    check_images(images)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    idx = _indices(indices, images.shape[0])
    if images.shape[0] == 0:
        return images.clone()
    h, w = images.shape[-2:]
    param = get_params(name, severity, max(h, w), table)
    if name == "frost":
        param = (*param, resolve_frost(frost))
    fn = REGISTRY.get(name)
    step = chunk_size(name, h, w)
    out = torch.empty_like(images)
    with torch.no_grad():
        for start in range(0, images.shape[0], step):
            part = slice(start, start + step)
            x = images[part].detach().to(torch.float32).contiguous()
            rng = CounterRNG(seed, name, severity, idx[part], images.device)
            # clamped into a new tensor, never in place on fn's result (it may share memory with x and
            # so with `images`); the copy casts back to the caller's dtype (float64 in, float64 out)
            out[part] = torch.clamp(fn(x, param, rng), 0.0, 1.0)
    return out
