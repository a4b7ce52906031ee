"""`v1sweep run --dry-run [--calibrate]`: the cost arithmetic against a hand count, and the timed
calibration on the tiny smoke config (v1sweep/cost.py)."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from v1sweep.config import trial as config
from v1sweep.sweep import cost as cost

HAND = {"name": "t", "data": {"dataset": "synthetic", "image_size": 32, "train_size": 300, "test_size": 100},
        "frontend": {"n_simple": 4, "n_complex": 4, "ksize": 7, "visual_degrees": 1.0},
        "model": {"backbone": "tiny", "bottleneck": 8},
        "train": {"epochs": 3, "batch_size": 50, "device": "cpu"},
        "eval": {"corruptions": ["gaussian_noise", "fog"], "severities": [1, 3], "max_images": 40,
                 "adversarial": [{"norm": "linf", "eps": 0.004, "steps": 4, "images": 10, "eot": 1, "restarts": 1}]}}


def test_pass_counts_match_a_hand_count():
    p = cost.trial_passes(config.from_dict(HAND))
    # 3 epochs x 300 images trained; 3 x 100 validated; 100 clean; 2 corruptions x 2 severities x 40;
    # one PGD attack, 4 steps x 1 EOT x 1 restart on 10 images
    assert (p.train, p.val, p.clean, p.corruptions, p.attack_backward) == (900, 300, 100, 160, 40)
    assert p.backward == 900 + 40
    assert p.forward == 300 + 100 + 160 + p.attack_forward


def test_max_batches_caps_the_training_images_and_corruptions_cap_at_the_test_set():
    data = {**HAND, "train": {**HAND["train"], "max_batches": 2},
            "eval": {**HAND["eval"], "max_images": 1000, "adversarial": []}}
    p = cost.trial_passes(config.from_dict(data))
    assert p.train == 3 * 2 * 50 and p.corruptions == 2 * 2 * 100 and p.attack_backward == 0


def test_full_dataset_sizes_when_unset():
    cfg = config.from_dict({"name": "c", "data": {"dataset": "cifar10", "path": "/nowhere", "image_size": 32,
                                     "train_size": None, "test_size": None},
                            "frontend": {"visual_degrees": 1.0, "ksize": 15}, "train": {"epochs": 2},
                            "eval": {"max_images": 2000}})
    p = cost.trial_passes(cfg)
    assert p.train == 2 * 50000 and p.val == 2 * 10000 and p.corruptions == 15 * 5 * 2000


def test_wall_time_spreads_trials_over_slots():
    assert cost.wall_seconds([5, 5, 5], 2) == 10
    assert cost.wall_seconds([10, 1, 1, 1], 2) == 10
    assert cost.wall_seconds([2, 3, 4], 1) == 9
    assert cost.wall_seconds([], 4) == 0


def test_estimate_lines_match_a_hand_computation():
    from v1sweep.config.sweep_file import ResourcesSpec

    cfg = config.from_dict(HAND)
    rates = {"train_s_per_image": 0.01, "eval_s_per_image": 0.002, "device": "cpu", "threads": 1}
    p = cost.trial_passes(cfg)
    per_trial = p.backward * 0.01 + p.forward * 0.002
    lines = cost.describe([cfg] * 3, ResourcesSpec(cpu=2, gpu=0), rates=rates, slots=2)
    text = "\n".join(lines)
    assert cost.hms(per_trial) + " per trial" in text
    assert f"{3 * per_trial * 2 / 3600:.2f} CPU-hours" in text          # 3 trials x 2 CPUs each
    assert f"wall ~{cost.hms(2 * per_trial)} on 2 concurrent" in text  # 3 equal trials on 2 slots: 2 rounds
    assert "GPU-hours" not in text


def test_dry_run_without_calibration_prints_the_formula_inputs():
    from v1sweep.sweep.engine import print_dry_run
    from v1sweep.config.sweep_file import load_sweep

    out: list[str] = []
    print_dry_run(load_sweep("smoke"), out.append)
    text = "\n".join(out)
    # smoke: 5 epochs x 2000 images, test 200 (5 x 200 validation), 15 corruptions x 3 severities x 200
    assert "10,000 training image-passes" in text and "9,000 corruption forward passes" in text
    assert "1,000 validation" in text and "add --calibrate" in text


def test_calibration_times_the_smoke_trial(one_torch_thread):
    from v1sweep.config.sweep_file import load_sweep

    spec = load_sweep("smoke")
    rates = cost.calibrate(spec.trial, steps=1, warmup=1, threads=1)
    for key in ("train_s_per_image", "eval_s_per_image"):
        assert math.isfinite(rates[key]) and rates[key] > 0
    assert rates["device"] == "cpu"


def test_cli_calibrate_estimates_and_refuses_without_dry_run(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "v1sweep.cli", *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=tmp_path, timeout=300)
    done = run("run", "smoke", "--dry-run", "--calibrate", "--num-cpus", "1")
    assert done.returncode == 0, done.stderr
    assert "calibration on cpu" in done.stdout and "estimate:" in done.stdout and "on 1 concurrent slot" in done.stdout
    bad = run("run", "smoke", "--calibrate")
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1 and "Traceback" not in bad.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "v1sweep_runs").exists()


def test_gpu_hours_from_a_cpu_calibration_say_so():
    from v1sweep.config.sweep_file import ResourcesSpec

    rates = {"train_s_per_image": 0.01, "eval_s_per_image": 0.002, "device": "cpu", "threads": 1}
    text = "\n".join(cost.describe([config.from_dict(HAND)], ResourcesSpec(cpu=1, gpu=1), rates=rates, slots=1))
    assert "GPU-hours" in text and "not on the GPU the sweep requests" in text
