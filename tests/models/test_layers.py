"""Shared layers: channel scaling, layer factories, the 2D/3D residual block and stage."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from oaprobe.models.layers import (
    PolyphaseConv3d,
    ResidualBlock,
    StridedConv2d,
    conv_norm_act,
    dense_conv,
    depth_to_space,
    layer_type,
    residual_stage,
    scale_channels,
    space_to_depth,
)


def _x(spatial_dims: int, channels: int, side: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, channels, *(side,) * spatial_dims, generator=torch.Generator().manual_seed(seed))


def test_scale_channels_rounds_and_floors():
    assert scale_channels(64, 0.25) == 16
    assert scale_channels(64, 1.0) == 64
    assert scale_channels(16, 0.1) == 4
    assert scale_channels(16, 0.1, minimum=1) == 2


@pytest.mark.parametrize("dims, conv, norm", [(2, nn.Conv2d, nn.BatchNorm2d), (3, nn.Conv3d, nn.BatchNorm3d)])
def test_layer_type_follows_spatial_dims(dims, conv, norm):
    assert issubclass(layer_type("conv", dims), conv) and layer_type("batchnorm", dims) is norm


# (input shape, conv arguments, taps that should run): a dilated or 3-wide kernel on a map no
# wider than its reach skips taps; a map wide enough, a stride or padding that is not zeros keeps them all
_TRIM_CASES = [
    ((2, 3, 4, 4, 4), dict(kernel_size=3, dilation=4, padding=4), (1, 1, 1)),  # resnet3d layer4 at 32^3
    ((2, 3, 4, 6, 3), dict(kernel_size=5, dilation=2, padding=4), (3, 5, 3)),
    ((2, 3, 1, 1), dict(kernel_size=3, padding=1), (1, 1)),  # M3T's last 2D stage at 24^3
    ((2, 3, 1, 5), dict(kernel_size=(3, 5), padding=(1, 2)), (1, 5)),
    ((2, 3, 4, 4, 4), dict(kernel_size=3, dilation=2, padding=2), None),
    ((2, 3, 3, 3), dict(kernel_size=3, padding=1, stride=2), None),
    ((2, 3, 4, 4, 4), dict(kernel_size=3, dilation=4, padding=4, padding_mode="circular"), None),
]


@pytest.mark.parametrize("shape, kwargs, kept", _TRIM_CASES)
def test_conv_skips_only_padding_taps_with_the_full_kernels_outputs_and_gradients(shape, kwargs, kept):
    dims = len(shape) - 2
    torch.manual_seed(0)
    ours = layer_type("conv", dims)(3, 5, **kwargs).double()
    plain = (nn.Conv2d, nn.Conv3d)[dims - 2](3, 5, **kwargs).double()
    plain.load_state_dict(ours.state_dict())
    trimmed = ours._trimmed(shape[2:])
    assert (trimmed is None) == (kept is None)
    if trimmed is not None:
        assert tuple(s.stop - s.start for s in trimmed[0]) == kept
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    x_plain = x.detach().clone().requires_grad_()
    y, y_plain = ours(x), plain(x_plain)
    grad = torch.randn_like(y)
    y.backward(grad)
    y_plain.backward(grad)
    for a, b in ((y, y_plain), (x.grad, x_plain.grad), (ours.weight.grad, plain.weight.grad), (ours.bias.grad, plain.bias.grad)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    if trimmed is not None:  # the skipped taps' gradient is exactly zero, as the full kernel's is
        skipped = torch.ones_like(ours.weight.grad, dtype=torch.bool)
        skipped[(slice(None), slice(None), *trimmed[0])] = False
        assert ours.weight.grad[skipped].abs().max() == 0 == plain.weight.grad[skipped].abs().max()


# (spatial size, kernel, stride, padding, dilation): M3T's slice maps (3x3, 2x2, 1x1), a stride, a
# rectangular map with dilation, 3D maps
_DENSE_CASES = [((3, 3), 3, 1, 1, 1), ((3, 3), 3, 2, 1, 1), ((2, 2), 3, 1, 1, 1), ((1, 1), 1, 1, 0, 1),
                ((2, 3), 3, 1, 2, 2), ((2, 2, 2), 3, 1, 1, 1), ((3, 1, 2), 3, 2, 1, 1)]


@pytest.mark.parametrize("size, kernel, stride, padding, dilation", _DENSE_CASES)
def test_dense_conv_equals_torch_conv_forward_and_gradients(size, kernel, stride, padding, dilation):
    dims, g = len(size), torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, *size, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(6, 4, *(kernel,) * dims, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, generator=g, requires_grad=True)
    conv = (torch.nn.functional.conv2d, torch.nn.functional.conv3d)[dims - 2]
    want = conv(x, w, b, stride, padding, dilation)
    got = dense_conv(x, w, b, (stride,) * dims, (padding,) * dims, (dilation,) * dims)
    assert got.shape == want.shape
    assert got.is_contiguous(memory_format=(torch.channels_last, torch.channels_last_3d)[dims - 2])
    upstream = torch.randn(want.shape, dtype=torch.float64, generator=g)
    grads = [torch.autograd.grad((y * upstream).sum(), (x, w, b)) for y in (got, want)]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, c in zip(*grads):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, kwargs, dense", [
    ((2, 3, 2, 2), dict(kernel_size=3, padding=1), True),  # 4 positions, 9 taps
    ((2, 3, 1, 1), dict(kernel_size=3, padding=1, stride=2), True),
    ((2, 3, 3, 3), dict(kernel_size=3, padding=1), False),  # 9 positions, 9 taps: no faster
    ((2, 3, 2, 2), dict(kernel_size=1, stride=2), False),  # 4 positions, 1 tap
    ((2, 4, 2, 2), dict(kernel_size=3, padding=1, groups=2), False),
    ((2, 3, 2, 2), dict(kernel_size=3, padding=1, padding_mode="circular"), False),
    ((2, 3, 2, 2, 2), dict(kernel_size=3, padding=1), True),
    ((2, 3, 3, 3, 3), dict(kernel_size=3, padding=1), False),
])
def test_dense_path_runs_where_it_multiplies_no_more_terms(shape, kwargs, dense):
    conv = layer_type("conv", len(shape) - 2)(shape[1], 4, **kwargs)
    assert conv._dense_is_cheaper(torch.Size(shape[2:])) is dense


def test_layer_type_refuses_unknown_kind_and_dims():
    with pytest.raises(ValueError, match="kind = 'pool'"):
        layer_type("pool", 3)
    with pytest.raises(ValueError, match="spatial_dims = 4"):
        layer_type("conv", 4)


@pytest.mark.parametrize("dims", [2, 3])
def test_conv_norm_act_keeps_size_and_is_not_in_place(dims):
    conv, norm, act = conv_norm_act(dims, 2, 6, 5)
    assert isinstance(conv, layer_type("conv", dims)) and conv.bias is None
    assert isinstance(norm, layer_type("batchnorm", dims)) and not act.inplace
    assert nn.Sequential(conv, norm, act)(_x(dims, 2, 8)).shape == (2, 6, *(8,) * dims)
    assert conv_norm_act(dims, 2, 6, 7, stride=2)[0](_x(dims, 2, 8)).shape == (2, 6, *(4,) * dims)


@pytest.mark.parametrize("dims", [2, 3])
def test_block_keeps_shape_without_projection(dims):
    block = ResidualBlock(dims, 8, 8)
    assert block.downsample is None
    assert isinstance(block.conv1, layer_type("conv", dims)) and isinstance(block.bn2, layer_type("batchnorm", dims))
    assert block(_x(dims, 8, 6)).shape == (2, 8, *(6,) * dims)


@pytest.mark.parametrize("dims", [2, 3])
def test_stride_halves_size_and_projects_the_shortcut(dims):
    block = ResidualBlock(dims, 4, 8, stride=2)
    proj = block.downsample
    assert isinstance(proj[0], layer_type("conv", dims)) and proj[0].kernel_size == (1,) * dims
    assert proj[0].stride == (2,) * dims and isinstance(proj[1], layer_type("batchnorm", dims))
    assert block.conv1.stride == (2,) * dims and block.conv2.stride == (1,) * dims
    assert block(_x(dims, 4, 8)).shape == (2, 8, *(4,) * dims)


def test_channel_change_alone_projects_at_stride_1():
    block = ResidualBlock(3, 4, 8)
    assert block.downsample is not None and block.downsample[0].stride == (1, 1, 1)
    assert block(_x(3, 4, 5)).shape == (2, 8, 5, 5, 5)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("dilation", [2, 4])
def test_dilation_keeps_size(dims, dilation):
    block = ResidualBlock(dims, 4, 4, dilation=dilation)
    assert block.conv1.dilation == (dilation,) * dims and block.conv2.dilation == (dilation,) * dims
    assert block(_x(dims, 4, 9)).shape == (2, 4, *(9,) * dims)


def test_output_is_relu_of_residual_sum():
    # all-zero convs leave relu(bn(0) + x) = relu(x) for the identity shortcut: the skip is really added
    block = ResidualBlock(3, 4, 4).eval()
    for conv in (block.conv1, block.conv2):
        nn.init.zeros_(conv.weight)
    x = _x(3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))


@pytest.mark.parametrize("dims", [2, 3])
def test_gradient_reaches_both_branches_and_input(dims):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # weights and loss projection fixed here, independent of the suite's RNG
        block = ResidualBlock(dims, 4, 8, stride=2)
        x = _x(dims, 4, 8).requires_grad_(True)
        out = block(x)
        (out * torch.randn(out.shape)).sum().backward()
    for p in (block.conv1.weight, block.conv2.weight, block.downsample[0].weight):
        assert p.grad is not None and p.grad.norm() > 0
    assert x.grad is not None and x.grad.norm() > 0


def test_no_inplace_activations():
    assert not any(getattr(m, "inplace", False) for m in residual_stage(3, 4, 8, stride=2).modules())


def test_stage_first_block_strides_and_changes_channels():
    stage = residual_stage(2, 4, 8, stride=2, dilation=1, blocks=3)
    assert len(stage) == 3
    assert stage[0].downsample is not None and stage[0].conv1.stride == (2, 2)
    assert all(b.downsample is None and b.conv1.in_channels == 8 for b in stage[1:])
    assert stage(_x(2, 4, 8)).shape == (2, 8, 4, 4)


def test_stage_shares_dilation():
    stage = residual_stage(3, 4, 8, dilation=2)
    assert all(b.conv1.dilation == (2, 2, 2) and b.conv2.dilation == (2, 2, 2) for b in stage)


@pytest.mark.parametrize("kernel, in_ch, size", [(5, 4, (8, 8, 8)), (5, 1, (6, 10, 4)), (3, 3, (4, 6, 8))])
def test_polyphase_conv_equals_torch_conv_forward_and_gradients(kernel, in_ch, size):
    g = torch.Generator().manual_seed(0)
    conv = PolyphaseConv3d(in_ch, 3, kernel, padding=kernel // 2, bias=True).double()
    ref = nn.Conv3d(in_ch, 3, kernel, padding=kernel // 2, bias=True).double()
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(2, in_ch, *size, generator=g, dtype=torch.float64, requires_grad=True)
    got, want = conv(x), ref(x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    w = torch.randn(got.shape, generator=g, dtype=torch.float64)
    grads = [torch.autograd.grad((y * w).sum(), [x, m.weight, m.bias]) for y, m in ((got, conv), (want, ref))]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_polyphase_conv_falls_back_where_phases_do_not_apply():
    # odd sides, a stride, a 7-wide kernel: plain nn.Conv3d, the same result
    g = torch.Generator().manual_seed(1)
    for kwargs, size in (({"kernel_size": 5, "padding": 2}, (7, 8, 8)), ({"kernel_size": 5, "padding": 2, "stride": 2}, (8, 8, 8)),
                         ({"kernel_size": 7, "padding": 3}, (8, 8, 8))):
        conv = PolyphaseConv3d(2, 2, **kwargs)
        ref = nn.Conv3d(2, 2, **kwargs)
        ref.load_state_dict(conv.state_dict())
        x = torch.randn(1, 2, *size, generator=g)
        torch.testing.assert_close(conv(x), ref(x))


def test_space_to_depth_round_trips():
    x = torch.arange(2 * 3 * 4 * 6 * 2, dtype=torch.float32).reshape(2, 3, 4, 6, 2)
    phased = space_to_depth(x)
    assert phased.shape == (2, 24, 2, 3, 1)
    assert phased[0, 1, 0, 0, 0] == x[0, 0, 0, 0, 1]  # channel 0, phase (0, 0, 1)
    assert torch.equal(depth_to_space(phased), x)


@pytest.mark.parametrize("kernel, stride, padding, size", [(7, 2, 3, (12, 12)), (7, 2, 3, (11, 9)), (3, 2, 1, (8, 7)),
                                                            (5, 3, 2, (9, 10)), (1, 2, 0, (6, 6))])
def test_strided_conv_equals_torch_conv_forward_and_gradients(kernel, stride, padding, size):
    g = torch.Generator().manual_seed(0)
    conv = StridedConv2d(3, 5, kernel, stride=stride, padding=padding, bias=False).double()
    ref = nn.Conv2d(3, 5, kernel, stride=stride, padding=padding, bias=False).double()
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, *size, generator=g, dtype=torch.float64, requires_grad=True)
    got, want = conv(x), ref(x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    w = torch.randn(got.shape, generator=g, dtype=torch.float64)
    grads = [torch.autograd.grad((y * w).sum(), [x, m.weight]) for y, m in ((got, conv), (want, ref))]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_strided_conv_falls_back_with_a_bias_or_stride_one():
    g = torch.Generator().manual_seed(1)
    for kwargs in ({"stride": 2, "padding": 1, "bias": True}, {"stride": 1, "padding": 1, "bias": False}):
        conv, ref = StridedConv2d(2, 2, 3, **kwargs), nn.Conv2d(2, 2, 3, **kwargs)
        ref.load_state_dict(conv.state_dict())
        x = torch.randn(1, 2, 8, 8, generator=g)
        torch.testing.assert_close(conv(x), ref(x))
