"""Circular-aperture sine gratings: the stimulus set of the Brain-Score V1-properties protocol.

Marques, Schrimpf & DiCarlo 2021 present full-contrast sine gratings on mid-grey inside a circular
aperture: 12 orientations (0-165 by 15 deg), 8 phases (0-315 by 45 deg), 22 quarter-octave spatial
frequencies (2^-1.375 ... 2^3.875 cpd) and several aperture radii. Degrees map to pixels through
the model's `visual_degrees` (ppd = image_size / visual_degrees); frequencies above the image's
Nyquist limit (ppd / 2) cannot be drawn and are skipped (`GratingProtocol.skipped_sfs`).

Geometry convention (the Gabor bank's, `v1sweep.frontend.gabor`, i.e. published VOneNet): with i the
row offset (downwards) and j the column offset (to the right) from the grating centre, in degrees, a
grating of orientation theta is cos(2 pi f (i cos theta + j sin theta) + phase); theta is the
direction of the carrier's wave vector measured from the row axis, the same angle as
`RFParams.theta`, so a unit's measured preferred orientation is directly comparable with its RF.

Images are generated per batch, vectorised over conditions, so the stack never has to sit in memory
at 224 px; the condition table (`GratingProtocol.conditions`) is built once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

ORIENTATIONS = tuple(float(v) for v in np.arange(0, 180, 15))          # 12, deg
PHASES = tuple(float(v) for v in np.arange(0, 360, 45))                # 8, deg
SFS = tuple(float(2.0 ** e) for e in np.arange(-1.375, 3.875 + 1e-9, 0.25))  # 22, cpd


def default_radii(visual_degrees: float) -> tuple[float, ...]:
    """Three aperture radii (deg): a quarter, a half and all of the image's half-width."""
    half = visual_degrees / 2.0
    return (0.25 * half, 0.5 * half, half)


