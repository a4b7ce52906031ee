"""White-box PGD with expectation over transformation (EOT), for stochastic V1 front-ends (torch only).

The attack works in input space before normalisation: images in [0, 1], eps in the same pixel units,
and the network sees ``(x - 0.5) / 0.5`` exactly as in training. Gradients flow through the whole
network including the V1 block; with a stochastic block each gradient is the mean over `eot` fresh
noise samples (Athalye et al. 2018), and the final perturbed images are classified with fresh noise,
never the noise the attack saw. The model is in eval mode (BatchNorm statistics frozen). With
`restarts` > 1 an image counts as robust only if it survives every restart (per-image worst case).
Randomness (random start, noise) comes from a private torch RNG state seeded with `seed`, so the
attack is deterministic given its seed and leaves the global RNG as it was. Protocol, cost and
pitfalls: docs/adversarial.md. This module must not import ray, mlflow or optuna.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from v1sweep.config import adversarial as spec
from v1sweep.errors import ConfigError

_TINY = 1e-12


@dataclass(frozen=True)
class Attack:
    """A resolved attack: every count explicit (see `v1sweep.config.AttackConfig` for the config)."""
    norm: str
    eps: float
    steps: int
    step_size: float
    eot: int = 1
    restarts: int = 1
    random_start: bool = True

    @property
    def metric(self) -> str:
        return spec.metric_name(self.norm, self.eps)


def resolve(attack: Any, stochastic: bool) -> Attack:
    """An `Attack` from an `AttackConfig` (nulls filled: eot by stochasticity, step_size by eps/steps)."""
    return Attack(norm=attack.norm, eps=float(attack.eps), steps=int(attack.steps),
                  step_size=spec.resolve_step_size(attack.step_size, attack.eps, attack.steps),
                  eot=spec.resolve_eot(attack.eot, stochastic), restarts=int(attack.restarts),
                  random_start=bool(attack.random_start))


def subset_indices(n_test: int, images: int, seed: int) -> torch.Tensor:
    """The attacked test images: the first `images` of a permutation seeded by `seed` alone, so every
    trial of a sweep (and every attack, nested by size) uses the same images."""
    if images > n_test:
        raise ConfigError(f"{images} images but the test set has {n_test}; allowed: [1, {n_test}]",
                          key="eval.adversarial[].images")
    perm = torch.randperm(n_test, generator=torch.Generator().manual_seed(int(seed)))
    return perm[:images].sort().values


@contextlib.contextmanager
def attack_mode(model: nn.Module, seed: int, device: torch.device) -> Iterator[None]:
    """Eval mode (BN frozen), fresh (unfrozen) V1 noise, a private RNG seeded with `seed`; all restored."""
    was_training = model.training
    vone = getattr(model, "vone", None)
    frozen_seed = getattr(vone, "_frozen_seed", None) if vone is not None else None
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        model.eval()
        if vone is not None and hasattr(vone, "unfreeze_noise"):
            vone.unfreeze_noise()
        try:
            yield
        finally:
            if vone is not None and frozen_seed is not None:
                vone.freeze_noise(frozen_seed)
            model.train(was_training)


def _logits(model: nn.Module, x01: torch.Tensor, amp: bool) -> torch.Tensor:
    x = (x01 - 0.5) / 0.5
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    return out.float()


def input_gradient(model: nn.Module, x01: torch.Tensor, labels: torch.Tensor, *, eot: int = 1,
                   amp: bool = False) -> torch.Tensor:
    """d(mean over `eot` noise draws of the summed cross-entropy) / d(x01): the EOT gradient."""
    x = x01.detach().requires_grad_(True)
    total = x.new_zeros(())
    for _ in range(eot):
        total = total + nn.functional.cross_entropy(_logits(model, x, amp), labels, reduction="sum")
    (grad,) = torch.autograd.grad(total / eot, x)
    return grad


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(_TINY).view(-1, *([1] * (t.dim() - 1)))


def project(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Onto the eps ball of `norm` (per image)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    factor = (eps / _flat_norm(delta)).clamp(max=1.0)
    return delta * factor


def random_start(x0: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """A uniform point of the linf box, or a uniform point of the l2 ball."""
    if norm == "linf":
        return (torch.rand_like(x0) * 2 - 1) * eps
    d = x0[0].numel()
    direction = torch.randn_like(x0)
    direction = direction / _flat_norm(direction)
    radius = torch.rand(x0.shape[0], device=x0.device, dtype=x0.dtype) ** (1.0 / d) * eps
    return direction * radius.view(-1, *([1] * (x0.dim() - 1)))


def _step(grad: torch.Tensor, norm: str, size: float) -> torch.Tensor:
    if norm == "linf":
        return size * grad.sign()
    return size * grad / _flat_norm(grad)


def pgd(model: nn.Module, x01: torch.Tensor, labels: torch.Tensor, attack: Attack, *,
        amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch: (worst-case perturbed images, bool robust per image). Call inside `attack_mode`.

    Each restart runs `steps` projected ascent steps of the EOT loss from x0 (+ a random start), then
    classifies its result once with fresh noise; an image stays robust only while every restart's
    result is classified correctly, and the returned image is the first restart that fooled it.
    """
    x0 = x01.detach()
    worst = x0.clone()
    robust = torch.ones(len(x0), dtype=torch.bool, device=x0.device)
    for _ in range(attack.restarts):
        delta = random_start(x0, attack.norm, attack.eps) if attack.random_start and attack.eps > 0 else torch.zeros_like(x0)
        x = (x0 + delta).clamp(0, 1)
        for _ in range(attack.steps):
            if attack.eps == 0:
                break
            grad = input_gradient(model, x, labels, eot=attack.eot, amp=amp)
            x = x + _step(grad, attack.norm, attack.step_size)
            x = (x0 + project(x - x0, attack.norm, attack.eps)).clamp(0, 1)
        with torch.no_grad():
            correct = _logits(model, x, amp).argmax(1) == labels
        fooled_now = robust & ~correct
        worst[fooled_now] = x[fooled_now]
        robust &= correct
    return worst, robust


