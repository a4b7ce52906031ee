"""What the tracker remembers of a trial's child run, and the rules that keep its results safe.

Separate from `SweepTracker` so the rules read on their own: which run holds a trial's results for
good (never deleted or superseded), the attempt history kept when a failed trial is rerun
(``v1sweep resume --retry-failed``), and the handling of artifacts a full disk refused (the run ends
FAILED with ``No space left on device: PATH`` and loses those marks once the artifacts are written).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from v1sweep import contracts as C
from v1sweep.contracts import ARTIFACTS_MISSING, ERROR, STATUS
from v1sweep.results.run_values import _tag_value

NO_SPACE = "No space left on device"


@dataclass
class ChildRun:
    run_id: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    steps: set[int] = field(default_factory=set)
    final: bool = False
    params: dict[str, str] = field(default_factory=dict)
    artifacts_missing: bool = False


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

