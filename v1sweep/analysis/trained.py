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
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from v1sweep import contracts as C
from v1sweep.analysis import AnalysisError
from v1sweep.errors import V1SweepError
from v1sweep.rf.params import RFParams

if TYPE_CHECKING:
    from v1sweep.config.trial import TrialConfig
    from v1sweep.trial.models import V1Net

MODEL_ARTIFACT, CONFIG_ARTIFACT, RF_ARTIFACT = C.MODEL_PT, C.CONFIG_YAML, C.RF_PARAMS_CSV
# One cheap corruption per category (noise, blur, weather, digital), at severity 3.
DEFAULT_CORRUPTIONS = ("gaussian_noise", "defocus_blur", "frost", "contrast")
REFERENCE = "biological"
SEED_COLUMNS = ("params.train.seed", "params.rf.seed")
DATA_COLUMNS = ("params.data.dataset", "params.data.path", "params.data.image_size", "params.data.seed",
                "params.data.test_size")
Log = Callable[[str], Any]


# ----------------------------------------------------------------------------- loading one model
def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys saved from a torch.compile'd or DataParallel model carry '_orig_mod.' / 'module.'."""
    out = {}
    for key, value in state.items():
        for prefix in ("_orig_mod.", "module."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_trial_model(run_id: str, *, tracking_uri: str | None = None, device: str | torch.device = "cpu"
                     ) -> "tuple[V1Net, TrialConfig, RFParams | None]":
    """(model, config, rf) of a trial run: its artifacts downloaded, the network rebuilt with
    `build_model`, the final weights loaded (``weights_only``), in eval mode with the V1 noise frozen
    (the seed the trial's evaluation used). `rf` is None for a plain baseline.

    Raises `AnalysisError` naming the run and the file when an artifact is missing or does not fit.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from v1sweep.config import trial as cfg
    from v1sweep.trial.evaluation import NOISE_SEED
    from v1sweep.trial.models import build_model, config_for_weights
    from v1sweep.results.store import mask_uri, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise AnalysisError(f"no run {run_id!r} in {mask_uri(uri)}") from None
    trial = run.data.tags.get(C.TRIAL_ID)
    who = f"run {run_id}" + (f" (trial {trial})" if trial else "")
    try:
        have = {a.path for a in client.list_artifacts(run_id)}
    except Exception as exc:  # artifact store unreachable
        raise AnalysisError(f"{who}: cannot list its artifacts: {exc}") from None
    needed = [CONFIG_ARTIFACT, MODEL_ARTIFACT]
    missing = [name for name in needed if name not in have]
    if missing:
        listing = ", ".join(sorted(have)) or "none"
        raise AnalysisError(f"{who}: missing artifact(s) {', '.join(missing)} (has: {listing})"
                            + ("; trials logged before the final weights were saved cannot be analysed at "
                               "model level, rerun them" if MODEL_ARTIFACT in missing else ""))
    with tempfile.TemporaryDirectory(prefix="v1sweep-model-") as tmp:
        local = {name: Path(client.download_artifacts(run_id, name, tmp)) for name in needed}
        config = cfg.load(local[CONFIG_ARTIFACT])
        rf = None
        if config.frontend.enabled:
            if RF_ARTIFACT not in have:
                raise AnalysisError(f"{who}: missing artifact {RF_ARTIFACT} (its config has the V1 block on)")
            rf = RFParams.from_csv(Path(client.download_artifacts(run_id, RF_ARTIFACT, tmp)))
        try:
            state = torch.load(local[MODEL_ARTIFACT], map_location="cpu", weights_only=True)
        except Exception as exc:
            raise AnalysisError(f"{who}: {MODEL_ARTIFACT} is not a loadable state_dict: {exc}") from None
    if not isinstance(state, dict):
        raise AnalysisError(f"{who}: {MODEL_ARTIFACT} holds a {type(state).__name__}, expected a state_dict")
    state = _strip_prefixes(state)
    head = state.get("head.fc.weight")
    num_classes = int(head.shape[0]) if head is not None else config.num_classes
    if num_classes is None:
        raise AnalysisError(f"{who}: cannot tell the number of classes ({MODEL_ARTIFACT} has no head.fc.weight)")
    config = config_for_weights(config, state)  # trials saved before model.bottleneck_norm / model.stem
    with torch.random.fork_rng(devices=[]):  # the throw-away initialisation must not move the global RNG
        model = build_model(config, rf, num_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[:3])
        raise AnalysisError(f"{who}: {MODEL_ARTIFACT} does not fit the model its config.yaml builds: "
                            f"{detail}") from None
    model = model.to(device).eval()
    if model.vone is not None:
        model.vone.freeze_noise(NOISE_SEED)
    return model, config, rf


# ----------------------------------------------------------------------------- choosing the models
def _finished(frame: pd.DataFrame) -> pd.DataFrame:
    if "status" in frame.columns:
        frame = frame[frame["status"] == "finished"]
    return frame.reset_index(drop=True)


def _int(value: Any, default: int = 0) -> int:
    try:
        return default if value is None or (isinstance(value, float) and np.isnan(value)) else int(value)
    except (TypeError, ValueError):
        return default


def _variant_of(row: pd.Series) -> str:
    strategy = str(row.get("params.rf.strategy", REFERENCE) or REFERENCE)
    alpha = row.get("params.rf.alpha")
    if strategy == "interpolated" and alpha is not None and not (isinstance(alpha, float) and np.isnan(alpha)):
        return f"interpolated(alpha={float(alpha):g})"
    return strategy


def _variant_order(name: str) -> tuple:
    from v1sweep.config.trial import STRATEGIES

    base, _, rest = name.partition("(")
    return (STRATEGIES.index(base) if base in STRATEGIES else len(STRATEGIES), rest, name)


def select_models(runs_df: pd.DataFrame, *, max_models: int = 8, reference: str = REFERENCE
                  ) -> tuple[pd.DataFrame, list[str]]:
    """The finished V1 trials to analyse (at most `max_models`) with columns ``variant``,
    ``train_seed`` and ``rf_seed``, and notes on what was left out. Seed pairs shared by the most
    variants come first, so the chosen models pair up; every variant gets at least one model."""
    notes: list[str] = []
    frame = _finished(runs_df)
    if frame.empty:
        return frame.assign(variant=[], train_seed=[], rf_seed=[]), ["no finished trials to analyse"]
    if "params.frontend.enabled" in frame.columns:
        v1 = frame["params.frontend.enabled"].map(lambda v: v is not False and str(v).lower() != "false")
        if (~v1).any():
            notes.append(f"{int((~v1).sum())} plain-baseline trial(s) (frontend.enabled=false) have no V1 block "
                         "and are left out of the model analyses")
        frame = frame[v1].reset_index(drop=True)
        if frame.empty:
            return frame.assign(variant=[], train_seed=[], rf_seed=[]), notes
    frame = frame.assign(
        variant=frame.apply(_variant_of, axis=1),
        train_seed=[_int(v) for v in frame.get(SEED_COLUMNS[0], pd.Series([0] * len(frame)))],
        rf_seed=[_int(v) for v in frame.get(SEED_COLUMNS[1], pd.Series([0] * len(frame)))])
    data_cols = [c for c in DATA_COLUMNS if c in frame.columns]
    if data_cols:  # one probe set serves all models: keep the most common data config
        keys = pd.Series(["|".join(map(str, vals)) for vals in frame[data_cols].itertuples(index=False)],
                         index=frame.index)
        top, _ = Counter(keys).most_common(1)[0]
        if (keys != top).any():
            notes.append(f"{int((keys != top).sum())} trial(s) trained on other data than the majority "
                         f"({', '.join(f'{c[7:]}={frame.loc[keys == top, c].iloc[0]}' for c in data_cols)}) "
                         "are left out: one probe set serves all compared models")
        frame = frame[keys == top].reset_index(drop=True)
    dup = frame.duplicated(["variant", "train_seed", "rf_seed"])
    if dup.any():
        notes.append(f"{int(dup.sum())} trial(s) repeat a variant and seed pair already chosen (other swept "
                     "parameters); only the first of each is analysed")
        frame = frame[~dup].reset_index(drop=True)
    variants = sorted(frame["variant"].unique(), key=lambda v: (v != reference, _variant_order(v)))
    key_count = Counter(zip(frame["train_seed"], frame["rf_seed"]))
    frame["_rank_key"] = [(-key_count[(t, r)], t, r) for t, r in zip(frame["train_seed"], frame["rf_seed"])]
    frame["_rank_variant"] = frame["variant"].map(variants.index)
    ordered = frame.sort_values(["_rank_key", "_rank_variant"], kind="stable")
    chosen: list[int] = []
    for v in variants:  # every variant first (its most shared seed pair), then fill pair by pair
        if len(chosen) < max_models:
            chosen.append(int(ordered.index[ordered["variant"] == v][0]))
    for i in ordered.index:
        if len(chosen) >= max_models:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    if len(frame) > len(chosen):
        notes.append(f"{len(frame) - len(chosen)} more V1 trial(s) not analysed (max_models={max_models})")
    out = frame.loc[chosen].sort_values(["_rank_key", "_rank_variant"], kind="stable")
    return out.drop(columns=["_rank_key", "_rank_variant"]).reset_index(drop=True), notes


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


def _probe_set(config: "TrialConfig", n_probe: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded subset of `n_probe` test images (uint8) and labels of the trial's dataset."""
    from v1sweep.data import load_dataset

    data_cfg = config.data
    if data_cfg.dataset == "synthetic":  # train and test are independent streams: skip the train set
        data_cfg = dataclasses.replace(data_cfg, train_size=1)
    data = load_dataset(data_cfg)
    n = len(data.test_labels)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:min(n, n_probe)].sort().values
    return data.test_images[idx], data.test_labels[idx]


def corrupted_probes(images: torch.Tensor, names: Sequence[str], severity: int, seed: int = 0
                     ) -> dict[str, torch.Tensor]:
    """``{"<name>/<severity>": corrupted [0, 1] images}``, computed once and shared by every model."""
    from v1sweep.corruptions import apply

    clean = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return {f"{name}/{severity}": apply(clean.clone(), name, severity, seed=seed).clamp(0, 1) for name in names}


def mixed_corruption(probes: dict[str, torch.Tensor]) -> torch.Tensor:
    """One corrupted set covering every corruption: image i from the (i mod k)-th corrupted probe."""
    sets = list(probes.values())
    out = sets[0].clone()
    for k, x in enumerate(sets):
        out[k::len(sets)] = x[k::len(sets)]
    return out


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


# ----------------------------------------------------------------------------- (a) electrophysiology
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


# ----------------------------------------------------------------------------- (b) CKA
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


# ----------------------------------------------------------------------------- (c) sub-populations
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
