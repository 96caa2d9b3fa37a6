"""Backbone registry: a name maps to a factory building a 3D encoder ``(B,1,D,H,W) -> (B,out_dim)``.

Each registry entry also carries the backbone's title (for the book) and its cost hint (for the
sweep's ordering), so a backbone's facts live in one place. Every encoder built here exposes ``out_dim`` (embedding size) and ``gradcam_layer`` (dotted path
of a late layer whose output is not modified in place, so MONAI's GradCAM can hook it). The
paper backbones (``resnet3d``, ``m3t``, ``nnmamba``) are written in this package; the standard
MONAI networks (``densenet121``, ``efficientnet-b0``, ``monai-resnet18``) are MONAI classes built
with a width multiplier. ``width`` scales channel counts: 1.0 is the reference size, the CPU
presets use about 0.25. Factories import their modules lazily, so listing names is cheap; this
module imports the backbone modules, never the reverse (shared layers live in ``layers.py``).

Example:
    >>> import torch
    >>> "resnet3d" in list_backbones()
    True
    >>> net = build_backbone("resnet3d", (16, 16, 16), width=0.25)
    >>> net(torch.zeros(2, 1, 16, 16, 16)).shape == (2, net.out_dim)
    True
    >>> backbone_title("nnmamba"), backbone_cost("resnet3d"), backbone_cost("unknown")
    ('nnMamba', 1.0, 2.0)
    >>> build_backbone("resnet50", (16, 16, 16))
    Traceback (most recent call last):
    ...
    oaprobe.config.ConfigError: unknown backbone 'resnet50'; valid backbones: ...
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from oaprobe.config import ConfigError
from oaprobe.models.layers import scale_channels

Shape3 = tuple[int, int, int]
Factory = Callable[[Shape3, float], nn.Module]
#: Cost hint of a backbone that is not in the registry (the middle of the measured range).
DEFAULT_COST = 2.0


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and which input shapes it accepts.

    Attributes:
        factory: ``(input_shape, width) -> nn.Module``.
        min_side: smallest accepted size of every spatial side.
        multiple: every side must be a multiple of this (1 = any size).
        description: one line for listings and error messages.
        title: human-readable name (book chapter titles).
        cost: relative training cost per input voxel of a knee (resnet3d = 1) at width 0.25 on one
            CPU core: paper backbones from ``benchmarks/backbone_speed.py`` (ms per step at the
            book's input sizes over their voxels), MONAI nets from ENV-NOTES; the sweep and the
            saliency stage start the longest work first.
    """

    factory: Factory
    min_side: int
    multiple: int
    description: str
    title: str
    cost: float


def _resnet3d(input_shape: Shape3, width: float) -> nn.Module:
    from oaprobe.models.resnet3d import ResNet3D18

    return ResNet3D18(width=width)


def _m3t(input_shape: Shape3, width: float) -> nn.Module:
    from oaprobe.models.m3t import M3T

    return M3T(input_shape=input_shape, width=width)


def _nnmamba(input_shape: Shape3, width: float) -> nn.Module:
    from oaprobe.models.nnmamba import NNMambaEncoder

    return NNMambaEncoder(input_shape=input_shape, width=width)


class MonaiDenseNet121(nn.Module):
    """MONAI ``DenseNet121`` (3D, one channel) returning the pooled features before its classifier.

    ``init_features`` (64) and ``growth_rate`` (32) are scaled by ``width``; ReLUs are built
    non-in-place so that GradCAM hooks survive.
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        from monai.networks.nets import DenseNet121

        self.net = DenseNet121(
            spatial_dims=3,
            in_channels=1,
            out_channels=2,
            init_features=scale_channels(64, width),
            growth_rate=scale_channels(32, width),
            act=("relu", {"inplace": False}),
        )
        self.out_dim: int = self.net.class_layers.out.in_features
        self.gradcam_layer = "net.features.denseblock4"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.class_layers[:-1](self.net.features(x))


# EfficientNet-B0 stage definitions (repeats, kernel, stride, expansion, in/out filters, SE ratio),
# the standard B0 table in MONAI's string notation; MONAI's EfficientNet scales them by width.
_EFFICIENTNET_B0_STAGES = [
    "r1_k3_s11_e1_i32_o16_se0.25",
    "r2_k3_s22_e6_i16_o24_se0.25",
    "r2_k5_s22_e6_i24_o40_se0.25",
    "r3_k3_s22_e6_i40_o80_se0.25",
    "r3_k5_s11_e6_i80_o112_se0.25",
    "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25",
]


class MonaiEfficientNetB0(nn.Module):
    """MONAI ``EfficientNet`` with the B0 stages, 3D, untrained, width coefficient ``width``.

    At ``width=1`` this is exactly MONAI's ``EfficientNetBN("efficientnet-b0", pretrained=False)``;
    other widths use MONAI's own width coefficient (channels rounded to multiples of 8).
    The classifier is replaced by Identity so the forward returns the pooled features.
    """

    def __init__(self, input_shape: Shape3, width: float = 1.0) -> None:
        super().__init__()
        from monai.networks.nets.efficientnet import EfficientNet

        self.net = EfficientNet(
            list(_EFFICIENTNET_B0_STAGES),
            spatial_dims=3,
            in_channels=1,
            num_classes=2,
            width_coefficient=width,
            depth_coefficient=1.0,
            dropout_rate=0.2,
            image_size=max(input_shape),
            drop_connect_rate=0.2,
        )
        self.out_dim: int = self.net._fc.in_features
        self.net._fc = nn.Identity()
        self.gradcam_layer = "net._conv_head"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MonaiResNet18(nn.Module):
    """MONAI ``resnet18`` (3D, shortcut B, 7^3 stride-2 stem) returning pooled features.

    ``widen_factor=width`` scales the stage widths (64, 128, 256, 512).
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        from monai.networks.nets import resnet18

        self.net = resnet18(
            spatial_dims=3,
            n_input_channels=1,
            shortcut_type="B",
            conv1_t_stride=2,
            widen_factor=width,
            feed_forward=False,
            act=("relu", {"inplace": False}),
        )
        self.out_dim: int = self.net.layer4[-1].conv2.out_channels
        self.gradcam_layer = "net.layer4"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


