"""One trial, end to end, without Ray or MLflow: RF params -> model -> train -> evaluate -> summary.

`run_trial(config, out_dir)` is what a sweep runs for every trial and what `v1sweep train` runs once.
It writes into `out_dir`:

- ``config.yaml``: the resolved trial config;
- ``rf_params.csv`` and ``rf_histograms.png``: the sampled RF parameters (header only and no plot
  for a plain baseline without the V1 block);
- ``checkpoint.pt``: after every epoch; a rerun resumes from it (a checkpoint written for another
  config is refused);
- ``eval_table.csv``: accuracy per (corruption, severity);
- with ``eval.adversarial``: ``adv_acc/<norm>/<eps>`` metrics and the resolved attacks in
  ``summary.json`` (``adversarial``), see `v1sweep.trial.adversarial`;
- ``model.pt``: the trained weights (a state dict), which model-level analyses rebuild the network from;
- ``summary.json``: resolved config, metrics, history, images/s, wall time, device, versions.

A finished trial (``summary.json`` with status ``finished`` and the same config) is returned as
stored, without retraining. If only the evaluation settings changed, the finished checkpoint is
reused and only the evaluation runs again. This module must not import ray, mlflow or optuna.
"""
from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from v1sweep import contracts as C
from v1sweep.config.trial import TrialConfig, to_dict, to_yaml
from v1sweep.errors import ConfigError, OutputError, TrialFailed
from v1sweep.io import write_json
from v1sweep.trial.evaluation import evaluate_clean, evaluate_corruptions, predict_topk, read_table, summarize, write_table
from v1sweep.rf.params import FIELDS, RFParams
from v1sweep.trial.training import (check_checkpoint, config_fingerprint, fit, resolve_device, save_checkpoint,
                              seed_everything)

SUMMARY = C.SUMMARY_JSON
CHECKPOINT = C.CHECKPOINT_PT
MODEL = C.MODEL_PT
Log = Callable[[str], Any]


@dataclass
class TrialResult:
    """What a trial produced: final `metrics` (contract names), the full `summary`, the sampled `rf`."""

    metrics: dict[str, float]
    summary: dict[str, Any]
    rf: RFParams | None
    history: list[dict] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)
    out_dir: Path | None = None


# ----------------------------------------------------------------------------- small helpers
def _json_safe(value: Any) -> Any:
    """NaN/inf -> None (strict JSON); numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_json(path, _json_safe(dict(data)), indent=2, allow_nan=False)


def _config_key(config: TrialConfig) -> dict[str, Any]:
    """The config as stored in a summary, minus the device (results do not depend on where they ran)."""
    tree = to_dict(config)
    tree["train"] = {k: v for k, v in tree["train"].items() if k != "device"}
    return tree


def versions() -> dict[str, str]:
    from v1sweep import __version__

    out = {"v1sweep": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": np.__version__}
    try:
        import torchvision

        out["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
    return out


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    """The trained weights alone (a CPU state dict, loadable with weights_only=True), for analyses."""
    save_checkpoint(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads, {platform.machine()})"


def empty_rf() -> RFParams:
    arrays = {f: np.zeros(0) for f in FIELDS}
    arrays["color"] = np.zeros(0, dtype=np.int64)
    arrays["complex"] = np.zeros(0, dtype=bool)
    return RFParams(**arrays)


def _finished_result(out_dir: Path, config: TrialConfig) -> TrialResult | None:
    path = out_dir / SUMMARY
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if summary.get("status") != "finished" or summary.get("config_key") != _config_key(config):
        return None
    metrics = {k: (float("nan") if v is None else float(v)) for k, v in summary["metrics"].items()}
    rf = None
    if config.frontend.enabled and (out_dir / C.RF_PARAMS_CSV).exists():
        rf = RFParams.from_csv(out_dir / C.RF_PARAMS_CSV)
    table = read_table(out_dir / C.EVAL_TABLE_CSV) if (out_dir / C.EVAL_TABLE_CSV).exists() else []
    return TrialResult(metrics=metrics, summary=summary, rf=rf, history=summary.get("history", []),
                       table=table, out_dir=out_dir)


# ----------------------------------------------------------------------------- the stages
def sample_rf(config: TrialConfig) -> RFParams | None:
    """The trial's RF parameters (None for a plain baseline without the V1 block)."""
    if not config.frontend.enabled:
        return None
    from v1sweep.rf import sample

    fe = config.frontend
    return sample(config.rf.strategy, fe.n_simple, fe.n_complex, seed=config.rf.seed, sf_max=fe.sf_max,
                  **config.rf.sampler_options())


