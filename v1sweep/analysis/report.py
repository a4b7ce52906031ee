"""The sweep report: robustness vs similarity to V1 as figures, tables, Markdown and HTML, in MLflow.

`build_report(sweep)` reads the sweep's finished trials from MLflow (`v1sweep.results.query`), runs the
statistics of `v1sweep.analysis.robustness`, and writes into one folder:

- ``trials.csv`` (one row per trial) and one CSV per statistics table;
- PNG figures (matplotlib's object API on the Agg canvas; no pyplot global state);
- ``report.md`` and a self-contained ``report.html`` (inline figures, sortable tables, and a
  scatter explorer over any two columns drawn as SVG by a few lines of inline JavaScript);
- ``summary.json`` with the headline numbers.

All of it is logged as an ``analysis`` run under the sweep's parent run (tags
``v1sweep.role=analysis``, ``mlflow.parentRunId``) with the headline numbers as metrics.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from v1sweep import contracts as C
from v1sweep.analysis import AnalysisError
from v1sweep.analysis import robustness as rb
from v1sweep.analysis.progress import Progress

PUBLISHED_REL_DIFF = 0.0872  # biological vs uniform, Barbulescu, Marques & Oliveira 2023
HEADLINE_METRICS = (C.CLEAN_ACC, C.CORRUPTION_ACC)


@dataclass
class Report:
    """What `build_report` produced: the folder, its files, the MLflow analysis run, the statistics."""
    sweep: str
    parent_run_id: str
    out_dir: Path
    files: dict[str, Path]
    result: rb.RobustnessResult
    counts: dict[str, int]
    analysis_run_id: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, rb.RobustnessResult] = field(default_factory=dict)


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def build_report(sweep: Any, *, tracking_uri: str | None = None, out_dir: str | Path | None = None,
                 metric: str = rb.DEFAULT_METRIC, n_boot: int = rb.N_BOOT, ci: float = 0.95, seed: int = 0,
                 partial: bool = False, all_parents: bool = False, log_to_mlflow: bool = True,
                 models: bool = True, adjust: str = rb.ADJUST, progress: bool = True) -> Report:
    """Analyse a sweep's finished trials and write + log the report.

    Raises `AnalysisError` for a sweep with no finished trials, or one still running (unless
    `partial`); `v1sweep.results.query.QueryError` for an unknown sweep or store. With `models`, the trained
    networks logged by the trials (``model.pt``) are analysed too: in-silico electrophysiology of
    their V1 blocks, CKA against the biological model of the same seeds with its baselines, and
    sub-populations. `n_boot` draws make the permutation null of CKA and the same-size data
    samples behind the V1-benchmark ceilings; `seed` seeds them. `adjust` ('holm' or 'bh') is the
    multiple-test correction over the association tests. `progress`: one line (or a tqdm bar on a
    terminal) per stage on stderr.
    """
    from v1sweep.results import query as query

    ref = query.resolve_sweep(sweep, tracking_uri=tracking_uri)
    parent = query.parent_runs(ref)[0]
    name = parent.data.tags.get(C.SWEEP) or ref.name or "sweep"
    table = query.runs(ref, include_failed=True, include_stopped=True, include_running=True,
                       all_parents=all_parents)
    counts = query.status_counts(table)
    unfinished = counts["running"] + counts["interrupted"]
    state = (f"{counts['finished']} finished, {counts['failed']} failed, {counts['stopped']} stopped, "
             f"{counts['running']} running")
    if counts["interrupted"]:
        state += f", {counts['interrupted']} interrupted"
    if counts["total"] == 0:
        raise AnalysisError(f"sweep {name!r} has no trials yet (parent run {parent.info.run_id}); "
                            "run it first, or check the name with `v1sweep status`")
    if unfinished and not partial:
        raise AnalysisError(f"sweep {name!r} is unfinished ({state}); wait for it, continue it with "
                            "`v1sweep resume`, or analyse the finished trials with --partial")
    finished = table[table["status"] == "finished"].reset_index(drop=True)
    if finished.empty:
        raise AnalysisError(f"sweep {name!r} has no finished trials ({state}); see `v1sweep status`")
    finished, left_out = _with_metric(finished, metric)

    prog = Progress(4 + (4 if models else 0) + (1 if log_to_mlflow else 0), enabled=progress)
    try:
        prog.stage("per-corruption accuracies (eval_table.csv of each trial)")
        cells, cell_note = load_corruption_cells(finished, ref.tracking_uri)
        prog.stage("statistics")
        result = rb.analyze_frame(finished, metric, ci=ci, adjust=adjust, cells=cells)
        axes = axis_results(finished, metric, ci=ci, adjust=adjust, warnings=result.warnings)
        if left_out:
            result.warnings.insert(0, left_out)
        if cell_note:
            result.warnings.append(cell_note)
        if unfinished:
            result.warnings.insert(0, f"partial analysis: {unfinished} trial(s) still running or interrupted")

        out = Path(out_dir) if out_dir is not None else Path("analysis") / _safe(name)
        out.mkdir(parents=True, exist_ok=True)
        run = None
        if log_to_mlflow:
            from v1sweep.results.tracking import start_analysis_run

            run = start_analysis_run(ref.tracking_uri, experiment_id=parent.info.experiment_id,
                                     parent_run_id=parent.info.run_id, sweep_name=name)
        try:
            report = _write(out, name, parent, ref.tracking_uri, finished, result, counts, state,
                            run.run_id if run is not None else None,
                            n_boot=n_boot, ci=ci, seed=seed, models=models, progress=prog, axes=axes)
            if run is not None:
                prog.stage("logging to MLflow")
                run.finish(params=run_params(report, metric=metric, n_boot=n_boot, ci=ci, seed=seed),
                           metrics=headline_metrics(report.result, report.axes), folder=report.out_dir)
        except BaseException:
            if run is not None:
                run.fail()
            raise
    finally:
        prog.close()
    return report


def _with_metric(finished: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, str]:
    """The finished trials that logged `metric`, and a note naming those left out (e.g. trials whose
    corruption evaluation was skipped). An unknown metric stays an error (raised by `rb._col`)."""
    col = rb._col(finished, metric)
    missing = finished[col].isna()
    if not missing.any():
        return finished, ""
    ids = ", ".join(map(str, finished.loc[missing, "trial_id" if "trial_id" in finished else "run_id"].head(8)))
    more = " ..." if missing.sum() > 8 else ""
    kept = finished[~missing].reset_index(drop=True)
    if kept.empty:
        raise AnalysisError(f"no finished trial logged {metric!r}")
    return kept, (f"{int(missing.sum())} finished trial(s) did not log {metric!r} (e.g. corruption evaluation "
                  f"skipped) and are left out: {ids}{more}")


def axis_results(finished: pd.DataFrame, metric: str, *, ci: float, adjust: str,
                 warnings: list[str]) -> dict[str, rb.RobustnessResult]:
    """The other robustness axes (`rb.robustness_axes`: corruption accuracy, ``adv_acc/*``), each
    analysed like the main metric on the trials that logged it; each has its own adjusted family."""
    out = {}
    for axis in rb.robustness_axes(finished, metric):
        try:
            out[axis] = rb.analyze_frame(finished, axis, ci=ci, adjust=adjust)
        except AnalysisError as exc:
            warnings.append(f"{axis}: not analysed ({exc})")
    return out


def load_corruption_cells(finished: pd.DataFrame, tracking_uri: str) -> tuple[pd.DataFrame, str]:
    """Accuracy per (corruption, severity) of every trial, read from its ``eval_table.csv`` artifact.

    Trials without the artifact fall back to their ``corruption_acc/<name>`` metrics (severity 0 =
    mean over severities) and the note says so. Returns a long table run_id, corruption, severity,
    accuracy.
    """
    import tempfile

    from v1sweep.corruptions.catalog import CORRUPTIONS

    rows, fallback = [], 0
    client = None
    with tempfile.TemporaryDirectory(prefix="v1sweep-cells-") as tmp:
        for k, row in enumerate(finished.itertuples(index=False)):
            run_id = getattr(row, "run_id")
            table = None
            try:
                if client is None:
                    from mlflow.tracking import MlflowClient

                    client = MlflowClient(tracking_uri=tracking_uri)
                path = client.download_artifacts(run_id, C.EVAL_TABLE_CSV, str(Path(tmp) / str(k)))
                table = pd.read_csv(path)
            except Exception:  # noqa: BLE001 - no artifact (older trial, or evaluation skipped)
                table = None
            if table is not None and {"corruption", "severity", "accuracy"} <= set(table.columns):
                for r in table.itertuples(index=False):
                    rows.append((run_id, r.corruption, int(r.severity), float(r.accuracy)))
                continue
            fallback += 1
            for name in CORRUPTIONS:
                col = f"metrics.{C.corruption_metric(name)}"
                if col in finished.columns and np.isfinite(float(finished.loc[k, col])):
                    rows.append((run_id, name, 0, float(finished.loc[k, col])))
    cells = pd.DataFrame(rows, columns=["run_id", "corruption", "severity", "accuracy"])
    note = ""
    if fallback and not cells.empty:
        note = (f"{fallback} trial(s) have no eval_table.csv: their per-corruption accuracies are means over "
                "severities (severity 0 in the breakdown)")
    if fallback and len(cells["severity"].unique()) > 1 and (cells["severity"] == 0).any():
        cells = cells[cells["severity"] != 0]  # mixing means and per-severity cells would mislead
        note += "; left out of the per-severity breakdown"
    return cells, note


def _safe(text: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", str(text)).strip("_") or "sweep"


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def trial_table(finished: pd.DataFrame, result: rb.RobustnessResult) -> pd.DataFrame:
    """The per-trial CSV: ids, variant, varying params and seeds, then every final metric."""
    seeds = [c for c in finished.columns if c.startswith("params.") and c.endswith(".seed")
             and finished[c].astype(str).nunique() > 1]
    params = [c for c in result.variant_columns if c not in seeds]
    metrics = sorted(c for c in finished.columns if c.startswith("metrics."))
    front = [m for m in (f"metrics.{h}" for h in HEADLINE_METRICS) if m in metrics]
    metrics = front + [m for m in metrics if m not in front]
    out = finished[["trial_id", "run_id"]].copy()
    out["variant"] = result.labels.to_numpy()
    for col in params + seeds + metrics:
        out[col.split(".", 1)[1]] = finished[col].to_numpy()
    return out


def _write(out: Path, name: str, parent, uri: str, finished: pd.DataFrame, result: rb.RobustnessResult,
           counts: dict, state: str, run_id: str | None, *, n_boot: int, ci: float, seed: int,
           models: bool = True, progress: Progress | None = None,
           axes: dict[str, rb.RobustnessResult] | None = None) -> Report:
    from v1sweep.analysis import report_figures as figs
    from v1sweep.results.store import mask_uri

    prog = progress or Progress(1, enabled=False)
    files: dict[str, Path] = {}
    trials = trial_table(finished, result)
    tables = {"trials": trials, "variants": result.variants, "clean": result.clean, "relative": result.relative,
              "correlations": result.correlations, "categories": result.categories, "alpha": result.alpha,
              "alpha_trend": result.alpha_trend, "corruptions": result.corruptions}
    for key, frame in tables.items():
        if key == "trials" or not frame.empty:
            path = out / f"{key}.csv"
            frame.to_csv(path, index=False)
            files[f"{key}.csv"] = path
    prog.stage("figures")
    for fname, draw in (("variants.png", figs.plot_variants), ("categories.png", figs.plot_categories),
                        ("corruptions.png", figs.plot_corruptions), ("similarity.png", figs.plot_similarity),
                        ("correlations.png", figs.plot_correlations), ("alpha.png", figs.plot_alpha)):
        if draw(finished, result, out / fname):
            files[fname] = out / fname

    axes = axes or {}
    axis_files = _write_axes(out, finished, axes, files)
    pct = int(round(ci * 100))
    sections = _sections(name, result, files, pct)
    sections[-1:-1] = [_axis_section(axis, res, axis_files[axis], pct) for axis, res in axes.items()]
    if models:
        sections += _model_sections(finished, uri, out, files, n_boot=n_boot, seed=seed, progress=prog)
    prog.stage("writing the report")
    method = {"holm": "Holm-adjusted (family-wise error)",
              "bh": "Benjamini-Hochberg-adjusted (false discovery rate)"}[result.adjust]
    meta = [f"Parent run `{parent.info.run_id}` (experiment {parent.info.experiment_id}) in "
            f"`{mask_uri(uri)}`" + (f"; this analysis is MLflow run `{run_id}`." if run_id else "."),
            f"Trials: {state}; analysed: the {result.n_trials} finished trial(s) with `{result.metric}`.",
            "Variants are defined by: " + (", ".join(f"`{c[len('params.'):]}`" for c in result.variant_columns)
                                           or "nothing varies (one variant, 'all')") + "; seeds are replicates.",
            f"Intervals ({pct}%): Student-t for means and seed-level slopes, Fieller for the relative difference "
            f"(seed-paired when trials share seeds, else unpaired with Welch df), Fisher z for correlations; "
            f"none below {rb.MIN_SEEDS} seeds. Association p-values are {method} over the "
            f"{result.n_family} tests of this report. Methods: docs/statistics.md."]
    summary = _summary(name, parent, result, counts, run_id, axes)
    (out / C.SUMMARY_JSON).write_text(json.dumps(summary, indent=2, default=_json_default))
    files[C.SUMMARY_JSON] = out / C.SUMMARY_JSON
    title = f"Robustness vs similarity to V1: sweep {name}"
    (out / C.REPORT_MD).write_text(render_markdown(title, meta, sections))
    files[C.REPORT_MD] = out / C.REPORT_MD
    (out / C.REPORT_HTML).write_text(render_html(title, meta, sections, out, trials))
    files[C.REPORT_HTML] = out / C.REPORT_HTML
    return Report(sweep=name, parent_run_id=parent.info.run_id, out_dir=out, files=files, result=result,
                  counts=counts, analysis_run_id=run_id, summary=summary, axes=axes)


def _write_axes(out: Path, finished: pd.DataFrame, axes: dict[str, rb.RobustnessResult],
                files: dict) -> dict[str, list[str]]:
    """CSV tables and figures of each extra robustness axis, named ``axis-<metric>-<table>``."""
    from v1sweep.analysis import report_figures as figs

    made: dict[str, list[str]] = {}
    for axis, res in axes.items():
        tag = _safe(axis.replace("/", "-"))
        made[axis] = []
        for key, frame in (("variants", res.variants), ("relative", res.relative),
                           ("correlations", res.correlations), ("alpha_trend", res.alpha_trend)):
            if not frame.empty:
                fname = f"axis-{tag}-{key}.csv"
                frame.to_csv(out / fname, index=False)
                files[fname] = out / fname
        rows = finished[finished[f"metrics.{axis}"].notna()].reset_index(drop=True)
        for key, draw in (("variants", figs.plot_variants), ("correlations", figs.plot_correlations)):
            fname = f"axis-{tag}-{key}.png"
            if draw(rows, res, out / fname):
                files[fname] = out / fname
                made[axis].append(fname)
    return made


def _axis_section(axis: str, res: rb.RobustnessResult, figures: list[str], pct: int) -> Section:
    """One extra robustness axis, read like the main metric: per variant, bio vs X, vs similarity."""
    kind = ("white-box attack (docs/adversarial.md)" if axis.startswith(rb.ADV_PREFIX)
            else "corruption robustness")
    s = Section(f"Robustness axis {axis}", text=[
        f"{axis} ({kind}) analysed exactly like the main metric: per-variant mean over seeds with its "
        f"{pct}% t interval; biological vs X with the seed-paired (or Welch) Fieller interval; association with "
        f"similarity between and within variants, p-values adjusted over this axis's own "
        f"{res.n_family} tests. n = {res.n_trials} trials."])
    s.tables.append((f"{axis}, mean over seeds", res.variants))
    for row in res.relative[res.relative["metric"] == axis].itertuples():
        ci_text = (f"[{pct}% CI {_pct(row.ci_lo)}, {_pct(row.ci_hi)}], {row.method}" if np.isfinite(row.ci_lo)
                   else "no interval")
        s.text.append(f"- {row.reference} vs {row.other}: {_pct(row.rel_diff)} {ci_text}"
                      + (f" — {row.note}" if row.note else ""))
    if not res.relative.empty:
        s.tables.append((f"{axis}: (acc_reference - acc_other) / acc_other",
                         res.relative[res.relative["metric"] == axis]))
    if not res.correlations.empty:
        s.tables.append((f"{axis} vs similarity to V1", res.correlations))
    s.figures = list(figures)
    return s


def _model_sections(finished: pd.DataFrame, uri: str, out: Path, files: dict, *, n_boot: int = rb.N_BOOT,
                    seed: int = 0, progress: Progress | None = None) -> list[Section]:
    """The study's model-level analyses on the trained networks; a failure becomes a note, not a crash."""
    from v1sweep.analysis.trained import analyze_sweep_models

    folder = out / "models"
    prog = progress or Progress(1, enabled=False)
    try:
        found = analyze_sweep_models(finished, tracking_uri=uri, out_dir=folder, log=prog.note, stage=prog.stage,
                                     n_perm=n_boot, seed=seed)
    except Exception as exc:  # noqa: BLE001 - the statistics above stand on their own
        return [Section("Trained models", text=[f"Model analyses skipped: {type(exc).__name__}: {exc}"])]
    for path in list(found["tables"].values()) + list(found["figures"].values()):
        files[f"models/{Path(path).name}"] = Path(path)
    sections = [Section(sec["title"], sec["text"], sec["tables"], [f"models/{Path(f).name}" for f in sec["figures"]])
                for sec in found["sections"]]
    if found["notes"]:
        sections.insert(0, Section("Trained models", text=[f"- {note}" for note in found["notes"]]))
    return sections


def _pct(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:+.2f}%"


def _sections(name: str, result: rb.RobustnessResult, files: dict, pct: int) -> list[Section]:
    sections = []
    if result.warnings:
        sections.append(Section("Warnings", text=[f"- {w}" for w in result.warnings]))
    s = Section(f"{result.metric} per variant", tables=[(f"{result.metric}, mean over seeds", result.variants)])
    s.text.append(f"n = seeds of the variant; std = seed SD; ci = {pct}% Student-t interval of the mean "
                  f"(mean +- t_(n-1) std / sqrt(n)); below {rb.MIN_SEEDS} seeds no interval, and the note gives "
                  f"the seeds a +-{rb.PRECISION_MEAN:g} interval would need at the observed seed SD.")
    if not result.clean.empty:
        s.tables.append(("clean_acc, mean over seeds", result.clean))
    s.figures = [f for f in ("variants.png",) if f in files]
    sections.append(s)
    sections.append(_relative_section(result, pct))
    if not result.corruptions.empty:
        sections.append(_corruption_section(result, files, pct))
    s = Section(f"{result.metric} vs similarity to V1")
    if result.correlations.empty:
        s.text.append("No similarity metrics (rf_similarity*, rf_wasserstein*) were logged by these trials.")
    else:
        adj = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[result.adjust]
        s.text += [
            "Two associations that are not confounded with each other: **between** variants, the Pearson r of "
            "the variant means (n_variants points, t-test with n - 2 df, Fisher-z interval: variant identity is "
            "the unit, so n is small); **within** variants, the Pearson r of the seed-level deviations from "
            "each variant's mean (df = n_trials - variants - 1, i.e. the test of the measure in a regression "
            "with one intercept per variant) and the same given clean accuracy (within_partial). "
            f"*_p_adj: {adj}-adjusted over the {result.n_family} association tests of this report.",
            "rf_normsim* divide the score by that of a same-size sample drawn from the V1 data (1 = "
            "as V1-like as the data itself at this unit count); *_eff* are measured on the effective filters "
            "(docs/statistics.md). rf_wasserstein/* are distances: negative r means closer to V1 is more robust."]
        s.tables.append(("correlations", result.correlations))
        s.figures = [f for f in ("correlations.png", "similarity.png") if f in files]
    sections.append(s)
    if not result.categories.empty:
        sections.append(Section("Per corruption category", text=[
            f"Mean of corruption_acc/<category> over seeds with its {pct}% t interval, per variant."],
            tables=[("mean accuracy per category", result.categories)],
            figures=[f for f in ("categories.png",) if f in files]))
    if not result.alpha.empty:
        sections.append(Section(f"{result.metric} vs interpolation alpha (0 = uniform, 1 = biological)", text=[
            f"Curve: mean over seeds at each alpha with its {pct}% t interval. Trend (dose-response): the OLS "
            "slope of the metric on alpha fitted within each seed (a seed is a cluster: its trials share "
            f"initialisation and data order), averaged over seeds, with a {pct}% t interval over seeds "
            "(df = seeds - 1) and its p (adjusted in slope_p_adj); pooled_slope and spearman_rho ignore the "
            "clustering and are descriptive only."],
            tables=[("curve", result.alpha), ("dose-response per alpha", result.alpha_trend)],
            figures=[f for f in ("alpha.png",) if f in files]))
    csvs = ", ".join(f"[{k}]({k})" for k in files if k.endswith(".csv"))
    sections.append(Section("Files", text=[f"Tables as CSV: {csvs}."]))
    return sections


def _relative_section(result: rb.RobustnessResult, pct: int) -> Section:
    rel = result.relative
    s = Section("Biological vs uniform: relative robustness difference")
    if rel.empty:
        s.text.append("Not computed: the sweep does not hold both biological and uniform-strategy trials.")
        return s
    s.text.append(f"(mean_biological - mean_X) / mean_X with a {pct}% Fieller interval: seed-paired when the two "
                  "strategies' trials share train.seed / rf.seed (their difference then cancels the seed's "
                  "shared initialisation and data order), else unpaired with Welch df; p of the paired or "
                  "Welch t-test; se = delta-method standard error. The method and why are in each row.")
    for row in rel[rel["metric"] == result.metric].itertuples():
        ci_text = (f"[{pct}% CI {_pct(row.ci_lo)}, {_pct(row.ci_hi)}], {row.method}" if np.isfinite(row.ci_lo)
                   else "no interval")
        n_text = f"{row.n_pairs} pairs" if row.method.startswith("paired") else f"n = {row.n_reference} vs {row.n_other}"
        s.text.append(f"- {row.reference} vs {row.other}: {_pct(row.rel_diff)} {ci_text} ({n_text})"
                      + (f" — {row.note}" if row.note else ""))
    s.text.append(f"Published (Tiny ImageNet, ResNet18, biological vs uniform): {_pct(PUBLISHED_REL_DIFF)}.")
    s.tables.append(("(acc_reference - acc_other) / acc_other", rel))
    return s


def _corruption_section(result: rb.RobustnessResult, files: dict, pct: int) -> Section:
    table = result.corruptions
    adj = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[result.adjust]
    s = Section("Per corruption and severity: biological vs uniform", text=[
        f"The relative difference of each (corruption, severity) cell, same method as above ({pct}% interval; "
        f"p_adj: {adj}-adjusted over the {int(np.isfinite(table['p'].to_numpy(float)).sum())} cells). The "
        "study's effect is corruption-specific, so this is the table to read."])
    for other, sub in table.groupby("other", sort=False):
        wide = sub.assign(cell=[f"{100 * v:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" if np.isfinite(lo)
                                else f"{100 * v:+.1f} (no CI)"
                                for v, lo, hi in zip(sub["rel_diff"], sub["ci_lo"], sub["ci_hi"])])
        wide = wide.pivot(index="corruption", columns="severity", values="cell")
        wide = wide.reindex(list(dict.fromkeys(sub["corruption"])))
        wide.columns = [f"severity {c}" if c else "mean of severities" for c in wide.columns]
        s.tables.append((f"biological vs {other}, % (n pairs: {int(sub['n_pairs'].max())})", wide.reset_index()))
    s.tables.append(("all cells", table))
    s.figures = [f for f in ("corruptions.png",) if f in files]
    return s


def _summary(name: str, parent, result: rb.RobustnessResult, counts: dict, run_id: str | None,
             axes: dict[str, rb.RobustnessResult] | None = None) -> dict:
    def rec(frame: pd.DataFrame) -> list[dict]:
        return json.loads(frame.to_json(orient="records"))

    return {"sweep": name, "parent_run_id": parent.info.run_id, "analysis_run_id": run_id, "counts": counts,
            "metric": result.metric, "n_trials": result.n_trials, "ci": result.ci, "adjust": result.adjust,
            "variant_columns": [c[len("params."):] for c in result.variant_columns],
            "variants": rec(result.variants), "relative": rec(result.relative),
            "correlations": rec(result.correlations), "alpha_trend": rec(result.alpha_trend),
            "warnings": result.warnings,
            "axes": {axis: {"n_trials": res.n_trials, "variants": rec(res.variants), "relative": rec(res.relative),
                            "correlations": rec(res.correlations)} for axis, res in (axes or {}).items()}}


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            return "" if math.isnan(number) else str(value)
        return f"{value:.4g}" if abs(number) < 1e4 else f"{value:.4e}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (numbers to 4 significant digits, '|' escaped)."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def render_markdown(title: str, meta: list[str], sections: list[Section]) -> str:
    parts = [f"# {title}", "", *[f"{m}  " for m in meta], ""]
    for s in sections:
        parts += [f"## {s.title}", ""]
        for i, line in enumerate(s.text):
            parts.append(line)
            nxt = s.text[i + 1] if i + 1 < len(s.text) else None
            if nxt is None or not (line.startswith("- ") and nxt.startswith("- ")):
                parts.append("")
        for caption, frame in s.tables:
            parts += [f"**{caption}**", "", markdown_table(frame), ""]
        parts += [f"![{Path(f).stem}]({f})" for f in s.figures] + ([""] if s.figures else [])
    return "\n".join(parts)


def _esc(text: Any) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _inline_md(text: str) -> str:
    text = _esc(text)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            sort = f' data-v="{float(v)!r}"' if num and math.isfinite(float(v)) else ""
            cells.append(f"<td{sort}>{_esc(_fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px}
th{background:#f0f0f0;cursor:pointer;user-select:none}th:after{content:" \\2195";color:#aaa}
td[data-v]{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;border:1px solid #eee}
code{background:#f4f4f4;padding:0 3px}.scroll{overflow-x:auto}#explorer svg{border:1px solid #ccc;background:#fff}
.warn{background:#fff6e0;border-left:4px solid #e0a000;padding:.3em 1em}select{margin:0 1em 0 .3em}"""

_JS = r"""
document.querySelectorAll('table.sortable th').forEach((th, i) => th.addEventListener('click', () => {
  const tb = th.closest('table').tBodies[0], asc = th.dataset.asc !== '1';
  th.closest('tr').querySelectorAll('th').forEach(h => delete h.dataset.asc); th.dataset.asc = asc ? '1' : '0';
  const key = td => td.dataset.v !== undefined ? parseFloat(td.dataset.v) : td.textContent;
  [...tb.rows].sort((a, b) => { const x = key(a.cells[i]), y = key(b.cells[i]);
    const c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
    return asc ? c : -c; }).forEach(r => tb.appendChild(r)); }));
const D = JSON.parse(document.getElementById('trial-data').textContent);
const xs = document.getElementById('xsel'), ys = document.getElementById('ysel'), svg = document.getElementById('plot');
const num = D.columns.filter(c => D.rows.some(r => typeof r[c] === 'number'));
num.forEach(c => { xs.add(new Option(c, c)); ys.add(new Option(c, c)); });
xs.value = num.includes(D.x) ? D.x : num[0]; ys.value = num.includes(D.y) ? D.y : num[0];
const pal = ['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2','#7f7f7f','#bcbd22','#17becf'];
const variants = [...new Set(D.rows.map(r => r.variant))];
function draw() {
  const W = 640, H = 420, L = 70, R = 170, T = 20, B = 50, x = xs.value, y = ys.value;
  const pts = D.rows.filter(r => typeof r[x] === 'number' && typeof r[y] === 'number');
  const ext = k => { const v = pts.map(p => p[k]); let a = Math.min(...v), b = Math.max(...v);
    if (!(b > a)) { a -= 0.5; b += 0.5; } const m = (b - a) * 0.06; return [a - m, b + m]; };
  const [x0, x1] = pts.length ? ext(x) : [0, 1], [y0, y1] = pts.length ? ext(y) : [0, 1];
  const sx = v => L + (v - x0) / (x1 - x0) * (W - L - R), sy = v => H - B - (v - y0) / (y1 - y0) * (H - T - B);
  const esc = s => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
  let s = `<line x1="${L}" y1="${H-B}" x2="${W-R}" y2="${H-B}" stroke="#444"/>` +
          `<line x1="${L}" y1="${T}" x2="${L}" y2="${H-B}" stroke="#444"/>`;
  for (let k = 0; k <= 4; k++) { const vx = x0 + (x1 - x0) * k / 4, vy = y0 + (y1 - y0) * k / 4;
    s += `<text x="${sx(vx)}" y="${H-B+16}" font-size="11" text-anchor="middle">${vx.toPrecision(3)}</text>`;
    s += `<text x="${L-6}" y="${sy(vy)+4}" font-size="11" text-anchor="end">${vy.toPrecision(3)}</text>`; }
  s += `<text x="${(L+W-R)/2}" y="${H-12}" font-size="12" text-anchor="middle">${esc(x)}</text>`;
  s += `<text transform="translate(16,${(T+H-B)/2}) rotate(-90)" font-size="12" text-anchor="middle">${esc(y)}</text>`;
  pts.forEach(p => { const c = pal[variants.indexOf(p.variant) % pal.length];
    s += `<circle cx="${sx(p[x])}" cy="${sy(p[y])}" r="5" fill="${c}" fill-opacity="0.8" stroke="#333"` +
         ` stroke-width="0.5">` +
         `<title>${esc(p.trial_id)} (${esc(p.variant)})\n${esc(x)} = ${p[x]}\n${esc(y)} = ${p[y]}</title></circle>`; });
  variants.forEach((v, k) => { s += `<circle cx="${W-R+15}" cy="${T+10+k*18}" r="5" fill="${pal[k % pal.length]}"/>` +
    `<text x="${W-R+25}" y="${T+14+k*18}" font-size="11">${esc(v)}</text>`; });
  svg.innerHTML = s; }
xs.onchange = ys.onchange = draw; draw();
"""


def render_html(title: str, meta: list[str], sections: list[Section], out: Path, trials: pd.DataFrame) -> str:
    """A self-contained page: figures inlined as base64 PNG, sortable tables, an SVG scatter explorer."""
    import base64

    body = [f"<h1>{_esc(title)}</h1>", *[f"<p>{_inline_md(m)}</p>" for m in meta]]
    for s in sections:
        body.append(f"<h2>{_esc(s.title)}</h2>")
        if s.title == "Warnings":
            items = "".join(f"<p>{_inline_md(t.lstrip('- '))}</p>" for t in s.text)
            body.append(f'<div class="warn">{items}</div>')
        else:
            body += [f"<p>{_inline_md(t)}</p>" for t in s.text]
        for caption, frame in s.tables:
            body.append(f"<p><b>{_esc(caption)}</b></p><div class='scroll'>{html_table(frame)}</div>")
        for fname in s.figures:
            data = base64.b64encode((out / fname).read_bytes()).decode()
            body.append(f'<p><img alt="{_esc(fname)}" src="data:image/png;base64,{data}"></p>')
    shown = [c for c in trials.columns if c in ("trial_id", "run_id", "variant") or not c.startswith(C.CORRUPTION_PREFIX)
             or c.split("/", 1)[1] in rb.CATEGORIES]
    rows = json.loads(trials[shown].to_json(orient="records"))
    explorer = {"columns": shown, "rows": rows, "x": C.RF_SIMILARITY, "y": C.CORRUPTION_ACC}
    payload = json.dumps(explorer).replace("</", "<\\/")
    body.append("<h2>Explore the trials</h2><p>Pick any two columns; hover a point for its trial.</p>"
                "<div id='explorer'>x<select id='xsel'></select>y<select id='ysel'></select><br>"
                "<svg id='plot' width='640' height='420' xmlns='http://www.w3.org/2000/svg'></svg></div>")
    body.append(f"<h2>Trials</h2><div class='scroll'>{html_table(trials[shown])}</div>")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>" + "\n".join(body)
            + f"<script type='application/json' id='trial-data'>{payload}</script><script>{_JS}</script></body></html>")


# ---------------------------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------------------------
_METRIC_KEY = re.compile(r"[^\w\-. /]")


def headline_metrics(result: rb.RobustnessResult, axes: dict[str, rb.RobustnessResult] | None = None
                     ) -> dict[str, float]:
    """Finite headline numbers as MLflow metrics: relative differences, correlations, alpha slopes;
    for the other robustness axes the same with the axis in the name (``between_r/<axis>/<measure>``)."""
    out: dict[str, float] = {"n_trials": float(result.n_trials)}
    for axis, res in (axes or {}).items():
        for key, value in headline_metrics(res).items():
            if key.startswith("rel_diff/"):
                if key.startswith(f"rel_diff/{_METRIC_KEY.sub('_', axis)}/"):
                    out[key] = value
            elif key != "n_trials":
                head, _, rest = key.partition("/")
                out[f"{head}/{axis}/{rest}"] = value
    for row in result.relative.itertuples():
        base = f"rel_diff/{row.metric}/{row.reference}_vs_{row.other}"
        out.update({base: row.rel_diff, f"{base}/ci_lo": row.ci_lo, f"{base}/ci_hi": row.ci_hi,
                    f"{base}/paired": float(row.method.startswith("paired"))})
    for row in result.correlations.itertuples():
        out.update({f"between_r/{row.measure}": row.between_r, f"within_r/{row.measure}": row.within_r,
                    f"within_p_adj/{row.measure}": getattr(row, "within_p_adj", float("nan"))})
    for row in result.alpha_trend.itertuples():
        out[f"alpha_slope/{row.param}"] = row.slope
    return {_METRIC_KEY.sub("_", k): float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def run_params(report: Report, *, metric: str, n_boot: int, ci: float, seed: int) -> dict[str, str]:
    """The analysis run's params: the settings the report was built with."""
    return {"metric": metric, "n_boot": str(n_boot), "ci": str(ci), "seed": str(seed), "adjust": report.result.adjust,
            "variant_columns": ",".join(c[len("params."):] for c in report.result.variant_columns) or "-"}
