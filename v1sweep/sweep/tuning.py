"""What a sweep's Ray Tune run is configured with: search algorithm, scheduler, progress output.

Each piece comes from the spec through its registry (`v1sweep.sweep.algorithms`,
`v1sweep.sweep.schedulers`); the search algorithm is also checked up front (built and picklable), and
`search_failure` finds that refusal again inside whatever Ray Tune wrapped it in. Kept apart from
`v1sweep.sweep.engine`, which assembles these into a Tuner, so a plugin's contract test
(`v1sweep.testing.sweep`) can build them without the run/resume machinery. Ray is imported inside
functions only.
"""
from __future__ import annotations

from typing import Any

from v1sweep.config.sweep_file import SweepSpec
from v1sweep.errors import V1SweepError
from v1sweep.sweep.algorithms import SEARCH_ALGORITHMS
from v1sweep.sweep.callback import SearchAlgorithmFailed
from v1sweep.sweep.schedulers import SCHEDULERS

TABLE_METRICS = ("epoch", "val_acc", "clean_acc", "corruption_acc")


def search_algorithm(spec: SweepSpec, slots: int) -> tuple[Any, int | None]:
    """(search_alg, max_concurrent for TuneConfig) from the algorithm's builder
    (`v1sweep.sweep.algorithms.SEARCH_ALGORITHMS`)."""
    return SEARCH_ALGORITHMS.get(spec.search.algorithm)(spec.search, slots)


def checked_search_algorithm(spec: SweepSpec, slots: int) -> tuple[Any, int | None]:
    """`search_algorithm`, refused up front (as `SearchAlgorithmFailed`) when it cannot be built or
    cannot be pickled: Ray Tune pickles the searcher into its experiment state when the Tuner is
    built and at every checkpoint, and a failure there would otherwise be a raw traceback."""
    from ray import cloudpickle

    name = spec.search.algorithm
    try:
        search_alg, max_concurrent = search_algorithm(spec, slots)
    except V1SweepError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise SearchAlgorithmFailed(name, f"cannot be built: {type(exc).__name__}: {exc}") from exc
    try:
        cloudpickle.dumps(search_alg)
    except Exception as exc:  # noqa: BLE001
        inner = getattr(search_alg, "searcher", search_alg)
        sampler = getattr(inner, "_sampler", None)
        what = f"{name} ({type(sampler).__name__})" if sampler is not None else name
        raise SearchAlgorithmFailed(what, f"Ray Tune cannot save its state ({type(exc).__name__}: {exc}); "
                                          f"a newer Optuna or Ray may have changed the sampler") from exc
    return search_alg, max_concurrent


def search_failure(exc: BaseException) -> SearchAlgorithmFailed | None:
    """The `SearchAlgorithmFailed` behind an exception Ray Tune raised (it may wrap it)."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, SearchAlgorithmFailed):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def scheduler(spec: SweepSpec) -> Any:
    """The Ray Tune scheduler from its builder (`v1sweep.sweep.schedulers.SCHEDULERS`)."""
    return SCHEDULERS.get(spec.scheduler.type)(spec.scheduler, spec.trial.train.epochs)


def _reporter(spec: SweepSpec, verbose: int = 1) -> Any:
    """v1sweep's compact progress (`v1sweep.sweep.progress`); Ray's status table with verbose >= 2."""
    metric, mode = (spec.search.objectives or [("corruption_acc", "max")])[0]
    if verbose < 2:
        from v1sweep.sweep.progress import make_reporter

        return make_reporter(metric, mode)
    from ray.tune import CLIReporter

    params = {k: k.split(",")[0].split(".")[-1] for k in spec.space}
    metrics = {m: m for m in TABLE_METRICS}
    for name, _mode in spec.search.objectives:
        metrics.setdefault(name, name)
    return CLIReporter(metric_columns=metrics, parameter_columns=params, max_report_frequency=30,
                       max_progress_rows=40)


def _tune_verbosity(verbose: int) -> int:
    """Ray Tune's own verbosity: 1 (progress reports only) unless quiet; Tune's per-result lines never."""
    return 1 if verbose >= 1 else 0
