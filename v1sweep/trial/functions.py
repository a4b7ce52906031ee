"""Which functions a sweep file may run for each trial (``trial_function:``).

A sweep file is data that may come from someone else; naming any importable function in it would
let it run any code (``os:system``) or a module planted in the working directory (``evil.py``).
So a sweep's ``trial_function`` must be one of:

- ``run_trial`` / ``v1sweep.trial:run_trial``: the built-in trial (the default);
- the name of an entry point in the group ``v1sweep.trial_functions`` of an installed package
  (``[project.entry-points."v1sweep.trial_functions"] mytrial = "mypkg.trials:run"``);
- ``package.module:function`` where the function carries the `register` decorator, and the module
  is neither part of Python's standard library nor found in the working directory (it comes from an
  installed package or a folder the user put on ``PYTHONPATH``).

The Python API (``run_sweep(spec, trial_fn=callable)``) takes any callable: the caller's own code.
No heavy imports here; `check_reference` never imports the module (the sweep file is checked at
load time), `resolve` imports it on the worker.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import sysconfig
from pathlib import Path
from typing import Any, Callable

ENTRY_POINT_GROUP = "v1sweep.trial_functions"
DEFAULT = "v1sweep.trial:run_trial"
BUILTIN = {"run_trial": DEFAULT, DEFAULT: DEFAULT}
MARK = "__v1sweep_trial_function__"
ALLOWED = (f"run_trial (default), an installed entry point of group {ENTRY_POINT_GROUP!r}, or "
           f"'package.module:function' decorated with @v1sweep.trial.functions.register (from an installed "
           f"package or a folder on PYTHONPATH, never the working directory); see docs/sweeps.md")


def register(fn: Callable) -> Callable:
    """Mark `fn` (signature of `v1sweep.trial.run_trial`) as a trial function a sweep file may name."""
    setattr(fn, MARK, True)
    return fn


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _under(path: str | Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder)
        return True
    except (ValueError, OSError):
        return False


def _stdlib_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    site = [Path(paths[k]).resolve() for k in ("purelib", "platlib")]
    std = [Path(paths[k]).resolve() for k in ("stdlib", "platstdlib")]
    return [d for d in std if not any(_under(s, d) and s != d for s in site)] or std


def _origin(spec: Any) -> str | None:
    if spec is None:
        return None
    if spec.origin and spec.origin not in ("built-in", "frozen"):
        return spec.origin
    locations = list(spec.submodule_search_locations or [])
    return locations[0] if locations else spec.origin


def check_reference(ref: str) -> None:
    """ValueError (naming what is allowed) unless `ref` may be run; imports nothing."""
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError(f"{ref!r} is not allowed; allowed: {ALLOWED}")
    if ref in BUILTIN:
        return
    module, sep, attr = ref.partition(":")
    if not sep:
        names = sorted(_entry_points())
        if ref in names:
            return
        raise ValueError(f"{ref!r} is not a registered trial function (installed entry points: "
                         f"{', '.join(names) or 'none'}); allowed: {ALLOWED}")
    if not module or not attr or not all(p.isidentifier() for p in module.split(".") + attr.split(".")):
        raise ValueError(f"{ref!r} is not allowed; allowed: {ALLOWED}")
    top = module.split(".")[0]
    if top in sys.builtin_module_names or top in getattr(sys, "stdlib_module_names", ()):
        raise ValueError(f"{ref!r} is in Python's standard library, not a trial function; allowed: {ALLOWED}")
    cwd = Path.cwd().resolve()
    elsewhere = [p for p in sys.path if p not in ("", ".") and Path(p).resolve() != cwd]
    found = importlib.machinery.PathFinder.find_spec(top, elsewhere)
    usual = importlib.util.find_spec(top) if top not in sys.modules else sys.modules[top].__spec__
    usual_origin = _origin(usual)
    if usual_origin and _folder_of(usual_origin) == cwd and not _installed(top):
        raise ValueError(f"{ref!r}: module {top!r} would be imported from the working directory "
                         f"({usual_origin}), which a sweep file may not do; allowed: {ALLOWED}")
    if found is None and usual is None:
        raise ValueError(f"{ref!r}: module {top!r} is not installed and not on PYTHONPATH; allowed: {ALLOWED}")
    origin = _origin(found or usual)
    if origin and any(_under(origin, d) for d in _stdlib_dirs()):
        raise ValueError(f"{ref!r} is in Python's standard library, not a trial function; allowed: {ALLOWED}")


def _folder_of(origin: str) -> Path:
    """The sys.path folder a module was found in (a package's parent folder)."""
    path = Path(origin).resolve()
    if path.name == "__init__.py":
        path = path.parent
    return path.parent


def _installed(top: str) -> bool:
    """`top` is a package of an installed distribution (an editable install may live in the cwd)."""
    try:
        from importlib.metadata import packages_distributions

        return top in packages_distributions()
    except Exception:  # noqa: BLE001 - old Python or broken metadata: be strict
        return False


def resolve(ref: str) -> Callable:
    """The function `ref` names (see the module doc); ValueError when it is not a registered one.
    Where the module lives was checked when the sweep file was loaded (`check_reference`, on the
    driver); a worker's import path differs, so here only the registration is checked."""
    if ref in BUILTIN:
        from v1sweep.trial.run import run_trial

        return run_trial
    module_name, sep, attr = ref.partition(":")
    if not sep:
        points = _entry_points()
        if ref not in points:
            raise ValueError(f"{ref!r} is not a registered trial function; allowed: {ALLOWED}")
        return points[ref].load()
    if not module_name or not all(p.isidentifier() for p in module_name.split(".") + attr.split(".")):
        raise ValueError(f"{ref!r} is not allowed; allowed: {ALLOWED}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name} has no {attr!r}; allowed: {ALLOWED}")
        obj = getattr(obj, part)
    if not callable(obj) or not getattr(obj, MARK, False):
        raise ValueError(f"{ref!r} is not a registered trial function: decorate it with "
                         f"@v1sweep.trial.functions.register, or install it as an entry point of group "
                         f"{ENTRY_POINT_GROUP!r}")
    return obj
