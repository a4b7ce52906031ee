"""`v1sweep bench frontend`: images/s of the fast `VOneBlock` next to the naive published formulation.

Naive (Dapello et al. 2020, VOneNet `GFB`): every unit convolves all three colour channels with a
dense kernel that is zero except on its colour, and the quadrature filter is computed for every
unit, then the simple/complex outputs are selected. The fast block convolves each colour group with
its own channel only and computes quadrature filters for complex units only (~4x less arithmetic).
Both run in the same process on the same inputs, alternating iteration by iteration so that a load
change on a shared machine hits both alike; the reported rate uses the median iteration time.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any

HELP = "V1 front-end: fast VOneBlock vs the naive dense formulation (img/s, speedup, max rel. diff)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available, else cpu")
    parser.add_argument("--batch", type=int, default=None, help="images per batch (default: 256 on cuda, 16 on cpu)")
    parser.add_argument("--image-size", type=int, default=64, help="pixels (default 64, the study)")
    parser.add_argument("--visual-degrees", type=float, default=2.0, help="degrees spanned by the image (default 2)")
    parser.add_argument("--channels", type=int, default=256, help="simple units and complex units, each (default 256)")
    parser.add_argument("--ksize", type=int, default=31, help="kernel size, odd (default 31)")
    parser.add_argument("--stride", type=int, default=2, help="default 2")
    parser.add_argument("--iters", type=int, default=None, help="timed iterations (default: 50 on cuda, 5 on cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations first (default: 10 cuda, 1 cpu)")
    parser.add_argument("--dtype", choices=("fp32", "tf32", "fp16", "bf16"), default="fp32",
                        help="fp32 (TF32 off), tf32 (TF32 convolutions on CUDA), or fp16 / bf16 weights, inputs "
                             "and outputs (bf16 output rounding alone is ~2e-3 relative; tf32 and fp16 stay "
                             "below 1e-3)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels_last input (default: on for cuda, off for cpu)")
    parser.add_argument("--impl", choices=("split", "grouped"), default="split",
                        help="fast block: one conv per colour (split) or one grouped conv")
    parser.add_argument("--seed", type=int, default=0, help="RF sampling and input seed")


def _rf(n_simple: int, n_complex: int, seed: int, nyquist: float):
    """Biological RF parameters from `v1sweep.rf.sample` when available, else a simple local draw."""
    import numpy as np

    from v1sweep.rf.params import RFParams

    try:
        from v1sweep.rf import sample
    except ImportError:
        sample = None  # type: ignore[assignment]  # a tree without rf.sample: fixed RFs below
    if sample is not None:
        options = {} if nyquist >= 11.5 else {"sf_max": nyquist}
        return sample("biological", n_simple, n_complex, seed, **options), "v1sweep.rf.sample('biological')"
    rng = np.random.default_rng(seed)
    n = n_simple + n_complex
    sf_hi = min(11.2, nyquist)
    rf = RFParams(sf=np.exp2(rng.uniform(np.log2(0.5), np.log2(sf_hi), n)), theta=rng.uniform(0, 180, n),
                  phase=rng.uniform(0, 360, n), nx=10 ** rng.uniform(-1, 0, n), ny=10 ** rng.uniform(-1, 0, n),
                  color=rng.integers(0, 3, n), complex=np.r_[np.zeros(n_simple, bool), np.ones(n_complex, bool)])
    return rf, f"local log-uniform draw (SF 0.5-{sf_hi:g} cpd; v1sweep.rf.sample not available)"


def naive_weights(rf, *, image_size: int, visual_degrees: float, ksize: int):
    """Published layout: (N, 3, k, k) phase and quadrature kernels for every unit, zero off-colour."""
    import torch

    from v1sweep.frontend import gabor_kernels

    geom: dict[str, Any] = dict(image_size=image_size, visual_degrees=visual_degrees, ksize=ksize)
    n = len(rf)
    rows, cols = torch.arange(n), torch.as_tensor(rf.color, dtype=torch.long)
    w0 = torch.zeros(n, 3, ksize, ksize)
    w1 = torch.zeros(n, 3, ksize, ksize)
    w0[rows, cols] = gabor_kernels(rf, **geom)
    w1[rows, cols] = gabor_kernels(rf, phase_offset=90.0, **geom)
    return w0, w1


def naive_forward(x, w0, w1, n_simple: int, k_exc: float, stride: int):
    import torch
    import torch.nn.functional as F

    pad = w0.shape[-1] // 2
    q0 = F.conv2d(x, w0, None, stride, pad)
    q1 = F.conv2d(x, w1, None, stride, pad)
    simple = torch.relu(q0[:, :n_simple])
    complex_ = torch.sqrt(q0[:, n_simple:] ** 2 + q1[:, n_simple:] ** 2) / math.sqrt(2)
    return k_exc * torch.cat([simple, complex_], 1)


def run(args: argparse.Namespace) -> int:
    import torch

    from v1sweep.errors import ConfigError
    from v1sweep.frontend import VOneBlock

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA is not available on this machine; use --device cpu", key="--device")
    cuda = device == "cuda"
    batch = args.batch or (256 if cuda else 16)
    iters = args.iters or (50 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    channels_last = args.channels_last if args.channels_last is not None else cuda
    for name, value in (("--batch", batch), ("--iters", iters), ("--channels", args.channels)):
        if value < 1:
            raise ConfigError(f"must be >= 1, got {value}", key=name)
    k_exc, size, n = 25.0, args.image_size, args.channels
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.dtype, torch.float32)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = args.dtype == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = args.dtype == "tf32"

    rf, rf_source = _rf(n, n, args.seed, size / args.visual_degrees / 2)
    try:
        block = VOneBlock(rf, image_size=size, visual_degrees=args.visual_degrees, ksize=args.ksize,
                          stride=args.stride, k_exc=k_exc, impl=args.impl)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    w0, w1 = naive_weights(rf, image_size=size, visual_degrees=args.visual_degrees, ksize=args.ksize)
    gen = torch.Generator().manual_seed(args.seed)
    x32 = (torch.rand(batch, 3, size, size, generator=gen) - 0.5) / 0.5  # normalised like the loader
    block, w0, w1, x32 = block.to(device), w0.to(device), w1.to(device), x32.to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    with torch.inference_mode():
        # Reference: naive formulation in true fp32 (TF32 off), on the same images.
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        ref = naive_forward(x32, w0, w1, n, k_exc, args.stride).float()
        torch.backends.cudnn.allow_tf32 = tf32
        fast_block = block.to(dtype)
        x = x32.to(dtype).contiguous(memory_format=memory_format)
        nw0 = w0.to(dtype).contiguous(memory_format=memory_format)
        nw1 = w1.to(dtype).contiguous(memory_format=memory_format)
        fast = lambda: fast_block(x)  # noqa: E731
        naive = lambda: naive_forward(x, nw0, nw1, n, k_exc, args.stride)  # noqa: E731
        err_fast = float((fast().float() - ref).abs().max() / ref.abs().max())
        err_naive = float((naive().float() - ref).abs().max() / ref.abs().max())

        def timed(fn) -> float:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - t0

        for _ in range(warmup):
            fn_out = fast(), naive()
            del fn_out
        t_fast, t_naive = [], []
        for _ in range(iters):
            t_fast.append(timed(fast))
            t_naive.append(timed(naive))

    out_hw = math.ceil(size / args.stride)
    mac_fast = (n + 2 * n) * args.ksize ** 2 * out_hw ** 2
    mac_naive = 2 * (2 * n) * 3 * args.ksize ** 2 * out_hw ** 2
    name = torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)"
    med_fast, med_naive = statistics.median(t_fast), statistics.median(t_naive)
    print(f"v1sweep bench frontend: {n}+{n} channels, ksize {args.ksize}, stride {args.stride}, "
          f"{size} px over {args.visual_degrees:g} deg, batch {batch}, {args.dtype}, "
          f"{'channels_last' if channels_last else 'contiguous'}, impl {args.impl}")
    print(f"device: {name}; RF: {rf_source}; {warmup} warm-up + {iters} timed iterations each, alternating")
    label = "per-colour convs" if args.impl == "split" else "grouped conv"
    fast_label = f"fast  ({label}, quadrature for complex only):"
    naive_label = "naive (dense 3-channel kernels, quadrature for all):"
    width = max(len(fast_label), len(naive_label))
    print(f"  {fast_label:<{width}} {batch / med_fast:10.1f} img/s "
          f"({1e3 * med_fast:.1f} ms/batch median, best {batch / min(t_fast):.1f} img/s)")
    print(f"  {naive_label:<{width}} {batch / med_naive:10.1f} img/s "
          f"({1e3 * med_naive:.1f} ms/batch median, best {batch / min(t_naive):.1f} img/s)")
    print(f"  speedup fast/naive: {med_naive / med_fast:.2f}x (arithmetic ratio {mac_naive / mac_fast:.1f}x; "
          f"{mac_fast / 1e9:.2f} vs {mac_naive / 1e9:.2f} GMAC/img)")
    print(f"  max relative difference vs naive fp32 (max|d| / max|ref|): fast {err_fast:.2e}, "
          f"naive in {args.dtype} {err_naive:.2e}")
    return 0
