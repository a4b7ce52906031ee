"""Common corruptions (ImageNet-C family) in batched PyTorch, and the corrupted test sets.

`catalog` (names, categories) is imported eagerly and stays free of torch so configs can validate
names cheaply; everything else loads on first use:

- `list_corruptions()`, `apply(images, name, severity, seed=0, indices=None)` (suite)
- `source_for(...)`, `GeneratedSource`, `CifarCSource`, `TinyImageNetCSource` (readers)
- `v1sweep.corruptions.materialize.materialize(...)` writes the cached CIFAR-10-C-layout sets (not
  re-exported here: the package attribute `materialize` is that submodule, as Python sets it)
"""
from __future__ import annotations

import importlib
from typing import Any

from v1sweep.corruptions.catalog import (BENCHMARK_CORRUPTIONS, CATEGORIES, CORRUPTIONS, EXTRA_CORRUPTIONS,
                                         SEVERITIES, category_of)

_LAZY = {
    "list_corruptions": "suite",
    "apply": "suite",
    "source_for": "readers",
    "GeneratedSource": "readers",
    "CifarCSource": "readers",
    "TinyImageNetCSource": "readers",
}

__all__ = ["BENCHMARK_CORRUPTIONS", "CATEGORIES", "CORRUPTIONS", "EXTRA_CORRUPTIONS", "SEVERITIES",
           "category_of", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"v1sweep.corruptions.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'v1sweep.corruptions' has no attribute {name!r}")
