"""`v1sweep bench NAME`: speed benchmarks that print ratios against a baseline measured in the same run."""
from __future__ import annotations

import argparse
import importlib

HELP = "benchmarks: frontend | train | corruptions | sweep (ratios vs a baseline in the same run)"

# Benchmark name -> module under v1sweep.bench providing HELP, add_arguments(parser), run(args).
BENCHMARKS: dict[str, str] = {
    "frontend": "frontend",
    "train": "train",
    "corruptions": "corruptions",
    "sweep": "sweep",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(f"v1sweep.bench.{module_name}")
        bench = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(bench)
        bench.set_defaults(_bench=module.run)


def main(args: argparse.Namespace) -> int:
    return int(args._bench(args) or 0)
