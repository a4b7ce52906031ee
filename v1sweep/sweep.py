"""Run a `SweepSpec` with Ray Tune, on a fresh local Ray or a given cluster, tracked in MLflow.

    outcome = run_sweep(load_sweep("sweeps/smoke.yaml"))          # fresh local Ray, sqlite store
    outcome = run_sweep(spec, address="auto", tracking_uri="http://head:5000")
    resume_sweep(outcome.sweep_dir)                                # after the driver died

Each trial is one call of the trial function (default `v1sweep.trial.run_trial`) with absolute
paths: ``out_dir = <sweep_dir>/trials/<trial_id>``. The trainable reports every epoch and the final
metrics to Tune; MLflow is written on the driver (`v1sweep.tracking`), so workers never need the
tracking store, and the sqlite default works with a local Ray and a loopback cluster alike.
Resume restores Ray Tune's experiment state, re-attaches to the existing MLflow runs by their
``trial_id`` tag, back-fills epochs logged by the workers but lost by a killed driver, and deletes
the runs of trials Ray itself had not saved. Ray is imported inside functions only.

Sweep folder (``--storage``, default ``./v1sweep_runs``; Ray Tune's experiment folder too)::

    <storage>/<name>-<YYYYmmdd-HHMMSS>/
      sweep.json   name, tracking URI, experiment, parent run id, spec hash  (what resume needs)
      sweep.yaml   the resolved, self-contained sweep (no includes)
      source.yaml  the sweep file as given
      trials/<trial_id>/   the trial's out_dir: config.yaml, checkpoint.pt, summary.json, epochs.jsonl ...
"""
from __future__ import annotations

import datetime
import importlib
import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from v1sweep import sweep_spec
from v1sweep.errors import ConfigError, DatasetError, V1SweepError
from v1sweep.store import mask_uri, resolve_tracking_uri
from v1sweep.sweep_spec import SweepSpec, split_key

SWEEP_JSON, SPEC_YAML, SOURCE_YAML = "sweep.json", "sweep.yaml", "source.yaml"
EPOCHS_FILE, FINAL_FILE, LOG_FILE, PARAMS_FILE = "epochs.jsonl", "v1sweep_final.json", "trial.log", "params.json"
DEFAULT_STORAGE = "v1sweep_runs"
KIND, HISTORY, ARTIFACTS, OUT_DIR = "_v1sweep_kind", "_v1sweep_history", "_v1sweep_artifacts", "_v1sweep_out_dir"
TABLE_METRICS = ("epoch", "val_acc", "clean_acc", "corruption_acc")
TrialFn = Callable[..., Any]


@dataclass
class SweepOutcome:
    """What a finished (or resumed) sweep left behind."""
    sweep_dir: Path
    parent_run_id: str
    tracking_uri: str
    experiment_id: str
    counts: dict[str, int] = field(default_factory=dict)
    trial_ids: list[str] = field(default_factory=list)
    lost_writes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False


