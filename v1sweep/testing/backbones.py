"""The contract every backbone keeps: `check_backbone(name)` and `BackboneContract`.

A backbone registered anywhere (``@BACKBONES.register(...)`` in `v1sweep.trial.backbones` or a
user's own file) must carry complete metadata, build stages named ``layer1`` .. for any input width,
and give (B, num_classes) logits from a trial config that names it, with and without the V1 block.
"""
from __future__ import annotations

from typing import Any, Sequence

from v1sweep.trial.backbones import BACKBONES, backbone_names

META_KEYS = ("description", "reproduces")
IMAGE_SIZE, NUM_CLASSES, BATCH = 32, 3, 2


def check_metadata(name: str) -> None:
    """AssertionError unless `name`'s metadata is complete."""
    meta = BACKBONES.meta(name)
    missing = [key for key in META_KEYS if key not in meta]
    assert not missing, f"{name}: metadata {', '.join(missing)} missing"
    assert isinstance(meta["description"], str) and meta["description"].strip(), f"{name}: no description"
    assert isinstance(meta["reproduces"], str), f"{name}: reproduces must be a string ('' for none)"


def check_body(name: str, in_channels: int = 8) -> None:
    """AssertionError unless the builder gives stages layer1.. and a positive output width."""
    from torch import nn

    body, features = BACKBONES.get(name)(in_channels)
    assert isinstance(body, nn.Sequential), f"{name}: the builder must return an nn.Sequential of stages"
    stages = [child for child, _ in body.named_children()]
    assert stages and stages == [f"layer{i}" for i in range(1, len(stages) + 1)], f"{name}: stages {stages}"
    assert isinstance(features, int) and features > 0, f"{name}: output width {features!r}"


def check_forward(name: str, enabled: bool = True) -> None:
    """AssertionError unless a trial config naming `name` builds a model giving (B, num_classes)."""
    import torch

    from v1sweep.config.trial import from_dict
    from v1sweep.rf import sample
    from v1sweep.trial.models import build_model

    config = from_dict({"data": {"image_size": IMAGE_SIZE},
                        "frontend": {"enabled": enabled, "n_simple": 4, "n_complex": 4, "ksize": 7,
                                     "visual_degrees": 1.0},
                        "model": {"backbone": name, "bottleneck": 16}})
    fe = config.frontend
    rf = sample(config.rf.strategy, fe.n_simple, fe.n_complex, seed=0, sf_max=fe.sf_max,
                **config.rf.sampler_options()) if enabled else None
    torch.manual_seed(0)
    model = build_model(config, rf, num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        logits = model(torch.randn(BATCH, 3, IMAGE_SIZE, IMAGE_SIZE))
    assert tuple(logits.shape) == (BATCH, NUM_CLASSES), f"{name}: logits {tuple(logits.shape)}"
    assert bool(torch.isfinite(logits).all()), f"{name}: non-finite logits"


def check_backbone(name: str) -> None:
    """Every check above; raises AssertionError (or the builder's error) on a broken backbone."""
    check_metadata(name)
    check_body(name)
    for enabled in (True, False):
        check_forward(name, enabled)


class BackboneContract:
    """Subclass in a test module to run the contract on every registered backbone (or `names`)."""

    names: Sequence[str] | None = None

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "backbone" in metafunc.fixturenames:
            names = list(self.names or backbone_names())
            metafunc.parametrize("backbone", names, ids=names)

    def test_metadata(self, backbone: str) -> None:
        check_metadata(backbone)

    def test_builds_stages(self, backbone: str) -> None:
        check_body(backbone)

    def test_logits_with_and_without_v1(self, backbone: str) -> None:
        for enabled in (True, False):
            check_forward(backbone, enabled)
