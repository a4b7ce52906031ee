"""Run a `SweepSpec` with Ray Tune, on a fresh local Ray or a given cluster, tracked in MLflow.

    outcome = run_sweep(load_sweep("sweeps/smoke.yaml"))          # fresh local Ray, sqlite store
    outcome = run_sweep(spec, address="auto", tracking_uri="http://head:5000")
    resume_sweep(outcome.sweep_dir)                                # after the driver died

Each trial is one call of the trial function (default `v1sweep.trial.run_trial`) with absolute
paths: ``out_dir = <sweep_dir>/trials/<trial_id>``. The trainable reports every epoch and the final
metrics to Tune; MLflow is written on the driver (`v1sweep.results.tracking`), so workers never need the
tracking store, and the sqlite default works with a local Ray and a loopback cluster alike.
Resume restores Ray Tune's experiment state, re-attaches to the existing MLflow runs by their
``trial_id`` tag and back-fills epochs logged by the workers but lost by a killed driver. MLflow and
the trial folders are the record: when Ray's state is missing or lacks trials they know, the sweep
is rebuilt from them (`v1sweep.sweep.rebuild`); a damaged state file stops the resume until
``--rebuild`` is given; a FINISHED run is never deleted or superseded. Ray is imported inside functions only. The worker side
lives in `v1sweep.sweep.trainable`, the Tune-events-to-MLflow glue in `v1sweep.sweep.callback`;
docs/sweeps.md is the user's guide.

Sweep folder (``--storage``, default ``./v1sweep_runs``; Ray Tune's experiment folder too)::

    <storage>/<name>-<YYYYmmdd-HHMMSS>/
      sweep.json   name, tracking URI, experiment, parent run id, spec hash  (what resume needs)
      sweep.yaml   the resolved, self-contained sweep (no includes)
      source.yaml  the sweep file as given
      trials/<trial_id>/   the trial's out_dir: config.yaml, checkpoint.pt, summary.json, epochs.jsonl ...
"""
from __future__ import annotations

import datetime
import errno
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from v1sweep.sweep import rebuild as sweep_rebuild
from v1sweep.sweep import resources as sweep_resources
from v1sweep.config import sweep_file as sweep_spec
from v1sweep.errors import ConfigError, OutputError, V1SweepError
from v1sweep.results.store import mask_uri, resolve_tracking_uri, sqlite_path
from v1sweep.sweep.algorithms import SEARCH_ALGORITHMS
from v1sweep.sweep.callback import SearchAlgorithmFailed, TrackingBridge, make_callback
from v1sweep.sweep.schedulers import SCHEDULERS
from v1sweep.sweep.space import param_space
from v1sweep.config.sweep_file import SweepSpec
from v1sweep.sweep.trainable import FINAL_FILE, TrialFn, make_trainable, resolve_trial_fn  # noqa: F401

from v1sweep import contracts as C
from v1sweep.io import scoped_env, write_json

SWEEP_JSON, SPEC_YAML, SOURCE_YAML = C.SWEEP_JSON, C.SPEC_YAML, C.SOURCE_YAML
DEFAULT_STORAGE = "v1sweep_runs"
TABLE_METRICS = ("epoch", "val_acc", "clean_acc", "corruption_acc")


@dataclass
class SweepOutcome:
    """What a finished (or resumed) sweep left behind."""
    sweep_dir: Path
    parent_run_id: str
    tracking_uri: str
    experiment_id: str
    counts: dict[str, int] = field(default_factory=dict)
    trial_ids: list[str] = field(default_factory=list)
    lost_writes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False


# ---------------------------------------------------------------------------------------------
# Search algorithms and schedulers
# ---------------------------------------------------------------------------------------------
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


def _trial_id_name(trial: Any) -> str:
    return trial.trial_id


def _trial_dirname(trial: Any) -> str:
    return f"tune-{trial.trial_id}"


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


# Library log lines a user of `v1sweep run` does not need (shown with --verbose): the token-auth
# notice of every local Ray, Tune's "Trials did not complete" (the summary counts failures), MLflow's
# schema-creation notes for a new sqlite store.
_NOISY_LOGGERS = {"ray._private.authentication.authentication_token_setup": "ERROR", "ray.tune.tune": "CRITICAL",
                  "mlflow.store.db.utils": "WARNING", "alembic.runtime.migration": "WARNING"}