# ---------------------------------------------------------------------------------------------
# The trainable (runs in Ray workers)
# ---------------------------------------------------------------------------------------------
def resolve_trial_fn(ref: TrialFn | str) -> TrialFn:
    """A callable, or ``"package.module:function"`` imported here (on the worker)."""
    if callable(ref):
        return ref
    module_name, _, attr = str(ref).partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import trial function module {module_name!r} on node "
                          f"{socket.gethostname()}: {exc}", key="trial_function") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{module_name} has no {attr!r}", key="trial_function")
        obj = getattr(obj, part)
    return obj


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


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
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
    from v1sweep.tracking import MAX_ARTIFACT_BYTES, TRIAL_ARTIFACTS

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

    trial_id = tune.get_context().get_trial_id()
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
        if remote:
            final[ARTIFACTS] = _artifact_bytes(out_dir)
        report(final)
        return

    log_file = open(out_dir / LOG_FILE, "a", buffering=1)

    def log(message: str) -> None:
        log_file.write(f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S} {message}\n")

    last_epoch = [max((int(h["epoch"]) for h in history), default=0)]

    def on_epoch(epoch: int, metrics: Mapping[str, Any]) -> None:
        values = _numbers(metrics)
        with open(out_dir / EPOCHS_FILE, "a") as f:
            f.write(json.dumps({"epoch": int(epoch), "metrics": values}) + "\n")
        last_epoch[0] = int(epoch)
        report({**values, "epoch": int(epoch), KIND: "epoch"})

    try:
        log(f"trial {trial_id} on node {_node()}: {dict(params)}")
        result = fn(config, out_dir, on_epoch=on_epoch, log=log)
        metrics = _numbers(getattr(result, "metrics", result) or {})
        tmp = final_path.with_name(f".{FINAL_FILE}.tmp")
        tmp.write_text(json.dumps({"metrics": metrics, "epoch": last_epoch[0]}))
        tmp.replace(final_path)
        log(f"trial {trial_id} finished")
    except BaseException as exc:
        log(f"trial {trial_id} failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        log_file.close()
    final = {**metrics, "epoch": last_epoch[0], KIND: "final"}
    if remote:
        final[ARTIFACTS] = _artifact_bytes(out_dir)
    report(final)


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
        _SPECS[key] = sweep_spec.from_dict(spec_dict, file="sweep.yaml")
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
        run_one(params, spec_dict=self.spec_dict, sweep_dir=self.sweep_dir, trial_fn=self.trial_fn,
                driver_node_id=self.driver_node_id)


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


# ---------------------------------------------------------------------------------------------
# Driver side: Tune callback -> SweepTracker
# ---------------------------------------------------------------------------------------------
def _error_text(trial: Any) -> str:
    try:
        exc = trial.get_pickled_error()
    except Exception:  # noqa: BLE001
        exc = None
    if exc is not None:
        cause = getattr(exc, "cause", None) or exc
        return f"{type(cause).__name__}: {cause}".strip()[:4000]
    try:
        text = trial.get_error()
    except Exception:  # noqa: BLE001
        text = None
    if text:
        lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
        return (lines[-1] if lines else str(text))[:4000]
    return "the trial failed (no error recorded by Ray)"


def _run_name(trial_id: str, params: Mapping[str, Any]) -> str:
    parts = [f"{k.split(',')[0].split('.')[-1]}={sweep_spec._fmt(v)}" for k, v in params.items()]
    return (trial_id + " " + " ".join(parts)).strip()


class TrackingBridge:
    """Turns Tune trial events into MLflow writes (the Tune `Callback` wraps this object).

    A trial that completes with its final report is *finished*; one the scheduler stopped (Tune
    marks the deciding result ``done``) is *stopped*; one that completes with neither was ended by
    an interrupt (Ctrl-C) and is left to `v1sweep resume`.
    """

    def __init__(self, tracker: Any, spec: SweepSpec):
        self.tracker = tracker
        self.spec = spec
        self.trials: list = []
        self.states: dict[str, str] = {}
        self._stop_requested: set[str] = set()

    def start(self, trial: Any) -> None:
        params = dict(trial.config)
        try:
            from v1sweep.config import to_flat

            flat_params = to_flat(self.spec.trial_config_for(params, name=f"{self.spec.name}-{trial.trial_id}"))
        except (ConfigError, ValueError):
            flat_params = self.spec.trial_flat(params)
        self.states.pop(trial.trial_id, None)
        self._stop_requested.discard(trial.trial_id)
        self.tracker.trial_started(trial.trial_id, params=flat_params, run_name=_run_name(trial.trial_id, params))

    def result(self, trial: Any, result: dict) -> None:
        from v1sweep.tracking import metric_items

        tid = trial.trial_id
        if not self.tracker.has_trial(tid):
            self.start(trial)
        for entry in result.pop(HISTORY, None) or []:
            step = int(entry.get("epoch", 0))
            if not self.tracker.epoch_logged(tid, step):
                self.tracker.log_metrics(tid, {**_numbers(entry.get("metrics", {})), "epoch": step}, step)
        files = result.pop(ARTIFACTS, None)
        out_dir = result.get(OUT_DIR)
        metrics = metric_items(result)
        step = int(result.get("epoch", 0) or 0)
        if result.get(KIND) == "final":
            if not self.tracker.is_final(tid):
                self.tracker.log_final(tid, metrics, step)
                self.tracker.log_artifacts(tid, files=files, folder=None if files else out_dir)
        else:
            if result.get("done"):
                self._stop_requested.add(tid)  # the scheduler decided to stop the trial here
            if not self.tracker.epoch_logged(tid, step):
                self.tracker.log_metrics(tid, metrics, step)

    def _end(self, trial_id: str, state: str, error: str | None = None) -> None:
        self.states[trial_id] = state
        self.tracker.trial_ended(trial_id, state, error=error)

    def complete(self, trial: Any) -> None:
        tid = trial.trial_id
        if self.tracker.is_final(tid):
            self._end(tid, "finished")
        elif tid in self._stop_requested:
            self._end(tid, "stopped")
        else:
            self._end(tid, "interrupted")

    def error(self, trial: Any) -> None:
        if not self.tracker.has_trial(trial.trial_id):
            self.start(trial)
        self._end(trial.trial_id, "failed", _error_text(trial))

    def recover(self, trial: Any) -> None:
        self.tracker.set_tags(trial.trial_id, {"v1sweep.retries": str(trial.num_failures),
                                               "v1sweep.last_error": _error_text(trial)})

    def reconcile(self, trial: Any) -> None:
        """A trial Tune will not run again (finished / errored, perhaps in an earlier session whose
        driver died before MLflow heard of it): make sure its run says so."""
        tid = trial.trial_id
        if tid in self.states or self.tracker.is_ended(tid):
            return
        last = dict(trial.last_result or {})
        if trial.status == "TERMINATED":
            if not self.tracker.has_trial(tid):
                self.start(trial)
            if last.get(KIND) == "final":
                if not self.tracker.is_final(tid):
                    self.tracker.log_final(tid, _final_metrics(last), int(last.get("epoch", 0) or 0))
                    self.tracker.log_artifacts(tid, folder=last.get(OUT_DIR))
                self._end(tid, "finished")
            else:
                self._end(tid, "stopped")
        elif trial.status == "ERROR":
            if not self.tracker.has_trial(tid):
                self.start(trial)
            self._end(tid, "failed", _error_text(trial))


def _final_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    from v1sweep.tracking import metric_items

    return metric_items(result)


def _callback(bridge: TrackingBridge) -> Any:
    return __getattr__("V1SweepTracking")(bridge)


def _tracking_class() -> type:
    from ray.tune import Callback

    class V1SweepTracking(Callback):
        """Ray Tune callback: every trial event goes to the sweep's MLflow runs (via `TrackingBridge`)."""

        def __init__(self, bridge: TrackingBridge | None = None) -> None:
            self.bridge = bridge

        def __getstate__(self) -> dict:  # Tune pickles callbacks; resume attaches a new bridge
            return {}

        def __setstate__(self, state: dict) -> None:
            self.bridge = None

        def on_trial_start(self, iteration, trials, trial, **info):
            if self.bridge:
                self.bridge.start(trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if self.bridge:
                self.bridge.result(trial, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            if self.bridge:
                self.bridge.complete(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            if self.bridge:
                self.bridge.error(trial)

        def on_trial_recover(self, iteration, trials, trial, **info):
            if self.bridge:
                self.bridge.recover(trial)

        def on_experiment_end(self, trials, **info):
            if self.bridge:
                self.bridge.trials = list(trials)

    return V1SweepTracking


def _optuna_class() -> type:
    from ray.tune.search.optuna import OptunaSearch

    class FinalMetricOptunaSearch(OptunaSearch):
        """OptunaSearch that ignores per-epoch results lacking its (final) metric."""

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if isinstance(self.metric, str) and self.metric not in result:
                return
            super().on_trial_result(trial_id, result)

    return FinalMetricOptunaSearch


_LAZY_CLASSES = {"V1SweepTracking": _tracking_class, "FinalMetricOptunaSearch": _optuna_class}


def __getattr__(name: str) -> Any:
    """PEP 562: classes deriving from Ray's are built on first use (no Ray import with this module)
    and live at module level, so pickles refer to them by name."""
    if name in _LAZY_CLASSES:
        cls = _LAZY_CLASSES[name]()
        cls.__module__ = __name__
        cls.__qualname__ = name
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# Search algorithms and schedulers
# ---------------------------------------------------------------------------------------------
def param_space(spec: SweepSpec) -> dict[str, Any]:
    space = {}
    for key, dom in spec.space.items():
        hint, _ = sweep_spec._field_of(split_key(key)[0], file=None, space_key=key)
        space[key] = dom.to_tune(int_field=sweep_spec._is_int_field(hint))
    return space


def search_algorithm(spec: SweepSpec, slots: int) -> tuple[Any, int | None]:
    """(search_alg, max_concurrent_trials for TuneConfig)."""
    s = spec.search
    if s.algorithm in ("grid", "random"):
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=s.seed, max_concurrent=s.max_concurrent or 0), None
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objectives = s.objectives
    if s.algorithm == "optuna-multi":
        sampler = optuna.samplers.NSGAIISampler(seed=s.seed)
        searcher = __getattr__("FinalMetricOptunaSearch")(metric=[m for m, _ in objectives],
                                                          mode=[md for _, md in objectives], sampler=sampler)
    else:
        sampler = optuna.samplers.TPESampler(seed=s.seed)
        searcher = __getattr__("FinalMetricOptunaSearch")(metric=objectives[0][0], mode=objectives[0][1],
                                                          sampler=sampler)
    return ConcurrencyLimiter(searcher, max_concurrent=s.max_concurrent or max(1, slots)), None


def scheduler(spec: SweepSpec) -> Any:
    sch = spec.scheduler
    if sch.type == "fifo":
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()
    from ray.tune.schedulers import ASHAScheduler

    max_t = sch.max_t or max(1, spec.trial.train.epochs)
    return ASHAScheduler(time_attr="epoch", metric=sch.metric, mode=sch.mode, max_t=max_t,
                         grace_period=min(sch.grace_period, max_t), reduction_factor=sch.reduction_factor,
                         stop_last_trials=False)


def _trial_id_name(trial: Any) -> str:
    return trial.trial_id


def _trial_dirname(trial: Any) -> str:
    return f"tune-{trial.trial_id}"


def _reporter(spec: SweepSpec) -> Any:
    from ray.tune import CLIReporter

    params = {k: k.split(",")[0].split(".")[-1] for k in spec.space}
    metrics = {m: m for m in TABLE_METRICS}
    for name, _mode in spec.search.objectives:
        metrics.setdefault(name, name)
    return CLIReporter(metric_columns=metrics, parameter_columns=params, max_report_frequency=30,
                       max_progress_rows=40)


# ---------------------------------------------------------------------------------------------
# Ray sessions and environment
# ---------------------------------------------------------------------------------------------
_TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",   # MLflow is the record; no result.json/progress.csv
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",  # per-epoch results lack the final metrics
    "RAY_AIR_NEW_OUTPUT": "0",                   # the CLIReporter table with our metric columns
    "TUNE_GLOBAL_CHECKPOINT_S": "5",             # save the experiment state often (resume loses less)
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # no "View run at" line (and GET) per ended run
}


@contextmanager
def _tune_env() -> Iterator[None]:
    import logging

    # With Tune's file loggers off, its result analysis warns that result.json is missing: not an issue.
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    old = {k: os.environ.get(k) for k in _TUNE_ENV}
    for k, v in _TUNE_ENV.items():
        if k not in os.environ or k in ("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "TUNE_DISABLE_STRICT_METRIC_CHECKING",
                                        "RAY_AIR_NEW_OUTPUT", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"):
            os.environ[k] = v
    try:
        yield
    finally:
        quiet.setLevel(level)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def ray_session(address: str | None, num_cpus: int | None, *, log: Callable[[str], Any] = print) -> Iterator[dict]:
    """A fresh local Ray (address None) or the given cluster; a Ray already initialised *in this
    process* (by the caller) is used as is and left running."""
    import ray

    if ray.is_initialized():
        yield {"owned": False, "address": "this process's Ray"}
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": True}
    if address is None:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
        where = "a fresh local Ray"
    else:
        _enable_token_auth_if_available()
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise V1SweepError(
                f"cannot connect to the Ray cluster at {address!r}: {str(exc).strip().splitlines()[-1][:300]}. "
                f"Check the address (auto | host:port | ray://host:10001); a cluster started with token "
                f"authentication (the default of `ray start` in Ray 2.5x+) needs RAY_AUTH_MODE=token and its "
                f"token (~/.ray/auth_token or RAY_AUTH_TOKEN) on this machine") from None
        where = f"the Ray cluster at {address}"
    try:
        res = ray.cluster_resources()
        log(f"Ray: {where} ({len([n for n in ray.nodes() if n.get('Alive')])} node(s), "
            f"{res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU)")
        yield {"owned": True, "address": where}
    finally:
        ray.shutdown()


def _enable_token_auth_if_available() -> None:
    """Like `ray start --address`: use token auth when a token is present and RAY_AUTH_MODE is unset."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available)

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except Exception:  # noqa: BLE001 - older/newer Ray without this helper
        pass


def _slots(spec: SweepSpec) -> int:
    import ray

    res = ray.cluster_resources()
    by_cpu = int(res.get("CPU", 1) // spec.resources.cpu) if spec.resources.cpu else 1
    by_gpu = int(res.get("GPU", 0) // spec.resources.gpu) if spec.resources.gpu else by_cpu
    return max(1, min(by_cpu, by_gpu))


# ---------------------------------------------------------------------------------------------
# Running and resuming
# ---------------------------------------------------------------------------------------------
def print_dry_run(spec: SweepSpec, out: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """Print the sweep and its expanded trials (grid: every point; sampled: the domains)."""
    trials = sweep_spec.expand(spec)
    out(sweep_spec.describe(spec))
    kind = "trials" if spec.search.algorithm in ("grid", "random") else "trials sampled by " + spec.search.algorithm
    out(f"{len(trials)} {kind}:")
    for i, params in enumerate(trials):
        out(f"  {i:4d}  " + ", ".join(f"{k}={sweep_spec._fmt(v)}" for k, v in params.items()))
    return trials


def _new_sweep_dir(storage: Path, name: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = storage / (f"{name}-{stamp}" + (f"-{i}" if i else ""))
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise V1SweepError(f"cannot create a new sweep folder under {storage}")


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def run_sweep(spec: SweepSpec, *, address: str | None = None, storage: str | Path | None = None,
              tracking_uri: str | None = None, trial_fn: TrialFn | str | None = None, dry_run: bool = False,
              num_cpus: int | None = None, verbose: int = 1, command: str | None = None,
              retry_s: float = 600.0, out: Callable[[str], Any] = print) -> SweepOutcome | None:
    """Run every trial of `spec` with Ray Tune and record them in MLflow (see the module doc).

    `trial_fn` replaces the sweep's trial function (a callable or ``"module:function"``) with the
    signature of `v1sweep.trial.run_trial`; it returns an object with ``.metrics`` or a dict.
    """
    if dry_run:
        print_dry_run(spec, out)
        return None
    from v1sweep.tracking import SweepTracker, check_store, command_line, describe_uri

    started = time.monotonic()
    uri = resolve_tracking_uri(tracking_uri, fallback=spec.tracking.uri)
    out(f"MLflow tracking store: {describe_uri(uri)}")
    check_store(uri)
    storage_dir = Path(storage or DEFAULT_STORAGE).expanduser().absolute()
    try:
        storage_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise V1SweepError(f"cannot create the sweep storage folder {storage_dir}: {exc.strerror}") from None
    if not os.access(storage_dir, os.W_OK):
        raise V1SweepError(f"the sweep storage folder {storage_dir} is not writable")
    command = command or command_line(uri=uri)
    with _tune_env(), ray_session(address, num_cpus, log=out):
        sweep_dir = _new_sweep_dir(storage_dir, spec.name)
        (sweep_dir / SPEC_YAML).write_text(_yaml(spec.to_dict()))
        files = {"": sweep_dir / SPEC_YAML}
        if spec.file and Path(spec.file).is_file():
            shutil.copyfile(spec.file, sweep_dir / SOURCE_YAML)
            files = {"": sweep_dir / SOURCE_YAML, "resolved": sweep_dir / SPEC_YAML}
        tracker = SweepTracker(uri, experiment=spec.experiment, sweep_name=spec.name, retry_s=retry_s, log=out)
        where = [Path(spec.file).resolve().parent] if spec.file else []
        parent = tracker.start_sweep(spec_hash=spec.spec_hash, sweep_dir=str(sweep_dir), command=command, files=files,
                                     commit_dirs=[*where, Path.cwd(), sweep_spec.REPO_ROOT])
        _write_json(sweep_dir / SWEEP_JSON, _sweep_info(spec, sweep_dir, uri, tracker, parent))
        out(f"sweep {spec.name}: folder {sweep_dir}; MLflow experiment {spec.experiment!r}, parent run {parent}")
        tuner, bridge = _new_tuner(spec, sweep_dir, tracker, trial_fn, verbose)
        return _fit(tuner, bridge, tracker, sweep_dir, uri, started, out)


def resume_sweep(sweep_dir: str | Path, *, address: str | None = None, tracking_uri: str | None = None,
                 trial_fn: TrialFn | str | None = None, num_cpus: int | None = None, verbose: int = 1,
                 command: str | None = None, retry_s: float = 600.0,
                 out: Callable[[str], Any] = print) -> SweepOutcome:
    """Continue an interrupted sweep: finished trials stay, unfinished ones resume from their
    checkpoints, MLflow keeps exactly one child run per trial."""
    from v1sweep.tracking import SweepTracker, check_store, command_line, describe_uri

    started = time.monotonic()
    sweep_dir = Path(sweep_dir).expanduser().absolute()
    info_path = sweep_dir / SWEEP_JSON
    if not info_path.is_file():
        raise V1SweepError(f"{sweep_dir} is not a sweep folder (no {SWEEP_JSON}); pass the folder "
                           f"`v1sweep run` printed, e.g. {DEFAULT_STORAGE}/<name>-<time>")
    info = json.loads(info_path.read_text())
    spec = sweep_spec.from_dict(_read_yaml(sweep_dir / SPEC_YAML), file=str(sweep_dir / SPEC_YAML),
                                base_dir=sweep_dir)
    stored_uri = info.get("tracking_uri")
    if info.get("tracking_uri_masked") and not tracking_uri:
        raise V1SweepError(f"the sweep's tracking URI holds credentials and was not stored "
                           f"({stored_uri}); pass it again with --tracking-uri")
    uri = resolve_tracking_uri(tracking_uri, fallback=stored_uri)
    out(f"MLflow tracking store: {describe_uri(uri)}")
    check_store(uri)
    command = command or command_line(uri=uri)
    with _tune_env(), ray_session(address, num_cpus, log=out):
        from ray.tune import Tuner

        tracker = SweepTracker(uri, experiment=info.get("experiment") or spec.experiment, sweep_name=spec.name,
                               retry_s=retry_s, log=out)
        children = tracker.attach_sweep(info["parent_run_id"], command=command)
        out(f"resuming sweep {spec.name} in {sweep_dir}: {len(children)} trial run(s) in MLflow")
        if Tuner.can_restore(str(sweep_dir)):
            bridge = TrackingBridge(tracker, spec)
            for trial in _stored_trials(sweep_dir):
                if trial.status in ("TERMINATED", "ERROR"):
                    bridge.reconcile(trial)
            tuner = Tuner.restore(str(sweep_dir), trainable=make_trainable(spec, sweep_dir, trial_fn, _driver_node()),
                                  resume_unfinished=True, resume_errored=False, restart_errored=False)
            run_config = tuner._local_tuner.get_run_config()
            run_config.callbacks = [_callback(bridge)]
            run_config.progress_reporter = _reporter(spec)
            run_config.verbose = verbose
        else:  # killed before Ray saved anything: start the trials again in the same folder and run
            out("no Ray Tune state to restore in the folder; starting the trials again")
            tuner, bridge = _new_tuner(spec, sweep_dir, tracker, trial_fn, verbose)
        return _fit(tuner, bridge, tracker, sweep_dir, uri, started, out)


def _stored_trials(sweep_dir: Path) -> list:
    from ray.tune import ExperimentAnalysis

    try:
        return list(ExperimentAnalysis(str(sweep_dir)).trials)
    except Exception:  # noqa: BLE001 - unreadable state: Tune's restore reports it
        return []


def _driver_node() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001
        return None


def _new_tuner(spec: SweepSpec, sweep_dir: Path, tracker: Any, trial_fn: TrialFn | str | None,
               verbose: int) -> tuple[Any, TrackingBridge]:
    from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner

    bridge = TrackingBridge(tracker, spec)
    slots = _slots(spec)
    search_alg, max_concurrent = search_algorithm(spec, slots)
    tune_config = TuneConfig(search_alg=search_alg, scheduler=scheduler(spec), num_samples=spec.search.num_samples,
                             max_concurrent_trials=max_concurrent, reuse_actors=True,
                             trial_name_creator=_trial_id_name, trial_dirname_creator=_trial_dirname)
    run_config = RunConfig(name=sweep_dir.name, storage_path=str(sweep_dir.parent), callbacks=[_callback(bridge)],
                           failure_config=FailureConfig(max_failures=spec.failures.max_failures),
                           progress_reporter=_reporter(spec), verbose=verbose)
    tuner = Tuner(make_trainable(spec, sweep_dir, trial_fn, _driver_node()), param_space=param_space(spec),
                  tune_config=tune_config, run_config=run_config)
    return tuner, bridge


def _fit(tuner: Any, bridge: TrackingBridge, tracker: Any, sweep_dir: Path, uri: str, started: float,
         out: Callable[[str], Any]) -> SweepOutcome:
    try:
        tuner.fit()
    except KeyboardInterrupt:
        pass
    # Ray Tune's saved state is what a resume continues from: after an interrupt it still lists the
    # stopped-by-Ctrl-C trials as running (the in-memory trials are already cleaned up).
    trials = _stored_trials(sweep_dir) or bridge.trials
    for trial in trials:
        if bridge.states.get(trial.trial_id) in ("finished", "failed", "interrupted") or (
                trial.trial_id in bridge.states and trial.status in ("TERMINATED", "ERROR")):
            continue
        if trial.status in ("TERMINATED", "ERROR"):
            bridge.reconcile(trial)
        elif tracker.has_trial(trial.trial_id):
            bridge._end(trial.trial_id, "interrupted")
    interrupted = any(state == "interrupted" for state in bridge.states.values()) or \
        any(t.status not in ("TERMINATED", "ERROR") for t in trials)
    if not interrupted:
        gone = tracker.remove_orphans({t.trial_id for t in trials})
        if gone:
            out(f"removed {len(gone)} MLflow run(s) of trials Ray had not saved before the driver died")
    counts = {"finished": 0, "failed": 0, "stopped": 0, "interrupted": 0}
    for trial in trials:
        child = tracker.children.get(trial.trial_id)
        tags = child.tags if child else {}
        state = bridge.states.get(trial.trial_id) or tags.get("v1sweep.status") or "interrupted"
        counts[state] = counts.get(state, 0) + 1
    tracker.end_sweep("KILLED" if interrupted else "FINISHED",
                      tags={f"v1sweep.trials.{k}": v for k, v in counts.items()} | {
                          "v1sweep.wall_time_s": f"{time.monotonic() - started:.1f}"})
    tracker.close(timeout=tracker.writer.retry_s + 60)
    info_path = sweep_dir / SWEEP_JSON
    info = json.loads(info_path.read_text())
    info["status"] = "interrupted" if interrupted else "finished"
    info["counts"] = counts
    _write_json(info_path, info)
    outcome = SweepOutcome(sweep_dir=sweep_dir, parent_run_id=tracker.parent_run_id, tracking_uri=uri,
                           experiment_id=tracker.experiment_id, counts=counts,
                           trial_ids=[t.trial_id for t in trials], lost_writes=list(tracker.writer.lost),
                           seconds=time.monotonic() - started, interrupted=interrupted)
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    out(f"sweep {'interrupted' if interrupted else 'done'} in {outcome.seconds:.1f} s: {summary or 'no trials'}; "
        f"MLflow parent run {outcome.parent_run_id} in {mask_uri(uri)}")
    if interrupted:
        out(f"continue with: v1sweep resume {sweep_dir}")
    if outcome.lost_writes:
        out(f"warning: {len(outcome.lost_writes)} MLflow write(s) could not be made; first: {outcome.lost_writes[0]}")
    return outcome


def _sweep_info(spec: SweepSpec, sweep_dir: Path, uri: str, tracker: Any, parent: str) -> dict[str, Any]:
    masked = mask_uri(uri)
    objectives = spec.search.objectives
    return {
        "name": spec.name, "sweep_dir": str(sweep_dir), "tracking_uri": masked,
        "tracking_uri_masked": masked != uri, "experiment": spec.experiment,
        "experiment_id": tracker.experiment_id, "parent_run_id": parent, "spec_hash": spec.spec_hash,
        "search": {"algorithm": spec.search.algorithm,
                   "metric": objectives[0][0] if objectives else "corruption_acc",
                   "mode": objectives[0][1] if objectives else "max"},
        "trial_function": spec.trial_function, "source": spec.file,
        "created": datetime.datetime.now().isoformat(timespec="seconds"), "status": "running",
    }


def _yaml(data: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(data), sort_keys=False)


def _read_yaml(path: Path) -> dict[str, Any]:
    from v1sweep.config import read_yaml

    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a sweep mapping", file=str(path))
    return data


__all__ = ["SweepOutcome", "run_sweep", "resume_sweep", "print_dry_run", "make_trainable", "resolve_trial_fn",
           "param_space", "search_algorithm", "scheduler", "ray_session", "TrackingBridge"]
