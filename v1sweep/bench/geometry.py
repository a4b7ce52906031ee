"""Front-end geometry check: how far each unit's *effective* spatial frequency (read from its
ksize-truncated kernel's spectrum, `v1sweep.rf.similarity.effective_sf`) is from its nominal SF.

Why: a reduced front-end (fewer pixels per degree, a smaller kernel) silently changes the filters a
study compares; the CPU reference study (sweeps/study_cifar10_cpu.yaml) promises every unit within
0.25 octave of its nominal SF, and this is the measurement behind that promise.

    python -m v1sweep.bench.geometry sweeps/trials/cifar10_cpu.yaml --banks 50
    python -m v1sweep.bench.geometry sweeps/trials/cifar10.yaml --set frontend.ksize=31

Prints, per strategy, over all units of `--banks` sampled banks (rf.seed 0..banks-1): the truncation
error |log2(effective SF at the config's ksize / effective SF of the same filter at ksize 127)|
(worst, p99, share beyond the tolerance) and, for reference, |log2(effective / nominal SF)|. The
second cannot reach 0.25 octave for every unit at any kernel size: units whose envelope is
narrower than about a quarter cycle (nx, ny ~0.1, frequent in the uniform controls) have a
spectrum that peaks near DC even untruncated. Exit status 1 when the truncation error of some unit
exceeds `--tolerance` (default 0.25 octave).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Sequence

import numpy as np

STRATEGIES = ("biological", "unif1", "unif2", "unif3")
REFERENCE_KSIZE = 127  # 4 deg at 32 ppd: no filter of the bundled presets is cut at this support


def effective_sfs(config: Any) -> tuple[np.ndarray, np.ndarray]:
    """(effective SF, nominal SF) of every unit of the bank `config` samples (the V1 block's
    kernels, complex units with their quadrature partner, exactly as the trial builds them)."""
    from v1sweep.frontend.gabor import gabor_kernels, pixels_per_degree
    from v1sweep.rf.similarity import effective_sf
    from v1sweep.trial.run import sample_rf

    rf = sample_rf(config)
    if rf is None:
        raise ValueError("frontend.enabled is false: a plain baseline has no V1 kernels to check")
    fe, size = config.frontend, config.data.image_size
    kw = dict(image_size=size, visual_degrees=fe.visual_degrees, ksize=fe.ksize)
    kernels = gabor_kernels(rf, **kw).numpy()
    quad = np.zeros_like(kernels)
    cx = np.asarray(rf.complex, dtype=bool)
    if cx.any():
        quad[cx] = gabor_kernels(rf, phase_offset=90.0, **kw).numpy()[cx]
    sf = effective_sf(kernels, pixels_per_degree(size, fe.visual_degrees), quad)
    return sf, np.asarray(rf.sf, dtype=np.float64)


def octave_errors(config: Any, reference_ksize: int = REFERENCE_KSIZE) -> tuple[np.ndarray, np.ndarray]:
    """(truncation error, nominal error) per unit, in octaves: |log2(effective SF at ksize /
    effective SF of the same filter at `reference_ksize`)| (what the kernel support costs) and
    |log2(effective / nominal SF)| (which also counts filters whose envelope is narrower than a
    cycle: their spectrum peaks near DC at any kernel size, so no geometry brings them to 0.25)."""
    sf, nominal = effective_sfs(config)
    big = dataclasses.replace(config, frontend=dataclasses.replace(config.frontend, ksize=reference_ksize))
    ref, _ = effective_sfs(big)
    return np.abs(np.log2(sf / ref)), np.abs(np.log2(sf / nominal))


def measure(config: Any, strategies: Sequence[str] = STRATEGIES, banks: int = 20,
            tolerance: float = 0.25) -> list[dict[str, Any]]:
    """One row per strategy: worst and p99 octave error over `banks` banks, share beyond `tolerance`."""
    rows = []
    for strategy in strategies:
        pairs = [octave_errors(dataclasses.replace(config, rf=dataclasses.replace(config.rf, strategy=strategy, seed=s)))
                 for s in range(banks)]
        trunc = np.concatenate([p[0] for p in pairs])
        nominal = np.concatenate([p[1] for p in pairs])
        rows.append({"strategy": strategy, "units": int(trunc.size), "worst_octave": float(trunc.max()),
                     "p99_octave": float(np.quantile(trunc, 0.99)),
                     "frac_over_tol": float(np.mean(trunc > tolerance)),
                     "nominal_worst_octave": float(nominal.max()),
                     "nominal_frac_over_tol": float(np.mean(nominal > tolerance))})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    from v1sweep.config.trial import load as load_trial_config

    p = argparse.ArgumentParser(prog="python -m v1sweep.bench.geometry", description=__doc__.split("\n\n")[0])
    p.add_argument("trial_config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--banks", type=int, default=20)
    p.add_argument("--tolerance", type=float, default=0.25)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    args = p.parse_args(argv)
    cfg = load_trial_config(args.trial_config, args.overrides)
    fe = cfg.frontend
    print(f"geometry: {cfg.data.image_size} px over {fe.visual_degrees:g} deg "
          f"({cfg.data.image_size / fe.visual_degrees:g} ppd), ksize {fe.ksize}, sf_max {fe.sf_max:g}, "
          f"{fe.n_simple}+{fe.n_complex} units, preset {cfg.rf.preset}, {args.banks} banks per strategy")
    worst = 0.0
    for row in measure(cfg, args.strategies.split(","), args.banks, args.tolerance):
        worst = max(worst, row["worst_octave"])
        print(f"  {row['strategy']:<11} units {row['units']:>6}  worst {row['worst_octave']:.3f} oct  "
              f"p99 {row['p99_octave']:.3f} oct  over {args.tolerance:g} oct: {100 * row['frac_over_tol']:.2f} %  "
              f"| vs nominal SF: worst {row['nominal_worst_octave']:.2f} oct, "
              f"over {args.tolerance:g}: {100 * row['nominal_frac_over_tol']:.1f} %")
    ok = worst <= args.tolerance
    print(f"worst-case truncation error |log2(eff. SF at ksize {cfg.frontend.ksize} / eff. SF at ksize "
          f"{REFERENCE_KSIZE})| = {worst:.3f} octave: "
          f"{'within' if ok else 'EXCEEDS'} {args.tolerance:g}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
