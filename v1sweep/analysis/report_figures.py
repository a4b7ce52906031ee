"""Figures of the sweep report (PNG). Each `plot_*(finished, result, path) -> bool` draws one figure
with matplotlib's object API (a `Figure` saved through the Agg canvas, no pyplot state) and
returns False when the sweep holds nothing to draw (e.g. no interpolation alphas)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from v1sweep.analysis import robustness as rb

DPI = 110
MAX_VARIANTS = 16


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colors(variants: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(variants) <= 10 else "tab20"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(variants)}


def _save(fig, path: Path) -> bool:
    fig.savefig(path, dpi=DPI)
    return True


def _yerr(means: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    err = np.vstack([means - lo, hi - means])
    return np.where(np.isfinite(err), np.maximum(err, 0), 0)


def _top_variants(result: rb.RobustnessResult) -> list[str]:
    """The variants drawn: all, or the MAX_VARIANTS with the highest mean when there are more."""
    table = result.variants
    if len(table) > MAX_VARIANTS:
        table = table.sort_values("mean", ascending=False).head(MAX_VARIANTS)
    return list(table["variant"])


def _point_groups(finished: pd.DataFrame, result: rb.RobustnessResult) -> pd.Series:
    """What scatter colours stand for: the variant, or the strategy when variants are too many."""
    if len(result.variants) <= 10:
        return result.labels
    if rb.STRATEGY_COL in finished.columns:
        return finished[rb.STRATEGY_COL].astype(str)
    return pd.Series(["trials"] * len(finished), index=finished.index)


def plot_variants(finished: pd.DataFrame, result: rb.RobustnessResult, path: Path) -> bool:
    """Per variant: every seed as a dot, the mean as a diamond with its bootstrap CI."""
    variants = _top_variants(result)  # a search, not a seeds study: the best variants only
    main = result.variants.set_index("variant").loc[variants].reset_index()
    shown_note = f" (top {len(variants)} of {len(result.variants)})" if len(variants) < len(result.variants) else ""
    panels = [(result.metric, main)]
    if not result.clean.empty and result.clean["metric"].iloc[0] != result.metric:
        panels.append((result.clean["metric"].iloc[0], result.clean.set_index("variant").loc[variants].reset_index()))
    colors = _colors(variants)
    width = min(max(5.0, 0.9 * len(variants) + 2.5), 14.0)
    stacked = len(variants) > 5  # many variants: one panel per row, labels need the width
    long_labels = max(map(len, variants)) > 10
    if stacked:
        fig = _figure(width, (4.2 + (1.2 if long_labels else 0)) * len(panels))
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    else:
        fig = _figure(width * len(panels), 4.2)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (metric, table) in zip(axes, panels):
        col = f"metrics.{metric}"
        for i, row in enumerate(table.itertuples()):
            vals = finished.loc[(result.labels == row.variant).to_numpy(), col].to_numpy(dtype=float)
            vals = vals[np.isfinite(vals)]
            offsets = np.linspace(-0.18, 0.18, vals.size) if vals.size > 1 else np.zeros(vals.size)
            ax.scatter(i + offsets, vals, s=22, color=colors[row.variant], alpha=0.6, zorder=2)
            err = _yerr(np.array([row.mean]), np.array([row.ci_lo]), np.array([row.ci_hi]))
            ax.errorbar([i], [row.mean], yerr=err, fmt="D", color="black", ms=6, capsize=6, lw=1.5, zorder=3)
            few = row.n < rb.MIN_SEEDS
            ax.annotate(f"n={row.n}" + ("!" if few else ""), (i, 0), xycoords=("data", "axes fraction"),
                        xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8,
                        color="tab:red" if few else "0.3")
        ax.set_xticks(range(len(table)))
        ax.set_xticklabels(table["variant"], rotation=25 if long_labels else 0, ha="right" if long_labels
                           else "center", fontsize=8 if long_labels else 9)
        ax.set_xlim(-0.6, len(table) - 0.4)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}: seeds, mean and {_ci_label(result)} CI{shown_note}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _ci_label(result: rb.RobustnessResult) -> str:
    return f"{round(100 * result.ci)}%"


def plot_categories(finished: pd.DataFrame, result: rb.RobustnessResult, path: Path) -> bool:
    """Grouped bars: accuracy per corruption category and variant, with CI error bars."""
    table = result.categories
    if table.empty:
        return False
    categories = list(dict.fromkeys(table["category"]))
    variants = [v for v in _top_variants(result) if v in set(table["variant"])]
    colors = _colors(variants)
    fig = _figure(max(6.0, 1.4 * len(categories) + 2.5), 4.2)
    ax = fig.subplots()
    width = 0.8 / len(variants)
    for j, variant in enumerate(variants):
        sub = table[table["variant"] == variant].set_index("category").reindex(categories)
        x = np.arange(len(categories)) - 0.4 + width * (j + 0.5)
        means = sub["mean"].to_numpy(dtype=float)
        ax.bar(x, means, width=width * 0.95, color=colors[variant], label=variant,
               yerr=_yerr(means, sub["ci_lo"].to_numpy(dtype=float), sub["ci_hi"].to_numpy(dtype=float)),
               capsize=3, error_kw={"lw": 1})
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories)
    ax.set_ylabel("corruption accuracy")
    ax.set_title(f"accuracy per corruption category (mean over seeds, {_ci_label(result)} CI)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_similarity(finished: pd.DataFrame, result: rb.RobustnessResult, path: Path, max_panels: int = 12) -> bool:
    """Scatter of the metric against each similarity measure, points coloured by variant."""
    table = result.correlations
    if table.empty:
        return False
    table = table.head(max_panels)
    groups = _point_groups(finished, result)
    variants = list(dict.fromkeys(groups))
    colors = _colors(variants)
    ncols = min(4, len(table))
    nrows = math.ceil(len(table) / ncols)
    fig = _figure(3.3 * ncols + (1.8 if len(variants) > 1 else 0), 2.9 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    y = finished[f"metrics.{result.metric}"].to_numpy(dtype=float)
    for ax, row in zip(axes, table.itertuples()):
        x = finished[f"metrics.{row.measure}"].to_numpy(dtype=float)
        for variant in variants:
            mask = (groups == variant).to_numpy()
            ax.scatter(x[mask], y[mask], s=18, color=colors[variant], alpha=0.8, label=variant)
        ax.set_title(f"{row.measure}\nr={_num(row.pearson_r)}  rho={_num(row.spearman_rho)}  n={row.n}", fontsize=8)
        ax.set_xlabel(row.measure, fontsize=8)
        ax.set_ylabel(result.metric, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(table):]:
        ax.set_visible(False)
    if len(variants) > 1:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    return _save(fig, path)


def _num(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:+.2f}"


def plot_correlations(finished: pd.DataFrame, result: rb.RobustnessResult, path: Path) -> bool:
    """Forest plot: Pearson, Spearman and partial correlation per similarity measure with CIs."""
    table = result.correlations
    if table.empty or not np.isfinite(table[["pearson_r", "spearman_rho"]].to_numpy(dtype=float)).any():
        return False
    fig = _figure(7.5, 0.42 * len(table) + 1.6)
    ax = fig.subplots()
    ypos = np.arange(len(table))[::-1]
    for k, (name, value, lo, hi, color) in enumerate((
            ("Pearson r", "pearson_r", "pearson_lo", "pearson_hi", "tab:blue"),
            ("Spearman rho", "spearman_rho", "spearman_lo", "spearman_hi", "tab:orange"),
            ("partial r | clean acc", "partial_r", "partial_lo", "partial_hi", "tab:green"))):
        v = table[value].to_numpy(dtype=float)
        if not np.isfinite(v).any():
            continue
        yy = ypos + (1 - k) * 0.22
        ax.errorbar(v, yy, xerr=_yerr(v, table[lo].to_numpy(dtype=float), table[hi].to_numpy(dtype=float)),
                    fmt="o", ms=4, color=color, capsize=2, lw=1, label=name)
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_yticks(ypos)
    ax.set_yticklabels(table["measure"], fontsize=8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(f"correlation with {result.metric} ({_ci_label(result)} bootstrap CI; "
                  f"n = {result.n_trials} trials)")
    ax.set_title("robustness vs similarity to V1 (rf_wasserstein is a distance: V1-like = negative r)", fontsize=10)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncols=3, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_alpha(finished: pd.DataFrame, result: rb.RobustnessResult, path: Path) -> bool:
    """Robustness vs interpolation alpha (0 uniform, 1 biological): mean and CI band per property."""
    table = result.alpha
    if table.empty:
        return False
    fig = _figure(6.5, 4.2)
    ax = fig.subplots()
    params = list(dict.fromkeys(table["param"]))
    colors = _colors(params)
    for param in params:
        sub = table[table["param"] == param].sort_values("alpha")
        x = sub["alpha"].to_numpy(dtype=float)
        ax.plot(x, sub["mean"], "o-", color=colors[param], label=param)
        lo, hi = sub["ci_lo"].to_numpy(dtype=float), sub["ci_hi"].to_numpy(dtype=float)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(x[ok], lo[ok], hi[ok], color=colors[param], alpha=0.18, lw=0)
    ax.set_xlabel("alpha (0 = uniform, 1 = biological)")
    ax.set_ylabel(result.metric)
    ax.set_title(f"{result.metric} vs interpolation alpha (mean, {_ci_label(result)} CI over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
