"""Published corruption parameters by image size (Hendrycks & Dietterich 2019).

Two tables: `cifar10` (32 px, CIFAR-10-C) and `tinyimagenet` (64 px, Tiny-ImageNet-C); values
severity 1 -> 5, pixel values in [0, 1]. An image of another size uses the table whose size is
nearest on a log scale (|log(size / table size)| smallest; a tie goes to the larger table), so
45 px and below -> cifar10, 46 px and above -> tinyimagenet (the geometric mean of 32 and 64 is
45.25); `table=` overrides the choice. Size-dependent
quantities (elastic displacements x image size, the fog fractal's map size, crop sizes) follow the
actual image size, not the table's.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from v1sweep.corruptions.catalog import CORRUPTIONS, SEVERITIES

TABLE_SIZES: dict[str, int] = {"cifar10": 32, "tinyimagenet": 64}


def _zoom_factors(ends: tuple[float, ...]) -> list[np.ndarray]:
    # np.arange(1, e, 0.01) exactly as published: for e = 1.06 and 1.11 float rounding makes the
    # range include e itself (7 and 12 factors), for the others it stops below e.
    return [np.arange(1, e, 0.01) for e in ends]


TABLES: dict[str, dict[str, list[Any]]] = {
    "cifar10": {
        "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
        "shot_noise": [500, 250, 100, 75, 50],
        "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
        "speckle_noise": [0.06, 0.1, 0.12, 0.16, 0.2],
        "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
        "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
        "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
        "zoom_blur": _zoom_factors((1.06, 1.11, 1.16, 1.21, 1.26)),
        "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],
        "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                 (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                 (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
        # (image weight, frost weight, texture scale)
        "frost": [(1, 0.2, 0.2), (1, 0.3, 0.2), (0.9, 0.4, 0.2), (0.85, 0.4, 0.2), (0.75, 0.45, 0.2)],
        "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
        "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
        "spatter": [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                    (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                    (0.65, 0.1, 0.5, 0.68, 0.6, 1)],
        "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
        # (alpha, sigma, affine) as fractions of the image size
        "elastic_transform": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                              (0.1, 0.03, 0.03)],
        "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
        "jpeg_compression": [80, 65, 58, 50, 40],
        "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
    },
    "tinyimagenet": {
        "gaussian_noise": [0.04, 0.08, 0.12, 0.15, 0.18],
        "shot_noise": [250, 100, 50, 30, 15],
        "impulse_noise": [0.01, 0.02, 0.05, 0.08, 0.14],
        "speckle_noise": [0.15, 0.2, 0.25, 0.3, 0.35],
        "defocus_blur": [(0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)],
        "glass_blur": [(0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)],
        "motion_blur": [(10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)],
        "zoom_blur": _zoom_factors((1.06, 1.11, 1.16, 1.21, 1.26)),
        "gaussian_blur": [0.5, 0.75, 1.0, 1.25, 1.5],
        "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.8), (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
                 (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
                 (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)],
        "frost": [(1, 0.3, 0.3), (0.9, 0.4, 0.3), (0.8, 0.45, 0.3), (0.75, 0.5, 0.3), (0.7, 0.55, 0.3)],
        "fog": [(0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)],
        "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],
        "spatter": [(0.62, 0.1, 0.7, 0.7, 0.6, 0), (0.65, 0.1, 0.8, 0.7, 0.6, 0),
                    (0.65, 0.3, 1, 0.69, 0.6, 0), (0.65, 0.1, 0.7, 0.68, 0.6, 1),
                    (0.65, 0.1, 0.5, 0.67, 0.6, 1)],
        "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],
        "elastic_transform": [(0, 0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06), (0.1, 0.03, 0.03),
                              (0.16, 0.03, 0.02)],
        "pixelate": [0.9, 0.8, 0.7, 0.6, 0.5],
        "jpeg_compression": [65, 58, 50, 40, 25],
        "saturate": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)],
    },
}

for _table in TABLES.values():  # every table covers the whole catalog with 5 severities
    assert set(_table) == set(CORRUPTIONS), set(CORRUPTIONS) ^ set(_table)
    assert all(len(v) == len(SEVERITIES) for v in _table.values())


def table_for(image_size: int, table: str | None = None) -> str:
    """Name of the parameter table used for images of `image_size` pixels (see module doc)."""
    if table is not None:
        if table not in TABLES:
            raise ValueError(f"unknown corruption parameter table {table!r}; valid: {', '.join(TABLES)}")
        return table
    if image_size < 1:
        raise ValueError(f"image size must be positive, got {image_size}")
    return min(TABLES, key=lambda t: (abs(math.log(image_size / TABLE_SIZES[t])), -TABLE_SIZES[t]))


def get_params(name: str, severity: int, image_size: int, table: str | None = None) -> Any:
    """The published parameter of corruption `name` at `severity` for this image size."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {list(SEVERITIES)}, got {severity!r}")
    return TABLES[table_for(image_size, table)][name][severity - 1]
