"""`v1sweep train` (not implemented yet)."""
from __future__ import annotations

import argparse

HELP = "train (not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    raise SystemExit("v1sweep train: not implemented yet")
