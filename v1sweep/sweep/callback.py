"""The driver side of a sweep: Ray Tune trial events -> MLflow runs (`v1sweep.results.tracking`).

`TrackingBridge` decides what each event means for the trial's child run (finished, failed with
its error, stopped by the scheduler, interrupted and left for resume); `make_callback` wraps it in
a Ray Tune `Callback`. Classes deriving from Ray's or Optuna's live in `v1sweep.sweep.tune_classes`
and `v1sweep.sweep.optuna_search` (imported when needed), so that importing this module imports
neither; their old names here still resolve, for sweep state pickled before they moved.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

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
    from v1sweep.sweep.tune_classes import V1SweepTracking

    return V1SweepTracking(bridge)


from v1sweep.errors import SearchAlgorithmFailed  # noqa: E402,F401 - defined in v1sweep.errors, importable here


# Classes that lived here (built on first use) until they became plain classes of modules that
# import Ray / Optuna: pickled sweep state still names them here (`v1sweep.sweep_callback.<Class>`).
_MOVED_CLASSES = {"V1SweepTracking": "v1sweep.sweep.tune_classes", "SweepProgress": "v1sweep.sweep.tune_classes",
                  "FinalMetricOptunaSearch": "v1sweep.sweep.optuna_search",
                  "NSGAIISampler": "v1sweep.sweep.optuna_search"}


def __getattr__(name: str) -> Any:
    """PEP 562: `v1sweep.sweep.callback.<Class>` (old pickles) imports the class's module on demand."""
    if name in _MOVED_CLASSES:
        import importlib

        return getattr(importlib.import_module(_MOVED_CLASSES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
