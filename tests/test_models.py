"""Backbones: every registered one, with and without the V1 block, gives logits and backprops."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v1sweep.config import trial as cfg
from v1sweep.errors import ConfigError
from v1sweep.trial.models import build_model, layer_outputs, list_backbones
from v1sweep.rf.params import RFParams
from v1sweep.testing.backbones import BackboneContract


def make_rf(n_simple: int, n_complex: int, seed: int = 0, sf_max: float = 11.0) -> RFParams:
    rng = np.random.default_rng(seed)
    n = n_simple + n_complex
    return RFParams(
        sf=np.exp(rng.uniform(np.log(0.5), np.log(sf_max), n)), theta=rng.uniform(0, 180, n),
        phase=rng.uniform(0, 360, n), nx=10 ** rng.uniform(-1, 0.2, n), ny=10 ** rng.uniform(-1, 0.2, n),
        color=rng.integers(0, 3, n), complex=np.r_[np.zeros(n_simple, bool), np.ones(n_complex, bool)])


def small_config(backbone: str, image_size: int, enabled: bool = True, **flat) -> cfg.TrialConfig:
    """A study-shaped config shrunk for CPU tests (4 + 4 V1 channels, 7 px kernels, 32 ppd)."""
    tree = {
        "data": {"image_size": image_size},
        "frontend": {"enabled": enabled, "n_simple": 4, "n_complex": 4, "ksize": 7, "stride": 2,
                     "visual_degrees": image_size / 32},
        "model": {"backbone": backbone},
    }
    config = cfg.from_dict(tree)
    return cfg.replace(config, **flat) if flat else config


def _check_trains(model, x, num_classes):
    logits = model(x)
    assert logits.shape == (x.shape[0], num_classes)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.arange(x.shape[0]) % num_classes).backward()
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    assert any(float(p.grad.abs().sum()) > 0 for p in model.bottleneck.parameters())


def test_registry_matches_config_choices():
    assert sorted(list_backbones()) == sorted(cfg.BACKBONES)


class TestBackboneContract(BackboneContract):
    """`v1sweep.testing.backbones.check_backbone`'s parts on every registered backbone."""


# ResNet50 on 64 px (layer1 at 64x64 without the V1 block) takes ~10 s on 2 cores: kept, marked slow.
HEAVY = {("resnet50", 64)}
CASES = [pytest.param(b, s, marks=[pytest.mark.slow] if (b, s) in HEAVY else [], id=f"{b}-{s}px")
         for b in list_backbones() for s in (32, 64)]


@pytest.mark.parametrize("enabled", [True, False], ids=["v1", "plain"])
@pytest.mark.parametrize("backbone,image_size", CASES)
def test_every_backbone_gives_logits_and_backprops(backbone, enabled, image_size):
    torch.manual_seed(0)
    config = small_config(backbone, image_size, enabled)
    rf = make_rf(4, 4) if enabled else None
    model = build_model(config, rf, num_classes=7)
    assert (model.vone is not None) == enabled
    if enabled:
        assert list(model.vone.parameters()) == []  # the Gabor bank is fixed
    _check_trains(model, torch.randn(2, 3, image_size, image_size), 7)


