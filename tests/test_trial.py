"""One trial end to end: files, contract metrics, rerun/resume behaviour, the CLI, forbidden imports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from v1sweep.config import trial as cfg
from v1sweep.cli import main as cli_main
from v1sweep.corruptions.catalog import CATEGORIES, CORRUPTIONS
from v1sweep.errors import ConfigError
from v1sweep.rf.params import RFParams


pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
EVAL_CORRUPTIONS = ["gaussian_noise", "defocus_blur", "fog", "contrast"]


def tiny_config(**changes) -> cfg.TrialConfig:
    tree = {
        "name": "tiny",
        "data": {"dataset": "synthetic", "image_size": 32, "train_size": 256, "test_size": 96, "seed": 0},
        "frontend": {"n_simple": 8, "n_complex": 8, "ksize": 9, "stride": 2, "visual_degrees": 1.0},
        "model": {"backbone": "tiny", "bottleneck": 16},
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "schedule": "constant", "device": "cpu",
                  "max_batches": 3},
        "eval": {"corruptions": EVAL_CORRUPTIONS, "severities": [1, 3], "max_images": 48, "batch_size": 64},
    }
    return cfg.replace(cfg.from_dict(tree), **changes)


def quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One tiny trial shared by the tests that only read its outputs."""
    from v1sweep.trial.run import run_trial

    out = tmp_path_factory.mktemp("trial")
    config = tiny_config()
    epochs = []
    result = run_trial(config, out, on_epoch=lambda e, m: epochs.append((e, m)), log=quiet)
    return config, out, result, epochs


def test_trial_writes_every_file_and_contract_metric(finished):
    config, out, result, epochs = finished
    for name in ("summary.json", "rf_params.csv", "config.yaml", "rf_histograms.png", "eval_table.csv",
                 "checkpoint.pt"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["config"] == cfg.to_tree(config)
    assert cfg.load(out / "config.yaml") == config
    m = summary["metrics"]
    names = {"clean_acc", "clean_top5", "corruption_acc", "rf_similarity", "train_images_per_s", "wall_time_s"}
    names |= {f"corruption_acc/{n}" for n in EVAL_CORRUPTIONS}
    names |= {f"corruption_acc/{CORRUPTIONS[n]}" for n in EVAL_CORRUPTIONS}
    assert names <= set(m)
    assert any(k.startswith("rf_similarity/") for k in m)
    for key, value in m.items():
        if key.startswith(("clean_", "corruption_acc", "rf_similarity")):
            assert 0.0 <= value <= 1.0, key
    assert m["train_images_per_s"] > 0 and m["wall_time_s"] > 0
    assert result.metrics == pytest.approx(m)
    assert set(CATEGORIES) == {CORRUPTIONS[n] for n in EVAL_CORRUPTIONS}
    # the per-epoch callback saw the contract keys, epochs numbered from 1
    assert [e for e, _ in epochs] == [1, 2]
    assert {"train_loss", "train_acc", "val_acc", "lr", "images_per_s"} <= set(epochs[0][1])
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert summary["device"].startswith("cpu") and "torch" in summary["versions"]


def test_rf_params_csv_is_the_sampled_bank(finished):
    from v1sweep.rf import sample

    config, out, result, _ = finished
    fe = config.frontend
    want = sample(config.rf.strategy, fe.n_simple, fe.n_complex, seed=config.rf.seed, sf_max=fe.sf_max,
                  **config.rf.sampler_options())
    assert RFParams.from_csv(out / "rf_params.csv") == want
    assert result.rf == want


def test_eval_table_and_clean_accuracy_match_a_direct_evaluation(finished):
    """Rebuild the trained model from the checkpoint and score it with a plain loop written here."""
    from v1sweep.data import load_dataset
    from v1sweep.trial.models import build_model
    from v1sweep.trial.evaluation import read_table

    config, out, result, _ = finished
    data = load_dataset(config.data)
    model = build_model(config, result.rf, len(data.classes))
    model.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=True)["model"])
    model.eval()
    with torch.no_grad():
        x = (data.test_images.float() / 255 - 0.5) / 0.5
        pred = model(x).argmax(1)
    assert result.metrics["clean_acc"] == pytest.approx((pred == data.test_labels).float().mean().item())
    table = read_table(out / "eval_table.csv")
    assert [(r["corruption"], r["severity"]) for r in table] == [(n, s) for n in EVAL_CORRUPTIONS for s in (1, 3)]
    assert all(r["n"] == 48 for r in table)
    mean = sum(sum(r["accuracy"] for r in table if r["corruption"] == n) / 2 for n in EVAL_CORRUPTIONS) / 4
    assert result.metrics["corruption_acc"] == pytest.approx(mean)


