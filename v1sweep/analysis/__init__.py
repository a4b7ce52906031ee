"""Analyses of sweeps and models: robustness vs similarity to V1, neurophysiology, sub-populations, CKA.

Analyses read MLflow (through `v1sweep.results.query`) or trained models; they never import the sweep
engine. This package's import is deliberately light — no torch, mlflow or matplotlib — so that
`v1sweep analyze --help` stays instant and modules with heavy imports load only when used.

`ANALYSES` is the registry of named analyses: each entry is a ``"module:attribute"`` path,
imported on first use by `get_analysis`. Add one line per analysis below.
"""
from __future__ import annotations

import importlib
from typing import Any

from v1sweep.errors import AnalysisError, V1SweepError  # noqa: F401 - defined there, importable from here too
from v1sweep.registry import Registry


ANALYSES: Registry[str] = Registry("analysis")

# name -> "module:callable"; the callable's own docstring says what it takes.
for _name, _target in {
    # Sweep-level statistics on a `query.runs` table (pure numpy/scipy/pandas).
    "robustness": "v1sweep.analysis.robustness:analyze_frame",
    # The full report of a sweep from MLflow: figures, Markdown/HTML, CSV, logged as an analysis run.
    "report": "v1sweep.analysis.report:build_report",
    # Model-level analyses (torch): grating tuning, CKA, sub-population ablations.
    "neurophysiology": "v1sweep.analysis.neurophysiology:electrophysiology",
    "cka": "v1sweep.analysis.cka:layer_cka",
    "subpopulations": "v1sweep.analysis.subpopulations:compare_variants",
    # The three above on a sweep's trained models pulled from MLflow (a `query.runs` table).
    "trained": "v1sweep.analysis.trained:analyze_sweep_models",
}.items():
    ANALYSES.register(_name)(_target)


def list_analyses() -> list[str]:
    return ANALYSES.names()


def get_analysis(name: str) -> Any:
    """Import and return the registered analysis callable."""
    target = ANALYSES.get(name)
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module
