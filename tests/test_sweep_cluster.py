"""A sweep on a real two-node Ray cluster on loopback (head 127.0.0.2, worker 127.0.0.3, token auth),
driven by `v1sweep run --address` in a separate process, tracked by the driver in a sqlite store.

Ray rewrites 127.0.0.1 to the host address, hence the other loopback addresses; `ray start --block`
keeps each node in the foreground so teardown can stop exactly what the fixture started."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

import services
from v1sweep.sweep.engine import FINAL_FILE, SWEEP_JSON

pytestmark = pytest.mark.cluster
TRIAL = {"data": {"dataset": "synthetic", "image_size": 32}, "frontend": {"visual_degrees": 1.0},
         "eval": {"corruptions": ["fog"]}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = services.RayCluster(tmp_path_factory.mktemp("cluster"), cpus_per_node=1)
    try:
        c.start()
    except BaseException:
        c.stop()
        raise
    yield c
    c.stop()
    assert not services.marked_pids(c.marker) and not services.pids_in(c.root), "cluster processes left behind"


def write_sweep(path: Path, **keys) -> Path:
    data = {"name": "cluster", "trial_function": "services:slow_trial", "trial": TRIAL,
            "space": {"train.seed": {"grid": [0, 1, 2, 3]}}, "resources": {"cpu": 1}}
    data.update(keys)
    path.write_text(yaml.safe_dump(data))
    return path


def node_of(out_dir: Path) -> str:
    """The node IP a trial ran on (the trainable logs it first thing)."""
    text = (out_dir / "trial.log").read_text()
    found = re.findall(r"on node \S+ \(([\d.]+)\)", text)
    assert found, text
    return found[-1]


def child_runs(uri: str, parent: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_run(parent).info.experiment_id
    return client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")


def test_sweep_runs_on_both_nodes(cluster, tmp_path):
    sweep = write_sweep(tmp_path / "s.yaml", trial={**TRIAL, "train": {"epochs": 3}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = services.run_cli(["run", str(sweep), "--address", cluster.address, "--tracking-uri", uri, "-q"],
                           cwd=tmp_path, env=cluster.env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "2 node(s)" in res.stdout
    (sweep_dir,) = (tmp_path / "v1sweep_runs").iterdir()
    info = json.loads((sweep_dir / SWEEP_JSON).read_text())
    runs = child_runs(uri, info["parent_run_id"])
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["trial_id"] for r in runs}) == 4
    nodes = {}
    client = MlflowClient(uri)
    for run in runs:
        out_dir = sweep_dir / "trials" / run.data.tags["trial_id"]
        nodes[run.data.tags["trial_id"]] = node_of(out_dir)
        # artifacts arrive from either node (shipped with the result from the worker node)
        assert {"config.yaml", "rf_params.csv", "summary.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc")) == [1, 2, 3]
    assert set(nodes.values()) == {"127.0.0.2", "127.0.0.3"}


@pytest.mark.parametrize("resources, key, says", [
    ({"cpu": 2}, "resources.cpu", "asks for 2 CPU, but the Ray cluster at"),
    ({"cpu": 1, "gpu": 1}, "resources.gpu", "asks for 1 GPU"),
])
def test_request_no_node_can_meet_is_refused_before_anything_is_created(cluster, tmp_path, resources, key, says):
    """Two 1-CPU nodes: 2 CPUs per trial fit the cluster's total but no node, so Ray would wait forever."""
    sweep = write_sweep(tmp_path / "s.yaml", resources=resources)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = services.run_cli(["run", str(sweep), "--address", cluster.address, "--tracking-uri", uri, "-q"],
                           cwd=tmp_path, env=cluster.env, timeout=300)
    assert res.returncode == 2, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stderr and f"s.yaml: {key}: each trial {says}" in res.stderr, res.stderr
    if key == "resources.cpu":
        assert "1 CPU on its largest node, 2 in all" in res.stderr and "--set resources.cpu=1" in res.stderr
    assert not (tmp_path / "v1sweep_runs").exists() or not any((tmp_path / "v1sweep_runs").iterdir())
    client = MlflowClient(uri)
    assert not [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def test_worker_node_lost_mid_trial_is_retried(cluster, tmp_path):
    """The worker node dies (SIGKILL) during a trial: the trial is retried (max_failures) on the
    remaining node from its checkpoint and the sweep completes. Runs last: the cluster loses a node."""
    sweep = write_sweep(tmp_path / "s.yaml", trial={**TRIAL, "train": {"epochs": 8}},
                        space={"train.seed": {"grid": [0, 1]}}, failures={"max_failures": 2})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = subprocess.Popen([str(services.BIN / "v1sweep"), "run", str(sweep), "--address", cluster.address,
                               "--tracking-uri", uri, "-q"], cwd=tmp_path, env=cluster.env,
                              stdout=open(tmp_path / "run.log", "w"), stderr=subprocess.STDOUT)
    try:
        def on_worker() -> list[Path]:
            found = []
            for d in (tmp_path / "v1sweep_runs").glob("*/trials/*"):
                if (d / "trial.log").exists() and (d / "epochs.jsonl").exists() and not (d / FINAL_FILE).exists():
                    if node_of(d) == "127.0.0.3":
                        found.append(d)
            return found

        deadline = time.monotonic() + 600
        while not on_worker():
            assert driver.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial started on the worker node"
            time.sleep(0.2)
        (victim,) = on_worker()
        cluster.kill_worker_node()
        assert driver.wait(600) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.send_signal(signal.SIGKILL)
    (sweep_dir,) = (tmp_path / "v1sweep_runs").iterdir()
    info = json.loads((sweep_dir / SWEEP_JSON).read_text())
    runs = {r.data.tags["trial_id"]: r for r in child_runs(uri, info["parent_run_id"])}
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs.values())
    lost = runs[victim.name]
    assert lost.data.tags.get("v1sweep.retries") == "1"
    client = MlflowClient(uri)
    assert sorted(m.step for m in client.get_metric_history(lost.info.run_id, "val_acc")) == list(range(1, 9))
    assert node_of(victim) == "127.0.0.2"  # the retry ran on the head