def test_finished_trial_is_returned_without_retraining(finished):
    from v1sweep.trial.run import run_trial

    config, out, result, _ = finished
    before = (out / "summary.json").read_text()
    calls, lines = [], []
    again = run_trial(config, out, on_epoch=lambda e, m: calls.append(e), log=lines.append)
    assert calls == [] and any("already finished" in line for line in lines)
    assert again.metrics == pytest.approx(result.metrics)
    assert again.rf == result.rf
    assert (out / "summary.json").read_text() == before


def test_changed_evaluation_reuses_the_trained_checkpoint(finished, tmp_path):
    import shutil

    from v1sweep.trial.run import run_trial

    config, out, result, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    changed = cfg.replace(config, **{"eval.corruptions": ["gaussian_noise"], "eval.severities": [2]})
    calls = []
    again = run_trial(changed, copy, on_epoch=lambda e, m: calls.append(e), log=quiet)
    assert calls == []
    assert again.metrics["clean_acc"] == pytest.approx(result.metrics["clean_acc"])
    assert set(k for k in again.metrics if k.startswith("corruption_acc/")) == {
        "corruption_acc/gaussian_noise", "corruption_acc/noise"}
    # a change to the training recipe is refused rather than mixed into the old checkpoint
    with pytest.raises(ConfigError, match="checkpoint from another config"):
        run_trial(cfg.replace(config, **{"train.lr": 0.01}), copy, log=quiet)


class Interrupt(Exception):
    pass


def test_interrupted_trial_resumes_on_the_same_curve(tmp_path):
    from v1sweep.trial.run import run_trial

    config = tiny_config(**{"train.epochs": 3, "train.max_batches": 2, "eval.corruptions": []})
    straight = run_trial(config, tmp_path / "a", log=quiet)

    def stop(epoch, metrics):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_trial(config, tmp_path / "b", on_epoch=stop, log=quiet)
    assert not (tmp_path / "b" / "summary.json").exists()
    resumed_epochs = []
    resumed = run_trial(config, tmp_path / "b", on_epoch=lambda e, m: resumed_epochs.append(e), log=quiet)
    assert resumed_epochs == [2, 3]
    for key in ("train_loss", "train_acc", "val_acc"):
        assert [h[key] for h in resumed.history] == pytest.approx([h[key] for h in straight.history], rel=1e-5)
    assert resumed.metrics["clean_acc"] == pytest.approx(straight.metrics["clean_acc"])


def test_bad_eval_path_fails_before_training_and_writes_nothing(tmp_path):
    from v1sweep.errors import V1SweepError
    from v1sweep.trial.run import run_trial

    config = tiny_config(**{"eval.source": "published", "eval.path": str(tmp_path / "no" / "CIFAR-10-C")})
    calls = []
    with pytest.raises(V1SweepError, match="CIFAR-10-C"):
        run_trial(config, tmp_path / "out", on_epoch=lambda e, m: calls.append(e), log=quiet)
    assert calls == [] and not (tmp_path / "out").exists()


def test_plain_baseline_has_no_rf_metrics(tmp_path):
    from v1sweep.trial.run import run_trial

    config = tiny_config(**{"frontend.enabled": False, "train.epochs": 1, "eval.corruptions": ["fog"],
                            "eval.severities": [1]})
    result = run_trial(config, tmp_path, log=quiet)
    assert result.rf is None
    assert not any(k.startswith("rf_") for k in result.metrics)
    assert (tmp_path / "rf_params.csv").read_text().strip() == "sf,theta,phase,nx,ny,color,complex"
    assert {"clean_acc", "corruption_acc", "corruption_acc/fog", "corruption_acc/weather"} <= set(result.metrics)


def test_synthetic_training_beats_chance(tmp_path):
    """A short run on the embedded data learns: chance on its 10 classes is 0.1."""
    from v1sweep.trial.run import run_trial

    config = tiny_config(**{"data.train_size": 1500, "data.test_size": 300, "data.augment": False,
                            "train.epochs": 4, "train.batch_size": 32, "train.max_batches": None,
                            "train.schedule": "cosine", "eval.corruptions": []})
    result = run_trial(config, tmp_path, log=quiet)
    assert result.metrics["clean_acc"] > 0.4, result.history  # 0.62-0.68 over training seeds 0-2