@contextmanager
def quiet_libraries(verbose: int) -> Iterator[None]:
    """Lower the noisy library loggers while a sweep runs (nothing changes with verbose >= 2)."""
    import logging

    if verbose >= 2:
        yield
        return
    old = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name, level in _NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, previous in old.items():
            logging.getLogger(name).setLevel(previous)


# ---------------------------------------------------------------------------------------------
# Ray sessions and environment
# ---------------------------------------------------------------------------------------------
_TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",   # MLflow is the record; no result.json/progress.csv
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",  # per-epoch results lack the final metrics
    "RAY_AIR_NEW_OUTPUT": "0",                   # the CLIReporter table with our metric columns
    "TUNE_GLOBAL_CHECKPOINT_S": "5",             # save the experiment state often (resume loses less)
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # no "View run at" line (and GET) per ended run
}


@contextmanager
def _tune_env() -> Iterator[None]:
    import logging

    # With Tune's file loggers off, its result analysis warns that result.json is missing: not an issue.
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    # The user's own TUNE_GLOBAL_CHECKPOINT_S / ..._THRESHOLD_S win; the others are always ours.
    try:
        with scoped_env(_TUNE_ENV, keep_existing=("TUNE_GLOBAL_CHECKPOINT_S",
                                                  "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S")):
            yield
    finally:
        quiet.setLevel(level)


@contextmanager
def ray_session(address: str | None, num_cpus: int | None, *, log: Callable[[str], Any] = print,
                verbose: int = 2) -> Iterator[dict]:
    """A fresh local Ray (address None) or the given cluster; a Ray already initialised *in this
    process* (by the caller) is used as is and left running. Below verbose 2 the workers' output
    stays in their trial.log and Ray's log files instead of the driver's terminal."""
    import ray

    if ray.is_initialized():
        yield {"owned": False, "address": "this process's Ray"}
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": verbose >= 2}
    if address is None:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
        where = "a fresh local Ray"
    else:
        check_address(address)
        _enable_token_auth_if_available()
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise V1SweepError(
                f"cannot connect to the Ray cluster at {address!r}: {str(exc).strip().splitlines()[-1][:300]}. "
                f"Check the address (auto or host:port of the head's GCS, e.g. 10.0.0.5:6379); a cluster started with token "
                f"authentication (the default of `ray start` in Ray 2.5x+) needs RAY_AUTH_MODE=token and its "
                f"token (~/.ray/auth_token or RAY_AUTH_TOKEN) on this machine") from None
        where = f"the Ray cluster at {address}"
    try:
        res = ray.cluster_resources()
        log(f"Ray: {where} ({len([n for n in ray.nodes() if n.get('Alive')])} node(s), "
            f"{res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU)")
        yield {"owned": True, "address": where}
    finally:
        ray.shutdown()


def check_address(address: str | None) -> None:
    """Refuse Ray Client addresses before anything starts (see the message)."""
    if address and address.strip().startswith("ray://"):
        raise V1SweepError(
            "Ray Client addresses (ray://) run Ray Tune's driver on the head node, out of reach of this "
            "process's MLflow logging; run the sweep on the head node instead: `v1sweep run SWEEP.yaml "
            "--address auto` there, or `ray job submit --address http://HEAD:8265 --working-dir . -- "
            "v1sweep run SWEEP.yaml --address auto`")


def _enable_token_auth_if_available() -> None:
    """Like `ray start --address`: use token auth when a token is present and RAY_AUTH_MODE is unset."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available)

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except Exception:  # noqa: BLE001 - older/newer Ray without this helper
        pass


def _slots(spec: SweepSpec) -> int:
    import ray

    res = ray.cluster_resources()
    by_cpu = int(res.get("CPU", 1) // spec.resources.cpu) if spec.resources.cpu else 1
    by_gpu = int(res.get("GPU", 0) // spec.resources.gpu) if spec.resources.gpu else by_cpu
    return max(1, min(by_cpu, by_gpu))


# ---------------------------------------------------------------------------------------------
# Running and resuming
# ---------------------------------------------------------------------------------------------
def print_dry_run(spec: SweepSpec, out: Callable[[str], Any] = print, *, calibrate: bool = False,
                  num_cpus: int | None = None) -> list[dict[str, Any]]:
    """Print the sweep and its expanded trials (grid: every point; sampled: the domains), then the
    cost per trial (`v1sweep.sweep.cost`): pass counts, and with `calibrate` a timed extrapolation to
    CPU/GPU-hours and wall time on this machine's slots (`num_cpus`, default all)."""
    trials = sweep_spec.expand(spec)
    out(sweep_spec.describe(spec))
    kind = "trials" if spec.search.algorithm in ("grid", "random") else "trials sampled by " + spec.search.algorithm
    out(f"{len(trials)} {kind}:")
    for i, params in enumerate(trials):
        out(f"  {i:4d}  " + ", ".join(f"{k}={sweep_spec.format_value(v)}" for k, v in params.items()))
    cost = _attack_cost_line(spec, trials)
    if cost:
        out(cost)
    for line in cost_lines(spec, trials, calibrate=calibrate, num_cpus=num_cpus):
        out(line)
    return trials


