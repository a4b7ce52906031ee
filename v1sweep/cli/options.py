"""Command-line options shared by several commands, defined once so their spelling and help agree.

Cheap to import (standard library and `v1sweep.contracts` only): `v1sweep --help` builds every parser.
"""
from __future__ import annotations

import argparse

from v1sweep import contracts as C

SWEEP_HELP = "sweep name, sweep YAML file or sweep output directory"
TRACKING_URI_HELP = "MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)"
# `run` and `resume` also read the sweep file's tracking.uri, and write the store.
RUN_TRACKING_URI_HELP = ("MLflow store, e.g. http://host:5000 (default: the sweep's tracking.uri, "
                         "$MLFLOW_TRACKING_URI, else sqlite mlflow.db in the working directory); "
                         "for a multi-node cluster the driver writes it, so sqlite works too")
MODES = ("max", "min")
DEFAULT_METRIC = C.CORRUPTION_ACC


def add_sweep(parser: argparse.ArgumentParser) -> None:
    """The positional SWEEP of the commands that read a sweep back from MLflow."""
    parser.add_argument("sweep", metavar="SWEEP", help=SWEEP_HELP)


def add_tracking_uri(parser: argparse.ArgumentParser, help: str = TRACKING_URI_HELP) -> None:
    """``--tracking-uri`` (resolved by `v1sweep.results.store.resolve_tracking_uri`)."""
    parser.add_argument("--tracking-uri", default=None, help=help)


def add_mode(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--mode max|min`` (None: the sweep file's mode, else max)."""
    parser.add_argument("--mode", choices=MODES, default=None, help=help)


def add_all_parents(parser: argparse.ArgumentParser, help: str) -> None:
    """``--all-parents``: every parent run of the sweep (a sweep run twice), not only the latest."""
    parser.add_argument("--all-parents", action="store_true", help=help)


def add_json(parser: argparse.ArgumentParser, help: str = "print JSON") -> None:
    parser.add_argument("--json", action="store_true", help=help)
