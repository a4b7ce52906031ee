"""`v1sweep sweeps`: the sweeps shipped with v1sweep, by name, with their one-line descriptions."""
from __future__ import annotations

import argparse

HELP = "list the bundled sweeps (run one by name: `v1sweep run smoke`)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--paths", action="store_true", help="print each sweep's file path too")


def main(args: argparse.Namespace) -> int:
    from v1sweep.config.sweep_file import SWEEPS_DIR, bundled_sweeps

    found = bundled_sweeps()
    if not found:
        print(f"no bundled sweeps found in {SWEEPS_DIR}")
        return 1
    width = max(len(name) for name, _d, _p in found)
    for name, desc, path in found:
        print(f"{name:<{width}}  {desc or '(no description)'}" + (f"  [{path}]" if args.paths else ""))
    print(f"\nrun one with `v1sweep run NAME` (e.g. `v1sweep run smoke`); files in {SWEEPS_DIR}")
    return 0
