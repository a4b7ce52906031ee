"""The classes v1sweep derives from Ray Tune's (its callback and its progress reporter): imports Ray.

Imported only where Ray already runs (`make_callback`, `make_reporter`) and by unpickling a
sweep's saved state. Plain module-level classes, so pickles name them here; state saved before
they moved names `v1sweep.sweep.callback.<Class>`, which that module forwards to this one.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ray.tune import Callback, ProgressReporter

from v1sweep.sweep.progress import ProgressView, snapshot

if TYPE_CHECKING:
    from v1sweep.sweep.callback import TrackingBridge


class V1SweepTracking(Callback):
    """Ray Tune callback: every trial event goes to the sweep's MLflow runs (via `TrackingBridge`)."""

    def __init__(self, bridge: TrackingBridge | None = None) -> None:
        self.bridge = bridge

    def __getstate__(self) -> dict:  # Tune pickles callbacks; resume attaches a new bridge
        return {}

    def __setstate__(self, state: dict) -> None:
        self.bridge = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.bridge:
            self.bridge.start(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self.bridge:
            self.bridge.result(trial, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.bridge:
            self.bridge.complete(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.bridge:
            self.bridge.error(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.bridge:
            self.bridge.recover(trial)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.bridge:
            self.bridge.trials = list(trials)


class SweepProgress(ProgressReporter):
    """Ray Tune reporter drawing v1sweep's compact progress (see `v1sweep.sweep.progress`)."""

    def __init__(self, metric: str = "corruption_acc", mode: str = "max", interval_s: float = 1.0) -> None:
        self.view = ProgressView(metric, mode)
        self.interval_s = interval_s
        self.start = time.time()
        self.total: int | None = None
        self._last = 0.0

    def setup(self, start_time: float | None = None, total_samples: int | None = None, metric: str | None = None,
              mode: str | None = None, **kwargs: Any) -> None:
        self.start = start_time or time.time()
        self.total = total_samples if total_samples and total_samples > 0 else None

    def should_report(self, trials: list, done: bool = False) -> bool:
        now = time.monotonic()
        if done or now - self._last >= self.interval_s:
            self._last = now
            return True
        return False

    def report(self, trials: list, done: bool, *sys_info: str) -> None:
        snap = snapshot(trials, total=self.total, metric=self.view.metric, mode=self.view.mode,
                        elapsed_s=time.time() - self.start)
        self.view.show(snap, done)
