"""Where results live: resolving the MLflow tracking URI and printing it without secrets.

One rule for every command that touches MLflow, so `v1sweep run`, `best`, `status`, `analyze`
and `ui` agree on the store: an explicit ``--tracking-uri`` wins, then the sweep file's
``tracking.uri`` (when a sweep file is named), then ``MLFLOW_TRACKING_URI``, then a sqlite
database ``mlflow.db`` in the working directory (the sweep engine's default).
URIs may carry credentials (``https://user:pass@host``, ``?token=...``); `mask_uri` hides them
before anything is printed or logged. No mlflow import here: this module is cheap.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit

from v1sweep.config.uris import MASK, mask_uri  # noqa: F401  (re-exported: the results layer prints URIs)

# MLflow 3 sends usage telemetry unless told not to; research runs should not phone home.
# Set before any mlflow import (every mlflow user in v1sweep resolves its store here first);
# a user who wants telemetry can set the variable to "false" themselves.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Analyses download a few small artifacts per trial; one progress bar per file is noise.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

ENV_VAR = "MLFLOW_TRACKING_URI"
DEFAULT_DB = "mlflow.db"
# Query parameters whose values are secrets (matched case-insensitively, anywhere in the name).


def default_uri(cwd: str | Path | None = None) -> str:
    """``sqlite:///<cwd>/mlflow.db`` (absolute), the store a sweep writes when told nothing."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    return f"sqlite:///{(base / DEFAULT_DB).resolve()}"


def resolve_tracking_uri(uri: str | None = None, *, fallback: str | None = None) -> str:
    """The tracking URI to use: `uri` > `fallback` > env ``MLFLOW_TRACKING_URI`` > default sqlite.

    `uri` is what the user typed (``--tracking-uri``); `fallback` is a store named in a file the
    user pointed at (a sweep YAML's ``tracking.uri``), more specific than the ambient environment.
    A bare ``*.db`` path becomes a sqlite URI and an existing directory a ``file:`` URI.
    """
    for candidate in (uri, fallback, os.environ.get(ENV_VAR)):
        if candidate is not None and str(candidate).strip():
            return _normalize(str(candidate).strip())
    return default_uri()


def _normalize(uri: str) -> str:
    if "://" in uri or uri.startswith(("sqlite:", "file:", "databricks")):
        return uri
    path = Path(uri).expanduser()
    if path.is_dir():
        return path.resolve().as_uri()
    if path.suffix == ".db":
        return f"sqlite:///{path.resolve()}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI (relative paths against the cwd), else None."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    if rest.startswith("///"):
        raw = rest[3:]
    elif rest.startswith("//"):
        raw = rest[2:]
    else:
        raw = rest
    raw = raw.split("?", 1)[0]
    if raw in ("", ":memory:"):
        return None
    return Path(raw)


def is_local(uri: str) -> bool:
    """True for stores read directly from disk (sqlite, file), false for servers."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def store_exists(uri: str) -> bool:
    """Whether a local store is already there (reading a missing sqlite file would create it)."""
    db = sqlite_path(uri)
    if db is not None:
        return db.is_file() and db.stat().st_size > 0
    if uri.startswith("file:"):
        path = Path(urlsplit(uri).path)
        return path.is_dir()
    return True


def mask_text(text: str, uri: str | None) -> str:
    """Replace every occurrence of `uri` in `text` by its masked form (for subprocess output)."""
    if not uri:
        return text
    return text.replace(str(uri), mask_uri(uri))


# ---------------------------------------------------------------------------------------------
# First use of a local sqlite store by several processes
# ---------------------------------------------------------------------------------------------
# MLflow creates and migrates a new sqlite database on first use. Two sweeps started together race
# on it (`table alembic_version already exists`), and a migration cut short leaves a temporary
# table behind (`_alembic_tmp_<table>`), after which every use fails. v1sweep creates and migrates
# a store under an exclusive lock on ``<db>.lock``; readers (`status`, `best`) wait on the same
# lock when it exists, and never create it.
LOCK_SUFFIX = ".lock"


def lock_path(uri: str) -> Path | None:
    db = sqlite_path(uri)
    return None if db is None else db.with_name(db.name + LOCK_SUFFIX)


@contextmanager
def store_lock(uri: str, *, exclusive: bool = True, timeout: float = 600.0) -> Iterator[None]:
    """Hold ``<db>.lock`` (exclusive: created if missing; shared: only if it exists)."""
    import fcntl
    import time

    path = lock_path(uri)
    if path is None or (not exclusive and not path.exists()):
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} is held by another process for over {timeout:.0f} s") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


def half_migrated_tables(db: Path) -> list[str]:
    """Temporary tables an interrupted MLflow (alembic) migration left in `db` (read-only check)."""
    import sqlite3

    if not db.is_file() or db.stat().st_size == 0:
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '\\_alembic\\_tmp\\_%' "
                           "ESCAPE '\\'").fetchall()
    finally:
        con.close()
    return sorted(r[0] for r in rows)


def prepare_store(uri: str) -> list[str]:
    """Create and migrate a local sqlite store under the lock (first use), repairing a half-migrated
    one; returns the temporary tables it removed. Servers and file stores: nothing to do."""
    db = sqlite_path(uri)
    if db is None:
        return []
    with store_lock(uri):
        leftovers = half_migrated_tables(db)
        if leftovers:
            _repair(uri, db, leftovers)
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # creates / migrates a new store
    return leftovers


def _repair(uri: str, db: Path, leftovers: list[str]) -> None:
    """Drop the interrupted migration's temporary tables and run the migrations again (sqlite DDL
    is transactional, so the real tables are as they were before the interrupted step)."""
    import sqlite3

    con = sqlite3.connect(str(db), timeout=60)
    try:
        for name in leftovers:
            con.execute(f'DROP TABLE IF EXISTS "{name}"')
        con.commit()
    finally:
        con.close()
    import sqlalchemy
    from mlflow.store.db.utils import _upgrade_db

    engine = sqlalchemy.create_engine(uri)
    try:
        _upgrade_db(engine)
    finally:
        engine.dispose()


def check_readable(uri: str) -> None:
    """Before a read-only command opens a local store: wait for a creation in progress, and name a
    half-migrated store instead of failing inside MLflow."""
    db = sqlite_path(uri)
    if db is None:
        return
    with store_lock(uri, exclusive=False):
        leftovers = half_migrated_tables(db)
    if leftovers:
        from v1sweep.errors import V1SweepError

        raise V1SweepError(f"the MLflow store {db} is half-migrated (table {leftovers[0]} was left by an interrupted "
                           f"schema migration); `v1sweep run` or `v1sweep resume` on this store repairs it")


def paged(fetch: Callable[[str | None], Any]) -> list:
    """Every item of a paged MLflow search: `fetch(page_token)` returns a page with ``.token``."""
    out: list = []
    token = None
    while True:
        page = fetch(token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def search_all_runs(client: Any, experiment_ids: Sequence[str], filter_string: str,
                    order_by: Sequence[str] | None = None) -> list:
    """`MlflowClient.search_runs` over all pages (1000 runs a page); the caller handles errors."""
    extra = {} if order_by is None else {"order_by": list(order_by)}
    return paged(lambda token: client.search_runs(list(experiment_ids), filter_string=filter_string,
                                                  max_results=1000, page_token=token, **extra))


def all_experiment_ids(client: Any) -> list[str]:
    """The ids of every experiment in the store."""
    return [e.experiment_id for e in paged(lambda token: client.search_experiments(max_results=1000,
                                                                                  page_token=token))]