def cost_lines(spec: SweepSpec, trials: list[dict[str, Any]], *, calibrate: bool = False,
               num_cpus: int | None = None) -> list[str]:
    """The dry run's cost lines (`v1sweep.sweep.cost.describe`); `calibrate` times the first trial's model
    on this machine (torch needed then, Ray never)."""
    from v1sweep.sweep import cost as cost

    configs = cost.configs_of(spec, trials)
    import os

    threads = max(1, min(int(spec.resources.cpu), os.cpu_count() or 1)) if spec.resources.cpu else None
    rates = cost.calibrate(configs[0], threads=threads) if calibrate and configs else None
    gpus = 1 if spec.resources.gpu and rates and str(rates.get("device", "")).startswith("cuda") else 0
    slots = cost.local_slots(spec.resources, num_cpus, gpus)
    return cost.describe(configs, spec.resources, rates=rates, slots=slots)


def _attack_cost_line(spec: SweepSpec, trials: list[dict[str, Any]]) -> str:
    """The white-box attacks' cost per trial (docs/adversarial.md): forward+backward passes per image
    (steps x eot x restarts) x images, for the costliest expanded trial."""
    from v1sweep.config import adversarial as adv
    from v1sweep.config import trial as trial_config

    base = trial_config.to_flat(spec.trial)
    best: tuple[int, Any] | None = None
    for params in trials or [{}]:
        try:
            cfg = trial_config.from_flat({**base, **params})
        except Exception:  # noqa: BLE001 - sampled domains appear as descriptions in a dry run
            cfg = spec.trial
        if cfg.eval.adversarial:
            total = adv.attack_cost(cfg.eval.adversarial, cfg.stochastic, cfg.data.test_size)["backward"]
            if best is None or total > best[0]:
                best = (total, cfg)
    if best is None:
        return ""
    total, cfg = best
    lines = [f"white-box attacks per trial: {total:,} forward+backward image-passes "
             "(steps x eot x restarts per image, x images; plus one forward per restart and image)"]
    for attack in cfg.eval.adversarial:
        a = adv.vars_of(attack)
        back, _ = adv.passes_per_image(a, cfg.stochastic)
        images = adv.resolve_images(attack.images, cfg.data.test_size)
        lines.append(f"    {attack.metric}: {back} passes/image x {images} images = {back * images:,}")
    return "\n".join(lines)


