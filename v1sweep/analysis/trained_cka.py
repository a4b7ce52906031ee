"""Stage (b) of the model-level analyses: linear CKA between each variant's trained model and the
reference model trained with the same seeds, beside its baselines (same-variant different-seed CKA
and a permutation null), with its per-layer figure.

Separate from the driver (`v1sweep.analysis.trained`) so that each stage is one module that reads
whole; the CKA primitives themselves live in `v1sweep.analysis.cka`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch


def _pair_reference(m: dict, refs: list[dict]) -> tuple[dict, str]:
    for match, how in ((lambda r: (r["train_seed"], r["rf_seed"]) == (m["train_seed"], m["rf_seed"]), "seeds"),
                       (lambda r: r["train_seed"] == m["train_seed"], "train.seed")):
        found = [r for r in refs if match(r)]
        if found:
            return found[0], how
    return refs[0], "unpaired"


def _cka_rows(grams_a: dict, grams_b: dict, layers: list[str], acts_a: dict | None = None,
              acts_b: dict | None = None) -> list[dict]:
    """CKA per layer and probe from cached centred Grams; with the activations, also on all probes
    pooled (a CKA over the concatenated images, which no per-probe Gram gives)."""
    from v1sweep.analysis.cka import cka_from_grams, linear_cka

    rows = []
    for layer in layers:
        for probe in grams_a:
            rows.append({"layer": layer, "probe": probe, "n_images": len(grams_a[probe][layer]),
                         "cka": cka_from_grams(grams_a[probe][layer], grams_b[probe][layer])})
        if acts_a is not None and acts_b is not None and len(acts_a) > 1:
            xa = torch.cat([acts_a[p][layer] for p in acts_a])
            xb = torch.cat([acts_b[p][layer] for p in acts_a])
            rows.append({"layer": layer, "probe": "all", "n_images": len(xa), "cka": linear_cka(xa, xb)})
    return rows


def _cka_baselines(models: list[dict], grams: dict, layers: list[str]) -> pd.DataFrame:
    """Same-variant, different-seed CKA per layer and probe: how similar two models of one variant
    are (the reference a cross-variant CKA is read against)."""
    rows = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            if a["variant"] != b["variant"]:
                continue
            for r in _cka_rows(grams[a["run_id"]], grams[b["run_id"]], layers):
                rows.append({**r, "variant": a["variant"], "seeds_a": f"{a['train_seed']}/{a['rf_seed']}",
                             "seeds_b": f"{b['train_seed']}/{b['rf_seed']}", "run_a": a["run_id"],
                             "run_b": b["run_id"]})
    return pd.DataFrame(rows, columns=["variant", "layer", "probe", "n_images", "cka", "seeds_a", "seeds_b", "run_a",
                                       "run_b"])


def _null(ka: torch.Tensor, kb: torch.Tensor, n_perm: int, seed: int) -> np.ndarray:
    """CKA of two centred Grams with one side's examples shuffled, `n_perm` times."""
    if n_perm <= 0:
        return np.array([np.nan])
    rng = np.random.default_rng(seed)
    out = np.empty(n_perm)
    for i in range(n_perm):
        p = torch.as_tensor(rng.permutation(len(kb)))
        out[i] = float((ka * kb[p][:, p]).sum())
    return out


