"""Resume never destroys results (issue 12, part 1), with real Ray, real MLflow (sqlite) and real
trial folders.

A finished sweep of three trials (one of them turned back into an unfinished trial, as a killed
driver leaves it: RUNNING run without a status, checkpoint at epoch 1, no final file) is copied for
each case; Ray Tune's saved state is then damaged in every way we know of. Whatever the damage:

- `v1sweep resume` either works or stops with exit 1, one `error:` line naming the damaged file and
  `--rebuild`, and changes nothing (same MLflow runs, same files);
- `v1sweep resume --rebuild` keeps every FINISHED run (same run id, still FINISHED, not deleted,
  its trial not rerun) and continues the unfinished trial from its checkpoint (epochs once each).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

import services
from v1sweep.sweep.engine import FINAL_FILE, SWEEP_JSON, resume_sweep, run_sweep

TRIAL = {"data": {"dataset": "synthetic", "image_size": 32}, "frontend": {"visual_degrees": 1.0},
         "train": {"epochs": 3}, "eval": {"corruptions": ["gaussian_noise"]}}
UNFINISHED_SEED = 2


@pytest.fixture(scope="module")
def ray_local():
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _mlflow_snapshot(uri: str, parent: str) -> dict[str, tuple]:
    return {tid: (r.info.run_id, r.info.status, r.info.lifecycle_stage, r.data.tags.get("v1sweep.status"))
            for tid, r in services.trial_runs(uri, parent).items()}


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, ray_local):
    """(sweep_dir, mlflow.db) of a 3-trial sweep; the seed-2 trial made unfinished as a killed driver leaves it."""
    root = tmp_path_factory.mktemp("base")
    path = root / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "dmg", "trial": TRIAL,
                                    "space": {"train.seed": {"grid": [0, 1, UNFINISHED_SEED]}}}))
    from v1sweep.config.sweep_file import load_sweep

    uri = f"sqlite:///{root / 'mlflow.db'}"
    outcome = run_sweep(load_sweep(path), storage=root / "runs", tracking_uri=uri, trial_fn=services.fake_trial,
                        verbose=0, out=lambda _m: None)
    assert outcome.counts["finished"] == 3
    runs = services.trial_runs(uri, outcome.parent_run_id)
    client = MlflowClient(uri)
    for tid, run in runs.items():
        if run.data.params["train.seed"] == str(UNFINISHED_SEED):
            folder = outcome.sweep_dir / "trials" / tid
            for name in (FINAL_FILE, "summary.json"):
                (folder / name).unlink()
            (folder / "checkpoint.json").write_text(json.dumps({"epoch": 1}))
            (folder / "epochs.jsonl").write_text((folder / "epochs.jsonl").read_text().splitlines()[0] + "\n")
            client.update_run(run.info.run_id, status="RUNNING")
            for tag in ("v1sweep.status", "v1sweep.final_logged"):
                client.delete_tag(run.info.run_id, tag)
            _ray_says_running(outcome.sweep_dir, tid)
    return outcome.sweep_dir, root / "mlflow.db"


def _ray_says_running(sweep_dir: Path, trial_id: str) -> None:
    """Ray's saved state as a killed driver leaves it: the trial still RUNNING, no last result."""
    (path,) = sweep_dir.glob("experiment_state-*.json")
    data = json.loads(path.read_text())
    for entry in data["trial_data"]:
        trial = json.loads(entry[0])
        if trial["trial_id"] == trial_id:
            trial["status"] = "RUNNING"
            entry[0] = json.dumps(trial)
    path.write_text(json.dumps(data))


def _copy(finished_sweep, tmp_path: Path) -> tuple[Path, str]:
    sweep_dir, db = finished_sweep
    dst = tmp_path / "runs" / sweep_dir.name
    shutil.copytree(sweep_dir, dst)
    shutil.copyfile(db, tmp_path / "copy.db")
    return dst, f"sqlite:///{tmp_path / 'copy.db'}"


def _state(sweep_dir: Path, pattern: str) -> Path:
    (path,) = sweep_dir.glob(pattern)
    return path


def _experiment_without_a_trial(sweep_dir: Path) -> None:
    path = _state(sweep_dir, "experiment_state-*.json")
    data = json.loads(path.read_text())
    data["trial_data"] = data["trial_data"][:-1]
    path.write_text(json.dumps(data))


def _broken_trial_record(sweep_dir: Path) -> None:
    path = _state(sweep_dir, "experiment_state-*.json")
    data = json.loads(path.read_text())
    data["trial_data"][0][0] = "{\"trial_id\": "
    path.write_text(json.dumps(data))


