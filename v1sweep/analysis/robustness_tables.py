"""What the sweep statistics run on: a `query.runs` table's variants, seeds and pairs.

Owns the constants of the robustness analysis (metric names, strategy names, precision targets)
and turns a trial table into the things every statistic needs: the params that define a variant
(`variant_columns`, `variant_labels`), the key that pairs trials across strategies (`pair_keys`),
the plain baseline as a variant of its own (`baseline_as_variant`) and the robustness axes logged.
Separate from the statistics (`robustness_compare`, `robustness_similarity`) because it decides
which numbers are compared, not how; numpy, scipy and pandas only, like every robustness module.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from v1sweep.analysis import AnalysisError
from v1sweep.analysis import stats as st
from v1sweep.config.adversarial import ADV_PREFIX
from v1sweep.rf.catalog import uniform_controls

DEFAULT_METRIC = "corruption_acc"
CONTROL_METRIC = "clean_acc"
MIN_SEEDS = st.MIN_N
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
