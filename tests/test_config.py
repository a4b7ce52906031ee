"""Trial-config loading: round trips, presets, overrides, and errors that name file, key and allowed values."""
from __future__ import annotations

import dataclasses

import pytest

from v1sweep.config import trial as config
from v1sweep.errors import ConfigError
from v1sweep.config.schema import deep_merge, flatten, unflatten


def write(tmp_path, text: str, name: str = "trial.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_round_trip_through_flat_params():
    cfg = config.from_dict({})
    flat = config.to_flat(cfg)
    assert flat["rf.strategy"] == "biological"
    assert flat["frontend.ksize"] == 31
    assert config.from_flat(flat) == cfg


def test_flatten_and_unflatten_are_inverse():
    tree = {"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}
    assert flatten(tree) == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}
    assert unflatten(flatten(tree)) == tree


def test_deep_merge_overlays_nested_keys_only():
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_load_applies_overrides_with_yaml_typed_values(tmp_path):
    path = write(tmp_path, "data:\n  image_size: 64\ntrain:\n  epochs: 2\n")
    cfg = config.load(path, ["train.epochs=5", "train.lr=0.01", "rf.strategy=unif2", "data.augment=false"])
    assert (cfg.train.epochs, cfg.train.lr, cfg.rf.strategy, cfg.data.augment) == (5, 0.01, "unif2", False)


def test_study_preset_fills_the_recipe_and_explicit_keys_win(tmp_path):
    path = write(tmp_path, "train:\n  preset: study\n  epochs: 3\n")
    cfg = config.load(path)
    assert cfg.train.epochs == 3
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.schedule) == (128, 0.1, "plateau")
    assert (cfg.train.plateau_metric, cfg.train.plateau_threshold) == ("val_loss", 0.01)


def test_defaults_are_the_published_ones():
    """Network, schedule and RF-table defaults reproduce the published work (docs/fidelity.md)."""
    cfg = config.from_dict({})
    assert (cfg.model.bottleneck_norm, cfg.model.stem) == ("none", "published")
    assert (cfg.train.plateau_metric, cfg.train.plateau_threshold) == ("val_loss", 0.01)
    assert cfg.rf.sf_truncation == "drop" and cfg.rf.sampler_options()["sf_truncation"] == "drop"
    study = config.from_dict({"train": {"preset": "study"}}).train
    assert (study.schedule, study.plateau_metric, study.plateau_factor, study.plateau_patience,
            study.plateau_threshold) == ("plateau", "val_loss", 0.1, 5, 0.01)


@pytest.mark.parametrize("preset, want", [("tinyimagenet2023", (1.0, 1.0)), ("vonenet2020", (0.35, 0.07))])
def test_noise_defaults_follow_the_preset_and_explicit_values_win(preset, want):
    cfg = config.from_dict({"rf": {"preset": preset}, "frontend": {"noise": "neuronal"}})
    assert (cfg.frontend.noise_scale, cfg.frontend.noise_level) == (None, None)
    assert cfg.noise_params == want
    # a sweep that changes the preset gets that preset's noise, not the base config's
    other = "vonenet2020" if preset == "tinyimagenet2023" else "tinyimagenet2023"
    assert config.replace(cfg, **{"rf.preset": other}).noise_params != want
    explicit = config.replace(cfg, **{"frontend.noise_scale": 0.5})
    assert explicit.noise_params == (0.5, want[1])


def test_replace_validates_the_variant():
    cfg = config.from_dict({})
    assert config.replace(cfg, **{"rf.strategy": "unif3"}).rf.strategy == "unif3"
    with pytest.raises(ConfigError, match="rf.alpha"):
        config.replace(cfg, **{"rf.alpha": 1.5})


