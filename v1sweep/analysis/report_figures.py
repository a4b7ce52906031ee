"""Figures of the sweep report (PNG). Each `plot_*(finished, result, path) -> bool` draws one figure
with matplotlib's object API (a `Figure` saved through the Agg canvas, no pyplot state) and
returns False when the sweep holds nothing to draw (e.g. no interpolation alphas).

Every figure states its n and what its error bars are (Student-t or Fieller intervals, see
docs/statistics.md); scatter plots carry their fit line and its confidence band; nothing is
silently dropped (a figure that shows a subset says so in its title)."""
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


def _ci_label(result: rb.RobustnessResult) -> str:
    return f"{round(100 * result.ci)}%"


def plot_variants(finished: pd.DataFrame, result: rb.RobustnessResult, path: Path) -> bool:
    """Per variant: every seed as a dot, the mean as a diamond with its t interval (none if n < 3)."""
    variants = _top_variants(result)  # a search, not a seeds study: the best variants only
    main = result.variants.set_index("variant").loc[variants].reset_index()
    shown_note = f" (top {len(variants)} of {len(result.variants)} by mean)" if len(variants) < len(result.variants) else ""
    panels = [(result.metric, main)]
    if not result.clean.empty and result.clean["metric"].iloc[0] != result.metric:
        panels.append((result.clean["metric"].iloc[0], result.clean.set_index("variant").loc[variants].reset_index()))
    colors = _colors(variants)
    width = min(max(5.0, 0.9 * len(variants) + 2.5), 14.0)
    stacked = len(variants) > 5  # many variants: one panel per row, labels need the width
    long_labels = max(map(len, variants)) > 10
    if stacked:
        fig = _figure(width, (4.4 + (1.2 if long_labels else 0)) * len(panels))
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    else:
        fig = _figure(width * len(panels), 4.4)
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
            ax.annotate(f"n={row.n}" + (" (no CI)" if few else ""), (i, 0), xycoords=("data", "axes fraction"),
                        xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8,
                        color="tab:red" if few else "0.3")
        ax.set_xticks(range(len(table)))
        ax.set_xticklabels(table["variant"], rotation=25 if long_labels else 0, ha="right" if long_labels
                           else "center", fontsize=8 if long_labels else 9)
        ax.set_xlim(-0.6, len(table) - 0.4)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}{shown_note}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"dots = seeds, diamond = mean, bars = {_ci_label(result)} Student-t interval of the mean "
                 f"(n = seeds; no interval below {rb.MIN_SEEDS})", fontsize=9)
    return _save(fig, path)


