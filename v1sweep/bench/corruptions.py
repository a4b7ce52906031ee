"""`v1sweep bench corruptions`: images/s of the batched suite against the `imagecorruptions` package.

For every corruption, all five severities run over `--images` images with the batched torch suite
(in the chunks `materialize` uses, including the 8-bit storage) and over `--reference-images`
images with two per-image baselines, back to back so that load changes on a shared machine hit
all alike:

- `imagecorruptions` (the PyPI package of the published generator, the benchmark's baseline): its
  functions called one image at a time, as its `corrupt()` does. It is imported through a shim
  that supplies `pkg_resources.resource_filename` (gone from setuptools >= 81), only here, never on
  the trial path. Its `glass_blur`, `gaussian_blur` (skimage's removed `multichannel`) and `fog`
  (numpy's removed `np.float_`) no longer run on current libraries: those rows time the reference
  formulation instead and are marked `*`. The package uses the 224-px ImageNet parameters at every
  size (its own), so its per-image work differs from the CIFAR-10 table's.
- `reference`: v1sweep's per-image numpy / scipy / PIL formulation (`corruptions/reference.py`).

Prints images/s and ratios per corruption, the whole-suite figures for the 15 benchmark corruptions
(the target: >= 20x the package on one CPU thread) and for all that ran, and the extrapolated time
for a CIFAR-10-sized set (19 x 5 x 10,000 images of 32 px). Inputs are synthetic natural-looking
images. Threads: torch, OpenCV and (when threadpoolctl is importable) BLAS/OpenMP are limited to
`--threads` (default 1).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import time
import types
from typing import Any, Callable

HELP = "corruption suite: batched torch vs the imagecorruptions package and a numpy reference (img/s, ratios)"

FULL_SET_IMAGES = 19 * 5 * 10_000
TARGET_MINUTES = 10.0
TARGET_RATIO_CPU, TARGET_RATIO_GPU = 20.0, 100.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=1000, help="images for the batched suite (default 1000)")
    parser.add_argument("--reference-images", type=int, default=20,
                        help="images for each per-image baseline (default 20; they are slow)")
    parser.add_argument("--image-size", type=int, default=32, help="pixels (default 32, CIFAR-10; >= 32)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default cpu")
    parser.add_argument("--corruptions", default=None, help="comma-separated subset (default: all 19)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for every path (default 1)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time every path this many times, keep the fastest (default 1; more on a busy machine)")
    parser.add_argument("--seed", type=int, default=0)


def _images(n: int, size: int, seed: int):
    try:
        from v1sweep.data.synthetic import generate
    except ImportError:  # the data package is optional for this benchmark
        generate = None  # type: ignore[assignment]  # no data package: random images below
    if generate is not None:
        return generate(n, size, seed, "test")[0]
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(2, size // 8), max(2, size // 8), generator=g)
    x = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    x = x + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def import_imagecorruptions() -> Any | None:
    """`imagecorruptions.corruptions`, imported with a stand-in `pkg_resources` when setuptools no
    longer has one (the package only calls `resource_filename(__name__, path)`); None if absent."""
    if importlib.util.find_spec("imagecorruptions") is None:
        return None
    added = False
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, name: str) -> str:
            spec = importlib.util.find_spec(package)
            origin = spec.origin if spec is not None else None
            if origin is None:
                raise ImportError(f"cannot locate package {package!r}")
            return os.path.join(os.path.dirname(origin), name)

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
        added = True
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from imagecorruptions import corruptions as module
        return module
    finally:
        if added:  # the package keeps its own reference; leave no fake module behind
            sys.modules.pop("pkg_resources", None)


def package_runner(module: Any, name: str) -> Callable[[Any, int], Any] | None:
    """A per-image call of the package's `name` (uint8 HWC -> uint8, as its `corrupt()`), or None
    when that function no longer runs here."""
    import numpy as np
    from PIL import Image

    fn = getattr(module, name, None)
    if fn is None:
        return None

    def run(images_u8: Any, severity: int) -> None:
        for img in images_u8:
            np.uint8(fn(Image.fromarray(img), severity))

    try:
        with _quiet():
            run(np.full((1, 32, 32, 3), 128, np.uint8), 1)
    except Exception:  # removed skimage / numpy API (multichannel, np.float_)
        return None
    return run


@contextlib.contextmanager
def _quiet():
    """The package prints and warns per image (e.g. spatter's 0/0 on an image without liquid)."""
    import warnings

    import numpy as np

    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), warnings.catch_warnings(), \
            np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _limit_threads(n: int):
    import torch

    torch.set_num_threads(n)
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n):
        yield


def _timed(fn: Callable[[int], Any]) -> float:
    """Seconds for fn(severity) over the five severities."""
    t0 = time.perf_counter()
    for severity in range(1, 6):
        fn(severity)
    return time.perf_counter() - t0


