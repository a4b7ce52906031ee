"""Names, defaults and cost of the white-box adversarial evaluation (no torch: config, sweep files,
query and analysis import this; the attack itself is `v1sweep.trial.adversarial`).

Metric names are ``adv_acc/<norm>/<eps>`` with eps in [0, 1] pixel units (before the training
normalisation) written by `format_eps`: fixed-point with 5 decimals, trailing zeros and a trailing dot
stripped (1/1020 -> ``0.00098``, 1/255 -> ``0.00392``, 0.15 -> ``0.15``, 0 -> ``0``). Two attacks of a
trial that would get the same name are refused when the config is loaded.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

ADV_PREFIX = "adv_acc/"
NORMS = ("linf", "l2")
EPS_DECIMALS = 5
# Published practice (VOneNet, Dapello et al. 2020): L-inf 1/1020 and 1/255, L2 0.15 and 0.6,
# 64 PGD iterations, EOT over 8 noise samples when the front-end is stochastic.
DEFAULT_STEPS = 64
DEFAULT_EOT_STOCHASTIC = 8
DEFAULT_IMAGES = 1000
DEFAULT_ATTACKS: tuple[dict[str, Any], ...] = (
    {"norm": "linf", "eps": 1 / 1020},
    {"norm": "linf", "eps": 1 / 255},
    {"norm": "l2", "eps": 0.15},
    {"norm": "l2", "eps": 0.6},
)
# step_size null: 2.5 * eps / steps (Madry et al. 2018), so the path length is 2.5 eps at any step count.
STEP_SIZE_FACTOR = 2.5


def format_eps(eps: float) -> str:
    """The eps part of a metric name (see the module doc)."""
    text = f"{float(eps):.{EPS_DECIMALS}f}".rstrip("0").rstrip(".")
    return text or "0"


def metric_name(norm: str, eps: float) -> str:
    """``adv_acc/linf/0.00098``: the final metric of one attack."""
    return f"{ADV_PREFIX}{norm}/{format_eps(eps)}"


def epoch_metric_name(metric: str) -> str:
    """The per-epoch twin of a final attack metric (``eval.adversarial_per_epoch``):
    ``val_adv_acc/linf/0.00098``, so the final value never shares a key with the epoch curve."""
    return f"val_{metric}"


def is_adversarial_metric(name: str) -> bool:
    return name.startswith(ADV_PREFIX)


def resolve_eot(eot: int | None, stochastic: bool) -> int:
    """eot null = 8 noise samples per gradient when the V1 block is stochastic, else 1."""
    if eot is not None:
        return int(eot)
    return DEFAULT_EOT_STOCHASTIC if stochastic else 1


def resolve_step_size(step_size: float | None, eps: float, steps: int) -> float:
    if step_size is not None:
        return float(step_size)
    return STEP_SIZE_FACTOR * float(eps) / max(int(steps), 1)


def passes_per_image(attack: Mapping[str, Any], stochastic: bool) -> tuple[int, int]:
    """(forward+backward passes, forward-only passes) one image costs under `attack`:
    steps x eot x restarts gradient passes plus one evaluation (fresh noise) per restart."""
    eot = resolve_eot(attack.get("eot"), stochastic)
    restarts = int(attack.get("restarts") or 1)
    return int(attack.get("steps", DEFAULT_STEPS)) * eot * restarts, restarts


def resolve_images(images: int | None, n_test: int | None) -> int:
    """images null = min(1000, the test set)."""
    if images is not None:
        return int(images)
    return DEFAULT_IMAGES if n_test is None else min(DEFAULT_IMAGES, int(n_test))


def attack_cost(attacks: Any, stochastic: bool, n_test: int | None = None) -> dict[str, int]:
    """Total passes per trial over `attacks` (dicts or objects with the attack fields), in image-passes:
    ``backward`` (forward+backward) and ``forward`` (final evaluations)."""
    backward = forward = 0
    for attack in attacks or ():
        a = attack if isinstance(attack, Mapping) else vars_of(attack)
        b, f = passes_per_image(a, stochastic)
        images = resolve_images(a.get("images"), n_test)
        backward += b * images
        forward += f * images
    return {"backward": backward, "forward": forward}


def vars_of(obj: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def l2_eps_max(image_size: int) -> float:
    """The largest meaningful L2 radius: the distance between two opposite corners of [0, 1]^(3 H W)."""
    return math.sqrt(3 * image_size * image_size)
