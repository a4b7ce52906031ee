"""The package's layers, checked on the imports themselves (AST), not on the docs' picture of them.

    base (errors, registry, contracts, io) <- config <- families (rf, frontend, data, corruptions)
        <- trial <- sweep -> results <- analysis;   cli, bench and testing on top.

config may import the families' catalogue modules (names and metadata the loader validates
against); those must then be importable without torch, ray, mlflow or optuna and must not import
config. The trial path (config, the families, trial) never imports ray, mlflow or optuna, not
even inside a function, so it runs on a machine that has only torch. The checker is tested on a
made-up violation first, so a silent checker cannot pass the real check.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "v1sweep"

BASE = {"v1sweep", "v1sweep._moved", "v1sweep.errors", "v1sweep.registry", "v1sweep.contracts", "v1sweep.io"}
FAMILIES = ("rf", "frontend", "data", "corruptions")
# layer -> the layers it may import (its own included)
ALLOWED: dict[str, set[str]] = {
    "base": {"base"},
    "config": {"base", "config"},
    "families": {"base", "config", "families"},
    "trial": {"base", "config", "families", "trial"},
    "results": {"base", "config", "results"},
    "sweep": {"base", "config", "families", "trial", "results", "sweep"},
    "analysis": {"base", "config", "families", "trial", "results", "analysis"},
    "top": {"base", "config", "families", "trial", "results", "sweep", "analysis", "top"},
}
# Family modules that config reads names and metadata from (see the module docstring).
CATALOGUES = {"v1sweep.corruptions.catalog", "v1sweep.rf.catalog", "v1sweep.data.catalog",
              "v1sweep.trial.backbones", "v1sweep.trial.functions", "v1sweep.sweep.algorithms",
              "v1sweep.sweep.schedulers"}
# Bends inside the families layer (DESIGN.md): RF parameters are data the front-end consumes;
# corruptions know images, not networks; the front-end never reads datasets.
FORBIDDEN_WITHIN = {("rf", "frontend"), ("frontend", "data"), ("corruptions", "frontend")}
HEAVY = ("ray", "mlflow", "optuna")
TRIAL_PATH = {"config", "families", "trial"}


def layer_of(module: str) -> str:
    if module in BASE:
        return "base"
    part = module.split(".")[1]
    if part in FAMILIES:
        return "families"
    if part in ("cli", "bench", "testing"):
        return "top"
    return part


def all_modules(root: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] in ("__init__", "__main__") and len(parts) > 1:
            parts = parts[:-1] if parts[-1] == "__init__" else parts
        out[".".join(parts)] = path
    return out


def imports_of(path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, module-level or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from v1sweep.x import y` may name the submodule x.y
                sub = f"{node.module}.{alias.name}"
                found.append((node.lineno, sub if sub in known else node.module))
    return found


def violations(modules: dict[str, Path]) -> list[str]:
    known = set(modules)
    root = next(iter(modules.values())).parents[len(next(iter(modules)).split(".")) - 1] if modules else REPO
    bad = []
    for module, path in modules.items():
        src = layer_of(module)
        for line, target in imports_of(path, known):
            where = f"{path.relative_to(root)}:{line}: {module} imports {target}"
            if target.split(".")[0] in HEAVY and src in TRIAL_PATH:
                bad.append(f"{where} (the trial path never imports {target.split('.')[0]})")
            if not target.startswith("v1sweep") or target not in known:
                continue
            dst = layer_of(target)
            if target in CATALOGUES and src == "config":
                continue
            if dst not in ALLOWED[src]:
                bad.append(f"{where} ({src} may not import {dst})")
            elif src == dst == "families" and (module.split(".")[1], target.split(".")[1]) in FORBIDDEN_WITHIN:
                bad.append(f"{where} ({module.split('.')[1]} may not import {target.split('.')[1]})")
            elif module in CATALOGUES and dst == "config":
                bad.append(f"{where} (a catalogue config reads may not import config)")
    return bad


def test_the_checker_sees_a_made_up_violation(tmp_path):
    pkg = tmp_path / "v1sweep"
    for sub in ("config", "trial", "sweep", "rf", "frontend"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "config" / "trial.py").write_text("from v1sweep.sweep import engine\n")
    (pkg / "sweep" / "engine.py").write_text("import ray\n")
    (pkg / "trial" / "run.py").write_text("def f():\n    import mlflow\n")
    (pkg / "rf" / "sampling.py").write_text("from v1sweep.frontend import gabor\n")
    (pkg / "frontend" / "gabor.py").write_text("")
    found = violations(all_modules(pkg))
    text = "\n".join(found)
    assert "config may not import sweep" in text
    assert "the trial path never imports mlflow" in text
    assert "rf may not import frontend" in text
    assert not any("sweep/engine.py" in line for line in found)  # Ray belongs in the sweep layer
    assert len(found) == 3, text


def test_imports_follow_the_layers():
    modules = all_modules()
    assert {"v1sweep.config.trial", "v1sweep.trial.run", "v1sweep.sweep.engine", "v1sweep.results.query",
            "v1sweep.analysis.report", "v1sweep.cli.app"} <= set(modules)
    assert violations(modules) == []


def test_every_catalogue_exists():
    assert CATALOGUES <= set(all_modules()), sorted(CATALOGUES - set(all_modules()))


@pytest.mark.parametrize("module", sorted(CATALOGUES | {"v1sweep.config", "v1sweep.config.sweep_file"}))
def test_catalogues_and_config_import_without_torch_ray_mlflow_optuna(module):
    code = (f"import sys, {module}\n"
            "print(','.join(sorted(m for m in ('torch', 'ray', 'mlflow', 'optuna') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "", f"importing {module} pulls in {out.stdout.strip()}"
