"""Backbones that end in a feature layer of any width d: LeNet++ (full and light) and a small ResNet.

Each model maps images to features only; the classifier, centers or proxies belong to the loss. The
registry at the end is the one list of models: ``RunConfig``'s choices and help come from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dmlviz.registry import add_once


class PReLU(nn.PReLU):
    """``nn.PReLU`` (same parameter, same function), computed as relu(x) − a·relu(−x) in bfloat16 training.

    There torch's CPU kernel is slower than the two branch-free relus: with it a light LeNet++ training
    step took 16 % longer (21.8 against 18.3 ms for a batch of 32 on one core, measured on trained
    activations). Elsewhere the kernel is kept: without autograd it was the faster (a probe pass of 2,000
    images took 300 ms with it, 465 ms with the relu form), and float32 is not the CPU's training path.
    At x = 0 exactly, the relu form's gradient is 0 instead of a.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.bfloat16 or not torch.is_grad_enabled():
            return nn.functional.prelu(x, self.weight.to(x.dtype))
        weight = self.weight.to(x.dtype)
        if weight.numel() > 1:  # one slope per channel: channels are dim 1
            weight = weight.view(1, -1, *([1] * (x.dim() - 2)))
        return torch.relu(x) - weight * torch.relu(-x)


class LeNetPP(nn.Module):
    """LeNet++ of the center-loss paper: three stages of two convolutions with PReLU and 2×2 pooling.

    ``width=32, kernel=5`` is the paper's network (32/64/128 channels, 5×5); the light variant
    halves the widths and uses 3×3 kernels, about 7× cheaper, which is what makes live runs on
    a laptop CPU possible. ``feature_activation`` adds the paper's PReLU on the feature layer; it
    is left out before a cosine head, where it would only bend the angles. ``batch_norm`` puts a
    BatchNorm after each convolution (not in the paper): it lets the network take learning rates several
    times higher, so the feature space forms in a fraction of the images.
    """

    def __init__(self, in_channels: int, image_size: int, feature_dim: int, *, width: int = 32,
                 kernel: int = 5, feature_activation: bool = True, batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for out in (width, 2 * width, 4 * width):
            for _ in range(2):
                layers.append(nn.Conv2d(channels, out, kernel, padding=kernel // 2, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out))
                layers.append(PReLU(out))
                channels = out
            layers.append(nn.MaxPool2d(2))
        self.stages = nn.Sequential(*layers)
        side = image_size // 8
        self.embed = nn.Linear(channels * side * side, feature_dim)
        self.activation = PReLU() if feature_activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.embed(self.stages(x).flatten(1)))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """ResNet-20 for 32×32 images (He et al. 2016, CIFAR variant) with a d-wide feature layer."""

    def __init__(self, in_channels: int, feature_dim: int, *, blocks_per_stage: int = 3,
                 feature_activation: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        blocks: list[nn.Module] = []
        channels = 16
        for stage, out in enumerate((16, 32, 64)):
            for i in range(blocks_per_stage):
                blocks.append(_BasicBlock(channels, out, 2 if stage > 0 and i == 0 else 1))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.embed = nn.Linear(channels, feature_dim)
        self.activation = PReLU() if feature_activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.blocks(self.stem(x)).mean(dim=(2, 3))
        return self.activation(self.embed(pooled))


#: (in_channels, image_size, feature_dim, *, feature_activation, batch_norm) → a backbone.
ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A backbone a run can name: its builder, and the words ``RunConfig``'s help gives it."""

    name: str
    help: str
    build: ModelBuilder


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, help: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Function decorator: ``@register_model("name", "what it is")`` on a builder adds the backbone."""

    def add(build: ModelBuilder) -> ModelBuilder:
        add_once(_MODELS, "model", name, ModelSpec(name, help, build))
        return build

    return add


def model_specs() -> list[ModelSpec]:
    return list(_MODELS.values())


def model_names() -> tuple[str, ...]:
    return tuple(_MODELS)


@register_model("lenetpp", "center-loss paper")
def _lenetpp(in_channels: int, image_size: int, feature_dim: int, *, feature_activation: bool,
             batch_norm: bool) -> nn.Module:
    return LeNetPP(in_channels, image_size, feature_dim, feature_activation=feature_activation, batch_norm=batch_norm)


@register_model("lenetpp-light", "half width, 3×3; default on a CPU")
def _lenetpp_light(in_channels: int, image_size: int, feature_dim: int, *, feature_activation: bool,
                   batch_norm: bool) -> nn.Module:
    return LeNetPP(in_channels, image_size, feature_dim, width=16, kernel=3, feature_activation=feature_activation,
                   batch_norm=batch_norm)


@register_model("resnet", "small ResNet for 32×32 colour images")
def _resnet(in_channels: int, image_size: int, feature_dim: int, *, feature_activation: bool,
            batch_norm: bool) -> nn.Module:
    return SmallResNet(in_channels, feature_dim, feature_activation=feature_activation)  # always has BatchNorm


def build_model(name: str, in_channels: int, image_size: int, feature_dim: int, *,
                feature_activation: bool = True, batch_norm: bool = False) -> nn.Module:
    """Build a registered backbone by name; ``batch_norm`` applies to LeNet++ (the ResNet always has it)."""
    if image_size < 8:
        raise ValueError(f"images must be at least 8×8 pixels for these networks, got {image_size}×{image_size}")
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_MODELS)}")
    return _MODELS[name].build(in_channels, image_size, feature_dim, feature_activation=feature_activation,
                               batch_norm=batch_norm)


def resolve_model_name(name: str, device: torch.device, in_channels: int) -> str:
    """``auto`` means the light LeNet++ on a CPU and the full networks where there is a GPU."""
    if name != "auto":
        return name
    if device.type == "cpu":
        return "lenetpp-light"
    return "resnet" if in_channels == 3 else "lenetpp"
