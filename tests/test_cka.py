"""Linear CKA: invariances, agreement with the HSIC formula, and the layer table of two models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from v1sweep.analysis.cka import layer_cka, linear_cka


def _hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Direct kernel form (Gretton HSIC with centring matrices), float64."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def _orthogonal(p: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("n,p1,p2", [(50, 5, 8), (12, 40, 30), (20, 20, 3)])  # feature- and kernel-space paths
def test_agrees_with_hsic_formula(n, p1, p2):
    rng = np.random.default_rng(n + p1)
    x = rng.standard_normal((n, p1))
    y = x[:, :min(p1, p2)] @ rng.standard_normal((min(p1, p2), p2)) + rng.standard_normal((n, p2))
    assert linear_cka(x, y) == pytest.approx(_hsic_cka(x, y), rel=1e-10)
    assert linear_cka(torch.as_tensor(x, dtype=torch.float32), y) == pytest.approx(_hsic_cka(x, y), rel=1e-5)


def test_identity_orthogonal_and_scale_invariance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 10))
    y = np.tanh(x @ rng.standard_normal((10, 7))) + 0.3 * rng.standard_normal((30, 7))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    base = linear_cka(x, y)
    assert 0 < base < 1
    qx, qy = _orthogonal(10, rng), _orthogonal(7, rng)
    assert linear_cka(x @ qx, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(3.7 * x @ qx, 0.01 * y @ qy) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, x @ qx) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x + 5.0, y - 2.0) == pytest.approx(base, rel=1e-10)  # column means removed


def test_not_invariant_to_general_linear_maps():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 6))
    a = np.diag([100.0, 1, 1, 1, 1, 0.01]) @ _orthogonal(6, rng)  # invertible, far from orthogonal
    assert np.linalg.matrix_rank(a) == 6
    assert linear_cka(x, x @ a) < 0.9


def test_flattens_maps_and_rejects_bad_input():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 3, 4, 4))
    assert linear_cka(x, x.reshape(8, -1)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(x, x[:5])
    assert np.isnan(linear_cka(np.ones((6, 3)), x[:6]))


@pytest.fixture(scope="module")
def tiny_models():
    from v1sweep.config import trial as cfgmod
    from v1sweep.trial.models import build_model
    from v1sweep.rf import sample

    cfg = cfgmod.from_dict({"data": {"image_size": 32},
                            "frontend": {"n_simple": 6, "n_complex": 6, "ksize": 9, "visual_degrees": 2.0,
                                         "sf_max": 8.0},
                            "model": {"backbone": "tiny", "bottleneck": 8}})
    models = []
    for strategy in ("biological", "unif1"):
        torch.manual_seed(0)
        models.append(build_model(cfg, sample(strategy, 6, 6, seed=0, sf_max=8.0), num_classes=10))
    return models


def test_layer_cka_table(tiny_models):
    bio, unif = tiny_models
    images = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8)
    noise = lambda x: x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))  # noqa: E731
    table = layer_cka(bio, unif, images, ["vone", "bottleneck", ("layer1", "layer2")], corruption_fn=noise)
    assert list(table.columns) == ["layer_a", "layer_b", "probe", "n_images", "cka"]
    assert set(table["probe"]) == {"clean", "corrupted", "all"}
    assert len(table) == 9
    assert table.loc[table["probe"] == "all", "n_images"].eq(48).all()
    assert table["cka"].between(0, 1 + 1e-9).all()
    same = layer_cka(bio, bio, images, ["vone", "layer2"], corruption_fn=noise)
    assert np.allclose(same["cka"], 1.0)
    named = layer_cka(bio, unif, images[:8], ["logits"], corruptions=[("gaussian_noise", 2), ("contrast", 3)])
    assert list(named["probe"]) == ["clean", "gaussian_noise/2", "contrast/3", "all"]
    assert named["cka"].between(0, 1 + 1e-9).all() and named["n_images"].tolist() == [8, 8, 8, 24]
    # the table entry equals CKA of the activations collected by hand (pooled 4x4 like the default)
    from v1sweep.trial.models import layer_outputs

    x = (images.float() / 255 - 0.5) / 0.5
    bio.eval(), unif.eval()
    a = torch.nn.functional.adaptive_avg_pool2d(layer_outputs(bio, x, "vone")["vone"], 4).flatten(1)
    b = torch.nn.functional.adaptive_avg_pool2d(layer_outputs(unif, x, "vone")["vone"], 4).flatten(1)
    row = table[(table["layer_a"] == "vone") & (table["probe"] == "clean")]
    assert row["cka"].item() == pytest.approx(linear_cka(a, b), rel=1e-6)


def test_permutation_null_equals_cka_of_shuffled_rows():
    from v1sweep.analysis.cka import cka_permutation_null

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((30, 6)), rng.standard_normal((30, 9))
    null = cka_permutation_null(x, y, 25, seed=4)
    perms = np.random.default_rng(4)
    direct = [_hsic_cka(x, y[perms.permutation(30)]) for _ in range(25)]
    assert null == pytest.approx(direct, rel=1e-9)
    # a strongly related pair sits far above its null
    z = x @ rng.standard_normal((6, 9)) + 0.1 * rng.standard_normal((30, 9))
    assert linear_cka(x, z) > np.quantile(cka_permutation_null(x, z, 200), 0.99)


def test_cka_from_cached_grams_equals_linear_cka():
    from v1sweep.analysis.cka import centred_gram, cka_from_grams

    rng = np.random.default_rng(5)
    x = rng.standard_normal((25, 60))
    y = x[:, :10] @ rng.standard_normal((10, 4)) + 0.5 * rng.standard_normal((25, 4))
    assert cka_from_grams(centred_gram(x), centred_gram(y)) == pytest.approx(_hsic_cka(x - x.mean(0), y - y.mean(0)),
                                                                             rel=1e-5)
