"""The model-level analyses on a sweep's trained models, pulled back out of MLflow.

Every finished trial run carries ``config.yaml`` (the resolved trial config), ``rf_params.csv`` (the
sampled RF parameters) and ``model.pt`` (the final ``state_dict``). `load_trial_model` rebuilds the
network from them; `analyze_sweep_models` runs the study's central analyses on a few of a sweep's
models, grouped by RF strategy (the variant) and paired across variants by their seeds
(``train.seed``, ``rf.seed``):

(a) in-silico electrophysiology of each V1 block (`neurophysiology.electrophysiology`), scored
    against the published V1 histograms; per-variant scores and a histogram figure. The tuning is
    measured on the block's noiseless (mean) response: tuning curves are trial averages;
(b) linear CKA between each variant's model and the reference (biological) model trained with the
    same seeds, at vone / bottleneck / layer1.. / logits, on a probe set of clean and corrupted
    images, beside its baselines: same-variant different-seed CKA and a permutation null;
(c) sub-populations (`subpopulations.compare_variants`): responses, bottleneck weights and ablation
    impact (whole group, per unit, equal-size) per unit group, for the models sharing one seed
    pair, then mean and SD over (at most `subpop_pairs`) seed pairs.

The probe set is the sweep's own test data (rebuilt with `v1sweep.data.load_dataset`, a seeded
subset of `n_probe` images) unless images are given. Sweeps without V1 models, with one variant or
with models lacking ``model.pt`` get a note in the returned Markdown, not an exception.

This module is the driver; the parts live beside it: `trained_load` (artifacts, rebuilding, choosing
the models, probe images), `trained_electrophysiology` (a), `trained_cka` (b) and
`trained_subpopulations` (c). Every name they define that was importable from here still is.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from v1sweep.analysis import AnalysisError
from v1sweep.analysis.trained_cka import _cka, plot_cka_layers
from v1sweep.analysis.trained_electrophysiology import (  # noqa: F401 - ORIENTATION_NOTE re-exported
    ORIENTATION_NOTE, _electrophysiology, plot_variant_properties)
from v1sweep.analysis.trained_load import (  # noqa: F401 - re-exported: the documented home of these names
    CONFIG_ARTIFACT, DATA_COLUMNS, DEFAULT_CORRUPTIONS, MODEL_ARTIFACT, REFERENCE, RF_ARTIFACT, SEED_COLUMNS,
    _probe_set, corrupted_probes, load_trial_model, mixed_corruption, select_models)
from v1sweep.analysis.trained_subpopulations import _subpopulations
from v1sweep.errors import V1SweepError

Log = Callable[[str], Any]


# ----------------------------------------------------------------------------- helpers
def _md(frame: pd.DataFrame, digits: int = 3) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "–" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")

    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point
def analyze_sweep_models(runs_df: pd.DataFrame, *, tracking_uri: str | None = None, out_dir: str | Path,
                         probe_images: torch.Tensor | None = None, probe_labels: torch.Tensor | None = None,
                         max_models: int = 8, corruption_names: Sequence[str] = DEFAULT_CORRUPTIONS,
                         severity: int = 3, n_probe: int = 128, reference: str = REFERENCE, quick: bool = True,
                         device: str | torch.device = "auto", log: Log | None = None, stage: Log | None = None,
                         n_perm: int = 1000, seed: int = 0, subpop_pairs: int = 2,
                         eq_draws: int = 2) -> dict[str, Any]:
    """Electrophysiology, CKA and sub-populations of a sweep's trained models (see the module doc).

    `runs_df` is `v1sweep.results.query.runs(...)` (only finished trials are used). Returns ``tables`` and
    ``figures`` (name -> path in `out_dir`), ``markdown`` (a ``## Trained models`` section, also
    written to ``trained_models.md``), ``sections`` (dicts with title, text, tables [(caption,
    DataFrame)], figures: the report's `Section` fields), ``notes``, ``models`` (the models used)
    and ``timings`` (seconds per stage). `quick` uses a reduced grating protocol (one aperture).
    `device` "auto" takes CUDA when available (the ablations run thousands of forward passes).
    `log` gets one line per model / stage, `stage(name)` is called as each stage starts (progress);
    min(`n_perm`, 200) permutations make the CKA null and `n_perm` // 10 (at least 20) same-size samples from
    the V1 data the benchmark ceilings, seeded by `seed`. Sub-populations run on at most
    `subpop_pairs` seed pairs with `eq_draws` equal-size draws per group (each ablation is a
    forward pass of the network body: on 2 CPU cores a CIFAR ResNet18 pass over 128 images takes
    seconds). `n_probe` test images (default 128) probe CKA and sub-populations.
    """
    from v1sweep.corruptions.catalog import CORRUPTIONS
    from v1sweep.trial.training import resolve_device

    log = log or (lambda _msg: None)
    stage = stage or (lambda _name: None)
    start = time.perf_counter()
    if "run_id" not in runs_df.columns:
        raise ValueError("runs_df must be a `v1sweep.results.query.runs` table (it has no run_id column)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unknown = [c for c in corruption_names if c not in CORRUPTIONS]
    if unknown or not corruption_names:
        raise ValueError(f"corruption_names: unknown {unknown or 'empty list'}; valid: {', '.join(CORRUPTIONS)}")
    if max_models < 1:
        raise ValueError(f"max_models must be >= 1, got {max_models}")
    device = resolve_device(device)
    result: dict[str, Any] = {"tables": {}, "figures": {}, "sections": [], "notes": [], "models": pd.DataFrame(),
                              "timings": {}}
    chosen, notes = select_models(runs_df, max_models=max_models, reference=reference)
    result["notes"] = notes

    loaded: list[dict] = []
    t0 = time.perf_counter()
    stage(f"models: loading {len(chosen)} trained model(s) from MLflow")
    for row in chosen.itertuples(index=False):
        try:
            model, config, rf = load_trial_model(row.run_id, tracking_uri=tracking_uri, device=device)
        except AnalysisError as exc:
            notes.append(str(exc))
            continue
        if rf is None:
            notes.append(f"run {row.run_id}: plain baseline (no V1 block); left out")
            continue
        log(f"loaded {row.variant} (train.seed {row.train_seed}, rf.seed {row.rf_seed})")
        loaded.append({"run_id": row.run_id, "trial_id": getattr(row, "trial_id", None), "variant": row.variant,
                       "train_seed": row.train_seed, "rf_seed": row.rf_seed, "model": model, "config": config,
                       "rf": rf})
    result["timings"]["load_s"] = time.perf_counter() - t0
    log(f"loaded {len(loaded)} trained model(s) in {result['timings']['load_s']:.1f} s")
    if loaded:
        models_table = pd.DataFrame([{k: m[k] for k in ("variant", "train_seed", "rf_seed", "trial_id", "run_id")}
                                     for m in loaded])
        result["models"] = models_table
        result["tables"]["models"] = out_dir / "models.csv"
        models_table.to_csv(result["tables"]["models"], index=False)
    else:
        notes.append("none of the chosen trials could be loaded: the model analyses were skipped" if len(chosen)
                     else "no finished trials with a V1 block: the model analyses were skipped")
        return _finish(result, out_dir, start)

    variants = list(dict.fromkeys(m["variant"] for m in loaded))
    if reference not in variants:
        notes.append(f"no {reference!r} model among {', '.join(variants)}; {variants[0]!r} is the reference "
                     "for CKA and weight comparisons")
        reference = variants[0]
    if probe_images is None:
        try:
            probe_images, probe_labels = _probe_set(loaded[0]["config"], n_probe)
        except V1SweepError as exc:  # e.g. the dataset folder is not on this machine
            notes.append(f"no probe images: the sweep's test data cannot be loaded here ({exc}); CKA and "
                         "sub-populations skipped (pass probe_images)")
    if probe_images is not None:
        probe_images = torch.as_tensor(probe_images)
        if probe_labels is not None and len(probe_labels) != len(probe_images):
            raise ValueError(f"probe_labels has {len(probe_labels)} entries for {len(probe_images)} probe images")
        sizes = {m["config"].data.image_size for m in loaded}
        if probe_images.ndim != 4 or probe_images.shape[1] != 3 or {probe_images.shape[-1]} != sizes:
            raise ValueError(f"probe images must be (N, 3, S, S) with S the models' image size {sorted(sizes)}, "
                             f"got {tuple(probe_images.shape)}")
        t0 = time.perf_counter()
        probes = corrupted_probes(probe_images, corruption_names, severity)
        result["timings"]["corrupt_s"] = time.perf_counter() - t0

    stages = [("Trained models: in-silico electrophysiology of the V1 block", "electrophysiology",
               lambda: _electrophysiology(loaded, out_dir, quick, max(20, n_perm // 10), seed))]
    if len(variants) == 1:
        notes.append(f"only one variant ({variants[0]}): no pairs of variants, CKA skipped")
    if probe_images is not None:
        if len(variants) > 1:
            stages.append((f"Trained models: representational similarity (CKA) to the {reference} model", "cka",
                           lambda: _cka(loaded, reference, probe_images, probes, corruption_names, severity,
                                        out_dir, min(n_perm, 200), seed)))
        stages.append(("Trained models: sub-populations (responses, weights, impact)", "subpopulations",
                       lambda: _subpopulations(loaded, reference, probe_images, probe_labels, probes,
                                               corruption_names, severity, out_dir, subpop_pairs, eq_draws,
                                               seed)))
    for title, name, fn in stages:
        stage(f"models: {name}")
        t0 = time.perf_counter()
        part = fn()
        result["timings"][f"{name}_s"] = time.perf_counter() - t0
        log(f"{name}: {result['timings'][f'{name}_s']:.1f} s")
        result["tables"].update(part["tables"])
        result["figures"][name] = part["figure"]
        result["sections"].append({"title": title, "text": part["text"],
                                   "tables": [(title.split(": ", 1)[1], part["section_table"])],
                                   "figures": [str(part["figure"])]})
    return _finish(result, out_dir, start)


def _finish(result: dict[str, Any], out_dir: Path, start: float) -> dict[str, Any]:
    models = result["models"]
    lines = ["## Trained models", ""]
    if len(models):
        per = models.groupby("variant", sort=False).size()
        lines.append(f"{len(models)} trained model(s) pulled from MLflow: "
                     + ", ".join(f"{v} x{n}" for v, n in per.items()) + ".")
        lines.append("")
    for note in result["notes"]:
        lines.append(f"- Note: {note}")
    if result["notes"]:
        lines.append("")
    for s in result["sections"]:
        lines += [f"### {s['title'].split(': ', 1)[1]}", "", *[f"{t}\n" for t in s["text"]]]
        for _, table in s["tables"]:
            lines += [_md(table), ""]
        lines += [f"![{Path(f).stem}]({Path(f).name})" for f in s["figures"]] + [""]
    result["markdown"] = "\n".join(lines).rstrip() + "\n"
    result["markdown_path"] = out_dir / "trained_models.md"
    result["markdown_path"].write_text(result["markdown"])
    result["timings"]["total_s"] = time.perf_counter() - start
    return result


__all__ = ["DEFAULT_CORRUPTIONS", "analyze_sweep_models", "corrupted_probes", "load_trial_model", "mixed_corruption",
           "plot_cka_layers", "plot_variant_properties", "select_models"]
