"""`v1sweep run SWEEP.yaml`: run a sweep with Ray Tune (fresh local Ray or --address), tracked in MLflow."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from v1sweep.cli import options as opt

if TYPE_CHECKING:
    from v1sweep.config.sweep_file import SweepSpec

HELP = "run a sweep file: Ray Tune trials (local or --address cluster), MLflow parent + child runs"


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None,
                        help="Ray cluster to run on, from its head node: auto | HOST:PORT (the head's GCS "
                             "port, 6379 by default). Default: start a fresh local Ray; a Ray already running "
                             "on this machine is never joined silently. Ray Client (ray://) addresses are "
                             "refused: submit the driver with `ray job submit` instead")
    opt.add_tracking_uri(parser, help=opt.RUN_TRACKING_URI_HELP)
    parser.add_argument("--num-cpus", type=positive_int, default=None, help="CPUs of the local Ray (default: all)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--quiet", "-q", action="store_true", help="no progress display (start and summary lines only)")
    out.add_argument("--verbose", "-v", action="store_true",
                     help="Ray's own output: its status table, its log lines and the workers' output")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (0 would silently mean "all CPUs", -1 fails inside Ray)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: >= 1 (the CPUs the local Ray may use)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", metavar="SWEEP", help="sweep file (path/to/sweep.yaml) or the name of a bundled "
                        "sweep (smoke, paper, ...: see `v1sweep sweeps`)")
    add_common(parser)
    parser.add_argument("--storage", default=None, metavar="DIR",
                        help="folder for sweep folders (default ./v1sweep_runs); on a multi-node cluster a "
                             "filesystem every node sees at the same path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override the base trial config (trial.train.epochs=3, or train.epochs=3) or "
                             "a sweep key (search.num_samples=8, resources.gpu=0.5); repeatable")
    parser.add_argument("--data-path", default=None, metavar="DIR",
                        help="dataset folder for the CIFAR-10 / Tiny ImageNet sweeps (= --set trial.data.path=DIR)")
    parser.add_argument("--dry-run", action="store_true", help="print the expanded trials and exit")
    parser.add_argument("--calibrate", action="store_true",
                        help="with --dry-run: time a few training steps and an eval batch of the trial model "
                             "on this machine and extrapolate the sweep's CPU/GPU-hours and wall time")


def exit_code(outcome) -> int:
    """0: every trial finished (or was stopped by the scheduler); 1: a trial failed or an MLflow write
    was lost; 130: interrupted (resume it)."""
    if outcome is None:
        return 0
    if outcome.interrupted:
        return 130
    if outcome.counts.get("failed") or outcome.lost_writes:
        return 1
    return 0


def verbosity(args: argparse.Namespace) -> int:
    """0 --quiet, 1 v1sweep's progress (default), 2 --verbose (Ray's own output)."""
    return 0 if args.quiet else (2 if args.verbose else 1)


PLACEHOLDER_PATH = "<DATA_PATH>"


def load_for_dry_run(args: argparse.Namespace) -> tuple["SweepSpec", list[str]]:
    """The sweep for ``--dry-run``: expanded even without a dataset path (a placeholder stands in),
    with warnings for what a real run would trip over (no data path, a missing folder, GPUs
    requested on a machine without one)."""
    from v1sweep.errors import ConfigError
    from v1sweep.config.sweep_file import load_sweep

    warnings = []
    try:
        spec = load_sweep(args.sweep, args.overrides, data_path=args.data_path)
    except ConfigError as exc:
        if args.data_path is not None or not str(exc.key or "").endswith("data.path"):
            raise
        spec = load_sweep(args.sweep, args.overrides, data_path=PLACEHOLDER_PATH)
        warnings.append(f"no dataset path ({exc.key}): a run needs --data-path DIR; the trials below show "
                        f"{PLACEHOLDER_PATH} in its place")
    path = spec.trial.data.path
    if path and PLACEHOLDER_PATH not in path and not Path(path).expanduser().exists():
        warnings.append(f"data path {path} does not exist on this machine (a run needs it on every node)")
    if spec.resources.gpu and not args.address and not has_local_gpu():
        warnings.append(f"resources.gpu: {spec.resources.gpu:g} per trial, but this machine has no GPU: a local "
                        f"run would wait for one forever; use --set resources.gpu=0 or run on a GPU cluster "
                        f"(--address)")
    return spec, warnings


def has_local_gpu() -> bool:
    """A CUDA GPU on this machine, checked without importing torch (the NVIDIA driver's files)."""
    import os

    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def main(args: argparse.Namespace) -> int:
    import sys

    from v1sweep.sweep.engine import run_sweep
    from v1sweep.config.sweep_file import load_sweep

    if args.calibrate and not args.dry_run:
        print("v1sweep run: error: --calibrate: only with --dry-run (it estimates the cost instead of running)",
              file=sys.stderr)
        return 2
    if args.dry_run:
        spec, warnings = load_for_dry_run(args)
        for warning in warnings:
            print(f"v1sweep run: warning: {warning}", file=sys.stderr)
        if args.calibrate:
            from v1sweep.sweep.engine import print_dry_run

            print_dry_run(spec, lambda msg: print(msg, flush=True), calibrate=True, num_cpus=args.num_cpus)
            return 0
    else:
        spec = load_sweep(args.sweep, args.overrides, data_path=args.data_path)
    outcome = run_sweep(spec, address=args.address, storage=args.storage, tracking_uri=args.tracking_uri,
                        dry_run=args.dry_run, num_cpus=args.num_cpus, verbose=verbosity(args),
                        out=lambda msg: print(msg, flush=True))
    return exit_code(outcome)
