"""Robustness as a function of similarity to V1: the association with each logged similarity
measure (between variants and within variants, partial on clean accuracy), the dose-response on
each swept interpolation alpha (seed-clustered slopes), and the adjustment of all these p-values
as one family.

Separate from the variant comparisons (`robustness_compare`) because it relates robustness to a
continuous measure rather than comparing groups; it reuses their per-group summary row.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from v1sweep.analysis import stats as st
from v1sweep.analysis.robustness_compare import SUMMARY_COLUMNS, _summary_row
from v1sweep.analysis.robustness_tables import (
    ADJUST, ALPHA_KEYS, CONTROL_METRIC, DEFAULT_METRIC, MIN_SEEDS, SIMILARITY_PREFIXES, _col, pair_keys,
    variant_labels)


def similarity_measures(frame: pd.DataFrame) -> list[str]:
    """Similarity metric names present: the unit-count-normalised score first, then the raw score,
    per-property scores and distances."""
    names = [c[len("metrics."):] for c in frame.columns if c.startswith("metrics.")]
    names = [n for n in names if n.split("/")[0] in SIMILARITY_PREFIXES]
    # a per-property raw score duplicates its normalised one (a constant factor per unit count):
    # keep the normalised one only, so the family of tests is not inflated by copies
    present = set(names)
    names = [n for n in names if not ("/" in n and n.replace("rf_similarity", "rf_normsim", 1) in present
                                      and n.startswith("rf_similarity"))]
    order = {p: i for i, p in enumerate(SIMILARITY_PREFIXES)}
    return sorted(names, key=lambda n: (order[n.split("/")[0]], "/" in n, n))


CORR_COLUMNS = ["measure", "metric", "n_variants", "between_r", "between_p", "between_lo", "between_hi", "n_trials",
                "within_df", "within_r", "within_p", "within_lo", "within_hi", "within_partial_r",
                "within_partial_p", "within_partial_lo", "within_partial_hi", "note"]


def _within(x: np.ndarray, y: np.ndarray, groups: np.ndarray, z: np.ndarray | None, ci: float) -> dict:
    """Seed-level association: x and y centred per variant (variants with >= 2 trials), Pearson r
    with df = n - groups - 1 (the variant means are estimated); and partial r given centred z."""
    counts = pd.Series(groups).value_counts()
    keep = np.isin(groups, counts.index[counts >= 2])
    g = int((counts >= 2).sum())
    out = {"within_df": float("nan"), "within_r": float("nan"), "within_p": float("nan"),
           "within_lo": float("nan"), "within_hi": float("nan"), "within_partial_r": float("nan"),
           "within_partial_p": float("nan"), "within_partial_lo": float("nan"), "within_partial_hi": float("nan")}
    if g == 0:
        return out
    xc, yc = st.centre_by(x[keep], groups[keep]), st.centre_by(y[keep], groups[keep])
    n = int(keep.sum())
    r, p, lo, hi = st.pearson_test(xc, yc, ci, k=g - 1)
    out.update(within_df=float(n - g - 1), within_r=r, within_p=p, within_lo=lo, within_hi=hi)
    if z is not None:
        zc = st.centre_by(z[keep], groups[keep])
        if np.ptp(zc) > 0 and n - g - 2 >= 1:
            pr, pp, plo, phi = st.pearson_test(st.residualise(xc, zc), st.residualise(yc, zc), ci, k=g)
            out.update(within_partial_r=pr, within_partial_p=pp, within_partial_lo=plo, within_partial_hi=phi)
    return out


def correlations(frame: pd.DataFrame, metric: str = DEFAULT_METRIC, measures: Sequence[str] | None = None, *,
                 control: str | None = CONTROL_METRIC, labels: pd.Series | None = None, ci: float = 0.95,
                 **_: object) -> pd.DataFrame:
    """Per similarity measure: the between-variant association (Pearson r of the variant means,
    n = variants) and the within-variant one (seed-level, centred per variant), with t-test p and
    Fisher-z interval; within-variant partial r given `control`. Distances correlate negatively."""
    ycol = _col(frame, metric)
    zcol = f"metrics.{control}" if control and f"metrics.{control}" in frame.columns else None
    labels = variant_labels(frame) if labels is None else labels
    measures = similarity_measures(frame) if measures is None else list(measures)
    rows = []
    for measure in measures:
        xcol = _col(frame, measure)
        cols = [xcol, ycol] + ([zcol] if zcol else [])
        data = frame[cols].apply(pd.to_numeric, errors="coerce").assign(_g=labels.astype(str)).dropna()
        x, y, groups = data[xcol].to_numpy(), data[ycol].to_numpy(), data["_g"].to_numpy()
        means = data.groupby("_g", sort=False)[[xcol, ycol]].mean()
        row: dict = {"measure": measure, "metric": metric, "n_variants": len(means), "n_trials": int(len(data))}
        r, p, lo, hi = st.pearson_test(means[xcol].to_numpy(), means[ycol].to_numpy(), ci)
        row.update(between_r=r, between_p=p, between_lo=lo, between_hi=hi)
        row.update(_within(x, y, groups, data[zcol].to_numpy() if zcol else None, ci))
        notes = []
        if len(means) < 3:
            notes.append(f"between: {len(means)} variant(s), undefined")
        elif len(means) < 4:
            notes.append("between: 3 variants, 1 df, no interval")
        if not np.isfinite(row["within_r"]):
            notes.append("within: no variant with >= 2 trials varying in both" if len(data) else "no values")
        if measure.startswith("rf_wasserstein"):
            notes.append("distance: negative r = more V1-like is more robust")
        row["note"] = "; ".join(notes)
        rows.append(row)
    return pd.DataFrame(rows, columns=CORR_COLUMNS)


def alpha_params(frame: pd.DataFrame) -> list[str]:
    """The interpolation alphas swept (>= 2 distinct non-null values), as dotted keys."""
    out = []
    for key in ALPHA_KEYS:
        col = f"params.{key}"
        if col in frame.columns and pd.to_numeric(frame[col], errors="coerce").dropna().nunique() >= 2:
            out.append(key)
    return out


TREND_COLUMNS = ["param", "metric", "n", "n_seeds", "slope", "slope_lo", "slope_hi", "slope_p", "pooled_slope",
                 "spearman_rho", "note"]


def _seed_slopes(alpha: np.ndarray, y: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """OLS slope of y on alpha within each seed cluster that has >= 2 distinct alphas."""
    slopes = []
    for s in pd.unique(seeds):
        m = seeds == s
        if np.unique(alpha[m]).size >= 2:
            slopes.append(np.polyfit(alpha[m], y[m], 1)[0])
    return np.asarray(slopes, dtype=float)


def alpha_curves(frame: pd.DataFrame, metric: str = DEFAULT_METRIC, *, ci: float = 0.95,
                 **_: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Robustness vs alpha: per swept alpha and value the mean with its t interval over seeds; and
    the dose-response per alpha: the OLS slope of `metric` on alpha fitted within each seed (a seed
    is a cluster: its trials share initialisation and data order), mean slope with a t interval
    over seeds (df = seeds - 1) and its p; no interval below MIN_SEEDS seeds."""
    ycol = _col(frame, metric)
    skeys = pair_keys(frame, [])
    curve_rows, trend_rows = [], []
    for key in alpha_params(frame):
        alpha = pd.to_numeric(frame[f"params.{key}"], errors="coerce")
        data = pd.DataFrame({"alpha": alpha, "y": pd.to_numeric(frame[ycol], errors="coerce"),
                             "seed": skeys}).dropna()
        for value, group in data.groupby("alpha", sort=True):
            row = {"param": key, "alpha": float(value), "metric": metric}
            row.update(_summary_row(group["y"].to_numpy(dtype=float), ci=ci))
            curve_rows.append(row)
        x, y = data["alpha"].to_numpy(dtype=float), data["y"].to_numpy(dtype=float)
        slopes = _seed_slopes(x, y, data["seed"].to_numpy())
        trend: dict[str, Any] = {"param": key, "metric": metric, "n": int(x.size), "n_seeds": int(slopes.size)}
        trend["slope"] = float(slopes.mean()) if slopes.size else float("nan")
        trend["slope_lo"], trend["slope_hi"] = st.t_interval(slopes, ci)
        trend["slope_p"] = (float(stats.ttest_1samp(slopes, 0.0).pvalue)
                            if slopes.size >= MIN_SEEDS and np.ptp(slopes) > 0 else float("nan"))
        ok = x.size >= 3 and np.ptp(y) > 0
        trend["pooled_slope"] = float(np.polyfit(x, y, 1)[0]) if ok else float("nan")
        trend["spearman_rho"] = float(stats.spearmanr(x, y).statistic) if ok else float("nan")
        trend["note"] = ("" if slopes.size >= MIN_SEEDS else
                         f"{slopes.size} seed(s) with >= 2 alphas (< {MIN_SEEDS}): no interval")
        others = [k for k in alpha_params(frame) if k != key]
        if others:
            trend["note"] = "; ".join(filter(None, [trend["note"], "marginal over " + ", ".join(others)]))
        trend_rows.append(trend)
    curves = pd.DataFrame(curve_rows, columns=["param", "alpha", "metric"] + SUMMARY_COLUMNS)
    return curves, pd.DataFrame(trend_rows, columns=TREND_COLUMNS)


def adjust_family(corr: pd.DataFrame, trends: pd.DataFrame, method: str = ADJUST) -> None:
    """Adjust every association p-value of the report as one family (in place: ``*_p_adj`` columns)."""
    parts = [(corr, c) for c in ("between_p", "within_p", "within_partial_p")] + [(trends, "slope_p")]
    pvals = np.concatenate([t[c].to_numpy(dtype=float) for t, c in parts]) if parts else np.array([])
    adj = st.adjust_pvalues(pvals, method)
    k = 0
    for table, col in parts:
        table[f"{col}_adj"] = adj[k:k + len(table)]
        k += len(table)
