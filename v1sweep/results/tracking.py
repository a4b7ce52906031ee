"""MLflow tracking for sweeps: one parent run per sweep, one child run per trial, written by the driver.

The layout is the contract in docs/architecture.md ("MLflow layout"); `v1sweep.results.query` and
`v1sweep.analysis` read it. All writes go through one background thread (`RunWriter`) that keeps
them in order, batches metrics (`MlflowClient.log_batch`) and retries transient failures (a
tracking server down for a while, ``database is locked``) so nothing is lost; the Tune driver loop
only enqueues. Child runs are found again by their ``trial_id`` tag, so a resumed sweep re-attaches
to its runs instead of creating duplicates. No Ray import here.

This module is the one entry point of the writer (import from here); its parts live apart:
`writer` (the background thread, batching and retries), `child_runs` (what is kept of a trial's run,
attempt history, full-disk handling), `run_values` (metrics, params and tags as MLflow takes them),
`store_check` (the store checked and described at start), `ui_view` (the experiment's saved UI view
and URLs) and `analysis_run` (the run `v1sweep analyze` writes).
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from v1sweep import contracts as C
from v1sweep.errors import TrackingError, V1SweepError  # noqa: F401 - defined there, importable from here too
# The parts of the writer live in their own modules; their names stay importable from here.
from v1sweep.results.analysis_run import AnalysisRun, start_analysis_run  # noqa: F401
from v1sweep.results.child_runs import (NO_SPACE, ChildRun, _artifact_no_space, _artifacts_back,  # noqa: F401
                                        _attempt_history, _finished)
from v1sweep.results.run_values import (RAY_KEYS, _is_number, _tag_value, _URI, command_line,  # noqa: F401
                                        git_commit, metric_items, param_value)
from v1sweep.results.store import mask_text, mask_uri, search_all_runs
from v1sweep.results.store_check import _quick_http, artifact_location, check_store, describe_uri  # noqa: F401
from v1sweep.results.ui_view import (EXPERIMENT_KIND, SHARED_VIEW_PREFIX, TRAINING_KIND,  # noqa: F401
                                     VIEW_METRICS, experiment_url, view_key, view_state)
from v1sweep.results.writer import _PERMANENT, RunWriter, _fits, _Op, _transient  # noqa: F401

# The layout's names are owned by `v1sweep.contracts`; these aliases are this module's public API.
ROLE, SWEEP, TRIAL_ID = C.ROLE, C.SWEEP, C.TRIAL_ID
STATUS, ERROR, PARENT = C.STATUS, C.ERROR, C.PARENT
FINAL_TAG = C.FINAL_LOGGED
# Set on a run whose final metrics are logged but whose artifacts a full disk refused (run FAILED).
ARTIFACTS_MISSING = C.ARTIFACTS_MISSING
# Files of a trial's output folder logged as artifacts (when present).
TRIAL_ARTIFACTS = C.TRIAL_ARTIFACTS
# Large enough for ResNet18/50 weights (model.pt, which model-level analyses rebuild networks from).
MAX_ARTIFACT_BYTES = 256 * 2**20


# ---------------------------------------------------------------------------------------------
# The sweep's runs
# ---------------------------------------------------------------------------------------------
class SweepTracker:
    """Writes a sweep's parent run and its trials' child runs (see the module doc)."""

    def __init__(self, uri: str, *, experiment: str, sweep_name: str, retry_s: float = 600.0,
                 log: Callable[[str], Any] = print) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.sweep_name = sweep_name
        self.log = log
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_id = self._experiment(experiment)
        self.parent_run_id: str | None = None
        self.children: dict[str, ChildRun] = {}
        self._runs: dict[str, str] = {}  # trial_id -> run_id, used by the writer thread
        # trial_id -> why its artifacts are not in MLflow ("No space left on device: PATH", or the
        # error of a write the writer gave up); such a trial's run ends FAILED, not FINISHED
        self.no_space: dict[str, str] = {}
        self.writer = RunWriter(self.client, retry_s=retry_s, log=log)

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            if EXPERIMENT_KIND not in (exp.tags or {}):
                self._mark_training(exp.experiment_id)
            return exp.experiment_id
        try:
            eid = self.client.create_experiment(name, artifact_location=artifact_location(self.uri, name),
                                                tags={EXPERIMENT_KIND: TRAINING_KIND})
        except Exception:  # noqa: BLE001 - created concurrently by another sweep
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id
        return eid

    def publish_view(self, *, metric: str = C.CORRUPTION_ACC, mode: str = "max", params: Sequence[str] = ()) -> str:
        """Save the sweep's runs-table view in its experiment (see `view_state`); returns its key."""
        key = view_key(self.sweep_name)
        try:
            self.client.set_experiment_tag(self.experiment_id, SHARED_VIEW_PREFIX + key,
                                           json.dumps(view_state(self.sweep_name, metric, mode, params)))
        except Exception:  # noqa: BLE001 - cosmetic: the URL then opens the plain runs table
            return ""
        return key

    def _mark_training(self, experiment_id: str) -> None:
        """MLflow 3's UI opens an experiment without this tag as GenAI (traces); ours hold training runs."""
        try:
            self.client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, TRAINING_KIND)
        except Exception:  # noqa: BLE001 - cosmetic: the runs are there either way
            pass

    # ---------------------------------------------------------------- parent run (synchronous)
    def start_sweep(self, *, spec_hash: str, sweep_dir: str, command: str, files: Mapping[str, Path],
                    extra_tags: Mapping[str, str] | None = None,
                    commit_dirs: Sequence[str | Path] = ()) -> str:
        """Create the parent run; `commit_dirs`: where to look for a git checkout (first found wins)."""
        tags = {ROLE: C.ROLE_SWEEP, SWEEP: self.sweep_name, C.SPEC_HASH: spec_hash,
                C.SWEEP_DIR: sweep_dir, C.COMMAND: _tag_value(command)}
        for where in commit_dirs:
            commit = git_commit(where) if Path(where).is_dir() else None
            if commit:
                tags[C.GIT_COMMIT] = commit
                break
        tags.update(extra_tags or {})
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=Path(sweep_dir).name)
        self.parent_run_id = run.info.run_id
        try:
            for name, path in files.items():
                if Path(path).is_file():
                    self.client.log_artifact(self.parent_run_id, str(path), artifact_path=name or None)
        except Exception as exc:  # noqa: BLE001 - the store itself answered (check_store): its artifact side failed
            full = _artifact_no_space(exc, self.client, self.parent_run_id) or \
                (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            # The sweep's files stay in its folder; the trials' results matter more than these copies.
            pid = self.parent_run_id
            self.writer.submit(_Op(f"missing-artifacts tag of sweep run {pid}",  # retried like any write
                                   lambda client: client.set_tag(pid, ARTIFACTS_MISSING, _tag_value(full))))
            self.log(f"warning: the sweep's files are not in MLflow ({full}); they stay in {sweep_dir}")
        return self.parent_run_id

    def attach_sweep(self, parent_run_id: str, *, command: str | None = None) -> dict[str, ChildRun]:
        """Resume: re-open the parent run and index its child runs by `trial_id`."""
        from mlflow.exceptions import MlflowException

        try:
            parent = self.client.get_run(parent_run_id)
        except MlflowException as exc:
            raise TrackingError(f"the sweep's parent run {parent_run_id} is not in {mask_uri(self.uri)}: "
                                f"{exc.message}; pass the --tracking-uri the sweep was run with") from None
        self.parent_run_id = parent_run_id
        self.experiment_id = parent.info.experiment_id
        if parent.info.status != "RUNNING":
            self.client.update_run(parent_run_id, status="RUNNING")
        if command:
            self.client.set_tag(parent_run_id, C.RESUME_COMMAND, _tag_value(command))
        for run in self._search(f"tags.`{PARENT}` = '{parent_run_id}'"):
            trial_id = run.data.tags.get(TRIAL_ID)
            if not trial_id:
                continue
            child = ChildRun(run.info.run_id, run.info.status, dict(run.data.tags), params=dict(run.data.params))
            child.final = run.data.tags.get(FINAL_TAG) == C.TRUE or run.data.tags.get(STATUS) == "finished"
            child.artifacts_missing = run.data.tags.get(ARTIFACTS_MISSING) == C.TRUE
            child.steps = {int(m.step) for m in self.client.get_metric_history(run.info.run_id, C.EPOCH)}
            if trial_id in self.children:  # a duplicate (older versions): keep the finished one
                other = self.children[trial_id]
                if _finished(child) and _finished(other):  # never delete a finished run: index it apart
                    trial_id = f"{trial_id}.{child.run_id[:8]}"
                else:
                    keep, drop = (child, other) if _finished(child) else (other, child)
                    self.client.delete_run(drop.run_id)
                    child = keep
            self.children[trial_id] = child
            self._runs[trial_id] = child.run_id
        return self.children

    def _search(self, filter_string: str) -> list:
        return search_all_runs(self.client, [self.experiment_id], filter_string)

    def end_sweep(self, status: str = "FINISHED", tags: Mapping[str, Any] | None = None,
                  timeout: float | None = None) -> None:
        pid = self.parent_run_id

        def fn(client: Any) -> None:
            from mlflow.entities import RunTag

            if tags:
                client.log_batch(pid, tags=[RunTag(k, _tag_value(v)) for k, v in tags.items()])
            client.set_terminated(pid, status)

        self.writer.submit(_Op(f"end sweep run {pid}", fn))
        self.writer.flush(timeout)

    # ---------------------------------------------------------------- child runs (asynchronous)
    def trial_started(self, trial_id: str, *, params: Mapping[str, Any], run_name: str,
                      tags: Mapping[str, str] | None = None) -> None:
        """Create the trial's child run, or re-open the one it already has (resume, retry); a failed
        attempt that is rerun stays in the run's tags (`_attempt_history`)."""
        from mlflow.entities import Param, RunTag

        child = self.children.get(trial_id)
        if child is not None and child.params and any(
                child.params.get(k, param_value(v)) != param_value(v) for k, v in params.items()):
            # The trial id was given to another configuration (a searcher re-sampled a trial lost with
            # the driver): the old run describes a trial that no longer exists. A finished one keeps
            # its results: it is indexed apart (tag trial_id unchanged), never deleted.
            if _finished(child):
                self.children[f"{trial_id}.{child.run_id[:8]}"] = self.children.pop(trial_id)
                self._runs[f"{trial_id}.{child.run_id[:8]}"] = self._runs.pop(trial_id, child.run_id)
            else:
                self._supersede(trial_id)
            child = None
        if child is not None:
            if child.status != "RUNNING":
                run_id = child.run_id or None
                history = _attempt_history(child)
                if history:
                    child.tags.update(history)
                    self.writer.submit(_Op(f"attempt history of trial {trial_id}", trial_id=trial_id,
                                           tags=[RunTag(k, _tag_value(v)) for k, v in history.items()],
                                           resolve=self._resolver(trial_id)))
                stale = [k for k in (STATUS, ERROR, C.INTERRUPTED) if k in child.tags]
                for k in stale:
                    child.tags.pop(k)
                resolve = self._resolver(trial_id)

                def reopen(client: Any) -> None:
                    rid = run_id or resolve()
                    client.update_run(rid, status="RUNNING")
                    for key in stale:
                        try:
                            client.delete_tag(rid, key)
                        except Exception:  # noqa: BLE001 - already gone
                            pass

                child.status = "RUNNING"
                self.writer.submit(_Op(f"re-open run of trial {trial_id}", reopen, trial_id))
            return
        all_tags: dict[str, Any] = {ROLE: C.ROLE_TRIAL, SWEEP: self.sweep_name, TRIAL_ID: trial_id,
                                    PARENT: self.parent_run_id, **(tags or {})}
        param_list = [Param(k, param_value(v)) for k, v in params.items()]
        child = ChildRun("", "RUNNING", dict(all_tags))
        self.children[trial_id] = child
        experiment_id, parent = self.experiment_id, self.parent_run_id
        attempts = [0]

        def create(client: Any) -> None:
            if trial_id not in self._runs:
                found = []
                if attempts[0]:  # a failed create may still have reached the store: look first
                    found = self._search(f"tags.`{PARENT}` = '{parent}' AND tags.`{TRIAL_ID}` = '{trial_id}'")
                attempts[0] += 1
                if found:
                    self._runs[trial_id] = found[0].info.run_id
                else:
                    run = client.create_run(experiment_id, tags=all_tags, run_name=run_name[:250])
                    self._runs[trial_id] = run.info.run_id
            child.run_id = self._runs[trial_id]

        self.writer.submit(_Op(f"create run of trial {trial_id}", create, trial_id))
        resolve = self._resolver(trial_id)
        for i in range(0, len(param_list), 100):
            self.writer.submit(_Op(f"params of trial {trial_id}", trial_id=trial_id, params=param_list[i:i + 100],
                                   resolve=resolve))

    def _resolver(self, trial_id: str) -> Callable[[], str]:
        def resolve() -> str:
            run_id = self._runs.get(trial_id)
            if run_id is None:
                raise TrackingError(f"no MLflow run for trial {trial_id} (its creation failed)")
            return run_id
        return resolve

    def has_trial(self, trial_id: str) -> bool:
        return trial_id in self.children

    def epoch_logged(self, trial_id: str, step: int) -> bool:
        child = self.children.get(trial_id)
        return child is not None and int(step) in child.steps

    def is_ended(self, trial_id: str) -> bool:
        """The trial's run is over for good: finished, failed or stopped (not merely interrupted)."""
        child = self.children.get(trial_id)
        return (child is not None and child.status in ("FINISHED", "FAILED", "KILLED") and STATUS in child.tags
                and not child.artifacts_missing)

    def is_final(self, trial_id: str) -> bool:
        child = self.children.get(trial_id)
        return child is not None and child.final and not child.artifacts_missing

    def log_metrics(self, trial_id: str, metrics: Mapping[str, float], step: int,
                    timestamp_ms: int | None = None) -> None:
        """One point per metric at `step` (an epoch), batched with its neighbours."""
        from mlflow.entities import Metric

        child = self.children.get(trial_id)
        if child is None or not metrics:
            return
        ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, int(step)) for k, v in metrics.items() if _is_number(v)]
        if C.EPOCH in metrics:
            child.steps.add(int(step))
        self.writer.submit(_Op(f"metrics of trial {trial_id} at step {step}", trial_id=trial_id, metrics=batch,
                               resolve=self._resolver(trial_id)))

    def log_final(self, trial_id: str, metrics: Mapping[str, float], step: int) -> None:
        """The trial's final metrics, once (a resumed trial that already has them is not re-logged)."""
        from mlflow.entities import Metric, RunTag

        child = self.children.get(trial_id)
        if child is None or child.final:
            return
        ts = int(time.time() * 1000)
        # "epoch" is a per-epoch metric, already logged at this step with the last epoch's results.
        batch = [Metric(k, float(v), ts, int(step)) for k, v in metrics.items() if _is_number(v) and k != C.EPOCH]
        # One log_batch: the metrics and the marker a resumed sweep looks for arrive together.
        self.writer.submit(_Op(f"final metrics of trial {trial_id}", trial_id=trial_id, metrics=batch,
                               tags=[RunTag(FINAL_TAG, C.TRUE)], resolve=self._resolver(trial_id)))
        child.final = True

    def log_artifacts(self, trial_id: str, *, files: Mapping[str, bytes] | None = None,
                      folder: str | Path | None = None) -> None:
        """Artifacts from bytes shipped with a result (a remote node) or from a folder this machine sees."""
        resolve = self._resolver(trial_id)
        files = dict(files or {})
        folder = Path(folder) if folder is not None else None
        child = self.children.get(trial_id)
        # the failed attempt, taken now: the trial's end (queued after this write) retags the run
        history = _attempt_history(child) if child is not None and child.artifacts_missing else {}

        def fn(client: Any) -> None:
            try:
                write(client)
            except Exception as exc:  # noqa: BLE001 - only a full disk is handled here
                full = _artifact_no_space(exc, client, resolve())
                if full is None:
                    raise
                # Retrying will not free the disk: the trial's run ends FAILED with this reason
                # (`trial_ended`), its metrics kept; `v1sweep resume` logs the artifacts again.
                self.no_space[trial_id] = full
                self.log(f"v1sweep: artifacts of trial {trial_id} not written: {full}")
                return
            self.no_space.pop(trial_id, None)
            if child is not None and child.artifacts_missing:
                _artifacts_back(client, resolve(), child, history)

        def write(client: Any) -> None:
            run_id = resolve()
            if files:
                with tempfile.TemporaryDirectory(prefix="v1sweep-art-") as tmp:
                    for name, data in files.items():
                        (Path(tmp) / Path(name).name).write_bytes(data)
                    client.log_artifacts(run_id, tmp)
            elif folder is not None:
                for name in TRIAL_ARTIFACTS:
                    path = folder / name
                    if path.is_file() and path.stat().st_size <= MAX_ARTIFACT_BYTES:
                        client.log_artifact(run_id, str(path))

        def dropped(message: str) -> None:  # e.g. a server whose artifact disk is full answers 500
            self.no_space.setdefault(trial_id, f"artifacts not written: {message}")

        if trial_id in self.children:
            self.writer.submit(_Op(f"artifacts of trial {trial_id}", fn, trial_id, on_drop=dropped))

    def trial_ended(self, trial_id: str, status: str, *, error: str | None = None,
                    extra_tags: Mapping[str, str] | None = None) -> None:
        """finished -> FINISHED; failed -> FAILED (`error` in tag v1sweep.error); stopped -> KILLED;
        interrupted (Ctrl-C, to be resumed) -> KILLED without a v1sweep.status tag."""
        from mlflow.entities import RunTag

        child = self.children.get(trial_id)
        if child is None:
            return
        mlflow_status = {"finished": "FINISHED", "failed": "FAILED", "stopped": "KILLED",
                         "interrupted": "KILLED"}[status]
        tags = dict(extra_tags or {})
        if status == "interrupted":
            tags[C.INTERRUPTED] = C.TRUE
        else:
            tags[STATUS] = status
        if error:
            tags[ERROR] = mask_text(error, self.uri)
        resolve = self._resolver(trial_id)

        def fn(client: Any) -> None:
            full = self.no_space.get(trial_id)
            if full and status == "finished":  # its artifacts hit a full disk: not FINISHED silently
                client.log_batch(resolve(), tags=[RunTag(STATUS, "failed"), RunTag(ERROR, full),
                                                  RunTag(ARTIFACTS_MISSING, C.TRUE)])
                child.tags.update({STATUS: "failed", ERROR: full, ARTIFACTS_MISSING: C.TRUE})
                child.artifacts_missing, child.status = True, "FAILED"
                client.set_terminated(resolve(), "FAILED")
                return
            client.set_terminated(resolve(), mlflow_status)

        child.status = mlflow_status
        child.tags.update(tags)
        self.writer.submit(_Op(f"tags of trial {trial_id}", trial_id=trial_id,
                               tags=[RunTag(k, _tag_value(v)) for k, v in tags.items()], resolve=resolve))
        self.writer.submit(_Op(f"end run of trial {trial_id} ({status})", fn, trial_id))

    def set_tags(self, trial_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        if trial_id not in self.children:
            return
        self.writer.submit(_Op(f"tags of trial {trial_id}", trial_id=trial_id,
                               tags=[RunTag(k, _tag_value(v)) for k, v in tags.items()],
                               resolve=self._resolver(trial_id)))

    def _supersede(self, trial_id: str) -> None:
        self.children.pop(trial_id, None)
        resolve = self._resolver(trial_id)

        def fn(client: Any) -> None:
            run_id = resolve()
            self._runs.pop(trial_id, None)
            client.set_tag(run_id, STATUS, C.SUPERSEDED)
            client.set_terminated(run_id, "KILLED")
            client.delete_run(run_id)

        self.writer.submit(_Op(f"remove superseded run of trial {trial_id}", fn, trial_id))

    def remove_orphans(self, known_trial_ids: set[str]) -> list[str]:
        """Child runs of trials the sweep no longer has (the driver died before Ray saved them; Ray
        re-creates such trials under new ids): tagged ``superseded``, ended KILLED and deleted, so
        every trial keeps exactly one run. A FINISHED run is never removed, whatever Ray says."""
        gone = [t for t, c in self.children.items() if t not in known_trial_ids and not _finished(c)]
        for trial_id in gone:
            self._supersede(trial_id)
        return gone

    def flush(self, timeout: float | None = None) -> bool:
        return self.writer.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        if not self.writer.close(timeout):
            self.log(f"v1sweep: {len(self.writer._queue)} MLflow writes still pending at exit")
        if self.writer.lost:
            self.log(f"v1sweep: {len(self.writer.lost)} MLflow writes failed; first: {self.writer.lost[0]}")
