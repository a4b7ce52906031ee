"""The contract every registered corruption meets, as a plain function and a pytest base class.

`check_corruption(name)` raises AssertionError (or ValueError for bad metadata) on a broken entry:

- metadata complete and valid (`base.validate_meta`), its category one of `CATEGORIES`, a published
  entry listed where its `benchmark` flag says, its reference formulation resolvable;
- on a tiny batch, for every table and severity: same shape and dtype, values in [0, 1], the same
  output for the same (seed, indices); a `deterministic` entry ignores the seed, another one
  depends on it; the images change;
- a `monotone` entry's PSNR to the clean images falls from severity 1 to 5, and from each severity
  to the next within `MONOTONE_SLACK_DB` (the full test suite checks it strictly, on more images).

`tests/test_corruptions.py` subclasses `CorruptionContract`, which runs the checks for every
registered name, so a new corruption is tested without editing a test list.
"""
from __future__ import annotations

import math
from typing import Any

from v1sweep.corruptions.base import REGISTRY, SEVERITIES, TABLE_SIZES, validate_meta
from v1sweep.corruptions.catalog import BENCHMARK_CORRUPTIONS, CATEGORIES, CORRUPTIONS, EXTRA_CORRUPTIONS, registered

# a monotone corruption may gain this much PSNR from one severity to the next on the tiny batch
# (random draws; e.g. motion blur's CIFAR-10 severities 3 and 4 share their kernel)
MONOTONE_SLACK_DB = 0.5

__all__ = ["CorruptionContract", "MONOTONE_SLACK_DB", "check_corruption", "check_metadata", "check_outputs",
           "natural_images"]


def natural_images(n: int, size: int, seed: int = 0) -> Any:
    """Natural-image-like batches (B, 3, H, W) with values k/255: 1/f ("pink") noise with a
    shared luminance component, a random tint per image and a bright rectangle (an edge)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    f = torch.fft.fftfreq(size)
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).clamp_min(1 / size)
    noise = 0.4 * torch.randn(n, 3, size, size, generator=g) + torch.randn(n, 1, size, size, generator=g)
    img = torch.fft.ifft2(torch.fft.fft2(noise) / radius).real
    img = (img - img.mean(dim=(-2, -1), keepdim=True)) / img.std(dim=(-2, -1), keepdim=True)
    img = 0.5 + 0.18 * img + 0.1 * torch.randn(n, 3, 1, 1, generator=g)
    img[:, :, size // 4: size // 2, size // 4: 3 * size // 4] += 0.25
    return (img.clamp(0.02, 0.98) * 255).round() / 255


def check_metadata(name: str) -> None:
    """The registered facts of `name` are complete, consistent with the catalogue and resolvable."""
    meta = REGISTRY.meta(name)
    validate_meta(name, meta)
    assert meta["category"] in CATEGORIES, f"{name}: category {meta['category']!r} not one of {CATEGORIES}"
    if name in CORRUPTIONS:
        assert meta["order"] is not None, f"{name}: a published corruption needs its order"
        assert CORRUPTIONS[name] == meta["category"]
        assert (name in BENCHMARK_CORRUPTIONS) == meta["benchmark"], f"{name}: benchmark flag vs list"
        assert (name in EXTRA_CORRUPTIONS) == (not meta["benchmark"])
    else:
        assert not meta["benchmark"], f"{name}: only the published corruptions form the benchmark (benchmark=False)"
    if meta["reference"] is not None:
        from v1sweep.corruptions.reference import reference_for

        assert callable(reference_for(name)), f"{name}: reference {meta['reference']!r} is not callable"
    from v1sweep.corruptions.params import get_params

    for table in TABLE_SIZES:
        for severity in SEVERITIES:
            get_params(name, severity, TABLE_SIZES[table], table)  # decodes without error


def _psnr(a: Any, b: Any) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def check_outputs(name: str, n: int = 4, size: int = 32) -> None:
    """Shape, dtype, range and seeding of `apply(name)` on a tiny batch, for each table and severity."""
    import torch

    from v1sweep.corruptions.suite import apply

    meta = REGISTRY.meta(name)
    x = natural_images(n, size, seed=1)
    for table in TABLE_SIZES:
        psnrs = []
        for severity in SEVERITIES:
            y = apply(x, name, severity, seed=0, table=table)
            where = f"{name} table {table} severity {severity}"
            assert y.shape == x.shape and y.dtype == x.dtype, f"{where}: shape/dtype {tuple(y.shape)} {y.dtype}"
            assert float(y.min()) >= 0 and float(y.max()) <= 1, f"{where}: values leave [0, 1]"
            assert torch.equal(y, apply(x, name, severity, seed=0, table=table)), f"{where}: same seed, other output"
            if meta["deterministic"]:
                assert torch.equal(y, apply(x, name, severity, seed=1, table=table)), f"{where}: depends on the seed"
            psnrs.append(_psnr(x, y))
        assert min(psnrs) < math.inf, f"{name} table {table}: leaves the images unchanged at every severity"
        if not meta["deterministic"]:
            mid = SEVERITIES[len(SEVERITIES) // 2]
            assert not torch.equal(apply(x, name, mid, seed=0, table=table),
                                   apply(x, name, mid, seed=1, table=table)), f"{name}: another seed, same output"
        if meta["monotone"]:
            falls = psnrs[-1] < psnrs[0] and all(hi < lo + MONOTONE_SLACK_DB for lo, hi in zip(psnrs, psnrs[1:]))
            assert falls, f"{name} table {table}: PSNR by severity {[round(v, 2) for v in psnrs]} does not fall"


def check_corruption(name: str) -> None:
    """All checks of this module for registered corruption `name` (raises on a broken entry)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(registered())}")
    check_metadata(name)
    check_outputs(name)


class CorruptionContract:
    """pytest base class: subclass it (`class TestCorruptions(CorruptionContract): pass`) to run the
    contract for every registered corruption; override `corruption_names` to narrow it."""

    def corruption_names(self) -> list[str]:
        return registered()

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "corruption" in metafunc.fixturenames:
            metafunc.parametrize("corruption", self.corruption_names())

    def test_metadata(self, corruption: str) -> None:
        check_metadata(corruption)

    def test_outputs(self, corruption: str) -> None:
        check_outputs(corruption)
