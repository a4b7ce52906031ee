"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle."""
from __future__ import annotations

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
    values is replaced, half of them by 1 and half by 0."""
    shape = tuple(x.shape[1:])
    flipped = rng.uniform("flip", shape) < amount
    salt = rng.uniform("salt", shape) < 0.5
    out = x.clone()
    out[flipped & salt] = 1.0
    out[flipped & ~salt] = 0.0
    return out


@register("speckle_noise")
def speckle_noise(x: Tensor, sigma: float, rng: CounterRNG) -> Tensor:
    """x + x * N(0, sigma): multiplicative noise."""
    return x + x * rng.normal("noise", tuple(x.shape[1:]), std=sigma)
