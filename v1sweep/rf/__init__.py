"""Receptive-field parameters of V1 front-ends: published tables, sampling strategies, similarity.

`sample(strategy, n_simple, n_complex, seed, **options)` draws an `RFParams`;
`list_strategies()` names the registered strategies (docs/rf_sampling.md describes them).
They load on first use, so `v1sweep.rf.catalog` (what the config layer reads) stays numpy-free.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from v1sweep.rf.params import RFParams
    from v1sweep.rf.sampling import list_strategies, sample

_LAZY = {"RFParams": "params", "sample": "sampling", "list_strategies": "sampling"}

__all__ = ["RFParams", "sample", "list_strategies"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"v1sweep.rf.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'v1sweep.rf' has no attribute {name!r}")
