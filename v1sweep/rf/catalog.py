"""What the RF sampling strategies are and which options they take, without importing them.

Every strategy is registered once, in the file that defines it, with its metadata::

    @STRATEGIES.register("unif2", description="...", options=(), uniform_control=2, example={})
    def _unif2(tables, opts): return Recipe(...)

``description`` (one line), ``options`` (its own `Option`s; every strategy also takes
`COMMON_OPTIONS`), ``uniform_control`` (None, or its place among the uniform controls that analyses
compare with the `REFERENCE`) and ``example`` (options it runs with, for tests and docs).
The built-in strategies live in `v1sweep.rf.sampling` (numpy, scipy; never torch), imported here on
first use, so the config layer can import this module for free and still validate a strategy a
user registered in their own file.
"""
from __future__ import annotations

import importlib
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from v1sweep.registry import Registry

REFERENCE = "biological"  # the strategy every uniform control is compared with
# Names of the published tables (`v1sweep.rf.empirical.PRESETS`; tests check they agree).
PRESETS: tuple[str, ...] = ("tinyimagenet2023", "vonenet2020")
DEFAULT_PRESET = "tinyimagenet2023"
MODES: tuple[str, ...] = ("mixture", "quantile")
SF_TRUNCATIONS: tuple[str, ...] = ("drop", "cut")


@dataclass(frozen=True)
class Option:
    """One keyword option of `v1sweep.rf.sample`: its type, allowed values and where configs set it.

    A value of None (or "" for a string option) means the default. `type` is int, float, str or
    object (anything; `choices` then bound only the strings, as a preset name or a `Preset`).
    `error` replaces the generic message for a bad value (formatted with ``value`` and ``valid``,
    the sorted choices).
    """

    name: str
    type: type
    doc: str = ""
    default: Any = None
    required: bool = False
    range: tuple[float | None, float | None] | None = None
    min_exclusive: bool = False
    choices: tuple[str, ...] | None = None
    config_key: str | None = None  # the `rf.<key>` of a trial config that sets it (None: not settable there)
    error: str = ""

    def check(self, value: Any) -> None:
        """Raise ValueError naming the option when `value` is outside the schema."""
        if value is None or (self.type in (str, object) and value == ""):
            return
        restricted = self.type is not object or isinstance(value, str)
        if self.choices is not None and restricted and value not in self.choices:
            self._fail(value, f"rf option {self.name!r} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.type in (int, float):
            self._check_number(value)

    def _check_number(self, value: Any) -> None:
        lo, hi = self.range or (None, None)
        interval = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        kind = "an integer" if self.type is int else "a number"
        wanted = numbers.Integral if self.type is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, wanted):
            self._fail(value, f"rf option {self.name!r} must be {kind} in {interval}, got {value!r}")
        v = float(value)
        inside = math.isfinite(v) and (lo is None or v > lo or (v == lo and not self.min_exclusive)) \
            and (hi is None or v <= hi)
        if not inside:
            self._fail(value, f"rf option {self.name!r} must lie in {interval}, got {value}")

    def _fail(self, value: Any, message: str) -> None:
        if self.error:
            message = self.error.format(value=value, valid=", ".join(sorted(self.choices or ())))
        raise ValueError(message)


COMMON_OPTIONS: tuple[Option, ...] = (
    Option("preset", object, "published tables sampled from: a name or a `v1sweep.rf.empirical.Preset`",
           DEFAULT_PRESET, choices=PRESETS, config_key="preset",
           error="unknown rf option 'preset' {value!r}; valid: {valid}"),
    Option("sf_max", float, "upper SF support, cycles/degree (a trial passes frontend.sf_max)", None,
           range=(0, None), min_exclusive=True,
           error="rf option 'sf_max' must be a positive number of cycles/degree, got {value!r}"),
    Option("sf_truncation", str, "sf_max below the top SF bin edge: drop the bins above | cut the straddling one",
           "drop", choices=SF_TRUNCATIONS, config_key="sf_truncation"),
)


def registry() -> Registry:
    """The `STRATEGIES` registry, with the built-in strategies registered."""
    return importlib.import_module("v1sweep.rf.sampling").STRATEGIES


def strategy_names() -> tuple[str, ...]:
    """Every registered strategy: the reference, the uniform controls, then the rest as registered
    (the order trial configs list them in and analyses sort variants by)."""
    controls = uniform_controls()
    rest = [name for name in registry().names() if name != REFERENCE and name not in controls]
    return (REFERENCE, *controls, *rest)


def uniform_controls() -> tuple[str, ...]:
    """The uniform controls of the `REFERENCE`, in their order: ("uniform", "unif1", "unif2", "unif3")."""
    ranked = [(meta["uniform_control"], name) for name, meta in registry().catalogue().items()
              if meta.get("uniform_control") is not None]
    return tuple(name for _, name in sorted(ranked))


def meta(strategy: str) -> Mapping[str, Any]:
    """The metadata a strategy was registered with; ValueError listing the valid names."""
    try:
        return registry().meta(strategy)
    except ValueError as exc:
        raise ValueError(f"rf option 'strategy': {exc}") from None


def options(strategy: str) -> tuple[Option, ...]:
    """The options `strategy` accepts: `COMMON_OPTIONS`, then its own."""
    return COMMON_OPTIONS + tuple(meta(strategy).get("options", ()))


def option(strategy: str, name: str) -> Option:
    for opt in options(strategy):
        if opt.name == name:
            return opt
    raise ValueError(f"rf option {name!r} not accepted by strategy {strategy!r}")


def example(strategy: str) -> dict[str, Any]:
    """Options `strategy` runs with (its required ones filled in): for tests and docs."""
    return dict(meta(strategy).get("example", {}))


def description(strategy: str) -> str:
    return str(meta(strategy)["description"])


def check_options(strategy: str, given: Mapping[str, Any]) -> None:
    """ValueError naming the option if `given` has one `strategy` does not accept, misses a
    required one or holds a value outside its schema."""
    accepted = options(strategy)
    names = [opt.name for opt in accepted]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f"rf option(s) {', '.join(map(repr, unknown))} not accepted by strategy "
                         f"{strategy!r}; it accepts: {', '.join(names)}")
    for opt in accepted:
        if opt.required and given.get(opt.name) is None:
            raise ValueError(f"strategy {strategy!r} needs rf option {opt.name!r} ({opt.doc})")
        opt.check(given.get(opt.name))
