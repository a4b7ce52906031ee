"""The trial records what its corrupted set was made with: `eval.frost` and `eval.storage` are
config fields (so MLflow params, via the flat config) and `summary.json` names the frost texture
source actually used and the storage format, which differ only when the photographs are missing."""
from __future__ import annotations

import json

import pytest

from v1sweep.config import trial as cfg
from v1sweep.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(**eval_changes) -> cfg.TrialConfig:
    tree = {
        "name": "tiny",
        "data": {"dataset": "synthetic", "image_size": 32, "train_size": 64, "test_size": 32, "seed": 0},
        "frontend": {"n_simple": 8, "n_complex": 8, "ksize": 9, "stride": 2, "visual_degrees": 1.0},
        "model": {"backbone": "tiny", "bottleneck": 16},
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "schedule": "constant", "device": "cpu",
                  "max_batches": 1},
        "eval": {"corruptions": ["frost", "contrast"], "severities": [2], "max_images": 16, "batch_size": 32,
                 **eval_changes},
    }
    return cfg.from_dict(tree)


def test_eval_frost_and_storage_are_validated_params():
    default = tiny_config()
    assert default.eval.frost == "published" and default.eval.storage == "published"
    flat = cfg.to_flat(default)  # what the sweep logs as the trial's MLflow params
    assert flat["eval.frost"] == "published" and flat["eval.storage"] == "published"
    assert cfg.to_flat(tiny_config(frost="procedural", storage="lossless"))["eval.frost"] == "procedural"
    with pytest.raises(ConfigError, match="eval.frost"):
        tiny_config(frost="photos")
    with pytest.raises(ConfigError, match="eval.storage"):
        tiny_config(storage="png")


def test_trial_summary_records_the_frost_source_and_storage(tmp_path, monkeypatch, capsys):
    from v1sweep.corruptions import textures
    from v1sweep.trial.run import run_trial

    result = run_trial(tiny_config(), tmp_path / "a", log=lambda m: None)
    assert result.summary["corruption_set"]["frost"] == "imagecorruptions-photos"
    assert result.summary["corruption_set"]["storage"] == "uint8-truncate"
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["corruption_set"]["frost"] == \
        "imagecorruptions-photos"
    # photographs missing (a broken install): the trial still runs, warns on stderr, records it
    monkeypatch.setattr(textures, "frost_dir", lambda: None)
    monkeypatch.setattr(textures, "_warned", set())
    with pytest.warns(RuntimeWarning, match="PROCEDURAL"):
        fallback = run_trial(tiny_config(), tmp_path / "b", log=lambda m: None)
    assert fallback.summary["corruption_set"]["frost"] == "procedural-1"
    assert "WARNING" in capsys.readouterr().err
