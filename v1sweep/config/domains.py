"""Search-space domains: one entry of ``space:`` parsed and checked against the trial config, and
the expansion of a space into the trials a dry run lists.

A domain (``grid``, ``choice``, ``uniform``, ``loguniform``, ``randint``, ``quniform``) is checked
against the type and constraints of the dotted `TrialConfig` field(s) it sets, so a bad value is
reported at load time with the space key. The sweep engine (`v1sweep.sweep.space`) turns a
`Domain` into a Ray Tune domain; this module stays free of Ray. Separate from the loader because
it is the part of a sweep file that knows the trial config's fields.
"""
from __future__ import annotations

import dataclasses
import itertools
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from v1sweep.config import trial as trial_config
from v1sweep.config.keyed_errors import _split_error
from v1sweep.config.schema import (UnknownField, check_constraints, closest, coerce, is_int_hint, is_number_hint,
                                   lookup)
from v1sweep.config.trial import TrialConfig
from v1sweep.errors import ConfigError
from v1sweep.sweep.algorithms import SEARCH_ALGORITHMS

if typing.TYPE_CHECKING:
    from v1sweep.config.sweep_file import SweepSpec

DOMAINS = ("choice", "grid", "uniform", "loguniform", "randint", "quniform")


@dataclass(frozen=True)
class Domain:
    """One search-space entry: `kind` in DOMAINS with its `values` (choice/grid) or `bounds`."""
    kind: str
    values: tuple = ()
    bounds: tuple = ()

    @property
    def discrete(self) -> bool:
        return self.kind in ("choice", "grid")

    def to_yaml(self) -> dict[str, list]:
        return {self.kind: list(self.values if self.discrete else self.bounds)}

    def describe(self) -> str:
        if self.discrete:
            return f"{self.kind}({', '.join(map(format_value, self.values))})"
        return f"{self.kind}({', '.join(map(format_value, self.bounds))})"

    def probe_values(self) -> list:
        """Values that stand for the domain when checking combinations: all values, or the bounds."""
        if self.discrete:
            return list(self.values)
        lo, hi = self.bounds[0], self.bounds[1]
        if self.kind == "randint":
            hi = hi - 1
        return [lo, hi] if lo != hi else [lo]


def format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def split_key(key: str) -> list[str]:
    return [k.strip() for k in key.split(",")]


_SECTION_CLASSES = {f.name: f.type for f in dataclasses.fields(TrialConfig)}


def field_of(dotted: str, *, file: str | None = None, space_key: str | None = None) -> tuple[Any, dataclasses.Field]:
    """(type hint, field) of a dotted TrialConfig key; ConfigError naming valid keys otherwise."""
    key = space_key or dotted
    try:
        return lookup(TrialConfig, dotted)
    except UnknownField as exc:
        valid = [k for k, _d, _doc in trial_config.field_docs()]
        if exc.reason == "section":
            raise ConfigError(f"{dotted!r} is a section; name one of its keys, e.g. "
                              f"{dotted}.{dataclasses.fields(exc.section)[0].name}", file=file, key=key) from None
        if exc.reason == "scalar":
            raise ConfigError(f"unknown trial key {dotted!r}{closest(dotted, valid)}", file=file, key=key) from None
        raise ConfigError(f"unknown trial key {dotted!r}{closest(dotted, valid)}; a space entry names a "
                          f"dotted trial config key, e.g. rf.strategy, frontend.k_exc, train.seed",
                          file=file, key=key) from None


def is_int_field(hint: Any) -> bool:
    """The trial field holds integers (a quniform domain then draws integers)."""
    return is_int_hint(hint)


def _check_value(keys: list[str], value: Any, *, file: str | None, key: str, what: str = "") -> Any:
    out = value
    for k in keys:
        hint, field = field_of(k, file=file, space_key=key)
        label = f"{key} ({k})" if len(keys) > 1 else key
        try:
            out = coerce(hint, value, file=file, key=label)
            check_constraints(out, field.metadata, file=file, key=label)
        except ConfigError as exc:
            if what:
                body = _split_error(exc)[1]
                raise ConfigError(f"{what} {body}", file=file, key=label) from None
            raise
    return out


