"""The end of a sweep: every trial's MLflow run settled, the parent run ended, the summary printed.

`_fit` runs the Tuner and then, whatever happened (finished, Ctrl-C, Tune failing on a full disk),
makes MLflow, ``sweep.json`` and the returned `SweepOutcome` agree on each trial's state, and prints
the counts and where to browse the results (`_browse_hint`). Separate from `v1sweep.sweep.engine`,
which only builds the Tuner: run and resume (saved or rebuilt) all end here. Ray is imported inside
functions only.
"""
from __future__ import annotations

import errno
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from v1sweep import contracts as C
from v1sweep.config.sweep_file import SweepSpec
from v1sweep.results.store import mask_uri, resolve_tracking_uri
from v1sweep.sweep.callback import TrackingBridge
from v1sweep.sweep.folder import SWEEP_JSON, _read_sweep_json, _write_json
from v1sweep.sweep.tuning import search_failure


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


def _stored_trials(sweep_dir: Path) -> list:
    from ray.tune import ExperimentAnalysis

    try:
        return list(ExperimentAnalysis(str(sweep_dir)).trials)
    except Exception:  # noqa: BLE001 - unreadable state: Tune's restore reports it
        return []


def _fit(tuner: Any, bridge: TrackingBridge, tracker: Any, sweep_dir: Path, uri: str, started: float,
         out: Callable[[str], Any], kept: Mapping[str, str] | None = None) -> SweepOutcome:
    """Run the tuner (None: nothing left to run) and settle every trial's run; `kept`: trials a
    rebuilt sweep keeps without running them (trial id -> state)."""
    from v1sweep.sweep.trainable import trial_key

    kept = dict(kept or {})
    try:
        if tuner is not None:
            tuner.fit()
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001
        failed = search_failure(exc)
        if failed is not None:
            raise failed from None  # `_failing_parent` marks the parent run FAILED with its message
        # Tune ran, then failed reading its own files back (a full disk leaves Ray's error/state
        # files empty); the trials' runs are settled below.
        out(f"warning: Ray Tune ended with {_no_space_text(exc, sweep_dir)}; the trials' MLflow runs are "
            f"settled from what the driver saw")
    # Ray Tune's saved state is what a resume continues from: after an interrupt it still lists the
    # stopped-by-Ctrl-C trials as running (the in-memory trials are already cleaned up).
    trials = (_stored_trials(sweep_dir) or bridge.trials) if tuner is not None else []
    for trial in trials:
        tid = trial_key(trial)
        if bridge.states.get(tid) in ("finished", "failed", "interrupted") or (
                tid in bridge.states and trial.status in ("TERMINATED", "ERROR")):
            continue
        if trial.status in ("TERMINATED", "ERROR"):
            bridge.reconcile(trial)
        elif tracker.has_trial(tid):
            bridge._end(tid, "interrupted")
    interrupted = any(state == "interrupted" for state in bridge.states.values()) or \
        any(t.status not in ("TERMINATED", "ERROR") for t in trials)
    ids = [trial_key(t) for t in trials] + [t for t in kept if t not in {trial_key(x) for x in trials}]
    if not interrupted:
        gone = tracker.remove_orphans(set(ids))
        if gone:
            out(f"removed {len(gone)} unfinished MLflow run(s) of trials Ray had not saved before the driver died")
    counts = {"finished": 0, "failed": 0, "stopped": 0, "interrupted": 0}
    tracker.flush(timeout=tracker.writer.retry_s + 60)  # artifacts a full disk refused fail their trial
    for tid in ids:
        child = tracker.children.get(tid)
        tags = child.tags if child else {}
        state = bridge.states.get(tid) or tags.get(C.STATUS) or kept.get(tid) or "interrupted"
        state = "failed" if state == "finished" and tid in tracker.no_space else state
        counts[state] = counts.get(state, 0) + 1
    tracker.end_sweep("KILLED" if interrupted else "FINISHED",
                      tags={C.trials_count(k): v for k, v in counts.items()} | {
                          C.SWEEP_WALL_TIME: f"{time.monotonic() - started:.1f}"})
    tracker.close(timeout=tracker.writer.retry_s + 60)
    info_path = sweep_dir / SWEEP_JSON
    info = _read_sweep_json(info_path)
    info["status"] = "interrupted" if interrupted else "finished"
    info["counts"] = counts
    try:  # the record's status is informational (MLflow has it); a full disk must not lose the rest
        _write_json(info_path, info)
    except OSError as exc:
        out(f"warning: cannot update {info_path}: "
            + (f"No space left on device: {info_path}" if exc.errno == errno.ENOSPC else str(exc)))
    outcome = SweepOutcome(sweep_dir=sweep_dir, parent_run_id=tracker.parent_run_id, tracking_uri=uri,
                           experiment_id=tracker.experiment_id, counts=counts,
                           trial_ids=ids, lost_writes=list(tracker.writer.lost),
                           seconds=time.monotonic() - started, interrupted=interrupted)
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    out(f"sweep {'interrupted' if interrupted else 'done'} in {outcome.seconds:.1f} s: {summary or 'no trials'}; "
        f"MLflow parent run {outcome.parent_run_id} in {mask_uri(uri)}")
    out(f"results: {_browse_hint(uri, outcome.experiment_id, tracker.sweep_name)}")
    if interrupted:
        out(f"continue with: v1sweep resume {sweep_dir}")
    if outcome.lost_writes:
        out(f"warning: {len(outcome.lost_writes)} MLflow write(s) could not be made; first: {outcome.lost_writes[0]}")
    return outcome


def _publish_view(tracker: Any, spec: SweepSpec) -> None:
    """Save the sweep's runs-table view (trials flat, best first, headline metrics and the swept
    params as columns) in its MLflow experiment, for the URL `_browse_hint` prints."""
    metric, mode = (spec.search.objectives or [("corruption_acc", "max")])[0]
    params = [p for key in spec.space for p in key.split(",")]
    tracker.publish_view(metric=metric, mode=mode, params=params)


def _browse_hint(uri: str, experiment_id: str, sweep_name: str) -> str:
    """Where to see the sweep: its runs-table URL on a tracking server, else the `v1sweep ui` command
    and the URL it will serve."""
    from v1sweep.results.tracking import experiment_url, view_key

    view = view_key(sweep_name)
    if uri.startswith(("http://", "https://")):
        return experiment_url(mask_uri(uri), experiment_id, view)
    ui = "v1sweep ui" + ("" if _is_default_store(uri) else f" --tracking-uri {mask_uri(uri)}")
    return f"`{ui}`, then {experiment_url('http://127.0.0.1:5000', experiment_id, view)}"


def _is_default_store(uri: str) -> bool:
    try:
        return resolve_tracking_uri(None) == uri
    except Exception:  # noqa: BLE001
        return False


def _no_space_text(exc: BaseException, where: Path) -> str:
    text = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    try:
        if shutil.disk_usage(where).free < 1024 * 1024:
            return f"{text} (No space left on device: {where})"
    except OSError:
        pass
    return text
