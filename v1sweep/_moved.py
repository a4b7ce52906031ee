"""Old module paths (before the layer packages) keep importing, so that old code and old state work.

Two things depend on the old dotted paths: scripts written against the documented API
(``from v1sweep import query``, ``@v1sweep.trial_functions.register``, ``v1sweep.models.build_model``)
and, more importantly, Ray Tune state pickled by a sweep started before the move (its trainable,
callbacks and searcher are pickled by module path), which ``v1sweep resume`` must still load. Each old
path is an alias of its new module (the same module object, so monkeypatching either affects both).
Old paths are silent aliases: the documented spellings are still supported, not deprecated.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Sequence

MOVED: dict[str, str] = {
    "v1sweep.adversarial": "v1sweep.trial.adversarial",
    "v1sweep.adversarial_spec": "v1sweep.config.adversarial",
    "v1sweep.benchmarks": "v1sweep.bench",
    "v1sweep.benchmarks.corruptions": "v1sweep.bench.corruptions",
    "v1sweep.benchmarks.frontend": "v1sweep.bench.frontend",
    "v1sweep.benchmarks.geometry": "v1sweep.bench.geometry",
    "v1sweep.benchmarks.sweep": "v1sweep.bench.sweep",
    "v1sweep.benchmarks.train": "v1sweep.bench.train",
    "v1sweep.commands": "v1sweep.cli",
    "v1sweep.commands.analyze": "v1sweep.cli.analyze",
    "v1sweep.commands.bench": "v1sweep.cli.bench",
    "v1sweep.commands.best": "v1sweep.cli.best",
    "v1sweep.commands.corrupt": "v1sweep.cli.corrupt",
    "v1sweep.commands.resume": "v1sweep.cli.resume",
    "v1sweep.commands.run": "v1sweep.cli.run",
    "v1sweep.commands.status": "v1sweep.cli.status",
    "v1sweep.commands.sweeps": "v1sweep.cli.sweeps",
    "v1sweep.commands.train": "v1sweep.cli.train",
    "v1sweep.commands.ui": "v1sweep.cli.ui",
    "v1sweep.cost": "v1sweep.sweep.cost",
    "v1sweep.evaluation": "v1sweep.trial.evaluation",
    "v1sweep.local_store": "v1sweep.results.local_store",
    "v1sweep.models": "v1sweep.trial.models",
    "v1sweep.query": "v1sweep.results.query",
    "v1sweep.schema": "v1sweep.config.schema",
    "v1sweep.store": "v1sweep.results.store",
    "v1sweep.sweep_callback": "v1sweep.sweep.callback",
    "v1sweep.sweep_progress": "v1sweep.sweep.progress",
    "v1sweep.sweep_rebuild": "v1sweep.sweep.rebuild",
    "v1sweep.sweep_resources": "v1sweep.sweep.resources",
    "v1sweep.sweep_spec": "v1sweep.config.sweep_file",
    "v1sweep.sweep_trainable": "v1sweep.sweep.trainable",
    "v1sweep.tracking": "v1sweep.results.tracking",
    "v1sweep.training": "v1sweep.trial.training",
    "v1sweep.trial_functions": "v1sweep.trial.functions",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system stamped the alias spec on the real module


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Put the alias finder on `sys.meta_path` once (`v1sweep/__init__.py` calls this)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())  # before the path finder, which would load a second copy of
        # a submodule of an aliased package (v1sweep.commands.run) from the aliased folder


