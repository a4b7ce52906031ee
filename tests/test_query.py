"""v1sweep.results.query, v1sweep.results.store and the `best` / `status` / `ui` commands against a real MLflow store.

The store is a sqlite file written with MLflow's own client in the documented layout
(docs/architecture.md, "MLflow layout"): parent run per sweep, child run per trial.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from v1sweep.config import trial as cfg
from v1sweep.results import query as query
from v1sweep.cli import main as cli_main
from v1sweep.corruptions.catalog import BENCHMARK_CORRUPTIONS
from v1sweep.results.store import default_uri, mask_uri, resolve_tracking_uri

REPO = Path(__file__).resolve().parents[1]

# trial_id -> (overrides, status, final metrics, write config.yaml artifact)
TRIALS = {
    "t0": ({"rf.strategy": "biological", "train.seed": 0}, "finished",
           {"corruption_acc": 0.40, "clean_acc": 0.60, "rf_similarity": 0.90, "corruption_acc/noise": 0.30}, True),
    "t1": ({"rf.strategy": "biological", "train.seed": 1, "name": "007"}, "finished",
           {"corruption_acc": 0.42, "clean_acc": 0.58, "rf_similarity": 0.85, "corruption_acc/noise": 0.36}, False),
    "t2": ({"rf.strategy": "unif1", "train.seed": 0, "rf.alpha": None}, "finished",
           {"corruption_acc": 0.35, "clean_acc": 0.65, "rf_similarity": 0.50, "corruption_acc/noise": 0.25}, True),
    "t3": ({"rf.strategy": "interpolated", "rf.alpha": 0.5, "train.seed": 1}, "finished",
           {"corruption_acc": 0.37, "clean_acc": 0.55, "rf_similarity": 0.60, "corruption_acc/noise": 0.33}, False),
    "t4": ({"rf.strategy": "unif2", "train.seed": 0}, "failed", {"clean_acc": 0.10}, False),
    "t5": ({"rf.strategy": "unif2", "train.seed": 1}, "stopped",
           {"corruption_acc": 0.99, "clean_acc": 0.99, "rf_similarity": 0.1}, False),
    "t6": ({"rf.strategy": "unif3", "train.seed": 0}, "running", {"corruption_acc": 0.98}, False),
    # Ctrl-C'd, waiting for `v1sweep resume`: KILLED with tag v1sweep.interrupted, no status tag.
    "t7": ({"rf.strategy": "unif3", "train.seed": 1}, "interrupted", {"clean_acc": 0.2}, False),
    # A duplicate the tracker retired; never reported.
    "t8": ({"rf.strategy": "unif3", "train.seed": 2}, "superseded", {"corruption_acc": 0.97}, False),
}
FINISHED = ["t0", "t1", "t2", "t3"]


def _config(overrides: dict) -> cfg.TrialConfig:
    return cfg.replace(cfg.TrialConfig(), **overrides)


def write_trial(client, exp_id: str, parent_id: str, sweep: str, trial_id: str, config: cfg.TrialConfig,
                status: str, metrics: dict, artifact_dir: Path | None, start: int) -> str:
    """One trial child run as v1sweep.results.tracking writes it (params logged as MLflow does: str(value))."""
    from mlflow.entities import Metric, Param

    tags = {"mlflow.parentRunId": parent_id, "v1sweep.role": "trial", "v1sweep.sweep": sweep, "trial_id": trial_id}
    if status in ("finished", "failed", "stopped", "superseded"):
        tags["v1sweep.status"] = status
    if status == "interrupted":
        tags["v1sweep.interrupted"] = "true"
    if status == "failed":
        tags["v1sweep.error"] = "Traceback (most recent call last):\n  ...\nRuntimeError: diverged: loss is NaN"
    run_id = client.create_run(exp_id, run_name=trial_id, tags=tags, start_time=start).info.run_id
    params = [Param(k, str(v)) for k, v in cfg.to_flat(config).items()]
    client.log_batch(run_id, params=params, metrics=[Metric(k, float(v), start, 0) for k, v in metrics.items()])
    if artifact_dir is not None:
        path = artifact_dir / trial_id / "config.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(cfg.to_yaml(config))
        client.log_artifact(run_id, str(path))
    if status != "running":
        mlflow_status = {"finished": "FINISHED", "failed": "FAILED"}.get(status, "KILLED")
        client.set_terminated(run_id, mlflow_status, end_time=start + 1000)
    return run_id


def write_parent(client, exp_id: str, sweep: str, start: int, sweep_dir: str = "/nonexistent") -> str:
    return client.create_run(exp_id, run_name=sweep, start_time=start, tags={
        "v1sweep.role": "sweep", "v1sweep.sweep": sweep, "v1sweep.spec_hash": "abc", "v1sweep.git_commit": "none",
        "v1sweep.command": "v1sweep run test", "v1sweep.sweep_dir": sweep_dir}).info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.search_experiments()  # creates the schema; keep a copy of the empty store
    shutil.copy(root / "mlflow.db", root / "empty.db")
    exp = client.create_experiment("qsweep", artifact_location=(root / "artifacts").as_uri())
    sweep_dir = root / "sweep_out"
    sweep_dir.mkdir()
    base = 1_700_000_000_000
    old = write_parent(client, exp, "qsweep", base)
    old_ids = [write_trial(client, exp, old, "qsweep", f"old{i}", _config({"train.seed": i}), "finished",
                           {"corruption_acc": 0.2, "clean_acc": 0.3}, None, base + 10 + i) for i in range(2)]
    client.set_terminated(old, "FINISHED")
    parent = write_parent(client, exp, "qsweep", base + 100_000, sweep_dir=str(sweep_dir))
    ids, configs = {}, {}
    for k, (trial, (over, status, metrics, artifact)) in enumerate(TRIALS.items()):
        configs[trial] = _config(over)
        ids[trial] = write_trial(client, exp, parent, "qsweep", trial, configs[trial], status, metrics,
                                 root / "files" if artifact else None, base + 100_010 + k)
    # An analysis run under the parent must never show up as a trial.
    client.create_run(exp, tags={"mlflow.parentRunId": parent, "v1sweep.role": "analysis",
                                 "v1sweep.sweep": "qsweep"}, start_time=base + 200_000)
    other_exp = client.create_experiment("elsewhere", artifact_location=(root / "a2").as_uri())
    other = write_parent(client, other_exp, "other", base)
    write_trial(client, other_exp, other, "other", "x0", _config({}), "finished", {"corruption_acc": 0.5}, None, base)
    return {"uri": uri, "empty_uri": f"sqlite:///{root / 'empty.db'}", "root": root, "parent": parent,
            "old": old, "old_ids": old_ids, "ids": ids,
            "configs": configs, "sweep_dir": sweep_dir}


# ---------------------------------------------------------------------------------------------
# store.py
# ---------------------------------------------------------------------------------------------
def test_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri("http://explicit:5000", fallback="sqlite:///file.db") == "http://explicit:5000"
    assert resolve_tracking_uri(None, fallback="sqlite:///file.db") == "sqlite:///file.db"
    assert resolve_tracking_uri() == "sqlite:///env.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}" == default_uri()
    assert resolve_tracking_uri(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path.resolve() / 'x.db'}"


@pytest.mark.parametrize("uri, masked", [
    ("http://alice:s3cret@host:5000/mlflow", "http://***@host:5000/mlflow"),
    ("postgresql://me:pw@db.example/mlflow", "postgresql://***@db.example/mlflow"),
    ("https://host/api?token=abc123&x=1", "https://host/api?token=***&x=1"),
    ("https://u@host/?access_token=zz&Api_Key=k#frag", "https://***@host/?access_token=***&Api_Key=***#frag"),
    ("sqlite:////tmp/some/mlflow.db", "sqlite:////tmp/some/mlflow.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_mask_uri(uri, masked):
    assert mask_uri(uri) == masked
    for secret in ("s3cret", "abc123", ":pw@", "zz", "alice"):
        assert secret not in mask_uri(uri)


# ---------------------------------------------------------------------------------------------
# runs / filters
# ---------------------------------------------------------------------------------------------
def test_runs_latest_parent_finished_only(store):
    table = query.runs("qsweep", tracking_uri=store["uri"])
    assert list(table["trial_id"]) == FINISHED  # start-time order, failed/stopped/running/analysis excluded
    assert set(table["status"]) == {"finished"}
    assert set(table["parent_run_id"]) == {store["parent"]}
    assert list(table["run_id"]) == [store["ids"][t] for t in FINISHED]
    by_id = table.set_index("trial_id")
    for trial in FINISHED:
        for name, value in TRIALS[trial][2].items():
            assert by_id.loc[trial, f"metrics.{name}"] == pytest.approx(value)
        flat = cfg.to_flat(store["configs"][trial])
        assert by_id.loc[trial, "params.train.seed"] == flat["train.seed"]
        assert by_id.loc[trial, "params.rf.strategy"] == flat["rf.strategy"]
    # Params come back typed: ints, floats, None, tuples.
    assert by_id.loc["t3", "params.rf.alpha"] == 0.5
    assert pd.isna(by_id.loc["t0", "params.rf.alpha"])  # None -> NaN in a numeric column
    assert by_id.loc["t0", "params.eval.corruptions"] == BENCHMARK_CORRUPTIONS
    assert by_id.loc["t0", "params.train.amp"] == True  # noqa: E712 (a numpy bool)
    assert table["params.train.amp"].dtype == bool
    assert isinstance(by_id.loc["t0", "params.data.image_size"], (int, np.integer))
    assert str(table["start_time"].dt.tz) == "UTC"
    assert (table["end_time"] > table["start_time"]).all()


def test_runs_state_flags_and_all_parents(store):
    uri = store["uri"]
    assert list(query.runs("qsweep", tracking_uri=uri, include_failed=True)["trial_id"]) == FINISHED + ["t4"]
    assert list(query.runs("qsweep", tracking_uri=uri, include_stopped=True)["trial_id"]) == FINISHED + ["t5"]
    everything = query.runs("qsweep", tracking_uri=uri, include_failed=True, include_stopped=True,
                            include_running=True)
    assert dict(zip(everything["trial_id"], everything["status"])) == {
        t: v[1] for t, v in TRIALS.items() if v[1] != "superseded"}
    failed = everything.set_index("trial_id").loc["t4"]
    assert "diverged" in failed["error"]
    assert query.status_counts(everything) == {"finished": 4, "failed": 1, "stopped": 1, "running": 1,
                                               "interrupted": 1, "total": 8}
    both = query.runs("qsweep", tracking_uri=uri, all_parents=True)
    assert list(both["trial_id"]) == ["old0", "old1"] + FINISHED
    assert set(both["parent_run_id"]) == {store["old"], store["parent"]}


@pytest.mark.parametrize("flags", [{}, {"include_failed": True, "include_stopped": True, "include_running": True},
                                   {"all_parents": True}])
def test_direct_sqlite_reader_matches_mlflows_client(store, monkeypatch, flags):
    """`status` / `best` read a local sqlite store without importing MLflow; the tables must be the
    ones MLflow's own client returns (V1SWEEP_MLFLOW_CLIENT_ONLY switches the direct reader off)."""
    from v1sweep.results.local_store import open_store

    assert open_store(store["uri"]) is not None  # the fast path is really taken
    fast = query.runs("qsweep", tracking_uri=store["uri"], **flags)
    fast_parents = [p.info.run_id for p in query.parent_runs("qsweep", tracking_uri=store["uri"])]
    monkeypatch.setenv("V1SWEEP_MLFLOW_CLIENT_ONLY", "1")
    slow = query.runs("qsweep", tracking_uri=store["uri"], **flags)
    slow_parents = [p.info.run_id for p in query.parent_runs("qsweep", tracking_uri=store["uri"])]
    assert fast_parents == slow_parents
    pd.testing.assert_frame_equal(fast, slow)


