"""`v1sweep run`'s progress view: counts, best so far and ETA from trial states, plain lines off a
terminal and a tqdm bar on one. Trials are plain objects with the three attributes Ray Tune's
`Trial` exposes to reporters (trial_id, status, last_result)."""
from __future__ import annotations

import io
from types import SimpleNamespace

from v1sweep.sweep.progress import ProgressView, Snapshot, format_duration, plain_line, snapshot
from v1sweep.sweep.trainable import KIND


def trial(tid: str, status: str, **last) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, status=status, last_result=last)


TRIALS = [trial("a", "TERMINATED", **{KIND: "final", "corruption_acc": 0.4}),
          trial("b", "TERMINATED", **{KIND: "final", "corruption_acc": 0.6}),
          trial("c", "TERMINATED", **{KIND: "epoch", "corruption_acc": 0.9}),  # stopped by the scheduler
          trial("d", "ERROR"), trial("e", "RUNNING", **{KIND: "epoch", "val_acc": 0.5}), trial("f", "PENDING")]


def test_snapshot_counts_states_and_best_of_final_results_only():
    snap = snapshot(TRIALS, total=8, metric="corruption_acc", mode="max", elapsed_s=40.0)
    assert (snap.finished, snap.stopped, snap.failed, snap.running) == (2, 1, 1, 1)
    assert snap.pending == 1 + 2  # one created, two not yet sampled
    assert snap.best == 0.6 and snap.best_trial == "b"
    assert snapshot(TRIALS, total=8, metric="corruption_acc", mode="min", elapsed_s=1).best == 0.4


def test_eta_extrapolates_the_rate_trials_end_at():
    snap = snapshot(TRIALS, total=8, metric="corruption_acc", mode="max", elapsed_s=40.0)
    assert snap.done == 4 and snap.eta_s() == 40.0  # 4 done in 40 s, 4 to go
    assert snapshot([], total=4, metric="m", mode="max", elapsed_s=5).eta_s() is None


def test_plain_line_and_durations():
    snap = snapshot(TRIALS, total=8, metric="corruption_acc", mode="max", elapsed_s=40.0)
    line = plain_line(snap, "corruption_acc")
    assert line.startswith("trials 4/8 done (2 finished, 1 stopped, 1 failed), 1 running")
    assert "best corruption_acc 0.6000 (trial b)" in line and "ETA ~0:40" in line
    assert format_duration(3725) == "1:02:05" and format_duration(61) == "1:01"


def test_plain_mode_prints_a_line_only_when_something_changes():
    out = io.StringIO()
    view = ProgressView("corruption_acc", "max", stream=out, tty=False, heartbeat_s=3600)
    first = Snapshot(4, 0, 0, 0, 2, 2, None, None, 1.0)
    for _ in range(5):
        view.show(first)
    view.show(Snapshot(4, 1, 0, 0, 2, 1, 0.5, "a", 9.0))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("trials 1/4 done")


def test_terminal_mode_draws_one_tqdm_bar():
    out = io.StringIO()
    view = ProgressView("corruption_acc", "max", stream=out, tty=True)
    view.show(Snapshot(4, 1, 0, 0, 2, 1, 0.5, "a", 9.0))
    view.show(Snapshot(4, 4, 0, 0, 0, 0, 0.5, "a", 20.0), done=True)
    text = out.getvalue()
    assert "\r" in text and "4/4" in text and "best corruption_acc 0.5000" in text
    assert text.endswith("\n")  # closed, the summary starts on its own line
