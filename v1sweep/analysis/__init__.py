"""Analyses of sweeps and models: robustness vs similarity to V1, neurophysiology, sub-populations, CKA.

Analyses read MLflow (through `v1sweep.results.query`) or trained models; they never import the sweep
engine. This package's import is deliberately light — no torch, mlflow or matplotlib — so that
`v1sweep analyze --help` stays instant and modules with heavy imports load only when used.

`ANALYSES` is the registry of named analyses (`list_analyses`, `get_analysis`, `analysis_info`).
Every entry carries the facts of the `Analysis` protocol: a `description`, what it `takes` first
(one of `TAKES`: a `query.runs` table, a sweep reference, one model, several models), what it
`returns` and the `result` type (``"module:Type"``). An analysis in a module that is imported
anyway (a plugin's own file) registers itself with `@register_analysis`. The built-in analyses'
modules are not light (each imports pandas and scipy at least, most torch, the report mlflow and
matplotlib), so registering them in their own modules would make this package's import heavy or
hide them until imported: they are declared in the small table below instead, as ``"module:attr"``
targets that `get_analysis` imports on first use.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from v1sweep.errors import AnalysisError, V1SweepError  # noqa: F401 - defined there, importable from here too
from v1sweep.registry import Registry


# What an analysis takes as its first argument.
TAKES = ("runs", "sweep", "model", "models")


class Analysis(Protocol):
    """A registered analysis: called with what its `takes` names first (then keyword options) and
    returning its `result` type (a result dataclass where one exists)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class LazyTarget:
    """A ``"module:attr"`` analysis imported when first asked for (`get_analysis`)."""

    target: str

    def load(self) -> Any:
        module_name, _, attr = self.target.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr) if attr else module


ANALYSES: Registry[Analysis | LazyTarget] = Registry("analysis",
                                                    required=("description", "takes", "returns", "result"))


def _check_meta(name: str, takes: str) -> None:
    if takes not in TAKES:
        raise ValueError(f"analysis {name!r}: takes {takes!r} is not allowed; allowed: {', '.join(TAKES)}")


def register_analysis(name: str, *, description: str, takes: str, returns: str,
                      result: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as analysis `name` (its module is imported already)."""
    _check_meta(name, takes)

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        ANALYSES.add(name, fn, description=description, takes=takes, returns=returns, result=result,
                     target=f"{fn.__module__}:{fn.__qualname__}")
        return fn

    return decorator


def declare_analysis(name: str, target: str, *, description: str, takes: str, returns: str, result: str) -> None:
    """Register the analysis at ``"module:attr"`` `target` without importing its module."""
    _check_meta(name, takes)
    ANALYSES.add(name, LazyTarget(target), description=description, takes=takes, returns=returns,
                 result=result, target=target)


# The built-in analyses (see the module doc for why they are declared here, not in their modules).
declare_analysis("robustness", "v1sweep.analysis.robustness:analyze_frame", takes="runs", description=(
    "sweep-level statistics on a query.runs table: group effects with bootstrap CIs, correlations, tests"),
    returns="RobustnessResult (tables and headline numbers)", result="v1sweep.analysis.robustness:RobustnessResult")
declare_analysis("report", "v1sweep.analysis.report:build_report", takes="sweep", description=(
    "the full report of a sweep from MLflow: figures, Markdown/HTML, CSV, logged as an analysis run"),
    returns="Report (paths of what was written, the analysis run id)", result="v1sweep.analysis.report:Report")
declare_analysis("neurophysiology", "v1sweep.analysis.neurophysiology:electrophysiology", takes="model",
                 description="grating tuning of a model's units scored against V1 recordings",
                 returns="ElectrophysiologyResult (unit properties, scores per benchmark)",
                 result="v1sweep.analysis.neurophysiology:ElectrophysiologyResult")
declare_analysis("cka", "v1sweep.analysis.cka:layer_cka", takes="models",
                 description="CKA between two models per layer, on clean and corrupted probes",
                 returns="a DataFrame, one row per layer and probe", result="pandas:DataFrame")
declare_analysis("subpopulations", "v1sweep.analysis.subpopulations:compare_variants", takes="models",
                 description="accuracy when V1 sub-populations are ablated, compared across model variants",
                 returns="(DataFrame of ablation effects, figure path or None)", result="builtins:tuple")
declare_analysis("trained", "v1sweep.analysis.trained:analyze_sweep_models", takes="runs",
                 description="neurophysiology, CKA and sub-populations on a sweep's trained models from MLflow",
                 returns="a dict of tables and paths per analysis", result="builtins:dict")


def list_analyses() -> list[str]:
    return ANALYSES.names()


def analysis_info(name: str) -> dict[str, Any]:
    """The metadata of analysis `name` (description, takes, returns, result, target)."""
    return {"name": name, **ANALYSES.meta(name)}


def get_analysis(name: str) -> Analysis:
    """The registered analysis callable (a declared one is imported now)."""
    obj = ANALYSES.get(name)
    return obj.load() if isinstance(obj, LazyTarget) else obj
