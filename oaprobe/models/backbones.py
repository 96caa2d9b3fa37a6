"""Backbone registry: a name maps to a factory building a 3D encoder ``(B,1,D,H,W) -> (B,out_dim)``.

What the book and the sweep know of a backbone without building it (title, smallest input side,
cost hint) lives in :data:`oaprobe.facts.BACKBONES`, keyed like the factories here, so a report
never imports torch. Every encoder built here exposes ``out_dim`` (embedding size) and ``gradcam_layer`` (dotted path
of a late layer whose output is not modified in place, so MONAI's GradCAM can hook it). The
paper backbones (``resnet3d``, ``m3t``, ``nnmamba``) are written in this package; the standard
MONAI networks (``densenet121``, ``efficientnet-b0``, ``monai-resnet18``) are MONAI classes built
with a width multiplier. ``width`` scales channel counts: 1.0 is the reference size, the CPU
presets use about 0.25. This module imports the backbone modules, never the reverse (shared
layers live in ``layers.py``).

Example:
    >>> import torch
    >>> "resnet3d" in list_backbones()
    True
    >>> net = build_backbone("resnet3d", (16, 16, 16), width=0.25)
    >>> net(torch.zeros(2, 1, 16, 16, 16)).shape == (2, net.out_dim)
    True
    >>> build_backbone("resnet50", (16, 16, 16))
    Traceback (most recent call last):
    ...
    oaprobe.errors.ConfigError: unknown backbone 'resnet50'; valid backbones: ...
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType

import torch
from torch import nn

from oaprobe.config import Shape3, check_input_shape
from oaprobe.errors import ConfigError
from oaprobe.facts import BACKBONES
from oaprobe.models.layers import scale_channels
from oaprobe.models.m3t import M3T
from oaprobe.models.nnmamba import NNMambaEncoder
from oaprobe.models.resnet3d import ResNet3D18

Factory = Callable[[Shape3, float], nn.Module]


def _monai() -> ModuleType:
    """MONAI's networks, imported on the first MONAI backbone built (the import takes seconds)."""
    import monai.networks.nets  # deferred: a 3 s import that only the MONAI backbones need

    return monai.networks.nets


class MonaiDenseNet121(nn.Module):
    """MONAI ``DenseNet121`` (3D, one channel) returning the pooled features before its classifier.

    ``init_features`` (64) and ``growth_rate`` (32) are scaled by ``width``; ReLUs are built
    non-in-place so that GradCAM hooks survive.
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        self.net = _monai().DenseNet121(
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
        self.net = _monai().EfficientNet(
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
        self.net = _monai().resnet18(
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


#: name -> ``(input_shape, width) -> nn.Module``, in the order of :data:`oaprobe.facts.BACKBONES`
_FACTORIES: dict[str, Factory] = {
    "resnet3d": lambda s, w: ResNet3D18(width=w),
    "m3t": lambda s, w: M3T(input_shape=s, width=w),
    "nnmamba": lambda s, w: NNMambaEncoder(input_shape=s, width=w),
    "densenet121": lambda s, w: MonaiDenseNet121(w),
    "efficientnet-b0": lambda s, w: MonaiEfficientNetB0(s, w),
    "monai-resnet18": lambda s, w: MonaiResNet18(w),
}
assert list(_FACTORIES) == list(BACKBONES), "oaprobe.facts.BACKBONES and the factories must name the same backbones"


def list_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`, in registry order."""
    return list(_FACTORIES)


def build_backbone(name: str, input_shape: tuple[int, int, int], width: float = 1.0) -> nn.Module:
    """Build the encoder ``name`` for volumes of ``input_shape`` with channels scaled by ``width``.

    The module maps ``(B, 1, D, H, W) -> (B, out_dim)`` and carries ``out_dim`` and
    ``gradcam_layer``. Unknown names and unsupported shapes raise ConfigError.
    """
    check_input_shape(name, input_shape)
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        raise ConfigError(f"backbone {name!r}: width = {width!r}; expected a number > 0")
    model = _FACTORIES[name](tuple(input_shape), float(width))
    assert isinstance(model.out_dim, int) and isinstance(model.gradcam_layer, str)
    return model
