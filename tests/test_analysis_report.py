"""The sweep report built from small synthetic sweeps written into a real MLflow sqlite store."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from v1sweep.config import trial as cfg
from v1sweep.results import query as query
from v1sweep.analysis import AnalysisError
from v1sweep.analysis.report import build_report, markdown_table
from v1sweep.cli import main as cli_main

CATEGORIES = ("noise", "blur", "weather", "digital")
N_BOOT = 200
CELL_TRUTH = {"biological": {"gaussian_noise": 0.5, "impulse_noise": 0.4, "fog": 0.6},
              "unif1": {"gaussian_noise": 0.45, "impulse_noise": 0.42, "fog": 0.6}}


def _log_trial(client, exp, parent, sweep, trial_id, overrides, metrics, status="finished", start=0):
    from mlflow.entities import Metric, Param

    tags = {"mlflow.parentRunId": parent, "v1sweep.role": "trial", "v1sweep.sweep": sweep, "trial_id": trial_id}
    if status != "running":
        tags["v1sweep.status"] = status
    if status == "failed":
        tags["v1sweep.error"] = "RuntimeError: out of memory"
    run = client.create_run(exp, run_name=trial_id, tags=tags, start_time=start).info.run_id
    config = cfg.replace(cfg.TrialConfig(), **overrides)
    client.log_batch(run, params=[Param(k, str(v)) for k, v in cfg.to_flat(config).items()],
                     metrics=[Metric(k, float(v), start, 0) for k, v in metrics.items()])
    if status != "running":
        client.set_terminated(run, "FAILED" if status == "failed" else "FINISHED")
    return run


def _metrics(rng, sim, clean):
    corr = 0.2 + 0.2 * sim + rng.normal(0, 0.004)
    out = {"clean_acc": clean, "corruption_acc": corr, "rf_similarity": sim,
           "rf_similarity/sf": sim + rng.normal(0, 0.05), "rf_wasserstein/ori": 1 - sim + rng.normal(0, 0.05)}
    out.update({f"corruption_acc/{c}": corr + 0.02 * k - 0.03 + rng.normal(0, 0.005) for k, c in enumerate(CATEGORIES)})
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("reportstore")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    rng = np.random.default_rng(0)
    written: dict[str, dict] = {}

    def parent(name):
        exp = client.create_experiment(name, artifact_location=(root / "artifacts" / name).as_uri())
        run = client.create_run(exp, run_name=name, tags={"v1sweep.role": "sweep", "v1sweep.sweep": name,
                                                          "v1sweep.sweep_dir": str(root / name)}).info.run_id
        return exp, run

    # "paper": biological vs unif1, 4 seeds each, one failed trial.
    exp, pid = parent("paper")
    written["paper"] = {"parent": pid, "trials": {}}
    for s, sim in (("biological", 0.9), ("unif1", 0.5)):
        for seed in range(4):
            m = _metrics(rng, sim + rng.normal(0, 0.03), 0.6 + rng.normal(0, 0.01))
            tid = f"{s}-{seed}"
            _log_trial(client, exp, pid, "paper", tid, {"rf.strategy": s, "train.seed": seed}, m,
                       start=len(written["paper"]["trials"]))
            written["paper"]["trials"][tid] = m
    _log_trial(client, exp, pid, "paper", "crash", {"rf.strategy": "unif1", "train.seed": 9}, {}, status="failed")
    client.set_terminated(pid, "FINISHED")

    # "interp": alpha grid x 2 seeds (too few seeds: wide CIs).
    exp, pid = parent("interp")
    written["interp"] = {"parent": pid}
    for alpha in (0.0, 0.5, 1.0):
        for seed in range(2):
            _log_trial(client, exp, pid, "interp", f"a{alpha}-{seed}",
                       {"rf.strategy": "interpolated", "rf.alpha": alpha, "train.seed": seed},
                       _metrics(rng, 0.5 + 0.4 * alpha + rng.normal(0, 0.02), 0.6))

    # "unpaired": biological seeds 0-3, unif1 seeds 10-13: nothing pairs.
    exp, pid = parent("unpaired")
    written["unpaired"] = {"parent": pid, "trials": {}}
    for s, seeds in (("biological", range(4)), ("unif1", range(10, 14))):
        for seed in seeds:
            m = _metrics(rng, (0.9 if s == "biological" else 0.5) + rng.normal(0, 0.03), 0.6)
            _log_trial(client, exp, pid, "unpaired", f"{s}-{seed}", {"rf.strategy": s, "train.seed": seed,
                                                                     "rf.seed": seed}, m)
            written["unpaired"]["trials"][f"{s}-{seed}"] = m

    # "cells": biological vs unif1, 3 paired seeds, eval_table.csv artifacts with a known per-cell truth,
    # plus a finished trial whose corruption evaluation was skipped (no corruption_acc).
    exp, pid = parent("cells")
    written["cells"] = {"parent": pid, "tables": {}}
    for s in ("biological", "unif1"):
        for seed in range(3):
            shared = rng.normal(0, 0.01)
            acc = {(c, sev): CELL_TRUTH[s][c] - 0.05 * sev + shared + rng.normal(0, 0.003)
                   for c in CELL_TRUTH[s] for sev in (1, 2)}
            m = _metrics(rng, 0.9 if s == "biological" else 0.5, 0.6)
            m["corruption_acc"] = float(np.mean(list(acc.values())))
            run = _log_trial(client, exp, pid, "cells", f"{s}-{seed}", {"rf.strategy": s, "train.seed": seed}, m)
            table = pd.DataFrame([{"corruption": c, "category": "noise", "severity": sev, "accuracy": a, "n": 100}
                                  for (c, sev), a in acc.items()])
            path = root / f"eval_{s}_{seed}" / "eval_table.csv"
            path.parent.mkdir()
            table.to_csv(path, index=False)
            client.log_artifact(run, str(path))
            written["cells"]["tables"][(s, seed)] = acc
    _log_trial(client, exp, pid, "cells", "no-eval", {"rf.strategy": "unif1", "train.seed": 7},
               {"clean_acc": 0.6, "rf_similarity": 0.5})

    # "busy": one finished, one still running; "empty": a parent without trials.
    exp, pid = parent("busy")
    _log_trial(client, exp, pid, "busy", "done", {}, _metrics(rng, 0.7, 0.6))
    _log_trial(client, exp, pid, "busy", "going", {"train.seed": 1}, {"clean_acc": 0.3}, status="running")
    parent("empty")
    return {"uri": uri, "root": root, "written": written}


def _check_png(path):
    assert path.is_file() and path.stat().st_size > 5000, path
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200
        pixels = np.asarray(img.convert("RGB"), dtype=float)
    assert pixels.std() > 5 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # a drawing, not a blank


def _analysis_runs(uri, parent_id):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(exps, f"tags.`v1sweep.role` = 'analysis' AND tags.`mlflow.parentRunId` = '{parent_id}'")
    return client, found


def test_report_files_figures_and_mlflow_run(store, tmp_path):
    out = tmp_path / "report"
    report = build_report("paper", tracking_uri=store["uri"], out_dir=out, n_boot=N_BOOT)
    for name in ("trials.csv", "variants.csv", "relative.csv", "correlations.csv", "categories.csv",
                 "report.md", "report.html", "summary.json"):
        assert (out / name).is_file() and name in report.files
    for name in ("variants.png", "categories.png", "similarity.png", "correlations.png"):
        _check_png(out / name)
    assert "alpha.png" not in report.files  # no interpolation in this sweep

    # The per-trial CSV holds the finished trials and their logged values.
    trials = pd.read_csv(out / "trials.csv")
    written = store["written"]["paper"]["trials"]
    assert sorted(trials["trial_id"]) == sorted(written)
    for row in trials.itertuples():
        assert row.corruption_acc == pytest.approx(written[row.trial_id]["corruption_acc"])
        assert row.variant == row.trial_id.split("-")[0]

    # The headline number, recomputed here from what was written.
    bio = np.mean([m["corruption_acc"] for t, m in written.items() if t.startswith("biological")])
    uni = np.mean([m["corruption_acc"] for t, m in written.items() if t.startswith("unif1")])
    rel = report.result.relative.query("metric == 'corruption_acc'").iloc[0]
    assert rel["rel_diff"] == pytest.approx((bio - uni) / uni)
    md = (out / "report.md").read_text()
    assert f"biological vs unif1: {100 * (bio - uni) / uni:+.2f}%" in md
    assert "![variants](variants.png)" in md and "| variant | metric | n |" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "class=\"sortable\"" in html
    data = json.loads(html.split("id='trial-data'>", 1)[1].split("</script>", 1)[0].replace("<\\/", "</"))
    assert len(data["rows"]) == 8 and "corruption_acc" in data["columns"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"finished": 8, "failed": 1, "stopped": 0, "running": 0, "interrupted": 0,
                                 "total": 9}

    # Logged to MLflow as an analysis run under the sweep's parent, trials untouched.
    client, found = _analysis_runs(store["uri"], store["written"]["paper"]["parent"])
    assert [r.info.run_id for r in found] == [report.analysis_run_id]
    run = found[0]
    assert run.info.status == "FINISHED" and run.data.tags["v1sweep.sweep"] == "paper"
    assert run.data.metrics["rel_diff/corruption_acc/biological_vs_unif1"] == pytest.approx(rel["rel_diff"])
    assert run.data.metrics["within_r/rf_similarity"] == pytest.approx(
        report.result.correlations.set_index("measure").loc["rf_similarity", "within_r"])
    assert run.data.metrics["rel_diff/corruption_acc/biological_vs_unif1/paired"] == 1.0
    assert run.data.params["adjust"] == "holm"
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "report.html", "trials.csv", "variants.png", "similarity.png"} <= logged
    assert len(query.runs("paper", tracking_uri=store["uri"])) == 8


def fieller(a, b, paired, level=0.95):
    """Textbook Fieller interval for mean(a) / mean(b) - 1, solved as a quadratic in rho."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if paired:
        n = len(a)
        c = np.cov(a, b) / n
        va, vb, cab, df = c[0, 0], c[1, 1], c[0, 1], n - 1
    else:
        va, vb, cab = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b), 0.0
        r = a.mean() / b.mean()
        df = (va + r * r * vb) ** 2 / (va ** 2 / (len(a) - 1) + (r * r * vb) ** 2 / (len(b) - 1))
    t2 = stats.t.ppf(0.5 + level / 2, df) ** 2
    qa, qb, qc = b.mean() ** 2 - t2 * vb, -2 * (a.mean() * b.mean() - t2 * cab), a.mean() ** 2 - t2 * va
    roots = np.sort(np.roots([qa, qb, qc]).real)
    return roots[0] - 1, roots[1] - 1


