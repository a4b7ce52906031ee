"""Vectorised Gabor filter bank built from `RFParams`, in the published VOneNet convention.

For a pixel offset (row i, column j) from the kernel centre (Dapello et al. 2020, VOneNet
`gabor_kernel`, whose `meshgrid` puts the row index first):

    xr =  i cos(theta) + j sin(theta)
    yr = -i sin(theta) + j cos(theta)
    g  = exp(-(xr^2 / sigma_x^2 + yr^2 / sigma_y^2) / 2) / (2 pi sigma_x sigma_y) * cos(2 pi f xr + phase)

with f = sf / ppd cycles/pixel, ppd = image_size / visual_degrees pixels/degree,
sigma_x = nx / f and sigma_y = ny / f pixels (nx, ny: envelope widths in carrier periods,
Ringach 2002). Kernels are therefore numerically comparable with the published VOneBlock weights.
All units are computed at once by broadcasting; there is no Python loop over channels.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from v1sweep.rf.params import RFParams


def pixels_per_degree(image_size: int, visual_degrees: float) -> float:
    """ppd of an image of `image_size` pixels spanning `visual_degrees` degrees."""
    if image_size <= 0:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
    if not visual_degrees > 0:
        raise ValueError(f"visual_degrees must be > 0, got {visual_degrees}")
    return image_size / visual_degrees


def check_rf(rf: RFParams, image_size: int, visual_degrees: float) -> None:
    """Raise ValueError for parameters that give no valid Gabor on this image.

    Spatial frequencies above the image's Nyquist frequency (ppd / 2) alias: the error names the
    units, the largest SF and a `visual_degrees` that would hold them.
    """
    if not isinstance(rf, RFParams):
        raise ValueError(f"rf must be an RFParams, got {type(rf).__name__}")
    if len(rf) == 0:
        raise ValueError("rf holds no units; the V1 block needs at least one channel")
    for name in ("sf", "nx", "ny"):
        values = np.asarray(getattr(rf, name), dtype=np.float64)
        bad = np.flatnonzero(~(values > 0) | ~np.isfinite(values))
        if bad.size:
            raise ValueError(f"rf.{name} must be finite and > 0; {bad.size} unit(s) are not "
                             f"(indices {_head(bad)})")
    for name in ("theta", "phase"):
        bad = np.flatnonzero(~np.isfinite(np.asarray(getattr(rf, name), dtype=np.float64)))
        if bad.size:
            raise ValueError(f"rf.{name} must be finite; {bad.size} unit(s) are not (indices {_head(bad)})")
    for name in ("color", "color_quadrature"):
        bad = np.flatnonzero(~np.isin(getattr(rf, name), (0, 1, 2)))
        if bad.size:
            raise ValueError(f"rf.{name} must be 0, 1 or 2; {bad.size} unit(s) are not (indices {_head(bad)})")
    ppd = pixels_per_degree(image_size, visual_degrees)
    nyquist = ppd / 2
    sf = np.asarray(rf.sf, dtype=np.float64)
    above = np.flatnonzero(sf > nyquist)
    if above.size:
        max_sf = float(sf.max())
        raise ValueError(
            f"{above.size} of {len(rf)} unit(s) have a spatial frequency above the Nyquist frequency "
            f"{nyquist:g} cpd of {image_size} px over {visual_degrees:g} deg (indices {_head(above)}; "
            f"max sf {max_sf:g} cpd); set visual_degrees <= {_floor_sig(image_size / (2 * max_sf))} "
            f"or sample with a lower sf_max")


def _floor_sig(value: float, digits: int = 4) -> str:
    """`value` rounded down to `digits` significant digits, so a suggested bound is safe to use."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return f"{math.floor(value * scale) / scale:g}"


def _head(indices: np.ndarray, n: int = 10) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:n])
    return shown + (", ..." if len(indices) > n else "")


def gabor(frequency: torch.Tensor, sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor,
          phase: torch.Tensor, ksize: int) -> torch.Tensor:
    """(N, ksize, ksize) Gabor kernels from 1-D tensors in pixel units and radians (published formula)."""
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"ksize must be a positive odd number of pixels, got {ksize}")
    half = ksize // 2
    grid = torch.arange(-half, half + 1, dtype=frequency.dtype, device=frequency.device)
    i = grid.view(1, ksize, 1)  # row offset
    j = grid.view(1, 1, ksize)  # column offset
    f, sx, sy = (t.view(-1, 1, 1) for t in (frequency, sigma_x, sigma_y))
    cos_t, sin_t = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
    xr = i * cos_t + j * sin_t
    yr = -i * sin_t + j * cos_t
    envelope = torch.exp(-0.5 * (xr ** 2 / sx ** 2 + yr ** 2 / sy ** 2)) / (2 * math.pi * sx * sy)
    return envelope * torch.cos(2 * math.pi * f * xr + phase.view(-1, 1, 1))


def gabor_kernels(rf: RFParams, *, image_size: int, visual_degrees: float, ksize: int,
                  phase_offset: float = 0.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(len(rf), ksize, ksize) kernels of every unit, in RFParams order.

    `phase_offset` (degrees) is added to every unit's phase: 90 gives the quadrature partner
    of a complex cell. Computed in float64, returned as `dtype`.
    """
    if not isinstance(ksize, (int, np.integer)) or ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"ksize must be a positive odd number of pixels, got {ksize!r}")
    check_rf(rf, image_size, visual_degrees)
    ppd = pixels_per_degree(image_size, visual_degrees)
    as64 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
    f = as64(rf.sf) / ppd
    theta = torch.deg2rad(as64(rf.theta))
    phase = torch.deg2rad(as64(rf.phase) + phase_offset)
    kernels = gabor(f, as64(rf.nx) / f, as64(rf.ny) / f, theta, phase, int(ksize))
    return kernels.to(dtype)
