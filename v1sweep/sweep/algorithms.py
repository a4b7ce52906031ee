"""The search algorithms a sweep file may name (``search.algorithm``), each one builder with its facts.

An entry is a builder ``(search, slots) -> (search_alg, max_concurrent_trials)`` registered with
its metadata, where `search` is the sweep's validated ``search:`` section (`SearchSpec`: the
options below as attributes, plus `objectives`) and `slots` the trials the cluster fits at once::

    @SEARCH_ALGORITHMS.register("random", description="...", objectives="optional",
                                grid_domains="allowed", needs_optuna=False,
                                options=("num_samples", "max_concurrent", "seed"))
    def random_search(search, slots): ...

An Optuna sampler is one function with `register_optuna_sampler` (it gets v1sweep's Optuna
searcher, which ignores per-epoch results and names the algorithm when Optuna fails).

This module is the catalogue `v1sweep.config.sweep_file` validates a sweep file from (names,
option types, ranges and defaults, which objectives an algorithm needs, whether it takes grid
domains): it imports neither Ray nor Optuna (the builders do, when called) and not `config`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from v1sweep.registry import Registry

MODES = ("max", "min")
# How many final metrics an algorithm optimises: optional (grid/random: a `metric` only orders the
# progress view), single (`metric` required, `metrics` refused), multi (two or more `metrics`).
OBJECTIVES = ("optional", "single", "multi")
# Whether the search space may hold `grid` domains: required (grid), allowed, refused (samplers).
GRID_DOMAINS = ("required", "allowed", "refused")

SearchBuilder = Callable[[Any, int], "tuple[Any, int | None]"]


@dataclass(frozen=True)
class Option:
    """One key of a sweep file's ``search:`` (or ``scheduler:``) section, as it is validated.

    `type` is a Python type name (``str``, ``int``, ``float``, ``tuple[str, ...]``); `range`
    inclusive bounds (``None`` open); `choices` the allowed values (a callable is evaluated when a
    file is validated, so entries registered later count).
    """

    type: str
    default: Any = None
    range: tuple[float | None, float | None] | None = None
    choices: tuple | Callable[[], tuple] | None = None
    doc: str = ""


# The keys of ``search:`` (`v1sweep.config.sweep_file.SearchSpec` is built from this table).
SEARCH_OPTIONS: Mapping[str, Option] = {
    "metric": Option("str | None", None, doc="optuna: the final metric to optimise (e.g. corruption_acc)"),
    "mode": Option("str", "max", choices=MODES),
    "metrics": Option("tuple[str, ...]", (), doc="optuna-multi: the objectives (two or more final metrics)"),
    "modes": Option("tuple[str, ...]", (), choices=MODES, doc="optuna-multi: one mode per objective (default max)"),
    "num_samples": Option("int", 1, range=(1, 100000), doc="grid: repeats of the whole grid; random/optuna: trials"),
    "max_concurrent": Option("int | None", None, range=(1, 10000),
                             doc="trials running at once (default: all that fit)"),
    "seed": Option("int | None", None, range=(0, None), doc="sampler seed (random, optuna)"),
}

SEARCH_ALGORITHMS: Registry[SearchBuilder] = Registry(
    "search algorithm", required=("description", "objectives", "grid_domains", "needs_optuna", "options"))


def algorithm_names() -> tuple[str, ...]:
    """The registered names, in registration order (the sweep file's allowed ``search.algorithm``)."""
    return tuple(SEARCH_ALGORITHMS.names())


def option_schema(name: str) -> dict[str, Option]:
    """The ``search:`` options algorithm `name` reads, with their types, ranges and defaults."""
    return {key: SEARCH_OPTIONS[key] for key in SEARCH_ALGORITHMS.meta(name)["options"]}


def _basic_variants(search: Any, slots: int) -> tuple[Any, int | None]:
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=search.seed, max_concurrent=search.max_concurrent or 0), None


_COMMON = ("num_samples", "max_concurrent", "seed")
SEARCH_ALGORITHMS.add("grid", _basic_variants, description="every point of the grid domains (x num_samples)",
                      objectives="optional", grid_domains="required", needs_optuna=False,
                      options=("metric", "mode", *_COMMON))
SEARCH_ALGORITHMS.add("random", _basic_variants, description="random sampling of the domains (grids crossed)",
                      objectives="optional", grid_domains="allowed", needs_optuna=False,
                      options=("metric", "mode", *_COMMON))


def optuna_searcher(search: Any, slots: int, sampler: Any) -> tuple[Any, int | None]:
    """v1sweep's Optuna searcher around `sampler`, limited to `max_concurrent` (default: `slots`)."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    from v1sweep.sweep.optuna_search import FinalMetricOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objectives = search.objectives
    if len(objectives) > 1:
        searcher = FinalMetricOptunaSearch(metric=[m for m, _ in objectives], mode=[md for _, md in objectives],
                                           sampler=sampler)
    else:
        searcher = FinalMetricOptunaSearch(metric=objectives[0][0], mode=objectives[0][1], sampler=sampler)
    searcher.algorithm = search.algorithm
    return ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent or max(1, slots)), None


def register_optuna_sampler(name: str, *, description: str, objectives: str = "single",
                            options: tuple[str, ...] = ("metric", "mode", *_COMMON),
                            **meta: Any) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register ``make_sampler(search) -> optuna sampler`` as search algorithm `name`.

    The sampler must pickle (Ray Tune saves the searcher with it); the space must not hold grid
    domains (a sampler draws every value)."""
    def decorator(make_sampler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def build(search: Any, slots: int) -> tuple[Any, int | None]:
            return optuna_searcher(search, slots, make_sampler(search))

        build.__doc__ = make_sampler.__doc__
        SEARCH_ALGORITHMS.add(name, build, description=description, objectives=objectives, grid_domains="refused",
                              needs_optuna=True, sampler=make_sampler, options=options, **meta)
        return make_sampler

    return decorator


@register_optuna_sampler("optuna", description="Optuna TPE on one final metric")
def tpe(search: Any) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=search.seed)


@register_optuna_sampler("optuna-multi", description="Optuna NSGA-II on two or more final metrics",
                         objectives="multi", options=("metrics", "modes", *_COMMON))
def nsga2(search: Any) -> Any:
    """NSGA-II, as the subclass that pickles (see `v1sweep.sweep.optuna_search.NSGAIISampler`)."""
    from v1sweep.sweep.optuna_search import NSGAIISampler

    return NSGAIISampler(seed=search.seed)