EFFECTIVE_KEYS = ("rf_similarity", "rf_normsim", "rf_similarity/sf_simple", "rf_similarity/sf_complex",
                  "rf_similarity/sf_nx", "rf_similarity/nxny", "rf_normsim/sf_simple", "rf_normsim/sf_complex",
                  "rf_normsim/sf_nx", "rf_normsim/nxny")


def effective_similarity(block: Any, rf: RFParams, preset: str) -> dict[str, float]:
    """Similarity measured on the filters as built: each unit's SF read from its (ksize-truncated)
    kernel's spectrum (`v1sweep.rf.similarity.effective_sf`). Logged as ``rf_similarity_eff*`` and
    ``rf_normsim_eff*`` beside the nominal ``rf_similarity*`` / ``rf_normsim*``, with ``rf_eff_sf_off_frac``, the share of units whose effective
    SF is more than half an octave from the nominal one (the metric names say which is which)."""
    from v1sweep.rf.similarity import effective_rf, effective_sf, rf_similarity

    kernels = block.kernels.detach().cpu().numpy()
    quad = np.zeros_like(kernels)
    if block.kernels_quadrature.shape[0]:
        quad[np.asarray(rf.complex, dtype=bool)] = block.kernels_quadrature.detach().cpu().numpy()
    sf = effective_sf(kernels, block.ppd, quad)
    scores = rf_similarity(effective_rf(rf, sf), preset=preset)
    out = {}
    for key, value in scores.items():
        if key in EFFECTIVE_KEYS:
            head, sep, prop = key.partition("/")
            out[f"{head}_eff{sep}{prop}"] = value
    out["rf_eff_sf_off_frac"] = float(np.mean(np.abs(np.log2(sf / np.asarray(rf.sf))) > 0.5))
    return out


def _write_rf_artifacts(rf: RFParams | None, config: TrialConfig, out_dir: Path, log: Log) -> None:
    (rf if rf is not None else empty_rf()).to_csv(out_dir / C.RF_PARAMS_CSV)
    if rf is None:
        return
    try:
        from v1sweep.rf.plots import plot_rf_histograms

        plot_rf_histograms(rf, out_dir / C.RF_HISTOGRAMS_PNG, preset=config.rf.preset)
    except ImportError as exc:  # matplotlib is optional on a bare GPU box
        log(f"{C.RF_HISTOGRAMS_PNG} skipped ({exc})")


