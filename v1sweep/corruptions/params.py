"""Published corruption parameters by image size (Hendrycks & Dietterich 2019).

The numbers are registered with each corruption (`params=` in its family file); this module
gathers them into `TABLES` and picks a table by image size. Two tables: `cifar10` (32 px,
CIFAR-10-C) and `tinyimagenet` (64 px, Tiny-ImageNet-C); values severity 1 -> 5, pixel values in
[0, 1]. An image of another size uses the table whose size is nearest on a log scale
(|log(size / table size)| smallest; a tie goes to the larger table), so 45 px and below -> cifar10,
46 px and above -> tinyimagenet (the geometric mean of 32 and 64 is 45.25); `table=` overrides the
choice. Size-dependent quantities (elastic displacements x image size, the fog fractal's map size,
crop sizes) follow the actual image size, not the table's.
"""
from __future__ import annotations

import math
from typing import Any

from v1sweep.corruptions.base import REGISTRY, SEVERITIES, TABLE_SIZES
from v1sweep.corruptions.catalog import CORRUPTIONS, registered

__all__ = ["TABLES", "TABLE_SIZES", "get_params", "table_for"]


def _value(name: str, table: str, severity: int) -> Any:
    """The parameter as the corruption takes it: the registered table value, decoded if it says how."""
    meta = REGISTRY.meta(name)
    value = meta["params"][table][severity - 1]
    return value if meta["decode"] is None else meta["decode"](value)


# table -> name -> [param of severity 1, ..., 5], built from each corruption's registered `params`
TABLES: dict[str, dict[str, list[Any]]] = {
    table: {name: [_value(name, table, s) for s in SEVERITIES] for name in CORRUPTIONS} for table in TABLE_SIZES
}


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
    if name not in REGISTRY:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(registered())}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {list(SEVERITIES)}, got {severity!r}")
    chosen = table_for(image_size, table)
    return TABLES[chosen][name][severity - 1] if name in CORRUPTIONS else _value(name, chosen, severity)
