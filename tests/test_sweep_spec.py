"""Sweep files and search-space fragments: the bundled ones load and expand as their grids say;
bad files fail with the file, the key and what is allowed. No Ray, no MLflow."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from v1sweep.config import trial as cfg
from v1sweep.errors import ConfigError
from v1sweep.config.sweep_file import REPO_ROOT, expand, from_dict, load_sweep

SWEEPS = REPO_ROOT / "sweeps"
FRAGMENTS = REPO_ROOT / "search_spaces"
NEEDS_DATA = {"paper", "variants", "interpolation", "frontend", "paper_cifar10", "variants_cifar10",
              "interpolation_cifar10", "adversarial_cifar10", "study_cifar10_cpu", "study_cifar10_cpu_baseline"}
TINY_TRIAL = {"data": {"dataset": "synthetic", "image_size": 32}, "frontend": {"visual_degrees": 1.0}}


def write(path: Path, data: dict | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def sweep(tmp_path: Path, **keys) -> Path:
    data = {"name": "t", "trial": TINY_TRIAL, "space": {"rf.strategy": {"grid": ["biological", "unif1"]}}}
    data.update(keys)
    return write(tmp_path / "s.yaml", data)


# ------------------------------------------------------------------------------ bundled files
def _grid_reference(path: Path) -> int:
    """Trials of a grid sweep, counted from the raw YAML (own space overrides includes)."""
    raw = yaml.safe_load(path.read_text())
    space = {}
    for inc in raw.get("include", []):
        space.update(yaml.safe_load((REPO_ROOT / inc).read_text())["space"])
    space.update(raw.get("space", {}))
    sizes = [len(d["grid"]) for d in space.values() if "grid" in d]
    return raw.get("search", {}).get("num_samples", 1) * int(__import__("math").prod(sizes))


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.yaml")), ids=lambda p: p.stem)
def test_bundled_sweeps_load_and_expand(path):
    data_path = "/data/somewhere" if path.stem in NEEDS_DATA else None
    spec = load_sweep(path, data_path=data_path)
    assert spec.name == path.stem
    trials = expand(spec)
    if spec.search.algorithm == "grid":
        assert len(trials) == _grid_reference(path)
        assert len({tuple(sorted(t.items())) for t in trials}) == len(trials) // spec.search.num_samples
    else:
        assert len(trials) == spec.search.num_samples
    if data_path:
        assert spec.trial.data.path == data_path
    # every grid point is a valid trial config
    for params in trials[:50]:
        grid_only = {k: v for k, v in params.items() if spec.space[k].kind == "grid"}
        spec.trial_config_for(grid_only)


def test_bundled_sweeps_that_need_data_say_how(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_sweep(SWEEPS / "paper_cifar10.yaml")
    msg = str(err.value)
    assert "paper_cifar10.yaml" in msg and "trial.data.path" in msg and "--data-path" in msg


@pytest.mark.parametrize("path", sorted(FRAGMENTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_fragments_are_valid_and_includable(tmp_path, path):
    algo = "random" if any("grid" not in d for d in yaml.safe_load(path.read_text())["space"].values()) else "grid"
    trial = {"data": {"dataset": "synthetic", "image_size": 64}}
    spec = load_sweep(write(tmp_path / "s.yaml", {"name": "f", "trial": trial, "include": [str(path)],
                                                  "search": {"algorithm": algo}}))
    assert set(spec.space) == set(yaml.safe_load(path.read_text())["space"])
    assert str(path) in spec.includes


def test_smoke_sweep_is_small_and_real():
    spec = load_sweep(SWEEPS / "smoke.yaml")
    trials = expand(spec)
    assert len(trials) == 4
    assert {t["rf.strategy"] for t in trials} == {"biological", "unif1"}
    assert spec.trial.data.dataset == "synthetic" and spec.trial.train.device == "cpu"
    assert spec.trial_function == "v1sweep.trial:run_trial"


def test_grid_expansion_matches_cartesian_product(tmp_path):
    path = sweep(tmp_path, space={"rf.strategy": {"grid": ["biological", "unif1", "unif2"]},
                                  "train.seed": {"grid": [0, 1]}, "frontend.k_exc": {"uniform": [10, 30]}},
                 search={"algorithm": "grid", "num_samples": 2})
    spec = load_sweep(path)
    trials = expand(spec)
    # Ray Tune's order: the first key varies fastest
    ref = [{"rf.strategy": s, "train.seed": t} for t, s in itertools.product([0, 1], ["biological", "unif1", "unif2"])]
    assert [{k: t[k] for k in ("rf.strategy", "train.seed")} for t in trials] == ref * 2
    assert all(t["frontend.k_exc"] == "uniform(10, 30)" for t in trials)


def test_tied_keys_set_every_parameter(tmp_path):
    spec = load_sweep(sweep(tmp_path, space={"train.seed,rf.seed": {"grid": [3, 4]}}))
    conf = spec.trial_config_for({"train.seed,rf.seed": 4})
    assert conf.train.seed == 4 and conf.rf.seed == 4
    assert spec.parameters() == ["train.seed", "rf.seed"]


# ------------------------------------------------------------------------------ overrides, paths, hash
def test_set_overrides_route_to_trial_and_sweep(tmp_path):
    spec = load_sweep(sweep(tmp_path), ["trial.train.epochs=2", "eval.max_images=10", "search.num_samples=3",
                                        "resources.gpu=0.5", "name=other"])
    assert spec.trial.train.epochs == 2 and spec.trial.eval.max_images == 10
    assert spec.search.num_samples == 3 and spec.resources.gpu == 0.5 and spec.name == "other"


def test_set_of_swept_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="rf.strategy is varied by the search space"):
        load_sweep(sweep(tmp_path), ["rf.strategy=unif2"])


def test_unknown_override_suggests(tmp_path):
    with pytest.raises(ConfigError, match=r"--set serch.num_samples: unknown key \(did you mean 'search'\?\)"):
        load_sweep(sweep(tmp_path), ["serch.num_samples=3"])


def test_relative_data_paths_become_absolute_against_cwd(tmp_path, monkeypatch):
    sub = tmp_path / "work"
    sub.mkdir()
    monkeypatch.chdir(sub)
    spec = load_sweep(sweep(tmp_path, trial={**TINY_TRIAL, "data": {"dataset": "cifar10", "path": "data/c10",
                                                                      "image_size": 32}}))
    assert spec.trial.data.path == str(sub / "data" / "c10")
    spec = load_sweep(sweep(tmp_path), data_path="rel/dir")
    assert spec.trial.data.path == str(sub / "rel" / "dir")


def test_trial_config_file_is_the_base(tmp_path):
    write(tmp_path / "trials" / "base.yaml", {"data": {"dataset": "synthetic", "image_size": 32},
                                              "frontend": {"visual_degrees": 1.0}, "train": {"epochs": 7}})
    spec = load_sweep(write(tmp_path / "s.yaml", {"name": "t", "trial_config": "trials/base.yaml",
                                                  "trial": {"train": {"lr": 0.01}},
                                                  "space": {"rf.seed": {"grid": [0, 1]}}}))
    assert spec.trial.train.epochs == 7 and spec.trial.train.lr == 0.01


def test_spec_hash_tracks_what_trials_compute(tmp_path):
    a = load_sweep(sweep(tmp_path))
    assert load_sweep(sweep(tmp_path)).spec_hash == a.spec_hash
    assert load_sweep(sweep(tmp_path, tracking={"experiment": "x"})).spec_hash == a.spec_hash
    assert load_sweep(sweep(tmp_path), ["train.epochs=3"]).spec_hash != a.spec_hash
    b = load_sweep(sweep(tmp_path, space={"rf.strategy": {"grid": ["biological", "unif2"]}}))
    assert b.spec_hash != a.spec_hash


def test_resolved_spec_round_trips(tmp_path):
    spec = load_sweep(SWEEPS / "frontend.yaml", data_path="/data/tin")
    again = from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict())), file="sweep.yaml")
    assert again.spec_hash == spec.spec_hash
    assert again.space == spec.space and again.trial == spec.trial


# ------------------------------------------------------------------------------ bad sweep files
def expect_error(path_or_data, tmp_path, *fragments, overrides=()):
    path = path_or_data if isinstance(path_or_data, Path) else sweep(tmp_path, **path_or_data)
    with pytest.raises(ConfigError) as err:
        load_sweep(path, overrides)
    msg = str(err.value)
    for piece in fragments:
        assert piece in msg, f"{piece!r} not in {msg!r}"
    return msg


def test_unknown_top_level_key_suggests(tmp_path):
    expect_error({"serch": {"algorithm": "grid"}}, tmp_path, "s.yaml", "serch", "did you mean 'search'",
                 "valid keys:")


def test_unknown_section_key_suggests(tmp_path):
    expect_error({"scheduler": {"type": "asha", "grace_periode": 2}}, tmp_path, "scheduler.grace_periode",
                 "did you mean 'grace_period'")


def test_unknown_algorithm_lists_allowed(tmp_path):
    expect_error({"search": {"algorithm": "optuan"}}, tmp_path, "search.algorithm", "did you mean 'optuna'",
                 "grid, random, optuna, optuna-multi")


def test_unknown_space_key_suggests(tmp_path):
    expect_error({"space": {"rf.strategi": {"grid": ["biological"]}}}, tmp_path, "space.rf.strategi",
                 "did you mean 'rf.strategy'")


def test_space_key_naming_a_section(tmp_path):
    expect_error({"space": {"frontend": {"grid": [1]}}}, tmp_path, "space.frontend", "is a section")


def test_unknown_domain_suggests(tmp_path):
    expect_error({"space": {"frontend.k_exc": {"unifrom": [1, 2]}}}, tmp_path, "space.frontend.k_exc",
                 "did you mean 'uniform'", "choice, grid, uniform, loguniform, randint, quniform")


def test_alpha_range_outside_unit_interval(tmp_path):
    expect_error({"space": {"rf.alpha": {"uniform": [0.0, 1.5]}}, "search": {"algorithm": "random"}}, tmp_path,
                 "space.rf.alpha", "upper bound", "1.5 is out of range", "[0, 1]")


def test_grid_value_not_allowed(tmp_path):
    expect_error({"space": {"rf.strategy": {"grid": ["biological", "biolgical"]}}}, tmp_path,
                 "space.rf.strategy", "'biolgical' is not allowed", "did you mean 'biological'")


def test_even_kernel_size_in_grid(tmp_path):
    expect_error({"space": {"frontend.ksize": {"grid": [15, 16]}}}, tmp_path, "space.frontend.ksize", "must be odd")


def test_bad_bounds(tmp_path):
    expect_error({"space": {"frontend.k_exc": {"loguniform": [0, 10]}}, "search": {"algorithm": "random"}},
                 tmp_path, "loguniform needs low > 0")
    expect_error({"space": {"frontend.k_exc": {"uniform": [5, 5]}}, "search": {"algorithm": "random"}},
                 tmp_path, "low < high")
    expect_error({"space": {"frontend.k_exc": {"randint": [1, 5]}}, "search": {"algorithm": "random"}},
                 tmp_path, "randint samples integers")
    expect_error({"space": {"rf.strategy": {"uniform": [0, 1]}}, "search": {"algorithm": "random"}},
                 tmp_path, "not numeric")
    expect_error({"space": {"rf.seed": {"grid": []}}}, tmp_path, "grid needs at least one value")
    expect_error({"space": {"train.epochs": {"randint": [-2, 3]}}, "search": {"algorithm": "random"}},
                 tmp_path, "space.train.epochs", "lower bound", "out of range")


def test_invalid_combination_names_the_point(tmp_path):
    msg = expect_error({"space": {"frontend.visual_degrees": {"grid": [1.0, 4.0]}}}, tmp_path, "space",
                       "frontend.visual_degrees=4", "Nyquist")
    assert "frontend.sf_max" in msg


def test_empty_search_space(tmp_path):
    expect_error({"space": {}}, tmp_path, "s.yaml", "space", "search space is empty")


def test_grid_algorithm_needs_a_grid(tmp_path):
    expect_error({"space": {"frontend.k_exc": {"uniform": [1, 2]}}}, tmp_path, "search.algorithm",
                 "needs at least one grid")


def test_fractional_gpu_above_one(tmp_path):
    expect_error({"resources": {"gpu": 1.5}}, tmp_path, "resources.gpu", "1.5 GPUs is not allowed")
    assert load_sweep(sweep(tmp_path, resources={"gpu": 0.25})).resources.gpu == 0.25
    assert load_sweep(sweep(tmp_path, resources={"gpu": 2})).resources.gpu == 2


def test_optuna_rules(tmp_path):
    expect_error({"search": {"algorithm": "optuna"}, "space": {"rf.strategy": {"choice": ["unif1"]}}},
                 tmp_path, "search.metric", "optuna needs a metric")
    expect_error({"search": {"algorithm": "optuna", "metric": "corruption_acc"}}, tmp_path,
                 "cannot take grid domains", "rf.strategy")
    expect_error({"search": {"algorithm": "optuna", "metric": "corruption_ac"},
                  "space": {"rf.strategy": {"choice": ["unif1"]}}}, tmp_path, "did you mean 'corruption_acc'")
    expect_error({"search": {"algorithm": "optuna-multi", "metrics": ["clean_acc"]},
                  "space": {"rf.strategy": {"choice": ["unif1"]}}}, tmp_path, "two or more objectives")
    expect_error({"search": {"algorithm": "optuna-multi", "metrics": ["clean_acc", "corruption_acc"],
                             "modes": ["max"]}, "space": {"rf.strategy": {"choice": ["unif1"]}}},
                 tmp_path, "1 modes for 2 metrics")


def test_asha_metric_is_per_epoch(tmp_path):
    expect_error({"scheduler": {"type": "asha", "metric": "corruption_acc"}}, tmp_path, "scheduler.metric",
                 "val_acc")


def test_include_cycle_names_the_chain(tmp_path):
    write(tmp_path / "a.yaml", {"include": ["b.yaml"], "space": {"rf.seed": {"grid": [0]}}})
    write(tmp_path / "b.yaml", {"include": ["a.yaml"], "space": {"train.seed": {"grid": [0]}}})
    msg = expect_error({"include": ["a.yaml"]}, tmp_path, "include cycle", "a.yaml -> b.yaml -> a.yaml")
    assert "b.yaml" in msg.split(":")[0] or "b.yaml" in msg


def test_include_missing_lists_fragments(tmp_path):
    expect_error({"include": ["seedz.yaml"]}, tmp_path, "include", "not found", "did you mean 'seeds.yaml'",
                 "strategies.yaml")


def test_including_a_sweep_file_is_refused(tmp_path):
    write(tmp_path / "other.yaml", {"name": "x", "space": {"rf.seed": {"grid": [0]}}})
    expect_error({"include": ["other.yaml"]}, tmp_path, "is a sweep file, not a search-space fragment")


def test_overlapping_tied_keys(tmp_path):
    expect_error({"space": {"train.seed,rf.seed": {"grid": [0, 1]}, "rf.seed": {"grid": [2]}}}, tmp_path,
                 "space.rf.seed", "overlaps 'train.seed,rf.seed'")


def test_bad_fragment_key_names_the_fragment(tmp_path):
    frag = write(tmp_path / "frag.yaml", {"spcae": {"rf.seed": {"grid": [0]}}})
    expect_error({"include": ["frag.yaml"]}, tmp_path, str(frag), "spcae", "did you mean 'space'")


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path / "s.yaml", "name: t\nspace: {rf.strategy: [grid: \n")
    expect_error(path, tmp_path, "s.yaml", "malformed YAML", "line")


def test_missing_name_and_bad_trial_function(tmp_path):
    expect_error(write(tmp_path / "s.yaml", {"space": {"rf.seed": {"grid": [0]}}}), tmp_path, "name",
                 "needs a name")
    expect_error({"trial_function": "not a ref"}, tmp_path, "trial_function", "package.module:function")


def test_trial_section_errors_point_into_trial(tmp_path):
    expect_error({"trial": {**TINY_TRIAL, "train": {"epochs": -1}}}, tmp_path, "trial.train.epochs",
                 "out of range")
    expect_error({"trial": {**TINY_TRIAL, "eval": {"severities": [6]}}}, tmp_path, "trial.eval.severities",
                 "out of range")


def test_base_config_validates_like_trial_configs(tmp_path):
    spec = load_sweep(SWEEPS / "smoke.yaml")
    again = cfg.from_dict(cfg.to_tree(spec.trial))
    assert again == spec.trial
