"""The package as a user installs it: a wheel built from this checkout, installed with pip into a
fresh virtual environment (dependencies reused from the running one), run from an empty directory,
where no `sweeps/` or `search_spaces/` folder is in reach except the copies inside the package."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], *, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """(venv python, v1sweep script, an empty working directory, the environment to run them in)."""
    pytest.importorskip("setuptools")
    root = tmp_path_factory.mktemp("install")
    # no PYTHONPATH: pip would take a checkout on it for an installed v1sweep and skip the wheel
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    wheels = root / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                  "-w", str(wheels), str(REPO)], cwd=root, env=clean)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("v1sweep-*.whl")
    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, env=clean)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    done = _run([sys.executable, "-m", "pip", "-q", "--python", str(python), "install", "--no-deps", "--no-index",
                 str(wheel)], cwd=root, env=clean)
    assert done.returncode == 0, done.stderr[-3000:]
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root,
                env=clean)
    # the dependencies of the running environment, after the venv's own packages (v1sweep from the wheel)
    (Path(site.stdout.strip()) / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    empty = root / "empty"
    empty.mkdir()
    env = dict(clean)
    env.update(HOME=str(root), MLFLOW_TRACKING_URI="", V1SWEEP_CACHE=str(root / "cache"), RAY_USAGE_STATS_ENABLED="0")
    return {"python": python, "v1sweep": venv / "bin" / "v1sweep", "cwd": empty, "env": env}


@pytest.mark.slow
def test_wheel_install_runs_bundled_smoke_sweep_from_an_empty_directory(installed):
    cwd, env = installed["cwd"], installed["env"]
    where = _run([str(installed["python"]), "-c", "import v1sweep; print(v1sweep.__file__)"], cwd=cwd, env=env)
    assert where.returncode == 0 and str(REPO) not in where.stdout  # the installed copy, not this checkout
    listed = _run([str(installed["v1sweep"]), "sweeps"], cwd=cwd, env=env)
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines() if line and not line.startswith(("run one", " "))}
    assert {p.stem for p in (REPO / "sweeps").glob("*.yaml")} <= names
    assert "NSGA-II" in listed.stdout  # frontend's one-line description
    dry = _run([str(installed["v1sweep"]), "run", "frontend", "--dry-run"], cwd=cwd, env=env)  # includes resolved
    assert dry.returncode == 0, dry.stderr
    res = _run([str(installed["v1sweep"]), "run", "smoke", "--num-cpus", "2"], cwd=cwd, env=env, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "4 finished" in res.stdout
    assert "Traceback" not in res.stderr
    assert (cwd / "mlflow.db").is_file() and len(list((cwd / "v1sweep_runs").glob("smoke-*"))) == 1
