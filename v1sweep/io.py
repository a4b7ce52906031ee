"""Atomic file writes and scoped environment variables, shared by every layer (standard library only).

A reader (a resumed sweep, a concurrent trial, `v1sweep status`) must never see half a file: every
state file is written to a temporary file in the same folder, flushed to disk (``fsync``) and
renamed over the target with `os.replace`. If anything fails before the rename (the data cannot
be serialised, the disk is full, the writer raises), the temporary file is removed and the old
file is left exactly as it was. Temporary names are ``<name>.tmp-<pid>-<random>`` (cleaners match
``*.tmp-*``).
"""
from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Union

Writer = Callable[[BinaryIO], Any]
Content = Union[str, bytes, Writer]


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name next to `path` (same folder, so the final rename is atomic)."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def atomic_write(path: str | Path, content: Content, *, fsync: bool = True, encoding: str = "utf-8") -> None:
    """Replace `path` with `content` (text, bytes, or a function writing into a binary file) in one step.

    The file gets the permissions a plain ``open(path, "w")`` gives (0o666 less the umask).
    On any error the temporary file is removed and the exception propagates; `path` is untouched.
    """
    path = Path(path)
    data = content.encode(encoding) if isinstance(content, str) else content
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                data(handle)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def json_text(data: Any, *, indent: int | None = 2, sort_keys: bool = False,
              default: Callable[[Any], Any] | None = None, allow_nan: bool = True, newline: bool = True) -> str:
    """`data` as JSON text, the way `write_json` writes it (serialisation errors raise here)."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, default=default, allow_nan=allow_nan)
    return text + "\n" if newline else text


def write_json(path: str | Path, data: Any, *, indent: int | None = 2, sort_keys: bool = False,
               default: Callable[[Any], Any] | None = None, allow_nan: bool = True, newline: bool = True,
               fsync: bool = True) -> None:
    """Atomically write `data` as JSON (`json.dumps` options; `newline`: end with ``\\n``).

    The data is serialised before any file is opened, so a value JSON cannot encode leaves the old file."""
    atomic_write(path, json_text(data, indent=indent, sort_keys=sort_keys, default=default,
                                 allow_nan=allow_nan, newline=newline), fsync=fsync)


@contextmanager
def scoped_env(values: Mapping[str, str], *, keep_existing: Iterable[str] = ()) -> Iterator[None]:
    """Set environment variables for the duration of a ``with`` block, then restore them.

    Variables named in `keep_existing` are only set when not already in the environment. Every
    variable in `values` gets its value from before the block back afterwards (or is removed).
    """
    keep = set(keep_existing)
    old = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if key not in keep or key not in os.environ:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, before in old.items():
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before
