"""Backbones and their assembly with the V1 front-end.

A model is ``vone -> bottleneck -> body -> head``:
- ``vone``: the fixed `VOneBlock` (None for plain baselines);
- ``bottleneck``: with the V1 block, a 1x1 conv (no bias, Kaiming-normal fan-out init) from its
  n_simple + n_complex channels to ``config.model.bottleneck`` channels that replaces the ResNet stem
  and feeds layer1. ``model.bottleneck_norm: none`` (default) leaves it bare, as the published
  VOneResNet (Dapello et al. 2020; Barbulescu et al. 2023): the V1 block's gain (``k_exc``) and the
  gain differences between RF strategies reach the body, and layer1's identity shortcut sees the
  signed conv output. ``bn_relu`` adds BatchNorm + ReLU (v1sweep's earlier variant; it normalises
  both away, so ``k_exc`` has almost no effect in training mode).
  Without the V1 block it is the plain baseline's stem, ``config.model.stem``: ``published``
  (default) = 7x7 conv + BN + ReLU + 3x3/2 max-pool, the conv at stride 1 for images up to 64 px
  (the study's plain ResNet18 on Tiny ImageNet: layer1 at 32x32 for 64 px) and stride 2 above
  (torchvision's ImageNet ResNet); ``cifar`` = 3x3 conv, stride 1, + BN + ReLU, no max-pool
  (layer1 at full resolution, 4x the positions at 64 px);
- ``body``: the registered backbone's stages ``layer1`` .. ``layer4`` (torchvision ResNets without
  their stem, or the small `tiny` CNN), taking ``config.model.bottleneck`` channels;
- ``head``: global average pool -> flatten -> linear classifier.

Which published network each backbone reproduces (defaults): ``resnet18`` with the V1 block = the
VOneResNet18 of Barbulescu, Marques & Oliveira 2023 (Tiny ImageNet, 64 px, 256 + 256 units:
11,302,344 trainable parameters at 200 classes), without it = their plain ResNet18 baseline
(11,279,112); ``resnet50`` with the V1 block = VOneResNet50 of Dapello et al. 2020 (ImageNet,
224 px), without it = torchvision's ResNet50; ``tiny`` reproduces nothing (CPU smoke runs).

Backbones are registered in `BACKBONES` (`v1sweep.trial.backbones`, torch-free to import:
builder(in_channels) -> (stages, out_features), with metadata); tests loop over `list_backbones()`
(`v1sweep.testing.backbones`), so a new entry is tested with and without the V1 block for free.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Iterable

import torch
from torch import nn

from v1sweep.errors import ConfigError
from v1sweep.frontend import VOneBlock
from v1sweep.rf.params import RFParams
from v1sweep.trial.backbones import (BACKBONES, BodyBuilder, conv_bn_relu,  # noqa: F401 (public here too)
                                     resnet18_body, resnet50_body, tiny_body)

if TYPE_CHECKING:
    from v1sweep.config.trial import TrialConfig

# Largest image whose `published` stem conv runs at stride 1 (the study's 64-px plain ResNet18).
SMALL_IMAGE_MAX = 64
BOTTLENECK_NORMS = ("none", "bn_relu")
STEMS = ("published", "cifar")


def list_backbones() -> list[str]:
    """Registered backbone names."""
    return BACKBONES.names()


class V1Net(nn.Module):
    """``head(body(bottleneck(vone(x))))``; `vone` is None for plain baselines."""

    def __init__(self, vone: VOneBlock | None, bottleneck: nn.Module, body: nn.Sequential, head: nn.Sequential,
                 backbone: str = "") -> None:
        super().__init__()
        self.vone = vone
        self.bottleneck = bottleneck
        self.body = body
        self.head = head
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.vone is not None:
            x = self.vone(x)
        return self.head(self.body(self.bottleneck(x)))

    def extra_repr(self) -> str:
        return f"backbone={self.backbone!r}, v1={'yes' if self.vone is not None else 'no'}"


def _bottleneck(in_channels: int, width: int, norm: str = "none") -> nn.Sequential:
    """The 1x1 conv after the V1 block: bare (published) or followed by BN + ReLU (`bn_relu`)."""
    if norm not in BOTTLENECK_NORMS:
        raise ConfigError(f"unknown bottleneck_norm {norm!r}; allowed: {', '.join(BOTTLENECK_NORMS)}",
                          key="model.bottleneck_norm")
    conv = nn.Conv2d(in_channels, width, 1, 1, 0, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if norm == "none":
        return nn.Sequential(OrderedDict(conv=conv))
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(width), relu=nn.ReLU(inplace=True)))


def _stem(width: int, image_size: int, kind: str = "published") -> nn.Sequential:
    """The plain baseline's stem (see the module docstring)."""
    if kind not in STEMS:
        raise ConfigError(f"unknown stem {kind!r}; allowed: {', '.join(STEMS)}", key="model.stem")
    if kind == "cifar":
        return conv_bn_relu(3, width, 1)
    stride = 1 if image_size <= SMALL_IMAGE_MAX else 2
    conv = nn.Conv2d(3, width, 7, stride, 3, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(width), relu=nn.ReLU(inplace=True),
                                     maxpool=nn.MaxPool2d(3, 2, 1)))


