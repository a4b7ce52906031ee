"""Resume without trusting Ray Tune's saved state: check it, and rebuild a sweep from MLflow and the
trial folders when it is damaged or incomplete.

MLflow (one child run per trial, tagged ``trial_id``) and the trial folders
(``trials/<id>/params.json``, ``epochs.jsonl``, the trial's own checkpoint, ``v1sweep_final.json``)
are the record of a sweep; Ray's files (``experiment_state-*.json``, ``tuner.pkl``, the searcher's
state) only tell Tune what to do next. A full disk leaves them 0 bytes long, a killed driver leaves
them behind the truth. So:

- `state_problem` names the first Ray state file that cannot be read (`v1sweep resume` then stops
  with exit 1 and changes nothing, pointing at ``--rebuild``);
- `known_trials` reads what MLflow and the folders know about every trial;
- `plan` lists what a rebuilt sweep still has to run: unfinished trials (continued from their
  checkpoints, under their own ids), failed ones when asked to retry them, and the points of the
  space never started (grid points, or new samples for random / optuna searches: a rebuilt optuna
  sweep samples its missing trials at random, as the TPE / NSGA-II history lived in Ray's state);
- finished trials are kept as they are; `complete_from_folder` completes the MLflow run of a trial
  that finished on its worker while the driver was dead.
"""
from __future__ import annotations

import datetime
import itertools
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from v1sweep import contracts as C
from v1sweep.config import sweep_file as sweep_spec
from v1sweep.config.sweep_file import SweepSpec, split_key
from v1sweep.sweep.trainable import EPOCHS_FILE, FINAL_FILE, PARAMS_FILE, numeric

STATE_FILES = ("experiment_state-*.json", "basic-variant-state-*.json", "searcher-state-*.pkl", "tuner.pkl")
NO_SPACE = "No space left on device"


# ---------------------------------------------------------------------------------------------
# Ray's saved state
# ---------------------------------------------------------------------------------------------
def has_state(sweep_dir: Path) -> bool:
    """Whether Ray saved anything at all in the folder (a driver killed at once saved nothing)."""
    return any(any(sweep_dir.glob(pattern)) for pattern in STATE_FILES)


def state_problem(sweep_dir: Path) -> tuple[Path, str] | None:
    """(file, what is wrong) for the first Ray state file that cannot be used, or None."""
    experiment = sorted(sweep_dir.glob("experiment_state-*.json"))
    tuner = sweep_dir / "tuner.pkl"
    if not tuner.is_file():
        return tuner, "missing"
    problem = _pickle_problem(tuner)
    if problem:
        return tuner, problem
    if not experiment:
        return sweep_dir / "experiment_state-*.json", "missing"
    for path in experiment:
        problem = _experiment_problem(path)
        if problem:
            return path, problem
    searcher = sorted(sweep_dir.glob("basic-variant-state-*.json")) + sorted(sweep_dir.glob("searcher-state-*.pkl"))
    if not searcher:
        return sweep_dir / "searcher-state-*.pkl", "missing (the search algorithm's state)"
    for path in searcher:  # both are pickles (Ray names the basic-variant one .json)
        problem = _pickle_problem(path)
        if problem:
            return path, problem
    return None


def _size_problem(path: Path) -> str | None:
    try:
        return "empty (0 bytes, as a full disk leaves it)" if path.stat().st_size == 0 else None
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def _pickle_problem(path: Path) -> str | None:
    problem = _size_problem(path)
    if problem:
        return problem
    try:
        import ray.cloudpickle as cloudpickle

        with open(path, "rb") as f:
            cloudpickle.load(f)
    except Exception as exc:  # noqa: BLE001 - any failure means Tune cannot restore from it
        return f"unreadable ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def _json_problem(path: Path) -> str | None:
    problem = _size_problem(path)
    if problem:
        return problem
    try:
        json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"not valid JSON ({str(exc)[:120]})"
    return None


