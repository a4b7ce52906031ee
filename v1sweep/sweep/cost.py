"""What a sweep costs before it runs: image-passes per trial and, from a short timed calibration on
this machine, CPU/GPU-hours and wall time (`v1sweep run SWEEP --dry-run [--calibrate]`).

Why: a study sweep runs for hours; the dry run should say how many before Ray starts. The count
is exact arithmetic on the trial config; the seconds are a linear extrapolation from a few timed
steps, so they are as good as the calibration (no data loading, no corruption generation, no
checkpoint writes; a busy machine makes them longer).

Per trial (images = the dataset's train/test sizes after `train_size`/`test_size`, or
`train.max_batches` x batch when set):

- training: ``epochs x train_images`` forward+backward passes;
- validation: ``epochs x test_images`` forward passes (the per-epoch val_acc/val_loss);
- clean test: ``test_images`` forward passes;
- corruptions: ``corruptions x severities x min(eval.max_images, test_images)`` forward passes;
- attacks: `v1sweep.config.adversarial.attack_cost` (forward+backward and forward passes).

seconds = backward_passes x t_train + forward_passes x t_eval, with t_train / t_eval seconds per image
from `calibrate`; CPU-hours = seconds x resources.cpu / 3600 (GPU-hours x resources.gpu); wall time
= the trials' seconds spread over `slots` concurrent trials (longest-first onto the freest slot).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

# Full sizes of the bundled datasets (train, test): what `train_size: null` means.
FULL_SIZES = {"cifar10": (50000, 10000), "tinyimagenet": (100000, 10000)}


@dataclass(frozen=True)
class Passes:
    """Image-passes of one trial: `backward` (forward+backward, training and attacks) and `forward`."""
    train: int
    val: int
    clean: int
    corruptions: int
    attack_backward: int
    attack_forward: int

    @property
    def backward(self) -> int:
        return self.train + self.attack_backward

    @property
    def forward(self) -> int:
        return self.val + self.clean + self.corruptions + self.attack_forward


def dataset_sizes(cfg: Any) -> tuple[int | None, int | None]:
    """(train, test) images the trial uses; None where unknown (an imagefolder without a size)."""
    from v1sweep.data.datasets import SYNTHETIC_DEFAULT_SIZES

    d = cfg.data
    full = SYNTHETIC_DEFAULT_SIZES if d.dataset == "synthetic" else FULL_SIZES.get(d.dataset, (None, None))
    train = d.train_size or full[0]
    test = d.test_size or full[1]
    return train, test


def trial_passes(cfg: Any) -> Passes:
    """The image-passes of one trial config (see the module docstring for the formula)."""
    from v1sweep.config import adversarial as adv

    train, test = dataset_sizes(cfg)
    train, test = train or 0, test or 0
    t = cfg.train
    per_epoch = train if t.max_batches is None else min(train, t.max_batches * t.batch_size)
    e = cfg.eval
    corrupt_images = test if e.max_images is None else min(e.max_images, test)
    corruptions = len(e.corruptions) * len(e.severities) * corrupt_images if e.severities else 0
    attacks = adv.attack_cost(e.adversarial, cfg.stochastic, test)
    return Passes(train=t.epochs * per_epoch, val=t.epochs * test, clean=test, corruptions=corruptions,
                  attack_backward=attacks["backward"], attack_forward=attacks["forward"])


def trial_seconds(passes: Passes, rates: dict[str, float]) -> float:
    """Seconds of one trial: backward passes x s/image (train) + forward passes x s/image (eval)."""
    return passes.backward * rates["train_s_per_image"] + passes.forward * rates["eval_s_per_image"]


def wall_seconds(durations: Sequence[float], slots: int) -> float:
    """Wall time of `durations` run `slots` at a time, each next trial on the slot that frees first
    (longest first, as a grid of equal trials needs ceil(n / slots) rounds)."""
    finish = [0.0] * max(1, int(slots))
    for d in sorted(durations, reverse=True):
        i = finish.index(min(finish))
        finish[i] += d
    return max(finish) if durations else 0.0


def calibrate(cfg: Any, *, steps: int = 5, warmup: int = 2, device: str | None = None,
              threads: int | None = None) -> dict[str, float]:
    """Seconds per image of a training step and of an evaluation forward pass of `cfg`'s model on
    this machine: `warmup` untimed then `steps` timed steps on random images of the trial's size
    (speed does not depend on content), one training batch and one eval batch each. `threads`: torch
    CPU threads while timing (a Ray trial with `resources.cpu: N` runs with N), restored after."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(max(1, int(threads)))
    try:
        return _calibrate(cfg, steps=steps, warmup=warmup, device=device)
    finally:
        torch.set_num_threads(before)


