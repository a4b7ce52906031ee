"""Per-variant means and the biological-vs-control comparisons of a sweep: Student-t intervals
over seeds, the seed-paired (or Welch) Fieller interval of the relative difference, per strategy,
per (corruption, severity) and per corruption category (docs/statistics.md).

Separate from the table preparation (`robustness_tables`: which trials form a variant or a pair)
and from the similarity relation (`robustness_similarity`): this module answers "how much more
robust is one variant than another", from values already grouped and keyed.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from v1sweep.analysis import stats as st
from v1sweep.analysis.robustness_tables import (
    ADJUST, CONTROL_METRIC, DEFAULT_METRIC, MIN_SEEDS, PRECISION_MEAN, PRECISION_REL, REFERENCE_STRATEGY,
    STRATEGY_COL, _col, _strategies, pair_keys, variant_labels)
from v1sweep.corruptions.catalog import CATEGORIES


def ci_note(n: int, sd: float = float("nan"), precision: float = PRECISION_MEAN, ci: float = 0.95) -> str:
    """'' when `n` >= MIN_SEEDS, else that no interval is given and how many seeds would give one
    of half-width `precision` at the observed seed SD `sd`."""
    if n >= MIN_SEEDS:
        return ""
    if n < 2 or not np.isfinite(sd):
        return f"n={n} < {MIN_SEEDS}: no interval (seed SD unknown; run >= {MIN_SEEDS} seeds)"
    need = st.seeds_needed(sd, precision, ci)
    return (f"n={n} < {MIN_SEEDS}: no interval; at the observed seed SD {sd:.3g}, +-{precision:g} "
            f"({round(100 * ci)}%) needs {need if need else '> 10000'} seeds")


def _summary_row(values: np.ndarray, *, ci: float, precision: float = PRECISION_MEAN) -> dict:
    values = values[np.isfinite(values)]
    n = int(values.size)
    sd = float(values.std(ddof=1)) if n > 1 else float("nan")
    lo, hi = st.t_interval(values, ci)
    return {"n": n, "mean": float(values.mean()) if n else float("nan"), "std": sd,
            "ci_lo": lo, "ci_hi": hi, "note": ci_note(n, sd, precision, ci)}


SUMMARY_COLUMNS = ["n", "mean", "std", "ci_lo", "ci_hi", "note"]


def variant_summary(frame: pd.DataFrame, metric: str = DEFAULT_METRIC, *, labels: pd.Series | None = None,
                    ci: float = 0.95, precision: float = PRECISION_MEAN, **_: object) -> pd.DataFrame:
    """Per variant: n (seeds), mean, SD, Student-t interval of the mean, a note when n < MIN_SEEDS."""
    col = _col(frame, metric)
    labels = variant_labels(frame) if labels is None else labels
    rows = []
    for variant, group in frame.groupby(labels, sort=False):
        row = {"variant": variant, "metric": metric}
        row.update(_summary_row(group[col].to_numpy(dtype=float), ci=ci, precision=precision))
        rows.append(row)
    return pd.DataFrame(rows, columns=["variant", "metric"] + SUMMARY_COLUMNS)


REL_COLUMNS = ["metric", "reference", "other", "method", "n_reference", "n_other", "n_pairs", "mean_reference",
               "mean_other", "rel_diff", "se", "df", "ci_lo", "ci_hi", "p", "note"]


def compare(a: pd.Series, b: pd.Series, *, ci: float = 0.95, precision: float = PRECISION_REL) -> dict:
    """(mean(a) - mean(b)) / mean(b) with its interval. `a`, `b`: values indexed by pair key.

    Paired (Fieller on the pairs, t with pairs - 1 df, p of the paired t-test) when at least
    MIN_SEEDS keys are shared; unpaired (Fieller with Welch df, Welch t-test) when both sides have
    MIN_SEEDS values but too few shared keys; below that no interval, and a note with the seeds a
    half-width of `precision` would need at the observed variance.
    """
    a, b = a[np.isfinite(a.to_numpy(dtype=float))], b[np.isfinite(b.to_numpy(dtype=float))]
    out: dict[str, Any] = {"method": "none", "n_reference": int(a.size), "n_other": int(b.size), "n_pairs": 0,
           "mean_reference": float(a.mean()) if a.size else float("nan"),
           "mean_other": float(b.mean()) if b.size else float("nan"), "rel_diff": float("nan"),
           "se": float("nan"), "df": float("nan"), "ci_lo": float("nan"), "ci_hi": float("nan"),
           "p": float("nan"), "note": ""}
    if a.size == 0 or b.size == 0 or out["mean_other"] == 0:
        out["note"] = "no values on one side"
        return out
    out["rel_diff"] = out["mean_reference"] / out["mean_other"] - 1
    unique = a.index.is_unique and b.index.is_unique
    common = a.index.intersection(b.index) if unique else a.index[:0]
    out["n_pairs"] = int(len(common))
    if len(common) >= MIN_SEEDS:
        x, y = a.loc[common].to_numpy(dtype=float), b.loc[common].to_numpy(dtype=float)
        res = st.ratio_paired(x, y, ci)
        p = stats.ttest_rel(x, y).pvalue if np.ptp(x - y) > 0 else float("nan")
        left = a.size + b.size - 2 * len(common)
        note = (f"paired on {len(common)} seed pairs (trials sharing seeds share initialisation and data "
                "order, so the pair difference removes that shared variance)")
        if left:
            note += f"; {left} trial(s) without a partner left out"
        if len(common) != a.size or len(common) != b.size:
            out["mean_reference"], out["mean_other"] = float(x.mean()), float(y.mean())
            out["rel_diff"] = float(x.mean() / y.mean() - 1)
        out.update(method="paired Fieller", se=res["se"], df=res["df"], ci_lo=res["lo"], ci_hi=res["hi"],
                   p=float(p), note=note)
        return out
    why = ("seeds repeat within a strategy" if not unique else
           f"only {len(common)} seed pair(s) shared (< {MIN_SEEDS})")
    if a.size >= MIN_SEEDS and b.size >= MIN_SEEDS:
        x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
        res = st.ratio_unpaired(x, y, ci)
        p = stats.ttest_ind(x, y, equal_var=False).pvalue if x.std() + y.std() > 0 else float("nan")
        out.update(method="unpaired Fieller (Welch)", se=res["se"], df=res["df"], ci_lo=res["lo"], ci_hi=res["hi"],
                   p=float(p), note=f"unpaired: {why}")
        return out
    out["note"] = _rel_needed(a, b, common, precision, ci) + f" ({why})"
    return out


def _rel_needed(a: pd.Series, b: pd.Series, common: pd.Index, precision: float, ci: float) -> str:
    """'no interval' + the seeds (per strategy) a half-width `precision` of the ratio would need."""
    r, mb = a.mean() / b.mean(), b.mean()
    if len(common) >= 2:
        sd = float(np.std(a.loc[common].to_numpy(float) - r * b.loc[common].to_numpy(float), ddof=1) / abs(mb))
        kind = "paired"
    elif a.size >= 2 and b.size >= 2:
        sd = float(np.sqrt(a.var(ddof=1) + r * r * b.var(ddof=1)) / abs(mb))
        kind = "unpaired"
    else:
        return f"n={a.size} vs {b.size} < {MIN_SEEDS}: no interval (seed variance unknown; run >= {MIN_SEEDS} seeds)"
    need = st.seeds_needed(sd, precision, ci)
    return (f"n={a.size} vs {b.size} < {MIN_SEEDS}: no interval; at the observed {kind} seed SD, "
            f"+-{100 * precision:g} points ({round(100 * ci)}%) needs {need if need else '> 10000'} seeds per strategy")


def relative_differences(frame: pd.DataFrame, metrics: Sequence[str] = (DEFAULT_METRIC, CONTROL_METRIC), *,
                         reference: str = REFERENCE_STRATEGY, ci: float = 0.95, precision: float = PRECISION_REL,
                         keys: pd.Series | None = None, **_: object) -> pd.DataFrame:
    """(mean_ref - mean_X) / mean_X for the reference strategy vs each uniform strategy present (`compare`)."""
    others = _strategies(frame, reference)
    if not others:
        return pd.DataFrame(columns=REL_COLUMNS)
    keys = pair_keys(frame) if keys is None else keys
    strategy = frame[STRATEGY_COL].astype(str)
    rows = []
    for metric in metrics:
        if (metric if metric.startswith("metrics.") else f"metrics.{metric}") not in frame.columns:
            continue
        values = pd.Series(frame[_col(frame, metric)].to_numpy(dtype=float), index=keys.to_numpy())
        a = values[(strategy == reference).to_numpy()]
        for other in others:
            row = {"metric": metric, "reference": reference, "other": other}
            row.update(compare(a, values[(strategy == other).to_numpy()], ci=ci, precision=precision))
            rows.append(row)
    return pd.DataFrame(rows, columns=REL_COLUMNS)


def corruption_breakdown(frame: pd.DataFrame, cells: pd.DataFrame, *, reference: str = REFERENCE_STRATEGY,
                         ci: float = 0.95, adjust: str = ADJUST, keys: pd.Series | None = None) -> pd.DataFrame:
    """Biological-vs-X relative difference per (corruption, severity).

    `cells` is long: ``run_id, corruption, severity, accuracy`` (from each trial's eval_table.csv;
    severity 0 = the mean over severities when only per-corruption metrics exist). p-values are
    adjusted over the whole table (`adjust`), since 15 x 5 cells are read together.
    """
    cols = ["other", "corruption", "severity"] + REL_COLUMNS[3:] + ["p_adj"]
    others = _strategies(frame, reference)
    if not others or cells.empty:
        return pd.DataFrame(columns=cols)
    keys = pair_keys(frame) if keys is None else keys
    info = pd.DataFrame({"run_id": frame["run_id"].to_numpy(), "key": keys.to_numpy(),
                         "strategy": frame[STRATEGY_COL].astype(str).to_numpy()})
    data = cells.merge(info, on="run_id")
    rows = []
    for (corruption, severity), cell in data.groupby(["corruption", "severity"], sort=False):
        values = pd.Series(cell["accuracy"].to_numpy(dtype=float), index=cell["key"].to_numpy())
        a = values[(cell["strategy"] == reference).to_numpy()]
        for other in others:
            row = {"other": other, "corruption": corruption, "severity": int(severity)}
            row.update(compare(a, values[(cell["strategy"] == other).to_numpy()], ci=ci))
            rows.append(row)
    out = pd.DataFrame(rows, columns=cols[:-1])
    out["p_adj"] = st.adjust_pvalues(out["p"].to_numpy(dtype=float), adjust)
    return out


def category_breakdown(frame: pd.DataFrame, *, labels: pd.Series | None = None, ci: float = 0.95,
                       **_: object) -> pd.DataFrame:
    """Per variant and corruption category: mean ``corruption_acc/<category>`` with its t interval."""
    labels = variant_labels(frame) if labels is None else labels
    rows = []
    for category in CATEGORIES:
        col = f"metrics.corruption_acc/{category}"
        if col not in frame.columns:
            continue
        for variant, group in frame.groupby(labels, sort=False):
            row = {"variant": variant, "category": category}
            row.update(_summary_row(group[col].to_numpy(dtype=float), ci=ci))
            rows.append(row)
    return pd.DataFrame(rows, columns=["variant", "category"] + SUMMARY_COLUMNS)
