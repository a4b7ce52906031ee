"""The registry every corruption module fills: name -> fn(x, param, rng) -> corrupted x.

`x` is a float32 (B, 3, H, W) batch in [0, 1], `param` the published parameter of the requested
severity (`params.get_params`), `rng` a `CounterRNG` keyed by (seed, name, severity, image index).
Results may leave [0, 1]; `suite.apply` clips them.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import Tensor

from v1sweep.corruptions.rng import CounterRNG
from v1sweep.registry import Registry

CorruptionFn = Callable[[Tensor, Any, CounterRNG], Tensor]

REGISTRY: Registry[CorruptionFn] = Registry("corruption")
register = REGISTRY.register
