"""`v1sweep run SWEEP.yaml`: run a sweep with Ray Tune (fresh local Ray or --address), tracked in MLflow."""
from __future__ import annotations

import argparse

HELP = "run a sweep file: Ray Tune trials (local or --address cluster), MLflow parent + child runs"


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None,
                        help="Ray cluster: auto | host:port | ray://host:10001 (default: start a fresh local "
                             "Ray; a Ray already running on this machine is never joined silently)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store, e.g. http://host:5000 (default: the sweep's tracking.uri, "
                             "$MLFLOW_TRACKING_URI, else sqlite mlflow.db in the working directory); "
                             "for a multi-node cluster the driver writes it, so sqlite works too")
    parser.add_argument("--num-cpus", type=positive_int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress table")


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
    parser.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file, e.g. sweeps/smoke.yaml")
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


def main(args: argparse.Namespace) -> int:
    from v1sweep.sweep import run_sweep
    from v1sweep.sweep_spec import load_sweep

    spec = load_sweep(args.sweep, args.overrides, data_path=args.data_path)
    outcome = run_sweep(spec, address=args.address, storage=args.storage, tracking_uri=args.tracking_uri,
                        dry_run=args.dry_run, num_cpus=args.num_cpus, verbose=0 if args.quiet else 1,
                        out=lambda msg: print(msg, flush=True))
    return exit_code(outcome)
