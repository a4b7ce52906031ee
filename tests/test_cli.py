"""The CLI surface: help lists every subcommand, version, and errors become exit code 2."""
from __future__ import annotations

import subprocess
import sys

import pytest

from v1sweep import __version__, cli


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "v1sweep.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_help_lists_every_subcommand():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in cli.COMMANDS:
        assert name in result.stdout


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"v1sweep {__version__}"


def test_unknown_subcommand_fails():
    assert run_cli("frobnicate").returncode != 0


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from v1sweep import cli; cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'ray', 'mlflow', 'optuna') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_subcommand_has_help(name):
    result = run_cli(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: v1sweep" in result.stdout
