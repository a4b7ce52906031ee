"""The tracking store as a sweep meets it at start: checked, described, given an artifact folder.

Separate from the writer because these run once, before any trial (and `v1sweep status/best` use
`check_store` without writing): fail fast with one clear line when the store cannot be used
(a missing or read-only sqlite folder, a server that is not there), print it without secrets, and
put a local store's artifacts next to its database.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import ContextManager

from v1sweep.errors import TrackingError
from v1sweep.io import scoped_env
from v1sweep.results.store import is_local, mask_text, mask_uri, sqlite_path


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


def describe_uri(uri: str) -> str:
    """What to print at start: the masked URI and, for sqlite, the database path."""
    db = sqlite_path(uri)
    if db is not None:
        return f"{mask_uri(uri)} (database {db.resolve()})"
    return mask_uri(uri)
