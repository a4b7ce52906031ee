"""What `v1sweep run` shows while Ray Tune works: one compact progress view instead of Ray's table.

On a terminal a tqdm bar over the sweep's trials (done / total, elapsed, ETA) with the counts of
running and failed trials and the best value so far; elsewhere (CI logs, `| tee`, nohup) one plain
line whenever a trial starts, ends or fails, and at least every `heartbeat_s` seconds. Ray's own
status table (`CLIReporter`) is used instead only with ``--verbose``.

`SweepProgress` derives from Ray Tune's `ProgressReporter`, so it lives in
`v1sweep.sweep.tune_classes` (imported when a sweep runs); it is pickled with the Tuner's state:
the bar is not, it is recreated on the next report.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterable, TextIO

from v1sweep.sweep.trainable import KIND


@dataclass
class Snapshot:
    """The sweep's state in one report."""
    total: int
    finished: int
    stopped: int
    failed: int
    running: int
    pending: int
    best: float | None
    best_trial: str | None
    elapsed_s: float

    @property
    def done(self) -> int:
        return self.finished + self.stopped + self.failed

    def eta_s(self) -> float | None:
        """Remaining time at the rate trials have ended so far (None before the first ends)."""
        if self.done == 0 or self.total <= self.done:
            return None if self.done == 0 else 0.0
        return self.elapsed_s / self.done * (self.total - self.done)


def snapshot(trials: Iterable[Any], *, total: int | None, metric: str, mode: str, elapsed_s: float) -> Snapshot:
    """Count Tune trials by state; the best `metric` among trials that reported it (final result)."""
    counts = {"finished": 0, "stopped": 0, "failed": 0, "running": 0, "pending": 0}
    best, best_trial = None, None
    n = 0
    for trial in trials:
        n += 1
        last = trial.last_result or {}
        if trial.status == "TERMINATED":
            counts["finished" if last.get(KIND) == "final" else "stopped"] += 1
        elif trial.status == "ERROR":
            counts["failed"] += 1
        elif trial.status == "RUNNING":
            counts["running"] += 1
        else:
            counts["pending"] += 1
        value = last.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and last.get(KIND) == "final":
            if best is None or (value > best if mode == "max" else value < best):
                best, best_trial = float(value), trial.trial_id
    total = max(total or 0, n)
    counts["pending"] += max(0, total - n)  # not yet created by the searcher
    return Snapshot(total=total, best=best, best_trial=best_trial, elapsed_s=elapsed_s, **counts)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def plain_line(snap: Snapshot, metric: str) -> str:
    """One line for logs: ``trials 2/4 done (2 finished, 0 failed), 2 running | best ... | ETA``."""
    parts = [f"trials {snap.done}/{snap.total} done ({snap.finished} finished"
             + (f", {snap.stopped} stopped" if snap.stopped else "") + f", {snap.failed} failed), "
             f"{snap.running} running"]
    if snap.best is not None:
        parts.append(f"best {metric} {snap.best:.4f} (trial {snap.best_trial})")
    parts.append(f"elapsed {format_duration(snap.elapsed_s)}")
    eta = snap.eta_s()
    if eta is not None and snap.done < snap.total:
        parts.append(f"ETA ~{format_duration(eta)}")
    return " | ".join(parts)


class ProgressView:
    """The rendering, free of Ray: a tqdm bar on a terminal, plain lines otherwise."""

    def __init__(self, metric: str, mode: str, *, stream: TextIO | None = None, heartbeat_s: float = 60.0,
                 tty: bool | None = None) -> None:
        self.metric, self.mode = metric, mode
        self.stream = stream
        self.heartbeat_s = heartbeat_s
        self.tty = tty
        self._bar: Any = None
        self._last_key: tuple | None = None
        self._last_line = 0.0

    def __getstate__(self) -> dict:  # pickled with Tune's state: leave the bar and the stream behind
        return {"metric": self.metric, "mode": self.mode, "heartbeat_s": self.heartbeat_s}

    def __setstate__(self, state: dict) -> None:
        self.metric, self.mode, self.heartbeat_s = state["metric"], state["mode"], state["heartbeat_s"]
        self.stream, self.tty, self._bar, self._last_key, self._last_line = None, None, None, None, 0.0

    def _out(self) -> TextIO:
        return self.stream or sys.stdout

    def _is_tty(self) -> bool:
        if self.tty is None:
            self.tty = bool(getattr(self._out(), "isatty", lambda: False)())
        return self.tty

    def show(self, snap: Snapshot, done: bool = False) -> None:
        if self._is_tty():
            self._show_bar(snap, done)
            return
        key = (snap.finished, snap.stopped, snap.failed, snap.running)
        now = time.monotonic()
        if key != self._last_key or now - self._last_line >= self.heartbeat_s or done:
            if key != self._last_key or not done:
                print(plain_line(snap, self.metric), file=self._out(), flush=True)
            self._last_key, self._last_line = key, now

    def _show_bar(self, snap: Snapshot, done: bool) -> None:
        from tqdm.auto import tqdm

        if self._bar is None:
            self._bar = tqdm(total=snap.total, desc="trials", unit="trial", file=self._out(), dynamic_ncols=True,
                             bar_format="{desc} |{bar}| {n_fmt}/{total_fmt}{postfix}")
        bar = self._bar
        bar.total = snap.total
        eta = snap.eta_s()
        post = f"elapsed {format_duration(snap.elapsed_s)}" + (f" ETA ~{format_duration(eta)}" if eta else "")
        post += f" | {snap.running} running, {snap.failed} failed"
        if snap.stopped:
            post += f", {snap.stopped} stopped"
        if snap.best is not None:
            post += f" | best {self.metric} {snap.best:.4f}"
        bar.set_postfix_str(post, refresh=False)
        bar.update(snap.done - bar.n)
        bar.refresh()
        if done:
            bar.close()
            self._bar = None


def make_reporter(metric: str, mode: str) -> Any:
    """The `SweepProgress` reporter (`v1sweep.sweep.tune_classes`, imported here: it imports Ray)."""
    from v1sweep.sweep.tune_classes import SweepProgress

    return SweepProgress(metric, mode)
