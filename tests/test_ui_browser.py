"""The MLflow UI a researcher lands in, checked in a real headless browser (Debian's `chromium`):
the link `v1sweep ui` prints opens the sweep's runs table (the training-runs view, not MLflow 3's
GenAI overview) listing every trial flat, with clean_acc, corruption_acc and rf_similarity as
columns and their values, without any configuration in the UI. Skipped without a browser."""
from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

import services
from v1sweep.config import sweep_file as sweep_spec
from v1sweep.sweep.engine import run_sweep

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((b for b in BROWSERS if shutil.which(b)), None)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(BROWSER is None, reason="no headless browser installed (apt-get install chromium)")]


def browser(url: str, *args: str) -> str:
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1900,1000",
           "--virtual-time-budget=20000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout


def page_text(dom: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))


@pytest.fixture
def sweep(tmp_path):
    """A 4-trial grid sweep (deterministic trial function) recorded in a sqlite store."""
    import ray

    data = {"name": "uitest", "trial": {"data": {"dataset": "synthetic", "image_size": 32},
                                        "frontend": {"visual_degrees": 1.0},
                                        "train": {"epochs": 2}, "eval": {"corruptions": ["fog", "pixelate"]}},
            "space": {"rf.strategy": {"grid": ["biological", "unif1"]}, "train.seed": {"grid": [0, 1]}}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = sweep_spec.load_sweep(path)
    owned = not ray.is_initialized()
    if owned:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        outcome = run_sweep(spec, trial_fn=services.fake_trial, storage=tmp_path / "runs", verbose=0,
                            out=lambda _m: None)
    finally:
        if owned:
            ray.shutdown()
    assert outcome.counts["finished"] == 4
    return spec, outcome


def test_ui_link_lands_on_the_runs_table_with_every_trial_and_headline_metrics(sweep, tmp_path):
    spec, outcome = sweep
    port = services.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "v1sweep.cli", "ui", "--port", str(port), "--tracking-uri",
                             outcome.tracking_uri], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        link = None
        deadline = time.monotonic() + 240
        while link is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "v1sweep ui exited"
            if line.strip().startswith("sweep uitest:"):
                link = line.split(": ", 1)[1].strip()
        assert link, "v1sweep ui printed no link for the sweep"
        assert f"/#/experiments/{outcome.experiment_id}/runs?" in link and "workflowType=machine_learning" in link
        shot = tmp_path / "runs_table.png"
        browser(link, f"--screenshot={shot}")
        assert shot.is_file() and shot.stat().st_size > 10_000
        text = page_text(browser(link, "--dump-dom"))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    assert "Runs" in text and "Traces overview" not in text
    assert "4 matching runs" in text  # the trials, flat; the parent run is not among them
    for trial_id in outcome.trial_ids:
        assert trial_id in text, trial_id
    for column in ("clean_acc", "corruption_acc", "rf_similarity", "rf.strategy", "train.seed"):
        assert column in text, column
    from v1sweep.config.trial import from_flat
    from v1sweep.results.query import parse_value, runs

    for row in runs("uitest", tracking_uri=outcome.tracking_uri).to_dict(orient="records"):
        cfg = from_flat({k[len("params."):]: parse_value(v) for k, v in row.items()
                         if k.startswith("params.") and v is not None})
        expected = services.expected_final(cfg)
        assert f"{expected['clean_acc']:g}"[:5] in text  # the table shows the logged values