def make_loader(config: TrialConfig, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> Any:
    from v1sweep.data.loader import Augment, BatchLoader

    return BatchLoader(images, labels, config.train.batch_size, shuffle=True, seed=config.train.seed,
                       device=device, augment=Augment.from_config(config.data))


def check_writable(out_dir: Path) -> None:
    """Fail before any work when `out_dir` cannot be created or written (not after training)."""
    import os

    existing = out_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write the trial output {out_dir}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write the trial output {out_dir}: {existing} is read-only")


def _check_attacks(config: TrialConfig, model: torch.nn.Module, data: Any, device: torch.device) -> None:
    """Before training: every attack's image count fits the test set, and the model has input
    gradients (a private RNG, so the training run is the same with and without attacks)."""
    from v1sweep.trial.adversarial import attack_mode, check_gradients

    n_test = len(data.test_labels)
    for i, attack in enumerate(config.eval.adversarial):
        if attack.images is not None and attack.images > n_test:
            raise ConfigError(f"{attack.images} images but the test set has {n_test}; allowed: [1, {n_test}]",
                              key=f"eval.adversarial[{i}].images")
    x01 = data.test_images[:2].to(device).float() / 255.0
    with attack_mode(model, config.eval.seed, device):
        check_gradients(model, x01, data.test_labels[:2].to(device), amp=device.type == "cuda")


def _run_attacks(config: TrialConfig, model: torch.nn.Module, test_images: torch.Tensor, test_labels: torch.Tensor,
                 device: torch.device, log: Log) -> list[dict]:
    from v1sweep.trial.adversarial import run_attacks

    start = time.perf_counter()
    log(f"white-box attacks ({len(config.eval.adversarial)}):")
    _, rows = run_attacks(model, test_images, test_labels, config.eval.adversarial, stochastic=config.stochastic,
                          seed=config.eval.seed, batch_size=config.eval.batch_size, device=device, log=log)
    log(f"adversarial evaluation {time.perf_counter() - start:.1f} s")
    return rows


def _epoch_attacks(config: TrialConfig, model: torch.nn.Module, test_images: torch.Tensor,
                   test_labels: torch.Tensor, device: torch.device) -> dict[str, float]:
    """``eval.adversarial_per_epoch``: the attacks on the model of this epoch, as ``val_adv_acc/...``
    (own RNG: the training run is unchanged)."""
    from v1sweep.trial.adversarial import run_attacks
    from v1sweep.config.adversarial import epoch_metric_name

    metrics, _ = run_attacks(model, test_images, test_labels, config.eval.adversarial, stochastic=config.stochastic,
                             seed=config.eval.seed, batch_size=config.eval.batch_size, device=device)
    return {epoch_metric_name(k): v for k, v in metrics.items()}


def run_trial(config: TrialConfig, out_dir: str | Path, *, on_epoch: Callable[[int, dict], Any] | None = None,
              log: Log | None = print) -> TrialResult:
    """Run one trial into `out_dir` (see the module doc); returns metrics, summary and RF params.

    Raises `TrialFailed` (reason ``diverged`` on a non-finite loss; a ``summary.json`` with status
    ``failed`` is written first) and `ConfigError` for a checkpoint from another config.
    """
    log = log or (lambda _msg: None)
    start = time.perf_counter()
    out_dir = Path(out_dir)
    done = _finished_result(out_dir, config)
    if done is not None:
        log(f"trial {config.name!r} already finished in {out_dir}; returning the stored result")
        return done

    # Every input is checked before anything is written: a bad dataset, RF file, device, corruption
    # set or a checkpoint from another config leaves `out_dir` as it was.
    check_writable(out_dir)
    device = resolve_device(config.train.device)
    rf = sample_rf(config)
    metrics: dict[str, float] = {}
    if rf is not None:
        from v1sweep.rf.similarity import rf_similarity

        metrics.update(rf_similarity(rf, preset=config.rf.preset))

    from v1sweep.data import load_dataset
    from v1sweep.trial.models import build_model

    data = load_dataset(config.data)
    num_classes = len(data.classes)
    seed_everything(config.train.seed)  # weights: the training seed, not the Gabor seed
    model = build_model(config, rf, num_classes).to(device)
    if rf is not None and getattr(model, "vone", None) is not None:
        metrics.update(effective_similarity(model.vone, rf, config.rf.preset))
    fp = config_fingerprint(config)
    ckpt = out_dir / CHECKPOINT if config.train.checkpoint else None
    if ckpt is not None and ckpt.exists():
        check_checkpoint(ckpt, fingerprint=fp, epochs=config.train.epochs)
    source = None
    if config.eval.corruptions and config.eval.severities:
        # Found (published) or materialized (generated, cached per sweep) before training, so a wrong
        # eval.path fails in seconds rather than after the training run.
        from v1sweep.corruptions import source_for

        source = source_for(config.eval, data.test_images, data.test_labels, config.data.image_size,
                            classes=data.classes, device=device, log=log)

    if config.eval.adversarial:
        _check_attacks(config, model, data, device)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / C.CONFIG_YAML).write_text(to_yaml(config))
    _write_rf_artifacts(rf, config, out_dir, log)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"trial {config.name!r}: {config.data.dataset} {config.data.image_size} px, {len(data.train_labels)} "
        f"train / {len(data.test_labels)} test images, {num_classes} classes; {config.model.backbone} "
        f"{'with' if rf is not None else 'without'} V1 block ({n_params:,} trainable parameters); "
        f"device {device_description(device)}")

    test_images = data.test_images.to(device)
    test_labels = data.test_labels.to(device)
    loader = make_loader(config, data.train_images, data.train_labels, device)
    batch = config.eval.batch_size

    def val_fn(m: torch.nn.Module) -> dict[str, float]:  # val_loss drives the study's plateau schedule
        out = predict_topk(m, test_images, test_labels, batch_size=batch, device=device, k=1)
        metrics = {"val_acc": out["top1"], "val_loss": out["loss"]}
        if config.eval.adversarial and config.eval.adversarial_per_epoch:
            metrics.update(_epoch_attacks(config, m, test_images, test_labels, device))
        return metrics

    ran: list[int] = []

    def epoch_hook(epoch: int, epoch_metrics: dict) -> None:
        ran.append(epoch)
        if on_epoch is not None:
            on_epoch(epoch, epoch_metrics)

    try:
        history = fit(model, loader, config=config.train, val_fn=val_fn, checkpoint_path=ckpt,
                      on_epoch=epoch_hook, log=log, device=device, fingerprint=fp)
    except TrialFailed as exc:
        _write_json(out_dir / SUMMARY, {"name": config.name, "status": "failed", "reason": exc.reason,
                                        "error": str(exc), "config": to_dict(config),
                                        "config_key": _config_key(config), "config_fingerprint": fp,
                                        "device": device_description(device), "versions": versions()})
        raise

    clean = evaluate_clean(model, test_images, test_labels, batch_size=batch, device=device)
    metrics[C.CLEAN_ACC], metrics[C.CLEAN_TOP5] = clean["clean_acc"], clean["clean_top5"]
    log(f"clean accuracy {clean['clean_acc']:.4f} (top-5 {clean['clean_top5']:.4f}) on {clean['n']} images")
    table: list[dict] = []
    if source is not None:
        eval_start = time.perf_counter()
        table = evaluate_corruptions(model, source, batch_size=batch, device=device)
        write_table(table, out_dir / C.EVAL_TABLE_CSV)
        metrics.update({k: v for k, v in summarize(table, clean["clean_acc"]).items() if k != C.CLEAN_ACC})
        log(f"corruption accuracy {metrics[C.CORRUPTION_ACC]:.4f} over {len(table)} (corruption, severity) "
            f"pairs ({time.perf_counter() - eval_start:.1f} s)")

    adversarial: list[dict] = []
    if config.eval.adversarial:
        adversarial = _run_attacks(config, model, test_images, test_labels, device, log)
        metrics.update({row["metric"]: row["accuracy"] for row in adversarial})

    rates = [h["images_per_s"] for h in history]
    metrics[C.TRAIN_IMAGES_PER_S] = float(np.median(rates)) if rates else float("nan")
    earlier = sum(h.get("epoch_wall_s", 0.0) for h in history if h["epoch"] not in ran)
    metrics[C.WALL_TIME_S] = time.perf_counter() - start + earlier
    summary = {
        "name": config.name, "status": "finished", "config": to_dict(config), "config_key": _config_key(config),
        "config_fingerprint": fp, "metrics": metrics, "history": history,
        "train_images_per_s": metrics[C.TRAIN_IMAGES_PER_S], "wall_time_s": metrics[C.WALL_TIME_S],
        "epochs": len(history), "num_classes": num_classes,
        "images": {"train": len(data.train_labels), "test": len(data.test_labels)},
        "device": device_description(device), "versions": versions(), "command": " ".join(sys.argv),
    }
    if adversarial:
        summary["adversarial"] = adversarial
    if source is not None:  # what the corrupted set was made with (frost source used, storage format)
        summary["corruption_set"] = getattr(source, "info", {"source": config.eval.source, "path": config.eval.path})
    _save_weights(model, out_dir / MODEL)
    _write_json(out_dir / SUMMARY, summary)
    log(f"trial {config.name!r} finished in {metrics[C.WALL_TIME_S]:.1f} s; summary in {out_dir / SUMMARY}")
    return TrialResult(metrics=metrics, summary=summary, rf=rf, history=history, table=table, out_dir=out_dir)