def test_paired_and_unpaired_paths_from_the_store(store, tmp_path):
    paper = build_report("paper", tracking_uri=store["uri"], out_dir=tmp_path / "p", log_to_mlflow=False,
                         models=False, progress=False)
    trials = store["written"]["paper"]["trials"]
    a = [trials[f"biological-{k}"]["corruption_acc"] for k in range(4)]
    b = [trials[f"unif1-{k}"]["corruption_acc"] for k in range(4)]
    rel = paper.result.relative.query("metric == 'corruption_acc'").iloc[0]
    assert rel["method"] == "paired Fieller" and rel["n_pairs"] == 4
    assert (rel["ci_lo"], rel["ci_hi"]) == pytest.approx(fieller(a, b, True), rel=1e-9)
    assert "paired Fieller" in (tmp_path / "p" / "report.md").read_text()

    un = build_report("unpaired", tracking_uri=store["uri"], out_dir=tmp_path / "u", log_to_mlflow=False,
                      models=False, progress=False)
    trials = store["written"]["unpaired"]["trials"]
    a = [trials[f"biological-{k}"]["corruption_acc"] for k in range(4)]
    b = [trials[f"unif1-{k}"]["corruption_acc"] for k in range(10, 14)]
    rel = un.result.relative.query("metric == 'corruption_acc'").iloc[0]
    assert rel["method"].startswith("unpaired") and "0 seed pair(s) shared" in rel["note"]
    assert (rel["ci_lo"], rel["ci_hi"]) == pytest.approx(fieller(a, b, False), rel=1e-9)
    assert rel["rel_diff"] == pytest.approx(np.mean(a) / np.mean(b) - 1)


