"""v1sweep: experiment sweeps over V1-like CNN front-ends.

Importing the package stays light: torch, ray, mlflow and optuna are imported by the
modules that need them, so the trial path runs where only torch is installed.
"""
from __future__ import annotations

__version__ = "0.1.0"

from v1sweep import _moved  # noqa: E402  (old module paths stay importable; see _moved.py)

_moved.install()


def __getattr__(name: str):  # `from v1sweep import query` and other pre-package spellings
    old = f"v1sweep.{name}"
    if old in _moved.MOVED:
        import importlib
        return importlib.import_module(_moved.MOVED[old])
    raise AttributeError(f"module 'v1sweep' has no attribute {name!r}")
