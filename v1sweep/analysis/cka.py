"""Linear centred kernel alignment (CKA) between layers of two models.

Kornblith et al. 2019: with column-centred activation matrices X (n x p1) and Y (n x p2),

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)
              = <K_c, L_c>_F / (||K_c||_F ||L_c||_F),  K = X X^T, L = Y Y^T (kernel form).

It is invariant to orthogonal transforms and isotropic scaling of either side (so to permutations
of units) but not to arbitrary invertible linear maps. Computed in float64; the cheaper form is
picked from the shapes (feature space when p1 p2 < n^2, kernel space otherwise).

`layer_cka` runs a probe set of clean and corrupted images through two models and tabulates CKA per
layer and probe, e.g. a uniform-variant model against the biological model trained with the same seeds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, Sequence, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

if TYPE_CHECKING:
    from v1sweep.trial.models import V1Net


def _as_matrix(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if t.ndim < 2:
        raise ValueError(f"activations must be (n, features...) with n examples, got shape {tuple(t.shape)}")
    return t.reshape(t.shape[0], -1)


def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Linear CKA between two activation matrices with the same rows (examples); extra
    dimensions are flattened into features. NaN if either side is constant across examples."""
    x, y = _as_matrix(x), _as_matrix(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same examples on both sides: {x.shape[0]} vs {y.shape[0]} rows")
    if x.shape[0] < 2:
        raise ValueError("CKA needs at least 2 examples")
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    n = x.shape[0]
    if x.shape[1] * y.shape[1] < n * n:
        num = (y.T @ x).square().sum()
        den = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    else:
        k, l = x @ x.T, y @ y.T  # already centred: H K H = K for centred columns
        num = (k * l).sum()
        den = torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(l)
    return float(num / den) if float(den) > 0 else float("nan")


def centred_gram(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """K = X_c X_c^T / ||X_c X_c^T||_F (float64) for columns centred over examples: linear CKA of two
    representations of the same examples is then the plain sum of the element-wise product
    (`cka_from_grams`), so each model's Gram is computed once and reused for every pair. The
    product X_c X_c^T runs in float32 (the activations' precision), the rest in float64."""
    t = torch.as_tensor(x).detach().to("cpu", torch.float32).reshape(len(x), -1)
    t = t - t.mean(0, keepdim=True)
    k = (t @ t.T).double()
    norm = torch.linalg.matrix_norm(k)
    return k / norm if float(norm) > 0 else torch.full_like(k, float("nan"))


def cka_from_grams(k: torch.Tensor, l: torch.Tensor) -> float:
    """Linear CKA from two `centred_gram`s of the same examples."""
    return float((k * l).sum())


def cka_permutation_null(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, n_perm: int,
                         seed: int = 0) -> np.ndarray:
    """Linear CKA of `x` against `y` with y's rows (examples) shuffled, `n_perm` times: the CKA two
    unrelated representations of these examples reach by chance (it is not 0 for few examples or
    many features). Kernel form with the centred Grams computed once; returns the n_perm values."""
    x, y = _as_matrix(x), _as_matrix(y)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    k, l = x @ x.T, y @ y.T
    den = float(torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(l))
    if den == 0:
        return np.full(n_perm, np.nan)
    rng = np.random.default_rng(seed)
    out = np.empty(n_perm)
    for i in range(n_perm):
        p = torch.as_tensor(rng.permutation(x.shape[0]))
        out[i] = float((k * l[p][:, p]).sum()) / den
    return out


def _to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (0-255) or float [0, 1] images -> float [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images.float()


def _default_corruption(name: str, severity: int, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        from v1sweep.corruptions import apply
    except ImportError as exc:  # pragma: no cover - depends on the corruptions package being present
        raise ValueError("corrupted probes need v1sweep.corruptions.apply or an explicit "
                         "corruption_fn") from exc
    return lambda x: apply(x, name, severity, seed=seed)


@torch.no_grad()
def collect_activations(model: nn.Module, images: torch.Tensor, layers: Sequence[str], *,
                        batch_size: int = 64, pool: int | None = 4) -> dict[str, torch.Tensor]:
    """Activations of `layers` (names understood by `v1sweep.trial.models.layer_outputs`) for [0, 1]
    images, normalised as the data loader does. Spatial maps are average-pooled to pool x pool
    (None keeps every position) so that large layers fit in memory; returns float32 (n, features)."""
    from v1sweep.trial.models import layer_outputs

    was_training = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    try:
        for start in range(0, len(images), batch_size):
            x = (_to_unit_float(images[start:start + batch_size]) - 0.5) / 0.5
            acts = layer_outputs(cast("V1Net", model), x.to(device), list(layers))
            for name in layers:
                a = acts[name].float()
                if a.ndim == 4 and pool is not None:
                    a = nn.functional.adaptive_avg_pool2d(a, min(pool, a.shape[-1]))
                out[name].append(a.reshape(a.shape[0], -1).cpu())
    finally:
        model.train(was_training)
    return {name: torch.cat(chunks) for name, chunks in out.items()}


def layer_cka(model_a: nn.Module, model_b: nn.Module, images: torch.Tensor,
              layers: Sequence[str] | Sequence[tuple[str, str]], *,
              corruptions: Sequence[tuple[str, int]] = (("gaussian_noise", 3),),
              corruption_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
              seed: int = 0, batch_size: int = 64, pool: int | None = 4,
              probes: Mapping[str, torch.Tensor] | None = None) -> pd.DataFrame:
    """CKA between `model_a` and `model_b` per layer on the clean probe, each corrupted probe and
    all probes pooled. `layers` are names shared by both models or (name_a, name_b) pairs.
    `corruption_fn(images) -> images` (float [0, 1]) replaces the named corruptions when given;
    `probes` (name -> the same images transformed, uint8 or float [0, 1]) replaces both, e.g.
    corrupted sets computed once for many model pairs."""
    pairs = [(l, l) if isinstance(l, str) else (str(l[0]), str(l[1])) for l in layers]
    if not pairs:
        raise ValueError("layer_cka needs at least one layer")
    clean = _to_unit_float(torch.as_tensor(images))
    given, probes = probes, {"clean": clean}
    if given is not None:
        for name, x in given.items():
            if len(x) != len(clean):
                raise ValueError(f"probe {name!r} has {len(x)} images, the clean probe {len(clean)}")
            probes[str(name)] = _to_unit_float(torch.as_tensor(x))
    elif corruption_fn is not None:
        probes["corrupted"] = corruption_fn(clean.clone()).clamp(0, 1)
    else:
        for name, severity in corruptions:
            probes[f"{name}/{severity}"] = _default_corruption(name, severity, seed)(clean.clone()).clamp(0, 1)
    names_a = sorted({a for a, _ in pairs})
    names_b = sorted({b for _, b in pairs})
    acts = {p: (collect_activations(model_a, x, names_a, batch_size=batch_size, pool=pool),
                collect_activations(model_b, x, names_b, batch_size=batch_size, pool=pool))
            for p, x in probes.items()}
    rows = []
    for la, lb in pairs:
        for probe, (aa, ab) in acts.items():
            rows.append({"layer_a": la, "layer_b": lb, "probe": probe, "n_images": len(aa[la]),
                         "cka": linear_cka(aa[la], ab[lb])})
        if len(probes) > 1:
            xa = torch.cat([acts[p][0][la] for p in probes])
            xb = torch.cat([acts[p][1][lb] for p in probes])
            rows.append({"layer_a": la, "layer_b": lb, "probe": "all", "n_images": len(xa),
                         "cka": linear_cka(xa, xb)})
    return pd.DataFrame(rows)


__all__ = ["centred_gram", "cka_from_grams", "cka_permutation_null", "collect_activations", "layer_cka",
           "linear_cka"]
