"""The sweep folder's files: its creation, ``sweep.json`` (the record a resume starts from) and the
sweep's YAML (layout in `v1sweep.sweep.engine`'s docstring).

Separate from `v1sweep.sweep.engine` because the record's format is read and written in several
places (run writes it, resume reads it, the end of a sweep updates its status) and must stay one
format. The file names are `v1sweep.contracts`' (re-exported here).
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Mapping

from v1sweep import contracts as C
from v1sweep.config.sweep_file import SweepSpec
from v1sweep.errors import ConfigError, OutputError, V1SweepError
from v1sweep.io import write_json
from v1sweep.results.store import mask_uri
from v1sweep.sweep.trainable import TrialFn, resolve_trial_fn

SWEEP_JSON, SPEC_YAML, SOURCE_YAML = C.SWEEP_JSON, C.SPEC_YAML, C.SOURCE_YAML
DEFAULT_STORAGE = "v1sweep_runs"


def _new_sweep_dir(storage: Path, name: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = storage / (f"{name}-{stamp}" + (f"-{i}" if i else ""))
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise OutputError(f"cannot create a new sweep folder under {storage}")


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_json(path, data, indent=2, default=str)


def _stored_trial_fn(info: Mapping[str, Any], spec: SweepSpec) -> TrialFn | str:
    """The trial function the sweep ran with; one passed as a Python object must be importable."""
    ref = info.get("trial_function") or spec.trial_function
    if ref != spec.trial_function:
        try:
            resolve_trial_fn(ref)
        except (ConfigError, ImportError) as exc:
            raise V1SweepError(f"the sweep ran trial function {ref}, which cannot be imported here ({exc}); "
                               f"resume it from Python with resume_sweep(..., trial_fn=...)") from None
    return ref


def _sweep_info(spec: SweepSpec, sweep_dir: Path, uri: str, tracker: Any, parent: str,
                trial_fn: TrialFn | str | None = None) -> dict[str, Any]:
    masked = mask_uri(uri)
    objectives = spec.search.objectives
    return {
        "name": spec.name, "sweep_dir": str(sweep_dir), "tracking_uri": masked,
        "tracking_uri_masked": masked != uri, "experiment": spec.experiment,
        "experiment_id": tracker.experiment_id, "parent_run_id": parent, "spec_hash": spec.spec_hash,
        "search": {"algorithm": spec.search.algorithm,
                   "metric": objectives[0][0] if objectives else "corruption_acc",
                   "mode": objectives[0][1] if objectives else "max"},
        "trial_function": _fn_ref(trial_fn) if trial_fn is not None else spec.trial_function, "source": spec.file,
        "created": datetime.datetime.now().isoformat(timespec="seconds"), "status": "running",
    }


def _fn_ref(fn: TrialFn | str) -> str:
    if isinstance(fn, str):
        return fn
    target = getattr(fn, "func", fn)  # functools.partial
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"


def _yaml(data: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(data), sort_keys=False)


def _read_sweep_json(path: Path) -> dict[str, Any]:
    """The sweep folder's record; a damaged one is named, with what to do about it."""
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise V1SweepError(f"{path}: cannot read the sweep record ({exc}); it is not valid JSON. Restore it, "
                           f"or start the sweep again with `v1sweep run`") from None
    if not isinstance(info, dict) or "parent_run_id" not in info:
        raise V1SweepError(f"{path}: not a v1sweep sweep record (corrupt: no parent_run_id); restore it, "
                           f"or start the sweep again with `v1sweep run`")
    return info


def _read_yaml(path: Path) -> dict[str, Any]:
    from v1sweep.config.trial import read_yaml

    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a sweep mapping", file=str(path))
    return data
