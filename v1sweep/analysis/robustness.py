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

The bootstrap primitives (`bootstrap_ci`, `relative_difference`, `correlation_ci`) are
kept as tools but no longer make the report's intervals: at 2-8 seeds they do not cover.

This module runs everything at once (`analyze_frame`); the parts live beside it and every name
they define that was importable from here still is: `robustness_tables` (constants, variants,
pairing), `robustness_compare` (means, relative differences, breakdowns),
`robustness_similarity` (similarity associations, alpha dose-response, p-value family) and
`robustness_bootstrap` (the bootstrap and correlation primitives).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from v1sweep.analysis import AnalysisError
from v1sweep.analysis.robustness_bootstrap import (  # noqa: F401 - re-exported
    N_BOOT, bootstrap_ci, correlation_ci, partial_corr, relative_difference)
from v1sweep.analysis.robustness_compare import (  # noqa: F401 - re-exported
    REL_COLUMNS, SUMMARY_COLUMNS, category_breakdown, ci_note, compare, corruption_breakdown,
    relative_differences, variant_summary)
from v1sweep.analysis.robustness_similarity import (  # noqa: F401 - re-exported
    CORR_COLUMNS, TREND_COLUMNS, adjust_family, alpha_curves, alpha_params, correlations, similarity_measures)
from v1sweep.analysis.robustness_tables import (  # noqa: F401 - re-exported
    ADJUST, ALPHA_KEYS, BASELINE, CONTROL_METRIC, DEFAULT_METRIC, ENABLED_COL, MIN_SEEDS,
    NON_VARIANT_PARAMS, PRECISION_MEAN, PRECISION_REL, REFERENCE_STRATEGY, SIMILARITY_PREFIXES, STRATEGY_COL,
    UNIFORM_STRATEGIES, _col, baseline_as_variant, pair_keys, robustness_axes, seed_columns, variant_columns,
    variant_labels)
from v1sweep.config.adversarial import ADV_PREFIX  # noqa: F401 - re-exported (tests read it here)
from v1sweep.corruptions.catalog import CATEGORIES  # noqa: F401 - re-exported (tests read it here)


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
