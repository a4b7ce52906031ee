"""The inputs of the model-level analyses: a sweep's trained models rebuilt from their MLflow
artifacts, which of a sweep's trials to analyse, and the probe images every model is shown.

Separate from `v1sweep.analysis.trained` (the per-sweep driver) because fetching and rebuilding one
model (`load_trial_model`) and choosing the models (`select_models`) are useful on their own and know
nothing about the analyses run on them; the driver and the stage modules import from here.
"""
from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch

from v1sweep import contracts as C
from v1sweep.analysis import AnalysisError
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


# ----------------------------------------------------------------------------- probe images
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
