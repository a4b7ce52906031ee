"""`v1sweep resume SWEEP_DIR`: continue an interrupted sweep without rerunning or duplicating trials."""
from __future__ import annotations

import argparse

HELP = "continue an interrupted sweep (driver killed, machine rebooted): one MLflow run per trial"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from v1sweep.cli.run import add_common

    parser.add_argument("sweep_dir", metavar="SWEEP_DIR",
                        help="the sweep folder `v1sweep run` printed (v1sweep_runs/<name>-<time>)")
    add_common(parser)
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild the sweep from MLflow and the trial folders, ignoring Ray Tune's saved state "
                             "(when it is damaged): finished trials kept, unfinished ones continued from their "
                             "checkpoints; Ray's old state files are moved aside, never deleted")
    parser.add_argument("--retry-failed", action="store_true",
                        help="rerun FAILED trials from their checkpoints (one MLflow run per trial still; the "
                             "failed attempt stays in its tags v1sweep.attempts / v1sweep.attempt.N.error)")


def main(args: argparse.Namespace) -> int:
    from v1sweep.cli.run import exit_code, verbosity
    from v1sweep.sweep.engine import resume_sweep

    outcome = resume_sweep(args.sweep_dir, address=args.address, tracking_uri=args.tracking_uri,
                           num_cpus=args.num_cpus, verbose=verbosity(args), rebuild=args.rebuild,
                           retry_failed=args.retry_failed,
                           out=lambda msg: print(msg, flush=True))
    return exit_code(outcome)
