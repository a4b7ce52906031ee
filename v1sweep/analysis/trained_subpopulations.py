"""Stage (c) of the model-level analyses: sub-populations of the V1 units (responses, bottleneck
weights, ablation impact) per seed pair of trained models, then mean and SD over seed pairs.

Separate from the driver (`v1sweep.analysis.trained`) so that each stage is one module that reads
whole; the per-model sub-population analysis itself lives in `v1sweep.analysis.subpopulations`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from v1sweep.analysis.trained_load import mixed_corruption


def _subpopulations(models: list[dict], reference: str, images: torch.Tensor, labels: torch.Tensor | None,
                    probes: dict[str, torch.Tensor], corruptions: Sequence[str], severity: int,
                    out_dir: Path, max_pairs: int = 2, eq_draws: int = 2, seed: int = 0) -> dict[str, Any]:
    """Sub-populations per seed pair (the models sharing train.seed and rf.seed), then mean and SD
    over pairs. Ablations run the whole network body once per group and draw, so only the first
    `max_pairs` seed pairs holding several variants are analysed (others are listed in the text)."""
    from v1sweep.analysis.subpopulations import compare_variants, plot_subpopulations, sf_tercile_edges

    sf_edges = sf_tercile_edges([m["rf"] for m in models])  # the same cpd bands for every model
    mixed = mixed_corruption(probes)
    corruption_fn = lambda _clean: mixed  # noqa: E731  (compare_variants passes the same images)
    by_key: dict[tuple[int, int], list[dict]] = {}
    for m in models:
        by_key.setdefault((m["train_seed"], m["rf_seed"]), []).append(m)
    from v1sweep.analysis.subpopulations import GROUPINGS, group_units

    eq_units = {g: max(1, min(int((lab == grp).sum()) for m in models
                              for lab in [group_units(m["rf"], g, sf_edges=sf_edges)] for grp in set(lab)))
                for g in GROUPINGS}  # one subset size per grouping for every seed pair
    pairs = sorted(by_key, key=lambda k: -len({m["variant"] for m in by_key[k]}))
    skipped = pairs[max_pairs:]
    by_key = {k: by_key[k] for k in pairs[:max_pairs]}
    tables = []
    for (ts, rs), group in by_key.items():
        variants = {m["variant"]: m["model"] for m in group}
        ref = reference if reference in variants else next(iter(variants))
        table, _ = compare_variants(variants, {m["variant"]: m["rf"] for m in group}, images,
                                    labels if labels is not None else torch.zeros(len(images), dtype=torch.long),
                                    corruption_fn, reference=ref, sf_edges=sf_edges,
                                    ablation=labels is not None, figure_path=None, eq_draws=eq_draws,
                                    seed=seed + ts, eq_units=eq_units)
        tables.append(table.assign(train_seed=ts, rf_seed=rs, reference=ref))
    full = pd.concat(tables, ignore_index=True)
    keys = ["variant", "grouping", "group"]
    numeric = [c for c in full.columns if c not in keys + ["train_seed", "rf_seed", "reference"]
               and pd.api.types.is_numeric_dtype(full[c])]
    summary = full.groupby(keys, sort=False)[numeric].mean().reset_index()
    n_pairs = full.groupby(keys, sort=False).size().to_numpy()
    summary.insert(3, "n_seed_pairs", n_pairs)
    spread = full.groupby(keys, sort=False)[numeric].std().reset_index(drop=True)
    for col in ("resp_distortion", "weight_share_per_unit", "rel_delta_corruption_acc",
                "eq_rel_delta_corruption_acc", "delta_corruption_acc_per_unit"):
        if col in summary.columns:
            summary[f"{col}_sd"] = spread[col].to_numpy()
    if "eq_rel_delta_corruption_acc" in summary.columns and n_pairs.min() >= 2:
        summary["eq_rel_delta_corruption_acc_err"] = summary["eq_rel_delta_corruption_acc_sd"]
        span = f"{int(n_pairs.min())}" + (f"-{int(n_pairs.max())}" if n_pairs.max() > n_pairs.min() else "")
        summary.attrs["n_note"] = f"mean over {span} seed pairs; error bars: SD over seed pairs"
    else:
        for col in [c for c in summary.columns if c.endswith("_sd")]:
            summary[col] = np.nan  # one seed pair: no SD over pairs (the equal-size panel keeps its draws' SD)
        summary.attrs["n_note"] = "1 seed pair; error bars (equal-size panel only): SD over the draws"
    summary.attrs.update({"reference": reference})
    paths = {"subpopulations": out_dir / "subpopulations.csv",
             "subpopulations_summary": out_dir / "subpopulations_summary.csv"}
    full.to_csv(paths["subpopulations"], index=False)
    summary.to_csv(paths["subpopulations_summary"], index=False)
    figure = plot_subpopulations(summary, out_dir / "subpopulations.png")
    cols = keys + ["n_seed_pairs"] + [c for c in (
        "n_units", "resp_distortion", "weight_share_per_unit", "weight_gram_similarity_vs_ref", "rel_delta_clean_acc",
        "rel_delta_corruption_acc", "delta_corruption_acc_per_unit", "eq_units", "eq_rel_delta_corruption_acc",
        "eq_rel_delta_corruption_acc_sd") if c in summary.columns]
    text = [f"V1 units grouped by SF band (terciles, {sf_edges[0]:.3g} / {sf_edges[1]:.3g} cpd), orientation and "
            f"cell type; per group and variant: response distortion under corruption, the bottleneck's "
            f"weight share per unit, and the relative accuracy change when the group is silenced, on "
            f"{len(images)} test images (corrupted set: {', '.join(corruptions)} at severity {severity}, one "
            "per image in turn); mean over seed pairs, weight similarity against the "
            f"{reference} model with the same seeds. Groups differ in size, so whole-group ablation effects are "
            "also given per ablated unit (delta_corruption_acc_per_unit) and from equal-size ablations "
            "(eq_*: random subsets of eq_units units, the smallest group of the grouping over all variants, "
            "mean over draws); *_sd = SD over seed pairs (n_seed_pairs)."]
    if skipped:
        text.append(f"Note: {len(skipped)} more seed pair(s) not analysed here (max {max_pairs}: every ablation "
                    "runs the network body again); the electrophysiology and CKA above use all loaded models.")
    if labels is None:
        text.append("Note: probe images came without labels, so the ablation (accuracy impact) was skipped.")
    return {"tables": paths, "figure": figure, "section_table": summary[cols], "text": text}