def test_vone_resnet18_layer_output_shapes():
    torch.manual_seed(0)
    model = build_model(small_config("resnet18", 64), make_rf(4, 4), num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    names = ["vone", "bottleneck", "layer1", "layer2", "layer3", "layer4", "features", "logits"]
    outs = layer_outputs(model, x, names)
    shapes = {k: tuple(v.shape) for k, v in outs.items()}
    assert shapes == {"vone": (2, 8, 32, 32), "bottleneck": (2, 64, 32, 32), "layer1": (2, 64, 32, 32),
                      "layer2": (2, 128, 16, 16), "layer3": (2, 256, 8, 8), "layer4": (2, 512, 4, 4),
                      "features": (2, 512), "logits": (2, 10)}
    torch.testing.assert_close(outs["vone"], model.vone(x))
    torch.testing.assert_close(outs["logits"], model(x))
    # Features feed the classifier: fc(features) == logits.
    torch.testing.assert_close(model.head.fc(outs["features"]), outs["logits"])
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed


def test_baseline_layer_outputs_and_cifar_stem_option():
    torch.manual_seed(0)
    model = build_model(small_config("resnet18", 32, enabled=False, **{"model.stem": "cifar"}), None,
                        num_classes=10).eval()
    outs = layer_outputs(model, torch.randn(2, 3, 32, 32), ["bottleneck", "layer1", "layer4"])
    assert outs["bottleneck"].shape == (2, 64, 32, 32)  # 3x3 stride-1 stem, no max-pool
    assert model.bottleneck.conv.kernel_size == (3, 3)
    assert outs["layer4"].shape == (2, 512, 4, 4)
    with pytest.raises(ValueError, match="valid: bottleneck, layer1"):
        layer_outputs(model, torch.randn(1, 3, 32, 32), ["vone"])


def test_bottleneck_relu_output_captured_before_in_place_changes():
    torch.manual_seed(0)
    model = build_model(small_config("tiny", 32), make_rf(4, 4), num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    outs = layer_outputs(model, x, ["bottleneck", "layer1"])
    torch.testing.assert_close(outs["bottleneck"], model.bottleneck(model.vone(x)))
    torch.testing.assert_close(outs["layer1"], model.body.layer1(outs["bottleneck"]))


def test_layer_outputs_unknown_name_lists_valid():
    model = build_model(small_config("tiny", 32), make_rf(4, 4), num_classes=3)
    with pytest.raises(ValueError, match="valid: vone, bottleneck, layer1, layer2, layer3, layer4, features, logits"):
        layer_outputs(model, torch.randn(1, 3, 32, 32), ["layer9"])


def test_other_bottleneck_width():
    torch.manual_seed(0)
    config = small_config("resnet18", 32, **{"model.bottleneck": 32})
    model = build_model(config, make_rf(4, 4), num_classes=5)
    assert model.bottleneck.conv.out_channels == 32
    _check_trains(model, torch.randn(2, 3, 32, 32), 5)


def test_eval_forward_is_deterministic():
    model = build_model(small_config("tiny", 32), make_rf(4, 4), num_classes=4).eval()
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_frontend_options_reach_the_block():
    config = small_config("tiny", 64, **{"frontend.noise": "neuronal", "frontend.k_exc": 23.0,
                                         "frontend.stride": 4, "frontend.ksize": 9})
    model = build_model(config, make_rf(4, 4), num_classes=2)
    block = model.vone
    assert (block.noise, block.k_exc, block.stride, block.ksize) == ("neuronal", 23.0, 4, 9)
    assert (block.image_size, block.visual_degrees) == (64, 2.0)
    assert (block.noise_scale, block.noise_level) == (1.0, 1.0)  # the study's code (tinyimagenet2023)
    old = build_model(cfg.replace(config, **{"rf.preset": "vonenet2020"}), make_rf(4, 4), num_classes=2).vone
    assert (old.noise_scale, old.noise_level) == (0.35, 0.07)  # the 2020 VOneNet
    assert model.vone(torch.randn(2, 3, 64, 64)).shape == (2, 8, 16, 16)
    _check_trains(model, torch.randn(2, 3, 64, 64), 2)  # trains through the noisy block


def test_build_model_bad_input():
    config = small_config("tiny", 32)
    with pytest.raises(ValueError, match="no RF parameters"):
        build_model(config, None, num_classes=10)
    with pytest.raises(ValueError, match="frontend.n_simple=4"):
        build_model(config, make_rf(5, 3), num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        build_model(config, make_rf(4, 4), num_classes=0)
    rf = make_rf(4, 4)
    sf = rf.sf.copy()
    sf[0] = 20.0  # 32 px over 1 deg: Nyquist 16 cpd
    too_fine = RFParams(sf=sf, theta=rf.theta, phase=rf.phase, nx=rf.nx, ny=rf.ny, color=rf.color,
                        complex=rf.complex)
    with pytest.raises(ConfigError, match="frontend: .*visual_degrees <= 0.8"):
        build_model(config, too_fine, num_classes=10)


# ----------------------------------------------------------------------------- the published networks
# Written here from torchvision's ResNet18 pieces, not from v1sweep.trial.models: the VOneResNet18 of the
# study is V1 block -> bare 1x1 conv (512 -> 64, no bias) -> layer1..layer4 -> avgpool -> fc; its
# plain baseline is torchvision's ResNet18 with the 7x7 stem conv at stride 1 (64 px images).
def study_config(**flat) -> cfg.TrialConfig:
    """The study's trial: 64 px over 2 deg, 256 + 256 units, kernel 31, stride 2, ResNet18."""
    config = cfg.from_dict({"data": {"image_size": 64}, "train": {"preset": "study"}})
    return cfg.replace(config, **flat) if flat else config


def study_rf() -> RFParams:
    return make_rf(256, 256, seed=4, sf_max=11.2)


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def published_vone_resnet18(model) -> torch.nn.Module:
    """torchvision ResNet18 (200 classes) without its stem behind a bare 1x1 conv, sharing `model`'s weights."""
    import torchvision

    tv = torchvision.models.resnet18(num_classes=200)
    bottleneck = torch.nn.Conv2d(512, 64, kernel_size=1, stride=1, bias=False)
    net = torch.nn.Sequential(bottleneck, tv.layer1, tv.layer2, tv.layer3, tv.layer4, tv.avgpool,
                              torch.nn.Flatten(1), tv.fc)
    assert trainable(net) == 11_302_344  # the published count
    bottleneck.weight.data.copy_(model.bottleneck.conv.weight)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        getattr(tv, name).load_state_dict(getattr(model.body, name).state_dict())
    tv.fc.load_state_dict(model.head.fc.state_dict())
    return net


def test_study_vone_resnet18_is_the_published_network():
    torch.manual_seed(0)
    model = build_model(study_config(), study_rf(), num_classes=200)
    assert trainable(model) == 11_302_344
    assert [type(m) for m in model.bottleneck] == [torch.nn.Conv2d]  # bare conv: no BN, no ReLU
    assert model.bottleneck.conv.bias is None and model.bottleneck.conv.kernel_size == (1, 1)
    reference = published_vone_resnet18(model)
    x = torch.randn(4, 3, 64, 64)
    for mode in (True, False):  # train mode (batch statistics) and eval mode
        model.train(mode), reference.train(mode)
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(model.vone(x)), rtol=1e-4, atol=1e-4)


def test_bottleneck_init_is_kaiming_normal_fan_out():
    torch.manual_seed(0)
    w = build_model(study_config(), study_rf(), num_classes=200).bottleneck.conv.weight.detach()
    # kaiming_normal_(fan_out, relu): std = sqrt(2 / (64 * 1 * 1)) = 0.177, mean 0
    assert float(w.std()) == pytest.approx(math.sqrt(2 / 64), rel=0.05)
    assert abs(float(w.mean())) < 0.01


def relative_logit_change_when_doubling_k_exc(norm: str) -> float:
    torch.manual_seed(0)
    rf = study_rf()
    a = build_model(study_config(**{"model.bottleneck_norm": norm}), rf, num_classes=200).train()
    b = build_model(study_config(**{"model.bottleneck_norm": norm, "frontend.k_exc": 50.0}), rf,
                    num_classes=200).train()
    b.load_state_dict(a.state_dict())
    x = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        la, lb = a(x), b(x)
    return float((lb - la).norm() / la.norm())


def test_k_exc_changes_the_logits_of_the_published_network():
    """The gain of the V1 block reaches the body through the bare conv (and layer1's shortcut);
    the bn_relu option normalises it away in training mode."""
    assert relative_logit_change_when_doubling_k_exc("none") > 0.05
    assert relative_logit_change_when_doubling_k_exc("bn_relu") < 1e-4


def test_bn_relu_bottleneck_option():
    torch.manual_seed(0)
    model = build_model(small_config("resnet18", 32, **{"model.bottleneck_norm": "bn_relu"}), make_rf(4, 4),
                        num_classes=5)
    assert list(dict(model.bottleneck.named_children())) == ["conv", "bn", "relu"]
    _check_trains(model, torch.randn(2, 3, 32, 32), 5)


def published_plain_resnet18(model) -> torch.nn.Module:
    """torchvision ResNet18 (200 classes), 7x7 stem conv at stride 1, sharing `model`'s weights."""
    import torchvision

    tv = torchvision.models.resnet18(num_classes=200)
    tv.conv1 = torch.nn.Conv2d(3, 64, kernel_size=7, stride=1, padding=3, bias=False)
    assert trainable(tv) == 11_279_112  # the published count
    tv.conv1.weight.data.copy_(model.bottleneck.conv.weight)
    tv.bn1.load_state_dict(model.bottleneck.bn.state_dict())
    for name in ("layer1", "layer2", "layer3", "layer4"):
        getattr(tv, name).load_state_dict(getattr(model.body, name).state_dict())
    tv.fc.load_state_dict(model.head.fc.state_dict())
    return tv


def test_study_plain_resnet18_is_the_published_baseline():
    torch.manual_seed(0)
    model = build_model(study_config(**{"frontend.enabled": False}), None, num_classes=200)
    assert trainable(model) == 11_279_112
    reference = published_plain_resnet18(model)
    x = torch.randn(2, 3, 64, 64)
    assert layer_outputs(model.eval(), x, ["layer1"])["layer1"].shape == (2, 64, 32, 32)
    for mode in (True, False):
        model.train(mode), reference.train(mode)
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-4)


def test_published_stem_above_64_px_is_torchvision_stride_2():
    torch.manual_seed(0)
    model = build_model(small_config("tiny", 96, enabled=False), None, num_classes=3).eval()
    assert layer_outputs(model, torch.randn(1, 3, 96, 96), ["bottleneck"])["bottleneck"].shape == (1, 64, 24, 24)


def test_weights_saved_before_the_new_options_rebuild_their_network():
    """Trials saved with BN + ReLU after the bottleneck (or the 3x3 stem) load into that network."""
    from v1sweep.trial.models import config_for_weights

    torch.manual_seed(0)
    v1 = small_config("tiny", 32)
    old = build_model(cfg.replace(v1, **{"model.bottleneck_norm": "bn_relu"}), make_rf(4, 4), num_classes=3)
    fixed = config_for_weights(v1, old.state_dict())
    assert fixed.model.bottleneck_norm == "bn_relu"
    build_model(fixed, make_rf(4, 4), num_classes=3).load_state_dict(old.state_dict())
    new = build_model(v1, make_rf(4, 4), num_classes=3)
    assert config_for_weights(v1, new.state_dict()) == v1
    plain = small_config("tiny", 32, enabled=False)
    old_plain = build_model(cfg.replace(plain, **{"model.stem": "cifar"}), None, num_classes=3)
    assert config_for_weights(plain, old_plain.state_dict()).model.stem == "cifar"
    assert config_for_weights(plain, build_model(plain, None, num_classes=3).state_dict()) == plain
