"""The sections of a sweep file besides the space: ``search:``, ``scheduler:``, ``resources:``,
``failures:`` and ``tracking:``, and the final trial metrics a search may optimise.

Each section is a frozen dataclass that `v1sweep.config.schema.build` validates. The search and
scheduler sections are generated from the catalogues in `v1sweep.sweep.algorithms` and
`v1sweep.sweep.schedulers`, so a registered algorithm or scheduler needs no edit here. They are
separate from the loader (`v1sweep.config.sweep_file`) because they are declarations with their own
checks (`validate`), read by the engine and `v1sweep.testing.sweep` without the loading logic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from v1sweep import contracts
from v1sweep.config.adversarial import ADV_PREFIX
from v1sweep.config.schema import closest, spec
from v1sweep.errors import ConfigError
from v1sweep.sweep.algorithms import SEARCH_ALGORITHMS, SEARCH_OPTIONS, Option, algorithm_names
from v1sweep.sweep.schedulers import SCHEDULER_OPTIONS, SCHEDULERS, scheduler_names

# Final metrics a search may optimise (owned by `v1sweep.contracts`); prefixes take a sub-name.
FINAL_METRICS = contracts.FINAL_METRICS
FINAL_METRIC_PREFIXES = (*contracts.FINAL_METRIC_PREFIXES, ADV_PREFIX)


def _option(option: Option) -> Any:
    """The dataclass field of a ``search:`` / ``scheduler:`` option its catalogue declares."""
    return spec(option.default, choices=option.choices, range=option.range, doc=option.doc)


def _doc(registry: Any) -> str:
    return " | ".join(f"{name} ({meta['description']})" for name, meta in registry.catalogue().items())


@dataclass(frozen=True)
class SearchSpec:
    """``search:``; the algorithms and their options are declared in `v1sweep.sweep.algorithms`."""
    algorithm: str = spec("grid", choices=algorithm_names, doc=_doc(SEARCH_ALGORITHMS))
    metric: str | None = _option(SEARCH_OPTIONS["metric"])
    mode: str = _option(SEARCH_OPTIONS["mode"])
    metrics: tuple[str, ...] = _option(SEARCH_OPTIONS["metrics"])
    modes: tuple[str, ...] = _option(SEARCH_OPTIONS["modes"])
    num_samples: int = _option(SEARCH_OPTIONS["num_samples"])
    max_concurrent: int | None = _option(SEARCH_OPTIONS["max_concurrent"])
    seed: int | None = _option(SEARCH_OPTIONS["seed"])

    def validate(self) -> None:
        kind = SEARCH_ALGORITHMS.meta(self.algorithm)["objectives"]
        if kind == "single":
            if not self.metric:
                raise ConfigError(f"{self.algorithm} needs a metric to optimise; allowed: " + _metric_list(),
                                  key="search.metric")
            if self.metrics:
                multi = [n for n, m in SEARCH_ALGORITHMS.catalogue().items() if m["objectives"] == "multi"]
                raise ConfigError(f"'metrics' is for {' / '.join(multi) or 'multi-objective algorithms'}; "
                                  f"{self.algorithm} takes one 'metric'", key="search.metrics")
        if kind == "multi":
            if len(self.metrics) < 2:
                raise ConfigError(f"{self.algorithm} needs two or more objectives in 'metrics' "
                                  "(e.g. [clean_acc, corruption_acc])", key="search.metrics")
            if self.modes and len(self.modes) != len(self.metrics):
                raise ConfigError(f"{len(self.modes)} modes for {len(self.metrics)} metrics; give one "
                                  f"mode (max | min) per metric", key="search.modes")
        for i, name in enumerate(([self.metric] if self.metric else []) + list(self.metrics)):
            _check_final_metric(name, "search.metric" if i == 0 and self.metric else "search.metrics")

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """(metric, mode) pairs the search optimises ([] for grid / random without a metric)."""
        if SEARCH_ALGORITHMS.meta(self.algorithm)["objectives"] == "multi":
            modes = list(self.modes) or ["max"] * len(self.metrics)
            return list(zip(self.metrics, modes))
        return [(self.metric, self.mode)] if self.metric else []


@dataclass(frozen=True)
class SchedulerSpec:
    """``scheduler:``; the schedulers and their options are declared in `v1sweep.sweep.schedulers`."""
    type: str = spec("fifo", choices=scheduler_names, doc=_doc(SCHEDULERS))
    metric: str = _option(SCHEDULER_OPTIONS["metric"])
    mode: str = _option(SCHEDULER_OPTIONS["mode"])
    grace_period: int = _option(SCHEDULER_OPTIONS["grace_period"])
    reduction_factor: float = _option(SCHEDULER_OPTIONS["reduction_factor"])
    max_t: int | None = _option(SCHEDULER_OPTIONS["max_t"])


@dataclass(frozen=True)
class ResourcesSpec:
    cpu: float = spec(1.0, range=(0.01, 1024), doc="CPUs per trial")
    gpu: float = spec(0.0, range=(0, 1024), doc="GPUs per trial: a fraction <= 1 shares a GPU, above 1 whole GPUs")

    def validate(self) -> None:
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise ConfigError(f"{self.gpu:g} GPUs is not allowed; allowed: a fraction in (0, 1] (trials share "
                              f"a GPU) or a whole number of GPUs (1, 2, ...)", key="resources.gpu")


@dataclass(frozen=True)
class FailuresSpec:
    max_failures: int = spec(0, range=(-1, 1000), doc="retries of a crashed trial, from its checkpoint (-1: no limit)")


@dataclass(frozen=True)
class TrackingSpec:
    uri: str | None = spec(None, doc="MLflow tracking URI (default: sqlite mlflow.db in the working directory)")
    experiment: str | None = spec(None, doc="MLflow experiment (default: the sweep name)")

    def validate(self) -> None:
        """Sweep files are logged to MLflow and copied into the sweep folder: no secrets in them."""
        from v1sweep.config.uris import mask_uri

        if self.uri and mask_uri(self.uri) != self.uri:
            raise ConfigError(f"{mask_uri(self.uri)} holds credentials, which would be logged with the sweep "
                              "file; put them in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / "
                              "MLFLOW_TRACKING_TOKEN, or pass the URI with --tracking-uri", key="tracking.uri")


def _metric_list() -> str:
    return ", ".join(FINAL_METRICS) + ", " + ", ".join(p + "<name>" for p in FINAL_METRIC_PREFIXES)


def _check_final_metric(name: str, key: str) -> None:
    if name in FINAL_METRICS or name.startswith(FINAL_METRIC_PREFIXES):
        return
    hint = closest(name, list(FINAL_METRICS) + [p.rstrip("/") for p in FINAL_METRIC_PREFIXES])
    raise ConfigError(f"{name!r} is not a final trial metric{hint}; allowed: {_metric_list()}", key=key)
