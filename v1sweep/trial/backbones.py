"""The backbone registry: each body builder registered once, with its metadata, importable without torch.

A backbone is ``builder(in_channels) -> (stages, out_features)``: `nn.Sequential` stages named
``layer1`` .. ``layerN`` taking `in_channels` channels, and the width of their output (the
classifier's input). Registered with ``description`` (one line) and ``reproduces`` (the published
network it gives, "" for none)::

    @BACKBONES.register("tiny", description="...", reproduces="")
    def tiny_body(in_channels): ...

torch is imported on first use (`lazy_module`), so the config layer validates `model.backbone`
from `backbone_names()` without it. `v1sweep.trial.models` assembles the network.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Mapping

from v1sweep.registry import Registry, lazy_module

if TYPE_CHECKING:
    from torch import nn
else:
    nn = lazy_module("torch.nn")

BodyBuilder = Callable[[int], "tuple[nn.Sequential, int]"]
BACKBONES: Registry[BodyBuilder] = Registry("backbone", required=("description",))


def backbone_names() -> tuple[str, ...]:
    """Registered backbone names, in registration order."""
    return tuple(BACKBONES.names())


def describe(name: str) -> Mapping[str, Any]:
    """The metadata `name` was registered with; ValueError listing the valid names."""
    return BACKBONES.meta(name)


def _resnet_stages(arch: str, in_channels: int) -> tuple[nn.Sequential, int]:
    """torchvision ResNet layer1..layer4 (random init, no download), layer1 taking `in_channels`."""
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None)
    if in_channels != 64:
        # Rebuild layer1 for another input width (it gets a 1x1 projection shortcut then).
        block = type(net.layer1[0])
        net.inplanes = in_channels
        net.layer1 = net._make_layer(block, 64, len(net.layer1))
        for m in net.layer1.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    stages = nn.Sequential(OrderedDict((name, getattr(net, name)) for name in ("layer1", "layer2", "layer3", "layer4")))
    return stages, net.fc.in_features


@BACKBONES.register("resnet18", description="torchvision ResNet18 stages layer1..layer4 (512 features)",
                    reproduces="VOneResNet18 / ResNet18 of Barbulescu, Marques & Oliveira 2023")
def resnet18_body(in_channels: int) -> tuple[nn.Sequential, int]:
    """ResNet18 stages (the study's backbone: Barbulescu, Marques & Oliveira 2023)."""
    return _resnet_stages("resnet18", in_channels)


@BACKBONES.register("resnet50", description="torchvision ResNet50 stages layer1..layer4 (2048 features)",
                    reproduces="VOneResNet50 of Dapello et al. 2020 / torchvision ResNet50")
def resnet50_body(in_channels: int) -> tuple[nn.Sequential, int]:
    """ResNet50 stages (the original VOneNet backbone, Dapello et al. 2020)."""
    return _resnet_stages("resnet50", in_channels)


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias, Kaiming-normal fan-out) + BatchNorm + ReLU: the `tiny` stages and the cifar stem."""
    conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(cout), relu=nn.ReLU(inplace=True)))


@BACKBONES.register("tiny", description="four 3x3 conv + BN + ReLU stages (32, 64, 128, 128 channels) "
                    "for fast CPU smoke runs", reproduces="")
def tiny_body(in_channels: int) -> tuple[nn.Sequential, int]:
    """Four 3x3 conv stages (32, 64, 128, 128 channels; stride 1, 2, 2, 2) for fast CPU smoke runs."""
    widths, strides = (32, 64, 128, 128), (1, 2, 2, 2)
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    cin = in_channels
    for i, (w, s) in enumerate(zip(widths, strides), start=1):
        stages[f"layer{i}"] = conv_bn_relu(cin, w, s)
        cin = w
    return nn.Sequential(stages), cin
