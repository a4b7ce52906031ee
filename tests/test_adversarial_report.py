"""The report treats white-box adversarial accuracy as a second robustness axis, like corruption accuracy."""
from __future__ import annotations

import json

import numpy as np
import pytest

from v1sweep.config import trial as cfg
from v1sweep.analysis import robustness as rb
from v1sweep.analysis.report import build_report

ADV = "adv_acc/linf/0.00098"
ADV2 = "adv_acc/l2/0.15"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("advstore")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("adv", artifact_location=(root / "artifacts").as_uri())
    pid = client.create_run(exp, run_name="adv", tags={"v1sweep.role": "sweep", "v1sweep.sweep": "adv",
                                                       "v1sweep.sweep_dir": str(root)}).info.run_id
    rng = np.random.default_rng(1)
    written = {}
    base = cfg.from_dict({"eval": {"adversarial": "default"}})
    for strategy, sim, adv_mean in (("biological", 0.9, 0.30), ("unif1", 0.5, 0.25)):
        for seed in range(4):
            shared = rng.normal(0, 0.01)
            m = {"clean_acc": 0.6 + rng.normal(0, 0.005), "corruption_acc": 0.4 + 0.1 * sim + rng.normal(0, 0.004),
                 "rf_similarity": sim + rng.normal(0, 0.03), ADV: adv_mean + shared + rng.normal(0, 0.003),
                 ADV2: adv_mean / 2 + shared + rng.normal(0, 0.003)}
            tid = f"{strategy}-{seed}"
            tags = {"mlflow.parentRunId": pid, "v1sweep.role": "trial", "v1sweep.sweep": "adv", "trial_id": tid,
                    "v1sweep.status": "finished"}
            run = client.create_run(exp, run_name=tid, tags=tags).info.run_id
            config = cfg.replace(base, **{"rf.strategy": strategy, "train.seed": seed})
            client.log_batch(run, params=[Param(k, str(v)) for k, v in cfg.to_flat(config).items()],
                             metrics=[Metric(k, float(v), 0, 0) for k, v in m.items()])
            client.set_terminated(run, "FINISHED")
            written[tid] = m
    client.set_terminated(pid, "FINISHED")
    return {"uri": uri, "parent": pid, "written": written}


def test_axes_are_found_and_ordered():
    import pandas as pd

    frame = pd.DataFrame({"metrics.corruption_acc": [0.1], "metrics.adv_acc/linf/0.00392": [0.1],
                          "metrics.adv_acc/linf/0.00098": [0.2], "metrics.adv_acc/l2/0.6": [0.1],
                          "metrics.adv_acc/l2/0.15": [np.nan], "metrics.clean_acc": [0.5]})
    assert rb.robustness_axes(frame) == ["adv_acc/l2/0.6", "adv_acc/linf/0.00098", "adv_acc/linf/0.00392"]
    assert rb.robustness_axes(frame, "adv_acc/linf/0.00098")[0] == "corruption_acc"


def test_report_shows_the_adversarial_axis(store, tmp_path):
    out = tmp_path / "r"
    report = build_report("adv", tracking_uri=store["uri"], out_dir=out, n_boot=50, models=False, progress=False)
    assert list(report.axes) == [ADV2, ADV]
    written = store["written"]
    a = np.array([written[f"biological-{k}"][ADV] for k in range(4)])
    b = np.array([written[f"unif1-{k}"][ADV] for k in range(4)])
    rel = report.axes[ADV].relative.query("metric == @ADV").iloc[0]
    assert rel["rel_diff"] == pytest.approx((a.mean() - b.mean()) / b.mean())
    assert rel["method"] == "paired Fieller" and rel["n_pairs"] == 4
    variants = report.axes[ADV].variants.set_index("variant")
    assert variants.loc["biological", "mean"] == pytest.approx(a.mean())
    assert list(report.axes[ADV].correlations["metric"].unique()) == [ADV]
    md = (out / "report.md").read_text()
    assert f"## Robustness axis {ADV}" in md and f"biological vs unif1: {100 * rel['rel_diff']:+.2f}%" in md
    assert (out / "axis-adv_acc-linf-0.00098-variants.png").is_file()
    assert (out / "axis-adv_acc-linf-0.00098-relative.csv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["axes"][ADV]["n_trials"] == 8

    from mlflow.tracking import MlflowClient

    run = MlflowClient(store["uri"]).get_run(report.analysis_run_id)
    assert run.data.metrics[f"rel_diff/{ADV}/biological_vs_unif1"] == pytest.approx(rel["rel_diff"])
    assert run.data.metrics[f"within_r/{ADV}/rf_similarity"] == pytest.approx(
        report.axes[ADV].correlations.set_index("measure").loc["rf_similarity", "within_r"])
    # the main metric's own numbers keep their names
    assert "rel_diff/corruption_acc/biological_vs_unif1" in run.data.metrics


def test_adversarial_accuracy_as_the_main_metric(store, tmp_path):
    report = build_report("adv", tracking_uri=store["uri"], out_dir=tmp_path / "m", metric=ADV, n_boot=50,
                          models=False, log_to_mlflow=False, progress=False)
    assert report.result.metric == ADV and "corruption_acc" in report.axes