# name -> (how to damage the copy, whether a plain resume must refuse it, the file the error names)
DAMAGE = {
    "experiment-state-0-bytes": (lambda d: _state(d, "experiment_state-*.json").write_bytes(b""), True,
                                 "experiment_state-"),
    "experiment-state-truncated": (lambda d: (lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]))(
        _state(d, "experiment_state-*.json")), True, "experiment_state-"),
    "experiment-state-garbage": (lambda d: _state(d, "experiment_state-*.json").write_bytes(b"\x00\xffgarbage"), True,
                                 "experiment_state-"),
    "experiment-state-missing": (lambda d: _state(d, "experiment_state-*.json").unlink(), True, "experiment_state-"),
    "experiment-state-broken-trial": (_broken_trial_record, True, "experiment_state-"),
    "tuner-pkl-0-bytes": (lambda d: (d / "tuner.pkl").write_bytes(b""), True, "tuner.pkl"),
    "tuner-pkl-garbage": (lambda d: (d / "tuner.pkl").write_bytes(b"not a pickle"), True, "tuner.pkl"),
    "tuner-pkl-missing": (lambda d: (d / "tuner.pkl").unlink(), True, "tuner.pkl"),
    "searcher-state-0-bytes": (lambda d: _state(d, "basic-variant-state-*.json").write_bytes(b""), True,
                               "basic-variant-state-"),
    "searcher-state-missing": (lambda d: _state(d, "basic-variant-state-*.json").unlink(), True, "searcher-state"),
    "all-state-missing": (lambda d: [p.unlink() for pat in ("experiment_state-*", "basic-variant-state-*",
                                                           "tuner.pkl") for p in d.glob(pat)], False, ""),
    "ray-forgot-a-trial": (_experiment_without_a_trial, False, ""),
    "trial-dirs-missing": (lambda d: [shutil.rmtree(p) for p in d.glob("tune-*")], False, ""),
}
CHEAP = {"experiment-state-0-bytes", "ray-forgot-a-trial"}


def _resume(sweep_dir: Path, uri: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    marker = uuid.uuid4().hex
    try:
        return services.run_cli(["resume", str(sweep_dir), "--tracking-uri", uri, "--num-cpus", "2", "-q", *extra],
                                cwd=cwd, env=services.marked_env(marker, MLFLOW_TRACKING_URI=""), timeout=600)
    finally:
        services.kill_marked(marker, folder=cwd)


def _check_kept_and_continued(sweep_dir: Path, uri: str, before: dict, finals: dict) -> None:
    parent = json.loads((sweep_dir / SWEEP_JSON).read_text())["parent_run_id"]
    runs = services.trial_runs(uri, parent)
    client = MlflowClient(uri)
    for tid, (run_id, status, stage, _tag) in before.items():
        if status == "FINISHED":  # never deleted, superseded or rerun
            assert runs[tid].info.run_id == run_id and runs[tid].info.status == "FINISHED", tid
            assert runs[tid].info.lifecycle_stage == "active" and runs[tid].data.tags["v1sweep.status"] == "finished"
            assert (sweep_dir / "trials" / tid / FINAL_FILE).stat().st_mtime_ns == finals[tid]
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs.values())
    for tid, run in runs.items():
        hist = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc"))
        assert hist == [1, 2, 3], (tid, hist)
        lines = (sweep_dir / "trials" / tid / "epochs.jsonl").read_text().splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]  # continued: epoch 1 not trained again


@pytest.mark.parametrize("damage", [pytest.param(k, marks=[] if k in CHEAP else [pytest.mark.slow])
                                    for k in DAMAGE])
def test_damaged_ray_state_never_costs_a_finished_run(damage, finished_sweep, tmp_path):
    sweep_dir, uri = _copy(finished_sweep, tmp_path)
    parent = json.loads((sweep_dir / SWEEP_JSON).read_text())["parent_run_id"]
    before = _mlflow_snapshot(uri, parent)
    finals = {tid: (sweep_dir / "trials" / tid / FINAL_FILE).stat().st_mtime_ns
              for tid in before if (sweep_dir / "trials" / tid / FINAL_FILE).exists()}
    assert sorted(s for _i, s, _l, _t in before.values()) == ["FINISHED", "FINISHED", "RUNNING"]
    damage_fn, refused, named = DAMAGE[damage]
    damage_fn(sweep_dir)
    files = _snapshot(sweep_dir)
    res = _resume(sweep_dir, uri, tmp_path)
    shown = res.stdout[-3000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stderr, shown
    if refused:
        assert res.returncode == 1, shown
        assert "v1sweep resume: error: " in res.stderr and named in res.stderr and "--rebuild" in res.stderr, shown
        assert _snapshot(sweep_dir) == files, "a refused resume changed the sweep folder"
        assert _mlflow_snapshot(uri, parent) == before, "a refused resume changed MLflow"
        res = _resume(sweep_dir, uri, tmp_path, "--rebuild")
        shown = res.stdout[-3000:] + res.stderr[-3000:]
    assert res.returncode == 0, shown
    assert "removed" not in res.stdout, shown
    _check_kept_and_continued(sweep_dir, uri, before, finals)


def test_resume_into_another_store_creates_nothing(finished_sweep, tmp_path):
    sweep_dir, _uri = _copy(finished_sweep, tmp_path)
    res = _resume(sweep_dir, f"sqlite:///{tmp_path / 'other.db'}", tmp_path)
    assert res.returncode == 2 and "no MLflow store at" in res.stderr and "other.db" in res.stderr, res.stderr
    assert not (tmp_path / "other.db").exists()


# ------------------------------------------------------------------------------ failed trials
def _crash_sweep(tmp_path: Path, seeds=(0, 1), **extra):
    from v1sweep.config.sweep_file import load_sweep

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "fail", "trial": TRIAL,
                                    "space": {"train.seed": {"grid": list(seeds)}}, **extra}))
    return load_sweep(path)


