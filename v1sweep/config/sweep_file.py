"""Sweep files: what to vary, how to search, where to track — loaded and validated into a `SweepSpec`.

A sweep file (``sweeps/NAME.yaml``) names a base trial config (``trial:`` inline and/or
``trial_config: path``), a search space (``space:`` plus ``include:``-d ``search_spaces/*.yaml``
fragments), the search algorithm, the scheduler, per-trial resources, retries and the MLflow
experiment. Every mistake is reported with the file, the dotted key and what is allowed, like the
trial configs (both go through `v1sweep.config.schema`).

A search-space entry maps a dotted trial key to one domain::

    rf.strategy: {grid: [biological, unif1]}      # every value, crossed with the other grids
    frontend.k_exc: {loguniform: [5, 100]}         # sampled (random / optuna)
    train.seed,rf.seed: {grid: [0, 1, 2]}          # tied keys: one value set on both

Domains: ``choice`` (sampled from a list), ``grid`` (all values), ``uniform`` / ``loguniform``
``[lo, hi]``, ``randint [lo, hi)`` (upper bound excluded, as in Ray Tune), ``quniform [lo, hi, q]``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import random
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from v1sweep.config import trial as trial_config
from v1sweep.config.trial import TrialConfig
from v1sweep.config.adversarial import ADV_PREFIX
from v1sweep.errors import ConfigError
from v1sweep import contracts
from v1sweep.config.schema import (UnknownField, build, check_constraints, closest, coerce, deep_merge,
                                   is_int_hint, is_number_hint, lookup, spec, to_dict, unflatten)
from v1sweep.sweep.algorithms import SEARCH_ALGORITHMS, SEARCH_OPTIONS, Option, algorithm_names
from v1sweep.sweep.schedulers import SCHEDULER_OPTIONS, SCHEDULERS, scheduler_names

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bundle_root() -> Path:
    """Where `sweeps/` and `search_spaces/` are: the copy an installed wheel carries
    (`v1sweep/_bundled/`, made by setup.py's build hook), else the source checkout's top level
    (a clone, or an editable install)."""
    packaged = Path(__file__).resolve().parents[1] / "_bundled"
    return packaged if (packaged / "sweeps").is_dir() else REPO_ROOT


BUNDLE_ROOT = _bundle_root()
SWEEPS_DIR = BUNDLE_ROOT / "sweeps"
SEARCH_SPACES_DIR = BUNDLE_ROOT / "search_spaces"
DOMAINS = ("choice", "grid", "uniform", "loguniform", "randint", "quniform")
DEFAULT_TRIAL_FUNCTION = "v1sweep.trial:run_trial"
# Final metrics a search may optimise (owned by `v1sweep.contracts`); prefixes take a sub-name.
FINAL_METRICS = contracts.FINAL_METRICS
FINAL_METRIC_PREFIXES = (*contracts.FINAL_METRIC_PREFIXES, ADV_PREFIX)
# Trial keys holding paths: made absolute against the working directory when the sweep is loaded.
PATH_KEYS = ("data.path", "data.cache_dir", "eval.path", "eval.cache_dir", "rf.custom_path")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MAX_CHECKED_COMBINATIONS = 2048


# ---------------------------------------------------------------------------------------------
# Sections of a sweep file
# ---------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class SweepFile:
    """The keys a sweep YAML may hold (validated by `v1sweep.config.schema.build`)."""
    name: str = spec("", doc="sweep name: MLflow tag and output folder")
    description: str = spec("")
    include: tuple[str, ...] = spec((), doc="search_spaces/*.yaml fragments merged into the space")
    trial_config: str | None = spec(None, doc="a trial YAML used as the base config")
    trial: dict = spec(default_factory=dict, doc="the base trial config (overrides trial_config)")
    trial_function: str = spec(DEFAULT_TRIAL_FUNCTION, doc="a registered trial function: run_trial (default), "
                                "an installed entry point name, or module:function decorated with "
                                "@v1sweep.trial.functions.register")
    space: dict = spec(default_factory=dict, doc="dotted trial key -> domain")
    search: SearchSpec = spec(default_factory=SearchSpec)
    scheduler: SchedulerSpec = spec(default_factory=SchedulerSpec)
    resources: ResourcesSpec = spec(default_factory=ResourcesSpec)
    failures: FailuresSpec = spec(default_factory=FailuresSpec)
    tracking: TrackingSpec = spec(default_factory=TrackingSpec)


@dataclass(frozen=True)
class FragmentFile:
    """The keys a search-space fragment (``search_spaces/*.yaml``) may hold."""
    description: str = spec("")
    include: tuple[str, ...] = spec(())
    space: dict = spec(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Domains
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# The resolved sweep
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: base trial config, search space, search/scheduler/resources/tracking."""
    name: str
    trial: TrialConfig
    space: Mapping[str, Domain]
    search: SearchSpec = dataclasses.field(default_factory=SearchSpec)
    scheduler: SchedulerSpec = dataclasses.field(default_factory=SchedulerSpec)
    resources: ResourcesSpec = dataclasses.field(default_factory=ResourcesSpec)
    failures: FailuresSpec = dataclasses.field(default_factory=FailuresSpec)
    tracking: TrackingSpec = dataclasses.field(default_factory=TrackingSpec)
    trial_function: str = DEFAULT_TRIAL_FUNCTION
    description: str = ""
    file: str | None = None
    includes: tuple[str, ...] = ()

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    def base_flat(self) -> dict[str, Any]:
        return trial_config.to_flat(self.trial)

    def parameters(self) -> list[str]:
        """Every dotted trial key the space sets (tied keys expanded)."""
        return [k for key in self.space for k in split_key(key)]

    def trial_flat(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The full flat trial config for one point of the space (tied keys expanded)."""
        flat = self.base_flat()
        for key, value in params.items():
            for k in split_key(key):
                flat[k] = value
        return flat

    def trial_config_for(self, params: Mapping[str, Any], *, name: str | None = None) -> TrialConfig:
        flat = self.trial_flat(params)
        if name is not None:
            flat["name"] = name
        return trial_config.from_flat(flat)

    def to_dict(self) -> dict[str, Any]:
        """A self-contained sweep file (no includes): what `v1sweep resume` reloads."""
        return {
            "name": self.name, "description": self.description,
            "trial_function": self.trial_function,
            "trial": to_dict(self.trial),
            "space": {key: dom.to_yaml() for key, dom in self.space.items()},
            "search": to_dict(self.search), "scheduler": to_dict(self.scheduler),
            "resources": to_dict(self.resources), "failures": to_dict(self.failures),
            "tracking": to_dict(self.tracking),
        }

    @property
    def spec_hash(self) -> str:
        """12 hex digits identifying what the trials compute (tracking and description excluded)."""
        data = self.to_dict()
        data.pop("tracking")
        data.pop("description")
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def replace(self, **changes: Any) -> "SweepSpec":
        return dataclasses.replace(self, **changes)


def split_key(key: str) -> list[str]:
    return [k.strip() for k in key.split(",")]


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_sweep(path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = (), *,
               data_path: str | None = None) -> SweepSpec:
    """Load and validate a sweep YAML; `overrides` are ``--set k=v`` items.

    Overrides starting with ``trial.`` (or a trial section: ``data.``, ``rf.``, ``train.`` ...)
    change the base trial config; ``search.``, ``scheduler.``, ``resources.``, ``failures.``,
    ``tracking.`` and ``name`` change the sweep. `data_path` is ``--data-path``: ``trial.data.path``.
    """
    path = find_sweep(path)
    file = str(path)
    raw = trial_config.read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a sweep file must be a mapping of keys, got {type(raw).__name__}", file=file)
    flat = dict(overrides) if isinstance(overrides, Mapping) else trial_config.parse_overrides(overrides)
    if data_path is not None:
        flat["trial.data.path"] = data_path
    sweep_over, trial_over = _route_overrides(flat)
    raw = deep_merge(raw, unflatten(sweep_over)) if sweep_over else dict(raw)
    return _build(raw, file=file, base_dir=path.resolve().parent, trial_overrides=trial_over)


def from_dict(raw: Mapping[str, Any], *, file: str | None = None, base_dir: str | Path | None = None,
              overrides: Sequence[str] | Mapping[str, Any] = (), check_space: bool = True) -> SweepSpec:
    """Validate a sweep given as a dict (what `SweepSpec.to_dict` wrote, or a file's content).
    `check_space=False` skips building every grid point (a worker re-reading a checked spec)."""
    flat = dict(overrides) if isinstance(overrides, Mapping) else trial_config.parse_overrides(overrides)
    sweep_over, trial_over = _route_overrides(flat)
    raw = deep_merge(raw, unflatten(sweep_over)) if sweep_over else dict(raw)
    return _build(raw, file=file, base_dir=Path(base_dir or Path.cwd()).resolve(), trial_overrides=trial_over,
                  check_space=check_space)


_SWEEP_SECTIONS = ("search", "scheduler", "resources", "failures", "tracking")
_TRIAL_SECTIONS = tuple(f.name for f in dataclasses.fields(TrialConfig) if f.name != "name")


def _route_overrides(flat: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    sweep_over: dict[str, Any] = {}
    trial_over: dict[str, Any] = {}
    for key, value in flat.items():
        head = key.split(".", 1)[0]
        if key.startswith("trial."):
            trial_over[key[len("trial."):]] = value
        elif head in _TRIAL_SECTIONS:
            trial_over[key] = value
        elif head in _SWEEP_SECTIONS or key in ("name", "description", "trial_function", "trial_config"):
            sweep_over[key] = value
        else:
            valid = ["name", "trial.<key>", *(f"{s}.<key>" for s in _SWEEP_SECTIONS + _TRIAL_SECTIONS)]
            hint = closest(head, ["name", "trial", *_SWEEP_SECTIONS, *_TRIAL_SECTIONS])
            raise ConfigError(f"--set {key}: unknown key{hint}; allowed: {', '.join(valid)} "
                              f"(the search space is changed in the sweep file)")
    return sweep_over, trial_over


def _build(raw: Mapping[str, Any], *, file: str | None, base_dir: Path,
           trial_overrides: Mapping[str, Any], check_space: bool = True) -> SweepSpec:
    if not raw.get("name"):
        raise ConfigError("a sweep needs a name (used for the output folder and the MLflow tags); "
                          "add 'name: my_sweep'", file=file, key="name")
    parsed: SweepFile = build(SweepFile, raw, file=file)
    if not isinstance(parsed.name, str) or not _NAME.fullmatch(parsed.name):
        raise ConfigError(f"{parsed.name!r} is not allowed; allowed: letters, digits, '_', '-', '.'",
                          file=file, key="name")
    if check_space:  # a worker re-reading a checked spec has another import path: not checked again
        _check_trial_function(parsed.trial_function, file)

    base = _base_trial(parsed, file=file, base_dir=base_dir, overrides=trial_overrides)
    space, origins, includes = _resolve_space(parsed, file=file, base_dir=base_dir)
    if not space:
        raise ConfigError("the search space is empty: add entries under 'space:' (e.g. "
                          "'rf.strategy: {grid: [biological, unif1]}') or 'include:' a search_spaces/ fragment",
                          file=file, key="space")
    for key in space:
        if any(k in trial_overrides for k in split_key(key)):
            raise ConfigError(f"--set of a swept key: {key} is varied by the search space "
                              f"(from {origins[key]}); change the space in the sweep file instead",
                              file=file, key=f"trial.{key}")
    _check_algorithm(parsed, space, origins, file)
    sweep = SweepSpec(name=parsed.name, trial=base, space=space, search=parsed.search,
                      scheduler=parsed.scheduler, resources=parsed.resources, failures=parsed.failures,
                      tracking=parsed.tracking, trial_function=parsed.trial_function,
                      description=parsed.description, file=file, includes=tuple(includes))
    if check_space:
        _check_combinations(sweep, origins, file)
    if "trial" not in raw and not parsed.trial_config and not trial_overrides:
        raise ConfigError("the sweep has no base trial config, so every trial would run the defaults (the 64 px "
                          "synthetic task with the full corruption benchmark); add 'trial:' keys (e.g. trial: "
                          "{train: {epochs: 3}}) or 'trial_config: FILE', or write 'trial: {}' to run the "
                          "defaults on purpose", file=file, key="trial")
    return sweep


def _check_trial_function(ref: str, file: str | None) -> None:
    """Only registered trial functions run (see `v1sweep.trial.functions`): the format and where the
    module lives are checked here, at load time, without importing it."""
    from v1sweep.trial.functions import check_reference

    try:
        check_reference(ref)
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, key="trial_function") from None


def _base_trial(parsed: SweepFile, *, file: str | None, base_dir: Path,
                overrides: Mapping[str, Any]) -> TrialConfig:
    tree: dict[str, Any] = {}
    source = file
    if parsed.trial_config:
        cfg_path = _find_file(parsed.trial_config, [base_dir, Path.cwd(), BUNDLE_ROOT, SWEEPS_DIR])
        if cfg_path is None:
            raise ConfigError(f"trial config {parsed.trial_config!r} not found (looked next to the sweep "
                              f"file, in the working directory and in {BUNDLE_ROOT})", file=file, key="trial_config")
        loaded = trial_config.read_yaml(cfg_path) or {}
        if not isinstance(loaded, Mapping):
            raise ConfigError("a trial config must be a mapping of sections", file=str(cfg_path))
        tree = dict(loaded)
        source = f"{file} (trial_config {cfg_path})" if file else str(cfg_path)
    tree = deep_merge(tree, parsed.trial)
    if overrides:
        tree = deep_merge(tree, unflatten(overrides))
    tree = _absolute_paths(tree)
    try:
        return trial_config.from_dict(tree, file=source)
    except ConfigError as exc:
        _reraise(exc, file=source, prefix="trial.", hint=_data_path_hint(exc, file))


def _data_path_hint(exc: ConfigError, file: str | None) -> str:
    if _split_error(exc)[0] == "data.path":
        return " (for the CIFAR-10 / Tiny ImageNet sweeps pass the dataset folder: --data-path DIR)"
    return ""


def _absolute_paths(tree: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in tree.items()}
    for key in PATH_KEYS:
        section, name = key.split(".")
        node = out.get(section)
        if isinstance(node, dict) and isinstance(node.get(name), str) and node[name].strip():
            node[name] = str(Path(node[name]).expanduser().absolute())
    return out


_KEYED = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\[\d+\])?): (.*)$", re.S)


def _split_error(exc: ConfigError) -> tuple[str | None, str]:
    """(dotted key, message) of a ConfigError, also when the key only survives in the text."""
    where = (f"{exc.file}: " if exc.file else "") + (f"{exc.key}: " if exc.key else "")
    text = str(exc)
    body = text[len(where):] if text.startswith(where) else text
    key = exc.key
    if key is None:
        m = _KEYED.match(body)
        if m:
            key, body = m.group(1), m.group(2)
    return key, body


def _reraise(exc: ConfigError, *, file: str | None, prefix: str, hint: str = "") -> typing.NoReturn:
    key, body = _split_error(exc)
    full = f"{prefix}{key}" if key else prefix.rstrip(".")
    raise ConfigError(body + hint, file=exc.file or file, key=full) from None


def bundled_sweeps() -> list[tuple[str, str, Path]]:
    """(name, one-line description, path) of every sweep shipped with v1sweep, by name."""
    found = []
    for path in sorted(SWEEPS_DIR.glob("*.yaml")) if SWEEPS_DIR.is_dir() else []:
        try:
            raw = trial_config.read_yaml(path) or {}
        except Exception:  # noqa: BLE001 - a damaged file is listed, its loading names the fault
            raw = {}
        desc = raw.get("description") if isinstance(raw, Mapping) else None
        found.append((path.stem, " ".join(str(desc or "").split()), path))
    return found


def find_sweep(name_or_path: str | Path) -> Path:
    """A sweep file given as a path, or a bundled sweep given by name (``smoke``, ``smoke.yaml``,
    ``sweeps/smoke.yaml`` from any directory). A path that exists always wins."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    parts = path.parts
    if len(parts) == 1 or (len(parts) == 2 and parts[0] == "sweeps"):
        stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
        bundled = SWEEPS_DIR / f"{stem}.yaml"
        if bundled.is_file():
            return bundled
        names = [n for n, _d, _p in bundled_sweeps()]
        raise ConfigError(f"no sweep file {str(name_or_path)!r} here and no bundled sweep named {stem!r}"
                          f"{closest(stem, names)}; bundled sweeps: {', '.join(names) or 'none'} "
                          f"(`v1sweep sweeps` lists them)", file=str(name_or_path))
    return path  # a missing path: reading it names the file


def _find_file(name: str, dirs: Sequence[Path]) -> Path | None:
    candidate = Path(name).expanduser()
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for d in dirs:
        for c in (d / candidate, d / f"{candidate}.yaml"):
            if c.is_file():
                return c.resolve()
    return None


# ---------------------------------------------------------------------------------------------
# Search space: includes, domains
# ---------------------------------------------------------------------------------------------
def _resolve_space(parsed: SweepFile, *, file: str | None,
                   base_dir: Path) -> tuple[dict[str, Domain], dict[str, str], list[str]]:
    space: dict[str, Domain] = {}
    origins: dict[str, str] = {}
    includes: list[str] = []
    me = [str(Path(file).resolve())] if file else []
    for inc in parsed.include:
        _include(inc, base_dir=base_dir, chain=me, space=space, origins=origins, includes=includes,
                 from_file=file, key="include")
    _merge_entries(parsed.space, file=file, space=space, origins=origins)
    return space, origins, includes


def _include(name: str, *, base_dir: Path, chain: list[str], space: dict, origins: dict,
             includes: list[str], from_file: str | None, key: str) -> None:
    path = _find_file(name, [base_dir, base_dir.parent, BUNDLE_ROOT, Path.cwd(), SEARCH_SPACES_DIR,
                             Path.cwd() / "search_spaces"])
    if path is None:
        available = sorted(p.name for p in SEARCH_SPACES_DIR.glob("*.yaml")) if SEARCH_SPACES_DIR.is_dir() else []
        hint = closest(Path(name).name, available)
        raise ConfigError(f"search-space fragment {name!r} not found{hint} (looked next to {from_file or 'the sweep'} "
                          f"and in {SEARCH_SPACES_DIR}); available: {', '.join(available) or 'none'}",
                          file=from_file, key=key)
    resolved = str(path)
    if resolved in chain:
        cycle = chain[chain.index(resolved):] + [resolved]
        raise ConfigError("include cycle: " + " -> ".join(Path(p).name for p in cycle)
                          + f" ({' -> '.join(cycle)})", file=from_file, key=key)
    raw = trial_config.read_yaml(path)
    if raw is None:
        raw = {}
    if isinstance(raw, Mapping) and "name" in raw:
        raise ConfigError(f"{name!r} is a sweep file, not a search-space fragment (keys: description, include, "
                          f"space); include files from search_spaces/, e.g. search_spaces/seeds.yaml",
                          file=from_file, key=key)
    fragment: FragmentFile = build(FragmentFile, raw, file=resolved)
    for inc in fragment.include:
        _include(inc, base_dir=path.parent, chain=chain + [resolved], space=space, origins=origins,
                 includes=includes, from_file=resolved, key="include")
    _merge_entries(fragment.space, file=resolved, space=space, origins=origins)
    if resolved not in includes:
        includes.append(resolved)


def _merge_entries(entries: Mapping[str, Any], *, file: str | None, space: dict[str, Domain],
                   origins: dict[str, str]) -> None:
    for raw_key, raw_domain in entries.items():
        key = ",".join(split_key(str(raw_key)))
        keys = split_key(key)
        for k in keys:
            field_of(k, file=file, space_key=f"space.{key}")
        if len(set(keys)) != len(keys):
            raise ConfigError("a tied key names the same parameter twice", file=file, key=f"space.{key}")
        for other in list(space):
            if other != key and set(split_key(other)) & set(keys):
                raise ConfigError(f"overlaps {other!r} from {origins[other]}: a parameter can be varied by one "
                                  f"entry only; use the same key to override it", file=file, key=f"space.{key}")
        space[key] = _parse_domain(keys, raw_domain, file=file, key=f"space.{key}")
        origins[key] = file or "the sweep"


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


def _check_algorithm(parsed: SweepFile, space: Mapping[str, Domain], origins: Mapping[str, str],
                     file: str | None) -> None:
    """What the algorithm's catalogue entry says about grid domains, and the scheduler's own check."""
    algo = parsed.search.algorithm
    grid_domains = SEARCH_ALGORITHMS.meta(algo)["grid_domains"]
    if grid_domains == "refused":
        grids = [k for k, d in space.items() if d.kind == "grid"]
        if grids:
            raise ConfigError(f"{algo} samples the space and cannot take grid domains ({grids[0]} from "
                              f"{origins[grids[0]]}); use choice, or algorithm: grid", file=file,
                              key="search.algorithm")
    if grid_domains == "required" and not any(d.kind == "grid" for d in space.values()):
        raise ConfigError(f"algorithm {algo} needs at least one grid domain; for sampled domains use "
                          "algorithm: random or optuna", file=file, key="search.algorithm")
    check = SCHEDULERS.meta(parsed.scheduler.type).get("check")
    if check is not None:
        try:
            check(parsed.scheduler)
        except ConfigError as exc:
            key, body = _split_error(exc)
            raise ConfigError(body, file=file, key=key) from None


def _check_combinations(sweep: SweepSpec, origins: Mapping[str, str], file: str | None) -> None:
    """Build the trial config of every grid point (probing sampled domains at their bounds)."""
    keys = list(sweep.space)
    choices = [sweep.space[k].probe_values() for k in keys]
    total = 1
    for c in choices:
        total *= len(c)
    if total <= _MAX_CHECKED_COMBINATIONS:
        combos: Iterator[tuple] = itertools.product(*choices)
    else:
        rng = random.Random(0)
        combos = (tuple(rng.choice(c) for c in choices) for _ in range(_MAX_CHECKED_COMBINATIONS))
    for combo in combos:
        params = dict(zip(keys, combo))
        try:
            sweep.trial_config_for(params)
        except ConfigError as exc:
            key, body = _split_error(exc)
            point = ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
            what = f"{key}: {body}" if key else body
            raise ConfigError(f"the space yields an invalid trial ({point}): {what}",
                              file=file, key="space") from None


# ---------------------------------------------------------------------------------------------
# Expansion (dry run)
# ---------------------------------------------------------------------------------------------
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


def describe(sweep: SweepSpec) -> str:
    """A human summary of the sweep for `--dry-run` and the start banner."""
    s = sweep.search
    lines = [f"sweep {sweep.name} (spec {sweep.spec_hash}) from {sweep.file or '<dict>'}"]
    if sweep.includes:
        lines.append("  includes: " + ", ".join(Path(p).name for p in sweep.includes))
    objective = ", ".join(f"{m} ({mode})" for m, mode in s.objectives) or "none"
    lines.append(f"  search: {s.algorithm}, num_samples {s.num_samples}, objective {objective}, "
                 f"max_concurrent {s.max_concurrent or 'auto'}, seed {s.seed}")
    sch = sweep.scheduler
    summary = SCHEDULERS.meta(sch.type).get("summary")
    lines.append(f"  scheduler: {sch.type}" + (f" ({summary(sch, sweep.trial.train.epochs)})" if summary else ""))
    lines.append(f"  resources per trial: cpu {sweep.resources.cpu:g}, gpu {sweep.resources.gpu:g}; "
                 f"max_failures {sweep.failures.max_failures}")
    lines.append(f"  trial function: {sweep.trial_function}")
    lines.append("  space:")
    for key, dom in sweep.space.items():
        lines.append(f"    {key}: {dom.describe()}")
    return "\n".join(lines)


def _metric_list() -> str:
    return ", ".join(FINAL_METRICS) + ", " + ", ".join(p + "<name>" for p in FINAL_METRIC_PREFIXES)


def _check_final_metric(name: str, key: str) -> None:
    if name in FINAL_METRICS or name.startswith(FINAL_METRIC_PREFIXES):
        return
    hint = closest(name, list(FINAL_METRICS) + [p.rstrip("/") for p in FINAL_METRIC_PREFIXES])
    raise ConfigError(f"{name!r} is not a final trial metric{hint}; allowed: {_metric_list()}", key=key)