def build_model(config: "TrialConfig", rf: RFParams | None, num_classes: int) -> V1Net:
    """The trial's network: VOne-<backbone> when ``config.frontend.enabled``, else the plain baseline.

    Weights are drawn from torch's global generator: seed it (``config.train.seed``) before calling.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    name = config.model.backbone
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; valid: {', '.join(list_backbones())}", key="model.backbone")
    fe, width, size = config.frontend, config.model.bottleneck, config.data.image_size
    noise_scale, noise_level = config.noise_params
    vone = None
    if fe.enabled:
        if rf is None:
            raise ValueError("frontend.enabled is true but no RF parameters were given (rf=None)")
        if (rf.n_simple, rf.n_complex) != (fe.n_simple, fe.n_complex):
            raise ValueError(f"rf has {rf.n_simple} simple + {rf.n_complex} complex units but the config asks for "
                             f"frontend.n_simple={fe.n_simple}, frontend.n_complex={fe.n_complex}")
        try:
            vone = VOneBlock(rf, image_size=size, visual_degrees=fe.visual_degrees, ksize=fe.ksize,
                             stride=fe.stride, k_exc=fe.k_exc, noise=fe.noise, noise_scale=noise_scale,
                             noise_level=noise_level)
        except ValueError as exc:
            raise ConfigError(str(exc), key="frontend") from None
        bottleneck = _bottleneck(vone.out_channels, width, config.model.bottleneck_norm)
    else:
        bottleneck = _stem(width, size, config.model.stem)
    body, features = BACKBONES.get(name)(width)
    head = nn.Sequential(OrderedDict(pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1),
                                     fc=nn.Linear(features, num_classes)))
    return V1Net(vone, bottleneck, body, head, backbone=name)


def config_for_weights(config: "TrialConfig", state: "dict[str, torch.Tensor]") -> "TrialConfig":
    """`config` with the bottleneck / stem option the saved weights `state` were trained with.

    Trials saved before ``model.bottleneck_norm`` and ``model.stem`` existed used BN + ReLU after the
    1x1 conv and, for plain baselines up to 64 px, the 3x3 stem; their config.yaml lacks those keys,
    so it loads with today's defaults. The weights tell which network they belong to: a
    ``bottleneck.bn`` entry means ``bn_relu``, a 3x3 stem conv means ``cifar``. A consistent pair is
    returned unchanged.
    """
    from v1sweep.config.trial import replace

    changes: dict[str, str] = {}
    conv = state.get("bottleneck.conv.weight")
    if config.frontend.enabled:
        if "bottleneck.bn.weight" in state and config.model.bottleneck_norm == "none":
            changes["model.bottleneck_norm"] = "bn_relu"
    elif conv is not None and tuple(conv.shape[-2:]) == (3, 3) and config.model.stem == "published":
        changes["model.stem"] = "cifar"
    return replace(config, **changes) if changes else config


def analysis_layers(model: V1Net) -> "OrderedDict[str, nn.Module]":
    """Name -> module whose output `layer_outputs` can return, in forward order.

    ``vone`` (V1 models only), ``bottleneck``, the body stages (``layer1`` .. ``layer4``),
    ``features`` (pooled, flattened) and ``logits``.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    vone = getattr(model, "vone", None)
    if vone is not None:
        layers["vone"] = vone
    layers["bottleneck"] = model.bottleneck
    for name, stage in model.body.named_children():
        layers[name] = stage
    layers["features"] = model.head.get_submodule("flatten")
    layers["logits"] = model.head
    return layers


def layer_outputs(model: V1Net, x: torch.Tensor, names: Iterable[str] | str, *,
                  grad: bool = False) -> dict[str, torch.Tensor]:
    """Outputs of the named layers for input `x`, captured with forward hooks in one forward pass.

    Runs without autograd unless `grad`; the model's train/eval mode is left as it is.
    """
    names = [names] if isinstance(names, str) else list(names)
    layers = analysis_layers(model)
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise ValueError(f"unknown layer(s) {', '.join(map(repr, unknown))}; valid: {', '.join(layers)}")
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name in dict.fromkeys(names):
        def hook(module: nn.Module, inputs: object, output: torch.Tensor, name: str = name) -> None:
            # Clone: a later in-place op (e.g. ReLU(inplace=True)) must not change what was captured.
            captured[name] = output.clone() if grad else output.detach().clone()
        handles.append(layers[name].register_forward_hook(hook))
    try:
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return {name: captured[name] for name in names}
