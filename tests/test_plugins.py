"""Plugins registered in the user's own module reach configs, the CLI and sweeps' workers.

A plugin module is named by `V1SWEEP_PLUGINS` (or an installed `v1sweep.plugins` entry point);
`v1sweep.registry.load_plugins` imports it before the config layer validates a name. Each test runs
in a fresh interpreter, since registration is process state.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PLUGIN = '''
from typing import Any

from v1sweep.corruptions.base import TABLE_SIZES, register
from v1sweep.rf.sampling import STRATEGIES, Recipe


@register("invert_plugin", category="digital", benchmark=False, params={t: [1, 2, 3, 4, 5] for t in TABLE_SIZES},
          deterministic=True)
def invert_plugin(x, param, rng):
    return 1.0 - x


@STRATEGIES.register("biological_copy", description="the biological tables, under another name", options=(),
                     uniform_control=None, example={})
def biological_copy(tables, opts: dict[str, Any]) -> Recipe:
    return Recipe(tables, alpha_sf=1.0, alpha_ori=1.0, alpha_nxny=1.0, alpha_coupling=1.0)
'''


def _env(tmp_path: Path, plugins: str | None) -> dict[str, str]:
    (tmp_path / "myplugin.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    env.pop("V1SWEEP_PLUGINS", None)
    if plugins is not None:
        env["V1SWEEP_PLUGINS"] = plugins
    return env


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd)


CHECK = ("from v1sweep import config\n"
         "c = config.from_dict({'rf': {'strategy': 'biological_copy'}, 'eval': {'corruptions': ['invert_plugin']}})\n"
         "print(c.rf.strategy, c.eval.corruptions[0])\n")


def test_a_named_plugin_is_a_valid_choice_and_an_unnamed_one_is_not(tmp_path):
    named = _python(CHECK, _env(tmp_path, "myplugin"), tmp_path)
    assert named.returncode == 0 and named.stdout.split() == ["biological_copy", "invert_plugin"], named.stderr
    unnamed = _python(CHECK, _env(tmp_path, None), tmp_path)
    assert unnamed.returncode != 0 and "'biological_copy' is not allowed" in unnamed.stderr


def test_a_broken_plugin_is_a_clear_error_naming_it(tmp_path):
    out = subprocess.run([sys.executable, "-m", "v1sweep.cli", "train", str(REPO / "sweeps/trials/smoke.yaml"),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True,
                         env=_env(tmp_path, "myplugin,not_a_module"), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "V1SWEEP_PLUGINS" in out.stderr and "'not_a_module'" in out.stderr


def test_v1sweep_train_runs_a_trial_with_a_plugin_strategy_and_corruption(tmp_path):
    sets = ["rf.strategy=biological_copy", "eval.corruptions=[invert_plugin, gaussian_noise]", "eval.severities=[1]",
            "eval.max_images=16", "train.epochs=1", "train.max_batches=2", "data.train_size=64",
            "data.test_size=32", "eval.adversarial=[]"]
    args = [a for s in sets for a in ("--set", s)]
    out = subprocess.run([sys.executable, "-m", "v1sweep.cli", "train", str(REPO / "sweeps/trials/smoke.yaml"),
                          "--out", str(tmp_path / "out"), *args], capture_output=True, text=True,
                         env=_env(tmp_path, "myplugin"), cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    metrics = summary.get("metrics", summary)
    assert "corruption_acc/invert_plugin" in metrics and "corruption_acc/gaussian_noise" in metrics
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())["rf"]["strategy"] == "biological_copy"


def test_a_sweep_over_a_plugin_strategy_runs_in_ray_workers(tmp_path):
    """`v1sweep run` in a fresh local Ray: the workers build each trial's config from the flat
    params, so they must load the plugin too (they inherit V1SWEEP_PLUGINS from the driver)."""
    sweep = {"name": "plugin_sweep",
             "trial": {"data": {"dataset": "synthetic", "image_size": 32, "train_size": 64, "test_size": 32},
                       "frontend": {"n_simple": 4, "n_complex": 4, "ksize": 7, "stride": 2, "visual_degrees": 1.0},
                       "model": {"backbone": "tiny", "bottleneck": 8},
                       "train": {"epochs": 1, "batch_size": 32, "max_batches": 2, "device": "cpu"},
                       "eval": {"corruptions": ["invert_plugin"], "severities": [1], "max_images": 16}},
             "space": {"rf.strategy": {"grid": ["biological_copy"]}},
             "search": {"algorithm": "grid"}, "resources": {"cpu": 1}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    env = {**_env(tmp_path, "myplugin"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = subprocess.run([sys.executable, "-m", "v1sweep.cli", "run", "s.yaml", "--num-cpus", "1",
                          "--storage", str(tmp_path / "runs")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`v1sweep.role` = 'trial'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["rf.strategy"] == "biological_copy"
    assert "corruption_acc/invert_plugin" in runs[0].data.metrics
