"""The contract every RF sampling strategy keeps: `check_strategy(name)` and `StrategyContract`.

A strategy registered anywhere (``@STRATEGIES.register(...)`` in `v1sweep.rf.sampling` or a user's
own file) must: carry complete metadata whose option schema a trial config can set; sample valid
RF parameters with its example options (right shape, dtypes and ranges, inside the tables'
support); give the same sample for the same seed and another for another seed; and reject options
outside its schema with a ValueError naming the option.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from v1sweep.rf import catalog
from v1sweep.rf.catalog import Option

N_SIMPLE, N_COMPLEX = 40, 30


def check_metadata(name: str) -> None:
    """AssertionError unless `name`'s metadata is complete and its option schema is consistent."""
    from v1sweep.config.trial import RFConfig

    meta = catalog.meta(name)
    assert isinstance(meta.get("description"), str) and meta["description"].strip(), f"{name}: no description"
    opts = meta.get("options")
    assert isinstance(opts, tuple) and all(isinstance(o, Option) for o in opts), \
        f"{name}: metadata 'options' must be a tuple of v1sweep.rf.catalog.Option"
    control = meta.get("uniform_control", "missing")
    assert control is None or (isinstance(control, int) and not isinstance(control, bool)), \
        f"{name}: metadata 'uniform_control' must be None or its place among the uniform controls"
    assert isinstance(meta.get("example"), dict), f"{name}: metadata 'example' (a dict of options) missing"
    names = [o.name for o in catalog.options(name)]
    assert len(names) == len(set(names)), f"{name}: option names repeat: {names}"
    example = catalog.example(name)
    extra = sorted(set(example) - set(names))
    assert not extra, f"{name}: example has options not in the schema: {extra}"
    fields = {f.name for f in dataclasses.fields(RFConfig)}
    for opt in catalog.options(name):
        assert opt.type in (int, float, str, object), f"{name}: option {opt.name!r} has type {opt.type!r}"
        assert opt.config_key is None or opt.config_key in fields, \
            f"{name}: option {opt.name!r} is set from rf.{opt.config_key}, which trial configs do not have"
        assert not opt.required or opt.name in example, f"{name}: example lacks required option {opt.name!r}"
        opt.check(opt.default)
        opt.check(example.get(opt.name))
    assert name in catalog.strategy_names()


def check_sample(name: str, preset: str | None = None, **options: Any) -> None:
    """AssertionError unless `name` draws valid, seeded RF parameters with `options` (default: its example)."""
    from v1sweep.rf.sampling import recipe_for, sample

    opts = {**catalog.example(name), **options}
    if preset is not None:
        opts["preset"] = preset
    rf = sample(name, N_SIMPLE, N_COMPLEX, seed=3, **opts)
    assert len(rf) == N_SIMPLE + N_COMPLEX and (rf.n_simple, rf.n_complex) == (N_SIMPLE, N_COMPLEX)
    assert rf.complex.dtype == bool and not rf.complex[:N_SIMPLE].any() and rf.complex[N_SIMPLE:].all()
    for field in ("sf", "theta", "phase", "nx", "ny"):
        values = getattr(rf, field)
        assert values.dtype == np.float64 and values.shape == (len(rf),), field
        assert np.all(np.isfinite(values)), f"{name}: non-finite {field}"
    assert np.all((rf.theta >= 0) & (rf.theta < 180)), f"{name}: theta outside [0, 180)"
    assert np.all((rf.phase >= 0) & (rf.phase < 360)), f"{name}: phase outside [0, 360)"
    assert set(np.unique(rf.color)) <= {0, 1, 2}, f"{name}: colours outside 0, 1, 2"
    tables = recipe_for(name, **opts).tables
    tol = 1e-12
    for cx in (False, True):
        lo, hi = tables.sf(cx).support
        sf = rf.sf[rf.complex == cx]
        assert np.all((sf >= lo * (1 - tol)) & (sf <= hi * (1 + tol))), f"{name}: SF outside [{lo}, {hi}]"
    for edges, values in ((tables.nxny.nx_edges, rf.nx), (tables.nxny.ny_edges, rf.ny)):
        assert np.all((values >= edges[0] * (1 - tol)) & (values <= edges[-1] * (1 + tol))), f"{name}: nx/ny"
    assert sample(name, N_SIMPLE, N_COMPLEX, seed=3, **opts) == rf, f"{name}: same seed, another sample"
    other = sample(name, N_SIMPLE, N_COMPLEX, seed=4, **opts)
    assert not np.array_equal(other.sf, rf.sf), f"{name}: another seed, the same sample"


