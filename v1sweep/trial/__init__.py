"""The trial path: one trial config in, a trained and corruption-tested network out (torch only).

`run_trial` (`v1sweep.trial:run_trial`, the default trial function of a sweep file) is exported
lazily so that `v1sweep.trial.functions`, which the torch-free config layer reads, does not pull
torch in. Nothing under this package imports ray, mlflow or optuna, not even inside a function
(tests/test_layers.py checks it).
"""
from __future__ import annotations

from typing import Any

__all__ = ["run_trial", "TrialResult"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from v1sweep.trial import run
        return getattr(run, name)
    raise AttributeError(f"module 'v1sweep.trial' has no attribute {name!r}")
