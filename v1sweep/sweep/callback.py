"""The driver side of a sweep: Ray Tune trial events -> MLflow runs (`v1sweep.results.tracking`).

`TrackingBridge` decides what each event means for the trial's child run (finished, failed with
its error, stopped by the scheduler, interrupted and left for resume); `make_callback` wraps it in
a Ray Tune `Callback`. Classes deriving from Ray's are built on first use (`lazy_class`) so that
importing this module does not import Ray, yet pickles find them here by name.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from v1sweep.config import sweep_file as sweep_spec
from v1sweep.errors import ConfigError, V1SweepError
from v1sweep.config.sweep_file import SweepSpec
from v1sweep.sweep.trainable import ARTIFACTS, HISTORY, KIND, OUT_DIR, RECORD, numeric, trial_key, trial_params


def _error_text(trial: Any) -> str:
    """'Type: message' of the exception that ended `trial` (Ray's wrapper removed)."""
    exc = None
    local = getattr(trial, "pickled_error_file", None)  # written before the callbacks run
    try:
        if local and Path(local).is_file():
            import ray.cloudpickle as cloudpickle

            with open(local, "rb") as f:
                exc = cloudpickle.load(f)
        else:
            exc = trial.get_pickled_error()  # from the storage path (after a restore)
    except Exception:  # noqa: BLE001 - unreadable: fall back to the text file
        exc = None
    if exc is not None:
        cause = getattr(exc, "cause", None) or exc
        return f"{type(cause).__name__}: {cause}".strip()[:4000]
    text = None
    try:
        local = getattr(trial, "error_file", None)
        text = Path(local).read_text() if local and Path(local).is_file() else trial.get_error()
    except Exception:  # noqa: BLE001
        text = None
    if text:
        lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
        return (lines[-1] if lines else str(text))[:4000]
    return "the trial failed (no error recorded by Ray)"


def _run_name(trial_id: str, params: Mapping[str, Any]) -> str:
    parts = [f"{k.split(',')[0].split('.')[-1]}={sweep_spec.format_value(v)}" for k, v in params.items()]
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
        params = trial_params(trial.config)
        tid = trial_key(trial)
        try:
            from v1sweep.config.trial import to_flat

            flat_params = to_flat(self.spec.trial_config_for(params, name=f"{self.spec.name}-{tid}"))
        except (ConfigError, ValueError):
            flat_params = self.spec.trial_flat(params)
        self.states.pop(tid, None)
        self._stop_requested.discard(tid)
        self.tracker.trial_started(tid, params=flat_params, run_name=_run_name(tid, params))

    def result(self, trial: Any, result: dict) -> None:
        from v1sweep.results.tracking import metric_items

        tid = trial_key(trial)
        if not self.tracker.has_trial(tid):
            self.start(trial)
        for entry in result.pop(HISTORY, None) or []:
            step = int(entry.get("epoch", 0))
            if not self.tracker.epoch_logged(tid, step):
                self.tracker.log_metrics(tid, {**numeric(entry.get("metrics", {})), "epoch": step}, step)
        files = result.pop(ARTIFACTS, None)
        record = result.pop(RECORD, None)
        out_dir = result.get(OUT_DIR)
        metrics = metric_items(result)
        step = int(result.get("epoch", 0) or 0)
        if result.get(KIND) == "final":
            if not self.tracker.is_final(tid):
                if record:
                    self.tracker.set_tags(tid, record)
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
        tid = trial_key(trial)
        if self.tracker.is_final(tid):
            self._end(tid, "finished")
        elif tid in self._stop_requested:
            self._end(tid, "stopped")
        else:
            self._end(tid, "interrupted")

    def error(self, trial: Any) -> None:
        if not self.tracker.has_trial(trial_key(trial)):
            self.start(trial)
        self._end(trial_key(trial), "failed", _error_text(trial))

    def recover(self, trial: Any) -> None:
        from v1sweep import contracts as C

        self.tracker.set_tags(trial_key(trial), {C.RETRIES: str(trial.num_failures),
                                               C.LAST_ERROR: _error_text(trial)})

    def reconcile(self, trial: Any) -> None:
        """A trial Tune will not run again (finished / errored, perhaps in an earlier session whose
        driver died before MLflow heard of it): make sure its run says so."""
        tid = trial_key(trial)
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
    from v1sweep.results.tracking import metric_items

    return metric_items(result)


def make_callback(bridge: TrackingBridge) -> Any:
    """The Ray Tune callback feeding `bridge`."""
    return lazy_class("V1SweepTracking")(bridge)


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
        """OptunaSearch that ignores per-epoch results lacking its (final) metric, and turns an
        exception of Optuna itself into `SearchAlgorithmFailed` so the driver can tell it from a
        trial's failure (the sweep stops with one error line naming the algorithm)."""

        algorithm = "optuna"

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if isinstance(self.metric, str) and self.metric not in result:
                return
            with _search_errors(self, "on_trial_result"):
                super().on_trial_result(trial_id, result)

        def suggest(self, trial_id: str):
            with _search_errors(self, "suggest"):
                return super().suggest(trial_id)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            with _search_errors(self, "on_trial_complete"):
                super().on_trial_complete(trial_id, result=result, error=error)

    return FinalMetricOptunaSearch


from v1sweep.errors import SearchAlgorithmFailed  # noqa: E402,F401 - defined in v1sweep.errors, importable here


@contextmanager
def _search_errors(searcher: Any, where: str) -> Iterator[None]:
    try:
        yield
    except SearchAlgorithmFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any fault inside Optuna ends the sweep, named
        sampler = type(getattr(searcher, "_sampler", None) or searcher).__name__
        raise SearchAlgorithmFailed(f"{searcher.algorithm} ({sampler})",
                                    f"{type(exc).__name__} in {where}: {exc}") from exc


_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def _lock_free_state(obj: Any) -> dict:
    """`obj.__dict__` with its thread locks left out (their names are kept to recreate them)."""
    state = dict(obj.__dict__)
    locks = {k: isinstance(v, type(threading.RLock())) for k, v in state.items() if isinstance(v, _LOCK_TYPES)}
    for k in locks:
        del state[k]
    state["_v1sweep_locks"] = locks
    return state


def _restore_locks(obj: Any, state: dict) -> None:
    locks = state.pop("_v1sweep_locks", {})
    obj.__dict__.update(state)
    for k, reentrant in locks.items():
        setattr(obj, k, threading.RLock() if reentrant else threading.Lock())


def _nsga2_class() -> type:
    """NSGA-II that pickles: Optuna 5's genetic samplers (`optuna.samplers._ga.BaseGASampler`) keep
    a `threading.Lock` in `_thread_lock` and define no `__getstate__`, while Ray Tune pickles the
    searcher (with its sampler) when the Tuner is built and at every experiment checkpoint
    (`TypeError: cannot pickle '_thread.lock' object`). The lock guards a per-process cache, so a
    pickled copy gets a fresh one."""
    import optuna

    class NSGAIISampler(optuna.samplers.NSGAIISampler):
        __doc__ = _nsga2_class.__doc__

        def __getstate__(self) -> dict:
            return _lock_free_state(self)

        def __setstate__(self, state: dict) -> None:
            _restore_locks(self, state)

    return NSGAIISampler


def _progress_class() -> type:
    from v1sweep.sweep.progress import _reporter_class

    return _reporter_class()


_LAZY_CLASSES = {"V1SweepTracking": _tracking_class, "FinalMetricOptunaSearch": _optuna_class,
                 "NSGAIISampler": _nsga2_class, "SweepProgress": _progress_class}


def lazy_class(name: str) -> type:
    """Build (once) and return one of the classes deriving from Ray's."""
    if name not in globals():
        cls = _LAZY_CLASSES[name]()
        cls.__module__ = __name__
        cls.__qualname__ = name
        globals()[name] = cls
    return globals()[name]


def __getattr__(name: str) -> Any:
    """PEP 562: unpickling `v1sweep.sweep.callback.<Class>` builds the class on demand."""
    if name in _LAZY_CLASSES:
        return lazy_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