def test_status_of_a_local_store_imports_no_mlflow(store):
    code = ("import sys; from v1sweep.cli import main; rc = main(['status', 'qsweep', '--tracking-uri', "
            f"{store['uri']!r}]); print('MLFLOW' if 'mlflow' in sys.modules else 'NO-MLFLOW', rc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("NO-MLFLOW 0") and "trials 8" in result.stdout


@pytest.mark.parametrize("filter_string, expected", [
    ("params.rf.strategy = 'biological'", ["t0", "t1"]),
    ("params.`rf.strategy` = 'biological'", ["t0", "t1"]),
    ('params."rf.strategy" = "unif1"', ["t2"]),
    ("params.rf.strategy != 'biological' AND metrics.clean_acc < 0.6", ["t3"]),
    ("metrics.corruption_acc/noise > 0.31", ["t1", "t3"]),
    ("params.train.seed = '1' and params.rf.strategy LIKE 'bio%'", ["t1"]),
    ("params.name = '007'", ["t1"]),
])
def test_runs_filter_dotted_keys(store, filter_string, expected):
    assert list(query.runs("qsweep", filter_string, tracking_uri=store["uri"])["trial_id"]) == expected


def test_normalize_filter():
    n = query.normalize_filter
    assert n("params.rf.strategy = 'a'") == "params.`rf.strategy` = 'a'"
    assert n("metrics.corruption_acc/noise>0.3") == "metrics.`corruption_acc/noise`>0.3"
    assert n("metrics.clean_acc > 0.5") == "metrics.clean_acc > 0.5"  # nothing to quote
    assert n("params.`rf.strategy` = 'params.x.y'") == "params.`rf.strategy` = 'params.x.y'"
    assert n("tags.mlflow.runName = 'it''s'") == "tags.`mlflow.runName` = 'it''s'"
    assert n("  ") == "" and n(None) == ""


def test_bad_filter_names_the_users_filter(store):
    with pytest.raises(query.QueryError, match="params.rf.strategy = biological"):
        query.runs("qsweep", "params.rf.strategy = biological", tracking_uri=store["uri"])


# ---------------------------------------------------------------------------------------------
# best / pareto
# ---------------------------------------------------------------------------------------------
def _reference_best(trials, metric, k, reverse=True):
    vals = [(TRIALS[t][2][metric], t) for t in trials if metric in TRIALS[t][2]]
    return [t for _, t in sorted(vals, reverse=reverse)[:k]]


def test_best_matches_a_plain_sort(store):
    uri = store["uri"]
    for metric in ("corruption_acc", "clean_acc", "corruption_acc/noise"):
        for k in (1, 2, 10):
            got = query.best("qsweep", metric, k=k, tracking_uri=uri)
            assert list(got["trial_id"]) == _reference_best(FINISHED, metric, k)
            got = query.best("qsweep", metric, k=k, mode="min", tracking_uri=uri)
            assert list(got["trial_id"]) == _reference_best(FINISHED, metric, k, reverse=False)
    # The stopped trial has the highest accuracy; it only wins when stopped trials are asked for.
    assert query.best("qsweep", "corruption_acc", k=1, tracking_uri=uri)["trial_id"][0] == "t1"
    assert query.best("qsweep", "corruption_acc", k=1, tracking_uri=uri, include_stopped=True)["trial_id"][0] == "t5"
    got = query.best("qsweep", "corruption_acc", k=5, filter="params.rf.strategy = 'biological'", tracking_uri=uri)
    assert list(got["trial_id"]) == ["t1", "t0"]


def test_best_errors(store):
    with pytest.raises(query.QueryError, match="metric 'nope' not logged.*clean_acc.*corruption_acc"):
        query.best("qsweep", "nope", tracking_uri=store["uri"])
    with pytest.raises(query.QueryError, match="allowed: max, min"):
        query.best("qsweep", "clean_acc", mode="up", tracking_uri=store["uri"])


def _reference_pareto(values: np.ndarray) -> set[int]:
    front = set()
    for i in range(len(values)):
        dominated = False
        for j in range(len(values)):
            if all(values[j] >= values[i]) and any(values[j] > values[i]):
                dominated = True
                break
        if not dominated:
            front.add(i)
    return front


def test_pareto_against_brute_force(store):
    got = query.pareto("qsweep", ["corruption_acc", "clean_acc"], tracking_uri=store["uri"])
    vals = np.array([[TRIALS[t][2]["corruption_acc"], TRIALS[t][2]["clean_acc"]] for t in FINISHED])
    assert set(got["trial_id"]) == {FINISHED[i] for i in _reference_pareto(vals)} == {"t0", "t1", "t2"}
    got = query.pareto("qsweep", ["corruption_acc", "clean_acc"], modes=["max", "min"], tracking_uri=store["uri"])
    vals[:, 1] *= -1
    assert set(got["trial_id"]) == {FINISHED[i] for i in _reference_pareto(vals)}

    rng = np.random.default_rng(0)
    for trial in range(20):  # random tables with ties, 3 objectives, mixed modes
        values = rng.integers(0, 5, size=(30, 3)).astype(float)
        frame = pd.DataFrame({"trial_id": [f"r{i}" for i in range(30)], "metrics.a": values[:, 0],
                              "metrics.b": values[:, 1], "metrics.c": values[:, 2]})
        got = query.pareto(frame, ["a", "b", "c"], modes=["max", "min", "max"])
        ref = _reference_pareto(values * np.array([1, -1, 1]))
        assert set(got["trial_id"]) == {f"r{i}" for i in ref}


# ---------------------------------------------------------------------------------------------
# config_of
# ---------------------------------------------------------------------------------------------
def test_config_of_from_artifact_and_from_params(store):
    for trial in ("t0", "t2"):  # config.yaml artifact
        assert query.config_of(store["ids"][trial], tracking_uri=store["uri"]) == store["configs"][trial]
    for trial in ("t1", "t3", "t4"):  # params only; t1's name '007' must stay a string
        got = query.config_of(store["ids"][trial], tracking_uri=store["uri"])
        assert got == store["configs"][trial]
    assert query.config_of(store["ids"]["t1"], tracking_uri=store["uri"]).name == "007"


def test_config_of_errors(store):
    with pytest.raises(query.QueryError, match="not a trial"):
        query.config_of(store["parent"], tracking_uri=store["uri"])
    with pytest.raises(query.QueryError, match="no run 'deadbeef'"):
        query.config_of("deadbeef", tracking_uri=store["uri"])


# ---------------------------------------------------------------------------------------------
# naming a sweep: YAML file, output directory, unknown names, empty stores
# ---------------------------------------------------------------------------------------------
def test_sweep_named_by_yaml_and_by_directory(store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    sweep_file = tmp_path / "qsweep.yaml"
    sweep_file.write_text(yaml.safe_dump({"name": "qsweep", "tracking": {"uri": store["uri"]},
                                          "search": {"metric": "clean_acc", "mode": "max"}}))
    assert list(query.runs(str(sweep_file))["trial_id"]) == FINISHED
    ref = query.resolve_sweep(sweep_file)
    assert (ref.name, ref.metric, ref.tracking_uri) == ("qsweep", "clean_acc", store["uri"])
    # A sweep output directory is found by its parent run's v1sweep.sweep_dir tag.
    table = query.runs(store["sweep_dir"], tracking_uri=store["uri"])
    assert list(table["trial_id"]) == FINISHED
    # A folder that happens to carry the sweep's name (conftest chdirs to tmp_path) does not hide it.
    (tmp_path / "qsweep").mkdir()
    assert list(query.runs("qsweep", tracking_uri=store["uri"])["trial_id"]) == FINISHED


def test_sweep_folder_with_sweep_json(store, tmp_path, monkeypatch):
    """The folder `v1sweep run` writes: sweep.json names the store and the parent run it used."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    folder = tmp_path / "v1sweep_runs" / "qsweep-20260101-000000"
    folder.mkdir(parents=True)
    info = {"name": "qsweep", "sweep_dir": str(folder), "tracking_uri": store["uri"], "tracking_uri_masked": False,
            "experiment": "qsweep", "parent_run_id": store["old"], "search": {"metric": "clean_acc", "mode": "min"}}
    (folder / "sweep.json").write_text(json.dumps(info))
    table = query.runs(folder)  # the parent run of sweep.json, not the latest one
    assert list(table["trial_id"]) == ["old0", "old1"] and set(table["parent_run_id"]) == {store["old"]}
    ref = query.resolve_sweep(folder)
    assert (ref.metric, ref.mode, ref.tracking_uri) == ("clean_acc", "min", store["uri"])
    info.update(tracking_uri="http://***@host:5000", tracking_uri_masked=True)
    (folder / "sweep.json").write_text(json.dumps(info))
    with pytest.raises(query.QueryError, match="holds credentials.*--tracking-uri"):
        query.runs(folder)
    assert len(query.runs(folder, tracking_uri=store["uri"])) == 2


def test_unknown_sweep_lists_the_sweeps_found(store):
    with pytest.raises(query.QueryError) as err:
        query.runs("nope", tracking_uri=store["uri"])
    assert "no sweep 'nope'" in str(err.value) and "other, qsweep" in str(err.value)
    assert isinstance(err.value, query.V1SweepError)
    names = [s["name"] for s in query.list_sweeps(tracking_uri=store["uri"])]
    assert sorted(names) == ["other", "qsweep", "qsweep"]


def test_missing_and_empty_stores(store, tmp_path):
    with pytest.raises(query.QueryError, match="no MLflow store at"):
        query.runs("smoke", tracking_uri=f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()  # reading must not create a store
    with pytest.raises(query.QueryError, match="holds no sweeps yet"):
        query.best("smoke", "corruption_acc", tracking_uri=store["empty_uri"])


# ---------------------------------------------------------------------------------------------
# CLI: best, status, ui
# ---------------------------------------------------------------------------------------------
def test_cli_best_json_and_export(store, capsys, tmp_path):
    out = tmp_path / "cfg" / "best.yaml"
    rc = cli_main(["best", "qsweep", "--metric", "corruption_acc", "-k", "3", "--json", "--export", str(out),
                   "--tracking-uri", store["uri"]])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    expected = _reference_best(FINISHED, "corruption_acc", 3)
    assert [t["trial_id"] for t in doc["trials"]] == expected
    assert [t["run_id"] for t in doc["trials"]] == [store["ids"][t] for t in expected]
    assert [t["rank"] for t in doc["trials"]] == [1, 2, 3]
    assert doc["trials"][0]["value"] == pytest.approx(TRIALS[expected[0]][2]["corruption_acc"])
    assert doc["trials"][0]["params"]["eval.corruptions"] == list(BENCHMARK_CORRUPTIONS)
    # The exported file is a trial config `v1sweep train` loads, equal to the winner's.
    assert cfg.load(out) == store["configs"][expected[0]]

    rc = cli_main(["best", "qsweep", "-m", "clean_acc", "--mode", "min", "-k", "2", "--filter",
                   "params.rf.strategy = 'biological'", "--tracking-uri", store["uri"]])
    text = capsys.readouterr().out
    assert rc == 0
    rows = [ln.split() for ln in text.splitlines()]
    assert [r[1] for r in rows if r and r[0] in ("1", "2") and r[1].startswith("t")] == ["t1", "t0"]
    assert "2 of 2 finished trials by clean_acc (min)" in text


def test_cli_best_unknown_sweep_exits_2(store, capsys):
    assert cli_main(["best", "nope", "--tracking-uri", store["uri"]]) == 2
    err = capsys.readouterr().err
    assert "no sweep 'nope'" in err and "qsweep" in err and "Traceback" not in err


def test_cli_status_counts(store, capsys):
    assert cli_main(["status", "qsweep", "--tracking-uri", store["uri"]]) == 0
    text = capsys.readouterr().out
    assert "trials 8: finished 4, failed 1, stopped 1, running 1, interrupted 1" in text
    assert "v1sweep resume" in text
    assert "0.4200" in text and "trial t1" in text
    assert "failed t4: RuntimeError: diverged: loss is NaN" in text
    assert cli_main(["status", "qsweep", "--json", "--all-parents", "--tracking-uri", store["uri"]]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"] == {"finished": 6, "failed": 1, "stopped": 1, "running": 1, "interrupted": 1, "total": 10}
    assert doc["best"]["trial_id"] == "t1" and doc["parents"] == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) listening on `port`."""
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, state = fields[1], fields[3]
            if state == "0A" and int(addr.rsplit(":", 1)[1], 16) == port:
                out.append(addr.rsplit(":", 1)[0])
    return out


def test_cli_ui_serves_on_loopback(store, tmp_path):
    import queue
    import threading

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "v1sweep.cli", "ui", "--port", str(port),
                             "--tracking-uri", store["uri"], "--startup-timeout", "150"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    seen = []
    try:
        deadline = time.monotonic() + 170
        while not any(ln.startswith("MLflow UI:") for ln in seen):
            assert time.monotonic() < deadline and proc.poll() is None, f"the UI did not start: {seen}"
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        assert any(ln.startswith(f"MLflow UI: {url} ") for ln in seen), seen
        with urllib.request.urlopen(url + "/", timeout=30) as resp:
            page = resp.read().decode("utf-8", "replace")
        assert "<html" in page.lower() and "mlflow" in page.lower()
        if Path("/proc/net/tcp").exists():
            assert _listening(port) == ["0100007F"]  # 127.0.0.1 only, not 0.0.0.0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    deadline = time.monotonic() + 30
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _listening(port) == []  # the server and its workers are gone
