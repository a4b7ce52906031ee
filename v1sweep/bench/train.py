"""`v1sweep bench train`: training images/s of VOneResNet18 (64 px, 200 classes), data pipeline included.

Fast path (what `run_trial` uses): resident uint8 tensors on the device, `BatchLoader` with the
study's augmentation applied on the device, the colour-split V1 block, bf16 autocast +
channels_last on CUDA, measured through `v1sweep.trial.training.train_one_epoch`.

Naive baseline, measured in the same run (like the published trainer): a torch `DataLoader` with
worker processes decoding JPEG bytes per sample with PIL, torchvision `RandomAffine` +
`RandomHorizontalFlip` + `ToTensor` + `Normalize`, and the published V1-block formulation (every
filter convolves all three colour channels, quadrature filters for every unit) in fp32.
The images are random (speed does not depend on content); both paths train the same architecture.

On CPU it also reports the epoch time of the bundled smoke trial (`sweeps/trials/smoke.yaml`).
"""
from __future__ import annotations

import argparse
import io
import math
import os
import time
from pathlib import Path
from typing import Any, cast

HELP = "training images/s: resident tensors + on-device augmentation + bf16 vs a PIL DataLoader fp32 baseline"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--batch", type=int, default=128, help="batch size (the study: 128)")
    parser.add_argument("--image-size", type=int, default=64, help="pixels (the study: 64, Tiny ImageNet)")
    parser.add_argument("--classes", type=int, default=200, help="output classes (Tiny ImageNet: 200)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per path (default: 100 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 15 on CUDA, 1 on CPU)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of the naive baseline (default: min(8, CPUs), as published)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--no-smoke", action="store_true", help="skip the smoke-trial epoch time on CPU")


# ----------------------------------------------------------------------------- the two models
def study_config(image_size: int) -> Any:
    """The study's VOneResNet18 front-end, its SF/ppd scaled to `image_size` (64 px over 2 deg)."""
    from v1sweep.config import trial as cfg

    degrees = 2.0 * image_size / 64
    return cfg.from_dict({"name": "bench", "data": {"dataset": "synthetic", "image_size": image_size},
                          "frontend": {"n_simple": 256, "n_complex": 256, "ksize": 31, "stride": 2,
                                       "visual_degrees": degrees, "sf_max": 11.5},
                          "model": {"backbone": "resnet18", "bottleneck": 64}, "train": {"preset": "study"}})


def naive_vone(block: Any) -> Any:
    """The published VOneBlock formulation of `block`'s filters (same output, ~4x the arithmetic)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from v1sweep.frontend.gabor import gabor_kernels

    class NaiveVOne(nn.Module):
        w0: torch.Tensor
        w1: torch.Tensor
        simple_mask: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            rf = block.rf
            geometry = dict(image_size=block.image_size, visual_degrees=block.visual_degrees, ksize=block.ksize)
            q0 = gabor_kernels(rf, **geometry)
            q1 = gabor_kernels(rf, phase_offset=90.0, **geometry)
            n, k = len(rf), block.ksize
            w0, w1 = torch.zeros(n, 3, k, k), torch.zeros(n, 3, k, k)
            idx = torch.arange(n)
            colour = torch.as_tensor(rf.color, dtype=torch.long)
            w0[idx, colour], w1[idx, colour] = q0, q1
            self.register_buffer("w0", w0)
            self.register_buffer("w1", w1)
            self.register_buffer("simple_mask", torch.as_tensor(~rf.complex, dtype=torch.float32).view(1, -1, 1, 1))
            self.stride, self.pad, self.k_exc = block.stride, k // 2, block.k_exc

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s_q0 = F.conv2d(x, self.w0, None, self.stride, self.pad)
            s_q1 = F.conv2d(x, self.w1, None, self.stride, self.pad)
            complex_ = torch.sqrt(s_q0 ** 2 + s_q1 ** 2) / math.sqrt(2)
            simple = F.relu(s_q0)
            return self.k_exc * (self.simple_mask * simple + (1 - self.simple_mask) * complex_)

    return NaiveVOne()


# ----------------------------------------------------------------------------- naive data pipeline
class _JpegDataset:
    """Per-sample JPEG decode + torchvision transforms, as an ImageFolder pipeline does (minus disk)."""

    def __init__(self, images: Any, labels: Any) -> None:
        from PIL import Image
        from torchvision import transforms

        self.blobs = []
        for img in images.permute(0, 2, 3, 1).numpy():
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=95)
            self.blobs.append(buf.getvalue())
        self.labels = labels.tolist()
        self.transform = transforms.Compose([
            transforms.RandomAffine(degrees=30, translate=(0.05, 0.05), scale=(1.0, 1.2)),
            transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> Any:
        from PIL import Image

        img = Image.open(io.BytesIO(self.blobs[i])).convert("RGB")
        return self.transform(img), self.labels[i]


class _Cycle:
    """Restart a DataLoader (or any iterable) when it ends, so step counts are not capped by its length."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __iter__(self) -> Any:
        while True:
            yield from self.loader


