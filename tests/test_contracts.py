"""`v1sweep.contracts` is the one owner of the MLflow layout's names; the layout is documented.

Every tag name it defines is documented in docs/sweeps.md (the user-facing description of what a
sweep writes), and every ``v1sweep.*`` / ``mlflow.*`` tag the real writer puts on a tiny sweep's
runs (sqlite store, no Ray) and on an analysis run is one of its names, spelled here literally."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from v1sweep import contracts as C

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sweeps.md"


def tag_names() -> set[str]:
    """The tag names of `v1sweep.contracts`, with ``<n>``/``<state>`` where the name takes a part."""
    names = {v for k, v in vars(C).items() if k.isupper() and isinstance(v, str)
             and v.startswith(("v1sweep.", "mlflow."))}
    names |= {C.TRIAL_ID, C.attempt_error("<n>"), C.trials_count("<state>")}  # type: ignore[arg-type]
    names |= {C.used(key) for key in C.USED_KEYS}
    return names


def is_contract_tag(key: str) -> bool:
    names = tag_names()
    if key in names or key.startswith((C.SHARED_VIEW_PREFIX, C.TRIALS_PREFIX)):
        return True
    return re.fullmatch(r"v1sweep\.attempt\.\d+\.error", key) is not None


def test_every_tag_name_is_documented_in_sweeps_md():
    text = DOCS.read_text()
    missing = sorted(name for name in tag_names() if name not in text)
    assert not missing, f"tags of v1sweep.contracts not described in docs/sweeps.md: {missing}"
    for artifact in C.TRIAL_ARTIFACTS + (C.SOURCE_YAML, f"{C.RESOLVED_DIR}/{C.SPEC_YAML}"):
        assert f"`{artifact}`" in text, artifact


def test_the_names_are_the_documented_layout():
    """Spelled out: changing a name in contracts.py changes the layout users filter on."""
    assert (C.ROLE, C.SWEEP, C.STATUS, C.ERROR, C.PARENT, C.TRIAL_ID) == (
        "v1sweep.role", "v1sweep.sweep", "v1sweep.status", "v1sweep.error", "mlflow.parentRunId", "trial_id")
    assert C.TRIAL_ARTIFACTS == ("config.yaml", "rf_params.csv", "rf_histograms.png", "summary.json",
                                 "eval_table.csv", "trial.log", "model.pt")
    assert C.attempt_error(2) == "v1sweep.attempt.2.error" and C.trials_count("failed") == "v1sweep.trials.failed"
    assert C.corruption_metric("fog") == "corruption_acc/fog"
    assert {"mce_unnormalized", "relative_mce_unnormalized", "corruption_acc"} <= set(C.FINAL_METRICS)


def test_contracts_imports_only_the_standard_library():
    code = ("import sys, v1sweep.contracts; "
            "bad = [m for m in ('torch', 'numpy', 'mlflow', 'ray', 'optuna', 'pandas') if m in sys.modules]; "
            "sys.exit(str(bad) if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_tag_a_tiny_sweep_and_an_analysis_write_is_a_contract_name(tmp_path):
    from v1sweep.results.tracking import SweepTracker, start_analysis_run

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    tracker = SweepTracker(uri, experiment="tiny", sweep_name="tiny", retry_s=60, log=lambda _m: None)
    spec = tmp_path / "source.yaml"
    spec.write_text("name: tiny\n")
    tracker.start_sweep(spec_hash="h", sweep_dir=str(tmp_path), command="v1sweep run tiny.yaml", files={"": spec},
                        commit_dirs=[Path(__file__).parent])
    tracker.publish_view(params=["rf.strategy"])
    for tid, state in (("t1", "finished"), ("t2", "failed"), ("t3", "interrupted")):
        tracker.trial_started(tid, params={"rf.strategy": "biological"}, run_name=tid,
                              tags={C.used("frost"): "procedural"})
        tracker.log_metrics(tid, {"val_acc": 0.5, "epoch": 1}, 1)
        if state == "finished":
            tracker.log_final(tid, {"clean_acc": 0.5}, 1)
        tracker.set_tags(tid, {"v1sweep.retries": "1", "v1sweep.last_error": "RuntimeError: once"})
        tracker.trial_ended(tid, state, error="RuntimeError: boom" if state == "failed" else None)
    tracker.end_sweep("FINISHED", tags={"v1sweep.trials.finished": 1, "v1sweep.wall_time_s": "1.0"})
    tracker.close(timeout=60)
    assert tracker.writer.lost == []
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "summary.json").write_text("{}")
    analysis = start_analysis_run(uri, experiment_id=tracker.experiment_id, parent_run_id=tracker.parent_run_id,
                                  sweep_name="tiny")
    analysis.finish(params={"metric": "corruption_acc"}, metrics={"n_trials": 3.0}, folder=folder)

    client = MlflowClient(uri)
    runs = client.search_runs([tracker.experiment_id])
    assert len(runs) == 5
    written = {k for r in runs for k in r.data.tags if k.startswith(("v1sweep.", "mlflow.")) or k == "trial_id"}
    written |= {k for k in client.get_experiment(tracker.experiment_id).tags if k.startswith(("v1sweep.", "mlflow."))}
    ours = {k for k in written if not k.startswith("mlflow.") or k in (
        "mlflow.parentRunId", "mlflow.experimentKind") or k.startswith("mlflow.sharedViewState.")}
    assert {"v1sweep.role", "v1sweep.sweep", "v1sweep.status", "v1sweep.final_logged", "v1sweep.interrupted",
            "v1sweep.analysis", "mlflow.parentRunId", "v1sweep.frost_used"} <= ours
    assert all(is_contract_tag(k) for k in ours), sorted(k for k in ours if not is_contract_tag(k))
    analysis_run = client.get_run(analysis.run_id)
    assert analysis_run.data.tags["v1sweep.role"] == "analysis" and analysis_run.info.status == "FINISHED"
    assert analysis_run.info.run_name == "analysis-tiny" and analysis_run.data.params == {"metric": "corruption_acc"}
    assert [a.path for a in client.list_artifacts(analysis.run_id)] == ["summary.json"]
