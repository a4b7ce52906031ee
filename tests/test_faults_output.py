"""Output folders that cannot be written, or vanish mid-trial: a clear error, early, and no stale state."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from v1sweep.config import trial as cfg
from v1sweep.errors import OutputError
from v1sweep.trial.run import run_trial

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config() -> cfg.TrialConfig:
    return cfg.from_dict({
        "name": "tiny",
        "data": {"dataset": "synthetic", "image_size": 32, "train_size": 128, "test_size": 64},
        "frontend": {"n_simple": 4, "n_complex": 4, "ksize": 9, "stride": 2, "visual_degrees": 1.0},
        "model": {"backbone": "tiny", "bottleneck": 8},
        "train": {"epochs": 3, "batch_size": 64, "schedule": "constant", "device": "cpu", "max_batches": 1},
        "eval": {"corruptions": ["gaussian_noise"], "severities": [1], "max_images": 32},
    })


def test_out_dir_under_a_file_fails_before_any_work(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    cache = Path(os.environ["V1SWEEP_CACHE"])
    with pytest.raises(OutputError, match="is not a folder"):
        run_trial(tiny_config(), tmp_path / "afile" / "out", log=None)
    assert not cache.exists() or not any(cache.rglob("*.npy")), "work was done before the check"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the check cannot fail as root")
def test_read_only_out_dir_fails_before_any_work(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="read-only"):
            run_trial(tiny_config(), folder / "out", log=None)
    finally:
        folder.chmod(0o755)


def test_out_dir_vanishing_mid_trial_is_an_error_naming_it(tmp_path):
    """The folder is removed after epoch 1: the next checkpoint write fails loudly, naming the path."""
    out = tmp_path / "out"

    def remove_folder(epoch: int, _metrics: dict) -> None:
        if epoch == 1:
            shutil.rmtree(out)

    with pytest.raises(OSError) as info:
        run_trial(tiny_config(), out, on_epoch=remove_folder, log=None)
    assert str(out) in str(info.value)
    assert not (out / "summary.json").exists()


def test_cli_storage_under_a_file_exits_1_without_running(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "s.yaml").write_text("name: t\ntrial: {}\nspace:\n  train.seed: {grid: [0]}\n")
    proc = subprocess.run([sys.executable, "-m", "v1sweep.cli", "run", "s.yaml", "--storage", "afile/runs"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # exit 1: the system (an output folder), not the input
    assert "cannot create the sweep storage folder" in proc.stderr and "afile" in proc.stderr
    assert "Traceback" not in proc.stderr