def _experiment_problem(path: Path) -> str | None:
    problem = _json_problem(path)
    if problem:
        return problem
    data = json.loads(path.read_text())
    entries = data.get("trial_data") if isinstance(data, dict) else None
    if not isinstance(entries, list) or "runner_data" not in data:
        return "not a Ray Tune experiment state (no trial_data / runner_data)"
    for entry in entries:
        try:
            trial = json.loads(entry[0])
            trial["trial_id"], trial["status"]  # noqa: B018 - both must be there
        except (TypeError, ValueError, KeyError, IndexError):
            return "holds a trial record that is not valid"
    return None


def saved_trials(sweep_dir: Path) -> dict[str, str]:
    """trial id (logical, see `sweep_trainable.logical_id`) -> Ray status, from the newest state file."""
    from v1sweep.sweep.trainable import logical_id

    files = sorted(sweep_dir.glob("experiment_state-*.json"))
    if not files:
        return {}
    out = {}
    for entry in json.loads(files[-1].read_text())["trial_data"]:
        trial = json.loads(entry[0])
        config = trial.get("config") if isinstance(trial.get("config"), dict) else {}
        out[logical_id(trial["trial_id"], config)] = trial["status"]
    return out


def set_status(sweep_dir: Path, trial_ids: set[str], status: str) -> None:
    """Rewrite the status of Ray trials (by logical id) in the newest experiment state, so Tune's
    restore runs them again (a failed trial retried) from their trial folders."""
    from v1sweep.sweep.trainable import logical_id

    path = sorted(sweep_dir.glob("experiment_state-*.json"))[-1]
    data = json.loads(path.read_text())
    for entry in data["trial_data"]:
        trial = json.loads(entry[0])
        config = trial.get("config") if isinstance(trial.get("config"), dict) else {}
        if logical_id(trial["trial_id"], config) in trial_ids:
            trial["status"] = status
            entry[0] = json.dumps(trial, indent=2)
    from v1sweep.io import write_json

    write_json(path, data, indent=None, newline=False)


def move_state_aside(sweep_dir: Path) -> Path | None:
    """Ray's state files into ``ray_state.replaced-<time>/`` (kept for inspection, never deleted)."""
    files = [p for pattern in STATE_FILES for p in sweep_dir.glob(pattern)]
    if not files:
        return None
    aside = sweep_dir / f"ray_state.replaced-{datetime.datetime.now():%Y%m%d-%H%M%S-%f}"
    aside.mkdir()
    for path in files:
        path.rename(aside / path.name)
    return aside


# ---------------------------------------------------------------------------------------------
# What MLflow and the trial folders know
# ---------------------------------------------------------------------------------------------
@dataclass
class Known:
    trial_id: str
    params: dict[str, Any]
    state: str                    # finished | failed | stopped | unfinished
    error: str = ""
    folder: Path | None = None
    run: Any = field(default=None, repr=False)


def known_trials(spec: SweepSpec, sweep_dir: Path, children: Mapping[str, Any]) -> dict[str, Known]:
    """Every trial MLflow (the sweep's child runs) or ``trials/`` knows, with its space values."""
    out: dict[str, Known] = {}
    trials_dir = sweep_dir / "trials"
    folders = {p.name: p for p in trials_dir.iterdir() if p.is_dir() and "." not in p.name} \
        if trials_dir.is_dir() else {}
    for tid in sorted(set(folders) | {t for t in children if "." not in t}):
        folder = folders.get(tid)
        child = children.get(tid)
        params = _folder_params(folder) if folder else None
        if params is None and child is not None:
            params = _run_params(spec, child.params)
        if params is None:
            continue
        tags = child.tags if child is not None else {}
        if folder is not None and (folder / FINAL_FILE).is_file() and _final(folder) is not None:
            state = "finished"
        elif tags.get(C.STATUS) in ("finished", "failed", "stopped"):
            state = tags[C.STATUS]
        else:
            state = "unfinished"
        out[tid] = Known(tid, params, state, tags.get(C.ERROR, ""), folder, child)
    return out


