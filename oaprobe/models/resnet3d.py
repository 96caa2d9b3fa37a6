"""MedicalNet-style 3D ResNet-18: the reference study's ResNet3D backbone.

Basic residual blocks (:class:`~oaprobe.models.layers.ResidualBlock`: two 3^3 convs, shortcut
type B, i.e. a 1^3 conv + BatchNorm when the shape changes), a 7^3 stride-2 stem with max
pooling, layer2 strided, and layer3/layer4 dilated (2 and 4) instead of strided, so the last
maps stay 1/8 of the input. Global average pooling
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

from oaprobe.models.layers import conv_norm_act, residual_stage, scale_channels


class ResNet3D18(nn.Module):
    """3D ResNet-18 encoder ``(B, 1, D, H, W) -> (B, 512 * width)``.

    Args:
        width: channel multiplier; stage widths are (64, 128, 256, 512) * width.
        in_channels: input channels (1 for MRI).
    """

    def __init__(self, width: float = 1.0, in_channels: int = 1) -> None:
        super().__init__()
        c = [scale_channels(n, width) for n in (64, 128, 256, 512)]
        self.conv1, self.bn1, self.relu = conv_norm_act(3, in_channels, c[0], 7, stride=2)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        self.layer1 = residual_stage(3, c[0], c[0], stride=1, dilation=1)
        self.layer2 = residual_stage(3, c[0], c[1], stride=2, dilation=1)
        self.layer3 = residual_stage(3, c[1], c[2], stride=1, dilation=2)
        self.layer4 = residual_stage(3, c[2], c[3], stride=1, dilation=4)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.out_dim: int = c[3]
        self.gradcam_layer = "layer4"
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.pool(x).flatten(1)
