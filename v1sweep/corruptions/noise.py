"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle."""
from __future__ import annotations

import torch
from torch import Tensor

from v1sweep.corruptions.base import register
from v1sweep.corruptions.rng import CounterRNG


@register("gaussian_noise")
def gaussian_noise(x: Tensor, sigma: float, rng: CounterRNG) -> Tensor:
    """x + N(0, sigma), independently per pixel and channel."""
    return x + rng.normal("noise", tuple(x.shape[1:]), std=sigma)


@register("shot_noise")
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


@register("impulse_noise")
def impulse_noise(x: Tensor, amount: float, rng: CounterRNG) -> Tensor:
    """Salt and pepper per value (skimage `random_noise(mode='s&p')`): a fraction `amount` of the
    values is replaced, half of them by 1 and half by 0. One uniform u per value decides both:
    u < amount / 2 -> 1, amount / 2 <= u < amount -> 0 (the same law as two independent draws)."""
    u = rng.uniform("s&p", tuple(x.shape[1:]))
    out = torch.where(u < amount, (u < amount / 2).to(x.dtype), x)
    return out


@register("speckle_noise")
def speckle_noise(x: Tensor, sigma: float, rng: CounterRNG) -> Tensor:
    """x + x * N(0, sigma): multiplicative noise."""
    return x + x * rng.normal("noise", tuple(x.shape[1:]), std=sigma)