def _new_sweep_dir(storage: Path, name: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = storage / (f"{name}-{stamp}" + (f"-{i}" if i else ""))
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise OutputError(f"cannot create a new sweep folder under {storage}")


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_json(path, data, indent=2, default=str)


def run_sweep(spec: SweepSpec, *, address: str | None = None, storage: str | Path | None = None,
              tracking_uri: str | None = None, trial_fn: TrialFn | str | None = None, dry_run: bool = False,
              num_cpus: int | None = None, verbose: int = 1, command: str | None = None,
              retry_s: float = 600.0, out: Callable[[str], Any] = print) -> SweepOutcome | None:
    """Run every trial of `spec` with Ray Tune and record them in MLflow (see the module doc).

    `trial_fn` replaces the sweep's trial function (a callable or ``"module:function"``) with the
    signature of `v1sweep.trial.run_trial`; it returns an object with ``.metrics`` or a dict.
    """
    if dry_run:
        print_dry_run(spec, out, num_cpus=num_cpus)
        return None
    from v1sweep.results.tracking import SweepTracker, check_store, command_line, describe_uri

    check_address(address)
    started = time.monotonic()
    if address is None:
        sweep_resources.check_local(spec, num_cpus)
    uri = resolve_tracking_uri(tracking_uri, fallback=spec.tracking.uri)
    out(f"MLflow tracking store: {describe_uri(uri)}")
    with quiet_libraries(verbose):
        check_store(uri)
    storage_dir = Path(storage or DEFAULT_STORAGE).expanduser().absolute()
    try:
        storage_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the sweep storage folder {storage_dir}: {exc.strerror}") from None
    if not os.access(storage_dir, os.W_OK):
        raise V1SweepError(f"the sweep storage folder {storage_dir} is not writable")
    command = command or command_line(uri=uri)
    with _tune_env(), quiet_libraries(verbose), ray_session(address, num_cpus, log=out, verbose=verbose):
        sweep_resources.check_connected(spec, address)
        sweep_dir = _new_sweep_dir(storage_dir, spec.name)
        (sweep_dir / SPEC_YAML).write_text(_yaml(spec.to_dict()))
        files = {"": sweep_dir / SPEC_YAML}
        if spec.file and Path(spec.file).is_file():
            shutil.copyfile(spec.file, sweep_dir / SOURCE_YAML)
            files = {"": sweep_dir / SOURCE_YAML, "resolved": sweep_dir / SPEC_YAML}
        tracker = SweepTracker(uri, experiment=spec.experiment, sweep_name=spec.name, retry_s=retry_s, log=out)
        where = [Path(spec.file).resolve().parent] if spec.file else []
        parent = tracker.start_sweep(spec_hash=spec.spec_hash, sweep_dir=str(sweep_dir), command=command, files=files,
                                     commit_dirs=[*where, Path.cwd(), sweep_spec.REPO_ROOT])
        _write_json(sweep_dir / SWEEP_JSON, _sweep_info(spec, sweep_dir, uri, tracker, parent, trial_fn))
        out(f"sweep {spec.name}: folder {sweep_dir}")
        _publish_view(tracker, spec)
        out(f"MLflow: experiment {spec.experiment!r}, parent run {parent}; "
            f"{_browse_hint(uri, tracker.experiment_id, spec.name)}")
        with _failing_parent(tracker):
            tuner, bridge = _new_tuner(spec, sweep_dir, tracker, trial_fn, verbose)
            return _fit(tuner, bridge, tracker, sweep_dir, uri, started, out)


@contextmanager
def _failing_parent(tracker: Any) -> Iterator[None]:
    """An unexpected error before or while Tune runs ends the parent run FAILED, not RUNNING."""
    try:
        yield
    except Exception as exc:
        reason = str(exc) if isinstance(exc, SearchAlgorithmFailed) else f"{type(exc).__name__}: {exc}"
        for tid, child in list(tracker.children.items()):  # trials Tune dropped with the searcher
            if child.status == "RUNNING":
                tracker.trial_ended(tid, "interrupted", error=f"sweep stopped: {reason}"[:4000])
        tracker.end_sweep("FAILED", tags={C.ERROR: reason[:4000]}, timeout=60)
        tracker.close(timeout=60)
        raise


from v1sweep.errors import RayStateError  # noqa: E402,F401 - defined in v1sweep.errors, importable here


def resume_sweep(sweep_dir: str | Path, *, address: str | None = None, tracking_uri: str | None = None,
                 trial_fn: TrialFn | str | None = None, num_cpus: int | None = None, verbose: int = 1,
                 command: str | None = None, retry_s: float = 600.0, rebuild: bool = False,
                 retry_failed: bool = False, out: Callable[[str], Any] = print) -> SweepOutcome:
    """Continue an interrupted sweep: finished trials stay, unfinished ones resume from their
    checkpoints, MLflow keeps exactly one child run per trial and no FINISHED run is ever removed.

    Ray Tune's saved state is used when it is whole and knows every trial MLflow and the trial
    folders know; otherwise the sweep is rebuilt from those (`v1sweep.sweep.rebuild`). A damaged
    state file stops the resume (`RayStateError`, nothing changed) unless `rebuild` is set.
    `retry_failed` reruns FAILED trials (trials a full disk failed are rerun on every resume).
    """
    from v1sweep.results.tracking import SweepTracker, check_store, command_line, describe_uri

    check_address(address)
    started = time.monotonic()
    sweep_dir = Path(sweep_dir).expanduser().absolute()
    info_path = sweep_dir / SWEEP_JSON
    if not info_path.is_file():
        raise V1SweepError(f"{sweep_dir} is not a sweep folder (no {SWEEP_JSON}); pass the folder "
                           f"`v1sweep run` printed, e.g. {DEFAULT_STORAGE}/<name>-<time>")
    info = _read_sweep_json(info_path)
    spec = sweep_spec.from_dict(_read_yaml(sweep_dir / SPEC_YAML), file=str(sweep_dir / SPEC_YAML),
                                base_dir=sweep_dir)
    stored_uri = info.get("tracking_uri")
    if info.get("tracking_uri_masked") and not tracking_uri:
        raise V1SweepError(f"the sweep's tracking URI holds credentials and was not stored "
                           f"({stored_uri}); pass it again with --tracking-uri")
    uri = resolve_tracking_uri(tracking_uri, fallback=stored_uri)
    _check_resume_store(uri, stored_uri)
    use_state = sweep_rebuild.has_state(sweep_dir) and not rebuild
    problem = sweep_rebuild.state_problem(sweep_dir) if use_state else None
    if problem:
        raise RayStateError(f"{problem[0]}: Ray Tune's saved state is {problem[1]}; nothing was changed. "
                            f"MLflow and the trial folders hold the sweep: rebuild it from them with "
                            f"`v1sweep resume --rebuild {sweep_dir}` (finished trials are kept, unfinished "
                            f"ones continue from their checkpoints)")
    if address is None:
        sweep_resources.check_local(spec, num_cpus)
    out(f"MLflow tracking store: {describe_uri(uri)}")
    with quiet_libraries(verbose):
        check_store(uri)
    command = command or command_line(uri=uri)
    trial_fn = trial_fn if trial_fn is not None else _stored_trial_fn(info, spec)
    with _tune_env(), quiet_libraries(verbose), ray_session(address, num_cpus, log=out, verbose=verbose):
        sweep_resources.check_connected(spec, address)
        tracker = SweepTracker(uri, experiment=info.get("experiment") or spec.experiment, sweep_name=spec.name,
                               retry_s=retry_s, log=out)
        children = tracker.attach_sweep(info["parent_run_id"], command=command)
        known = sweep_rebuild.known_trials(spec, sweep_dir, children)
        out(f"resuming sweep {spec.name} in {sweep_dir}: {len(children)} trial run(s) in MLflow, "
            f"{len(known)} trial(s) known")
        _publish_view(tracker, spec)
        with _failing_parent(tracker):
            saved = sweep_rebuild.saved_trials(sweep_dir) if use_state else {}
            forgotten = sorted(t for t in known if t not in saved)
            if use_state and not forgotten:
                tuner, bridge = _restored_tuner(spec, sweep_dir, tracker, trial_fn, verbose, out, known=known,
                                                retry_failed=retry_failed)
                kept: dict[str, str] = {}
            else:
                why = ("--rebuild" if rebuild else "no Ray Tune state in the folder" if not use_state else
                       f"Ray's saved state lacks {len(forgotten)} trial(s) MLflow and the trial folders know "
                       f"({', '.join(forgotten[:5])}{' ...' if len(forgotten) > 5 else ''})")
                out(f"rebuilding the sweep from MLflow and the trial folders ({why})")
                tuner, bridge, kept = _rebuilt_tuner(spec, sweep_dir, tracker, trial_fn, verbose, out, known=known,
                                                     retry_failed=retry_failed)
            return _fit(tuner, bridge, tracker, sweep_dir, uri, started, out, kept=kept)


def _check_resume_store(uri: str, stored_uri: str | None) -> None:
    """A resume writes to the store the sweep has; a local store that is not there is a wrong
    --tracking-uri, refused before an empty database is created."""
    from v1sweep.results.store import store_exists

    if sqlite_path(uri) is not None and not store_exists(uri):
        raise V1SweepError(f"no MLflow store at {mask_uri(uri)}; the sweep was tracked in {stored_uri}: pass that "
                           f"--tracking-uri, or leave it out")


def _stored_trial_fn(info: Mapping[str, Any], spec: SweepSpec) -> TrialFn | str:
    """The trial function the sweep ran with; one passed as a Python object must be importable."""
    ref = info.get("trial_function") or spec.trial_function
    if ref != spec.trial_function:
        try:
            resolve_trial_fn(ref)
        except (ConfigError, ImportError) as exc:
            raise V1SweepError(f"the sweep ran trial function {ref}, which cannot be imported here ({exc}); "
                               f"resume it from Python with resume_sweep(..., trial_fn=...)") from None
    return ref


def _restored_tuner(spec: SweepSpec, sweep_dir: Path, tracker: Any, trial_fn: TrialFn | str, verbose: int,
                    out: Callable[[str], Any], *, known: Mapping[str, Any],
                    retry_failed: bool = False) -> tuple[Any, TrackingBridge]:
    """Ray Tune's saved experiment, with this session's callback; trials it will not run again
    (finished or failed before the driver died) get their MLflow runs completed first. Failed trials
    to retry (`sweep_rebuild.needs_retry`) are set back to PENDING in the saved state."""
    from ray.tune import Tuner

    retry = {t for t, k in known.items() if sweep_rebuild.needs_retry(k, retry_failed)}
    errored = {t for t, status in sweep_rebuild.saved_trials(sweep_dir).items() if status == "ERROR"}
    if retry & errored:
        out(f"rerunning {len(retry & errored)} failed trial(s) from their checkpoints: "
            f"{', '.join(sorted(retry & errored))}")
        sweep_rebuild.set_status(sweep_dir, retry & errored, "PENDING")
    bridge = TrackingBridge(tracker, spec)
    for trial in _stored_trials(sweep_dir):
        if trial.status in ("TERMINATED", "ERROR"):
            bridge.reconcile(trial)
    tuner = Tuner.restore(str(sweep_dir), trainable=make_trainable(spec, sweep_dir, trial_fn, _driver_node()),
                          resume_unfinished=True, resume_errored=False, restart_errored=False)
    local_tuner: Any = tuner._local_tuner  # set by Tuner.restore in this process
    run_config = local_tuner.get_run_config()  # the pickled callback has no tracker: replace it
    run_config.callbacks = [make_callback(bridge)]
    run_config.progress_reporter = _reporter(spec, verbose)
    run_config.verbose = _tune_verbosity(verbose)
    return tuner, bridge


def _rebuilt_tuner(spec: SweepSpec, sweep_dir: Path, tracker: Any, trial_fn: TrialFn | str, verbose: int,
                   out: Callable[[str], Any], *, known: Mapping[str, Any],
                   retry_failed: bool = False) -> tuple[Any, TrackingBridge, dict[str, str]]:
    """A new Tune experiment in the same folder from what MLflow and the trial folders know (see
    `v1sweep.sweep.rebuild`): finished trials kept, the rest run under their own ids; Ray's old
    state files are moved aside, never deleted. Returns (tuner or None, bridge, kept trial states)."""
    kept: dict[str, str] = {}
    for tid, k in known.items():
        if k.state == "finished":
            sweep_rebuild.complete_from_folder(tracker, spec, k)
            kept[tid] = "finished"
        elif k.state in ("failed", "stopped") and not sweep_rebuild.needs_retry(k, retry_failed):
            kept[tid] = k.state
    points = sweep_rebuild.plan(spec, known, retry_failed=retry_failed)
    aside = sweep_rebuild.move_state_aside(sweep_dir)
    again = sum(1 for p in points if p["id"])
    out(f"rebuilt: {list(kept.values()).count('finished')} finished trial(s) kept, "
        f"{len(kept) - list(kept.values()).count('finished')} failed/stopped kept, {again} continued from "
        f"their checkpoints, {len(points) - again} not started yet"
        + (f"; Ray's previous state moved to {aside}" if aside else ""))
    bridge = TrackingBridge(tracker, spec)
    if not points:
        return None, bridge, kept
    tuner, bridge = _new_tuner(spec, sweep_dir, tracker, trial_fn, verbose, points=points, bridge=bridge)
    return tuner, bridge, kept


def _stored_trials(sweep_dir: Path) -> list:
    from ray.tune import ExperimentAnalysis

    try:
        return list(ExperimentAnalysis(str(sweep_dir)).trials)
    except Exception:  # noqa: BLE001 - unreadable state: Tune's restore reports it
        return []


def _driver_node() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001
        return None


def _new_tuner(spec: SweepSpec, sweep_dir: Path, tracker: Any, trial_fn: TrialFn | str | None,
               verbose: int, *, points: list[dict] | None = None,
               bridge: TrackingBridge | None = None) -> tuple[Any, TrackingBridge]:
    """`points`: a rebuilt sweep's explicit trials (`v1sweep.sweep.rebuild.plan`) instead of the search."""
    from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner

    bridge = bridge or TrackingBridge(tracker, spec)
    slots = _slots(spec)
    search_alg, max_concurrent = checked_search_algorithm(spec, slots)
    space, num_samples = param_space(spec), spec.search.num_samples
    if points is not None:
        search_alg, max_concurrent, space, num_samples = _rebuilt_search(spec, points)
    tune_config = TuneConfig(search_alg=search_alg, scheduler=scheduler(spec), num_samples=num_samples,
                             max_concurrent_trials=max_concurrent, reuse_actors=True,
                             trial_name_creator=_trial_id_name, trial_dirname_creator=_trial_dirname)
    run_config = RunConfig(name=sweep_dir.name, storage_path=str(sweep_dir.parent), callbacks=[make_callback(bridge)],
                           failure_config=FailureConfig(max_failures=spec.failures.max_failures),
                           progress_reporter=_reporter(spec, verbose), verbose=_tune_verbosity(verbose))
    tuner = Tuner(make_trainable(spec, sweep_dir, trial_fn, _driver_node()), param_space=space,
                  tune_config=tune_config, run_config=run_config)
    return tuner, bridge


def _rebuilt_search(spec: SweepSpec, points: list[dict]) -> tuple[Any, None, dict[str, Any], int]:
    """(search_alg, max_concurrent, param_space, num_samples) running exactly `points`, once each."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from v1sweep.sweep.trainable import POINT

    return (BasicVariantGenerator(max_concurrent=spec.search.max_concurrent or 0), None,
            {POINT: tune.grid_search(points)}, 1)


def _fit(tuner: Any, bridge: TrackingBridge, tracker: Any, sweep_dir: Path, uri: str, started: float,
         out: Callable[[str], Any], kept: Mapping[str, str] | None = None) -> SweepOutcome:
    """Run the tuner (None: nothing left to run) and settle every trial's run; `kept`: trials a
    rebuilt sweep keeps without running them (trial id -> state)."""
    from v1sweep.sweep.trainable import trial_key

    kept = dict(kept or {})
    try:
        if tuner is not None:
            tuner.fit()
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001
        failed = search_failure(exc)
        if failed is not None:
            raise failed from None  # `_failing_parent` marks the parent run FAILED with its message
        # Tune ran, then failed reading its own files back (a full disk leaves Ray's error/state
        # files empty); the trials' runs are settled below.
        out(f"warning: Ray Tune ended with {_no_space_text(exc, sweep_dir)}; the trials' MLflow runs are "
            f"settled from what the driver saw")
    # Ray Tune's saved state is what a resume continues from: after an interrupt it still lists the
    # stopped-by-Ctrl-C trials as running (the in-memory trials are already cleaned up).
    trials = (_stored_trials(sweep_dir) or bridge.trials) if tuner is not None else []
    for trial in trials:
        tid = trial_key(trial)
        if bridge.states.get(tid) in ("finished", "failed", "interrupted") or (
                tid in bridge.states and trial.status in ("TERMINATED", "ERROR")):
            continue
        if trial.status in ("TERMINATED", "ERROR"):
            bridge.reconcile(trial)
        elif tracker.has_trial(tid):
            bridge._end(tid, "interrupted")
    interrupted = any(state == "interrupted" for state in bridge.states.values()) or \
        any(t.status not in ("TERMINATED", "ERROR") for t in trials)
    ids = [trial_key(t) for t in trials] + [t for t in kept if t not in {trial_key(x) for x in trials}]
    if not interrupted:
        gone = tracker.remove_orphans(set(ids))
        if gone:
            out(f"removed {len(gone)} unfinished MLflow run(s) of trials Ray had not saved before the driver died")
    counts = {"finished": 0, "failed": 0, "stopped": 0, "interrupted": 0}
    tracker.flush(timeout=tracker.writer.retry_s + 60)  # artifacts a full disk refused fail their trial
    for tid in ids:
        child = tracker.children.get(tid)
        tags = child.tags if child else {}
        state = bridge.states.get(tid) or tags.get(C.STATUS) or kept.get(tid) or "interrupted"
        state = "failed" if state == "finished" and tid in tracker.no_space else state
        counts[state] = counts.get(state, 0) + 1
    tracker.end_sweep("KILLED" if interrupted else "FINISHED",
                      tags={C.trials_count(k): v for k, v in counts.items()} | {
                          C.SWEEP_WALL_TIME: f"{time.monotonic() - started:.1f}"})
    tracker.close(timeout=tracker.writer.retry_s + 60)
    info_path = sweep_dir / SWEEP_JSON
    info = _read_sweep_json(info_path)
    info["status"] = "interrupted" if interrupted else "finished"
    info["counts"] = counts
    try:  # the record's status is informational (MLflow has it); a full disk must not lose the rest
        _write_json(info_path, info)
    except OSError as exc:
        out(f"warning: cannot update {info_path}: "
            + (f"No space left on device: {info_path}" if exc.errno == errno.ENOSPC else str(exc)))
    outcome = SweepOutcome(sweep_dir=sweep_dir, parent_run_id=tracker.parent_run_id, tracking_uri=uri,
                           experiment_id=tracker.experiment_id, counts=counts,
                           trial_ids=ids, lost_writes=list(tracker.writer.lost),
                           seconds=time.monotonic() - started, interrupted=interrupted)
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    out(f"sweep {'interrupted' if interrupted else 'done'} in {outcome.seconds:.1f} s: {summary or 'no trials'}; "
        f"MLflow parent run {outcome.parent_run_id} in {mask_uri(uri)}")
    out(f"results: {_browse_hint(uri, outcome.experiment_id, tracker.sweep_name)}")
    if interrupted:
        out(f"continue with: v1sweep resume {sweep_dir}")
    if outcome.lost_writes:
        out(f"warning: {len(outcome.lost_writes)} MLflow write(s) could not be made; first: {outcome.lost_writes[0]}")
    return outcome


def _publish_view(tracker: Any, spec: SweepSpec) -> None:
    """Save the sweep's runs-table view (trials flat, best first, headline metrics and the swept
    params as columns) in its MLflow experiment, for the URL `_browse_hint` prints."""
    metric, mode = (spec.search.objectives or [("corruption_acc", "max")])[0]
    params = [p for key in spec.space for p in key.split(",")]
    tracker.publish_view(metric=metric, mode=mode, params=params)


def _browse_hint(uri: str, experiment_id: str, sweep_name: str) -> str:
    """Where to see the sweep: its runs-table URL on a tracking server, else the `v1sweep ui` command
    and the URL it will serve."""
    from v1sweep.results.tracking import experiment_url, view_key

    view = view_key(sweep_name)
    if uri.startswith(("http://", "https://")):
        return experiment_url(mask_uri(uri), experiment_id, view)
    ui = "v1sweep ui" + ("" if _is_default_store(uri) else f" --tracking-uri {mask_uri(uri)}")
    return f"`{ui}`, then {experiment_url('http://127.0.0.1:5000', experiment_id, view)}"


def _is_default_store(uri: str) -> bool:
    try:
        return resolve_tracking_uri(None) == uri
    except Exception:  # noqa: BLE001
        return False


def _no_space_text(exc: BaseException, where: Path) -> str:
    text = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    try:
        if shutil.disk_usage(where).free < 1024 * 1024:
            return f"{text} (No space left on device: {where})"
    except OSError:
        pass
    return text


def _sweep_info(spec: SweepSpec, sweep_dir: Path, uri: str, tracker: Any, parent: str,
                trial_fn: TrialFn | str | None = None) -> dict[str, Any]:
    masked = mask_uri(uri)
    objectives = spec.search.objectives
    return {
        "name": spec.name, "sweep_dir": str(sweep_dir), "tracking_uri": masked,
        "tracking_uri_masked": masked != uri, "experiment": spec.experiment,
        "experiment_id": tracker.experiment_id, "parent_run_id": parent, "spec_hash": spec.spec_hash,
        "search": {"algorithm": spec.search.algorithm,
                   "metric": objectives[0][0] if objectives else "corruption_acc",
                   "mode": objectives[0][1] if objectives else "max"},
        "trial_function": _fn_ref(trial_fn) if trial_fn is not None else spec.trial_function, "source": spec.file,
        "created": datetime.datetime.now().isoformat(timespec="seconds"), "status": "running",
    }


def _fn_ref(fn: TrialFn | str) -> str:
    if isinstance(fn, str):
        return fn
    target = getattr(fn, "func", fn)  # functools.partial
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"


def _yaml(data: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(data), sort_keys=False)


def _read_sweep_json(path: Path) -> dict[str, Any]:
    """The sweep folder's record; a damaged one is named, with what to do about it."""
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise V1SweepError(f"{path}: cannot read the sweep record ({exc}); it is not valid JSON. Restore it, "
                           f"or start the sweep again with `v1sweep run`") from None
    if not isinstance(info, dict) or "parent_run_id" not in info:
        raise V1SweepError(f"{path}: not a v1sweep sweep record (corrupt: no parent_run_id); restore it, "
                           f"or start the sweep again with `v1sweep run`")
    return info


def _read_yaml(path: Path) -> dict[str, Any]:
    from v1sweep.config.trial import read_yaml

    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a sweep mapping", file=str(path))
    return data


__all__ = ["SweepOutcome", "run_sweep", "resume_sweep", "print_dry_run", "make_trainable", "resolve_trial_fn",
           "param_space", "search_algorithm", "scheduler", "ray_session", "TrackingBridge"]
