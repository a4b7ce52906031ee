"""Robustness versus similarity to V1 over a sweep: the statistics (numpy, scipy, pandas only).

Input is a trial table from `v1sweep.results.query.runs` (``params.*`` and ``metrics.*`` columns, one row
per finished trial). Everything here is a plain function of that table; the methods are defined
in docs/statistics.md and implemented in `v1sweep.analysis.stats`:

- per-variant means with Student-t intervals over seeds (a variant = the params that vary, seeds
  excluded); no interval below `MIN_SEEDS` seeds, with the seeds a chosen precision would need;
- the relative robustness difference (mean_bio - mean_X) / mean_X of biological vs each uniform
  strategy (the study's 8.72 % statistic: Barbulescu, Marques & Oliveira 2023) with a Fieller
  interval, **seed-paired** when the two strategies' trials share their seeds (same
  initialisation, data order and base random numbers), unpaired (Welch) otherwise;
- per (corruption, severity) the same comparison (`corruption_breakdown`), p-values adjusted;
- robustness vs each similarity measure at two levels that are not confounded with each other:
  between variants (on variant means, n = number of variants) and within variants (seed-level
  deviations from the variant mean, df = n - variants - 1), plus the within-variant partial
  correlation controlling for clean accuracy; the whole family of tests is Holm- (default) or
  Benjamini-Hochberg-adjusted;
- the per-category breakdown and, for interpolation sweeps, the dose-response slope of robustness
  on each alpha with seed-clustered uncertainty (one slope per seed, t over seeds).

The bootstrap primitives below (`bootstrap_ci`, `relative_difference`, `correlation_ci`) are
kept as tools but no longer make the report's intervals: at 2-8 seeds they do not cover.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from v1sweep.analysis import AnalysisError
from v1sweep.analysis import stats as st
from v1sweep.config.adversarial import ADV_PREFIX
from v1sweep.corruptions.catalog import CATEGORIES
from v1sweep.rf.catalog import uniform_controls

DEFAULT_METRIC = "corruption_acc"
CONTROL_METRIC = "clean_acc"
MIN_SEEDS = st.MIN_N
N_BOOT = 2000
PRECISION_MEAN = 0.005  # the half-width of a mean's 95 % interval the "seeds needed" note aims at
PRECISION_REL = 0.01    # ... and of a relative difference's (1 percentage point)
ADJUST = "holm"
REFERENCE_STRATEGY = "biological"
UNIFORM_STRATEGIES = uniform_controls()
STRATEGY_COL = "params.rf.strategy"
# Plain-baseline trials (frontend.enabled false) have no V1 block, so their rf.strategy is a leftover
# default: `baseline_as_variant` names them `baseline`, compared with the reference like a uniform control.
BASELINE = "baseline"
ENABLED_COL = "params.frontend.enabled"
ALPHA_KEYS = ("rf.alpha", "rf.alpha_sf", "rf.alpha_ori", "rf.alpha_nxny", "rf.alpha_coupling")
SIMILARITY_PREFIXES = ("rf_normsim_eff", "rf_normsim", "rf_similarity_eff", "rf_similarity",
                       "rf_wasserstein")
# Params that never define a variant: seeds, names, paths, hardware.
NON_VARIANT_PARAMS = ("params.name", "params.data.path", "params.eval.path", "params.data.cache_dir",
                      "params.eval.cache_dir", "params.train.device", "params.rf.custom_path")


# ---------------------------------------------------------------------------------------------
# Bootstrap and correlation primitives
# ---------------------------------------------------------------------------------------------
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
    av = np.asarray(a, dtype=float)
    bv = np.asarray(b, dtype=float)
    av, bv = av[np.isfinite(av)], bv[np.isfinite(bv)]
    if av.size == 0 or bv.size == 0 or bv.mean() == 0:
        return float("nan"), float("nan"), float("nan")
    value = float((av.mean() - bv.mean()) / bv.mean())
    if av.size < 2 or bv.size < 2:
        return value, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    ma = av[rng.integers(0, av.size, size=(n_boot, av.size))].mean(axis=1)
    mb = bv[rng.integers(0, bv.size, size=(n_boot, bv.size))].mean(axis=1)
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
    xv, yv, zv = (np.asarray(v, dtype=float) for v in (x, y, z))
    n = xv.size
    if n < 4:
        return float("nan"), float("nan")
    design = np.column_stack([np.ones(n), zv])
    rx = xv - design @ np.linalg.lstsq(design, xv, rcond=None)[0]
    ry = yv - design @ np.linalg.lstsq(design, yv, rcond=None)[0]
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
    xv, yv = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = xv.size
    if n < 3 or (kind == "partial" and n < 4):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    if kind == "pearson":
        boots = _rowwise_pearson(xv[idx], yv[idx])
    elif kind == "spearman":
        boots = _rowwise_pearson(stats.rankdata(xv[idx], axis=1), stats.rankdata(yv[idx], axis=1))
    elif kind == "partial":
        if z is None:
            raise ValueError("kind 'partial' needs z")
        boots = _rowwise_partial(xv[idx], yv[idx], np.asarray(z, dtype=float)[idx])
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


def seed_columns(frame: pd.DataFrame) -> list[str]:
    """The seed params present (``params.*.seed``): trials agreeing on all of them share their seeds."""
    return sorted(c for c in frame.columns if c.startswith("params.") and c.endswith(".seed"))


def pair_keys(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.Series:
    """The key two trials of different strategies are paired on: every seed and every other varying
    param (so a pair differs in the strategy only)."""
    columns = variant_columns(frame) if columns is None else list(columns)
    keys = seed_columns(frame) + [c for c in columns if c != STRATEGY_COL]
    if not keys:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    return frame[keys].apply(lambda row: "|".join(str(_hashable(v)) for v in row), axis=1).astype(object)


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


def _strategies(frame: pd.DataFrame, reference: str) -> list[str]:
    if STRATEGY_COL not in frame.columns:
        return []
    strategy = frame[STRATEGY_COL].astype(str)
    if not (strategy == reference).any():
        return []
    return [s for s in UNIFORM_STRATEGIES + (BASELINE,) if (strategy == s).any()]


def baseline_as_variant(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with plain-baseline trials (``frontend.enabled`` false) as the strategy ``baseline``
    and the ``frontend.enabled`` column dropped (the strategy now says it). Why: a baseline run
    keeps the trial config's rf.strategy (e.g. biological); left as is, it would join that strategy's
    group, and ``frontend.enabled`` as a varying param would stop the baseline pairing by seed with
    the V1 variants (sweeps/study_cifar10_cpu_baseline.yaml)."""
    if ENABLED_COL not in frame.columns:
        return frame
    off = frame[ENABLED_COL].map(lambda v: v is False or str(v).strip().lower() == "false").to_numpy(dtype=bool)
    if not off.any():
        return frame
    out = frame.drop(columns=[ENABLED_COL])
    strategy = (out[STRATEGY_COL].astype(object) if STRATEGY_COL in out.columns
                else pd.Series([None] * len(out), index=out.index, dtype=object))
    strategy[off] = BASELINE
    out[STRATEGY_COL] = strategy
    return out


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


