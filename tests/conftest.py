"""Shared fixtures: tiny data, temporary MLflow/Ray folders, paths to the optional shared CIFAR-10."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import services

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Keep caches, MLflow stores and Ray folders of each test inside its temporary directory."""
    monkeypatch.setenv("V1SWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def shared_cifar_tarball() -> Path:
    if not SHARED_CIFAR.exists():
        pytest.skip(f"CIFAR-10 JPEG tarball not found at {SHARED_CIFAR} (only present in the dev workspace)")
    return SHARED_CIFAR


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory, shared_cifar_tarball) -> Path:
    """The shared CIFAR-10 JPEG tree, extracted once per session (ImageFolder layout)."""
    import shutil
    import subprocess
    import tarfile

    root = tmp_path_factory.mktemp("cifar")
    if shutil.which("tar"):  # GNU tar: ~10x faster than tarfile on the 60k small files
        subprocess.run(["tar", "xzf", str(shared_cifar_tarball), "-C", str(root)], check=True)
    else:
        with tarfile.open(shared_cifar_tarball) as tar:
            tar.extractall(root, filter="data")
    found = [p for p in root.rglob("train") if p.is_dir()]
    if not found:
        pytest.fail(f"no train/ folder inside {shared_cifar_tarball}")
    return found[0].parent


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 (free port, sqlite backend, proxied artifacts) for the
    session; see tests/services.py. Tests that stop it must start it again before they end."""
    from services import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy runner the threads' barriers
    cost more than they give; one thread keeps a test module fast and its timing stable."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_disk(tmp_path):
    """A 5 MiB tmpfs (root only; skipped where mounting is not allowed), unmounted afterwards."""
    mnt = tmp_path / "small"
    services.mount_tmpfs(mnt)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
