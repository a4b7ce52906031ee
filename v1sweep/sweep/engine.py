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

This module runs and resumes a sweep and builds its Tuner; the rest lives beside it: the Ray session,
its environment and quiet logging in `v1sweep.sweep.session`, the search algorithm, scheduler and
progress output in `v1sweep.sweep.tuning`, the dry run in `v1sweep.sweep.dry_run`, the sweep folder
and its record in `v1sweep.sweep.folder`, and the end of a sweep (trials settled, summary printed) in
`v1sweep.sweep.summary`. Their names used elsewhere stay importable from here.

Sweep folder (``--storage``, default ``./v1sweep_runs``; Ray Tune's experiment folder too)::

    <storage>/<name>-<YYYYmmdd-HHMMSS>/
      sweep.json   name, tracking URI, experiment, parent run id, spec hash  (what resume needs)
      sweep.yaml   the resolved, self-contained sweep (no includes)
      source.yaml  the sweep file as given
      trials/<trial_id>/   the trial's out_dir: config.yaml, checkpoint.pt, summary.json, epochs.jsonl ...
"""
from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from v1sweep import contracts as C
from v1sweep.config import sweep_file as sweep_spec
from v1sweep.config.sweep_file import SweepSpec
from v1sweep.errors import OutputError, RayStateError, V1SweepError
from v1sweep.results.store import mask_uri, resolve_tracking_uri, sqlite_path
from v1sweep.sweep import rebuild as sweep_rebuild
from v1sweep.sweep import resources as sweep_resources
from v1sweep.sweep.callback import SearchAlgorithmFailed, TrackingBridge, make_callback
from v1sweep.sweep.space import param_space
from v1sweep.sweep.trainable import FINAL_FILE, TrialFn, make_trainable, resolve_trial_fn  # noqa: F401

# Moved to the modules named in the docstring; imported here for this module's use and re-exported
# (`from v1sweep.sweep.engine import ...` keeps working for every name listed).
from v1sweep.sweep.dry_run import cost_lines, print_dry_run  # noqa: F401
from v1sweep.sweep.folder import (  # noqa: F401
    DEFAULT_STORAGE, SOURCE_YAML, SPEC_YAML, SWEEP_JSON, _new_sweep_dir, _read_sweep_json, _read_yaml,
    _stored_trial_fn, _sweep_info, _write_json, _yaml)
from v1sweep.sweep.session import (  # noqa: F401
    _driver_node, _slots, _tune_env, check_address, quiet_libraries, ray_session)
from v1sweep.sweep.summary import SweepOutcome, _browse_hint, _fit, _publish_view, _stored_trials  # noqa: F401
from v1sweep.sweep.tuning import (  # noqa: F401
    TABLE_METRICS, _reporter, _tune_verbosity, checked_search_algorithm, scheduler, search_algorithm, search_failure)


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


# Tune's trial names and folders. Ray Tune pickles these two into its experiment state by module path
# (`v1sweep.sweep.engine._trial_id_name`), which a resume loads: they stay defined here.
def _trial_id_name(trial: Any) -> str:
    return trial.trial_id


def _trial_dirname(trial: Any) -> str:
    return f"tune-{trial.trial_id}"


__all__ = ["SweepOutcome", "run_sweep", "resume_sweep", "print_dry_run", "make_trainable", "resolve_trial_fn",
           "param_space", "search_algorithm", "scheduler", "ray_session", "TrackingBridge"]
