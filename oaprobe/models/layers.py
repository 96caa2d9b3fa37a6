"""Layers shared by the paper backbones: channel scaling, layer factories and one residual block.

The layer type follows ``spatial_dims`` (2 for M3T's slice encoder, 3 for the volume
encoders), in the style of MONAI's layer factories, so one residual block serves the 2D and
the 3D ResNet-18s and nnMamba's stages. Activations are never in place, so any layer can be
hooked for Grad-CAM. This module imports no backbone.

Example:
    >>> import torch
    >>> block = ResidualBlock(3, 8, 16, stride=2)
    >>> block(torch.zeros(1, 8, 8, 8, 8)).shape
    torch.Size([1, 16, 4, 4, 4])
    >>> layer_type("conv", 2)
    <class 'torch.nn.modules.conv.Conv2d'>
"""

from __future__ import annotations

import torch
from torch import nn

_LAYERS: dict[str, tuple[type[nn.Module], type[nn.Module], type[nn.Module]]] = {
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    "batchnorm": (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
}


def scale_channels(channels: int, width: float, minimum: int = 4) -> int:
    """Channel count ``channels * width`` rounded, never below ``minimum``.

    Example:
        >>> scale_channels(64, 0.25), scale_channels(16, 0.1)
        (16, 4)
    """
    return max(minimum, int(round(channels * width)))


def layer_type(kind: str, spatial_dims: int) -> type[nn.Module]:
    """The torch layer class of ``kind`` (``"conv"`` or ``"batchnorm"``) for 1, 2 or 3 spatial dims."""
    if kind not in _LAYERS:
        raise ValueError(f"layer_type: kind = {kind!r}; expected one of {sorted(_LAYERS)}")
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"layer_type: spatial_dims = {spatial_dims!r}; expected 1, 2 or 3")
    return _LAYERS[kind][spatial_dims - 1]


def conv_norm_act(
    spatial_dims: int, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, dilation: int = 1
) -> list[nn.Module]:
    """``[conv (no bias), BatchNorm, ReLU]`` with "same" padding for odd kernels; splat into a Sequential.

    A list rather than a module, so callers keep their flat layer names (``stem.0``, ``conv1``).
    """
    conv = layer_type("conv", spatial_dims)(
        in_ch, out_ch, kernel_size, stride=stride, padding=dilation * (kernel_size // 2), dilation=dilation, bias=False
    )
    return [conv, layer_type("batchnorm", spatial_dims)(out_ch), nn.ReLU()]


class ResidualBlock(nn.Module):
    """ResNet basic block in 2D or 3D: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Both convolutions are 3 wide; the first carries ``stride``. Both are dilated by ``dilation``
    with padding ``dilation``, so at stride 1 the size is kept. The shortcut is ResNet's type B:
    identity (``downsample`` is None) when stride and channels stay, else a 1-wide strided conv
    plus BatchNorm. The three paper backbones all use this shortcut, so there is no other type.

    Args:
        spatial_dims: 2 or 3 (picks Conv/BatchNorm).
        in_ch: input channels.
        out_ch: output channels.
        stride: stride of the first conv and of the projection.
        dilation: dilation of both convs (MedicalNet's layer3/layer4 use 2 and 4).
    """

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        conv, norm = layer_type("conv", spatial_dims), layer_type("batchnorm", spatial_dims)
        self.conv1 = conv(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = norm(out_ch)
        self.conv2 = conv(out_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = norm(out_ch)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(conv(in_ch, out_ch, 1, stride=stride, bias=False), norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


def residual_stage(
    spatial_dims: int, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1, blocks: int = 2
) -> nn.Sequential:
    """``blocks`` residual blocks; the first changes channels and carries ``stride``, all share ``dilation``."""
    layers = [ResidualBlock(spatial_dims, in_ch, out_ch, stride=stride, dilation=dilation)]
    layers += [ResidualBlock(spatial_dims, out_ch, out_ch, dilation=dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)