def test_retry_failed_reruns_from_checkpoint_and_keeps_the_failed_attempt(ray_local, tmp_path):
    """crashing_trial dies after epoch 2 (once per trial folder): both trials FAILED; a plain resume
    leaves them FAILED; `--retry-failed` continues them to the end, one run per trial."""
    spec = _crash_sweep(tmp_path)
    fn = services.crashing_trial
    outcome = run_sweep(spec, storage=tmp_path / "runs", trial_fn=fn, verbose=0, out=lambda _m: None)
    assert outcome.counts["failed"] == 2
    uri = outcome.tracking_uri
    plain = resume_sweep(outcome.sweep_dir, trial_fn=fn, verbose=0, out=lambda _m: None)
    assert plain.counts["failed"] == 2 and not plain.counts["finished"]
    again = resume_sweep(outcome.sweep_dir, trial_fn=fn, verbose=0, retry_failed=True, out=lambda _m: None)
    assert again.counts["finished"] == 2, again.counts
    runs = services.trial_runs(uri, outcome.parent_run_id)
    client = MlflowClient(uri)
    assert len(runs) == 2
    for tid, run in runs.items():
        assert run.info.status == "FINISHED" and run.data.tags["v1sweep.status"] == "finished"
        assert run.data.tags["v1sweep.attempts"] == "1" and run.data.tags["v1sweep.attempt.1.error"]
        assert "v1sweep.error" not in run.data.tags
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc")) == [1, 2, 3]
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "epoch")) == [1, 2, 3]
        lines = (outcome.sweep_dir / "trials" / tid / "epochs.jsonl").read_text().splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def test_disk_full_fails_the_trial_naming_the_path_and_resume_continues(ray_local, tmp_path, small_disk):
    """The sweep folder on a 5 MiB disk, trials writing 1 MiB per epoch: trials fail with
    'No space left on device: PATH'; once the disk is larger, resume continues them."""
    spec = _crash_sweep(tmp_path, seeds=(0, 1))
    fn = services.filling_trial
    outcome = run_sweep(spec, storage=small_disk, trial_fn=fn, verbose=0, out=lambda _m: None)
    uri = outcome.tracking_uri
    runs = services.trial_runs(uri, outcome.parent_run_id)
    failed = {t: r for t, r in runs.items() if r.data.tags.get("v1sweep.status") == "failed"}
    assert failed, {t: r.data.tags for t, r in runs.items()}
    for run in failed.values():
        assert "No space left on device: " + str(small_disk) in run.data.tags["v1sweep.error"], run.data.tags
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    try:
        again = resume_sweep(outcome.sweep_dir, trial_fn=fn, verbose=0, out=lambda _m: None)
    except Exception as exc:  # the full disk damaged Ray's state: the documented way out
        assert "--rebuild" in str(exc), exc
        again = resume_sweep(outcome.sweep_dir, trial_fn=fn, verbose=0, rebuild=True, out=lambda _m: None)
    assert again.counts["finished"] == 2, again.counts
    runs = services.trial_runs(uri, outcome.parent_run_id)
    client = MlflowClient(uri)
    assert len(runs) == 2
    for tid, run in runs.items():
        assert run.info.status == "FINISHED"
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc")) == [1, 2, 3]
        if tid in failed:
            assert "No space left on device" in run.data.tags["v1sweep.attempt.1.error"]


def test_epoch_metric_is_logged_once_per_epoch(finished_sweep):
    """The final result carries `epoch` too; it used to be logged again at the last step (1,2,3,3)."""
    sweep_dir, db = finished_sweep
    uri = f"sqlite:///{db}"
    parent = json.loads((sweep_dir / SWEEP_JSON).read_text())["parent_run_id"]
    client = MlflowClient(uri)
    finished = [r for r in services.trial_runs(uri, parent).values() if r.data.params["train.seed"] != str(UNFINISHED_SEED)]
    assert len(finished) == 2
    for run in finished:
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "epoch")]
        assert sorted(history) == [(1, 1.0), (2, 2.0), (3, 3.0)], history
