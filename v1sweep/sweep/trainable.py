"""The worker side of a sweep: one trial inside a Ray worker (Ray imported inside functions).

`make_trainable` wraps `run_one` as Ray Tune's function trainable. `run_one` rebuilds the trial
config from the sampled params, checks dataset paths on this node, calls the trial function with
``out_dir = <sweep_dir>/trials/<trial_id>`` (absolute; Ray's per-trial working directory is never
used), reports each epoch and the final metrics to Tune, and keeps in `out_dir` what a restart
needs: ``epochs.jsonl`` (every reported epoch, re-sent once after a restart so a killed driver's
MLflow gaps are filled), ``v1sweep_final.json`` (a finished trial is reported again, not rerun)
and ``params.json`` (a folder of another configuration under the same id is moved aside).
"""
from __future__ import annotations

import datetime
import json
import socket
from pathlib import Path
from typing import Any, Callable, Mapping

from v1sweep.config import sweep_file as sweep_spec
from v1sweep.errors import ConfigError, DatasetError
from v1sweep.config.sweep_file import SweepSpec

from v1sweep import contracts as C
from v1sweep.io import write_json

EPOCHS_FILE, FINAL_FILE, LOG_FILE, PARAMS_FILE = "epochs.jsonl", "v1sweep_final.json", C.TRIAL_LOG, "params.json"
# Private keys of the results sent to Tune (the driver's callback pops the bulky ones).
KIND, HISTORY, ARTIFACTS, OUT_DIR = "_v1sweep_kind", "_v1sweep_history", "_v1sweep_artifacts", "_v1sweep_out_dir"
# what the trial actually used where it may differ from what its config asked for (the frost source
# after a fallback, the corrupted set's storage): MLflow tags of the trial's run
RECORD = "_v1sweep_record"
TrialFn = Callable[..., Any]
# A rebuilt sweep (`v1sweep resume --rebuild`) hands each Ray trial one point of this key:
# {"id": the trial id it continues (None: a new trial), "params": the search-space values}.
POINT = "_v1sweep_point"


