"""Contract tests for search algorithms and schedulers (`v1sweep.sweep.algorithms` / `.schedulers`).

`check_search_algorithm(name)` raises `AssertionError` (or the builder's own error) unless the
registered algorithm `name`:

* declares complete metadata, and options that are keys of ``search:`` with the schema's types;
* is accepted by a sweep file (`v1sweep.config.sweep_file.from_dict`) with its default options
  and passes `v1sweep.sweep.engine.checked_search_algorithm` (it builds and Ray Tune can pickle it);
* suggests configurations inside a tiny search space, and a pickled copy suggests the same ones;
* has bad options refused with a `ConfigError` naming the key (out-of-range and unknown values,
  missing objectives).

`check_scheduler(name)` checks the same of a scheduler (metadata, accepted by a sweep file, builds
with its defaults, pickles, out-of-range options refused). `SearchAlgorithmContract` / `SchedulerContract` run them for every
registered name under pytest (subclass them in a test module; set `names` to narrow).
Building imports Ray (and Optuna for its samplers); no Ray cluster is started.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from v1sweep.errors import ConfigError
from v1sweep.sweep.algorithms import GRID_DOMAINS, OBJECTIVES, SEARCH_ALGORITHMS, SEARCH_OPTIONS
from v1sweep.sweep.schedulers import SCHEDULER_OPTIONS, SCHEDULERS

TINY_TRIAL = {"data": {"dataset": "synthetic", "image_size": 32}, "frontend": {"visual_degrees": 1.0}}
OBJECTIVE_METRICS = ("clean_acc", "corruption_acc")
SUGGESTIONS = 4


def tiny_sweep(algorithm: str, **search: Any) -> dict[str, Any]:
    """A sweep file (as a dict) for `algorithm` with its default options over a tiny space."""
    meta = SEARCH_ALGORITHMS.meta(algorithm)
    space: dict[str, Any] = {"train.lr": {"loguniform": [0.001, 0.1]}}
    space["rf.strategy"] = ({"choice": ["biological", "unif1"]} if meta["grid_domains"] == "refused"
                            else {"grid": ["biological", "unif1"]})
    defaults: dict[str, Any] = {"algorithm": algorithm, "num_samples": 2, "seed": 0}
    if meta["objectives"] == "single":
        defaults["metric"] = OBJECTIVE_METRICS[0]
    elif meta["objectives"] == "multi":
        defaults["metrics"] = list(OBJECTIVE_METRICS)
    return {"name": f"check-{algorithm}", "trial": TINY_TRIAL, "space": space, "search": {**defaults, **search}}


def check_search_metadata(name: str) -> None:
    from v1sweep.config.sweep_file import SearchSpec

    meta = SEARCH_ALGORITHMS.meta(name)
    assert isinstance(meta["description"], str) and meta["description"].strip(), f"{name}: no description"
    assert meta["objectives"] in OBJECTIVES, f"{name}: objectives {meta['objectives']!r} not in {OBJECTIVES}"
    assert meta["grid_domains"] in GRID_DOMAINS, f"{name}: grid_domains {meta['grid_domains']!r} not in {GRID_DOMAINS}"
    assert isinstance(meta["needs_optuna"], bool), f"{name}: needs_optuna must be True or False"
    assert callable(SEARCH_ALGORITHMS.get(name)), f"{name}: the builder is not callable"
    for option in meta["options"]:
        assert option in SEARCH_OPTIONS, f"{name}: option {option!r} is not a search key ({', '.join(SEARCH_OPTIONS)})"
    for key, option in SEARCH_OPTIONS.items():  # the catalogue and the sweep file's schema agree
        assert SearchSpec.__annotations__[key] == option.type, f"search.{key}: {option.type} vs the schema"


def check_search_algorithm(name: str) -> None:
    """Raise unless search algorithm `name` keeps the contract (see the module doc)."""
    from ray import cloudpickle

    from v1sweep.config import sweep_file
    from v1sweep.sweep.engine import checked_search_algorithm
    from v1sweep.sweep.space import param_space

    check_search_metadata(name)
    spec = sweep_file.from_dict(tiny_sweep(name))
    original, _ = checked_search_algorithm(spec, 1)
    copy = cloudpickle.loads(cloudpickle.dumps(original))
    space = param_space(spec)
    first = suggestions(original, space, spec.search.objectives)
    assert len(first) >= 2, f"{name}: suggested {len(first)} configuration(s), expected at least 2"
    for config in first:
        for key, domain in spec.space.items():
            assert key in config, f"{name}: suggestion {config} lacks {key}"
            value = config[key]
            if domain.discrete:
                assert value in domain.values, f"{name}: {key}={value!r} not in {domain.values}"
            else:
                lo, hi = domain.bounds[0], domain.bounds[1]
                assert lo <= value <= hi and math.isfinite(value), f"{name}: {key}={value!r} outside [{lo}, {hi}]"
    assert suggestions(copy, space, spec.search.objectives) == first, f"{name}: a pickled copy suggests otherwise"
    check_bad_search_options(name)


def suggestions(search_alg: Any, space: Mapping[str, Any], objectives: Sequence[tuple[str, str]],
                n: int = SUGGESTIONS) -> list[dict[str, Any]]:
    """Up to `n` configurations from a Ray Tune search algorithm or searcher, each trial completed
    (with made-up metrics) before the next is asked for."""
    if hasattr(search_alg, "add_configurations"):  # a SearchAlgorithm (BasicVariantGenerator)
        search_alg.add_configurations({"check": {"run": _noop, "config": dict(space), "num_samples": 2}})
        out: list[dict[str, Any]] = []
        while len(out) < n and (trial := search_alg.next_trial()) is not None:
            out.append(dict(trial.config))
        return out
    search_alg.set_search_properties(None, None, dict(space))  # a Searcher (Optuna behind a limiter)
    out = []
    for i in range(n):
        trial_id = f"check{i}"
        config = search_alg.suggest(trial_id)
        assert isinstance(config, dict), f"suggest returned {config!r}"
        out.append(config)
        search_alg.on_trial_complete(trial_id, result={m: 0.1 * (i + j + 1) for j, (m, _) in enumerate(objectives)})
    return out


def _noop(config: dict) -> None:
    """The trainable a `BasicVariantGenerator` is given (never run)."""


def _refused(sweep: Mapping[str, Any], key: str) -> None:
    from v1sweep.config import sweep_file

    try:
        sweep_file.from_dict(sweep)
    except ConfigError as exc:
        assert key in str(exc), f"the error names {exc} instead of {key}"
        return
    raise AssertionError(f"{dict(sweep['search'])} was accepted; expected a ConfigError naming {key}")


def check_bad_search_options(name: str) -> None:
    """Out-of-range or unknown option values, missing objectives and a misspelt name are refused."""
    meta = SEARCH_ALGORITHMS.meta(name)
    for key in meta["options"]:
        option = SEARCH_OPTIONS[key]
        if option.range is not None and option.range[0] is not None:
            _refused(tiny_sweep(name, **{key: option.range[0] - 1}), f"search.{key}")
        if option.choices is not None:
            bad = ["bogus"] if option.type.startswith("tuple") else "bogus"
            _refused(tiny_sweep(name, **{key: bad}), f"search.{key}")
    if meta["objectives"] == "single":
        _refused({**tiny_sweep(name), "search": {"algorithm": name}}, "search.metric")
    if meta["objectives"] == "multi":
        _refused(tiny_sweep(name, metrics=[OBJECTIVE_METRICS[0]]), "search.metrics")
    misspelt = tiny_sweep(name)
    _refused({**misspelt, "search": {**misspelt["search"], "algorithm": name + "x"}}, "search.algorithm")


def check_scheduler(name: str) -> None:
    """Raise unless scheduler `name` has complete metadata, is accepted by a sweep file, builds
    with its default options and pickles, and out-of-range options are refused."""
    from ray import cloudpickle

    from v1sweep.config import sweep_file
    from v1sweep.config.sweep_file import SchedulerSpec
    from v1sweep.sweep.engine import scheduler

    meta = SCHEDULERS.meta(name)
    assert isinstance(meta["description"], str) and meta["description"].strip(), f"{name}: no description"
    for option in meta["options"]:
        assert option in SCHEDULER_OPTIONS, f"{name}: option {option!r} is not a scheduler key"
    for key, opt in SCHEDULER_OPTIONS.items():  # the catalogue and the sweep file's schema agree
        assert SchedulerSpec.__annotations__[key] == opt.type, f"scheduler.{key}: {opt.type} vs the schema"
    for hook in ("check", "summary"):
        assert meta.get(hook) is None or callable(meta[hook]), f"{name}: {hook} must be callable"
    spec = sweep_file.from_dict({**tiny_sweep("grid"), "scheduler": {"type": name}})
    built = scheduler(spec)
    assert built is not None, f"{name}: the builder returned None"
    cloudpickle.loads(cloudpickle.dumps(built))
    _refused({**tiny_sweep("grid"), "scheduler": {"type": name + "x"}}, "scheduler.type")
    for key in meta["options"]:
        option = SCHEDULER_OPTIONS[key]
        if option.range is not None and option.range[0] is not None:
            _refused({**tiny_sweep("grid"), "scheduler": {"type": name, key: option.range[0] - 1}}, f"scheduler.{key}")


class SearchAlgorithmContract:
    """Subclass in a test module: one test per registered search algorithm (or `names`)."""

    names: Sequence[str] | None = None

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "algorithm" in metafunc.fixturenames:
            metafunc.parametrize("algorithm", list(self.names or SEARCH_ALGORITHMS.names()))

    def test_metadata(self, algorithm: str) -> None:
        check_search_metadata(algorithm)

    def test_suggests_pickles_and_refuses_bad_options(self, algorithm: str) -> None:
        check_search_algorithm(algorithm)


class SchedulerContract:
    """Subclass in a test module: one test per registered scheduler (or `names`)."""

    names: Sequence[str] | None = None

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "scheduler_name" in metafunc.fixturenames:
            metafunc.parametrize("scheduler_name", list(self.names or SCHEDULERS.names()))

    def test_builds_with_defaults(self, scheduler_name: str) -> None:
        check_scheduler(scheduler_name)