def robustness_axes(frame: pd.DataFrame, metric: str = DEFAULT_METRIC) -> list[str]:
    """The robustness metrics logged besides `metric`, each analysed like it (its own per-variant
    means, bio-vs-X differences and similarity associations): corruption accuracy and every white-box
    attack's ``adv_acc/<norm>/<eps>`` (docs/adversarial.md), ordered by norm, then eps."""
    names = [c[len("metrics."):] for c in frame.columns
             if c.startswith("metrics.") and frame[c].notna().any()]

    def order(name: str) -> tuple:
        norm, _, eps = name[len(ADV_PREFIX):].partition("/")
        try:
            return (1, norm, float(eps))
        except ValueError:
            return (1, norm, math.inf)

    adv = sorted((n for n in names if n.startswith(ADV_PREFIX)), key=order)
    axes = ([DEFAULT_METRIC] if DEFAULT_METRIC in names else []) + adv
    return [a for a in axes if a != metric]


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
    corruptions: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)
    ci: float = 0.95
    adjust: str = ADJUST
    n_family: int = 0


def analyze_frame(frame: pd.DataFrame, metric: str = DEFAULT_METRIC, *, control: str | None = CONTROL_METRIC,
                  ci: float = 0.95, adjust: str = ADJUST, cells: pd.DataFrame | None = None,
                  **_: object) -> RobustnessResult:
    """Run every statistic of this module on a `query.runs` table of finished trials.

    Trials without `metric` (e.g. corruption evaluation skipped) are left out with a warning.
    `cells` (run_id, corruption, severity, accuracy) adds the per-corruption breakdown.
    """
    if frame is None or frame.empty:
        raise AnalysisError("no finished trials to analyse")
    frame = baseline_as_variant(frame)
    ycol = _col(frame, metric)
    missing = frame[ycol].isna()
    frame = frame[~missing].reset_index(drop=True)
    if frame.empty:
        raise AnalysisError(f"no finished trial logged {metric!r}")
    columns = variant_columns(frame)
    labels = variant_labels(frame, columns)
    keys = pair_keys(frame, columns)
    variants = variant_summary(frame, metric, labels=labels, ci=ci)
    has_clean = bool(control) and f"metrics.{control}" in frame.columns
    control_metric = control or ""  # read only when has_clean, i.e. when control is set
    clean = (variant_summary(frame, control_metric, labels=labels, ci=ci) if has_clean
             else variant_summary(frame.iloc[:0], metric))
    rel_metrics = [metric] + ([control_metric] if has_clean and control != metric else [])
    relative = relative_differences(frame, rel_metrics, ci=ci, keys=keys)
    corr = correlations(frame, metric, control=control if has_clean else None, labels=labels, ci=ci)
    cats = category_breakdown(frame, labels=labels, ci=ci)
    curves, trends = alpha_curves(frame, metric, ci=ci)
    adjust_family(corr, trends, adjust)
    n_family = int(sum(np.isfinite(corr[c].to_numpy(dtype=float)).sum()
                       for c in ("between_p", "within_p", "within_partial_p"))
                   + np.isfinite(trends["slope_p"].to_numpy(dtype=float)).sum())
    breakdown = (corruption_breakdown(frame, cells, ci=ci, adjust=adjust, keys=keys) if cells is not None
                 else pd.DataFrame())
    warnings = _warnings(frame, variants, relative, columns, metric)
    if missing.any():
        warnings.insert(0, f"{int(missing.sum())} finished trial(s) did not log {metric!r} (e.g. corruption "
                        "evaluation skipped) and are left out")
    return RobustnessResult(metric=metric, n_trials=int(len(frame)), variant_columns=columns, labels=labels,
                            variants=variants, clean=clean, relative=relative, correlations=corr,
                            categories=cats, alpha=curves, alpha_trend=trends, corruptions=breakdown,
                            warnings=warnings, ci=ci, adjust=adjust, n_family=n_family)


