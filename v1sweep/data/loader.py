"""Batches from resident uint8 tensors with on-device augmentation, no worker processes.

The whole split lives on the training device as uint8 (CIFAR-10 train: 150 MB; Tiny ImageNet:
1.2 GB). A batch is an `index_select`, a float conversion, one batched `affine_grid` +
`grid_sample` for the augmentation, and the normalisation -- no per-sample Python, so the data
path keeps up with a GPU that a DataLoader with PIL transforms cannot feed.

`Augment` reproduces the study's torchvision pipeline in distribution:
``RandomAffine(degrees=30, translate=(0.05, 0.05), scale=(1, 1.2))`` (nearest-neighbour
resampling and black fill, torchvision's defaults; translations rounded to whole pixels as
torchvision does), then ``RandomHorizontalFlip()``, then ``ToTensor`` + ``Normalize(0.5, 0.5)``.
The flip is folded into each sample's sampling matrix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from v1sweep.data.synthetic import derive_seed

MEAN = 0.5
STD = 0.5


def _unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1] (a new tensor)."""
    return images.to(torch.float32).div_(255.0)


def _standardize_(x: torch.Tensor) -> torch.Tensor:
    return x.sub_(MEAN).div_(STD)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """The study's input normalisation: uint8 images -> (x/255 - 0.5) / 0.5, float32 in [-1, 1].

    Float input is taken to be in [0, 1] already. Never modifies its argument.
    """
    if images.dtype == torch.uint8:
        return _standardize_(_unit(images))
    return _standardize_(images.to(torch.float32, copy=True))


@dataclass(frozen=True)
class Augment:
    """Random affine (rotation, translation, zoom) + horizontal flip, batched on the device.

    rotation: max |angle| in degrees (uniform); translate: max shift as a fraction of the image
    side (uniform, rounded to whole pixels); scale: zoom range (uniform); hflip: flip with
    probability 0.5; interpolation: "nearest" (torchvision's default) or "bilinear".
    """

    rotation: float = 30.0
    translate: float = 0.05
    scale: tuple[float, float] = (1.0, 1.2)
    hflip: bool = True
    interpolation: str = "nearest"

    def __post_init__(self) -> None:
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"rotation must be in [0, 180] degrees, got {self.rotation}")
        if not 0 <= self.translate <= 1:
            raise ValueError(f"translate must be in [0, 1], got {self.translate}")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {self.scale}")
        if self.interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got {self.interpolation!r}")
        object.__setattr__(self, "scale", (float(lo), float(hi)))

    @classmethod
    def from_config(cls, data_config: Any) -> "Augment | None":
        """The augmentation a `DataConfig` asks for, or None when `augment` is off."""
        if not getattr(data_config, "augment", True):
            return None
        return cls(rotation=float(data_config.rotation), translate=float(data_config.translate),
                   scale=(float(data_config.scale_min), float(data_config.scale_max)),
                   hflip=bool(data_config.hflip))

    @property
    def is_identity(self) -> bool:
        return self.rotation == 0 and self.translate == 0 and self.scale == (1.0, 1.0) and not self.hflip

    def sample(self, n: int, height: int, width: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Per-sample parameters: `angle` (degrees; positive = clockwise on screen, as in torchvision's
        `F.affine`), `tx`, `ty` (whole pixels),
        `scale`, `flip` (bool); drawn as torchvision's RandomAffine.get_params does."""
        if device is None:
            device = generator.device if generator is not None else "cpu"
        u = torch.rand((n, 5), generator=generator, device=device)
        lo, hi = self.scale
        max_dx, max_dy = self.translate * width, self.translate * height
        return {
            "angle": (2 * u[:, 0] - 1) * self.rotation,
            "tx": torch.round((2 * u[:, 1] - 1) * max_dx),
            "ty": torch.round((2 * u[:, 2] - 1) * max_dy),
            "scale": lo + (hi - lo) * u[:, 3],
            "flip": (u[:, 4] < 0.5) if self.hflip else torch.zeros(n, dtype=torch.bool, device=device),
        }

    @staticmethod
    def matrices(params: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
        """(n, 2, 3) `affine_grid` matrices (output -> input, normalised coordinates).

        Same inverse map as torchvision's `_get_inverse_affine_matrix` (centre = image centre,
        no shear), with the horizontal flip applied after the affine (negated x column).
        """
        a = torch.deg2rad(params["angle"].to(torch.float32))
        s = params["scale"].to(torch.float32)
        tx, ty = params["tx"].to(torch.float32), params["ty"].to(torch.float32)
        cos, sin = torch.cos(a) / s, torch.sin(a) / s
        m00, m01, m10, m11 = cos, sin, -sin, cos            # inverse rotation-scale, pixel units
        b0 = -(m00 * tx + m01 * ty)
        b1 = -(m10 * tx + m11 * ty)
        sign = torch.where(params["flip"], -1.0, 1.0).to(a)
        half_w, half_h = width / 2.0, height / 2.0
        theta = torch.stack([
            torch.stack([m00 * sign, m01 * half_h / half_w, b0 / half_w], dim=-1),
            torch.stack([m10 * sign * half_w / half_h, m11, b1 / half_h], dim=-1),
        ], dim=1)
        return theta

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Warp float images (n, C, H, W) in [0, 1] with given parameters; outside = 0 (black)."""
        n, c, h, w = images.shape
        theta = self.matrices(params, h, w).to(device=images.device, dtype=images.dtype)
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
        return F.grid_sample(images, grid, mode=self.interpolation, padding_mode="zeros", align_corners=False)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a float batch in [0, 1] (fill is black, as in the study's PIL pipeline)."""
        if self.is_identity or images.shape[0] == 0:
            return images
        params = self.sample(images.shape[0], images.shape[-2], images.shape[-1], generator, images.device)
        return self.apply(images, params)


class BatchLoader:
    """Iterate (normalised float images, int64 labels) batches over resident uint8 tensors.

    The tensors are moved to `device` once. Each epoch's order and augmentation are seeded
    by (seed, epoch): call `set_epoch(epoch)` before iterating (as with a DistributedSampler),
    so a resumed run sees the same batches. `len()` is the number of batches.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, device: torch.device | str = "cpu", augment: Augment | None = None,
                 drop_last: bool = False) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.augment = None if augment is None or augment.is_identity else augment
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return int(self.images.shape[0])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def order(self, epoch: int | None = None) -> torch.Tensor | None:
        """The sample order of an epoch (on `device`), or None when not shuffling."""
        if not self.shuffle:
            return None
        epoch = self.epoch if epoch is None else epoch
        gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 0))
        return torch.randperm(self.num_samples, generator=gen).to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order()
        aug_gen = None
        if self.augment is not None:
            aug_gen = torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, self.epoch, 1))
        bs = self.batch_size
        for b in range(len(self)):
            if order is None:
                xb = self.images[b * bs:(b + 1) * bs]
                yb = self.labels[b * bs:(b + 1) * bs]
            else:
                idx = order[b * bs:(b + 1) * bs]
                xb = self.images.index_select(0, idx)
                yb = self.labels.index_select(0, idx)
            x = _unit(xb)
            if self.augment is not None:
                x = self.augment(x, aug_gen)
            yield _standardize_(x), yb
