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
from pathlib import Path
from urllib.parse import unquote, urlsplit

# MLflow 3 sends usage telemetry unless told not to; research runs should not phone home.
# Set before any mlflow import (every mlflow user in v1sweep resolves its store here first);
# a user who wants telemetry can set the variable to "false" themselves.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Analyses download a few small artifacts per trial; one progress bar per file is noise.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

ENV_VAR = "MLFLOW_TRACKING_URI"
DEFAULT_DB = "mlflow.db"
MASK = "***"
# Query parameters whose values are secrets (matched case-insensitively, anywhere in the name).
_SECRET_PARAM = re.compile(r"token|secret|passw|pwd|key|auth|sig|credential|session", re.I)


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


def mask_uri(uri: str | None) -> str:
    """`uri` with credentials hidden: ``user:pass@`` -> ``***@``, secret query values -> ``***``.

    Everything else is kept byte for byte (sqlite paths, hosts, ports).
    """
    if uri is None:
        return ""
    text = str(uri)
    # userinfo: between "scheme://" and the last "@" before the path.
    text = re.sub(r"^([A-Za-z][\w+.-]*://)([^/?#]*)@", lambda m: f"{m.group(1)}{MASK}@", text)
    head, sep, rest = text.partition("?")
    if not sep:
        return text
    query, hsep, fragment = rest.partition("#")
    pairs = []
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        if eq and _SECRET_PARAM.search(unquote(key)):
            value = MASK
        pairs.append(f"{key}{eq}{value}")
    return f"{head}?{'&'.join(pairs)}{hsep}{fragment}"


def mask_text(text: str, uri: str | None) -> str:
    """Replace every occurrence of `uri` in `text` by its masked form (for subprocess output)."""
    if not uri:
        return text
    return text.replace(str(uri), mask_uri(uri))
