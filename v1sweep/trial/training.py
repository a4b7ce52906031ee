"""The training loop: SGD with momentum, LR schedules, bf16 on CUDA, checkpoints, resume, divergence.

`fit` trains a model on batches from a loader (any iterable of ``(images, labels)`` already on the
device and normalised) and returns the per-epoch history. It writes a checkpoint after every epoch
and, given the same checkpoint path, continues from it: model, optimizer, scheduler, history, the
global RNG states and (when the loader offers ``state_dict``/``set_epoch``) the data order are all
restored, so a resumed run follows the same curve as an uninterrupted one.

A checkpoint carries a fingerprint of the config that produced it; resuming under another config is
refused (`ConfigError`), never silently mixed. Only tensors and plain Python types are stored, so it
loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, cast

import numpy as np
import torch
from torch import nn

from v1sweep.config.trial import TrainConfig, TrialConfig
from v1sweep.errors import ConfigError, OutputError, TrialFailed
from v1sweep.config.schema import to_dict

CHECKPOINT_FORMAT = 1
# Config keys that do not change the training curve, so a checkpoint may be resumed across them.
# `epochs` only matters to the cosine schedule (its period), where it stays in the fingerprint.
_NEUTRAL_TRAIN_KEYS = ("epochs", "device", "checkpoint", "channels_last", "preset")
# Trial sections that do not affect training (evaluation can change without retraining).
_NEUTRAL_SECTIONS = ("name", "eval")

EpochCallback = Callable[[int, dict], Any]


# ----------------------------------------------------------------------------- seeds and devices
def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu; anything else must name an available device."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N",
                          key="train.device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available", key="train.device")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {name!r}; allowed: auto, cpu, cuda, cuda:N",
                          key="train.device")
    return device


def config_fingerprint(config: TrainConfig | TrialConfig) -> str:
    """A short hash of the parts of a config that shape the training curve.

    Leaves out the device, the epoch count (except for the cosine schedule, whose period it sets),
    the trial name and the evaluation section, so a run can be extended or re-evaluated.
    """
    tree = to_dict(config)
    train = tree if isinstance(config, TrainConfig) else tree["train"]
    neutral = [k for k in _NEUTRAL_TRAIN_KEYS if not (k == "epochs" and train.get("schedule") == "cosine")]
    train = {k: v for k, v in train.items() if k not in neutral}
    if isinstance(config, TrainConfig):
        tree = train
    else:
        tree = {k: v for k, v in tree.items() if k not in _NEUTRAL_SECTIONS}
        tree["train"] = train
    text = json.dumps(tree, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- optimizer, schedule
def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> Any:
    """The per-epoch LR schedule; `None` for `constant`.

    plateau: ReduceLROnPlateau stepped once per epoch on `plateau_metric` — validation loss (mode
    min, the study's recipe) or validation accuracy (mode max); see `plateau_target` — with
    `plateau_factor`, `plateau_patience` and a relative `plateau_threshold` (study: 0.1, 5, 0.01).
    step: lr * step_gamma ** (epoch // step_size). cosine: lr * (1 + cos(pi * epoch / epochs)) / 2.
    """
    sched = torch.optim.lr_scheduler
    if config.schedule == "plateau":
        minimise = config.plateau_metric.endswith("loss")
        return sched.ReduceLROnPlateau(optimizer, mode="min" if minimise else "max", factor=config.plateau_factor,
                                       patience=config.plateau_patience, threshold=config.plateau_threshold,
                                       threshold_mode="rel")
    if config.schedule == "step":
        return sched.StepLR(optimizer, step_size=config.step_size, gamma=config.step_gamma)
    if config.schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1))
    if config.schedule == "constant":
        return None
    raise ConfigError(f"unknown schedule {config.schedule!r}; allowed: plateau, step, cosine, constant",
                      key="train.schedule")


def plateau_target(config: TrainConfig, metrics: Mapping[str, float], has_val: bool) -> float:
    """The value the plateau schedule watches this epoch: `plateau_metric` from validation, or its
    training counterpart (train_loss / train_acc) when `fit` has no `val_fn`."""
    name = config.plateau_metric if has_val else config.plateau_metric.replace("val_", "train_")
    if name not in metrics or not math.isfinite(metrics[name]):
        raise ConfigError(f"train.plateau_metric is {config.plateau_metric!r} but the validation gave no "
                          f"{name!r}; return it from val_fn (a dict) or set train.plateau_metric",
                          key="train.plateau_metric")
    return float(metrics[name])


# ----------------------------------------------------------------------------- RNG state <-> plain data
def _rng_state() -> dict[str, Any]:
    legacy = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())  # legacy=True: a tuple
    name, keys, pos, has_gauss, cached = legacy
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write atomically: a temporary file in the same folder, then `os.replace`."""
    path = Path(path)
    if not path.parent.is_dir():  # never recreate it silently: what else was in it is gone too
        raise OutputError(f"output folder {path.parent} vanished during the run; cannot write {path.name}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(dict(state), tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | Path, *, fingerprint: str | None = None,
                    map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint (tensors and plain types only) and check it was written for this config."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise ConfigError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} is not a v1sweep checkpoint (format {CHECKPOINT_FORMAT})")
    if fingerprint is not None and state.get("fingerprint") != fingerprint:
        raise ConfigError(
            f"checkpoint from another config: {path} was written for config {state.get('fingerprint')}, "
            f"this config is {fingerprint}; delete the checkpoint or use another output folder")
    return state


def check_checkpoint(path: str | Path, *, fingerprint: str, epochs: int) -> dict[str, Any]:
    """Load `path` and check it can be resumed under this config (fingerprint, epoch <= `epochs`)."""
    state = load_checkpoint(path, fingerprint=fingerprint, map_location="cpu")
    if state["epoch"] > epochs:
        raise ConfigError(f"checkpoint {path} is at epoch {state['epoch']}, past train.epochs {epochs}; "
                          f"raise train.epochs or use another output folder", key="train.epochs")
    return state


# ----------------------------------------------------------------------------- progress
class _Progress:
    """In-epoch tqdm bar on stderr (batches, loss, images/s, ETA) when stdout and stderr are both a
    terminal; off a terminal (CI logs, pipes, Ray workers) nothing: `fit` logs one line per epoch."""

    def __init__(self, epoch: int, epochs: int, total: int | None, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = interactive(self.stream)
        self.start = self.last = time.perf_counter()
        self.bar: Any = None
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="batch", file=self.stream,
                            leave=False, dynamic_ncols=True, mininterval=0.5)

    def due(self) -> bool:
        """Time for another update (checked without synchronising the device)."""
        return self.enabled and time.perf_counter() - self.last >= 0.5

    def update(self, batches: int, images: int, loss: float | None = None) -> None:
        if not self.due():
            return
        now = self.last = time.perf_counter()
        rate = images / max(now - self.start, 1e-9)
        loss_s = f"loss {loss:.3f}, " if loss is not None else ""
        self.bar.set_postfix_str(f"{loss_s}{rate:,.0f} img/s", refresh=False)
        self.bar.update(batches - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def interactive(stream: Any = None) -> bool:
    """Progress bars only when both stdout and `stream` (default stderr) are terminals."""
    stream = stream if stream is not None else sys.stderr
    return all(bool(getattr(s, "isatty", lambda: False)()) for s in (sys.stdout, stream))


# ----------------------------------------------------------------------------- the loop
def _num_batches(loader: Any, max_batches: int | None) -> int | None:
    try:
        n = len(loader)
    except TypeError:
        n = None
    if max_batches is not None:
        n = max_batches if n is None else min(n, max_batches)
    return n


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _val_metrics(val_fn: Callable[[nn.Module], Any] | None, model: nn.Module) -> dict[str, float]:
    if val_fn is None:
        return {}
    out = val_fn(model)
    if isinstance(out, Mapping):
        return {k: float(v) for k, v in out.items()}
    return {"val_acc": float(out)}


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, *,
                    device: torch.device, amp: bool, channels_last: bool, max_batches: int | None,
                    epoch: int, epochs: int, check_every: int | None = None) -> dict[str, float]:
    """One pass over the loader; returns train_loss, train_acc, images, time_s.

    Loss and correct counts accumulate on the device; finiteness is checked every `check_every`
    batches (each batch on CPU) and at the end, raising `TrialFailed("diverged")`.
    """
    model.train()
    use_amp = amp and device.type == "cuda"
    if check_every is None:
        check_every = 1 if device.type == "cpu" else 50
    total = _num_batches(loader, max_batches)
    progress = _Progress(epoch, epochs, total)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    images = 0
    batches = 0
    start = time.perf_counter()
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        batches += 1
        images += len(y)
        loss_sum += loss.detach().double() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        if batches % check_every == 0 or progress.due():
            value = loss_sum.item()
            if not math.isfinite(value):
                progress.close()
                raise TrialFailed("diverged", f"non-finite training loss at epoch {epoch}, batch {batches} "
                                  f"(lr {_current_lr(optimizer):g}); lower train.lr")
            progress.update(batches, images, value / max(images, 1))
        if max_batches is not None and batches >= max_batches:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    progress.close()
    if images == 0:
        raise TrialFailed("empty", f"the training loader yielded no batches in epoch {epoch}")
    train_loss = loss_sum.item() / images
    if not math.isfinite(train_loss):
        raise TrialFailed("diverged", f"non-finite training loss in epoch {epoch} "
                          f"(lr {_current_lr(optimizer):g}); lower train.lr")
    return {"train_loss": train_loss, "train_acc": correct.item() / images, "images": images,
            "time_s": elapsed}


def fit(model: nn.Module, train_loader: Iterable, *, config: TrainConfig,
        val_fn: Callable[[nn.Module], Any] | None = None, checkpoint_path: str | Path | None = None,
        on_epoch: EpochCallback | None = None, log: Callable[[str], Any] | None = print,
        device: str | torch.device | None = None, fingerprint: str | None = None) -> list[dict]:
    """Train `model` for `config.epochs` epochs; returns one metrics dict per epoch (from 1).

    `val_fn(model)` returns the validation accuracy or a dict with ``val_acc`` and ``val_loss``;
    ``train.plateau_metric`` of it drives the plateau schedule (without `val_fn`, its training
    counterpart). `on_epoch(epoch, metrics)` gets ``train_loss``, ``train_acc``, ``val_acc``,
    ``val_loss`` (when `val_fn` gives it), ``lr`` (the rate used in that epoch) and
    ``images_per_s``. With `checkpoint_path`, a checkpoint is written after each epoch and, when the
    file exists, training resumes from it. `fingerprint` identifies the config (default:
    `config_fingerprint(config)`); a checkpoint with another is refused.
    """
    log = log or (lambda _msg: None)
    device = resolve_device(device if device is not None else config.device)
    fp = fingerprint if fingerprint is not None else config_fingerprint(config)
    channels_last = config.channels_last and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    history: list[dict] = []
    start_epoch = 1
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None

    if ckpt is not None and ckpt.exists():
        # Loaded on the CPU: load_state_dict copies into the model's device, and the optimizer
        # moves its state next to its parameters; RNG states must stay CPU tensors.
        state = check_checkpoint(ckpt, fingerprint=fp, epochs=config.epochs)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if state.get("loader") is not None and hasattr(train_loader, "load_state_dict"):
            train_loader.load_state_dict(state["loader"])
        _set_rng_state(state["rng"])
        history = [dict(h) for h in state["history"]]
        start_epoch = state["epoch"] + 1
        if start_epoch <= config.epochs:
            log(f"resuming from {ckpt} at epoch {start_epoch}/{config.epochs}")
        else:
            log(f"training already complete: {ckpt} is at epoch {state['epoch']}/{config.epochs}")
    else:
        seed_everything(config.seed)

    for epoch in range(start_epoch, config.epochs + 1):
        epoch_start = time.perf_counter()
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        lr = _current_lr(optimizer)
        stats = train_one_epoch(model, train_loader, optimizer, device=device, amp=config.amp,
                                channels_last=channels_last, max_batches=config.max_batches,
                                epoch=epoch, epochs=config.epochs)
        val = _val_metrics(val_fn, model)
        model.train()
        metrics = {"epoch": epoch, "train_loss": stats["train_loss"], "train_acc": stats["train_acc"],
                   "val_acc": val.get("val_acc", float("nan")), "lr": lr,
                   "images_per_s": stats["images"] / max(stats["time_s"], 1e-9)}
        metrics.update({k: v for k, v in val.items() if k not in metrics})
        if scheduler is not None:
            if config.schedule == "plateau":
                scheduler.step(plateau_target(config, metrics, val_fn is not None))
            else:
                scheduler.step()
        metrics["epoch_wall_s"] = time.perf_counter() - epoch_start
        history.append(metrics)
        if ckpt is not None:
            save_checkpoint(ckpt, {
                "format": CHECKPOINT_FORMAT, "fingerprint": fp, "epoch": epoch,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "loader": train_loader.state_dict() if hasattr(train_loader, "state_dict") else None,
                "history": history, "rng": _rng_state()})
        val_s = f" val_acc {metrics['val_acc']:.4f}" if val_fn is not None else ""
        log(f"epoch {epoch}/{config.epochs} train_loss {metrics['train_loss']:.4f} "
            f"train_acc {metrics['train_acc']:.4f}{val_s} lr {lr:.3g} "
            f"{metrics['images_per_s']:,.0f} img/s {metrics['epoch_wall_s']:.1f} s")
        if on_epoch is not None:
            on_epoch(epoch, {k: v for k, v in metrics.items() if k not in ("epoch", "epoch_wall_s")})
    return history
