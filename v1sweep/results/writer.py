"""The background MLflow writer of a sweep: one thread that runs every write in order and retries.

Separate from `v1sweep.results.tracking` (which decides *what* a sweep writes) because this owns
*how* writes reach the store: a queue the Tune driver loop only appends to, metric/param/tag
batches of one trial merged while they wait (`MlflowClient.log_batch` limits), and retries of
transient failures (a tracking server down for a while, ``database is locked``) for `retry_s`
seconds, so nothing is lost and the driver never blocks on MLflow. No mlflow import at module level.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from v1sweep.errors import TrackingError

# MLflow error codes that retrying will not fix.
_PERMANENT = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
                        "INVALID_STATE", "BAD_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED",
                        "INVALID_REQUEST", "FEATURE_DISABLED"})


def _transient(exc: BaseException) -> bool:
    """Worth retrying: connection problems, server errors, a busy sqlite file; not bad requests."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code not in _PERMANENT
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return True
    text = str(exc).lower()
    return type(exc).__module__.startswith("sqlalchemy") and ("locked" in text or "busy" in text)


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
