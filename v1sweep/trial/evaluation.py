"""Evaluation: clean top-1/top-5, corruption accuracy over (corruption, severity) pairs, summaries.

Images arrive as uint8 (N, 3, H, W) tensors and are normalised here exactly like training batches,
``(x / 255 - 0.5) / 0.5``. The model runs in eval mode under `torch.inference_mode`, with bf16
autocast on CUDA and the V1 block's stochastic noise frozen (same noise for every trial and pair),
so evaluation is deterministic.

Corruption sources implement ``pairs() -> [(name, severity)]`` and
``load(name, severity) -> (uint8 images, int64 labels)``; `evaluate_corruptions` returns a tidy
table (one dict per pair) and `summarize` turns it into the contract metrics. Metric definitions
follow Hendrycks & Dietterich 2019 (see docs/trial_config.md).
"""
from __future__ import annotations

import contextlib
import csv
import math
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import torch
from torch import nn

from v1sweep.corruptions.catalog import BENCHMARK_CORRUPTIONS, CATEGORIES, category_of, registered

TABLE_COLUMNS = ("corruption", "category", "severity", "accuracy", "n")
NOISE_SEED = 0


class CorruptionSource(Protocol):
    def pairs(self) -> list[tuple[str, int]]: ...

    def load(self, name: str, severity: int) -> tuple[torch.Tensor, torch.Tensor]: ...


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or [0, 255] float) -> float in [-1, 1], the training normalisation (mean = std = 0.5)."""
    return (images.float() / 255.0 - 0.5) / 0.5


def _uses_channels_last(model: nn.Module) -> bool:
    for p in model.parameters():
        if p.dim() == 4 and p.is_contiguous() != p.is_contiguous(memory_format=torch.channels_last):
            return p.is_contiguous(memory_format=torch.channels_last)
    return False


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module, noise_seed: int = NOISE_SEED) -> Iterator[nn.Module]:
    """Eval mode with the V1 block's noise frozen; restores training mode and noise afterwards."""
    was_training = model.training
    vone: Any = getattr(model, "vone", None)
    frozen = vone is not None and hasattr(vone, "freeze_noise")
    model.eval()
    if frozen:
        vone.freeze_noise(noise_seed)
    try:
        yield model
    finally:
        if frozen and hasattr(vone, "unfreeze_noise"):
            vone.unfreeze_noise()
        model.train(was_training)


def predict_topk(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500,
                 device: str | torch.device | None = None, k: int = 5,
                 noise_seed: int = NOISE_SEED) -> dict[str, Any]:
    """Top-1 and top-k accuracy and the mean cross-entropy ``loss`` of `model` on uint8 `images`;
    the model must be on `device`."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    device = torch.device(device) if device is not None else _model_device(model)
    channels_last = _uses_channels_last(model)
    use_amp = device.type == "cuda"
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    topk = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    with eval_mode(model, noise_seed), torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = normalize(images[start:start + batch_size].to(device, non_blocking=True))
            y = labels[start:start + batch_size].to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(x)
            logits = logits.float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").double()
            kk = min(k, logits.shape[1])
            pred = logits.topk(kk, dim=1).indices
            hit = pred == y[:, None]
            top1 += hit[:, 0].sum()
            topk += hit.any(dim=1).sum()
    n = len(labels)
    return {"top1": top1.item() / n if n else float("nan"),
            f"top{k}": topk.item() / n if n else float("nan"), "n": n,
            "loss": loss_sum.item() / n if n else float("nan")}


def evaluate_clean(model: nn.Module, images_uint8: torch.Tensor, labels: torch.Tensor, batch_size: int = 500,
                   device: str | torch.device | None = None) -> dict[str, Any]:
    """Clean accuracy: ``clean_acc`` (top-1), ``clean_top5`` and ``n``."""
    out = predict_topk(model, images_uint8, labels, batch_size=batch_size, device=device, k=5)
    return {"clean_acc": out["top1"], "clean_top5": out["top5"], "n": out["n"]}


def evaluate_corruptions(model: nn.Module, source: CorruptionSource, *, batch_size: int = 500,
                         device: str | torch.device | None = None,
                         log: Callable[[str], Any] | None = None) -> list[dict[str, Any]]:
    """Top-1 accuracy for every (corruption, severity) pair of `source`; one row per pair."""
    rows = []
    pairs = list(source.pairs())
    bar = _progress_bar(len(pairs), "corruptions")
    try:
        for name, severity in pairs:
            images, labels = source.load(name, severity)
            out = predict_topk(model, images, labels, batch_size=batch_size, device=device, k=1)
            rows.append({"corruption": name, "category": _category(name),
                         "severity": int(severity), "accuracy": out["top1"], "n": out["n"]})
            if bar is not None:
                bar.set_postfix_str(f"{name}/{severity} {out['top1']:.3f}", refresh=False)
                bar.update(1)
            if log is not None:
                log(f"  {name}/{severity}: {out['top1']:.4f} (n={out['n']})")
    finally:
        if bar is not None:
            bar.close()
    return rows


def _progress_bar(total: int, desc: str) -> Any:
    """A transient tqdm bar on stderr on a terminal (see `training.interactive`), else None."""
    import sys

    from v1sweep.trial.training import interactive

    if not interactive():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="set", file=sys.stderr, leave=False, dynamic_ncols=True)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def per_corruption(table: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Corruption name -> mean accuracy over its severities (order of first appearance)."""
    by_name: dict[str, list[float]] = {}
    for row in table:
        by_name.setdefault(row["corruption"], []).append(float(row["accuracy"]))
    return {name: _mean(accs) for name, accs in by_name.items()}


