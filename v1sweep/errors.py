"""Typed errors: every user-facing failure names what is wrong, where, and what is allowed."""
from __future__ import annotations


class V1SweepError(Exception):
    """Base class of errors raised for bad input or failed runs."""


class ConfigError(V1SweepError, ValueError):
    """A config file or option is invalid.

    The message names the file (if any), the dotted key and the allowed values.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ""
        if file:
            where += f"{file}: "
        if key:
            where += f"{key}: "
        super().__init__(where + message)


class DatasetError(V1SweepError, ValueError):
    """A dataset path is missing, empty, of the wrong layout, or holds an unreadable file."""


class TrialFailed(V1SweepError, RuntimeError):
    """A trial stopped for a known reason (`reason` is a short tag, e.g. 'diverged')."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


class OutputError(V1SweepError, OSError):
    """An output folder (trial out dir, sweep storage, cache) cannot be created or written."""
