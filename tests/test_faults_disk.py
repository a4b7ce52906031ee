"""A full disk under the caches and under MLflow's artifacts (issue 12, part 1), with real Ray,
real MLflow (sqlite store) and a real 5 MiB tmpfs (root only; skipped where mounting is not allowed).

Whatever fills up, the trial's run says ``No space left on device: PATH`` (PATH on the full disk),
it is FAILED (never FINISHED with parts missing), what it computed is kept, and once the disk is
larger `resume_sweep` completes it: one run per trial, the failed attempt kept as history.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

import services
from v1sweep.sweep.engine import resume_sweep, run_sweep

TRIAL = {"data": {"dataset": "synthetic", "image_size": 32}, "frontend": {"visual_degrees": 1.0},
         "train": {"epochs": 3}, "eval": {"corruptions": ["gaussian_noise"]}}
N_IMAGES = 120  # one corrupted set: 5 severities x 120 images x 32 x 32 x 3 = 1.8 MB per corruption


def _grow(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=64m", str(path)], check=True)


@pytest.fixture(scope="module")
def cache_disk(tmp_path_factory):
    """$V1SWEEP_CACHE on a 5 MiB tmpfs, set before Ray starts so the trials' workers see it."""
    mnt = tmp_path_factory.mktemp("cache") / "small"
    services.mount_tmpfs(mnt)
    old = os.environ.get("V1SWEEP_CACHE")
    os.environ["V1SWEEP_CACHE"] = str(mnt)
    try:
        yield mnt
    finally:
        if old is None:
            os.environ.pop("V1SWEEP_CACHE", None)
        else:
            os.environ["V1SWEEP_CACHE"] = old
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture(scope="module")
def ray_local(cache_disk):
    import ray

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(services)  # caching_trial uses it; workers cannot import it
    if ray.is_initialized():  # another module's Ray: its workers would not see $V1SWEEP_CACHE
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"V1SWEEP_CACHE": str(cache_disk)}})
    yield
    ray.shutdown()


