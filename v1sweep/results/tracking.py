"""MLflow tracking for sweeps: one parent run per sweep, one child run per trial, written by the driver.

The layout is the contract in docs/architecture.md ("MLflow layout"); `v1sweep.results.query` and
`v1sweep.analysis` read it. All writes go through one background thread (`RunWriter`) that keeps
them in order, batches metrics (`MlflowClient.log_batch`) and retries transient failures (a
tracking server down for a while, ``database is locked``) so nothing is lost; the Tune driver loop
only enqueues. Child runs are found again by their ``trial_id`` tag, so a resumed sweep re-attaches
to its runs instead of creating duplicates. No Ray import here.
"""
from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Sequence

from v1sweep import contracts as C
from v1sweep.errors import TrackingError, V1SweepError  # noqa: F401 - defined there, importable from here too
from v1sweep.io import scoped_env
from v1sweep.results.store import is_local, mask_text, mask_uri, search_all_runs, sqlite_path

# The layout's names are owned by `v1sweep.contracts`; these aliases are this module's public API.
ROLE, SWEEP, TRIAL_ID = C.ROLE, C.SWEEP, C.TRIAL_ID
STATUS, ERROR, PARENT = C.STATUS, C.ERROR, C.PARENT
FINAL_TAG = C.FINAL_LOGGED
# Set on a run whose final metrics are logged but whose artifacts a full disk refused (run FAILED).
ARTIFACTS_MISSING = C.ARTIFACTS_MISSING
NO_SPACE = "No space left on device"
# Files of a trial's output folder logged as artifacts (when present).
TRIAL_ARTIFACTS = C.TRIAL_ARTIFACTS
# Large enough for ResNet18/50 weights (model.pt, which model-level analyses rebuild networks from).
MAX_ARTIFACT_BYTES = 256 * 2**20
# Keys Ray Tune adds to every result; never logged as metrics.
RAY_KEYS = frozenset({
    "done", "trial_id", "experiment_tag", "date", "timestamp", "pid", "hostname", "node_ip", "config",
    "checkpoint_dir_name", "should_checkpoint", "training_iteration", "time_this_iter_s", "time_total_s",
    "time_since_restore", "iterations_since_restore", "timesteps_total", "episodes_total",
    "timesteps_since_restore", "warmup_time", "__duplicate__", "__trial_info__",
})
# MLflow error codes that retrying will not fix.
_PERMANENT = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
                        "INVALID_STATE", "BAD_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED",
                        "INVALID_REQUEST", "FEATURE_DISABLED"})