@dataclass(frozen=True)
class GratingProtocol:
    """The stimulus grid, in degrees, for one image geometry.

    `sfs` keeps only drawable frequencies (<= Nyquist); `skipped_sfs` lists the others.
    `center` is the pixel (row, col) of the grating centre; default image_size // 2, which is where
    the centre output unit of a 'same'-padded strided convolution looks.
    """

    image_size: int
    visual_degrees: float
    orientations: tuple[float, ...] = ORIENTATIONS
    phases: tuple[float, ...] = PHASES
    sfs: tuple[float, ...] = SFS
    radii: tuple[float, ...] | None = None
    contrast: float = 1.0
    center: tuple[float, float] | None = None
    skipped_sfs: tuple[float, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        if self.image_size < 4:
            raise ValueError(f"image_size must be >= 4 pixels, got {self.image_size}")
        if not self.visual_degrees > 0:
            raise ValueError(f"visual_degrees must be > 0, got {self.visual_degrees}")
        if not 0 < self.contrast <= 1:
            raise ValueError(f"contrast must be in (0, 1], got {self.contrast}")
        for name in ("orientations", "phases", "sfs"):
            if len(getattr(self, name)) == 0:
                raise ValueError(f"GratingProtocol.{name} must not be empty")
        if len(self.phases) < 3:
            raise ValueError("at least 3 phases are needed to measure the first harmonic (F1)")
        radii = default_radii(self.visual_degrees) if self.radii is None else tuple(self.radii)
        if len(radii) == 0 or min(radii) <= 0:
            raise ValueError(f"radii must be positive degrees, got {radii}")
        nyquist = self.ppd / 2.0
        keep = tuple(float(f) for f in self.sfs if f <= nyquist + 1e-9)
        skipped = tuple(float(f) for f in self.sfs if f > nyquist + 1e-9)
        if not keep:
            raise ValueError(f"all spatial frequencies are above the Nyquist limit {nyquist:g} cpd "
                             f"of {self.image_size} px over {self.visual_degrees} deg")
        object.__setattr__(self, "sfs", keep)
        object.__setattr__(self, "skipped_sfs", skipped)
        object.__setattr__(self, "radii", tuple(float(r) for r in radii))
        object.__setattr__(self, "orientations", tuple(float(v) for v in self.orientations))
        object.__setattr__(self, "phases", tuple(float(v) for v in self.phases))
        if self.center is None:
            c = float(self.image_size // 2)
            object.__setattr__(self, "center", (c, c))

    @property
    def ppd(self) -> float:
        """Pixels per degree."""
        return self.image_size / self.visual_degrees

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(radii, sfs, orientations, phases): the layout of the response tensor's condition axes."""
        radii = self.radii if self.radii is not None else ()  # never None after __post_init__
        return (len(radii), len(self.sfs), len(self.orientations), len(self.phases))

    def __len__(self) -> int:
        return int(np.prod(self.shape))

    @property
    def note(self) -> str:
        if not self.skipped_sfs:
            return ""
        return (f"skipped {len(self.skipped_sfs)} SFs above the Nyquist limit {self.ppd / 2:g} cpd "
                f"({', '.join(f'{f:.3g}' for f in self.skipped_sfs)})")

    def conditions(self) -> dict[str, np.ndarray]:
        """Flat condition table in C order over `shape` (radius slowest, phase fastest)."""
        grids = np.meshgrid(np.array(self.radii), np.array(self.sfs), np.array(self.orientations),
                            np.array(self.phases), indexing="ij")
        return {k: g.reshape(-1) for k, g in zip(("radius", "sf", "orientation", "phase"), grids)}


def make_gratings(sf: np.ndarray | Sequence[float], orientation: np.ndarray | Sequence[float],
                  phase: np.ndarray | Sequence[float], radius: np.ndarray | Sequence[float], *,
                  image_size: int, visual_degrees: float, contrast: float = 1.0,
                  center: tuple[float, float] | None = None, dtype: torch.dtype = torch.float32
                  ) -> torch.Tensor:
    """Single-channel grating images in [0, 1], shape (N, image_size, image_size).

    sf in cpd, orientation/phase in degrees, radius in degrees (aperture; mid-grey 0.5 outside).
    """
    sf_t, ori, ph, rad = (torch.as_tensor(np.asarray(v, dtype=np.float64)).reshape(-1, 1, 1)
                          for v in (sf, orientation, phase, radius))
    ppd = image_size / visual_degrees
    cy, cx = center if center is not None else (image_size // 2, image_size // 2)
    idx = torch.arange(image_size, dtype=torch.float64)
    y = ((idx - cy) / ppd).reshape(1, -1, 1)
    x = ((idx - cx) / ppd).reshape(1, 1, -1)
    theta = torch.deg2rad(ori)
    carrier = torch.cos(2 * np.pi * sf_t * (y * torch.cos(theta) + x * torch.sin(theta)) + torch.deg2rad(ph))
    inside = (x ** 2 + y ** 2) <= rad ** 2
    img = torch.where(inside, 0.5 + 0.5 * contrast * carrier, torch.full_like(carrier, 0.5))
    return img.to(dtype)


def iter_grating_batches(protocol: GratingProtocol, batch_size: int = 256
                         ) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield (slice into the condition table, single-channel images in [0, 1]) batch by batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cond = protocol.conditions()
    n = len(protocol)
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        yield sl, make_gratings(cond["sf"][sl], cond["orientation"][sl], cond["phase"][sl],
                                cond["radius"][sl], image_size=protocol.image_size,
                                visual_degrees=protocol.visual_degrees, contrast=protocol.contrast,
                                center=protocol.center)


def to_model_input(gray: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """[0, 1] grey images (N, H, W) -> the models' input: (x - 0.5) / 0.5, `channels` copies."""
    x = (gray - 0.5) / 0.5
    return x.unsqueeze(1).expand(-1, channels, -1, -1).contiguous()