def _parse_domain(keys: list[str], raw: Any, *, file: str | None, key: str) -> Domain:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise ConfigError(f"expected one domain, e.g. {{grid: [a, b]}}; allowed domains: {', '.join(DOMAINS)}",
                          file=file, key=key)
    kind, values = next(iter(raw.items()))
    if kind not in DOMAINS:
        raise ConfigError(f"unknown domain {kind!r}{closest(str(kind), list(DOMAINS))}; allowed: "
                          f"{', '.join(DOMAINS)}", file=file, key=key)
    if not isinstance(values, (list, tuple)):
        raise ConfigError(f"{kind} expects a list, got {values!r}", file=file, key=key)
    hints = [field_of(k, file=file, space_key=key)[0] for k in keys]
    if kind in ("choice", "grid"):
        if not values:
            raise ConfigError(f"{kind} needs at least one value", file=file, key=key)
        checked = tuple(_check_value(keys, v, file=file, key=key) for v in values)
        return Domain(kind, values=_distinct(checked, kind, file=file, key=key) if kind == "grid" else checked)
    if not all(is_number_hint(h) for h in hints):
        raise ConfigError(f"{kind} samples numbers, but {keys[0]} is not numeric; use choice or grid",
                          file=file, key=key)
    want = 3 if kind == "quniform" else 2
    if len(values) != want or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        shape = "[low, high, q]" if kind == "quniform" else "[low, high]"
        raise ConfigError(f"{kind} expects {shape} numbers, got {list(values)!r}", file=file, key=key)
    if kind in ("uniform", "loguniform") and any(is_int_hint(h) for h in hints):
        k = next(k for k, h in zip(keys, hints) if is_int_hint(h))
        raise ConfigError(f"{kind} samples floats, but {k} is an integer; allowed for integer keys: randint "
                          f"[low, high) or quniform [low, high, q] with integer bounds, choice or grid",
                          file=file, key=key)
    lo, hi = values[0], values[1]
    if not lo < hi:
        raise ConfigError(f"{kind} needs low < high, got [{lo}, {hi}]", file=file, key=key)
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"loguniform needs low > 0, got {lo}", file=file, key=key)
    if kind == "randint":
        if not all(is_int_hint(h) for h in hints):
            raise ConfigError(f"randint samples integers, but {keys[0]} is a float; use uniform", file=file, key=key)
        if lo != int(lo) or hi != int(hi):
            raise ConfigError(f"randint bounds must be integers, got [{lo}, {hi}]", file=file, key=key)
        lo, hi = int(lo), int(hi)
        _check_value(keys, lo, file=file, key=key, what="lower bound")
        _check_value(keys, hi - 1, file=file, key=key, what="largest value (high - 1)")
        return Domain(kind, bounds=(lo, hi))
    if kind == "quniform":
        q = values[2]
        if q <= 0:
            raise ConfigError(f"quniform needs q > 0, got {q}", file=file, key=key)
        if all(is_int_hint(h) for h in hints) and any(v != int(v) for v in values):
            raise ConfigError(f"{keys[0]} is an integer: quniform bounds and q must be integers", file=file, key=key)
    for label, v in (("lower bound", lo), ("upper bound", hi)):
        if all(is_int_hint(h) for h in hints):
            _check_value(keys, int(v), file=file, key=key, what=label)
        else:
            _check_value(keys, float(v), file=file, key=key, what=label)
    return Domain(kind, bounds=tuple(values))


def _distinct(values: tuple, kind: str, *, file: str | None, key: str) -> tuple:
    """`values` without repeats: a repeated grid value would run the same trial twice (use
    search.num_samples for deliberate repeats); a warning names the value and the count kept."""
    out: list = []
    for v in values:
        if not any(type(v) is type(o) and v == o for o in out):
            out.append(v)
    if len(out) < len(values):
        dropped = len(values) - len(out)
        _warn(f"{file + ': ' if file else ''}{key}: {dropped} repeated {kind} value(s) dropped "
              f"({', '.join(format_value(v) for v in out)} kept: {len(out)} distinct); "
              f"use search.num_samples to repeat trials on purpose")
    return tuple(out)


def _warn(message: str) -> None:
    """A load-time warning on stderr (the sweep still runs)."""
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)


def expand(sweep: SweepSpec) -> list[dict[str, Any]]:
    """The trials a grid produces (cartesian product of grid domains x num_samples, in Ray Tune's
    order); sampled domains appear as their description (e.g. ``uniform(0, 1)``), drawn at run time."""
    grid_keys = [k for k, d in sweep.space.items() if d.kind == "grid"]
    other = {k: d.describe() for k, d in sweep.space.items() if d.kind != "grid"}
    if SEARCH_ALGORITHMS.meta(sweep.search.algorithm)["grid_domains"] == "refused":
        return [dict(other) for _ in range(sweep.search.num_samples)]
    # Ray Tune's order: the first grid key varies fastest.
    rev = grid_keys[::-1]
    points = [p[::-1] for p in itertools.product(*(sweep.space[k].values for k in rev))] if grid_keys else [()]
    return [{**dict(zip(grid_keys, p)), **other} for _ in range(sweep.search.num_samples) for p in points]
