"""MedicalNet-style 3D ResNet-18: the reference study's ResNet3D backbone.

Basic residual blocks (two 3^3 convs), shortcut type B (1^3 conv + BatchNorm when the shape
changes), a 7^3 stride-2 stem with max pooling, layer2 strided, and layer3/layer4 dilated
(2 and 4) instead of strided, so the last maps stay 1/8 of the input. Global average pooling
gives a ``512 * width``-d embedding. No in-place operations, so any layer can be hooked for
Grad-CAM.

Example:
    >>> import torch
    >>> net = ResNet3D18(width=0.25)
    >>> net(torch.zeros(2, 1, 16, 16, 16)).shape
    torch.Size([2, 128])
"""

from __future__ import annotations

import torch
from torch import nn

from oaprobe.models.backbones import scale_channels


class BasicBlock3D(nn.Module):
    """Two 3^3 conv-BN layers with a residual connection (projection shortcut when needed)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm3d(out_ch)
        self.conv2 = nn.Conv3d(out_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(out_ch)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm3d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet3D18(nn.Module):
    """3D ResNet-18 encoder ``(B, 1, D, H, W) -> (B, 512 * width)``.

    Args:
        width: channel multiplier; stage widths are (64, 128, 256, 512) * width.
        in_channels: input channels (1 for MRI).
    """

    def __init__(self, width: float = 1.0, in_channels: int = 1) -> None:
        super().__init__()
        c = [scale_channels(n, width) for n in (64, 128, 256, 512)]
        self.conv1 = nn.Conv3d(in_channels, c[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(c[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        self.layer1 = self._layer(c[0], c[0], stride=1, dilation=1)
        self.layer2 = self._layer(c[0], c[1], stride=2, dilation=1)
        self.layer3 = self._layer(c[1], c[2], stride=1, dilation=2)
        self.layer4 = self._layer(c[2], c[3], stride=1, dilation=4)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.out_dim: int = c[3]
        self.gradcam_layer = "layer4"
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _layer(in_ch: int, out_ch: int, stride: int, dilation: int, blocks: int = 2) -> nn.Sequential:
        layers = [BasicBlock3D(in_ch, out_ch, stride=stride, dilation=dilation)]
        layers += [BasicBlock3D(out_ch, out_ch, dilation=dilation) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.pool(x).flatten(1)