def trial_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The search-space values of a Ray trial's config (a rebuilt sweep's point unwrapped)."""
    point = config.get(POINT) if isinstance(config, Mapping) else None
    return dict(point["params"]) if isinstance(point, Mapping) else dict(config)


def logical_id(ray_trial_id: str, config: Mapping[str, Any]) -> str:
    """The trial's id in MLflow and in ``trials/``: the one a rebuilt sweep continues, else Ray's."""
    point = config.get(POINT) if isinstance(config, Mapping) else None
    return str(point.get("id") or ray_trial_id) if isinstance(point, Mapping) else ray_trial_id


def trial_key(trial: Any) -> str:
    """`logical_id` of a Ray Tune Trial object (driver side)."""
    return logical_id(trial.trial_id, trial.config or {})


def resolve_trial_fn(ref: TrialFn | str) -> TrialFn:
    """A callable (the Python API: the caller's own code), or a registered trial function named in
    a sweep file, imported here (on the worker); see `v1sweep.trial.functions`."""
    if callable(ref):
        return ref
    from v1sweep.trial.functions import resolve

    try:
        return resolve(str(ref))
    except ImportError as exc:
        raise ConfigError(f"cannot import trial function {ref!r} on node {socket.gethostname()}: {exc}",
                          key="trial_function") from None
    except ValueError as exc:
        raise ConfigError(str(exc), key="trial_function") from None


def _node() -> str:
    try:
        import ray

        ip = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - outside Ray
        ip = "?"
    return f"{socket.gethostname()} ({ip})"


def _check_paths(config: Any) -> None:
    """A dataset path missing on this node fails the trial with the node and the path."""
    checks = []
    if config.data.dataset != "synthetic" and config.data.path:
        checks.append(("data.path", config.data.path))
    if config.eval.source == "published" and config.eval.path:
        checks.append(("eval.path", config.eval.path))
    if config.rf.strategy == "custom" and config.rf.custom_path:
        checks.append(("rf.custom_path", config.rf.custom_path))
    for key, path in checks:
        if not Path(path).exists():
            raise DatasetError(f"{key} {path} does not exist on node {_node()}; every node of the cluster "
                               f"needs the data at the same absolute path (a shared filesystem or a copy)")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a crash
    return entries


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool):
            continue
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _artifact_bytes(out_dir: Path) -> dict[str, bytes]:
    from v1sweep.results.tracking import MAX_ARTIFACT_BYTES, TRIAL_ARTIFACTS

    files = {}
    for name in TRIAL_ARTIFACTS:
        path = out_dir / name
        if path.is_file() and path.stat().st_size <= MAX_ARTIFACT_BYTES:
            files[name] = path.read_bytes()
    return files


def run_one(params: Mapping[str, Any], *, spec_dict: Mapping[str, Any], sweep_dir: str, trial_fn: TrialFn | str,
            driver_node_id: str | None) -> None:
    """One trial inside a Ray worker: rebuild the config, run the trial function, report to Tune."""
    from ray import tune

    trial_id = logical_id(tune.get_context().get_trial_id(), params)
    params = trial_params(params)
    out_dir = _trial_dir(Path(sweep_dir) / "trials" / trial_id, params)
    spec = _spec_cache(spec_dict)
    config = spec.trial_config_for(params, name=f"{spec.name}-{trial_id}")
    _check_paths(config)
    fn = resolve_trial_fn(trial_fn)

    history = _read_jsonl(out_dir / EPOCHS_FILE)
    pending_history = [dict(h) for h in history]
    remote = _remote(driver_node_id)

    def report(metrics: dict[str, Any]) -> None:
        nonlocal pending_history
        metrics[OUT_DIR] = str(out_dir)
        if pending_history:
            metrics[HISTORY] = pending_history
            pending_history = []
        tune.report(metrics)

    final_path = out_dir / FINAL_FILE
    if final_path.exists():  # finished before the driver died: report the stored result again
        stored = json.loads(final_path.read_text())
        final = {**stored["metrics"], "epoch": stored["epoch"], KIND: "final"}
        if stored.get("record"):
            final[RECORD] = stored["record"]
        if remote:
            final[ARTIFACTS] = _artifact_bytes(out_dir)
        report(final)
        return

    log_file = open(out_dir / LOG_FILE, "a", buffering=1)

    def log(message: str) -> None:
        log_file.write(f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S} {message}\n")

    last_epoch = [max((int(h["epoch"]) for h in history), default=0)]

    def on_epoch(epoch: int, metrics: Mapping[str, Any]) -> None:
        values = numeric(metrics)
        with open(out_dir / EPOCHS_FILE, "a") as f:
            f.write(json.dumps({"epoch": int(epoch), "metrics": values}) + "\n")
        last_epoch[0] = int(epoch)
        report({**values, "epoch": int(epoch), KIND: "epoch"})

    try:
        log(f"trial {trial_id} on node {_node()}: {dict(params)}")
        result = fn(config, out_dir, on_epoch=on_epoch, log=log)
        metrics = numeric(getattr(result, "metrics", result) or {})
        record = used_record(result)
        write_json(final_path, {"metrics": metrics, "epoch": last_epoch[0], "record": record}, indent=None,
                   newline=False)
        log(f"trial {trial_id} finished")
    except BaseException as exc:
        full = _no_space(exc, out_dir)
        try:
            log(f"trial {trial_id} failed: {type(full or exc).__name__}: {full or exc}")
        except OSError:
            pass
        if full is not None:
            raise full from None
        raise
    finally:
        try:
            log_file.close()
        except OSError:
            pass
    final = {**metrics, "epoch": last_epoch[0], KIND: "final"}
    if record:
        final[RECORD] = record
    if remote:
        final[ARTIFACTS] = _artifact_bytes(out_dir)
    report(final)


def used_record(result: Any) -> dict[str, str]:
    """Tags saying what a trial used where its config only asked: the frost textures (the published
    photographs, or procedural ones after a loud fallback) and the corrupted set's storage."""
    summary = getattr(result, "summary", None) or {}
    used = summary.get("corruption_set") or {}
    return {C.used(key): str(used[key]) for key in C.USED_KEYS if used.get(key)}


def _no_space(exc: BaseException, out_dir: Path) -> BaseException | None:
    """A full disk, reported as ``No space left on device: PATH`` (an OutputError: the system, not
    the trial, failed; `v1sweep resume` reruns such trials). torch.save reports it as a
    RuntimeError without the errno, so a failed write on a full filesystem counts too."""
    import errno
    import shutil

    from v1sweep.errors import OutputError

    path = None
    if str(exc).startswith("No space left on device: "):  # already reported
        return None
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        path = exc.filename or out_dir
    elif isinstance(exc, (OSError, RuntimeError)) and ("No space left" in str(exc) or "write" in str(exc).lower()):
        try:
            if shutil.disk_usage(out_dir).free < 1024 * 1024:
                path = out_dir
        except OSError:
            path = None
    if path is None:
        return None
    return OutputError(f"No space left on device: {path}")


def _trial_dir(out_dir: Path, params: Mapping[str, Any]) -> Path:
    """The trial's folder; one left by another configuration under the same trial id (a searcher
    re-sampled a trial lost with a killed driver) is moved aside, never resumed."""
    record = out_dir / PARAMS_FILE
    text = json.dumps(dict(params), sort_keys=True, default=str)
    if record.exists() and record.read_text() != text:
        for i in range(1, 1000):
            aside = out_dir.with_name(f"{out_dir.name}.superseded-{i}")
            if not aside.exists():
                out_dir.rename(aside)
                break
    out_dir.mkdir(parents=True, exist_ok=True)
    if not record.exists():
        record.write_text(text)
    return out_dir


_SPECS: dict[str, SweepSpec] = {}


def _spec_cache(spec_dict: Mapping[str, Any]) -> SweepSpec:
    key = json.dumps(spec_dict, sort_keys=True, default=str)
    if key not in _SPECS:
        _SPECS[key] = sweep_spec.from_dict(spec_dict, file="sweep.yaml", check_space=False)
    return _SPECS[key]


def _remote(driver_node_id: str | None) -> bool:
    if driver_node_id is None:
        return True
    try:
        import ray

        return ray.get_runtime_context().get_node_id() != driver_node_id
    except Exception:  # noqa: BLE001
        return True


class _Trainable:
    """The function trainable handed to Tune; a picklable object holding what every trial needs."""

    def __init__(self, spec: SweepSpec, sweep_dir: Path, trial_fn: TrialFn | str, driver_node_id: str | None):
        self.spec_dict = spec.to_dict()
        self.sweep_dir = str(sweep_dir)
        self.trial_fn = trial_fn
        self.driver_node_id = driver_node_id
        self.__name__ = "v1sweep_trial"

    def __call__(self, params: dict) -> None:
        try:
            run_one(params, spec_dict=self.spec_dict, sweep_dir=self.sweep_dir, trial_fn=self.trial_fn,
                    driver_node_id=self.driver_node_id)
        except Exception as exc:
            full = _no_space(exc, Path(self.sweep_dir))
            if full is not None and full is not exc:
                raise full from None
            raise


def make_trainable(spec: SweepSpec, sweep_dir: Path, trial_fn: TrialFn | str | None,
                   driver_node_id: str | None) -> Any:
    from ray import tune

    fn_ref = trial_fn if trial_fn is not None else spec.trial_function
    if callable(fn_ref):
        _pickle_by_value_if_local(fn_ref)
    trainable = _Trainable(spec, sweep_dir, fn_ref, driver_node_id)

    def v1sweep_trial(params: dict) -> None:
        trainable(params)

    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    return tune.with_resources(v1sweep_trial, resources)


def _pickle_by_value_if_local(fn: Callable) -> None:
    """Functions from modules the workers cannot import (a test file, a notebook) travel by value."""
    import sys
    import sysconfig

    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    if module is None or module.__name__ == "__main__" or module.__name__.split(".")[0] == "v1sweep":
        return
    origin = getattr(module, "__file__", None) or ""
    installed = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if origin and not any(origin.startswith(p) for p in installed):
        import ray.cloudpickle as cloudpickle

        cloudpickle.register_pickle_by_value(module)