# ---------------------------------------------------------------------------------------------
# Store checks and small helpers
# ---------------------------------------------------------------------------------------------
def _quick_http(timeout: float) -> ContextManager[None]:
    """MLflow's HTTP client without its minutes of retries, for the start-up check only."""
    return scoped_env({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                       "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(max(1, timeout)))})


def check_store(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any trial runs, when the tracking store cannot be used."""
    db = sqlite_path(uri)
    if db is not None:
        folder = db.parent if db.parent != Path("") else Path.cwd()
        if not folder.is_dir():
            raise TrackingError(f"cannot create the MLflow database {db}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise TrackingError(f"cannot write the MLflow database {db}: permission denied")
    from mlflow.tracking import MlflowClient

    from v1sweep.results.store import prepare_store

    try:
        with _quick_http(timeout):
            prepare_store(uri)  # a new local store: created and migrated under a file lock
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means "unusable store"
        first = mask_text(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, uri)
        hint = "" if is_local(uri) else " (is `mlflow server` running there? start one, or leave out " \
                                         "--tracking-uri to use a local sqlite store)"
        raise TrackingError(f"MLflow tracking store {mask_uri(uri)} is not reachable: {first[:300]}{hint}") from None


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a local sqlite store go next to the database (``mlartifacts/``); servers decide."""
    db = sqlite_path(uri)
    if db is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return (db.resolve().parent / "mlartifacts" / safe).as_uri()


def git_commit(where: str | Path | None = None) -> str | None:
    """HEAD of the git checkout holding `where` (None outside git, or without git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(where or Path.cwd()), capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def metric_items(result: Mapping[str, Any]) -> dict[str, float]:
    """The numeric metrics of a Tune result, without Ray's bookkeeping and our private keys."""
    out: dict[str, float] = {}
    for key, value in result.items():
        if key in RAY_KEYS or key.startswith("_") or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[key] = float(value)
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
            out[key] = float(value.item())
    return out


def param_value(value: Any) -> str:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    text = str(value)
    return text if len(text) <= MAX_PARAM_VAL_LENGTH else text[:MAX_PARAM_VAL_LENGTH - 3] + "..."


def _tag_value(value: Any) -> str:
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    text = str(value)
    return text if len(text) <= MAX_TAG_VAL_LENGTH else text[:MAX_TAG_VAL_LENGTH - 3] + "..."


def _transient(exc: BaseException) -> bool:
    """Worth retrying: connection problems, server errors, a busy sqlite file; not bad requests."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code not in _PERMANENT
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return True
    text = str(exc).lower()
    return type(exc).__module__.startswith("sqlalchemy") and ("locked" in text or "busy" in text)


# ---------------------------------------------------------------------------------------------
# The writer thread
# ---------------------------------------------------------------------------------------------
@dataclass
class _Op:
    """One write: `fn(client)`, or a log_batch of `metrics` / `params` / `tags` to the run `resolve()`
    names (batch ops of one trial are merged while they wait, so a busy store gets fewer calls)."""
    what: str
    fn: Callable[[Any], None] | None = None
    trial_id: str | None = None
    metrics: list | None = None
    params: list = field(default_factory=list)
    tags: list = field(default_factory=list)
    resolve: Callable[[], str] | None = None
    on_drop: Callable[[str], None] | None = None  # told the reason when the writer gives the op up

    @property
    def is_batch(self) -> bool:
        return self.fn is None

    def size(self) -> tuple[int, int, int]:
        return len(self.metrics or []), len(self.params), len(self.tags)

    def __call__(self, client: Any) -> None:
        if self.fn is not None:
            self.fn(client)
        elif self.metrics or self.params or self.tags:
            if self.resolve is None:
                raise TrackingError(f"{self.what}: no run to write to")
            client.log_batch(self.resolve(), metrics=self.metrics or [], params=self.params, tags=self.tags)


def _fits(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    m, p, t = a[0] + b[0], a[1] + b[1], a[2] + b[2]
    return m + p + t <= 1000 and p <= 100 and t <= 100


class RunWriter:
    """Runs MLflow writes in order on one thread; retries transient failures for `retry_s` seconds."""

    def __init__(self, client: Any, *, retry_s: float = 600.0, log: Callable[[str], Any] = print) -> None:
        self.client = client
        self.retry_s = retry_s
        self.log = log
        self.lost: list[str] = []
        self.retried = 0
        self.calls = 0
        self._queue: collections.deque[_Op] = collections.deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="v1sweep-mlflow-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return len(self._queue) + int(self._busy)

    def submit(self, op: _Op) -> None:
        with self._cond:
            if self._closed:
                raise TrackingError("the MLflow writer is closed")
            self._queue.append(op)
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted write is done (or given up); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(timeout=left if left is not None else 1.0)
        return True

    def close(self, timeout: float | None = None) -> bool:
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        return done

    def _next(self) -> _Op | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            op = self._queue.popleft()
            if op.is_batch and op.trial_id is not None:
                op = self._merge(op)
            self._busy = True
            return op

    def _merge(self, op: _Op) -> _Op:
        """Pull later batch ops of the same trial into `op`, up to that trial's next other write
        (ops of other trials may be passed: each trial's own order is kept)."""
        metrics, params, tags = list(op.metrics or []), list(op.params), list(op.tags)
        size = op.size()
        keep: collections.deque[_Op] = collections.deque()
        blocked = False
        while self._queue:
            nxt = self._queue.popleft()
            if not blocked and nxt.trial_id == op.trial_id:
                if nxt.is_batch and _fits(size, nxt.size()):
                    metrics += nxt.metrics or []
                    params += nxt.params
                    tags = [t for t in tags if t.key not in {n.key for n in nxt.tags}] + nxt.tags
                    size = (len(metrics), len(params), len(tags))
                    continue
                blocked = True
            keep.append(nxt)
        self._queue = keep
        if size == op.size():
            return op
        return _Op(op.what, trial_id=op.trial_id, metrics=metrics, params=params, tags=tags, resolve=op.resolve)

    def _loop(self) -> None:
        while True:
            op = self._next()
            if op is None:
                return
            try:
                self._run(op)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _run(self, op: _Op) -> None:
        first_failure = None
        delay = 0.25
        while True:
            try:
                self.calls += 1
                op(self.client)
                return
            except Exception as exc:  # noqa: BLE001 - classified below
                now = time.monotonic()
                first_failure = first_failure or now
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if not _transient(exc) or now - first_failure > self.retry_s:
                    self.lost.append(f"{op.what}: {message[:300]}")
                    self.log(f"v1sweep: MLflow write dropped ({op.what}): {message[:300]}")
                    if op.on_drop is not None:
                        op.on_drop(message[:300])
                    return
                self.retried += 1
                if delay in (0.25, 8.0):
                    self.log(f"v1sweep: MLflow write failed ({type(exc).__name__}: {message[:120]}); "
                             f"retrying for up to {self.retry_s:.0f} s: {op.what}")
                time.sleep(delay)
                delay = min(delay * 2, 8.0)


# ---------------------------------------------------------------------------------------------
# The sweep's runs
# ---------------------------------------------------------------------------------------------
@dataclass
class ChildRun:
    run_id: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    steps: set[int] = field(default_factory=set)
    final: bool = False
    params: dict[str, str] = field(default_factory=dict)
    artifacts_missing: bool = False


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


def _attempt_history(child: ChildRun) -> dict[str, str]:
    """Tags keeping a failed attempt when its run is re-opened (``v1sweep resume --retry-failed``):
    ``v1sweep.attempts`` (count of failed attempts) and ``v1sweep.attempt.<n>.error``."""
    if child.tags.get(STATUS) != "failed":
        return {}
    n = int(child.tags.get(C.ATTEMPTS, "0") or 0) + 1
    return {C.ATTEMPTS: str(n), C.attempt_error(n): child.tags.get(ERROR, "no error recorded")}


def _artifact_no_space(exc: BaseException, client: Any, run_id: str) -> str | None:
    """``No space left on device: PATH`` when an artifact write failed on a full disk (a local
    artifact store raises ENOSPC naming the file; a server says so in its error), else None."""
    import errno

    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = exc.filename
    elif NO_SPACE in str(exc):
        where = None
    else:
        return None
    if not where:
        try:
            where = client.get_run(run_id).info.artifact_uri
        except Exception:  # noqa: BLE001 - the store may be the full disk too
            where = "the MLflow artifact store"
    return f"{NO_SPACE}: {where}"


def _artifacts_back(client: Any, run_id: str, child: ChildRun, history: Mapping[str, str]) -> None:
    """Artifacts a full disk refused are now written: the run loses the no-space marks (kept as
    attempt `history`) and can end FINISHED."""
    from mlflow.entities import RunTag

    if history:
        client.log_batch(run_id, tags=[RunTag(k, _tag_value(v)) for k, v in history.items()])
        child.tags.update(history)
    for key in (ARTIFACTS_MISSING, ERROR):
        try:
            client.delete_tag(run_id, key)
        except Exception:  # noqa: BLE001 - already gone
            pass
        child.tags.pop(key, None)
    child.artifacts_missing = False


def _finished(child: ChildRun) -> bool:
    """A run that holds a trial's results for good: never deleted or superseded."""
    return child.final or child.status == "FINISHED" or child.tags.get(STATUS) == "finished"


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


# MLflow 3's UI reads this experiment tag to choose the experiment's view (training runs vs GenAI).
EXPERIMENT_KIND, TRAINING_KIND = C.EXPERIMENT_KIND, C.TRAINING_KIND


# A view of the runs table saved in the experiment (MLflow's "share view": tag
# mlflow.sharedViewState.<key>, opened by ?viewStateShareKey=<key>): the sweep's trials, flat (not
# folded under the parent run), best first, with the headline metrics and swept params as columns.
SHARED_VIEW_PREFIX = C.SHARED_VIEW_PREFIX
VIEW_METRICS = (C.CLEAN_ACC, C.CORRUPTION_ACC, C.RF_SIMILARITY)


def view_key(sweep_name: str) -> str:
    return "v1sweep-" + re.sub(r"[^A-Za-z0-9_.-]", "_", sweep_name)


def view_state(sweep_name: str, metric: str = C.CORRUPTION_ACC, mode: str = "max",
               params: Sequence[str] = ()) -> dict[str, Any]:
    """The runs-table state MLflow's UI restores from the shared-view tag (plain JSON)."""
    metrics = [m for m in (metric, *VIEW_METRICS) if m]
    columns = [f"metrics.`{m}`" for m in dict.fromkeys(metrics)] + [f"params.`{p}`" for p in params]
    name = sweep_name.replace("\\", "\\\\").replace("'", "\\'")
    return {"searchFilter": f"tags.`{SWEEP}` = '{name}' AND tags.`{ROLE}` = '{C.ROLE_TRIAL}'",
            "orderByKey": f"metrics.`{metric}`", "orderByAsc": mode == "min", "selectedColumns": columns}


def experiment_url(base: str, experiment_id: str | None = None, view: str | None = None) -> str:
    """The MLflow UI page of an experiment's runs table (the classic machine-learning view, not
    the GenAI overview MLflow 3 opens by default), in the saved `view` when given; without an
    experiment id, the experiments list."""
    base = base.rstrip("/")
    if not experiment_id:
        return f"{base}/#/experiments?workflowType=machine_learning"
    shared = f"viewStateShareKey={view}&" if view else ""
    return f"{base}/#/experiments/{experiment_id}/runs?{shared}workflowType=machine_learning"


def describe_uri(uri: str) -> str:
    """What to print at start: the masked URI and, for sqlite, the database path."""
    db = sqlite_path(uri)
    if db is not None:
        return f"{mask_uri(uri)} (database {db.resolve()})"
    return mask_uri(uri)


def command_line(argv: list[str] | None = None, uri: str | None = None) -> str:
    """The command line for the parent run's tag, with credentials in URIs masked."""
    argv = sys.argv if argv is None else argv
    text = _URI.sub(lambda m: mask_uri(m.group(0)), " ".join(argv))
    return mask_text(text, uri) if uri else text


_URI = re.compile(r"[A-Za-z][\w+.-]*://[^\s'\"<>()]+")


# ---------------------------------------------------------------------------------------------
# The analysis run (`v1sweep analyze`): analysis builds the results, this writes them
# ---------------------------------------------------------------------------------------------
class AnalysisRun:
    """An analysis run under a sweep's parent run (tags ``mlflow.parentRunId``,
    ``v1sweep.role=analysis``, ``v1sweep.sweep``, ``v1sweep.analysis``), written synchronously.

    Created RUNNING by `start_analysis_run`; `finish` logs params, metrics (step 0) and a folder of
    artifacts and ends it FINISHED; `fail` ends it FAILED (the report could not be built)."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def finish(self, *, params: Mapping[str, Any], metrics: Mapping[str, float], folder: str | Path) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        param_list = [Param(k, str(v)) for k, v in params.items()]
        batch = [Metric(k, v, now, 0) for k, v in metrics.items()]
        for i in range(0, max(len(batch), 1), 900):  # log_batch takes at most 1000 entries
            self.client.log_batch(self.run_id, metrics=batch[i:i + 900], params=param_list if i == 0 else [])
        self.client.log_artifacts(self.run_id, str(folder))
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self) -> None:
        self.client.set_terminated(self.run_id, "FAILED")


def start_analysis_run(uri: str, *, experiment_id: str, parent_run_id: str, sweep_name: str,
                       analysis: str = C.ANALYSIS_ROBUSTNESS) -> AnalysisRun:
    """Create the RUNNING analysis run ``analysis-<sweep_name>`` under `parent_run_id`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(experiment_id, run_name=f"analysis-{sweep_name}", tags={
        PARENT: parent_run_id, ROLE: C.ROLE_ANALYSIS, SWEEP: sweep_name, C.ANALYSIS: analysis})
    return AnalysisRun(client, run.info.run_id)