def _cka(models: list[dict], reference: str, images: torch.Tensor, probes: dict[str, torch.Tensor],
         corruptions: Sequence[str], severity: int, out_dir: Path, n_perm: int = 200,
         seed: int = 0) -> dict[str, Any]:
    from v1sweep.analysis.cka import centred_gram, collect_activations
    from v1sweep.trial.models import analysis_layers

    names = [set(analysis_layers(m["model"])) for m in models]
    layers = [n for n in analysis_layers(models[0]["model"]) if n != "features" and all(n in s for s in names)]
    sets = {"clean": images, **probes}
    acts = {m["run_id"]: {p: collect_activations(m["model"], x, layers) for p, x in sets.items()} for m in models}
    grams = {rid: {p: {layer: centred_gram(a[layer]) for layer in layers} for p, a in per.items()}
             for rid, per in acts.items()}
    refs = [m for m in models if m["variant"] == reference]
    rows = []
    for k, m in enumerate(models):
        if m["variant"] == reference:
            continue
        ref, how = _pair_reference(m, refs)
        for r in _cka_rows(grams[m["run_id"]], grams[ref["run_id"]], layers, acts[m["run_id"]], acts[ref["run_id"]]):
            null = (_null(grams[m["run_id"]]["clean"][r["layer"]], grams[ref["run_id"]]["clean"][r["layer"]],
                          n_perm, seed + k) if r["probe"] == "clean" else np.array([np.nan]))
            rows.append({**r, "variant": m["variant"], "reference": reference, "run_id": m["run_id"],
                         "reference_run_id": ref["run_id"], "train_seed": m["train_seed"], "rf_seed": m["rf_seed"],
                         "pairing": how, "shared_rf_seed": m["rf_seed"] == ref["rf_seed"],
                         "null_mean": float(np.nanmean(null)) if np.isfinite(null).any() else float("nan"),
                         "null_q95": float(np.nanquantile(null, 0.95)) if np.isfinite(null).any() else float("nan")})
    cka = pd.DataFrame(rows)[["variant", "reference", "train_seed", "rf_seed", "pairing", "shared_rf_seed", "layer",
                              "probe", "n_images", "cka", "null_mean", "null_q95", "run_id", "reference_run_id"]]
    base = _cka_baselines(models, grams, layers)
    summary = (cka.groupby(["variant", "layer", "probe"], sort=False)
               .agg(cka=("cka", "mean"), cka_std=("cka", "std"), n_pairs=("run_id", "nunique"),
                    null_q95=("null_q95", "mean"), shared_rf_seed=("shared_rf_seed", "all")).reset_index())
    bsum = base.groupby(["variant", "layer", "probe"]).agg(b=("cka", "mean"), nb=("cka", "size")).reset_index()
    for col, who in (("same_variant_reference", lambda v: reference), ("same_variant_self", lambda v: v)):
        look = {(r.variant, r.layer, r.probe): (r.b, r.nb) for r in bsum.itertuples()}
        vals = [look.get((who(v), layer, probe), (np.nan, 0)) for v, layer, probe in
                zip(summary["variant"], summary["layer"], summary["probe"])]
        summary[col] = [v[0] for v in vals]
        summary[f"n_{col}"] = [v[1] for v in vals]
    paths = {"cka": out_dir / "cka.csv", "cka_summary": out_dir / "cka_summary.csv",
             "cka_baselines": out_dir / "cka_baselines.csv"}
    cka.to_csv(paths["cka"], index=False)
    summary.to_csv(paths["cka_summary"], index=False)
    base.to_csv(paths["cka_baselines"], index=False)
    figure = plot_cka_layers(summary, reference, out_dir / "cka.png")
    table = summary[summary["probe"] == "clean"][["variant", "layer", "n_pairs", "cka", "cka_std",
                                                   "same_variant_reference", "n_same_variant_reference",
                                                   "same_variant_self", "n_same_variant_self", "null_q95"]]
    text = [f"Linear CKA between each variant's model and the {reference} model trained with the same seeds "
            f"(train.seed, rf.seed), per layer, on {len(images)} clean test images and the same images corrupted "
            f"({', '.join(corruptions)}, severity {severity}); mean (cka) and SD (cka_std) over the n_pairs seed "
            "pairs. A cross-variant CKA means something only beside its baselines: same_variant_reference / "
            "same_variant_self = CKA between two models of one variant trained with different seeds (n_* pairs; "
            f"what seed alone changes), null_q95 = 95th percentile of {n_perm} CKAs with the images shuffled on "
            "one side (chance). Table: clean probe; every probe in cka_summary.csv."]
    shared = sorted(set(cka.loc[cka["shared_rf_seed"].astype(bool), "variant"]))
    if shared:
        text.append(f"Note: {', '.join(shared)} share rf.seed with their {reference} partner, hence the same phase "
                    "and colour draws: part of their CKA at the V1 block comes from those shared draws, not from "
                    "the compared property.")
    unpaired = sorted(set(cka.loc[cka["pairing"] != "seeds", "variant"]))
    if unpaired:
        text.append(f"Note: no {reference} model with the same seeds for {', '.join(unpaired)}; paired with "
                    "another seed (see the `pairing` column of cka.csv).")
    if base.empty:
        text.append("Note: no variant has two models with different seeds: no same-variant baseline, so the "
                    "cross-variant CKA cannot be read as large or small (analyse more models: max_models).")
    return {"tables": paths, "figure": figure, "section_table": table, "text": text}


def plot_cka_layers(summary: pd.DataFrame, reference: str, path: str | Path) -> Path:
    """Per variant: cross-variant CKA per layer (clean: solid with SD error bars over seed pairs;
    corrupted probes' mean: dashed), the same-variant baselines (dotted) and the permutation null."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(summary["layer"]))
    x = np.arange(len(layers))
    variants = list(dict.fromkeys(summary["variant"]))
    fig, axes = plt.subplots(1, len(variants), figsize=((1.2 + 0.9 * len(layers)) * len(variants), 3.8),
                             squeeze=False)
    for ax, variant in zip(axes[0], variants):
        sub = summary[summary["variant"] == variant]
        clean = sub[sub["probe"] == "clean"].set_index("layer").reindex(layers)
        corr = sub[~sub["probe"].isin(["clean", "all"])].groupby("layer")["cka"].mean().reindex(layers)
        n = int(clean["n_pairs"].max())
        ax.errorbar(x, clean["cka"], yerr=clean["cka_std"].fillna(0), color="tab:blue", marker="o", capsize=2,
                    label=f"{variant} vs {reference}, clean (n={n} pairs)")
        ax.plot(x, corr, color="tab:blue", marker="s", linestyle="--", label="same, corrupted (mean)")
        for col, color, name in (("same_variant_reference", "tab:green", f"{reference} vs {reference}"),
                                 ("same_variant_self", "tab:orange", f"{variant} vs {variant}")):
            nb = int(clean[f"n_{col}"].max())
            if nb:
                ax.plot(x, clean[col], color=color, marker="^", linestyle=":",
                        label=f"{name}, other seed (n={nb})")
        ax.fill_between(x, 0, clean["null_q95"].fillna(0), color="0.6", alpha=0.3, label="null 95% (shuffled)")
        ax.set_xticks(x)
        ax.set_xticklabels(layers, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("linear CKA")
        ax.set_title(f"{variant}: bars = SD over seed pairs", fontsize=9)
        ax.legend(fontsize=6.5)
        ax.grid(alpha=0.3)
    fig.suptitle(f"CKA to the {reference} model with the same seeds, beside same-variant baselines and the "
                 "permutation null", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