def _category(name: str) -> str:
    """A registered corruption's category (plugins included), "other" for a name nobody registered."""
    return category_of(name) if name in registered() else "other"


def _headline_names(names: Sequence[str]) -> list[str]:
    """The corruptions averaged into the headline metrics: the benchmark 15 when any is present
    (held-out extras get their own metric but stay out of the mean, as in Hendrycks & Dietterich)."""
    bench = [n for n in names if n in BENCHMARK_CORRUPTIONS]
    return bench if bench else list(names)


def summarize(table: Sequence[Mapping[str, Any]], clean_acc: float | None = None) -> dict[str, float]:
    """Contract metrics from a corruption table.

    ``corruption_acc``: mean over corruptions of the mean over severities; ``corruption_acc/<category>``
    and ``corruption_acc/<name>`` likewise; ``mce_unnormalized`` = 1 - corruption_acc (mean top-1
    error, the mCE without a baseline); with `clean_acc`, also ``clean_acc`` and
    ``relative_mce_unnormalized`` = mean over corruptions of (mean corrupted error - clean error).
    """
    metrics: dict[str, float] = {}
    if clean_acc is not None:
        metrics["clean_acc"] = float(clean_acc)
    accs = per_corruption(table)
    if not accs:
        return metrics
    headline = _headline_names(list(accs))
    metrics["corruption_acc"] = _mean([accs[n] for n in headline])
    for category in CATEGORIES:
        members = [accs[n] for n in headline if _category(n) == category]
        if members:
            metrics[f"corruption_acc/{category}"] = _mean(members)
    for name, acc in accs.items():
        metrics[f"corruption_acc/{name}"] = acc
    metrics["mce_unnormalized"] = 1.0 - metrics["corruption_acc"]
    if clean_acc is not None:
        metrics["relative_mce_unnormalized"] = _mean([(1 - accs[n]) - (1 - clean_acc) for n in headline])
    return metrics


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 and math.isfinite(den) else float("nan")


def relative_robustness(metrics: Mapping[str, float], baseline_metrics: Mapping[str, float]) -> dict[str, float]:
    """Robustness of a run against a named baseline run, from their summary metrics.

    ``relative_robustness`` = (acc - acc_base) / acc_base on ``corruption_acc`` (and per category);
    ``ce/<name>`` = E_c / E_base,c and ``mce`` their mean (with the same severities, the sums over
    severities in CE_c reduce to the mean errors); ``relative_ce/<name>`` =
    (E_c - E_clean) / (E_base,c - E_base,clean) and ``relative_mce`` their mean.
    Undefined ratios (zero baseline error) are NaN.
    """
    out: dict[str, float] = {}
    for key in ["corruption_acc"] + [f"corruption_acc/{c}" for c in CATEGORIES]:
        if key in metrics and key in baseline_metrics:
            suffix = key[len("corruption_acc"):]
            out[f"relative_robustness{suffix}"] = _ratio(metrics[key] - baseline_metrics[key], baseline_metrics[key])
    names = [k.split("/", 1)[1] for k in metrics
             if k.startswith("corruption_acc/") and k.split("/", 1)[1] in registered()
             and k in baseline_metrics]
    names = _headline_names(names)
    if not names:
        return out
    ce, rce = [], []
    for name in names:
        err, base_err = 1 - metrics[f"corruption_acc/{name}"], 1 - baseline_metrics[f"corruption_acc/{name}"]
        out[f"ce/{name}"] = _ratio(err, base_err)
        ce.append(out[f"ce/{name}"])
        if "clean_acc" in metrics and "clean_acc" in baseline_metrics:
            gap = err - (1 - metrics["clean_acc"])
            base_gap = base_err - (1 - baseline_metrics["clean_acc"])
            out[f"relative_ce/{name}"] = _ratio(gap, base_gap)
            rce.append(out[f"relative_ce/{name}"])
    out["mce"] = _mean(ce)
    if rce:
        out["relative_mce"] = _mean(rce)
    return out


def write_table(table: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """The corruption table as CSV (columns `TABLE_COLUMNS`)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in table:
            writer.writerow(row)


def read_table(path: str | Path) -> list[dict[str, Any]]:
    with open(path, newline="") as handle:
        return [{"corruption": r["corruption"], "category": r["category"], "severity": int(r["severity"]),
                 "accuracy": float(r["accuracy"]), "n": int(r["n"])} for r in csv.DictReader(handle)]