def test_trial_path_imports_no_ray_mlflow_optuna():
    code = ("import sys, v1sweep.trial, v1sweep.trial.training, v1sweep.trial.evaluation, v1sweep.cli.train\n"
            "import v1sweep.data, v1sweep.trial.models, v1sweep.rf, v1sweep.corruptions\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow', 'optuna')"
            " or m.startswith(('v1sweep.sweep', 'v1sweep.results')))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def test_v1sweep_train_command_imports_no_ray_mlflow_optuna(tmp_path):
    """The whole `v1sweep train` command, parser included, in a fresh interpreter."""
    config = tmp_path / "t.yaml"
    config.write_text(cfg.to_yaml(tiny_config(**{"train.epochs": 1, "train.max_batches": 1, "data.train_size": 64,
                                                 "data.test_size": 32, "eval.corruptions": ["gaussian_noise"],
                                                 "eval.severities": [1], "eval.max_images": 16})))
    code = ("import sys\n"
            "from v1sweep.cli import main\n"
            f"rc = main(['train', {str(config)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow', 'optuna'))\n"
            "print('BAD=' + ','.join(bad), 'RC=%d' % rc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "BAD= RC=0"
    assert (tmp_path / "out" / "summary.json").is_file()


# ----------------------------------------------------------------------------- CLI and bundled configs
def test_cli_bad_config_exits_2_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  schedul: cosine\n")
    assert cli_main(["train", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "train.schedul" in err and "schedule" in err
    assert cli_main(["train", str(REPO / "sweeps/trials/smoke.yaml"), "--set", "train.schedule=linear",
                     "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "train.schedule" in err and "plateau" in err
    assert not (tmp_path / "o" / "summary.json").exists()


def test_cli_runs_a_trial(tmp_path, capsys):
    config = tmp_path / "t.yaml"
    config.write_text(cfg.to_yaml(tiny_config(**{"train.epochs": 1, "eval.corruptions": ["gaussian_noise"],
                                                 "eval.severities": [5]})))
    out = tmp_path / "run"
    assert cli_main(["train", str(config), "--set", "train.max_batches=2", "--out", str(out), "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["train"]["max_batches"] == 2
    assert (out / "rf_params.csv").is_file()
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "clean_acc" in printed


@pytest.mark.parametrize("name", ["smoke", "cifar10", "tinyimagenet"])
def test_bundled_trial_configs_validate(name):
    path = REPO / "sweeps" / "trials" / f"{name}.yaml"
    overrides = [] if name == "smoke" else ["data.path=/data/somewhere"]
    config = cfg.load(path, overrides)
    assert config.name == name
    if name != "smoke":
        with pytest.raises(ConfigError, match="data.path"):
            cfg.load(path)
        assert config.train.epochs == 60 and config.train.schedule == "plateau"
    else:
        assert config.data.dataset == "synthetic"


def test_trial_config_doc_lists_every_key():
    text = (REPO / "docs" / "trial_config.md").read_text()
    for key, _, _ in cfg.field_docs():
        assert f"`{key}`" in text, key


def test_bench_train_runs_both_paths(capsys):
    """The benchmark's plumbing on a tiny shape (its numbers are not checked: not a timed test)."""
    assert cli_main(["bench", "train", "--device", "cpu", "--batch", "4", "--image-size", "32", "--classes", "10",
                     "--steps", "1", "--warmup", "0", "--workers", "0", "--no-smoke"]) == 0
    out = capsys.readouterr().out
    assert "fast" in out and "naive" in out and "ratio fast / naive" in out


def test_naive_v1_formulation_matches_the_block():
    """The benchmark's baseline front-end computes the same responses, the published (4x) way."""
    from v1sweep.bench.train import naive_vone, study_config
    from v1sweep.trial.models import build_model
    from v1sweep.trial.run import sample_rf

    config = cfg.replace(study_config(32), **{"frontend.n_simple": 12, "frontend.n_complex": 12})
    model = build_model(config, sample_rf(config), 10)
    x = torch.randn(2, 3, 32, 32)
    want = model.vone(x)
    torch.testing.assert_close(naive_vone(model.vone)(x), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


@pytest.mark.slow
def test_cifar10_config_runs_on_the_shared_data(cifar10_root, tmp_path):
    from v1sweep.trial.run import run_trial

    config = cfg.load(REPO / "sweeps/trials/cifar10.yaml", [
        f"data.path={cifar10_root}", "data.train_size=256", "data.test_size=100", "train.epochs=1",
        "train.batch_size=32", "train.max_batches=2", "eval.corruptions=[gaussian_noise]", "eval.severities=[3]",
        "eval.max_images=50"])
    result = run_trial(config, tmp_path, log=quiet)
    assert result.summary["images"] == {"train": 256, "test": 100}
    assert {"clean_acc", "corruption_acc", "corruption_acc/noise", "rf_similarity"} <= set(result.metrics)
