"""Sub-population analysis of the V1 front-end: similar responses and weights, different impact?

Front-end units are grouped by their RF parameters (`group_units`): SF band (low/mid/high, by
terciles of the SFs pooled over all variants so that every variant uses the same cpd edges, or by
fixed edges), orientation (cardinal vs oblique, or 4 bins centred on 0/45/90/135 deg) and cell type
(simple/complex). For every variant (a trained VOne model) and group it measures

- responses: the group's V1-block activations on clean vs corrupted images (mean/std over units,
  images and positions), the relative change of the mean, and the distortion
  ||a_corrupt - a_clean|| / ||a_clean||;
- downstream weights: the 1x1 bottleneck's input columns of those units. Units are not matched
  one-to-one across variants, and the bottleneck's output channels are not either, so only
  permutation-invariant statistics are compared: per-group column-norm distribution (mean, and the
  KS distance to the reference variant's same group), the group's share of the squared weight
  norm per unit (`weight_share_per_unit`, 1 = average), the mean pairwise cosine between the
  group's columns (`weight_mean_cosine`: how redundant its read-outs are), the cosine between
  variants' per-group weight-norm profiles, and the similarity of the Gram matrices of the
  group-mean columns (`weight_gram_similarity_vs_ref` = <G_a, G_b>_F / (|G_a| |G_b|) with
  G = M^T M, M = output channels x groups: norms of and angles between the groups' mean read-outs,
  invariant to any orthogonal map, hence any permutation, of the bottleneck outputs);
- impact: ablation, the group's V1 channels zeroed by a forward hook on `model.vone`; change of clean
  and corruption accuracy against the intact model, absolute and relative to the intact accuracy,
  and per ablated unit (``*_per_unit``). Groups differ in size (an SF tercile of a uniform variant
  is not the size of the biological one; cardinal vs oblique are unequal by definition), so
  silencing a larger group does more for that reason alone: the equal-size ablation
  (``eq_*``) silences `eq_draws` random subsets of ``eq_units`` units of every group, eq_units the
  smallest group of that grouping over all variants, and reports the mean and SD over draws.

`compare_variants` returns one tidy DataFrame and a PNG that puts the three side by side.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, cast

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from v1sweep.rf.params import RFParams

if TYPE_CHECKING:
    from v1sweep.trial.models import V1Net

GROUPINGS = ("sf", "orientation", "cell_type")
EvalFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]


# ----------------------------------------------------------------------------- grouping
def sf_tercile_edges(rfs: Sequence[RFParams]) -> tuple[float, float]:
    """The two inner edges (cpd) splitting the pooled SFs of `rfs` into terciles."""
    sf = np.concatenate([rf.sf for rf in rfs])
    lo, hi = np.quantile(sf, [1 / 3, 2 / 3])
    return float(lo), float(hi)


def group_units(rf: RFParams, by: str, *, sf_edges: Sequence[float] | None = None,
                orientation_bins: int = 2) -> np.ndarray:
    """A group label per unit (object array, one label each: a partition of the units).

    by='sf': 'low'/'mid'/'high' at the inner `sf_edges` (default: this RF's terciles);
    by='orientation': 'cardinal'/'oblique' (De Valois bins: within 22.5 deg of 0 or 90), or with
    `orientation_bins=4` 'ori0'/'ori45'/'ori90'/'ori135'; by='cell_type': 'simple'/'complex'."""
    if by == "sf":
        lo, hi = sf_edges if sf_edges is not None else sf_tercile_edges([rf])
        if not lo <= hi:
            raise ValueError(f"sf_edges must be increasing, got {sf_edges}")
        return np.where(rf.sf < lo, "low", np.where(rf.sf < hi, "mid", "high")).astype(object)
    if by == "orientation":
        # De Valois bins [-22.5, 22.5), [22.5, 67.5), ... centred on 0/45/90/135 (180 wraps to 0)
        centre = np.floor((np.mod(rf.theta, 180.0) + 22.5) / 45.0).astype(int) % 4
        if orientation_bins == 4:
            return np.array([f"ori{45 * c}" for c in centre], dtype=object)
        if orientation_bins == 2:
            return np.where(centre % 2 == 0, "cardinal", "oblique").astype(object)
        raise ValueError(f"orientation_bins must be 2 or 4, got {orientation_bins}")
    if by == "cell_type":
        return np.where(rf.complex, "complex", "simple").astype(object)
    raise ValueError(f"unknown grouping {by!r}; valid: {', '.join(GROUPINGS)}")


GROUP_ORDER = {"sf": ("low", "mid", "high"), "orientation": ("cardinal", "oblique", "ori0", "ori45", "ori90", "ori135"),
               "cell_type": ("simple", "complex")}


def _ordered(by: str, labels: np.ndarray) -> list[str]:
    present = set(labels.tolist())
    return [g for g in GROUP_ORDER[by] if g in present]


# ----------------------------------------------------------------------------- model access
def _front_end(model: nn.Module) -> tuple[nn.Module, nn.Conv2d]:
    """(V1 block, the 1x1 conv that reads it): `model.bottleneck` itself or its first Conv2d
    (VOne models: conv -> BatchNorm -> ReLU)."""
    vone, bottleneck = getattr(model, "vone", None), getattr(model, "bottleneck", None)
    if vone is None or bottleneck is None:
        raise ValueError("sub-population analysis needs a VOne model with .vone and .bottleneck "
                         "(plain baselines have no V1 units)")
    conv = bottleneck if isinstance(bottleneck, nn.Conv2d) else \
        next((m for m in bottleneck.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or tuple(conv.kernel_size) != (1, 1) or conv.groups != 1:
        raise ValueError("model.bottleneck must be (or start with) a 1x1 Conv2d reading the V1 channels")
    return vone, conv


@contextlib.contextmanager
def ablate(model: nn.Module, channels: Sequence[int] | np.ndarray) -> Iterator[nn.Module]:
    """Within the block, the V1 block's output `channels` are zeroed (forward hook on model.vone)."""
    vone, _ = _front_end(model)
    idx = torch.as_tensor(np.asarray(channels, dtype=np.int64))

    def hook(_module: nn.Module, _inp: object, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, idx.to(out.device)] = 0
        return out

    handle = vone.register_forward_hook(hook)
    try:
        yield model
    finally:
        handle.remove()


def _normalise(images: torch.Tensor) -> torch.Tensor:
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return (x - 0.5) / 0.5


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy on [0, 1] float (or uint8) images, normalised as the data loader does."""
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    correct = 0
    try:
        for s in range(0, len(images), batch_size):
            logits = model(_normalise(images[s:s + batch_size]).to(device))
            correct += int((logits.argmax(1).cpu() == labels[s:s + batch_size].cpu()).sum())
    finally:
        model.train(was_training)
    return correct / max(1, len(images))


@torch.no_grad()
def v1_activations(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """V1-block outputs (N, C, H', W') for [0, 1] images (hook on model.vone, full forward pass)."""
    vone, _ = _front_end(model)
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    captured: list[torch.Tensor] = []
    handle = vone.register_forward_hook(lambda _m, _i, out: captured.append(out.float().cpu()))
    try:
        for s in range(0, len(images), batch_size):
            model(_normalise(images[s:s + batch_size]).to(device))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured)


@torch.no_grad()
def downstream_accuracy(model: nn.Module, acts: torch.Tensor, labels: torch.Tensor,
                        channels: Sequence[int] | np.ndarray | None = None, batch_size: int = 256) -> float:
    """Top-1 accuracy of a `V1Net` computed from its precomputed V1-block outputs `acts` (as from
    `v1_activations`), with `channels` zeroed: `ablate` + `accuracy` without recomputing the block,
    which is most of a small model's work. The same numbers when the block is deterministic (no
    noise, or noise frozen and the same `batch_size`)."""
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    idx = None if channels is None else torch.as_tensor(np.asarray(channels, dtype=np.int64), device=device)
    correct = 0
    try:
        for s in range(0, len(acts), batch_size):
            a = acts[s:s + batch_size].to(device)
            if idx is not None:
                a = a.clone()
                a[:, idx] = 0
            net = cast("V1Net", model)  # a V1Net (see the docstring)
            logits = net.head(net.body(net.bottleneck(a)))
            correct += int((logits.argmax(1).cpu() == labels[s:s + batch_size].cpu()).sum())
    finally:
        model.train(was_training)
    return correct / max(1, len(acts))


def _is_v1net(model: nn.Module) -> bool:
    from v1sweep.trial.models import V1Net

    return isinstance(model, V1Net) and model.vone is not None


# ----------------------------------------------------------------------------- statistics
def _response_stats(clean: torch.Tensor, corrupt: torch.Tensor, idx: np.ndarray) -> dict[str, float]:
    a = clean[:, idx].double()
    b = corrupt[:, idx].double()
    m_a, m_b = float(a.mean()), float(b.mean())
    return {"resp_clean_mean": m_a, "resp_clean_std": float(a.std()),
            "resp_corrupt_mean": m_b, "resp_corrupt_std": float(b.std()),
            "resp_rel_change": (m_b - m_a) / abs(m_a) if m_a != 0 else float("nan"),
            "resp_distortion": float((b - a).norm() / a.norm()) if float(a.norm()) > 0 else float("nan")}


def _rel(value: float, base: float) -> float:
    return (value - base) / base if base > 0 else float("nan")


def _mean_pairwise_cosine(cols: np.ndarray) -> float:
    """Mean cosine between distinct columns (NaN for fewer than two)."""
    n = cols.shape[1]
    if n < 2:
        return float("nan")
    unit = cols / np.maximum(np.linalg.norm(cols, axis=0, keepdims=True), 1e-300)
    c = unit.T @ unit
    return float((c.sum() - np.trace(c)) / (n * (n - 1)))


def _gram_similarity(m_a: np.ndarray, m_b: np.ndarray) -> float:
    """<G_a, G_b>_F / (|G_a| |G_b|), G = M^T M: compares the group-mean read-outs of two variants
    (columns = groups, matched) without matching the rows (bottleneck outputs)."""
    g_a, g_b = m_a.T @ m_a, m_b.T @ m_b
    den = np.linalg.norm(g_a) * np.linalg.norm(g_b)
    return float((g_a * g_b).sum() / den) if den > 0 else float("nan")


def _weight_columns(bottleneck: nn.Conv2d) -> np.ndarray:
    """(out, in) matrix of the 1x1 bottleneck; column i = the downstream weights of V1 channel i."""
    w = bottleneck.weight.detach().cpu().double()
    if w.shape[-2:] != (1, 1):
        raise ValueError(f"bottleneck must be a 1x1 conv, got kernel {tuple(w.shape[-2:])}")
    return w[:, :, 0, 0].numpy()


# ----------------------------------------------------------------------------- main entry
def compare_variants(models: Mapping[str, nn.Module], rf_by_model: Mapping[str, RFParams],
                     images: torch.Tensor, labels: torch.Tensor,
                     corruption_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, *,
                     groupings: Sequence[str] = GROUPINGS, reference: str | None = None,
                     sf_edges: Sequence[float] | None = None, orientation_bins: int = 2,
                     evaluate_fn: EvalFn | None = None, batch_size: int = 256,
                     figure_path: str | Path | None = "subpopulations.png", ablation: bool = True,
                     eq_draws: int = 3, seed: int = 0, eq_units: Mapping[str, int] | None = None,
                     ) -> tuple[pd.DataFrame, Path | None]:
    """Per variant x grouping x group: response, weight and ablation statistics (tidy DataFrame),
    plus a PNG of the three side by side. `images` are uint8 or float [0, 1] (N, 3, H, W);
    `corruption_fn` maps them to corrupted [0, 1] floats (default: gaussian_noise severity 3 via
    `v1sweep.corruptions.apply`); `evaluate_fn(model, images, labels) -> accuracy` (default top-1,
    computed for `V1Net`s from the V1 activations already measured: `downstream_accuracy`).
    `reference` (default: the first variant) anchors the cross-variant weight comparisons.
    `figure_path=None` skips the figure (returned as None), e.g. when tables are averaged first.
    `eq_draws` random equal-size subsets per group (seeded by `seed`) make the ``eq_*`` columns;
    `eq_units` (grouping -> units) fixes the subset size, e.g. the same over several calls, else the
    smallest group of each grouping over these variants (capped by each group's size)."""
    if not models:
        raise ValueError("compare_variants needs at least one model")
    missing = [k for k in models if k not in rf_by_model]
    if missing:
        raise ValueError(f"rf_by_model lacks RF params for {missing}")
    for g in groupings:
        if g not in GROUPINGS:
            raise ValueError(f"unknown grouping {g!r}; valid: {', '.join(GROUPINGS)}")
    reference = reference if reference is not None else next(iter(models))
    if reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the variants {list(models)}")
    if corruption_fn is None:
        from v1sweep.corruptions import apply

        corruption_fn = lambda x: apply(x, "gaussian_noise", 3, seed=0)  # noqa: E731
    from_acts = evaluate_fn is None
    evaluate_fn = evaluate_fn or (lambda m, x, y: accuracy(m, x, y, batch_size))
    clean = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    corrupt = corruption_fn(clean.clone()).clamp(0, 1)
    if sf_edges is None:
        sf_edges = sf_tercile_edges(list(rf_by_model[k] for k in models))

    labels_by = {k: {g: group_units(rf_by_model[k], g, sf_edges=sf_edges, orientation_bins=orientation_bins)
                     for g in groupings} for k in models}
    weights = {k: _weight_columns(_front_end(m)[1]) for k, m in models.items()}
    for k in models:
        if weights[k].shape[1] != len(rf_by_model[k]):
            raise ValueError(f"variant {k!r}: bottleneck reads {weights[k].shape[1]} channels but its RF "
                             f"params list {len(rf_by_model[k])} units")

    smallest = {g: max(1, min(int((labels_by[k][g] == grp).sum()) for k in models
                               for grp in set(labels_by[k][g]))) for g in groupings}
    eq_units = {g: int(eq_units[g]) if eq_units and g in eq_units else smallest[g] for g in groupings}
    rng = np.random.default_rng(seed)
    rows = []
    for variant, model in models.items():
        act_clean = v1_activations(model, clean, batch_size)
        act_corrupt = v1_activations(model, corrupt, batch_size)
        fast = from_acts and _is_v1net(model)

        def score(corrupted: bool, idx: np.ndarray | None = None, model: nn.Module = model, fast: bool = fast,
                  acts: tuple = (act_clean, act_corrupt)) -> float:
            if fast:
                return downstream_accuracy(model, acts[corrupted], labels, idx, batch_size)
            x = corrupt if corrupted else clean
            if idx is None:
                return evaluate_fn(model, x, labels)
            with ablate(model, idx):
                return evaluate_fn(model, x, labels)

        base_clean = score(False) if ablation else float("nan")
        base_corrupt = score(True) if ablation else float("nan")
        col_norm = np.linalg.norm(weights[variant], axis=0)
        total_sq = float((col_norm ** 2).sum())
        for by in groupings:
            lab = labels_by[variant][by]
            for group in _ordered(by, lab):
                idx = np.flatnonzero(lab == group)
                row: dict[str, Any] = {"variant": variant, "grouping": by, "group": group, "n_units": len(idx),
                       "unit_fraction": len(idx) / len(lab)}
                row.update(_response_stats(act_clean, act_corrupt, idx))
                share = float((col_norm[idx] ** 2).sum()) / total_sq if total_sq > 0 else float("nan")
                row.update({"weight_norm_mean": float(col_norm[idx].mean()),
                            "weight_norm_std": float(col_norm[idx].std()),
                            "weight_share": share,
                            "weight_share_per_unit": share / row["unit_fraction"],
                            "weight_mean_cosine": _mean_pairwise_cosine(weights[variant][:, idx])})
                ref_idx = np.flatnonzero(labels_by[reference][by] == group)
                ref_norm = np.linalg.norm(weights[reference], axis=0)[ref_idx]
                row["weight_norm_ks_vs_ref"] = (float(stats.ks_2samp(col_norm[idx], ref_norm).statistic)
                                                if len(ref_idx) else float("nan"))
                if ablation:
                    acc_clean, acc_corrupt = score(False, idx), score(True, idx)
                    row.update({"clean_acc": base_clean, "corruption_acc": base_corrupt,
                                "ablated_clean_acc": acc_clean, "ablated_corruption_acc": acc_corrupt,
                                "delta_clean_acc": acc_clean - base_clean,
                                "delta_corruption_acc": acc_corrupt - base_corrupt,
                                "rel_delta_clean_acc": _rel(acc_clean, base_clean),
                                "rel_delta_corruption_acc": _rel(acc_corrupt, base_corrupt),
                                "delta_clean_acc_per_unit": (acc_clean - base_clean) / len(idx),
                                "delta_corruption_acc_per_unit": (acc_corrupt - base_corrupt) / len(idx)})
                    if eq_draws > 0:
                        m = min(eq_units[by], len(idx))
                        deltas = [score(True, np.sort(rng.choice(idx, m, replace=False))) - base_corrupt
                                  for _ in range(eq_draws)]
                        row.update({"eq_units": m, "eq_draws": eq_draws,
                                    "eq_delta_corruption_acc": float(np.mean(deltas)),
                                    "eq_delta_corruption_acc_std": float(np.std(deltas, ddof=1))
                                    if eq_draws > 1 else float("nan"),
                                    "eq_rel_delta_corruption_acc": _rel(base_corrupt + float(np.mean(deltas)),
                                                                        base_corrupt)})
                        row["eq_rel_delta_corruption_acc_err"] = (row["eq_delta_corruption_acc_std"]
                                                                  / abs(base_corrupt) if base_corrupt else float("nan"))
                rows.append(row)
            rows_for = [r for r in rows if r["variant"] == variant and r["grouping"] == by]
            profile, ref_profile, means, ref_means = [], [], [], []
            for r in rows_for:
                ref_idx = np.flatnonzero(labels_by[reference][by] == r["group"])
                if not len(ref_idx):
                    continue
                idx = np.flatnonzero(lab == r["group"])
                profile.append(r["weight_norm_mean"])
                ref_profile.append(float(np.linalg.norm(weights[reference][:, ref_idx], axis=0).mean()))
                means.append(weights[variant][:, idx].mean(1))
                ref_means.append(weights[reference][:, ref_idx].mean(1))
            p, q = np.asarray(profile), np.asarray(ref_profile)
            cos = float(p @ q / (np.linalg.norm(p) * np.linalg.norm(q))) if len(p) and p.any() and q.any() \
                else float("nan")
            gram = _gram_similarity(np.stack(means, 1), np.stack(ref_means, 1)) if means else float("nan")
            for r in rows_for:
                r["weight_profile_cosine_vs_ref"] = cos
                r["weight_gram_similarity_vs_ref"] = gram
    table = pd.DataFrame(rows)
    table.attrs.update({"reference": reference, "sf_edges": tuple(sf_edges)})
    return table, None if figure_path is None else plot_subpopulations(table, figure_path)


def plot_subpopulations(table: pd.DataFrame, path: str | Path) -> Path:
    """Rows = groupings; columns = response distortion under corruption, bottleneck weight share per
    unit, and the ablation's relative change of corruption (solid) and clean (hatched) accuracy;
    bars per group x variant. The side-by-side view of 'similar responses and weights, different impact'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groupings = list(dict.fromkeys(table["grouping"]))
    variants = list(dict.fromkeys(table["variant"]))
    panels = [("resp_distortion", "responses: distortion under corruption\n||a_corr - a|| / ||a||"),
              ("weight_share_per_unit", "weights: bottleneck share per unit\n(1 = average unit)")]
    ablated = "rel_delta_corruption_acc" in table.columns
    if ablated:
        panels.append(("rel_delta_corruption_acc",
                       "impact: whole-group ablation, relative acc.\nchange (solid corrupted, hatched clean)"))
    if "eq_rel_delta_corruption_acc" in table.columns:
        m = table.groupby("grouping")["eq_units"].first().to_dict()
        panels.append(("eq_rel_delta_corruption_acc", "impact: equal-size ablation, rel. change of corr. acc.\n"
                       "(units per subset: " + ", ".join(f"{k} {int(v)}" for k, v in m.items()) + ")"))
    fig, axes = plt.subplots(len(groupings), len(panels), figsize=(4.3 * len(panels), 2.9 * len(groupings)),
                             squeeze=False)
    width = 0.8 / max(1, len(variants))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, by in enumerate(groupings):
        sub = table[table["grouping"] == by]
        groups = list(dict.fromkeys(sub["group"]))
        x = np.arange(len(groups))
        for j, (col, label) in enumerate(panels):
            ax = axes[i, j]
            for v, variant in enumerate(variants):
                vals = sub[sub["variant"] == variant].set_index("group").reindex(groups)
                pos = x + (v - (len(variants) - 1) / 2) * width
                color = colors[v % len(colors)]
                err = vals[f"{col}_err"] if f"{col}_err" in vals else vals.get(f"{col}_sd")
                yerr = None if err is None else err.fillna(0).to_numpy()
                if col == "rel_delta_corruption_acc":
                    ax.bar(pos - width / 4, vals[col], width / 2, color=color, yerr=yerr, capsize=2)
                    ax.bar(pos + width / 4, vals["rel_delta_clean_acc"], width / 2, color=color, alpha=0.45,
                           hatch="//", edgecolor="k", linewidth=0.3)
                    ax.axhline(0, color="k", linewidth=0.6)
                elif col == "eq_rel_delta_corruption_acc":
                    ax.bar(pos, vals[col], width, color=color, yerr=yerr, capsize=2)
                    ax.axhline(0, color="k", linewidth=0.6)
                else:
                    name = variant
                    if ablated and i == 0 and j == 0:
                        first = vals.iloc[0]
                        name = f"{variant} (clean {first['clean_acc']:.2f}, corr. {first['corruption_acc']:.2f})"
                    ax.bar(pos, vals[col], width, color=color, label=name, yerr=yerr, capsize=2)
            ax.set_xticks(x)
            ax.set_xticklabels(groups, fontsize=8)
            if i == 0:
                ax.set_title(label, fontsize=9)
            if j == 0:
                ax.set_ylabel(by, fontsize=9)
            if col == "weight_share_per_unit":
                ax.axhline(1, color="k", linewidth=0.6, linestyle=":")
                sim = sub.groupby("variant", sort=False)["weight_gram_similarity_vs_ref"].first()
                ax.set_xlabel("Gram sim. vs ref: " + ", ".join(f"{k} {v:.2f}" for k, v in sim.items()),
                              fontsize=7)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), fontsize=7, loc="lower center",
               ncols=max(1, len(variants)), frameon=False)
    n_note = table.attrs.get("n_note", "one model per variant; error bars: SD over the equal-size draws")
    fig.suptitle(f"Sub-populations (reference: {table.attrs.get('reference', variants[0])}); {n_note}", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["GROUPINGS", "ablate", "accuracy", "compare_variants", "downstream_accuracy", "group_units",
           "plot_subpopulations", "sf_tercile_edges", "v1_activations"]
