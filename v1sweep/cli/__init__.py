"""The `v1sweep` command line: `app` builds the parser and dispatches; one module per command."""
from __future__ import annotations

from v1sweep.cli.app import build_parser, exit_code, main, scrub

__all__ = ["build_parser", "exit_code", "main", "scrub"]
