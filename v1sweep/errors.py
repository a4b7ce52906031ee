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


class QueryError(V1SweepError, LookupError):
    """A sweep, run or metric asked for is not in the tracking store."""


class TrackingError(V1SweepError, RuntimeError):
    """The tracking store cannot be reached or written."""


class AnalysisError(V1SweepError, ValueError):
    """An analysis cannot run on what it was given (an empty or unfinished sweep, a missing metric)."""


class SearchAlgorithmFailed(V1SweepError):
    """The search algorithm itself (not a trial) failed: the sweep cannot go on.

    Exit status 1 (a fault of the system, not of the user's input)."""

    exit_status = 1

    def __init__(self, algorithm: str, cause: str) -> None:
        self.algorithm = algorithm
        self.cause = cause
        super().__init__(f"search algorithm {algorithm} failed: {cause}")


class RayStateError(OutputError):
    """Ray Tune's saved state cannot be read: a system fault (exit 1), not a bad input."""
