"""Stage (a) of the model-level analyses: in-silico electrophysiology of each trained model's V1
block, scored against the published V1 histograms, per variant, with its histogram figure.

Separate from the driver (`v1sweep.analysis.trained`) so that each stage of the sweep's model
analyses (electrophysiology, CKA, sub-populations) is one module that reads whole; it takes the
loaded models (dicts from the driver) and writes its tables and figure into `out_dir`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _noiseless(block: Any) -> Any:
    """Context: the V1 block's noise switched off (tuning is measured on its mean response)."""
    import contextlib

    @contextlib.contextmanager
    def ctx() -> Any:
        saved = block.noise
        block.noise = "none"
        try:
            yield block
        finally:
            block.noise = saved

    return ctx()


ORIENTATION_NOTE = ("Orientation counts differ on purpose: the sampler draws from the counts the published "
                    "VOneNet used (66, 49, 77, 54; n = 246), the benchmark scores against Brain-Score's "
                    "(110, 83, 100, 92; n = 385); both digitise De Valois, Yund & Hepler 1982. The sampler keeps "
                    "the published model's so that defaults reproduce it, the benchmark Brain-Score's so that "
                    "scores compare with Brain-Score.")


def _electrophysiology(models: list[dict], out_dir: Path, quick: bool, ceiling_draws: int = 200,
                       seed: int = 0) -> dict[str, Any]:
    from v1sweep.analysis.neurophysiology import electrophysiology

    unit_tables, score_tables, notes = [], [], set()
    for k, m in enumerate(models):
        block = m["model"].vone
        radii = (block.visual_degrees / 2.0,) if quick else None  # quick: the largest aperture only
        with _noiseless(block):
            res = electrophysiology(m["model"], image_size=block.image_size, visual_degrees=block.visual_degrees,
                                    layer="vone", radii=radii, ceiling_draws=ceiling_draws, seed=seed + k)
        ident = {"variant": m["variant"], "run_id": m["run_id"], "trial_id": m["trial_id"],
                 "train_seed": m["train_seed"], "rf_seed": m["rf_seed"]}
        unit_tables.append(res.units.assign(**ident))
        score_tables.append(res.scores.assign(**ident))
        if res.note:
            notes.add(res.note)
    units, scores = pd.concat(unit_tables, ignore_index=True), pd.concat(score_tables, ignore_index=True)
    summary = (scores.groupby(["variant", "benchmark"], sort=False)
               .agg(score=("score", "mean"), score_std=("score", "std"), n_models=("run_id", "nunique"),
                    n_units=("n_model", "sum"), model_median=("model_median", "mean"), ceiling=("ceiling", "mean"),
                    norm_score=("norm_score", "mean"), norm_score_std=("norm_score", "std"),
                    resolvable=("resolvable", "all"))
               .reset_index())
    paths = {"electrophysiology_units": out_dir / "electrophysiology_units.csv",
             "electrophysiology_scores": out_dir / "electrophysiology_scores.csv",
             "electrophysiology_summary": out_dir / "electrophysiology_summary.csv"}
    units.to_csv(paths["electrophysiology_units"], index=False)
    scores.to_csv(paths["electrophysiology_scores"], index=False)
    summary.to_csv(paths["electrophysiology_summary"], index=False)
    figure = plot_variant_properties(units, summary, out_dir / "electrophysiology.png")
    scored = summary.dropna(subset=["score"])
    resolvable = sorted(set(scored.loc[scored["resolvable"].astype(bool), "benchmark"]))
    cell = [f"{sc:.3f} / {ce:.3f} = {ns:.2f}" + ("" if rv else " (n.r.)")
            for sc, ce, ns, rv in zip(scored["score"], scored["ceiling"], scored["norm_score"], scored["resolvable"])]
    wide = scored.assign(cell=cell).pivot(index="variant", columns="benchmark", values="cell").reindex(
        list(dict.fromkeys(scored["variant"])))
    norm = scored[scored["benchmark"].isin(resolvable)].groupby("variant", sort=False)["norm_score"].mean()
    wide.insert(0, "n models", scored.groupby("variant", sort=False)["n_models"].max().reindex(wide.index))
    wide.insert(1, "mean normalised score (resolvable)", norm.reindex(wide.index))
    table = wide.reset_index()
    protocol = "quick protocol: largest aperture only" if quick else "full protocol: three apertures"
    text = [f"Grating tuning of every V1-block unit ({protocol}; 12 orientations, 8 phases, quarter-octave "
            "SFs), scored against the published V1 histograms (1 - KS/KS_max on the data's bins), mean over "
            "each variant's models (n models in the table; score_std / norm_score_std in "
            "electrophysiology_summary.csv are SDs over models). Each cell reads score / ceiling = normalised "
            f"score: the ceiling is the mean score of {ceiling_draws} samples of the same number of units drawn "
            "from the data histogram itself (KS noise at this unit count), so 1 = as V1-like as the data. "
            "(n.r.) = not resolvable: at this unit count the data's 2.5 % score quantile does not clear a flat "
            "histogram's 97.5 % one, so the benchmark cannot tell V1 from flat and is left out of the mean. "
            f"Resolvable here: {', '.join(resolvable) or 'none'}. Ringach 2002 properties are measured but not "
            "scored (counts not bundled). The V1 block is fixed during training, so these scores depend on the "
            "sampled RFs only.", ORIENTATION_NOTE]
    text += [f"Note: {n}." for n in sorted(notes)]
    return {"tables": paths, "figure": figure, "section_table": table, "text": text}