def _folder_params(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _run_params(spec: SweepSpec, params: Mapping[str, str]) -> dict[str, Any] | None:
    from v1sweep.results.query import parse_value

    out = {}
    for key in spec.space:
        first = split_key(key)[0]
        if first not in params:
            return None
        out[key] = parse_value(params[first])
    return out


def _final(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / FINAL_FILE).read_text())
        return data if isinstance(data, dict) and isinstance(data.get("metrics"), dict) else None
    except (OSError, ValueError):
        return None


def needs_retry(known: Known, retry_failed: bool) -> bool:
    """Failed trials are rerun with --retry-failed; those a full disk failed, on every resume."""
    return known.state == "failed" and (retry_failed or NO_SPACE in known.error)


# ---------------------------------------------------------------------------------------------
# The rebuilt sweep's trials
# ---------------------------------------------------------------------------------------------
def plan(spec: SweepSpec, known: Mapping[str, Known], *, retry_failed: bool) -> list[dict[str, Any]]:
    """Points a rebuilt sweep runs: {"id": trial id or None (new), "params": space values}."""
    points: list[dict[str, Any]] = [{"id": k.trial_id, "params": k.params} for k in known.values()
              if k.state == "unfinished" or needs_retry(k, retry_failed)]
    rng = random.Random(spec.search.seed)
    grid_keys = [k for k, d in spec.space.items() if d.kind == "grid"]
    if spec.search.algorithm.startswith("optuna"):
        planned: list[tuple] = [() for _ in range(spec.search.num_samples)]
        grid_keys = []
    else:
        combos = list(itertools.product(*(spec.space[k].values for k in grid_keys)))
        planned = [c for _ in range(spec.search.num_samples) for c in combos]
    for trial in known.values():
        point = tuple(trial.params.get(g) for g in grid_keys)
        if point in planned:
            planned.remove(point)
    for combo in planned:
        params: dict[str, Any] = dict(zip(grid_keys, combo))
        for key, dom in spec.space.items():
            if key not in params:
                params[key] = sample(spec, key, dom, rng)
        points.append({"id": None, "params": {key: params[key] for key in spec.space}})
    return points


def sample(spec: SweepSpec, key: str, dom: sweep_spec.Domain, rng: random.Random) -> Any:
    """One draw of a sampled domain (the rebuilt sweep's new trials; Ray Tune's semantics)."""
    hint, _ = sweep_spec.field_of(split_key(key)[0], file=None, space_key=key)
    if dom.discrete:
        return rng.choice(list(dom.values))
    lo, hi = dom.bounds[0], dom.bounds[1]
    if dom.kind == "uniform":
        return rng.uniform(lo, hi)
    if dom.kind == "loguniform":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if dom.kind == "randint":
        return rng.randrange(int(lo), int(hi))
    q = dom.bounds[2]
    value = round(rng.uniform(lo, hi) / q) * q
    return int(value) if sweep_spec.is_int_field(hint) else float(value)


def complete_from_folder(tracker: Any, spec: SweepSpec, known: Known) -> None:
    """A trial that finished on its worker while no driver listened: its run gets the epochs, the
    final metrics and the artifacts from the trial folder, and ends FINISHED."""
    from v1sweep.config.trial import to_flat
    from v1sweep.sweep.callback import _run_name
    from v1sweep.sweep.trainable import _read_jsonl

    tid, folder = known.trial_id, known.folder
    final = _final(folder) if folder else None
    if folder is None or final is None or tracker.is_ended(tid):
        return
    flat = to_flat(spec.trial_config_for(known.params, name=f"{spec.name}-{tid}"))
    tracker.trial_started(tid, params=flat, run_name=_run_name(tid, known.params))
    for entry in _read_jsonl(folder / EPOCHS_FILE):
        step = int(entry.get("epoch", 0))
        if not tracker.epoch_logged(tid, step):
            tracker.log_metrics(tid, {**numeric(entry.get("metrics", {})), "epoch": step}, step)
    if not tracker.is_final(tid):
        tracker.log_final(tid, numeric(final["metrics"]), int(final.get("epoch", 0) or 0))
        tracker.log_artifacts(tid, folder=folder)
    tracker.trial_ended(tid, "finished")
