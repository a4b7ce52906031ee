"""How corrupted images are stored as 8 bit, as the published sets stored them.

The published generators end with `np.uint8(x)` on values in [0, 255]: truncation, not rounding
(on average half a grey level darker). CIFAR-10-C keeps those bytes in `.npy` files;
Tiny-ImageNet-C saves them as JPEG at quality 85 (PIL, `optimize=True`, which changes the file
size but not the decoded pixels). `storage`:

- `published` (default): the parameter table decides. `cifar10`: truncation to uint8.
  `tinyimagenet`: truncation, then a JPEG quality-85 round trip (the images the published
  Tiny-ImageNet-C files decode to).
- `lossless`: rounding to the nearest uint8, no JPEG (closest to the float result; not what the
  published sets hold).
"""
from __future__ import annotations

import torch
from torch import Tensor


STORAGE_CHOICES = ("published", "lossless")
TINY_JPEG_QUALITY = 85
TRUNCATE_GUARD = 1e-4


def storage_format(table: str, storage: str = "published") -> str:
    """A name for the stored format: 'uint8-truncate', 'uint8-truncate+jpeg85' or 'uint8-round'."""
    if storage not in STORAGE_CHOICES:
        raise ValueError(f"storage must be one of {', '.join(STORAGE_CHOICES)}, got {storage!r}")
    if storage == "lossless":
        return "uint8-round"
    return "uint8-truncate+jpeg85" if table == "tinyimagenet" else "uint8-truncate"


def store_uint8(images: Tensor, table: str, storage: str = "published") -> Tensor:
    """Float (B, 3, H, W) images in [0, 1] -> the uint8 (B, 3, H, W) CPU images a set stores.

    Truncation keeps values within 1e-4 grey levels below an integer on that integer (float32
    rounding of results that are whole grey levels in float64)."""
    fmt = storage_format(table, storage)
    b, _, h, w = images.shape
    u8 = torch.empty(images.shape, dtype=torch.uint8, device=images.device)
    step = max(1, (1 << 18) // max(1, h * w))  # chunks that stay in cache (as `apply` does)
    for start in range(0, b, step):
        levels = images[start:start + step].clamp(0, 1).mul_(255)
        levels = levels.round_() if fmt == "uint8-round" else levels.add_(TRUNCATE_GUARD).floor_()
        u8[start:start + step] = levels
    u8 = u8.cpu()
    if fmt.endswith("+jpeg85"):
        from v1sweep.corruptions.digital import jpeg_roundtrip

        u8 = jpeg_roundtrip(u8, TINY_JPEG_QUALITY)
    return u8