def plot_variant_properties(units: pd.DataFrame, summary: pd.DataFrame, path: str | Path) -> Path:
    """One panel per V1 benchmark: each variant's pooled unit histogram next to the V1 data's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from v1sweep.analysis.v1_benchmarks import get_benchmark, list_benchmarks

    names = list_benchmarks()
    variants = list(dict.fromkeys(units["variant"]))
    ncol = 4
    nrow = int(np.ceil(len(names) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.7 * nrow), squeeze=False)
    width = 0.8 / (len(variants) + 1)
    for ax, name in zip(axes.flat, names):
        bench = get_benchmark(name)
        edges = np.asarray(bench.edges, dtype=float)
        x = np.arange(len(edges) - 1)
        for k, variant in enumerate(variants):
            values = bench.select(units[units["variant"] == variant])
            counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
            s = summary[(summary["variant"] == variant) & (summary["benchmark"] == name)]
            n_models = int(units.loc[units["variant"] == variant, "run_id"].nunique())
            label = f"{variant} ({len(values)} units / {n_models} models)"
            if len(s) and np.isfinite(s["score"].iloc[0]):
                label += f" {float(s['score'].iloc[0]):.2f}/{float(s['ceiling'].iloc[0]):.2f}"
                label += "" if bool(s["resolvable"].iloc[0]) else " n.r."
            ax.bar(x + (k - len(variants) / 2) * width, counts / max(1, counts.sum()), width, label=label)
        if bench.counts is not None:
            c = np.asarray(bench.counts, dtype=float)
            ax.bar(x + (len(variants) / 2) * width, c / c.sum(), width, color="k", alpha=0.7,
                   label=f"V1 (n={int(c.sum())})")
        ticks = np.arange(len(edges))[:: max(1, len(edges) // 6)]
        ax.set_xticks(ticks - 0.5)
        ax.set_xticklabels([f"{edges[i]:.3g}" for i in ticks], fontsize=7)
        ax.set_title(name, fontsize=8)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle("In-silico electrophysiology of the V1 blocks: unit histograms pooled over each variant's models vs "
                 "V1 (legend: score / ceiling, each the mean over models at a model's unit count; n.r. = not "
                 "resolvable at that count)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