def _bad_values(opt: Option) -> list[Any]:
    """Values outside `opt`'s schema."""
    bad: list[Any] = []
    if opt.choices is not None:
        bad.append("not-a-choice")
    if opt.type in (int, float):
        bad.append("0.5")
        lo, hi = opt.range or (None, None)
        if lo is not None:
            bad.append(lo if opt.min_exclusive else lo - 1)
        if hi is not None:
            bad.append(hi + 1)
    return bad


def check_rejects(name: str) -> None:
    """AssertionError unless options outside `name`'s schema raise a ValueError naming the option."""
    from v1sweep.rf.sampling import sample

    example = catalog.example(name)
    cases: list[tuple[str, dict[str, Any]]] = [("not_an_option", {**example, "not_an_option": 1})]
    for opt in catalog.options(name):
        cases += [(opt.name, {**example, opt.name: value}) for value in _bad_values(opt)]
        if opt.required:
            cases.append((opt.name, {k: v for k, v in example.items() if k != opt.name}))
    for option, opts in cases:
        try:
            sample(name, 4, 4, seed=0, **opts)
        except ValueError as exc:
            assert option in str(exc), f"{name}: the error for {opts} does not name {option!r}: {exc}"
        else:
            raise AssertionError(f"{name}: accepted options outside its schema: {opts}")


def check_config(name: str) -> None:
    """AssertionError unless a trial config naming `name` (with its example options) loads and
    hands the sampler those options."""
    from v1sweep.config.trial import from_dict

    rf: dict[str, Any] = {"strategy": name}
    for opt in catalog.options(name):
        if opt.config_key and opt.name in catalog.example(name):
            rf[opt.config_key] = catalog.example(name)[opt.name]
    sampler = from_dict({"rf": rf}).rf.sampler_options()
    for key, value in catalog.example(name).items():
        if catalog.option(name, key).config_key:
            assert sampler.get(key) == value, f"{name}: rf config gives {key}={sampler.get(key)!r}, not {value!r}"


def check_catalogue() -> None:
    """AssertionError unless the catalogue agrees with the sampler: names, uniform controls, presets."""
    from v1sweep.rf.empirical import PRESETS
    from v1sweep.rf.sampling import list_strategies

    assert catalog.PRESETS == tuple(PRESETS), f"rf.catalog.PRESETS {catalog.PRESETS} != empirical {tuple(PRESETS)}"
    assert sorted(catalog.strategy_names()) == sorted(list_strategies())
    assert catalog.REFERENCE in list_strategies() and catalog.REFERENCE not in catalog.uniform_controls()
    ranks = [catalog.meta(n)["uniform_control"] for n in catalog.uniform_controls()]
    assert len(set(ranks)) == len(ranks), f"uniform controls share a place: {ranks}"


def check_strategy(name: str) -> None:
    """Every check above; raises AssertionError (or the sampler's error) on a broken strategy."""
    check_metadata(name)
    check_sample(name)
    check_rejects(name)
    check_config(name)


class StrategyContract:
    """Subclass in a test module to run the contract on every registered strategy (or `names`)."""

    names: Sequence[str] | None = None

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "strategy" in metafunc.fixturenames:
            names = list(self.names or catalog.strategy_names())
            metafunc.parametrize("strategy", names, ids=names)

    def test_catalogue(self) -> None:
        check_catalogue()

    def test_metadata(self, strategy: str) -> None:
        check_metadata(strategy)

    def test_samples_valid_seeded_rf_params(self, strategy: str) -> None:
        check_sample(strategy)

    def test_rejects_options_outside_its_schema(self, strategy: str) -> None:
        check_rejects(strategy)

    def test_trial_config_accepts_it(self, strategy: str) -> None:
        check_config(strategy)
