"""`v1sweep bench corruptions` (not implemented yet)."""
from __future__ import annotations

import argparse

HELP = "corruptions benchmark (not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SystemExit("v1sweep bench corruptions: not implemented yet")
