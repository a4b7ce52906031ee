"""`v1sweep bench frontend` (not implemented yet)."""
from __future__ import annotations

import argparse

HELP = "frontend benchmark (not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SystemExit("v1sweep bench frontend: not implemented yet")