def test_per_corruption_breakdown_and_trials_missing_the_metric(store, tmp_path):
    report = build_report("cells", tracking_uri=store["uri"], out_dir=tmp_path, log_to_mlflow=False,
                          models=False, progress=False)
    res = report.result
    assert res.n_trials == 6  # the trial without corruption_acc is left out ...
    assert any("1 finished trial(s) did not log 'corruption_acc'" in w and "no-eval" in w for w in res.warnings)
    table = res.corruptions
    assert len(table) == 3 * 2 and set(table["method"]) == {"paired Fieller"}
    tables = store["written"]["cells"]["tables"]
    for row in table.itertuples():
        a = [tables[("biological", k)][(row.corruption, row.severity)] for k in range(3)]
        b = [tables[("unif1", k)][(row.corruption, row.severity)] for k in range(3)]
        assert row.rel_diff == pytest.approx(np.mean(a) / np.mean(b) - 1)
        assert (row.ci_lo, row.ci_hi) == pytest.approx(fieller(a, b, True), rel=1e-9)
    gn = table[(table["corruption"] == "gaussian_noise")]
    assert (gn["ci_lo"] > 0).all()  # truth +11-14 %, seed effect shared: the paired interval excludes 0
    _check_png(tmp_path / "corruptions.png")
    md = (tmp_path / "report.md").read_text()
    assert "Per corruption and severity" in md and "severity 2" in md and "did not log" in md