def check_gradients(model: nn.Module, x01: torch.Tensor, labels: torch.Tensor, *, amp: bool = False,
                    key: str = "eval.adversarial") -> None:
    """Refuse a white-box attack on a model that gives no input gradient (a detached or quantising
    front-end): the attack would report robustness it never tested (gradient masking)."""
    model.eval()
    try:
        grad = input_gradient(model, x01, labels, amp=amp)
    except RuntimeError as exc:
        raise ConfigError(f"the model has no gradient with respect to its input ({exc}); a white-box attack "
                          "cannot run on it: remove eval.adversarial", key=key) from None
    if not torch.isfinite(grad).all() or float(grad.abs().sum()) == 0.0:
        raise ConfigError("the model's gradient with respect to its input is zero or not finite on every test "
                          "image (gradient masking); a white-box attack would report robustness it never tested: "
                          "remove eval.adversarial", key=key)


def evaluate_attack(model: nn.Module, images01: torch.Tensor, labels: torch.Tensor, attack: Attack, *,
                    seed: int = 0, batch_size: int = 500, amp: bool | None = None,
                    device: torch.device | None = None) -> dict[str, Any]:
    """Accuracy of `model` under `attack` on float images in [0, 1]: ``accuracy``, ``n``, ``wall_s``.

    `amp` None = bf16 autocast on CUDA only (as in training and evaluation). Batches are attacked in
    order with one RNG stream, so the result depends on `seed` and `batch_size`, not on anything else.
    """
    device = device or next(model.parameters()).device
    amp = (device.type == "cuda") if amp is None else amp
    start = time.perf_counter()
    hits = 0
    with attack_mode(model, seed, device):
        for lo in range(0, len(images01), batch_size):
            x = images01[lo:lo + batch_size].to(device).float()
            y = labels[lo:lo + batch_size].to(device)
            _, robust = pgd(model, x, y, attack, amp=amp)
            hits += int(robust.sum())
    n = len(labels)
    return {"accuracy": hits / n if n else float("nan"), "n": n, "wall_s": time.perf_counter() - start}


def run_attacks(model: nn.Module, test_images: torch.Tensor, test_labels: torch.Tensor, attacks: Sequence[Any], *,
                stochastic: bool, seed: int, batch_size: int, device: torch.device,
                log: Callable[[str], Any] | None = None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Every configured attack on the fixed subset of uint8 `test_images`: (metrics, summary rows).

    Each attack uses seed `seed` + its index; the subset is drawn with `seed` (`subset_indices`).
    """
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    n_test = len(test_labels)
    for i, cfg in enumerate(attacks):
        n_img = spec.resolve_images(cfg.images, n_test)
        if n_img > n_test:
            raise ConfigError(f"{n_img} images but the test set has {n_test}; allowed: [1, {n_test}]",
                              key=f"eval.adversarial[{i}].images")
        attack = resolve(cfg, stochastic)
        idx = subset_indices(n_test, n_img, seed).to(test_images.device)
        x01 = test_images[idx].float() / 255.0
        out = evaluate_attack(model, x01, test_labels[idx], attack, seed=seed + i, batch_size=batch_size,
                              device=device)
        metrics[attack.metric] = out["accuracy"]
        back, fwd = spec.passes_per_image(vars(attack), stochastic)
        rows.append({"metric": attack.metric, "norm": attack.norm, "eps": attack.eps, "steps": attack.steps,
                     "step_size": attack.step_size, "eot": attack.eot, "restarts": attack.restarts,
                     "random_start": attack.random_start, "images": n_img, "seed": seed + i,
                     "accuracy": out["accuracy"], "passes_per_image": back, "evals_per_image": fwd,
                     "wall_s": out["wall_s"], "s_per_image": out["wall_s"] / max(n_img, 1)})
        if log is not None:
            log(f"  {attack.metric}: {out['accuracy']:.4f} on {n_img} images ({attack.steps} steps x eot "
                f"{attack.eot} x {attack.restarts} restart(s); {out['wall_s']:.1f} s)")
    return metrics, rows
