"""Sub-populations: grouping is a partition, ablation acts only through the group's channels,
the comparison table and figure."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from v1sweep.analysis import subpopulations as sp
from v1sweep.rf.params import RFParams

N_S, N_C, SIZE = 6, 6, 32


def _rf(theta, sf, complex_):
    n = len(theta)
    return RFParams(sf=np.asarray(sf, float), theta=np.asarray(theta, float), phase=np.zeros(n),
                    nx=np.full(n, 0.5), ny=np.full(n, 0.5), color=np.zeros(n, dtype=np.int64),
                    complex=np.asarray(complex_, bool))


def test_groups_partition_units_and_follow_their_definitions():
    theta = [0, 20, 22.5, 44, 67, 67.5, 100, 112, 135, 157, 157.5, 179.9]
    sf = [0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8]
    rf = _rf(theta, sf, [False] * 6 + [True] * 6)
    for by, kw in [("sf", {}), ("sf", {"sf_edges": (1.2, 4.5)}), ("orientation", {}),
                   ("orientation", {"orientation_bins": 4}), ("cell_type", {})]:
        labels = sp.group_units(rf, by, **kw)
        assert len(labels) == len(rf) and all(isinstance(v, str) for v in labels)
        members = [np.flatnonzero(labels == g) for g in np.unique(labels)]
        assert sorted(np.concatenate(members).tolist()) == list(range(len(rf)))  # each unit exactly once
    assert list(sp.group_units(rf, "sf", sf_edges=(1.2, 4.5))) == ["low"] * 2 + ["mid"] * 6 + ["high"] * 4
    ori = sp.group_units(rf, "orientation")
    assert list(ori) == ["cardinal", "cardinal", "oblique", "oblique", "oblique", "cardinal", "cardinal",
                         "cardinal", "oblique", "oblique", "cardinal", "cardinal"]
    assert list(sp.group_units(rf, "orientation", orientation_bins=4))[:6] == \
        ["ori0", "ori0", "ori45", "ori45", "ori45", "ori90"]
    assert list(sp.group_units(rf, "cell_type")) == ["simple"] * 6 + ["complex"] * 6
    lo, hi = sp.sf_tercile_edges([rf])
    assert (sp.group_units(rf, "sf") == "low").sum() == 4 and lo < hi
    with pytest.raises(ValueError, match="grouping"):
        sp.group_units(rf, "colour")


@pytest.fixture(scope="module")
def variants():
    from v1sweep.config import trial as cfgmod
    from v1sweep.trial.models import build_model
    from v1sweep.rf import sample

    cfg = cfgmod.from_dict({"data": {"image_size": SIZE},
                            "frontend": {"n_simple": N_S, "n_complex": N_C, "ksize": 9, "visual_degrees": 2.0,
                                         "sf_max": 8.0},
                            "model": {"backbone": "tiny", "bottleneck": 8}})
    models, rfs = {}, {}
    for i, strategy in enumerate(("biological", "unif1")):
        rfs[strategy] = sample(strategy, N_S, N_C, seed=i, sf_max=8.0)
        torch.manual_seed(i)
        models[strategy] = build_model(cfg, rfs[strategy], num_classes=4).eval()
        # make BatchNorm non-trivial so that the comparison below is not vacuous
        for m in models[strategy].modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return models, rfs


def _images(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, SIZE, SIZE), generator=g), torch.randint(0, 4, (n,), generator=g)


def test_ablation_equals_zeroed_bottleneck_columns(variants):
    models, rfs = variants
    model = models["biological"]
    x = (_images()[0] - 0.5) / 0.5
    idx = np.flatnonzero(sp.group_units(rfs["biological"], "cell_type") == "complex")
    with torch.no_grad():
        intact = model(x)
        with sp.ablate(model, idx):
            ablated = model(x)
        twin = copy.deepcopy(model)
        sp._front_end(twin)[1].weight[:, idx] = 0
        zeroed = twin(x)
        after = model(x)
    assert torch.allclose(ablated, zeroed, atol=1e-5)
    assert not torch.allclose(ablated, intact, atol=1e-4)  # the group mattered
    assert torch.equal(after, intact)  # hook removed
    # inside the ablation the group's V1 channels are zero and all other channels untouched
    clean = sp.v1_activations(model, _images()[0])
    with sp.ablate(model, idx):
        silenced = sp.v1_activations(model, _images()[0])
    others = np.setdiff1d(np.arange(N_S + N_C), idx)
    assert silenced[:, idx].abs().max() == 0 and clean[:, idx].abs().max() > 0
    assert torch.equal(silenced[:, others], clean[:, others])


def test_compare_variants_table_and_figure(variants, tmp_path):
    models, rfs = variants
    images, labels = _images(12)
    noise = lambda x: x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))  # noqa: E731
    table, fig = sp.compare_variants(models, rfs, images, labels, noise, reference="biological",
                                     groupings=("sf", "cell_type"), figure_path=tmp_path / "sub.png")
    expected = {"variant", "grouping", "group", "n_units", "unit_fraction", "resp_clean_mean", "resp_clean_std",
                "resp_corrupt_mean", "resp_corrupt_std", "resp_rel_change", "resp_distortion",
                "weight_norm_mean", "weight_norm_std", "weight_share", "weight_share_per_unit",
                "weight_mean_cosine", "weight_norm_ks_vs_ref", "weight_profile_cosine_vs_ref",
                "weight_gram_similarity_vs_ref", "clean_acc", "corruption_acc", "ablated_clean_acc",
                "ablated_corruption_acc", "delta_clean_acc", "delta_corruption_acc", "rel_delta_clean_acc",
                "rel_delta_corruption_acc"}
    assert expected <= set(table.columns)
    per = table.groupby(["variant", "grouping"])
    assert (per["n_units"].sum() == N_S + N_C).all()
    assert np.allclose(per["weight_share"].sum(), 1.0)
    ref = table[table["variant"] == "biological"]
    assert np.allclose(ref["weight_norm_ks_vs_ref"], 0) and np.allclose(ref["weight_profile_cosine_vs_ref"], 1)
    assert np.allclose(ref["weight_gram_similarity_vs_ref"], 1)
    assert table["weight_gram_similarity_vs_ref"].between(-1, 1 + 1e-12).all()
    assert len(table) == 2 * (3 + 2)
    # one row checked by hand: response mean and ablated accuracy of unif1's 'high' SF band
    row = table[(table["variant"] == "unif1") & (table["grouping"] == "sf") & (table["group"] == "high")].iloc[0]
    lab = sp.group_units(rfs["unif1"], "sf", sf_edges=table.attrs["sf_edges"])
    idx = np.flatnonzero(lab == "high")
    acts = sp.v1_activations(models["unif1"], images)
    assert row["resp_clean_mean"] == pytest.approx(float(acts[:, idx].double().mean()), rel=1e-6)
    twin = copy.deepcopy(models["unif1"])
    with torch.no_grad():
        sp._front_end(twin)[1].weight[:, idx] = 0
    assert row["ablated_clean_acc"] == pytest.approx(sp.accuracy(twin, images, labels))
    assert row["delta_clean_acc"] == pytest.approx(row["ablated_clean_acc"] - row["clean_acc"])
    w = sp._front_end(models["unif1"])[1].weight.detach()[:, idx, 0, 0].double()
    cos = [torch.nn.functional.cosine_similarity(w[:, a], w[:, b], dim=0).item()
           for a in range(len(idx)) for b in range(len(idx)) if a != b]
    assert row["weight_mean_cosine"] == pytest.approx(np.mean(cos), rel=1e-9)
    share = (w.norm(dim=0) ** 2).sum() / (sp._front_end(models["unif1"])[1].weight.detach().double() ** 2).sum()
    assert row["weight_share"] == pytest.approx(share.item(), rel=1e-9)
    data = fig.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # per-unit and equal-size ablation: eq_units = the smallest group of the grouping over both variants
    assert row["delta_clean_acc_per_unit"] == pytest.approx(row["delta_clean_acc"] / len(idx))
    sizes = table.groupby("grouping")["n_units"].min()
    assert (table["eq_units"] == table["grouping"].map(sizes)).all() and (table["eq_draws"] == 3).all()


def test_equal_size_ablation_by_hand(variants):
    models, rfs = variants
    images, labels = _images(12)
    noise = lambda x: (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)  # noqa: E731
    table, _ = sp.compare_variants(models, rfs, images, labels, noise, groupings=("orientation",), figure_path=None,
                                   eq_draws=2, seed=5)
    sizes = [int((sp.group_units(rfs[v], "orientation") == g).sum()) for v in models for g in ("cardinal", "oblique")]
    m = min(sizes)
    assert max(sizes) > m  # unequal groups: the subsets are real subsets somewhere
    # replay the documented draws: one generator (seed 5), variants in order, groups in order, 2 subsets each
    rng = np.random.default_rng(5)
    corrupt = noise(images.clone())
    for variant in models:
        twin_base = sp.accuracy(models[variant], corrupt, labels)
        for group in table.loc[table["variant"] == variant, "group"]:
            idx = np.flatnonzero(sp.group_units(rfs[variant], "orientation") == group)
            deltas = []
            for _ in range(2):
                sub = np.sort(rng.choice(idx, m, replace=False))
                twin = copy.deepcopy(models[variant])
                with torch.no_grad():
                    sp._front_end(twin)[1].weight[:, sub] = 0
                deltas.append(sp.accuracy(twin, corrupt, labels) - twin_base)
            row = table[(table["variant"] == variant) & (table["group"] == group)].iloc[0]
            assert row["eq_units"] == m and row["eq_delta_corruption_acc"] == pytest.approx(np.mean(deltas))


def test_compare_variants_rejects_plain_models_and_bad_options(variants):
    models, rfs = variants
    images, labels = _images(4)
    with pytest.raises(ValueError, match="grouping"):
        sp.compare_variants(models, rfs, images, labels, lambda x: x, groupings=("colour",))
    with pytest.raises(ValueError, match="rf_by_model"):
        sp.compare_variants(models, {"biological": rfs["biological"]}, images, labels, lambda x: x)
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * SIZE * SIZE, 4))
    with pytest.raises(ValueError, match="VOne model"):
        sp.compare_variants({"plain": plain}, {"plain": rfs["biological"]}, images, labels, lambda x: x)


def test_weight_gram_similarity_ignores_how_outputs_are_ordered_or_rotated():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((8, 3))  # 8 bottleneck outputs x 3 group-mean read-outs
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    assert sp._gram_similarity(m, q @ m) == pytest.approx(1.0)
    assert sp._gram_similarity(m, m[rng.permutation(8)]) == pytest.approx(1.0)
    assert sp._gram_similarity(m, m * np.array([1.0, 3.0, 0.2])) < 0.9  # groups weighted differently


def test_ablation_from_v1_activations_matches_the_hooked_forward_pass(variants):
    """The default evaluation reuses the measured V1 outputs; a custom evaluate_fn (here the plain
    top-1 accuracy) runs the whole model under `ablate`: the same table."""
    models, rfs = variants
    images, _ = _images(20, seed=3)
    with torch.no_grad():  # labels = the biological model's own predictions: ablations can only lose
        labels = models["biological"]((images - 0.5) / 0.5).argmax(1)
    flip = lambda x: x.flip(-1)  # noqa: E731
    fast, _ = sp.compare_variants(models, rfs, images, labels, flip, groupings=("cell_type", "sf"), figure_path=None)
    slow, _ = sp.compare_variants(models, rfs, images, labels, flip, groupings=("cell_type", "sf"), figure_path=None,
                                  evaluate_fn=lambda m, x, y: sp.accuracy(m, x, y))
    cols = ["clean_acc", "corruption_acc", "ablated_clean_acc", "ablated_corruption_acc"]
    pd.testing.assert_frame_equal(fast[cols], slow[cols])
    assert fast["ablated_clean_acc"].nunique() > 1  # the ablations changed something
    acts = sp.v1_activations(models["biological"], images)
    idx = np.flatnonzero(sp.group_units(rfs["biological"], "cell_type") == "simple")
    with sp.ablate(models["biological"], idx):
        ref = sp.accuracy(models["biological"], images, labels)
    assert sp.downstream_accuracy(models["biological"], acts, labels, idx) == ref
