"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle."""
from __future__ import annotations

from typing import TYPE_CHECKING

from v1sweep.corruptions.base import REF, register
from v1sweep.registry import lazy_module

if TYPE_CHECKING:  # the catalogue imports this module without torch
    import torch
    from torch import Tensor

    from v1sweep.corruptions.rng import CounterRNG
else:
    torch = lazy_module("torch")


@register("gaussian_noise", category="noise", benchmark=True, order=1, deterministic=False, monotone=True,
          params={"cifar10": [0.04, 0.06, 0.08, 0.09, 0.10], "tinyimagenet": [0.04, 0.08, 0.12, 0.15, 0.18]},
          reference=f"{REF}:gaussian_noise")
def gaussian_noise(x: Tensor, sigma: float, rng: CounterRNG) -> Tensor:
    """x + N(0, sigma), independently per pixel and channel."""
    return x + rng.normal("noise", tuple(x.shape[1:]), std=sigma)


@register("shot_noise", category="noise", benchmark=True, order=2, deterministic=False, monotone=True,
          params={"cifar10": [500, 250, 100, 75, 50], "tinyimagenet": [250, 100, 50, 30, 15]},
          reference=f"{REF}:shot_noise")
def shot_noise(x: Tensor, lam: float, rng: CounterRNG) -> Tensor:
    """Poisson(x * lambda) / lambda: photon noise of an image with lambda photons at full scale.

    Images whose values are all multiples of 1/255 (8-bit data, as in `materialize`) draw by
    inverting tabulated CDFs (fast); other images use the PTRS / inversion sampler. Both are
    exact Poisson; the choice is made per image, so it never depends on the batch.
    """
    b = x.shape[0]
    levels = x * 255
    codes = levels.round()
    on_grid = levels.sub_(codes).abs_().le_(1e-3).reshape(b, -1).all(1)
    if bool(on_grid.all()):
        return rng.poisson_levels("noise", codes, lam) / lam
    out = torch.empty_like(x)
    grid_rows = torch.nonzero(on_grid, as_tuple=True)[0]
    if grid_rows.numel():
        out[grid_rows] = rng.subset(grid_rows).poisson_levels("noise", codes[grid_rows], lam) / lam
    rows = torch.nonzero(~on_grid, as_tuple=True)[0]
    out[rows] = rng.subset(rows).poisson("noise", x[rows] * lam) / lam
    return out


@register("impulse_noise", category="noise", benchmark=True, order=3, deterministic=False, monotone=True,
          params={"cifar10": [0.01, 0.02, 0.03, 0.05, 0.07], "tinyimagenet": [0.01, 0.02, 0.05, 0.08, 0.14]},
          reference=f"{REF}:impulse_noise")
def impulse_noise(x: Tensor, amount: float, rng: CounterRNG) -> Tensor:
    """Salt and pepper per value (skimage `random_noise(mode='s&p')`): a fraction `amount` of the
    values is replaced, half of them by 1 and half by 0. One uniform u per value decides both:
    u < amount / 2 -> 1, amount / 2 <= u < amount -> 0 (the same law as two independent draws)."""
    u = rng.uniform("s&p", tuple(x.shape[1:]))
    out = torch.where(u < amount, (u < amount / 2).to(x.dtype), x)
    return out


@register("speckle_noise", category="noise", benchmark=False, order=16, deterministic=False, monotone=True,
          params={"cifar10": [0.06, 0.1, 0.12, 0.16, 0.2], "tinyimagenet": [0.15, 0.2, 0.25, 0.3, 0.35]},
          reference=f"{REF}:speckle_noise")
def speckle_noise(x: Tensor, sigma: float, rng: CounterRNG) -> Tensor:
    """x + x * N(0, sigma): multiplicative noise."""
    return x + x * rng.normal("noise", tuple(x.shape[1:]), std=sigma)