def _fill(folder: Path) -> Path:
    """Fill the filesystem of `folder` to the last byte; returns the filler file."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 16, 1):
            try:
                while True:
                    os.write(fd, b"\1" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def _spec(tmp_path: Path, seeds=(0, 1), **extra):
    from v1sweep.config.sweep_file import load_sweep

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "disk", "trial": TRIAL,
                                    "space": {"train.seed": {"grid": list(seeds)}}, **extra}))
    return load_sweep(path)


# ------------------------------------------------------------------------------ the corrupted-set cache
def caching_trial(config: Any, out_dir: str | Path, *, on_epoch: Callable | None = None,
                  log: Callable | None = None) -> dict[str, float]:
    """fake_trial, then the trial's corrupted test set written to the cache as run_trial does
    (`materialize` into $V1SWEEP_CACHE); a different set per seed, so each trial writes its own."""
    from v1sweep.corruptions.materialize import available_pairs, materialize

    final = services.fake_trial(config, out_dir, on_epoch=on_epoch, log=log)
    rng = np.random.default_rng(config.train.seed)
    images = rng.integers(0, 256, (N_IMAGES, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, N_IMAGES)
    folder = materialize(images, labels, ["gaussian_noise", "shot_noise"], [1, 2, 3, 4, 5], seed=config.train.seed)
    assert len(available_pairs(folder)) == 10
    return final


def test_full_corruption_cache_fails_the_trial_naming_the_path_and_resume_completes(ray_local, cache_disk,
                                                                                  tmp_path):
    """Two trials each need 3.6 MB of corrupted sets in a 5 MiB cache: at least one fails with
    'No space left on device: <cache>/corruptions/...' (no worker killed by SIGBUS, no temporary
    left); once the cache disk is larger, a plain resume completes it from its checkpoint."""
    spec = _spec(tmp_path)
    outcome = run_sweep(spec, storage=tmp_path / "runs", trial_fn=caching_trial, verbose=0, out=lambda _m: None)
    uri = outcome.tracking_uri
    runs = services.trial_runs(uri, outcome.parent_run_id)
    failed = {t: r for t, r in runs.items() if r.data.tags.get("v1sweep.status") == "failed"}
    assert failed and outcome.counts["failed"] == len(failed), {t: r.data.tags for t, r in runs.items()}
    for run in failed.values():
        assert run.info.status == "FAILED"
        error = run.data.tags["v1sweep.error"]
        assert "No space left on device: " + str(cache_disk / "corruptions") in error, error
    assert not list(cache_disk.rglob("*.tmp-*")), "a temporary file left on the full disk"
    _grow(cache_disk)
    again = resume_sweep(outcome.sweep_dir, trial_fn=caching_trial, verbose=0, out=lambda _m: None)
    assert again.counts == {"finished": 2, "failed": 0, "stopped": 0, "interrupted": 0}, again.counts
    client = MlflowClient(uri)
    runs = services.trial_runs(uri, outcome.parent_run_id)
    assert len(runs) == 2
    for tid, run in runs.items():
        assert run.info.status == "FINISHED" and "v1sweep.error" not in run.data.tags
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc")) == [1, 2, 3]
        lines = (outcome.sweep_dir / "trials" / tid / "epochs.jsonl").read_text().splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]  # not trained again
        if tid in failed:
            assert "No space left on device" in run.data.tags["v1sweep.attempt.1.error"]


def test_full_dataset_cache_warns_naming_the_path_and_leaves_nothing(cache_disk):
    """The decoded-dataset cache only saves time: on a full disk the load goes on without it,
    warning 'No space left on device: PATH', and no temporary file is left."""
    from v1sweep.data.cache import read_cache, write_cache

    folder = cache_disk / "datasets-full"
    folder.mkdir()
    filler = _fill(cache_disk)
    try:
        path = folder / "cifar10-test.npz"
        arrays = {"train_images": np.zeros((10, 3, 8, 8), np.uint8), "train_labels": np.zeros(10, np.int64),
                  "test_images": np.zeros((10, 3, 8, 8), np.uint8), "test_labels": np.zeros(10, np.int64),
                  "classes": np.array(["a"])}
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            write_cache(path, arrays)
        texts = [str(w.message) for w in seen]
        assert any(f"No space left on device: {folder}" in t for t in texts), texts
        assert sorted(p.name for p in folder.iterdir()) == []
        filler.unlink()
        write_cache(path, arrays)  # space is back: the next load writes it
        assert read_cache(path) is not None
    finally:
        filler.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ MLflow artifacts
@pytest.mark.parametrize("rebuild", [False, True], ids=["resume", "resume-rebuild"])
def test_full_artifact_store_fails_the_run_keeps_the_result_and_resume_logs_them(ray_local, small_disk, tmp_path,
                                                                                 rebuild):
    """The experiment's artifact root on a full 5 MiB disk: each trial's final metrics reach MLflow,
    its run ends FAILED with 'No space left on device: <artifact root>...' (never FINISHED without
    artifacts, no 10-minute retry); once there is space, a plain resume logs the artifacts and the
    run ends FINISHED (same run, failed attempt kept), the trial not run again."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_experiment("disk", artifact_location=small_disk.as_uri())
    filler = _fill(small_disk)
    spec = _spec(tmp_path)
    outcome = run_sweep(spec, storage=tmp_path / "runs", tracking_uri=uri, trial_fn=services.fake_trial,
                        verbose=0, out=lambda _m: None)
    assert outcome.counts["failed"] == 2 and not outcome.counts["finished"], outcome.counts
    runs = services.trial_runs(uri, outcome.parent_run_id)
    assert len(runs) == 2
    for tid, run in runs.items():
        assert run.info.status == "FAILED", (tid, run.info.status)
        assert run.data.tags["v1sweep.status"] == "failed"
        error = run.data.tags["v1sweep.error"]
        assert error.startswith("No space left on device: ") and str(small_disk) in error, error
        assert "clean_acc" in run.data.metrics  # the result is kept
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("trials/*/*") if p.is_file()}
    filler.unlink()
    again = resume_sweep(outcome.sweep_dir, trial_fn=services.fake_trial, verbose=0, rebuild=rebuild,
                         out=lambda _m: None)
    assert again.counts == {"finished": 2, "failed": 0, "stopped": 0, "interrupted": 0}, again.counts
    after = services.trial_runs(uri, outcome.parent_run_id)
    assert {t: r.info.run_id for t, r in after.items()} == {t: r.info.run_id for t, r in runs.items()}
    for tid, run in after.items():
        assert run.info.status == "FINISHED" and run.data.tags["v1sweep.status"] == "finished"
        assert "v1sweep.error" not in run.data.tags and "v1sweep.artifacts_missing" not in run.data.tags
        assert "No space left on device" in run.data.tags["v1sweep.attempt.1.error"]
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "summary.json", "rf_params.csv"} <= names, names
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc")) == [1, 2, 3]
        assert len(client.get_metric_history(run.info.run_id, "clean_acc")) == 1
    for path, stamp in stamps.items():  # the trials were not run again
        if path.name in ("epochs.jsonl", "summary.json", "checkpoint.json"):
            assert path.stat().st_mtime_ns == stamp, path


@pytest.mark.slow
def test_full_artifact_disk_of_a_server_fails_the_run_and_resume_logs_them(ray_local, tmp_path, monkeypatch):
    """A real `mlflow server` whose --artifacts-destination is a full tmpfs answers 500 without
    saying why: once the writer gives the artifact write up (retry_s), the run ends FAILED naming
    the failed write (not FINISHED without artifacts); resume with space back logs them."""
    root = tmp_path / "server"
    services.mount_tmpfs(root / "artifacts")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own 500 retries take ~4 min
    server = services.MlflowServer(root).start()
    try:
        filler = _fill(root / "artifacts")
        outcome = run_sweep(_spec(tmp_path), storage=tmp_path / "runs", tracking_uri=server.uri,
                            trial_fn=services.fake_trial, retry_s=2.0, verbose=0, out=lambda _m: None)
        assert outcome.counts["failed"] == 2, outcome.counts
        runs = services.trial_runs(server.uri, outcome.parent_run_id)
        for run in runs.values():
            assert run.info.status == "FAILED" and "clean_acc" in run.data.metrics
            assert run.data.tags["v1sweep.error"].startswith("artifacts not written: "), run.data.tags
            assert run.data.tags["v1sweep.artifacts_missing"] == "true"
        filler.unlink()
        again = resume_sweep(outcome.sweep_dir, trial_fn=services.fake_trial, verbose=0, out=lambda _m: None)
        assert again.counts["finished"] == 2, again.counts
        client = MlflowClient(server.uri)
        for run in services.trial_runs(server.uri, outcome.parent_run_id).values():
            assert run.info.status == "FINISHED" and "v1sweep.error" not in run.data.tags
            assert {"config.yaml", "summary.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    finally:
        server.stop()
        subprocess.run(["umount", "-l", str(root / "artifacts")], capture_output=True)
