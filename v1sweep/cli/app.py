"""The `v1sweep` command line: one subcommand per module in `v1sweep.cli`.

Each command module provides `HELP` (one line), `add_arguments(parser)` and `main(args) -> int`,
and imports heavy libraries (torch, ray, mlflow) inside `main`, so `v1sweep --help` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import traceback
from typing import Sequence

from v1sweep import __version__
from v1sweep.errors import OutputError, V1SweepError

# Subcommand -> module under v1sweep.cli, in the order `--help` lists them.
COMMANDS: dict[str, str] = {
    "run": "run",
    "sweeps": "sweeps",
    "resume": "resume",
    "status": "status",
    "train": "train",
    "best": "best",
    "analyze": "analyze",
    "corrupt": "corrupt",
    "ui": "ui",
    "bench": "bench",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="v1sweep",
        description="Sweeps over V1-like CNN front-ends: train, corruption-test, track in MLflow, analyse.")
    parser.add_argument("--version", action="version", version=f"v1sweep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"v1sweep.cli.{module_name}")
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_main=module.main)
    return parser


def exit_code(exc: BaseException) -> int:
    """1 when the system failed (an output folder that cannot be written, a vanished file),
    2 for bad input (`V1SweepError`, and `ValueError`, the API's documented error)."""
    status = getattr(exc, "exit_status", None)
    if status is not None:  # e.g. SearchAlgorithmFailed: 1
        return int(status)
    if isinstance(exc, OutputError) or not isinstance(exc, (V1SweepError, ValueError)):
        return 1
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._main(args) or 0)
    except (V1SweepError, ValueError, OSError) as exc:
        if os.environ.get("V1SWEEP_TRACEBACK"):
            raise
        print(f"v1sweep {args.command}: error: {scrub(str(exc))}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print(f"v1sweep {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: keep the traceback, but never print credentials that sit in URIs
        print(scrub(traceback.format_exc()), end="", file=sys.stderr)
        return 1


_URI = re.compile(r"[A-Za-z][\w+.-]*://[^\s'\"<>()]+")
# A secret query parameter outside a full URI (a URL path in a library's message: "/?token=...").
_SECRET_QUERY = re.compile(r"([?&][\w.-]*(?:token|secret|passw|pwd|key|auth|sig|credential|session)[\w.-]*=)"
                           r"[^&#\s'\"]+", re.I)


def scrub(text: str) -> str:
    """`text` with the credentials of every URI in it masked (``user:pass@``, ``?token=...``)."""
    from v1sweep.results.store import MASK, mask_uri

    text = _URI.sub(lambda m: mask_uri(m.group(0)), text)
    return _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, text)


if __name__ == "__main__":
    sys.exit(main())