def test_interpolation_report_has_alpha_curve_and_few_seed_warnings(store, tmp_path):
    report = build_report("interp", tracking_uri=store["uri"], out_dir=tmp_path, n_boot=N_BOOT, log_to_mlflow=False)
    _check_png(tmp_path / "alpha.png")
    curve = report.result.alpha
    assert list(curve["alpha"]) == [0.0, 0.5, 1.0] and set(curve["n"]) == {2}
    assert report.result.alpha_trend.iloc[0]["spearman_rho"] > 0.5
    md = (tmp_path / "report.md").read_text()
    assert "## Warnings" in md and "has 2 seed(s)" in md and "no interval" in md and "seeds" in md
    assert report.analysis_run_id is None
    assert _analysis_runs(store["uri"], store["written"]["interp"]["parent"])[1] == []


def test_empty_unfinished_and_unknown_sweeps_are_clear_errors(store, tmp_path):
    with pytest.raises(AnalysisError, match="'empty' has no trials yet"):
        build_report("empty", tracking_uri=store["uri"], out_dir=tmp_path)
    with pytest.raises(AnalysisError, match="'busy' is unfinished .*1 running.*--partial"):
        build_report("busy", tracking_uri=store["uri"], out_dir=tmp_path)
    with pytest.raises(query.QueryError, match="sweeps found: busy, cells, empty, interp, paper, unpaired"):
        build_report("nope", tracking_uri=store["uri"], out_dir=tmp_path)


def test_cli_analyze(store, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli_main(["analyze", "paper", "--tracking-uri", store["uri"], "--out", str(out), "--n-boot", "200"])
    captured = capsys.readouterr()
    text = captured.out
    assert rc == 0 and (out / "report.html").is_file()
    assert "biological vs unif1: +" in text and "logged to MLflow as analysis run" in text
    assert "paired Fieller, 4 seed pairs" in text
    # progress: one plain line per stage on stderr when it is not a terminal
    assert "analyze [1/" in captured.err and "statistics" in captured.err and "figures" in captured.err

    for sweep, message in (("empty", "has no trials yet"), ("busy", "is unfinished"), ("nope", "no sweep 'nope'")):
        assert cli_main(["analyze", sweep, "--tracking-uri", store["uri"], "--out", str(tmp_path / sweep)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    rc = cli_main(["analyze", "busy", "--partial", "--no-log", "--tracking-uri", store["uri"],
                   "--out", str(tmp_path / "busy"), "--n-boot", "200"])
    text = capsys.readouterr().out
    assert rc == 0 and "partial analysis: 1 trial(s) still running or interrupted" in text
    assert "no interval" in text  # one trial: no interval, and the output says so


def test_markdown_table_escapes_and_formats():
    table = markdown_table(pd.DataFrame({"a|b": ["x|y"], "v": [0.123456789], "m": [float("nan")]}))
    assert table.splitlines() == ["| a|b | v | m |", "|---|---|---|", "| x\\|y | 0.1235 |  |"]
