"""The sweep engine end to end with real components: Ray (a fresh local Ray per CLI run, one local Ray
for the in-process tests), MLflow (sqlite and a real `mlflow server`), the real `run_trial` in the
smoke sweep, and deterministic trial functions (tests/services.py) where the test is about the
platform. What MLflow holds is compared with what the trial functions computed."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

import services
from v1sweep.config import sweep_file as sweep_spec
from v1sweep.corruptions.catalog import BENCHMARK_CORRUPTIONS, CATEGORIES
from v1sweep.sweep.engine import FINAL_FILE, SWEEP_JSON, run_sweep
from v1sweep.testing.sweep import SchedulerContract, SearchAlgorithmContract

REPO = services.REPO
TRIAL = {"data": {"dataset": "synthetic", "image_size": 32}, "frontend": {"visual_degrees": 1.0},
         "train": {"epochs": 3}, "eval": {"corruptions": ["gaussian_noise", "fog", "pixelate"]}}
RAY_KEYS = {"training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "done", "pid",
            "time_since_restore", "iterations_since_restore"}


@pytest.fixture(scope="module")
def ray_local():
    """One fresh local Ray for the in-process tests of this module (run_sweep uses it as is)."""
    import ray

    if ray.is_initialized():  # another module's session: use it, leave it to its owner
        yield
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def make_spec(tmp_path: Path, **keys) -> sweep_spec.SweepSpec:
    data = {"name": "t", "trial": TRIAL, "space": {"rf.strategy": {"grid": ["biological", "unif1"]},
                                                   "train.seed": {"grid": [0, 1]}}}
    data.update(keys)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return sweep_spec.load_sweep(path)


def child_runs(uri: str, parent_run_id: str) -> dict[str, object]:
    client = MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    out = {}
    for run in runs:
        tid = run.data.tags["trial_id"]
        assert tid not in out, f"two runs for trial {tid}"
        out[tid] = run
    return out


def steps(uri: str, run, key: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, key))


def config_of(spec: sweep_spec.SweepSpec, run):
    """The trial config a run describes, rebuilt from its params (and checked against the spec)."""
    from v1sweep.config.trial import from_flat
    from v1sweep.results.query import parse_value

    cfg = from_flat({k: parse_value(v) for k, v in run.data.params.items()})
    assert cfg.data == spec.trial.data
    return cfg


def assert_final_metrics(run, expected: dict) -> None:
    got = run.data.metrics
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-9), key


# ------------------------------------------------------------------------------ in-process engine
def test_failing_trial_is_failed_with_reason_others_finish(ray_local, tmp_path):
    spec = make_spec(tmp_path)
    outcome = run_sweep(spec, trial_fn=services.raising_trial, storage=tmp_path / "runs", verbose=0,
                        out=lambda _m: None)
    assert outcome.counts["finished"] == 2 and outcome.counts["failed"] == 2 and not outcome.lost_writes
    runs = child_runs(outcome.tracking_uri, outcome.parent_run_id)
    assert len(runs) == 4
    for run in runs.values():
        cfg = config_of(spec, run)
        if cfg.rf.strategy == "unif1":
            assert run.info.status == "FAILED" and run.data.tags["v1sweep.status"] == "failed"
            assert run.data.tags["v1sweep.error"] == f"RuntimeError: injected failure for seed {cfg.train.seed}"
            assert steps(outcome.tracking_uri, run, "val_acc") == [1]
            assert "clean_acc" not in run.data.metrics
        else:
            assert run.info.status == "FINISHED" and run.data.tags["v1sweep.status"] == "finished"
            assert steps(outcome.tracking_uri, run, "val_acc") == [1, 2, 3]
            assert_final_metrics(run, services.expected_final(cfg))
            assert not RAY_KEYS & set(run.data.metrics)
    info = json.loads((outcome.sweep_dir / SWEEP_JSON).read_text())
    assert info["parent_run_id"] == outcome.parent_run_id and info["counts"]["failed"] == 2


def test_optuna_tpe_and_nsga2(ray_local, tmp_path):
    space = {"rf.strategy": {"choice": ["biological", "unif1", "unif2"]},
             "frontend.k_exc": {"uniform": [10.0, 40.0]}, "train.seed": {"randint": [0, 3]}}
    tpe = make_spec(tmp_path, space=space, search={"algorithm": "optuna", "metric": "clean_acc", "mode": "max",
                                                   "num_samples": 6, "max_concurrent": 2, "seed": 0})
    multi = make_spec(tmp_path, space=space, search={"algorithm": "optuna-multi", "num_samples": 4, "seed": 1,
                                                     "metrics": ["clean_acc", "corruption_acc"]})
    for spec, n in ((tpe, 6), (multi, 4)):
        outcome = run_sweep(spec, trial_fn=services.fake_trial, storage=tmp_path / "runs", verbose=0,
                            out=lambda _m: None)
        assert outcome.counts["finished"] == n
        runs = child_runs(outcome.tracking_uri, outcome.parent_run_id)
        assert len(runs) == n
        for run in runs.values():
            cfg = config_of(spec, run)
            assert cfg.rf.strategy in ("biological", "unif1", "unif2")
            assert 10.0 <= cfg.frontend.k_exc <= 40.0 and cfg.train.seed in (0, 1, 2)
            assert_final_metrics(run, services.expected_final(cfg))
        assert len({config_of(spec, r).frontend.k_exc for r in runs.values()}) == n  # sampled, not repeated


def test_bundled_frontend_sweep_runs_nsga2(ray_local, tmp_path):
    """The bundled NSGA-II sweep (sweeps/frontend.yaml) runs as shipped, shrunk to 4 CPU trials of the
    deterministic trial function: Ray Tune pickles its Optuna 5 sampler at start and at checkpoints."""
    (tmp_path / "data").mkdir()
    spec = sweep_spec.load_sweep("frontend", ["search.num_samples=4", "search.max_concurrent=2", "resources.gpu=0",
                                              "resources.cpu=1"], data_path=str(tmp_path / "data"))
    assert spec.search.algorithm == "optuna-multi" and spec.file.endswith("frontend.yaml")
    outcome = run_sweep(spec, trial_fn=services.fake_trial, storage=tmp_path / "runs", verbose=0,
                        out=lambda _m: None)
    assert outcome.counts["finished"] == 4 and not outcome.interrupted
    runs = child_runs(outcome.tracking_uri, outcome.parent_run_id)
    assert len(runs) == 4
    for run in runs.values():
        assert_final_metrics(run, services.expected_final(config_of(spec, run)))


def test_nsga2_sampler_survives_pickling_and_keeps_sampling():
    """Ray Tune pickles the searcher with its sampler; the copy must sample like the original."""
    import pickle

    import optuna

    from v1sweep.sweep.callback import NSGAIISampler  # the old path (pickled state names it) still resolves

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        return x, (1 - x) ** 2 + y

    sampler = NSGAIISampler(seed=3, population_size=4)
    copy = pickle.loads(pickle.dumps(sampler))
    plain = optuna.samplers.NSGAIISampler(seed=3, population_size=4)
    studies = []
    for s in (copy, plain):
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=s)
        study.optimize(objective, n_trials=12)
        studies.append([t.params for t in study.trials])
    assert studies[0] == studies[1]  # same seed, same generations: the lock is all that changed


class TestSearchAlgorithms(SearchAlgorithmContract):
    """Every registered search algorithm: accepted by a sweep file with its defaults, suggests inside
    the space, a pickled copy suggests the same, bad options are refused (v1sweep.testing.sweep)."""


class TestSchedulers(SchedulerContract):
    """Every registered scheduler builds with its defaults and pickles."""


class BrokenTPE(optuna.samplers.TPESampler):
    """A TPE sampler whose sampling raises: the search algorithm itself fails, not a trial."""

    def sample_independent(self, *args, **kw):
        raise RuntimeError("sampler exploded")

    def sample_relative(self, *args, **kw):
        raise RuntimeError("sampler exploded")


def test_search_algorithm_failure_is_one_error_line_and_failed_parent(ray_local, tmp_path, monkeypatch, capsys):
    from v1sweep import cli

    monkeypatch.setattr(optuna.samplers, "TPESampler", BrokenTPE)
    space = {"rf.strategy": {"choice": ["biological", "unif1"]}}
    make_spec(tmp_path, space=space, search={"algorithm": "optuna", "metric": "clean_acc", "num_samples": 2},
              trial_function="services:fake_trial")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rc = cli.main(["run", str(tmp_path / "sweep.yaml"), "--tracking-uri", uri, "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert [ln for ln in lines if "error:" in ln] == [lines[-1]]
    assert "search algorithm optuna" in lines[-1] and "sampler exploded" in lines[-1]
    client = MlflowClient(uri)
    (parent,) = client.search_runs([client.get_experiment_by_name("t").experiment_id],
                                   "tags.`v1sweep.role` = 'sweep'")
    assert parent.info.status == "FAILED"
    assert "sampler exploded" in parent.data.tags["v1sweep.error"]


def test_experiment_opens_as_training_runs_with_a_saved_trials_view(ray_local, tmp_path):
    """MLflow's UI reads the experiment-kind tag (training runs, not GenAI) and restores the shared
    view: its filter must select exactly the sweep's trials, its columns the headline metrics."""
    spec = make_spec(tmp_path)
    outcome = run_sweep(spec, trial_fn=services.fake_trial, storage=tmp_path / "runs", verbose=0,
                        out=lambda _m: None)
    client = MlflowClient(outcome.tracking_uri)
    tags = client.get_experiment(outcome.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(tags["mlflow.sharedViewState.v1sweep-t"])
    found = client.search_runs([outcome.experiment_id], view["searchFilter"])
    assert sorted(r.data.tags["trial_id"] for r in found) == sorted(outcome.trial_ids)
    assert {"metrics.`clean_acc`", "metrics.`corruption_acc`", "metrics.`rf_similarity`",
            "params.`rf.strategy`", "params.`train.seed`"} <= set(view["selectedColumns"])
    assert view["orderByKey"] == "metrics.`corruption_acc`" and view["orderByAsc"] is False


def test_random_search_is_seeded_and_respects_domains(ray_local, tmp_path):
    space = {"train.lr": {"loguniform": [0.001, 0.1]}, "frontend.k_exc": {"quniform": [10, 40, 5]},
             "model.bottleneck": {"quniform": [16, 64, 16]}, "frontend.ksize": {"choice": [7, 9]},
             "rf.strategy": {"grid": ["biological", "unif1"]}}
    seen = []
    for _ in range(2):
        spec = make_spec(tmp_path, space=space, search={"algorithm": "random", "num_samples": 3, "seed": 7},
                         trial={**TRIAL, "train": {"epochs": 1}})
        outcome = run_sweep(spec, trial_fn=services.fake_trial, storage=tmp_path / "runs", verbose=0,
                            out=lambda _m: None)
        assert outcome.counts["finished"] == 6  # the grid (2) x num_samples (3)
        configs = [config_of(spec, r) for r in child_runs(outcome.tracking_uri, outcome.parent_run_id).values()]
        for c in configs:
            assert 0.001 <= c.train.lr <= 0.1 and c.frontend.ksize in (7, 9)
            assert c.frontend.k_exc % 5 == 0 and 10 <= c.frontend.k_exc <= 40
            assert c.model.bottleneck in (16, 32, 48, 64)
        assert sorted(c.rf.strategy for c in configs) == ["biological"] * 3 + ["unif1"] * 3
        seen.append(sorted((c.rf.strategy, c.train.lr, c.frontend.k_exc, c.model.bottleneck, c.frontend.ksize)
                           for c in configs))
    assert seen[0] == seen[1]  # the same seed samples the same trials


def test_asha_stops_weak_trials_and_tags_them(ray_local, tmp_path):
    # val_acc (tests/services.py): biological > unif1 at every epoch; trials run one at a time in
    # Tune's order (bio 0, unif1 0, bio 1, unif1 1), so each unif1 trial is below the rung-1 median.
    spec = make_spec(tmp_path, trial={**TRIAL, "train": {"epochs": 4}},
                     search={"algorithm": "grid", "max_concurrent": 1},
                     scheduler={"type": "asha", "metric": "val_acc", "mode": "max", "grace_period": 1,
                                "reduction_factor": 2})
    outcome = run_sweep(spec, trial_fn=services.fake_trial, storage=tmp_path / "runs", verbose=0,
                        out=lambda _m: None)
    assert outcome.counts == {"finished": 2, "failed": 0, "stopped": 2, "interrupted": 0}
    for run in child_runs(outcome.tracking_uri, outcome.parent_run_id).values():
        cfg = config_of(spec, run)
        if cfg.rf.strategy == "unif1":
            assert run.info.status == "KILLED" and run.data.tags["v1sweep.status"] == "stopped"
            assert steps(outcome.tracking_uri, run, "val_acc") == [1]
            assert "clean_acc" not in run.data.metrics
        else:
            assert run.info.status == "FINISHED" and run.data.tags["v1sweep.status"] == "finished"
            assert steps(outcome.tracking_uri, run, "val_acc") == [1, 2, 3, 4]
    from v1sweep.results import query as query

    best = query.runs(outcome.sweep_dir)
    assert sorted(best["params.rf.strategy"]) == ["biological", "biological"]  # stopped ones excluded


def test_missing_dataset_path_names_node_and_path(ray_local, tmp_path):
    import socket

    trial = {**TRIAL, "data": {"dataset": "cifar10", "path": str(tmp_path / "no-cifar"), "image_size": 32}}
    spec = make_spec(tmp_path, trial=trial, space={"train.seed": {"grid": [0]}})
    outcome = run_sweep(spec, trial_fn=services.fake_trial, storage=tmp_path / "runs", verbose=0,
                        out=lambda _m: None)
    (run,) = child_runs(outcome.tracking_uri, outcome.parent_run_id).values()
    error = run.data.tags["v1sweep.error"]
    assert run.info.status == "FAILED" and error.startswith("DatasetError")
    assert str(tmp_path / "no-cifar") in error and socket.gethostname() in error and "data.path" in error


def test_crashed_trial_is_retried_from_its_checkpoint(ray_local, tmp_path):
    spec = make_spec(tmp_path, trial={**TRIAL, "train": {"epochs": 4}}, space={"train.seed": {"grid": [0]}},
                     failures={"max_failures": 1})
    outcome = run_sweep(spec, trial_fn=services.crashing_trial, storage=tmp_path / "runs", verbose=0,
                        out=lambda _m: None)
    assert outcome.counts["finished"] == 1
    (run,) = child_runs(outcome.tracking_uri, outcome.parent_run_id).values()
    assert run.info.status == "FINISHED" and run.data.tags["v1sweep.retries"] == "1"
    assert steps(outcome.tracking_uri, run, "val_acc") == [1, 2, 3, 4]  # once each, no gap
    out_dir = outcome.sweep_dir / "trials" / run.data.tags["trial_id"]
    epochs = [json.loads(line)["epoch"] for line in (out_dir / "epochs.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]  # the retry resumed after epoch 2 instead of starting over

    spec = make_spec(tmp_path, trial={**TRIAL, "train": {"epochs": 4}}, space={"train.seed": {"grid": [0]}})
    outcome = run_sweep(spec, trial_fn=services.crashing_trial, storage=tmp_path / "runs", verbose=0,
                        out=lambda _m: None)
    (run,) = child_runs(outcome.tracking_uri, outcome.parent_run_id).values()
    assert run.info.status == "FAILED" and outcome.counts["failed"] == 1
    assert "died" in run.data.tags["v1sweep.error"].lower() or "exit" in run.data.tags["v1sweep.error"].lower()


def test_eight_concurrent_trials_on_a_tracking_server(ray_local, tmp_path, mlflow_server):
    spec = make_spec(tmp_path, trial={**TRIAL, "train": {"epochs": 5}},
                     space={"train.seed,rf.seed": {"grid": list(range(8))}}, resources={"cpu": 0.25},
                     tracking={"experiment": f"eight-{uuid.uuid4().hex[:6]}"})
    outcome = run_sweep(spec, trial_fn=services.slow_trial, storage=tmp_path / "runs",
                        tracking_uri=mlflow_server.uri, verbose=0, out=lambda _m: None)
    assert outcome.counts["finished"] == 8 and not outcome.lost_writes
    runs = child_runs(mlflow_server.uri, outcome.parent_run_id)
    assert sorted(config_of(spec, r).train.seed for r in runs.values()) == list(range(8))
    client = MlflowClient(mlflow_server.uri)
    for run in runs.values():
        cfg = config_of(spec, run)
        hist = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_acc"))
        assert hist == [(e, services.expected_val(cfg, e)) for e in range(1, 6)]
        assert_final_metrics(run, services.expected_final(cfg))
        assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == \
            ["config.yaml", "rf_params.csv", "summary.json", "trial.log"]


# ------------------------------------------------------------------------------ the CLI
def test_dry_run_prints_trials_and_touches_nothing(tmp_path):
    res = services.run_cli(["run", str(REPO / "sweeps" / "smoke.yaml"), "--dry-run"], cwd=tmp_path,
                           env=os.environ, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "4 trials:" in res.stdout and res.stdout.count("rf.strategy=") == 4
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "v1sweep_runs").exists()


def test_unreachable_tracking_server_fails_before_any_trial(tmp_path):
    port = services.free_port()
    res = services.run_cli(["run", str(REPO / "sweeps" / "smoke.yaml"), "--tracking-uri",
                            f"http://127.0.0.1:{port}"], cwd=tmp_path, env=os.environ, timeout=120)
    assert res.returncode == 2
    assert f"http://127.0.0.1:{port}" in res.stderr and "not reachable" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "v1sweep_runs").exists()


def test_smoke_sweep_end_to_end(tmp_path):
    """The README's main command with the real trial pipeline, then `v1sweep best` on its results."""
    marker = uuid.uuid4().hex
    env = services.marked_env(marker, MLFLOW_TRACKING_URI="", V1SWEEP_CACHE=str(tmp_path / "cache"))
    try:
        res = services.run_cli(["run", str(REPO / "sweeps" / "smoke.yaml"), "--num-cpus", "2"], cwd=tmp_path,
                               env=env, timeout=900)
    finally:
        services.kill_marked(marker, folder=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    db = tmp_path / "mlflow.db"
    assert f"database {db}" in res.stdout  # the store's path is printed at start
    uri = f"sqlite:///{db}"
    (sweep_dir,) = (tmp_path / "v1sweep_runs").iterdir()
    # v1sweep's own progress (plain lines: stdout is a pipe), not Ray's table, logdir or auth notice
    out = res.stdout + res.stderr
    assert "trials 4/4 done (4 finished, 0 failed), 0 running | best corruption_acc" in res.stdout
    assert f"folder {sweep_dir}" in res.stdout and "/#/experiments/" in res.stdout
    for noise in ("== Status ==", "Result logdir", "driver_artifacts", "Token authentication",
                  "Creating initial MLflow database tables", "Trial name"):
        assert noise not in out, noise
    info = json.loads((sweep_dir / SWEEP_JSON).read_text())
    spec = sweep_spec.load_sweep(REPO / "sweeps" / "smoke.yaml")
    client = MlflowClient(uri)
    parent = client.get_run(info["parent_run_id"])
    tags = parent.data.tags
    assert parent.info.status == "FINISHED" and tags["v1sweep.role"] == "sweep"
    assert tags["v1sweep.sweep"] == "smoke" and tags["v1sweep.spec_hash"] == spec.spec_hash
    assert tags["v1sweep.sweep_dir"] == str(sweep_dir) and "smoke.yaml" in tags["v1sweep.command"]
    assert "v1sweep.git_commit" in tags or not (REPO / ".git").exists()
    assert "source.yaml" in [a.path for a in client.list_artifacts(parent.info.run_id)]

    runs = child_runs(uri, info["parent_run_id"])
    assert len(runs) == 4
    points = set()
    contract = ({"clean_acc", "clean_top5", "corruption_acc", "rf_similarity", "train_images_per_s", "wall_time_s"}
                | {f"corruption_acc/{c}" for c in CATEGORIES} | {f"corruption_acc/{n}" for n in BENCHMARK_CORRUPTIONS}
                | {"adv_acc/linf/0.00392"})  # the smoke sweep's one cheap white-box attack
    for tid, run in runs.items():
        assert run.info.status == "FINISHED" and run.data.tags["v1sweep.status"] == "finished"
        assert run.data.tags["v1sweep.role"] == "trial" and run.data.tags["v1sweep.sweep"] == "smoke"
        # what the trial used, beside the params of what it asked for (eval.frost, eval.storage)
        assert run.data.params["eval.frost"] == "published" and run.data.params["eval.storage"] == "published"
        assert run.data.tags["v1sweep.frost_used"] == "imagecorruptions-photos"  # not a procedural fallback
        assert run.data.tags["v1sweep.storage_used"] == "uint8-truncate"  # CIFAR-10-C's np.uint8(x)
        cfg = config_of(spec, run)
        points.add((cfg.rf.strategy, cfg.train.seed, cfg.rf.seed))
        from v1sweep.config.trial import to_flat

        assert run.data.params == {k: str(v) for k, v in to_flat(cfg).items()}
        assert contract <= set(run.data.metrics)
        assert any(k.startswith("rf_similarity/") for k in run.data.metrics)
        assert not RAY_KEYS & set(run.data.metrics)
        for key in ("val_acc", "train_loss", "train_acc"):
            assert steps(uri, run, key) == list(range(1, spec.trial.train.epochs + 1))
        summary = json.loads((sweep_dir / "trials" / tid / "summary.json").read_text())
        for key, value in summary["metrics"].items():  # MLflow holds what the trial computed
            if value is not None:
                assert math.isclose(run.data.metrics[key], value, rel_tol=1e-9), key
        assert {"config.yaml", "rf_params.csv", "rf_histograms.png", "summary.json", "eval_table.csv",
                "model.pt"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert points == {(s, seed, seed) for s in ("biological", "unif1") for seed in (0, 1)}

    best = services.run_cli(["best", "smoke", "--metric", "corruption_acc", "-k", "2", "--json"], cwd=tmp_path,
                            env=env, timeout=120)
    assert best.returncode == 0, best.stderr
    finished = sorted(runs.values(), key=lambda r: -r.data.metrics["corruption_acc"])
    assert finished[0].data.tags["trial_id"] in best.stdout


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_resume_after_driver_sigkill_keeps_one_run_per_trial(tmp_path):
    sweep_file = tmp_path / "slow.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "killme", "trial_function": "services:slow_trial",
        "trial": {**TRIAL, "train": {"epochs": 4}},
        "space": {"rf.strategy": {"grid": ["biological", "unif1"]}, "train.seed": {"grid": [0, 1, 2]}},
    }))
    marker = uuid.uuid4().hex
    env = services.marked_env(marker, MLFLOW_TRACKING_URI="")
    runs_dir = tmp_path / "v1sweep_runs"
    driver = subprocess.Popen([str(services.BIN / "v1sweep"), "run", str(sweep_file), "--num-cpus", "2", "-q"],
                              cwd=tmp_path, env=env, stdout=open(tmp_path / "run.log", "w"),
                              stderr=subprocess.STDOUT)
    try:
        def state():
            dirs = list(runs_dir.glob("*/trials/*"))
            done = [d for d in dirs if (d / FINAL_FILE).exists()]
            started = [d for d in dirs if (d / "epochs.jsonl").exists() and not (d / FINAL_FILE).exists()]
            return done, started

        _wait_for(lambda: len(state()[0]) >= 1 and len(state()[1]) >= 1 or driver.poll() is not None, 600,
                  "one finished and one running trial")
        assert driver.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
        finished_before = {d.name: (d / FINAL_FILE).stat().st_mtime_ns for d in state()[0]}
        print("KILLED with finished", sorted(finished_before), "running", sorted(d.name for d in state()[1]))
    finally:
        services.kill_marked(marker, folder=tmp_path)  # Ray's leftovers of the killed driver
    (sweep_dir,) = runs_dir.iterdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent_run_id = json.loads((sweep_dir / SWEEP_JSON).read_text())["parent_run_id"]
    assert MlflowClient(uri).get_run(parent_run_id).info.status == "RUNNING"

    marker = uuid.uuid4().hex
    env = services.marked_env(marker, MLFLOW_TRACKING_URI="")
    try:
        res = services.run_cli(["resume", str(sweep_dir), "--num-cpus", "2", "-q"], cwd=tmp_path, env=env,
                               timeout=600)
    finally:
        services.kill_marked(marker, folder=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    print("RESUME OUT", res.stdout[-4000:], res.stderr[-2000:])

    client = MlflowClient(uri)
    runs = child_runs(uri, parent_run_id)  # asserts one run per trial id
    spec = sweep_spec.from_dict(yaml.safe_load((sweep_dir / "sweep.yaml").read_text()))
    configs = {(config_of(spec, r).rf.strategy, config_of(spec, r).train.seed) for r in runs.values()}
    assert configs == {(s, seed) for s in ("biological", "unif1") for seed in (0, 1, 2)}
    assert len(runs) == 6
    for tid, run in runs.items():
        assert run.info.status == "FINISHED" and run.data.tags["v1sweep.status"] == "finished"
        hist = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_acc")]
        cfg = config_of(spec, run)
        assert sorted(hist) == [(e, services.expected_val(cfg, e)) for e in range(1, 5)]  # continuous, once
        assert_final_metrics(run, services.expected_final(cfg))
        lines = (sweep_dir / "trials" / tid / "epochs.jsonl").read_text().splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]  # no epoch trained twice
    for tid, mtime in finished_before.items():  # finished trials were not rerun
        assert (sweep_dir / "trials" / tid / FINAL_FILE).stat().st_mtime_ns == mtime
    assert client.get_run(parent_run_id).info.status == "FINISHED"
    assert not client.search_runs([client.get_run(parent_run_id).info.experiment_id], "attributes.status = 'RUNNING'")


def test_bench_sweep_reports_both_paths(tmp_path):
    marker = uuid.uuid4().hex
    try:
        res = services.run_cli(["bench", "sweep", "--trials", "3"], cwd=tmp_path, env=services.marked_env(marker),
                               timeout=600)
    finally:
        services.kill_marked(marker, folder=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    import re

    ours = re.search(r"v1sweep \(.*\):\s+([\d.]+) s/trial", res.stdout)
    stock = re.search(r"stock MLflowLoggerCallback \(baseline\):\s+([\d.]+) s/trial", res.stdout)
    ratio = re.search(r"speed-up vs baseline: ([\d.]+)x", res.stdout)
    assert ours and stock and ratio, res.stdout
    assert math.isclose(float(stock.group(1)) / float(ours.group(1)), float(ratio.group(1)), rel_tol=0.05)
