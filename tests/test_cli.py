"""The CLI surface: help lists every subcommand, version, and errors become exit code 2."""
from __future__ import annotations

import subprocess
import sys

import pytest

from v1sweep import __version__
from v1sweep.cli import app as cli


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


def test_sweeps_lists_every_bundled_sweep_with_its_description(tmp_path):
    import yaml

    from v1sweep.config.sweep_file import SWEEPS_DIR

    result = subprocess.run([sys.executable, "-m", "v1sweep.cli", "sweeps"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0]: " ".join(line.split()[1:]) for line in result.stdout.splitlines()
              if line and not line.startswith(("run one", " "))}
    for path in SWEEPS_DIR.glob("*.yaml"):
        desc = yaml.safe_load(path.read_text()).get("description")
        assert listed[path.stem] == " ".join(desc.split())


def test_run_resolves_a_bundled_sweep_by_name_from_any_directory(tmp_path):
    result = run_cli_in(tmp_path, "run", "smoke", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "4 trials:" in result.stdout
    wrong = run_cli_in(tmp_path, "run", "smok", "--dry-run")
    assert wrong.returncode == 2 and "did you mean 'smoke'" in wrong.stderr and "Traceback" not in wrong.stderr


def test_dry_run_warns_but_expands_without_data_or_gpu(tmp_path):
    result = run_cli_in(tmp_path, "run", "paper", "--dry-run", env={"CUDA_VISIBLE_DEVICES": "-1"})
    assert result.returncode == 0, result.stderr
    assert "10 trials:" in result.stdout
    warnings = [ln for ln in result.stderr.splitlines() if "warning:" in ln]
    assert any("--data-path" in w for w in warnings) and any("resources.gpu: 1" in w for w in warnings)
    missing = run_cli_in(tmp_path, "run", "paper", "--dry-run", "--data-path", str(tmp_path / "nope"))
    assert missing.returncode == 0 and f"data path {tmp_path / 'nope'} does not exist" in missing.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "v1sweep_runs").exists()


@pytest.mark.parametrize("name", ["run", "resume"])
def test_address_help_does_not_offer_ray_client(name):
    result = run_cli(name, "--help")
    text = " ".join(result.stdout.split())
    assert "ray://host" not in text and "Ray Client (ray://) addresses are refused" in text


def run_cli_in(cwd, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "v1sweep.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env={**os.environ, **(env or {})})
