"""Receptive-field parameters of V1 front-ends: published tables, sampling strategies, similarity.

`sample(strategy, n_simple, n_complex, seed, **options)` draws an `RFParams`;
`list_strategies()` names the registered strategies (docs/rf_sampling.md describes them).
"""
from __future__ import annotations

from v1sweep.rf.params import RFParams
from v1sweep.rf.sampling import list_strategies, sample

__all__ = ["RFParams", "sample", "list_strategies"]
