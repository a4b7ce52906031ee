"""Contract tests for analyses (`v1sweep.analysis.ANALYSES`).

`check_analysis(name)` raises `AssertionError` unless analysis `name` declares complete metadata
(a description, what it takes among `v1sweep.analysis.TAKES`, what it returns, a ``"module:Type"``
result type that imports, a ``"module:attr"`` target) and `get_analysis(name)` resolves to a
callable (the one its target names). It imports the analysis's module (torch for most built-ins)
but runs nothing. `AnalysisContract` runs it for every registered analysis under pytest.
"""
from __future__ import annotations

import importlib
from typing import Any, Sequence

from v1sweep.analysis import ANALYSES, TAKES, get_analysis


def _resolve(ref: str) -> Any:
    module_name, sep, attr = ref.partition(":")
    assert sep and attr, f"{ref!r} is not 'module:attribute'"
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def check_analysis(name: str) -> None:
    """Raise unless analysis `name` keeps the contract (see the module doc)."""
    meta = ANALYSES.meta(name)
    for key in ("description", "returns"):
        assert isinstance(meta.get(key), str) and meta[key].strip(), f"{name}: no {key}"
    assert meta["takes"] in TAKES, f"{name}: takes {meta['takes']!r} not in {TAKES}"
    assert isinstance(_resolve(meta["result"]), type), f"{name}: result {meta['result']!r} is not a type"
    fn = get_analysis(name)
    assert callable(fn), f"{name}: get_analysis returned {fn!r}"
    assert _resolve(meta["target"]) is fn, f"{name}: target {meta['target']!r} is not the registered callable"


class AnalysisContract:
    """Subclass in a test module: one test per registered analysis (or `names`)."""

    names: Sequence[str] | None = None

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "analysis" in metafunc.fixturenames:
            metafunc.parametrize("analysis", list(self.names or ANALYSES.names()))

    def test_metadata_and_callable(self, analysis: str) -> None:
        check_analysis(analysis)