def plot_categories(finished: pd.DataFrame, result: rb.RobustnessResult, path: Path) -> bool:
    """Grouped bars: accuracy per corruption category and variant, with t-interval error bars."""
    table = result.categories
    if table.empty:
        return False
    categories = list(dict.fromkeys(table["category"]))
    variants = [v for v in _top_variants(result) if v in set(table["variant"])]
    colors = _colors(variants)
    fig = _figure(max(6.0, 1.4 * len(categories) + 3.5), 4.4)
    ax = fig.subplots()
    width = 0.8 / len(variants)
    ns = table.groupby("variant", sort=False)["n"].max()
    for j, variant in enumerate(variants):
        sub = table[table["variant"] == variant].set_index("category").reindex(categories)
        x = np.arange(len(categories)) - 0.4 + width * (j + 0.5)
        means = sub["mean"].to_numpy(dtype=float)
        ax.bar(x, means, width=width * 0.95, color=colors[variant], label=f"{variant} (n={int(ns[variant])})",
               yerr=_yerr(means, sub["ci_lo"].to_numpy(dtype=float), sub["ci_hi"].to_numpy(dtype=float)),
               capsize=3, error_kw={"lw": 1})
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories)
    ax.set_ylabel("corruption accuracy")
    hidden = len(result.variants) - len(variants)
    ax.set_title(f"accuracy per corruption category: mean over seeds, bars = {_ci_label(result)} t interval "
                 f"(none below {rb.MIN_SEEDS} seeds)" + (f"; {hidden} more variants not drawn" if hidden else ""),
                 fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, title="variant (n seeds)",
              title_fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _fit_band(x: np.ndarray, y: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """OLS line of y on x over a grid with the t confidence band of the fitted mean (needs >= 3 points)."""
    from scipy import stats

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    s = np.sqrt(resid @ resid / (x.size - 2))
    grid = np.linspace(x.min(), x.max(), 50)
    se = s * np.sqrt(1 / x.size + (grid - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum())
    t = stats.t.ppf(0.5 + ci / 2, x.size - 2)
    fit = intercept + slope * grid
    return grid, fit, fit - t * se, fit + t * se


def _within_slope(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The common within-variant slope: OLS of centred y on centred x (variant intercepts)."""
    from v1sweep.analysis.stats import centre_by

    ok = np.isfinite(x) & np.isfinite(y)
    xc, yc = centre_by(x[ok], groups[ok]), centre_by(y[ok], groups[ok])
    den = (xc * xc).sum()
    return float((xc * yc).sum() / den) if den > 0 else float("nan")


def plot_similarity(finished: pd.DataFrame, result: rb.RobustnessResult, path: Path) -> bool:
    """Robustness vs every similarity measure (one panel each, none dropped): trials as small dots,
    variant means as large ones with the between-variant OLS line and its band; short dashed lines
    through each variant mean show the common within-variant slope."""
    table = result.correlations
    if table.empty:
        return False
    groups = _point_groups(finished, result)
    labels = result.labels.astype(str).to_numpy()
    variants = list(dict.fromkeys(groups))
    colors = _colors(variants)
    ncols = min(4, len(table))
    nrows = math.ceil(len(table) / ncols)
    fig = _figure(3.4 * ncols + (1.8 if len(variants) > 1 else 0), 3.1 * nrows + 0.6)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    y = finished[f"metrics.{result.metric}"].to_numpy(dtype=float)
    for ax, row in zip(axes, table.itertuples()):
        x = finished[f"metrics.{row.measure}"].to_numpy(dtype=float)
        for variant in variants:
            mask = (groups == variant).to_numpy()
            ax.scatter(x[mask], y[mask], s=12, color=colors[variant], alpha=0.45, label=variant)
        means = pd.DataFrame({"x": x, "y": y, "g": labels}).dropna().groupby("g", sort=False).mean()
        ax.scatter(means["x"], means["y"], s=60, color="black", marker="D", zorder=4,
                   label="variant mean")
        band = _fit_band(means["x"].to_numpy(), means["y"].to_numpy(), result.ci)
        if band is not None:
            grid, fit, lo, hi = band
            ax.plot(grid, fit, color="black", lw=1.2)
            ax.fill_between(grid, lo, hi, color="0.5", alpha=0.2, lw=0)
        slope = _within_slope(x, y, labels)
        if np.isfinite(slope):
            span = 0.5 * np.nanstd(x) if np.nanstd(x) > 0 else 0.0
            for mx, my in zip(means["x"], means["y"]):
                ax.plot([mx - span, mx + span], [my - slope * span, my + slope * span], "--", color="0.3", lw=0.9)
        ax.set_title(f"{row.measure}\nbetween r={_num(row.between_r)} (n={row.n_variants} variants), "
                     f"within r={_num(row.within_r)} (df={_int(row.within_df)})", fontsize=7.5)
        ax.set_xlabel(row.measure, fontsize=8)
        ax.set_ylabel(result.metric, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(table):]:
        ax.set_visible(False)
    fig.suptitle(f"{result.metric} vs similarity to V1, all {len(table)} measures; n = {result.n_trials} trials. "
                 f"Line + band: OLS over variant means with its {_ci_label(result)} confidence band "
                 f"(>= 3 variants); dashed: within-variant slope", fontsize=9)
    if len(variants) > 1:
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside right upper", fontsize=8, frameon=False)
    return _save(fig, path)


def _num(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:+.2f}"


def _int(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{int(value)}"


def plot_correlations(finished: pd.DataFrame, result: rb.RobustnessResult, path: Path) -> bool:
    """Forest plot: between-variant r, within-variant r and within partial r per measure, with
    Fisher-z intervals; '*' marks a family-adjusted p < 0.05."""
    table = result.correlations
    cols = ["between_r", "within_r", "within_partial_r"]
    if table.empty or not np.isfinite(table[cols].to_numpy(dtype=float)).any():
        return False
    fig = _figure(8.0, 0.45 * len(table) + 2.0)
    ax = fig.subplots()
    ypos = np.arange(len(table))[::-1]
    n_var = int(table["n_variants"].max())
    df = table["within_df"].max()
    for k, (name, value, lo, hi, padj, color) in enumerate((
            (f"between variants (n = {n_var} means)", "between_r", "between_lo", "between_hi", "between_p_adj",
             "tab:blue"),
            (f"within variants (df = {_int(df)})", "within_r", "within_lo", "within_hi", "within_p_adj",
             "tab:orange"),
            ("within, partial | clean acc", "within_partial_r", "within_partial_lo", "within_partial_hi",
             "within_partial_p_adj", "tab:green"))):
        v = table[value].to_numpy(dtype=float)
        if not np.isfinite(v).any():
            continue
        yy = ypos + (1 - k) * 0.22
        err = (_yerr(v, table[lo].to_numpy(dtype=float), table[hi].to_numpy(dtype=float)) if lo else None)
        ax.errorbar(v, yy, xerr=err, fmt="o", ms=4, color=color, capsize=2, lw=1, label=name)
        if padj in table.columns:
            for vi, yi, pi in zip(v, yy, table[padj].to_numpy(dtype=float)):
                if np.isfinite(pi) and pi < 0.05:
                    ax.annotate("*", (vi, yi), xytext=(4, -2), textcoords="offset points", color=color)
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_yticks(ypos)
    ax.set_yticklabels(table["measure"], fontsize=8)
    ax.set_xlim(-1.05, 1.05)
    method = {"holm": "Holm", "bh": "Benjamini-Hochberg"}.get(result.adjust, result.adjust)
    ax.set_xlabel(f"Pearson r with {result.metric}; bars = {_ci_label(result)} Fisher-z interval (none when "
                  f"n - 3 - k < 1)\n* = {method}-adjusted p < 0.05 over the {result.n_family} association tests",
                  fontsize=8)
    ax.set_title(f"robustness vs similarity to V1, n = {result.n_trials} trials "
                 "(rf_wasserstein = distance: V1-like is negative r)", fontsize=9)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncols=3, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_alpha(finished: pd.DataFrame, result: rb.RobustnessResult, path: Path) -> bool:
    """Robustness vs interpolation alpha (0 uniform, 1 biological): mean and t-interval band per
    property, n per point; the legend gives the seed-clustered slope and its interval."""
    table = result.alpha
    if table.empty:
        return False
    fig = _figure(7.0, 4.4)
    ax = fig.subplots()
    params = list(dict.fromkeys(table["param"]))
    colors = _colors(params)
    trend = result.alpha_trend.set_index("param")
    for param in params:
        sub = table[table["param"] == param].sort_values("alpha")
        x = sub["alpha"].to_numpy(dtype=float)
        t = trend.loc[param]
        label = (f"{param}: slope {t.slope:+.3g} [{t.slope_lo:+.3g}, {t.slope_hi:+.3g}], {int(t.n_seeds)} seeds"
                 if np.isfinite(t.slope_lo) else f"{param}: slope {t.slope:+.3g}, {int(t.n_seeds)} seed(s), no CI")
        ax.plot(x, sub["mean"], "o-", color=colors[param], label=label)
        lo, hi = sub["ci_lo"].to_numpy(dtype=float), sub["ci_hi"].to_numpy(dtype=float)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(x[ok], lo[ok], hi[ok], color=colors[param], alpha=0.18, lw=0)
        for xi, yi, n in zip(x, sub["mean"], sub["n"]):
            ax.annotate(f"n={n}", (xi, yi), xytext=(0, 6), textcoords="offset points", fontsize=7, ha="center")
    ax.set_xlabel("alpha (0 = uniform, 1 = biological)")
    ax.set_ylabel(result.metric)
    ax.set_title(f"{result.metric} vs alpha: mean over seeds, band = {_ci_label(result)} t interval "
                 f"(none below {rb.MIN_SEEDS} seeds)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_corruptions(finished: pd.DataFrame, result: rb.RobustnessResult, path: Path) -> bool:
    """Per corruption (one panel each) the biological-vs-X relative difference per severity with
    its interval (paired or unpaired, as the table says); hollow markers: no interval."""
    table = result.corruptions
    if table is None or table.empty:
        return False
    names = list(dict.fromkeys(table["corruption"]))
    others = list(dict.fromkeys(table["other"]))
    colors = _colors(others)
    ncols = 5
    nrows = math.ceil(len(names) / ncols)
    fig = _figure(3.0 * ncols, 2.4 * nrows + 0.9)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, sharey=True)).ravel()
    for ax, name in zip(axes, names):
        sub = table[table["corruption"] == name]
        for k, other in enumerate(others):
            rows = sub[sub["other"] == other].sort_values("severity")
            x = rows["severity"].to_numpy(dtype=float) + (k - (len(others) - 1) / 2) * 0.12
            v = 100 * rows["rel_diff"].to_numpy(dtype=float)
            lo, hi = 100 * rows["ci_lo"].to_numpy(dtype=float), 100 * rows["ci_hi"].to_numpy(dtype=float)
            has = np.isfinite(lo)
            ax.errorbar(x[has], v[has], yerr=_yerr(v[has], lo[has], hi[has]), fmt="o", ms=3.5, capsize=2, lw=1,
                        color=colors[other], label=f"vs {other}")
            ax.scatter(x[~has], v[~has], s=14, facecolors="none", edgecolors=colors[other])
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xticks(sorted(set(sub["severity"])))
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    methods = ", ".join(sorted(m for m in set(table["method"]) if m != "none")) or f"none: < {rb.MIN_SEEDS} seeds"
    npairs = ", ".join(f"{o}: {int(table.loc[table['other'] == o, 'n_pairs'].max())} pairs" for o in others)
    fig.suptitle(f"biological vs X per corruption and severity: (acc_bio - acc_X) / acc_X in %, bars = "
                 f"{_ci_label(result)} interval ({methods}; {npairs}); hollow = no interval", fontsize=9)
    if len(others):
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(others),
                   fontsize=8, frameon=False)
    return _save(fig, path)
