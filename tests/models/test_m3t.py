"""M3T: slice tokens sized from the input shape, head adaptation, shapes and gradients."""

from __future__ import annotations

import pytest
import torch

from oaprobe.models.m3t import M3T, ResNet2D18, _heads_for


def test_forward_shape_non_cubic():
    net = M3T((8, 12, 16), width=0.25)
    assert net(torch.randn(2, 1, 8, 12, 16)).shape == (2, net.out_dim)
    assert net.out_dim == 32


def test_tokens_sized_from_input_shape():
    d, h, w = 8, 12, 16
    net = M3T((d, h, w), width=0.25)
    # CLS + every coronal, sagittal and axial slice + one SEP per plane
    assert net.pos_embed.shape[1] == 1 + (w + 1) + (d + 1) + (h + 1)
    assert net.plane_ids.tolist().count(0) == 1
    assert [net.plane_ids.tolist().count(p) for p in (1, 2, 3)] == [w + 1, d + 1, h + 1]


def test_stem_has_two_5cubed_convs_of_16_times_width():
    net = M3T((8, 8, 8), width=0.5)
    convs = [m for m in net.stem if isinstance(m, torch.nn.Conv3d)]
    assert len(convs) == 2 and all(c.kernel_size == (5, 5, 5) and c.out_channels == 8 for c in convs)


def test_transformer_has_four_layers_and_heads_divide_width():
    net = M3T((8, 8, 8), width=1.0)
    assert len(net.transformer.layers) == 4
    attn = net.transformer.layers[0].self_attn
    assert net.out_dim == 128 and attn.num_heads == 8
    assert M3T((8, 8, 8), width=0.3).transformer.layers[0].self_attn.num_heads == _heads_for(38)


@pytest.mark.parametrize("dim, heads", [(128, 8), (32, 8), (38, 2), (36, 6), (13, 1)])
def test_heads_for_picks_largest_divisor_up_to_8(dim, heads):
    assert _heads_for(dim) == heads


def test_slice_encoder_is_resnet18_layout():
    enc = ResNet2D18(in_channels=4, width=0.25)
    assert [len(stage) for stage in enc.stages] == [2, 2, 2, 2]
    assert enc.out_dim == 128
    assert enc(torch.randn(3, 4, 16, 16)).shape == (3, 128)


def test_wrong_input_shape_is_a_clear_error():
    net = M3T((8, 8, 8), width=0.25)
    with pytest.raises(ValueError, match=r"built for input_shape \(8, 8, 8\)"):
        net(torch.randn(1, 1, 8, 8, 12))


def test_gradient_reaches_stem_and_tokens():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # fixed weights, inputs and dropout: the unseeded net's outcome hung on the suite's RNG
        net = M3T((8, 8, 8), width=0.25)
        out = net(torch.randn(4, 1, 8, 8, 8))
        # a random projection, not out.sum(): the sum of a LayerNorm output is constant, its gradient only rounding
        (out * torch.randn(out.shape)).sum().backward()
    for p in (net.stem[0].weight, net.stem[3].weight, net.pos_embed, net.sep_token):
        assert p.grad is not None and p.grad.norm() > 0
