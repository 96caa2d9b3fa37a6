"""MedicalNet-style ResNet3D-18: widths, dilation layout, resolution and gradients."""

from __future__ import annotations

import pytest
import torch

from oaprobe.models.layers import ResidualBlock
from oaprobe.models.resnet3d import ResNet3D18


@pytest.mark.parametrize("width, dim", [(0.25, 128), (0.5, 256), (1.0, 512)])
def test_embedding_is_512_times_width(width, dim):
    assert ResNet3D18(width=width).out_dim == dim


def test_forward_shape():
    net = ResNet3D18(width=0.25)
    assert net(torch.randn(3, 1, 16, 24, 32)).shape == (3, 128)


def test_layer3_layer4_dilated_not_strided():
    net = ResNet3D18(width=0.25)
    for layer, dilation in ((net.layer3, 2), (net.layer4, 4)):
        for block in layer:
            assert block.conv1.dilation == (dilation,) * 3 and block.conv2.dilation == (dilation,) * 3
            assert block.conv1.stride == (1, 1, 1)
    assert net.layer2[0].conv1.stride == (2, 2, 2)


def test_last_map_is_one_eighth_of_input():
    net = ResNet3D18(width=0.25)
    seen = {}

    def keep_shape(module, inputs, output):
        seen["shape"] = output.shape

    net.layer4.register_forward_hook(keep_shape)
    net(torch.randn(2, 1, 32, 32, 32))
    assert seen["shape"][2:] == (4, 4, 4)


def test_blocks_are_the_shared_residual_block_with_type_b_shortcut():
    net = ResNet3D18(width=0.25)
    blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
    assert len(blocks) == 8 and all(isinstance(b, ResidualBlock) for b in blocks)
    # projections only where channels or stride change: first blocks of layer2..layer4
    assert [b.downsample is not None for b in blocks] == [False, False, True, False, True, False, True, False]


def test_no_inplace_activations():
    net = ResNet3D18(width=0.25)
    assert not any(getattr(m, "inplace", False) for m in net.modules())


def test_gradient_reaches_stem():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a fixed net, independent of the suite's RNG state
        net = ResNet3D18(width=0.25)
        net(torch.randn(2, 1, 16, 16, 16)).sum().backward()
    assert net.conv1.weight.grad is not None and net.conv1.weight.grad.norm() > 0
