"""Robustness versus similarity to V1 over a sweep: the statistics (numpy, scipy, pandas only).

Input is a trial table from `v1sweep.query.runs` (``params.*`` and ``metrics.*`` columns, one row
per finished trial). Everything here is a plain function of that table:

- per-variant means with percentile-bootstrap CIs over seeds (a variant = the params that vary,
  seeds excluded);
- the relative robustness difference (acc_A - acc_B) / acc_B of biological vs each uniform
  strategy with a two-sample bootstrap CI (the study's 8.72 % statistic: Barbulescu, Marques &
  Oliveira 2023);
- Pearson and Spearman correlations of corruption accuracy with each similarity measure
  (``rf_similarity``, ``rf_similarity/<property>``, ``rf_wasserstein/<property>``), bootstrap CIs
  over trials, and the partial correlation controlling for clean accuracy;
- the per-category breakdown (``corruption_acc/<category>``) and robustness-vs-alpha curves of
  interpolation sweeps (``rf.alpha``, ``rf.alpha_<property>``).

Fewer than `MIN_SEEDS` observations give a CI flagged as wide (n = 2) or undefined (n < 2); the
flags travel in the tables' ``note`` columns and in `RobustnessResult.warnings`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from v1sweep.analysis import AnalysisError
from v1sweep.corruptions.catalog import CATEGORIES

DEFAULT_METRIC = "corruption_acc"
CONTROL_METRIC = "clean_acc"
MIN_SEEDS = 3
N_BOOT = 2000
REFERENCE_STRATEGY = "biological"
UNIFORM_STRATEGIES = ("uniform", "unif1", "unif2", "unif3")
STRATEGY_COL = "params.rf.strategy"
ALPHA_KEYS = ("rf.alpha", "rf.alpha_sf", "rf.alpha_ori", "rf.alpha_nxny", "rf.alpha_coupling")
SIMILARITY_PREFIXES = ("rf_similarity", "rf_wasserstein")
# Params that never define a variant: seeds, names, paths, hardware.
NON_VARIANT_PARAMS = ("params.name", "params.data.path", "params.eval.path", "params.data.cache_dir",
                      "params.eval.cache_dir", "params.train.device", "params.rf.custom_path")


# ---------------------------------------------------------------------------------------------
# Bootstrap and correlation primitives
# ---------------------------------------------------------------------------------------------
def ci_note(n: int) -> str:
    """'' when `n` >= MIN_SEEDS, else why the CI should not be trusted."""
    if n < 2:
        return f"n={n}: CI undefined"
    if n < MIN_SEEDS:
        return f"n={n} < {MIN_SEEDS}: CI wide"
    return ""


def _percentiles(boots: np.ndarray, ci: float) -> tuple[float, float]:
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(boots, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return float(lo), float(hi)


def bootstrap_ci(values: Sequence[float], stat: Callable[..., np.ndarray] = np.mean, *, n_boot: int = N_BOOT,
                 ci: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI of `stat` (called as ``stat(samples, axis=1)``); NaN for n < 2.

    Resamples are drawn as ``rng.integers(0, n, (n_boot, n))`` from ``default_rng(seed)``, the
    same stream as `n_boot` successive ``rng.integers(0, n, n)`` draws.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    return _percentiles(np.asarray(stat(x[idx], axis=1), dtype=float), ci)


def relative_difference(a: Sequence[float], b: Sequence[float], *, n_boot: int = N_BOOT, ci: float = 0.95,
                        seed: int = 0) -> tuple[float, float, float]:
    """(mean(a) - mean(b)) / mean(b) and its two-sample percentile-bootstrap CI (a, b resampled apart)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0 or b.mean() == 0:
        return float("nan"), float("nan"), float("nan")
    value = float((a.mean() - b.mean()) / b.mean())
    if a.size < 2 or b.size < 2:
        return value, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
    mb = b[rng.integers(0, b.size, size=(n_boot, b.size))].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = (ma - mb) / mb
    return (value, *_percentiles(boots, ci))


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of (B, n) arrays; NaN where a row is constant."""
    constant = (np.ptp(a, axis=-1) == 0) | (np.ptp(b, axis=-1) == 0)
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (a * b).sum(axis=-1) / np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    r = np.where(constant, np.nan, r)
    return np.clip(r, -1.0, 1.0)


def _rowwise_partial(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Partial r of x, y given z per row, by the closed form (equal to the residual formula).

    Rows where z explains x or y (almost) fully leave nothing to correlate: NaN, not round-off.
    """
    rxy, rxz, ryz = _rowwise_pearson(x, y), _rowwise_pearson(x, z), _rowwise_pearson(y, z)
    den = (1 - rxz ** 2) * (1 - ryz ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (rxy - rxz * ryz) / np.sqrt(den)
    r = np.where(den > 1e-10, r, np.nan)
    return np.clip(r, -1.0, 1.0)


def partial_corr(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> tuple[float, float]:
    """Pearson correlation of x and y after regressing each on z (with intercept), and its p-value.

    The p-value uses Student's t with n - 3 degrees of freedom (one controlled variable).
    """
    x, y, z = (np.asarray(v, dtype=float) for v in (x, y, z))
    n = x.size
    if n < 4:
        return float("nan"), float("nan")
    design = np.column_stack([np.ones(n), z])
    rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    r = float(_rowwise_pearson(rx[None], ry[None])[0])
    if not np.isfinite(r):
        return float("nan"), float("nan")
    dof = n - 3
    if abs(r) >= 1.0:
        return r, 0.0
    t = r * np.sqrt(dof / (1 - r * r))
    return r, float(2 * stats.t.sf(abs(t), dof))


def correlation_ci(x: Sequence[float], y: Sequence[float], kind: str = "pearson", *, z: Sequence[float] | None = None,
                   n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI of a correlation ('pearson' | 'spearman' | 'partial' with `z`), pairs resampled."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = x.size
    if n < 3 or (kind == "partial" and n < 4):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    if kind == "pearson":
        boots = _rowwise_pearson(x[idx], y[idx])
    elif kind == "spearman":
        boots = _rowwise_pearson(stats.rankdata(x[idx], axis=1), stats.rankdata(y[idx], axis=1))
    elif kind == "partial":
        if z is None:
            raise ValueError("kind 'partial' needs z")
        boots = _rowwise_partial(x[idx], y[idx], np.asarray(z, dtype=float)[idx])
    else:
        raise ValueError(f"unknown correlation kind {kind!r}; allowed: pearson, spearman, partial")
    return _percentiles(boots, ci)


# ---------------------------------------------------------------------------------------------
# Tables over a sweep
# ---------------------------------------------------------------------------------------------
def _col(frame: pd.DataFrame, metric: str) -> str:
    col = metric if metric.startswith(("metrics.", "params.")) else f"metrics.{metric}"
    if col not in frame.columns:
        have = sorted(c[len("metrics."):] for c in frame.columns if c.startswith("metrics."))
        raise AnalysisError(f"metric {metric!r} is not in the runs; metrics: {', '.join(have) or 'none'}")
    return col


def _hashable(value: object) -> object:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def variant_columns(frame: pd.DataFrame) -> list[str]:
    """The params that vary between trials and define a variant (seeds, names, paths excluded)."""
    out = []
    for col in frame.columns:
        if not col.startswith("params.") or col.endswith(".seed") or col in NON_VARIANT_PARAMS:
            continue
        if frame[col].map(_hashable).astype(str).nunique() > 1:
            out.append(col)
    if STRATEGY_COL in out:  # the strategy first: it names the study's variants
        out.remove(STRATEGY_COL)
        out.insert(0, STRATEGY_COL)
    return out


def variant_labels(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.Series:
    """One label per trial: the strategy alone ('biological'), or 'key=value, ...' over the varying params."""
    columns = variant_columns(frame) if columns is None else list(columns)
    if not columns:
        return pd.Series(["all"] * len(frame), index=frame.index, dtype=object)
    if columns == [STRATEGY_COL]:
        return frame[STRATEGY_COL].map(lambda v: str(_hashable(v)))

    def label(row: pd.Series) -> str:
        parts = []
        for col in columns:
            value = _hashable(row[col])
            key = col[len("params."):]
            parts.append(str(value) if col == STRATEGY_COL else f"{key}={value}")
        return ", ".join(parts)

    return frame.apply(label, axis=1).astype(object)


def _summary_row(values: np.ndarray, *, n_boot: int, ci: float, seed: int) -> dict:
    values = values[np.isfinite(values)]
    n = int(values.size)
    lo, hi = bootstrap_ci(values, n_boot=n_boot, ci=ci, seed=seed)
    return {"n": n, "mean": float(values.mean()) if n else float("nan"),
            "std": float(values.std(ddof=1)) if n > 1 else float("nan"),
            "ci_lo": lo, "ci_hi": hi, "note": ci_note(n)}


def variant_summary(frame: pd.DataFrame, metric: str = DEFAULT_METRIC, *, labels: pd.Series | None = None,
                    n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per variant: n (seeds), mean, std, bootstrap CI of the mean, and a note when n is too small."""
    col = _col(frame, metric)
    labels = variant_labels(frame) if labels is None else labels
    rows = []
    for variant, group in frame.groupby(labels, sort=False):
        row = {"variant": variant, "metric": metric}
        row.update(_summary_row(group[col].to_numpy(dtype=float), n_boot=n_boot, ci=ci, seed=seed))
        rows.append(row)
    return pd.DataFrame(rows, columns=["variant", "metric", "n", "mean", "std", "ci_lo", "ci_hi", "note"])


def relative_differences(frame: pd.DataFrame, metrics: Sequence[str] = (DEFAULT_METRIC, CONTROL_METRIC), *,
                         reference: str = REFERENCE_STRATEGY, n_boot: int = N_BOOT, ci: float = 0.95,
                         seed: int = 0) -> pd.DataFrame:
    """(mean_ref - mean_other) / mean_other for the reference strategy vs each uniform strategy present."""
    cols = ["metric", "reference", "other", "n_reference", "n_other", "mean_reference", "mean_other",
            "rel_diff", "ci_lo", "ci_hi", "note"]
    if STRATEGY_COL not in frame.columns:
        return pd.DataFrame(columns=cols)
    strategy = frame[STRATEGY_COL].astype(str)
    others = [s for s in UNIFORM_STRATEGIES if (strategy == s).any()]
    if not (strategy == reference).any() or not others:
        return pd.DataFrame(columns=cols)
    rows = []
    for metric in metrics:
        if (metric if metric.startswith("metrics.") else f"metrics.{metric}") not in frame.columns:
            continue
        col = _col(frame, metric)
        a = frame.loc[strategy == reference, col].to_numpy(dtype=float)
        a = a[np.isfinite(a)]
        for other in others:
            b = frame.loc[strategy == other, col].to_numpy(dtype=float)
            b = b[np.isfinite(b)]
            value, lo, hi = relative_difference(a, b, n_boot=n_boot, ci=ci, seed=seed)
            note = "; ".join(filter(None, (ci_note(a.size) and f"{reference} {ci_note(a.size)}",
                                           ci_note(b.size) and f"{other} {ci_note(b.size)}")))
            rows.append({"metric": metric, "reference": reference, "other": other, "n_reference": a.size,
                         "n_other": b.size, "mean_reference": float(a.mean()) if a.size else float("nan"),
                         "mean_other": float(b.mean()) if b.size else float("nan"), "rel_diff": value,
                         "ci_lo": lo, "ci_hi": hi, "note": note})
    return pd.DataFrame(rows, columns=cols)


def similarity_measures(frame: pd.DataFrame) -> list[str]:
    """Similarity metric names present: rf_similarity first, then per-property scores and distances."""
    names = [c[len("metrics."):] for c in frame.columns if c.startswith("metrics.")]
    names = [n for n in names if n.split("/")[0] in SIMILARITY_PREFIXES]
    return sorted(names, key=lambda n: (n != "rf_similarity", n.split("/")[0] != "rf_similarity", n))


def correlations(frame: pd.DataFrame, metric: str = DEFAULT_METRIC, measures: Sequence[str] | None = None, *,
                 control: str | None = CONTROL_METRIC, n_boot: int = N_BOOT, ci: float = 0.95,
                 seed: int = 0) -> pd.DataFrame:
    """Per similarity measure: Pearson r, Spearman rho and partial r (controlling `control`) with
    p-values and bootstrap CIs over trials. Distances (rf_wasserstein) correlate with the opposite sign."""
    ycol = _col(frame, metric)
    zcol = f"metrics.{control}" if control and f"metrics.{control}" in frame.columns else None
    measures = similarity_measures(frame) if measures is None else list(measures)
    rows = []
    for k, measure in enumerate(measures):
        xcol = _col(frame, measure)
        cols = [xcol, ycol] + ([zcol] if zcol else [])
        data = frame[cols].apply(pd.to_numeric, errors="coerce").dropna()
        x, y = data[xcol].to_numpy(), data[ycol].to_numpy()
        n = int(x.size)
        row: dict = {"measure": measure, "metric": metric, "n": n}
        nan2 = (float("nan"), float("nan"))
        constant = n >= 2 and (np.ptp(x) == 0 or np.ptp(y) == 0)
        ok = n >= 3 and not constant
        pr = stats.pearsonr(x, y) if ok else None
        sr = stats.spearmanr(x, y) if ok else None
        s = seed + k
        row["pearson_r"], row["pearson_p"] = (float(pr.statistic), float(pr.pvalue)) if ok else nan2
        boot = {"n_boot": n_boot, "ci": ci, "seed": s}
        row["pearson_lo"], row["pearson_hi"] = correlation_ci(x, y, "pearson", **boot) if ok else nan2
        row["spearman_rho"], row["spearman_p"] = (float(sr.statistic), float(sr.pvalue)) if ok else nan2
        row["spearman_lo"], row["spearman_hi"] = correlation_ci(x, y, "spearman", **boot) if ok else nan2
        if zcol and ok and n >= 4:
            z = data[zcol].to_numpy()
            row["partial_r"], row["partial_p"] = partial_corr(x, y, z)
            row["partial_lo"], row["partial_hi"] = correlation_ci(x, y, "partial", z=z, **boot)
        else:
            row["partial_r"], row["partial_p"], row["partial_lo"], row["partial_hi"] = nan2 + nan2
        notes = []
        if constant:
            notes.append("constant values: undefined")
        elif n < 3:
            notes.append(f"n={n} < 3: undefined")
        elif n < 10:
            notes.append(f"n={n}: CI wide")
        if measure.startswith("rf_wasserstein"):
            notes.append("distance: negative r = more V1-like is more robust")
        row["note"] = "; ".join(notes)
        rows.append(row)
    cols = ["measure", "metric", "n", "pearson_r", "pearson_p", "pearson_lo", "pearson_hi", "spearman_rho",
            "spearman_p", "spearman_lo", "spearman_hi", "partial_r", "partial_p", "partial_lo", "partial_hi", "note"]
    return pd.DataFrame(rows, columns=cols)


def category_breakdown(frame: pd.DataFrame, *, labels: pd.Series | None = None, n_boot: int = N_BOOT,
                       ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per variant and corruption category: mean ``corruption_acc/<category>`` with bootstrap CI."""
    labels = variant_labels(frame) if labels is None else labels
    rows = []
    for category in CATEGORIES:
        col = f"metrics.corruption_acc/{category}"
        if col not in frame.columns:
            continue
        for variant, group in frame.groupby(labels, sort=False):
            row = {"variant": variant, "category": category}
            row.update(_summary_row(group[col].to_numpy(dtype=float), n_boot=n_boot, ci=ci, seed=seed))
            rows.append(row)
    return pd.DataFrame(rows, columns=["variant", "category", "n", "mean", "std", "ci_lo", "ci_hi", "note"])


def alpha_params(frame: pd.DataFrame) -> list[str]:
    """The interpolation alphas swept (>= 2 distinct non-null values), as dotted keys."""
    out = []
    for key in ALPHA_KEYS:
        col = f"params.{key}"
        if col in frame.columns and pd.to_numeric(frame[col], errors="coerce").dropna().nunique() >= 2:
            out.append(key)
    return out


def alpha_curves(frame: pd.DataFrame, metric: str = DEFAULT_METRIC, *, n_boot: int = N_BOOT, ci: float = 0.95,
                 seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Robustness vs alpha: per swept alpha and value, mean with CI; plus a trend table per alpha
    (Pearson and Spearman of alpha vs `metric` over trials, bootstrap CIs)."""
    ycol = _col(frame, metric)
    curve_rows, trend_rows = [], []
    for key in alpha_params(frame):
        alpha = pd.to_numeric(frame[f"params.{key}"], errors="coerce")
        data = pd.DataFrame({"alpha": alpha, "y": pd.to_numeric(frame[ycol], errors="coerce")}).dropna()
        for value, group in data.groupby("alpha", sort=True):
            row = {"param": key, "alpha": float(value), "metric": metric}
            row.update(_summary_row(group["y"].to_numpy(dtype=float), n_boot=n_boot, ci=ci, seed=seed))
            curve_rows.append(row)
        x, y = data["alpha"].to_numpy(dtype=float), data["y"].to_numpy(dtype=float)
        ok = x.size >= 3 and np.ptp(y) > 0
        trend = {"param": key, "metric": metric, "n": int(x.size)}
        trend["pearson_r"] = float(stats.pearsonr(x, y).statistic) if ok else float("nan")
        trend["pearson_lo"], trend["pearson_hi"] = (correlation_ci(x, y, "pearson", n_boot=n_boot, ci=ci, seed=seed)
                                                    if ok else (float("nan"), float("nan")))
        trend["spearman_rho"] = float(stats.spearmanr(x, y).statistic) if ok else float("nan")
        trend["slope"] = float(np.polyfit(x, y, 1)[0]) if ok else float("nan")
        trend_rows.append(trend)
    curves = pd.DataFrame(curve_rows, columns=["param", "alpha", "metric", "n", "mean", "std", "ci_lo", "ci_hi",
                                               "note"])
    trends = pd.DataFrame(trend_rows, columns=["param", "metric", "n", "pearson_r", "pearson_lo", "pearson_hi",
                                               "spearman_rho", "slope"])
    return curves, trends


# ---------------------------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------------------------
@dataclass
class RobustnessResult:
    """All tables of the sweep-level analysis, plus the warnings a reader must see."""
    metric: str
    n_trials: int
    variant_columns: list[str]
    labels: pd.Series
    variants: pd.DataFrame
    clean: pd.DataFrame
    relative: pd.DataFrame
    correlations: pd.DataFrame
    categories: pd.DataFrame
    alpha: pd.DataFrame
    alpha_trend: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    ci: float = 0.95
    n_boot: int = N_BOOT


def analyze_frame(frame: pd.DataFrame, metric: str = DEFAULT_METRIC, *, control: str | None = CONTROL_METRIC,
                  n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0) -> RobustnessResult:
    """Run every statistic of this module on a `query.runs` table of finished trials."""
    if frame is None or frame.empty:
        raise AnalysisError("no finished trials to analyse")
    ycol = _col(frame, metric)
    frame = frame[frame[ycol].notna()]
    if frame.empty:
        raise AnalysisError(f"no finished trial logged {metric!r}")
    columns = variant_columns(frame)
    labels = variant_labels(frame, columns)
    kw = {"n_boot": n_boot, "ci": ci, "seed": seed}
    variants = variant_summary(frame, metric, labels=labels, **kw)
    has_clean = bool(control) and f"metrics.{control}" in frame.columns
    clean = (variant_summary(frame, control, labels=labels, **kw) if has_clean
             else variant_summary(frame.iloc[:0], metric))
    rel_metrics = [metric] + ([control] if has_clean and control != metric else [])
    relative = relative_differences(frame, rel_metrics, **kw)
    corr = correlations(frame, metric, control=control if has_clean else None, **kw)
    cats = category_breakdown(frame, labels=labels, **kw)
    curves, trends = alpha_curves(frame, metric, **kw)

    warnings = []
    few = variants[variants["n"] < MIN_SEEDS]
    if len(few) > 5:  # a search over continuous params: one line, not one per variant
        warnings.append(f"{len(few)} of {len(variants)} variants have fewer than {MIN_SEEDS} seeds: their CIs are "
                        f"wide (n = 2) or undefined (n = 1); per-variant means are not replicated")
    else:
        for row in few.itertuples():
            warnings.append(f"variant {row.variant!r} has {row.n} seed(s) (< {MIN_SEEDS}): its CI is "
                            f"{'undefined' if row.n < 2 else 'wide'}; run more seeds")
    for row in relative[relative["metric"] == metric].itertuples():
        if row.note:
            warnings.append(f"{row.metric} {row.reference} vs {row.other}: {row.note}")
    if len(frame) < 3:
        warnings.append(f"only {len(frame)} trial(s): correlations are undefined")
    if relative.empty and STRATEGY_COL in frame.columns:
        warnings.append("no biological-vs-uniform comparison: the sweep does not hold both "
                        f"'{REFERENCE_STRATEGY}' and one of {', '.join(UNIFORM_STRATEGIES)} trials")
    others = [c for c in columns if c != STRATEGY_COL and c[len("params."):] not in ALPHA_KEYS]
    if not relative.empty and others:
        warnings.append("the relative difference pools over other varying params ("
                        + ", ".join(c[len("params."):] for c in others) + ")")
    return RobustnessResult(metric=metric, n_trials=int(len(frame)), variant_columns=columns, labels=labels,
                            variants=variants, clean=clean, relative=relative, correlations=corr,
                            categories=cats, alpha=curves, alpha_trend=trends, warnings=warnings,
                            ci=ci, n_boot=n_boot)
