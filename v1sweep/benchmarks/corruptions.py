"""`v1sweep bench corruptions`: images/s of the batched suite next to a per-image numpy formulation.

For every corruption, all five severities run over `--images` images with the batched torch
suite (in the chunks `materialize` uses) and over `--reference-images` images with the per-image
numpy / scipy / PIL path of `v1sweep.corruptions.reference`, back to back so that load changes
on a shared machine hit both alike. Prints images/s of both and their ratio per corruption and
for the whole 19 x 5 suite, and extrapolates the time to materialize a CIFAR-10-sized set
(19 x 5 x 10,000 images of 32 px). Inputs are synthetic natural-looking images.
"""
from __future__ import annotations

import argparse
import time

HELP = "corruption suite: batched torch vs per-image numpy (img/s, ratio, full-set time estimate)"

FULL_SET_IMAGES = 19 * 5 * 10_000
TARGET_MINUTES = 10.0
TARGET_RATIO_CPU, TARGET_RATIO_GPU = 20.0, 100.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=1000, help="images for the batched suite (default 1000)")
    parser.add_argument("--reference-images", type=int, default=20,
                        help="images for the per-image numpy path (default 20; it is slow)")
    parser.add_argument("--image-size", type=int, default=32, help="pixels (default 32, CIFAR-10)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default cpu")
    parser.add_argument("--corruptions", default=None, help="comma-separated subset (default: all 19)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)


def _images(n: int, size: int, seed: int):
    try:
        from v1sweep.data.synthetic import generate
    except ImportError:  # the data package is optional for this benchmark
        generate = None
    if generate is not None:
        return generate(n, size, seed, "test")[0]
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(2, size // 8), max(2, size // 8), generator=g)
    x = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    x = x + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def run(args: argparse.Namespace) -> int:
    import torch

    from v1sweep.corruptions.catalog import CORRUPTIONS
    from v1sweep.corruptions.materialize import default_batch
    from v1sweep.corruptions.reference import apply_reference
    from v1sweep.corruptions.suite import apply
    from v1sweep.corruptions.textures import frost_source

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("v1sweep bench corruptions: --device cuda but CUDA is not available")
    names = list(CORRUPTIONS) if not args.corruptions else [c.strip() for c in args.corruptions.split(",")]
    for name in names:
        if name not in CORRUPTIONS:
            raise SystemExit(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    size, n, m = args.image_size, args.images, min(args.reference_images, args.images)
    u8 = _images(n, size, args.seed)
    x_all = u8.float().div(255).to(args.device)
    x_ref = u8[:m].permute(0, 2, 3, 1).double().div(255).numpy()
    batch = default_batch(size, size)
    dev = torch.device(args.device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def batched(name: str, sev: int, x) -> None:
        for s in range(0, x.shape[0], batch):
            y = apply(x[s:s + batch], name, sev, seed=args.seed, indices=torch.arange(s, min(s + batch, x.shape[0])))
            y.mul(255).round_().to(torch.uint8).cpu()  # as materialize stores it

    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"corruption suite benchmark: {n} images of {size} px (batched, {device_name}) vs {m} images "
          f"(per-image numpy reference, CPU); 5 severities each; frost textures: {frost_source()}")
    for name in names:  # warm-up: imports, textures, caches
        batched(name, 1, x_all[:2])
        apply_reference(x_ref[:1], name, 1)
    sync()
    print(f"{'corruption':<18} {'batched img/s':>14} {'numpy img/s':>12} {'ratio':>8}")
    total_fast = total_ref = 0.0
    for name in names:
        t0 = time.perf_counter()
        for sev in range(1, 6):
            batched(name, sev, x_all)
        sync()
        fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        for sev in range(1, 6):
            apply_reference(x_ref, name, sev, seed=args.seed)
        ref = time.perf_counter() - t0
        total_fast += fast / n
        total_ref += ref / m
        fast_rate, ref_rate = 5 * n / fast, 5 * m / ref
        print(f"{name:<18} {fast_rate:>14.0f} {ref_rate:>12.0f} {fast_rate / ref_rate:>7.1f}x", flush=True)
    suite_fast = 5 * len(names) / total_fast
    suite_ref = 5 * len(names) / total_ref
    ratio = suite_fast / suite_ref
    print(f"{'whole suite':<18} {suite_fast:>14.0f} {suite_ref:>12.0f} {ratio:>7.1f}x")
    if len(names) == len(CORRUPTIONS) and size == 32:
        minutes = FULL_SET_IMAGES / suite_fast / 60
        ref_hours = FULL_SET_IMAGES / suite_ref / 3600
        target_ratio = TARGET_RATIO_GPU if dev.type == "cuda" else TARGET_RATIO_CPU
        print(f"full CIFAR-10-sized set (19 x 5 x 10,000 images of 32 px): {minutes:.1f} min batched "
              f"(target <= {TARGET_MINUTES:g} min: {'met' if minutes <= TARGET_MINUTES else 'MISSED'}), "
              f"{ref_hours:.1f} h per-image numpy; ratio {ratio:.1f}x "
              f"(target >= {target_ratio:g}x: {'met' if ratio >= target_ratio else 'MISSED'})")
    else:
        print("full-set extrapolation needs all 19 corruptions at 32 px")
    return 0
