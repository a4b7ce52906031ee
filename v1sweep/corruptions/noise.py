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
    """Poisson(x * lambda) / lambda: photon noise of an image with lambda photons at full scale."""
    return rng.poisson("noise", x * lam) / lam


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