def _warnings(frame: pd.DataFrame, variants: pd.DataFrame, relative: pd.DataFrame, columns: list[str],
              metric: str) -> list[str]:
    warnings = []
    few = variants[variants["n"] < MIN_SEEDS]
    if len(few) > 5:  # a search over continuous params: one line, not one per variant
        warnings.append(f"{len(few)} of {len(variants)} variants have fewer than {MIN_SEEDS} seeds: no interval "
                        "for them; per-variant means are not replicated")
    else:
        for row in few.itertuples():
            warnings.append(f"variant {row.variant!r} has {row.n} seed(s) (< {MIN_SEEDS}): {row.note}")
    for row in relative[relative["metric"] == metric].itertuples():
        if row.method == "none":
            warnings.append(f"{row.metric} {row.reference} vs {row.other}: {row.note}")
    if len(frame) < 3:
        warnings.append(f"only {len(frame)} trial(s): correlations are undefined")
    if relative.empty and STRATEGY_COL in frame.columns:
        warnings.append("no biological-vs-uniform comparison: the sweep does not hold both "
                        f"'{REFERENCE_STRATEGY}' and one of {', '.join(UNIFORM_STRATEGIES)} trials")
    others = [c for c in columns if c != STRATEGY_COL and c[len("params."):] not in ALPHA_KEYS]
    if not relative.empty and others:
        warnings.append("the relative difference is paired within, and pools over, other varying params ("
                        + ", ".join(c[len("params."):] for c in others) + ")")
    return warnings
