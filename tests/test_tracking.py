"""The MLflow layer of sweeps, against real stores: a sqlite file and a real `mlflow server`.

Checks the layout of docs/architecture.md (parent + child runs, tags, params, per-epoch and final
metrics, statuses), re-attaching on resume without duplicates, batching, and retries while the
tracking server is down. No Ray here (tests/test_sweep.py runs the whole engine)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from v1sweep.results.tracking import (STATUS, TRIAL_ID, RunWriter, SweepTracker, TrackingError, _Op, check_store,
                              metric_items, param_value)


def sqlite_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def new_tracker(uri: str, tmp_path: Path, name: str = "tsweep") -> SweepTracker:
    tracker = SweepTracker(uri, experiment=name, sweep_name=name, retry_s=300, log=lambda _m: None)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("name: tsweep\n")
    tracker.start_sweep(spec_hash="abc123", sweep_dir=str(tmp_path / "sweepdir"), command="v1sweep run x.yaml",
                        files={"": spec_file})
    return tracker


def children(client: MlflowClient, tracker: SweepTracker, view: str = "ACTIVE_ONLY") -> list:
    from mlflow.entities import ViewType

    return client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{tracker.parent_run_id}'",
                              run_view_type=getattr(ViewType, view))


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_layout_of_parent_and_child_runs(tmp_path):
    uri = sqlite_uri(tmp_path)
    tracker = new_tracker(uri, tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "config.yaml").write_text("name: a\n")
    (folder / "rf_params.csv").write_text("sf\n1\n")
    (folder / "checkpoint.pt").write_bytes(b"x" * 100)  # never an artifact
    params = {"rf.strategy": "biological", "train.seed": 0, "eval.corruptions": ["fog", "snow"]}
    outcomes = {"t1": ("finished", None), "t2": ("failed", "RuntimeError: boom"), "t3": ("stopped", None)}
    for tid, (state, err) in outcomes.items():
        tracker.trial_started(tid, params=params, run_name=f"{tid} run")
        for epoch in (1, 2):
            tracker.log_metrics(tid, {"val_acc": 0.1 * epoch, "epoch": epoch}, epoch)
        if state == "finished":
            tracker.log_final(tid, {"clean_acc": 0.5, "corruption_acc/fog": 0.25}, 2)
            tracker.log_artifacts(tid, folder=folder)
        tracker.trial_ended(tid, state, error=err)
    tracker.end_sweep("FINISHED")
    tracker.close(timeout=60)
    assert tracker.writer.lost == []

    client = MlflowClient(uri)
    parent = client.get_run(tracker.parent_run_id)
    tags = parent.data.tags
    assert tags["v1sweep.role"] == "sweep" and tags["v1sweep.sweep"] == "tsweep"
    assert tags["v1sweep.spec_hash"] == "abc123" and tags["v1sweep.command"] == "v1sweep run x.yaml"
    assert tags["v1sweep.sweep_dir"] == str(tmp_path / "sweepdir")
    assert parent.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["spec.yaml"]

    runs = {r.data.tags[TRIAL_ID]: r for r in children(client, tracker)}
    assert set(runs) == set(outcomes)
    expected_status = {"finished": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}
    for tid, (state, err) in outcomes.items():
        run = runs[tid]
        assert run.info.status == expected_status[state]
        assert run.data.tags[STATUS] == state
        assert run.data.tags["v1sweep.role"] == "trial" and run.data.tags["v1sweep.sweep"] == "tsweep"
        assert run.data.tags.get("v1sweep.error") == err
        assert run.data.params == {k: str(v) for k, v in params.items()}
        assert history(client, run.info.run_id, "val_acc") == [(1, 0.1), (2, 0.2)]
        assert ("clean_acc" in run.data.metrics) == (state == "finished")
    arts = sorted(a.path for a in client.list_artifacts(runs["t1"].info.run_id))
    assert arts == ["config.yaml", "rf_params.csv"]


def test_reattach_continues_the_same_run(tmp_path):
    uri = sqlite_uri(tmp_path)
    first = new_tracker(uri, tmp_path)
    first.trial_started("a", params={"x": 1}, run_name="a")
    first.trial_started("b", params={"x": 2}, run_name="b")
    for epoch in (1, 2):
        first.log_metrics("a", {"val_acc": epoch / 10, "epoch": epoch}, epoch)
    first.log_final("b", {"clean_acc": 0.9}, 1)
    first.trial_ended("b", "finished")
    first.flush(60)  # the driver dies here: run "a" stays RUNNING, the parent too

    second = SweepTracker(uri, experiment="tsweep", sweep_name="tsweep", log=lambda _m: None)
    found = second.attach_sweep(first.parent_run_id, command="v1sweep resume d")
    assert set(found) == {"a", "b"}
    assert found["a"].steps == {1, 2} and not found["a"].final
    assert found["b"].final and found["b"].status == "FINISHED"
    second.trial_started("a", params={"x": 1}, run_name="a")
    assert second.epoch_logged("a", 2) and not second.epoch_logged("a", 3)
    second.log_metrics("a", {"val_acc": 0.3, "epoch": 3}, 3)
    second.log_final("a", {"clean_acc": 0.7}, 3)
    second.log_final("b", {"clean_acc": 0.1}, 1)  # already final: not logged again
    second.trial_ended("a", "finished")
    second.end_sweep()
    second.close(60)

    client = MlflowClient(uri)
    runs = children(client, second)
    assert sorted(r.data.tags[TRIAL_ID] for r in runs) == ["a", "b"]
    by_id = {r.data.tags[TRIAL_ID]: r for r in runs}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert history(client, by_id["a"].info.run_id, "val_acc") == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert history(client, by_id["b"].info.run_id, "clean_acc") == [(1, 0.9)]
    assert client.get_run(first.parent_run_id).data.tags["v1sweep.resume_command"] == "v1sweep resume d"


def test_superseded_and_orphaned_runs_are_removed(tmp_path):
    uri = sqlite_uri(tmp_path)
    first = new_tracker(uri, tmp_path)
    for tid in ("keep", "resampled", "orphan"):
        first.trial_started(tid, params={"x": 1}, run_name=tid)
    first.flush(60)
    second = SweepTracker(uri, experiment="tsweep", sweep_name="tsweep", log=lambda _m: None)
    second.attach_sweep(first.parent_run_id)
    second.trial_started("keep", params={"x": 1}, run_name="keep")
    second.trial_started("resampled", params={"x": 5}, run_name="resampled")  # another config, same id
    assert second.remove_orphans({"keep", "resampled"}) == ["orphan"]
    for tid in ("keep", "resampled"):
        second.trial_ended(tid, "finished")
    second.close(60)
    client = MlflowClient(uri)
    active = children(client, second)
    assert sorted((r.data.tags[TRIAL_ID], r.data.params["x"]) for r in active) == [("keep", "1"), ("resampled", "5")]
    deleted = [r for r in children(client, second, "DELETED_ONLY")]
    assert sorted(r.data.tags[TRIAL_ID] for r in deleted) == ["orphan", "resampled"]
    assert all(r.data.tags[STATUS] == "superseded" and r.info.status == "KILLED" for r in deleted)


def test_writer_merges_waiting_batches_in_order(tmp_path):
    uri = sqlite_uri(tmp_path)
    tracker = new_tracker(uri, tmp_path)
    for tid in ("a", "b"):
        tracker.trial_started(tid, params={"p": tid}, run_name=tid)
    tracker.flush(60)
    gate = threading.Event()
    tracker.writer.submit(_Op("hold", lambda _c: gate.wait(30)))
    calls_before = tracker.writer.calls
    for step in range(1, 51):
        for tid in ("a", "b"):
            tracker.log_metrics(tid, {"m": step * (1 if tid == "a" else -1), "epoch": step}, step)
    tracker.trial_ended("a", "finished")
    gate.set()
    tracker.flush(60)
    # 100 metric writes + tags + end: merged into a handful of calls
    assert tracker.writer.calls - calls_before <= 6
    client = MlflowClient(uri)
    runs = {r.data.tags[TRIAL_ID]: r for r in children(client, tracker)}
    assert history(client, runs["a"].info.run_id, "m") == [(s, float(s)) for s in range(1, 51)]
    assert history(client, runs["b"].info.run_id, "m") == [(s, float(-s)) for s in range(1, 51)]
    assert runs["a"].info.status == "FINISHED" and runs["b"].info.status == "RUNNING"
    tracker.close(10)


def test_permanent_errors_are_reported_not_retried(tmp_path):
    client = MlflowClient(sqlite_uri(tmp_path))
    writer = RunWriter(client, retry_s=300, log=lambda _m: None)
    writer.submit(_Op("bad run id", lambda c: c.set_tag("0" * 32, "k", "v")))
    assert writer.flush(60)
    assert len(writer.lost) == 1 and "bad run id" in writer.lost[0]
    writer.close(1)


def test_check_store_fails_fast_and_hides_credentials(tmp_path):
    from services import free_port

    port = free_port()
    with pytest.raises(TrackingError) as err:
        check_store(f"http://alice:s3cret@127.0.0.1:{port}", timeout=3)
    msg = str(err.value)
    assert f"127.0.0.1:{port}" in msg and "not reachable" in msg and "s3cret" not in msg
    with pytest.raises(TrackingError, match="does not exist"):
        check_store(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")


def test_metric_items_drop_ray_bookkeeping():
    result = {"val_acc": 0.5, "epoch": 3, "training_iteration": 3, "time_this_iter_s": 0.1, "timestamp": 1,
              "trial_id": "x", "done": False, "config": {"a": 1}, "_v1sweep_kind": "epoch", "node_ip": "1.2.3.4",
              "corruption_acc/fog": 0.25, "name": "str"}
    assert metric_items(result) == {"val_acc": 0.5, "epoch": 3.0, "corruption_acc/fog": 0.25}


def test_long_params_are_truncated_to_mlflow_limit(tmp_path):
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    uri = sqlite_uri(tmp_path)
    tracker = new_tracker(uri, tmp_path)
    long = ["x" * 100] * 100
    tracker.trial_started("t", params={"eval.corruptions": long}, run_name="t")
    tracker.close(60)
    assert tracker.writer.lost == []
    run = children(MlflowClient(uri), tracker)[0]
    value = run.data.params["eval.corruptions"]
    assert len(value) == MAX_PARAM_VAL_LENGTH and value == param_value(long)
    assert value.startswith(str(long)[:100]) and value.endswith("...")


def test_server_down_mid_sweep_loses_nothing(mlflow_server, tmp_path, monkeypatch):
    """The tracking server stops for a while: writes fail, wait and retry, then everything arrives.
    MLflow's own HTTP retries (minutes of back-off) are turned off so the writer's retries are tested."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = mlflow_server.uri
    check_store(uri)
    tracker = new_tracker(uri, tmp_path, name=f"outage-{time.time_ns()}")
    tracker.trial_started("t", params={"x": 1}, run_name="t")
    for epoch in (1, 2):
        tracker.log_metrics("t", {"val_acc": epoch / 10, "epoch": epoch}, epoch)
    assert tracker.flush(120)
    mlflow_server.stop()
    try:
        for epoch in (3, 4, 5):
            tracker.log_metrics("t", {"val_acc": epoch / 10, "epoch": epoch}, epoch)
        tracker.log_final("t", {"clean_acc": 0.8}, 5)
        tracker.trial_ended("t", "finished")
        tracker.end_sweep("FINISHED", timeout=0)
        deadline = time.monotonic() + 60
        while tracker.writer.retried == 0 and time.monotonic() < deadline:
            time.sleep(0.2)  # wait until a write has failed against the stopped server
    finally:
        mlflow_server.start()
    assert tracker.flush(300)
    tracker.close(10)
    assert tracker.writer.lost == [] and tracker.writer.retried > 0
    client = MlflowClient(uri)
    run = children(client, tracker)[0]
    assert run.info.status == "FINISHED" and run.data.tags[STATUS] == "finished"
    assert history(client, run.info.run_id, "val_acc") == [(e, e / 10) for e in range(1, 6)]
    assert run.data.metrics["clean_acc"] == 0.8
    assert client.get_run(tracker.parent_run_id).info.status == "FINISHED"


def test_locked_sqlite_store_is_retried(tmp_path):
    """Another process holds the sqlite database (`database is locked`): writes wait and retry."""
    import sqlite3

    uri = sqlite_uri(tmp_path)
    tracker = new_tracker(uri, tmp_path)
    tracker.trial_started("t", params={"x": 1}, run_name="t")
    assert tracker.flush(60)
    holder = sqlite3.connect(str(tmp_path / "store.db"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for epoch in (1, 2, 3):
            tracker.log_metrics("t", {"val_acc": epoch / 10, "epoch": epoch}, epoch)
        tracker.trial_ended("t", "finished")
        deadline = time.monotonic() + 120
        while tracker.writer.retried == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert tracker.flush(300)
    tracker.close(10)
    assert tracker.writer.retried > 0 and tracker.writer.lost == []
    run = children(MlflowClient(uri), tracker)[0]
    assert history(MlflowClient(uri), run.info.run_id, "val_acc") == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert run.info.status == "FINISHED"