def _calibrate(cfg: Any, *, steps: int, warmup: int, device: str | None) -> dict[str, float]:
    import torch

    from v1sweep.trial.models import build_model
    from v1sweep.trial.training import make_optimizer
    from v1sweep.trial.run import sample_rf

    dev = torch.device(device or ("cuda" if cfg.train.device == "auto" and torch.cuda.is_available()
                                  else ("cpu" if cfg.train.device == "auto" else cfg.train.device)))
    classes = 200 if cfg.data.dataset == "tinyimagenet" else 10
    model = build_model(cfg, sample_rf(cfg), classes).to(dev)
    opt = make_optimizer(model, cfg.train)
    size, bt = cfg.data.image_size, cfg.train.batch_size
    be = min(cfg.eval.batch_size, 1000)
    gen = torch.Generator().manual_seed(0)
    xt = torch.rand(bt, 3, size, size, generator=gen).to(dev)
    yt = torch.randint(0, classes, (bt,), generator=gen).to(dev)
    xe = torch.rand(be, 3, size, size, generator=gen).to(dev)

    def train_step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()

    def eval_step() -> None:
        model.eval()
        with torch.no_grad():
            model(xe)

    return {"train_s_per_image": _timed(train_step, steps, warmup, dev) / bt,
            "eval_s_per_image": _timed(eval_step, steps, warmup, dev) / be,
            "device": str(dev), "threads": float(torch.get_num_threads())}


def _timed(step: Any, steps: int, warmup: int, dev: Any) -> float:
    """Median seconds of `step` over `steps` calls after `warmup` untimed ones (the median: one call
    slowed by another process on a shared machine should not move the estimate)."""
    import statistics

    import torch

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(max(1, steps)):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def local_slots(resources: Any, cpus: int | None = None, gpus: int = 0) -> int:
    """Concurrent trials on this machine for per-trial `resources` (what Ray would schedule)."""
    import os

    cpus = cpus or os.cpu_count() or 1
    by_cpu = int(cpus // resources.cpu) if resources.cpu else cpus
    by_gpu = int(gpus // resources.gpu) if resources.gpu else by_cpu
    return max(1, min(by_cpu, by_gpu))


def hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def describe(configs: Sequence[Any], resources: Any, *, rates: dict[str, float] | None = None,
             slots: int = 1) -> list[str]:
    """Dry-run lines: the per-trial pass counts (the formula's inputs) and, with `rates` from
    `calibrate`, the per-trial seconds, the CPU/GPU-hours requested and the wall time on `slots`."""
    if not configs:
        return []
    passes = [trial_passes(c) for c in configs]
    p, c = max(passes, key=lambda q: q.backward + q.forward), configs[0]
    train, test = dataset_sizes(c)
    lines = [f"cost per trial (largest): {p.train:,} training image-passes (epochs {c.train.epochs} x "
             f"{p.train // max(1, c.train.epochs):,} images, forward+backward) + {p.val:,} validation + "
             f"{p.clean:,} clean + {p.corruptions:,} corruption forward passes "
             f"({len(c.eval.corruptions)} corruptions x {len(c.eval.severities)} severities x "
             f"{p.corruptions // max(1, len(c.eval.corruptions) * len(c.eval.severities)):,} images)"
             + (f" + {p.attack_backward:,} attack forward+backward" if p.attack_backward else "")]
    if train is None or test is None:
        lines.append("  (dataset size unknown: set data.train_size / data.test_size for the counts)")
    if rates is None:
        lines.append(f"  {len(configs)} trials; add --calibrate for seconds, CPU/GPU-hours and wall time "
                     f"(times a few training steps and an eval batch on this machine)")
        return lines
    secs = [trial_seconds(q, rates) for q in passes]
    total = sum(secs)
    lines.append(f"calibration on {rates.get('device', '?')} ({int(rates.get('threads', 0))} threads): "
                 f"{1e3 * rates['train_s_per_image']:.3f} ms/image training, "
                 f"{1e3 * rates['eval_s_per_image']:.3f} ms/image evaluation")
    lines.append(f"estimate: {hms(max(secs))} per trial (largest), {len(configs)} trials = {total / 3600:.2f} "
                 f"trial-hours; {total * resources.cpu / 3600:.2f} CPU-hours"
                 + (f", {total * resources.gpu / 3600:.2f} GPU-hours" if resources.gpu else "")
                 + f"; wall ~{hms(wall_seconds(secs, slots))} on {slots} concurrent slot(s)")
    if resources.gpu and not str(rates.get("device", "")).startswith("cuda"):
        lines.append(f"  (timed on {rates.get('device', 'cpu')}, not on the GPU the sweep requests: the GPU-hours are "
                     f"CPU time, far above what a GPU takes; calibrate on the GPU machine)")
    lines.append("  (linear extrapolation of timed steps: excludes data loading, corruption generation, "
                 "checkpoints and Ray start-up; concurrent trials on shared cores run slower)")
    return lines


def configs_of(spec: Any, trials: Sequence[dict]) -> list[Any]:
    """The trial config of every expanded point (the base config where a point cannot be built,
    e.g. a sampled domain shown as its range)."""
    out = []
    for params in trials or [{}]:
        try:
            out.append(spec.trial_config_for(params))
        except Exception:  # noqa: BLE001 - sampled domains appear as descriptions in a dry run
            out.append(spec.trial)
    return out