_REGISTRY: dict[str, BackboneSpec] = {
    "resnet3d": BackboneSpec(
        _resnet3d, 8, 1, "MedicalNet-style 3D ResNet-18 (dilated layer3/4)", title="ResNet3D", cost=1.0
    ),
    "m3t": BackboneSpec(_m3t, 8, 1, "M3T: 3D stem + 2D ResNet-18 on all slices + transformer", title="M3T", cost=7.4),
    "nnmamba": BackboneSpec(_nnmamba, 8, 1, "nnMamba encoder: residual 3D CNN + Mamba layer", title="nnMamba", cost=1.15),
    "densenet121": BackboneSpec(
        lambda s, w: MonaiDenseNet121(w), 29, 1, "MONAI DenseNet121", title="DenseNet121", cost=1.5
    ),
    "efficientnet-b0": BackboneSpec(
        lambda s, w: MonaiEfficientNetB0(s, w), 8, 1, "MONAI EfficientNet-B0", title="EfficientNet-B0", cost=2.5
    ),
    "monai-resnet18": BackboneSpec(
        lambda s, w: MonaiResNet18(w), 8, 1, "MONAI ResNet-18", title="MONAI ResNet-18", cost=0.7
    ),
}


def list_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`, in registry order."""
    return list(_REGISTRY)


def backbone_title(name: str) -> str:
    """Human-readable title of backbone ``name``; an unknown name is its own title."""
    spec = _REGISTRY.get(name)
    return name if spec is None else spec.title


def backbone_cost(name: str) -> float:
    """Relative cost hint of backbone ``name`` (``resnet3d`` = 1); :data:`DEFAULT_COST` when unknown."""
    spec = _REGISTRY.get(name)
    return DEFAULT_COST if spec is None else spec.cost


def _spec(name: str) -> BackboneSpec:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backbone {name!r}; valid backbones: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def check_input_shape(name: str, input_shape: tuple[int, ...]) -> None:
    """Raise a ConfigError naming backbone, shape and requirement if ``name`` cannot take the shape.

    Example:
        >>> check_input_shape("densenet121", (16, 16, 16))
        Traceback (most recent call last):
        ...
        oaprobe.config.ConfigError: backbone 'densenet121' cannot take input_shape (16, 16, 16): ...
    """
    spec = _spec(name)
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ConfigError(
            f"backbone {name!r} cannot take input_shape {shape}: expected three positive integers (D, H, W)"
        )
    if min(shape) < spec.min_side:
        raise ConfigError(
            f"backbone {name!r} cannot take input_shape {shape}: every side must be >= {spec.min_side} "
            "(set input_shape: the --input-shape flag, or a chapter's run={'input_shape': [...]} parameter)"
        )
    if spec.multiple > 1 and any(s % spec.multiple for s in shape):
        raise ConfigError(
            f"backbone {name!r} cannot take input_shape {shape}: every side must be a multiple of {spec.multiple} "
            "(set input_shape: the --input-shape flag, or a chapter's run={'input_shape': [...]} parameter)"
        )


def build_backbone(name: str, input_shape: tuple[int, int, int], width: float = 1.0) -> nn.Module:
    """Build the encoder ``name`` for volumes of ``input_shape`` with channels scaled by ``width``.

    The module maps ``(B, 1, D, H, W) -> (B, out_dim)`` and carries ``out_dim`` and
    ``gradcam_layer``. Unknown names and unsupported shapes raise ConfigError.
    """
    spec = _spec(name)
    check_input_shape(name, input_shape)
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        raise ConfigError(f"backbone {name!r}: width = {width!r}; expected a number > 0")
    model = spec.factory(tuple(input_shape), float(width))
    assert isinstance(model.out_dim, int) and isinstance(model.gradcam_layer, str)
    return model