# ----------------------------------------------------------------------------- timing
def _time_steps(model: Any, loader: Any, device: Any, *, amp: bool, channels_last: bool, steps: int,
                warmup: int) -> float:
    import torch

    from v1sweep.trial.training import train_one_epoch

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    kw = dict(device=device, amp=amp, channels_last=channels_last, epoch=1, epochs=1, check_every=10 ** 9)
    it = iter(loader)

    class _Take:  # continue the same iterator across warm-up and timing (keeps DataLoader workers alive)
        def __iter__(self) -> Any:
            return it

    if warmup:
        train_one_epoch(model, _Take(), opt, max_batches=warmup, **kw)
    stats = train_one_epoch(model, _Take(), opt, max_batches=steps, **kw)
    return stats["images"] / stats["time_s"]


def _time_loader(loader: Any, device: Any, batches: int) -> float:
    import torch

    it = iter(loader)
    next(it)
    images, start = 0, time.perf_counter()
    for _ in range(batches):
        x, y = next(it)
        x = x.to(device, non_blocking=True)
        images += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images / (time.perf_counter() - start)


def _smoke_epoch(log: Any) -> None:
    import torch

    from v1sweep.config import trial as cfg
    from v1sweep.data import load_dataset
    from v1sweep.trial.models import build_model
    from v1sweep.trial.training import fit, seed_everything
    from v1sweep.trial.run import make_loader, sample_rf

    path = Path(__file__).resolve().parents[2] / "sweeps" / "trials" / "smoke.yaml"
    if not path.exists():
        log(f"smoke trial: {path} not found (installed without the repository); skipped")
        return
    config = cfg.load(path, {"train.epochs": 1, "train.device": "cpu"})
    data = load_dataset(config.data)
    rf = sample_rf(config)
    seed_everything(config.train.seed)
    model = build_model(config, rf, len(data.classes))
    loader = make_loader(config, data.train_images, data.train_labels, torch.device("cpu"))
    cpu0 = time.process_time()
    history = fit(model, loader, config=config.train, log=None, device="cpu")
    h = history[0]
    log(f"smoke trial epoch ({len(data.train_labels)} images, {config.data.image_size} px, "
        f"{config.model.backbone} + {config.frontend.n_simple}+{config.frontend.n_complex} V1 units): "
        f"{h['epoch_wall_s']:.1f} s wall, {time.process_time() - cpu0:.1f} s CPU, {h['images_per_s']:,.0f} img/s "
        f"on {torch.get_num_threads()} threads")


def run(args: argparse.Namespace) -> int:
    import torch

    from v1sweep.data import Augment, BatchLoader
    from v1sweep.trial.models import build_model
    from v1sweep.trial.training import resolve_device, seed_everything

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    steps = args.steps or (100 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (15 if cuda else 1)
    if cuda:
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if cuda else f"cpu, {torch.get_num_threads()} threads"
    print(f"bench train: VOneResNet18, {args.image_size} px, {args.classes} classes, batch {args.batch}, "
          f"{steps} timed steps after {warmup} warm-up, device {device} ({name})", flush=True)

    config = study_config(args.image_size)
    n_images = args.batch * min(steps + warmup + 1, 64)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, 3, args.image_size, args.image_size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, args.classes, (n_images,), generator=gen)

    from v1sweep.trial.run import sample_rf

    rf = sample_rf(config)
    seed_everything(0)
    model = build_model(config, rf, args.classes).to(device)
    loader = BatchLoader(images, labels, args.batch, shuffle=True, seed=0, device=device,
                         augment=Augment.from_config(config.data))
    fast_loader = _time_loader(_Cycle(loader), device, min(steps, 50))
    fast = _time_steps(model.to(memory_format=torch.channels_last) if cuda else model, _Cycle(loader), device,
                       amp=cuda, channels_last=cuda, steps=steps, warmup=warmup)
    print(f"  fast  (resident tensors, on-device augment, split V1 block{', bf16, channels_last' if cuda else ''}): "
          f"{fast:,.0f} img/s   [loader alone {fast_loader:,.0f} img/s]", flush=True)

    if not args.no_naive:
        from torch.utils.data import DataLoader

        workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
        seed_everything(0)
        naive_model = build_model(config, rf, args.classes)
        naive_model.vone = naive_vone(naive_model.vone)
        naive_model.to(device)
        dataset = _JpegDataset(images, labels)
        dl: DataLoader[Any] = DataLoader(cast(Any, dataset), batch_size=args.batch, shuffle=True, num_workers=workers, pin_memory=cuda,
                        drop_last=True, persistent_workers=workers > 0)
        naive_loader = _time_loader(_Cycle(dl), device, min(steps, 50))
        naive = _time_steps(naive_model, _Cycle(dl), device, amp=False, channels_last=False, steps=steps,
                            warmup=warmup)
        print(f"  naive (PIL JPEG decode + torchvision transforms, DataLoader {workers} workers, published V1 "
              f"formulation, fp32): {naive:,.0f} img/s   [loader alone {naive_loader:,.0f} img/s]")
        print(f"  ratio fast / naive: {fast / naive:.2f}x")
    if not cuda and not args.no_smoke:
        _smoke_epoch(print)
    return 0
