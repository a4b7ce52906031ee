"""v1sweep: experiment sweeps over V1-like CNN front-ends.

Importing the package stays light: torch, ray, mlflow and optuna are imported by the
modules that need them, so the trial path runs where only torch is installed.
"""
from __future__ import annotations

__version__ = "0.1.0"