@pytest.mark.parametrize("text, key, fragment", [
    ("rf:\n  strategy: biologcal\n", "rf.strategy", "did you mean 'biological'"),
    ("train:\n  epocs: 3\n", "train.epocs", "did you mean 'epochs'"),
    ("rf:\n  alpha: 1.5\n", "rf.alpha", "allowed: [0, 1]"),
    ("frontend:\n  ksize: 30\n", "frontend.ksize", "must be odd"),
    ("train:\n  epochs: -1\n", "train.epochs", "out of range"),
    ("train:\n  lr: fast\n", "train.lr", "expected a number"),
    ("eval:\n  severities: [1, 6]\n", "eval.severities", "allowed: [1, 5]"),
    ("eval:\n  corruptions: [gaussian_nois]\n", "eval.corruptions", "did you mean 'gaussian_noise'"),
    ("data:\n  dataset: cifar10\n", "data.path", "needs a path"),
    ("frontend:\n  n_simple: 0\n  n_complex: 0\n", "frontend.n_simple", "at least one channel"),
    ("data:\n  image_size: 32\n", "frontend.sf_max", "visual_degrees <= 1.39"),
    ("frontend: [1, 2]\n", "frontend", "expected a mapping"),
])
def test_bad_values_name_file_key_and_allowed_values(tmp_path, text, key, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message
    assert fragment in message


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "train:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+") as info:
        config.load(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.yaml")


def test_yaml_tags_are_never_evaluated(tmp_path):
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo owned']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        config.load(path)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        config.parse_overrides(["train.epochs"])


def test_configs_are_frozen():
    cfg = config.from_dict({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3  # type: ignore[misc]


def test_field_docs_cover_every_leaf_key():
    keys = {row[0] for row in config.field_docs()}
    assert keys == set(config.to_flat(config.from_dict({})))


FAITHFUL_KEYS = ("model.bottleneck_norm", "model.stem", "rf.sf_truncation", "rf.preset", "train.schedule",
                 "train.plateau_metric", "train.plateau_factor", "train.plateau_patience", "train.plateau_threshold",
                 "frontend.noise_scale", "frontend.noise_level")


@pytest.mark.parametrize("name", ["study_cifar10_cpu", "study_cifar10_cpu_baseline"])
def test_cpu_reference_study_deviates_only_by_its_documented_schedule(name, tmp_path):
    """The CPU reference study (sweeps/study_cifar10_cpu.yaml) keeps the faithful defaults except
    train.schedule (cosine: its header says why), and pairs seeds: training seed = Gabor seed."""
    from pathlib import Path

    from v1sweep.config import sweep_file as sweep_spec

    repo = Path(__file__).resolve().parents[1]
    spec = sweep_spec.load_sweep(repo / "sweeps" / f"{name}.yaml", data_path=str(tmp_path))
    base, defaults = spec.base_flat(), config.to_flat(config.from_dict({}))
    kept = [k for k in FAITHFUL_KEYS if k != "train.schedule"]
    assert {k: base[k] for k in kept} == {k: defaults[k] for k in kept}
    assert base["train.schedule"] == "cosine" and "cosine" in (repo / "sweeps" / f"{name}.yaml").read_text() + \
        (repo / "sweeps" / "trials" / "cifar10_cpu.yaml").read_text()
    assert "train.seed,rf.seed" in spec.space
    assert base["frontend.enabled"] is (name == "study_cifar10_cpu")
    assert spec.resources.cpu <= 2 and not spec.resources.gpu


@pytest.mark.parametrize("name", ["paper", "paper_cifar10", "variants", "variants_cifar10", "interpolation",
                                  "interpolation_cifar10", "frontend", "adversarial_cifar10"])
def test_bundled_study_sweeps_keep_the_published_defaults(name, tmp_path):
    """The study's sweeps (Tiny ImageNet and CIFAR-10) never override the faithful defaults away."""
    from pathlib import Path

    from v1sweep.config import sweep_file as sweep_spec

    repo = Path(__file__).resolve().parents[1]
    spec = sweep_spec.load_sweep(repo / "sweeps" / f"{name}.yaml", data_path=str(tmp_path))
    base, defaults = spec.base_flat(), config.to_flat(config.from_dict({}))
    assert {k: base[k] for k in FAITHFUL_KEYS} == {k: defaults[k] for k in FAITHFUL_KEYS}
    searched = set(spec.parameters()) & set(FAITHFUL_KEYS)
    assert searched <= ({"frontend.noise_scale"} if name == "frontend" else set())
