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

This module is the entry point: the loader (`load_sweep`, `from_dict`: ``--set`` overrides, the base
trial config, the checks that need the whole sweep, `describe`) and the two dataclasses, `SweepFile`
(the keys a file may hold) and `SweepSpec` (the validated sweep, pickled with Ray Tune's state). The
parts it assembles live beside it and are re-exported here: `sweep_sections` (``search:`` ...
``tracking:``), `domains` (one space entry, `expand`), `search_space` (``include:``-d fragments),
`bundled` (where ``sweeps/`` and ``search_spaces/`` are, sweeps by name) and `keyed_errors`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from v1sweep.config import trial as trial_config
from v1sweep.config.trial import TrialConfig
from v1sweep.errors import ConfigError
from v1sweep.config.schema import build, closest, deep_merge, spec, to_dict, unflatten
from v1sweep.sweep.algorithms import SEARCH_ALGORITHMS
from v1sweep.sweep.schedulers import SCHEDULERS
# Moved to their own modules; re-exported here, the entry point the rest of v1sweep and scripts import.
from v1sweep.config.bundled import (BUNDLE_ROOT, REPO_ROOT, SEARCH_SPACES_DIR, SWEEPS_DIR,  # noqa: F401
                                    _find_file, bundled_sweeps, find_sweep)
from v1sweep.config.domains import (DOMAINS, Domain, expand, field_of, format_value,  # noqa: F401
                                    is_int_field, split_key)
from v1sweep.config.keyed_errors import _reraise, _split_error
from v1sweep.config.search_space import FragmentFile, _resolve_space  # noqa: F401
from v1sweep.config.sweep_sections import (FINAL_METRIC_PREFIXES, FINAL_METRICS, FailuresSpec,  # noqa: F401
                                           ResourcesSpec, SchedulerSpec, SearchSpec, TrackingSpec,
                                           _check_final_metric)

DEFAULT_TRIAL_FUNCTION = "v1sweep.trial:run_trial"
# Trial keys holding paths: made absolute against the working directory when the sweep is loaded.
PATH_KEYS = ("data.path", "data.cache_dir", "eval.path", "eval.cache_dir", "rf.custom_path")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MAX_CHECKED_COMBINATIONS = 2048


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


# ---------------------------------------------------------------------------------------------
# Checks that need the whole sweep
# ---------------------------------------------------------------------------------------------
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