def run(args: argparse.Namespace) -> int:
    with _limit_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import torch

    from v1sweep.corruptions.catalog import BENCHMARK_CORRUPTIONS, CORRUPTIONS
    from v1sweep.corruptions.materialize import default_batch
    from v1sweep.corruptions.memory import keep_freed_memory
    from v1sweep.corruptions.params import table_for
    from v1sweep.corruptions.reference import apply_reference
    from v1sweep.corruptions.storage import store_uint8
    from v1sweep.corruptions.suite import apply
    from v1sweep.corruptions.textures import resolve_frost

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("v1sweep bench corruptions: --device cuda but CUDA is not available")
    keep_freed_memory()  # as materialize does (corruptions/memory.py)
    names = list(CORRUPTIONS) if not args.corruptions else [c.strip() for c in args.corruptions.split(",")]
    for name in names:
        if name not in CORRUPTIONS:
            raise SystemExit(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    size, n, m = args.image_size, args.images, min(args.reference_images, args.images)
    u8 = _images(n, size, args.seed)
    x_all = u8.float().div(255).to(args.device)
    hwc = u8[:m].permute(0, 2, 3, 1).contiguous().numpy()
    x_ref = hwc.astype("float64") / 255
    batch, table = default_batch(size, size), table_for(size)
    dev = torch.device(args.device)
    module = import_imagecorruptions()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def batched(name: str, sev: int, x) -> None:
        for s in range(0, x.shape[0], batch):
            y = apply(x[s:s + batch], name, sev, seed=args.seed, indices=torch.arange(s, min(s + batch, x.shape[0])))
            store_uint8(y, table)  # as materialize stores it (copies to the CPU: synchronises)

    runners = {name: (package_runner(module, name) if module is not None else None) for name in names}
    device_name = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                   else f"CPU, {torch.get_num_threads()} torch thread(s)")
    print(f"corruption suite benchmark: {n} images of {size} px (batched, {device_name}) vs {m} images per "
          f"baseline (per image, CPU, {args.threads} thread(s)); 5 severities each; frost: {resolve_frost()}")
    if module is None:
        print("imagecorruptions is not installed: its column repeats the reference formulation (all rows *)")
    for name in names:  # warm-up: imports, textures, caches
        batched(name, 1, x_all[:2])
        apply_reference(x_ref[:1], name, 1)
    sync()
    print(f"{'corruption':<18} {'batched img/s':>13} {'imagecorr. img/s':>17} {'ratio':>7} "
          f"{'reference img/s':>16} {'ratio':>7}")
    per_image: dict[str, tuple[float, float, float]] = {}
    repeat = max(1, args.repeat)
    for name in names:
        runner = runners[name]
        fast = ref = pkg = float("inf")
        for _ in range(repeat):  # the three paths back to back, best of `repeat` each
            fast = min(fast, _timed(lambda sev: batched(name, sev, x_all)))
            ref = min(ref, _timed(lambda sev: apply_reference(x_ref, name, sev, seed=args.seed)))
            if runner is not None:
                with _quiet():
                    pkg = min(pkg, _timed(lambda sev: runner(hwc, sev)))
        if runner is None:
            pkg = ref
        per_image[name] = (fast / n, pkg / m, ref / m)
        mark = "*" if runner is None else " "
        print(f"{name:<18} {5 * n / fast:>13.0f} {5 * m / pkg:>16.0f}{mark} {(pkg / m) / (fast / n):>6.1f}x "
              f"{5 * m / ref:>16.0f} {(ref / m) / (fast / n):>6.1f}x", flush=True)
    if any(r is None for r in runners.values()):
        print("* the package's function no longer runs on current numpy / scikit-image: timed with the "
              "reference formulation")
    _print_suites(names, per_image, BENCHMARK_CORRUPTIONS)
    _print_full_set(names, per_image, size, dev.type, len(CORRUPTIONS))
    return 0


def _suite(per_image: dict[str, tuple[float, float, float]], members: list[str]) -> tuple[float, float, float]:
    """Images/s of (batched, package, reference) over all five severities of `members` in turn."""
    return tuple(5 * len(members) / sum(per_image[n][k] for n in members) for k in range(3))  # type: ignore[return-value]


def _print_suites(names: list[str], per_image: dict, benchmark: tuple[str, ...]) -> None:
    groups = []
    fifteen = [n for n in names if n in benchmark]
    if len(fifteen) == len(benchmark):
        groups.append(("15 benchmark", fifteen))
    if len(names) != len(fifteen) or not groups:
        groups.append(("whole suite" if len(names) == 19 else "all requested", names))
    for label, members in groups:
        fast, pkg, ref = _suite(per_image, members)
        print(f"{label:<18} {fast:>13.0f} {pkg:>16.0f}  {fast / pkg:>6.1f}x {ref:>16.0f} {fast / ref:>6.1f}x")
    if len(fifteen) == len(benchmark):
        fast, pkg, _ = _suite(per_image, fifteen)
        target = TARGET_RATIO_CPU
        print(f"15 benchmark corruptions vs imagecorruptions: {fast / pkg:.1f}x "
              f"(target >= {target:g}x on one CPU thread: {'met' if fast / pkg >= target else 'MISSED'})")


def _print_full_set(names: list[str], per_image: dict, size: int, device: str, n_all: int) -> None:
    if len(names) != n_all or size != 32:
        print("full-set extrapolation needs all 19 corruptions at 32 px")
        return
    fast, _, ref = _suite(per_image, names)
    minutes = FULL_SET_IMAGES / fast / 60
    target_ratio = TARGET_RATIO_GPU if device == "cuda" else TARGET_RATIO_CPU
    print(f"full CIFAR-10-sized set (19 x 5 x 10,000 images of 32 px): {minutes:.1f} min batched "
          f"(target <= {TARGET_MINUTES:g} min: {'met' if minutes <= TARGET_MINUTES else 'MISSED'}), "
          f"{FULL_SET_IMAGES / ref / 3600:.1f} h per-image reference (ratio {fast / ref:.1f}x; "
          f"target >= {target_ratio:g}x vs the package, above)")
