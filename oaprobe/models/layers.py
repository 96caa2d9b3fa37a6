"""Layers shared by the paper backbones: channel scaling, layer factories and one residual block.

The layer type follows ``spatial_dims`` (2 for M3T's slice encoder, 3 for the volume
encoders), in the style of MONAI's layer factories, so one residual block serves the 2D and
the 3D ResNet-18s and nnMamba's stages. Activations are never in place, so any layer can be
hooked for Grad-CAM. Convolutions skip the kernel taps that can only read zero padding
(:class:`Conv3d`, :class:`Conv2d`), which is most of the work of a dilated conv on a small map,
and on maps with at most half as many positions as kernel taps run as one matrix product
(:func:`dense_conv`).
:class:`PolyphaseConv3d` runs a few-channel 5^3 convolution over 2x2x2 phases (M3T's stem).
This module imports no backbone.

Example:
    >>> import torch
    >>> block = ResidualBlock(3, 8, 16, stride=2)
    >>> block(torch.zeros(1, 8, 8, 8, 8)).shape
    torch.Size([1, 16, 4, 4, 4])
    >>> layer_type("conv", 2)
    <class 'oaprobe.models.layers.Conv2d'>
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn


def useful_taps(size: int, kernel: int, dilation: int, padding: int) -> range:
    """Taps of one kernel axis that read at least one input voxel, for a stride-1 convolution.

    Tap ``j`` reads input ``o - padding + j * dilation`` for outputs ``o = 0 .. out - 1``; a tap
    whose reach lies wholly in the zero padding only ever adds zeros (and gets a zero gradient).

    Example:
        >>> useful_taps(4, 3, 4, 4), useful_taps(4, 3, 2, 2), useful_taps(1, 3, 1, 1)
        (range(1, 2), range(0, 3), range(1, 2))
    """
    out = size + 2 * padding - dilation * (kernel - 1)
    taps = [j for j in range(kernel) if j * dilation - padding <= size - 1 and j * dilation - padding + out - 1 >= 0]
    return range(taps[0], taps[-1] + 1) if taps else range(0)


@functools.lru_cache(maxsize=64)
def conv_placement(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...],
                   dilation: tuple[int, ...]) -> torch.Tensor:
    """One-hot (taps, input positions, output positions) of a zero-padded convolution's geometry:
    entry (t, i, o) is 1 where tap ``t`` of output position ``o`` reads input position ``i`` (taps
    and positions in row-major order)."""
    placement = torch.ones(1, 1, 1)
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation):
        out = (n + 2 * p - d * (k - 1) - 1) // s + 1
        axis = (torch.arange(n)[None, :, None] == torch.arange(out) * s - p + torch.arange(k)[:, None, None] * d)
        placement = torch.einsum("tio,ujp->tuijop", placement, axis.float()).flatten(4, 5).flatten(2, 3).flatten(0, 1)
    return placement


def dense_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, ...],
               padding: tuple[int, ...], dilation: tuple[int, ...]) -> torch.Tensor:
    """A one-group, zero-padded 2D/3D convolution as one matrix product over whole maps.

    The kernel becomes the (positions x channels in, positions x channels out) matrix of the
    convolution on maps of ``x``'s size (:func:`conv_placement`); the input, read in channels-last
    order, multiplies it; the output is a channels-last view. The same sums as the convolution.
    Where a map has at most half as many positions as the kernel has taps (M3T's 2D encoder on its
    2x2 and 1x1 maps), the product multiplies at most half the convolution's terms, at the matmul
    rate: those convolutions' training step 1.9-4.5x faster here at 576 slices.
    """
    n, c_in, *size = x.shape
    c_out, dims = weight.shape[0], len(size)
    placement = conv_placement(tuple(size), tuple(weight.shape[2:]), stride, padding, dilation).to(weight.dtype)
    taps, p_in, p_out = placement.shape
    matrix = (weight.reshape(c_out * c_in, taps) @ placement.reshape(taps, p_in * p_out)).view(c_out, c_in, p_in, p_out)
    matrix = matrix.permute(2, 1, 3, 0).reshape(p_in * c_in, p_out * c_out)
    out = x.permute(0, *range(2, dims + 2), 1).reshape(n, p_in * c_in) @ matrix
    out_size = [(m + 2 * p - d * (k - 1) - 1) // s + 1
                for m, k, s, p, d in zip(size, weight.shape[2:], stride, padding, dilation)]
    out = out.view(n, *out_size, c_out).permute(0, dims + 1, *range(1, dims + 1))
    return out if bias is None else out + bias.view(1, -1, *([1] * dims))


class _SkipPaddingTaps:
    """Mixin for ``nn.Conv2d`` / ``nn.Conv3d``: a stride-1, zero-padded convolution runs only the
    kernel taps that can reach the input (:func:`useful_taps`), with the padding cut to match.

    Outputs and gradients are those of the full kernel (the skipped taps multiply padding zeros
    only; their weight gradient stays exactly zero); parameters and state dicts are unchanged.
    It matters where a map is no wider than a tap's reach: resnet3d's layer4 (dilation 4 on a
    4^3 map at a 32^3 input) then runs as a 1^3 convolution, 1.4x faster per training step here.
    Maps with at most half as many positions as kernel taps run as one matrix product (:func:`dense_conv`).
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self._dense_is_cheaper(input.shape[2:]):
            return dense_conv(input, weight, bias, self.stride, self.padding, self.dilation)
        trimmed = self._trimmed(input.shape[2:])
        if trimmed is None:
            return super()._conv_forward(input, weight, bias)
        taps, padding = trimmed
        conv = F.conv3d if input.dim() == 5 else F.conv2d
        return conv(input, weight[(slice(None), slice(None), *taps)], bias, self.stride, padding, self.dilation, self.groups)

    def _dense_is_cheaper(self, sizes: torch.Size) -> bool:
        """Whether :func:`dense_conv` runs this convolution: one group, zero padding given as numbers,
        and at most half as many input positions as kernel taps (it then multiplies at most half the
        convolution's terms). Measured on M3T's 2D maps (one thread, 24 to 576 slices): faster at
        1x1 and 2x2 (1.0-4.5x), never faster at 3x3 (9 positions, 9 taps)."""
        return (self.groups == 1 and self.padding_mode == "zeros" and not isinstance(self.padding, str)
                and 2 * math.prod(sizes) <= math.prod(self.kernel_size))

    def _trimmed(self, sizes: torch.Size) -> tuple[tuple[slice, ...], tuple[int, ...]] | None:
        """Kernel slices and padding of the trimmed convolution, or None when nothing can be skipped
        (or no tap reaches the input, which torch's own convolution then reports)."""
        if self.padding_mode != "zeros" or isinstance(self.padding, str) or any(s != 1 for s in self.stride):
            return None
        # at stride 1 with symmetric padding the useful taps are centred in the kernel, so cutting the
        # padding by the taps skipped on each side keeps the output size
        taps = [useful_taps(*axis) for axis in zip(sizes, self.kernel_size, self.dilation, self.padding)]
        if not all(taps) or all(len(t) == k for t, k in zip(taps, self.kernel_size)):
            return None
        padding = tuple(p - t.start * d for t, p, d in zip(taps, self.padding, self.dilation))
        return tuple(slice(t.start, t.stop) for t in taps), padding


class Conv2d(_SkipPaddingTaps, nn.Conv2d):
    """``nn.Conv2d`` that skips the kernel taps reading only zero padding (:class:`_SkipPaddingTaps`)."""


class Conv3d(_SkipPaddingTaps, nn.Conv3d):
    """``nn.Conv3d`` that skips the kernel taps reading only zero padding (:class:`_SkipPaddingTaps`)."""


def _phase_taps(kernel: int, padding: int) -> torch.Tensor:
    """Kernel index of tap ``u`` (-1, 0, 1) from input phase ``ri`` to output phase ``ro``, shape
    (ro, ri, u) = (2, 2, 3); ``kernel`` marks a tap outside the kernel (a zero weight)."""
    return torch.tensor([[[j if 0 <= (j := 2 * u + ri - ro + padding) < kernel else kernel for u in (-1, 0, 1)]
                          for ri in (0, 1)] for ro in (0, 1)])


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """(N, C, 2a, 2b, ...) -> (N, C * 2^dims, a, b, ...): channel ``c * 2^dims + phase`` (phase bits in axis order)."""
    n, c, *size = x.shape
    dims = len(size)
    v = x.reshape(n, c, *(s for m in size for s in (m // 2, 2)))
    return v.permute(0, 1, *(3 + 2 * a for a in range(dims)), *(2 + 2 * a for a in range(dims))).reshape(
        n, c * 2**dims, *(m // 2 for m in size))


def depth_to_space(y: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`space_to_depth`."""
    n, c_phases, *half = y.shape
    dims = len(half)
    v = y.reshape(n, c_phases // 2**dims, *([2] * dims), *half)
    order = [0, 1, *(x for a in range(dims) for x in (2 + dims + a, 2 + a))]
    return v.permute(order).reshape(n, c_phases // 2**dims, *(2 * m for m in half))


def polyphase_weight(weight: torch.Tensor) -> torch.Tensor:
    """The 3-wide kernel over :func:`space_to_depth` maps equal to ``weight`` (odd width <= 5, "same" padding)
    over the full maps: ``out[2m + ro] = sum_j w[j] x[2m + ro + j - p]`` reads input phase ``ri`` at
    ``m + u`` with ``j = 2u + ri - ro + p``."""
    dims, (co, ci, k) = weight.dim() - 2, weight.shape[:3]
    taps = _phase_taps(k, k // 2).reshape(-1)
    w = F.pad(weight, (0, 1) * dims)  # index k: the zero tap
    for a in range(dims):
        w = w.index_select(2 + 3 * a, taps).unflatten(2 + 3 * a, (2, 2, 3))
    ro = [2 + 3 * a for a in range(dims)]  # (co, ci, ro, ri, u per axis) -> (co, ro..., ci, ri..., u...)
    return w.permute(0, *ro, 1, *(r + 1 for r in ro), *(r + 2 for r in ro)).reshape(
        co * 2**dims, ci * 2**dims, *([3] * dims))


class PolyphaseConv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs a stride-1 "same" 5^3 (or 3^3) convolution on maps of even sides as a
    3^3 convolution over their 2x2x2 phases (:func:`space_to_depth`): the same sums, with 8x the
    channels on 1/8 of the voxels. For few channels that is much faster on CPU (M3T's 4-channel
    5^3 stem conv: 1.7x, forward and backward), though it multiplies 1.7x more terms for 5^3
    (3.7x for 3^3, so it is not used there). Any other setting runs ``nn.Conv3d`` as is;
    parameters and state dicts are ``nn.Conv3d``'s.
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        k = self.kernel_size[0]
        if (self.padding_mode != "zeros" or self.groups != 1 or any(s != 1 for s in self.stride)
                or any(d != 1 for d in self.dilation) or set(self.kernel_size) != {k} or k not in (3, 5)
                or self.padding != (k // 2,) * 3 or any(s % 2 for s in input.shape[2:])):
            return super()._conv_forward(input, weight, bias)
        cl = torch.channels_last_3d
        out = F.conv3d(space_to_depth(input).contiguous(memory_format=cl),
                       polyphase_weight(weight).contiguous(memory_format=cl), padding=1)
        out = depth_to_space(out).contiguous(memory_format=cl)
        return out if bias is None else out + bias.view(1, -1, 1, 1, 1)


def _phase_plan(size: int, out: int, kernel: int, stride: int, padding: int) -> tuple[torch.Tensor, int, int]:
    """One axis of :func:`strided_input_grad`: the kernel index of tap ``t`` for input phase ``r``
    (``kernel``: no tap, a zero weight), shape (stride, taps), and the output gradient's left and
    right padding."""
    q_lo = min(-((r + padding) // stride) for r in range(stride))
    q_hi = max((kernel - 1 - r - padding) // stride for r in range(stride))
    table = [[j if 0 <= (j := stride * (q_hi - t) + r + padding) < kernel else kernel for t in range(q_hi - q_lo + 1)]
             for r in range(stride)]
    return torch.tensor(table), q_hi, -(-size // stride) - q_lo - out


def strided_input_grad(grad: torch.Tensor, weight: torch.Tensor, stride: int, padding: int,
                       size: tuple[int, ...]) -> torch.Tensor:
    """Input gradient of a 2D convolution of ``stride`` and ``padding`` (undilated, one group) as one
    stride-1 convolution of ``grad`` giving every input phase's channels, then :func:`depth_to_space`-
    like interleaving: ``dx[s m + r] = sum_q w[s q + r + p] grad[m - q]``. For M3T's 7x7 stride-2
    slice stem (4 input channels) 1.7x faster than torch's own backward here."""
    co, ci = weight.shape[:2]
    plans = [_phase_plan(n, o, k, stride, padding) for n, o, k in zip(size, grad.shape[2:], weight.shape[2:])]
    w = F.pad(weight, (0, 1, 0, 1))  # index k: the zero tap
    for a, (table, _, _) in enumerate(plans):
        w = w.index_select(2 + 2 * a, table.reshape(-1)).unflatten(2 + 2 * a, table.shape)
    taps = [len(p[0][0]) for p in plans]  # w: (co, ci, r1, t1, r2, t2) -> (ci, r1, r2, co, t1, t2)
    w = w.permute(1, 2, 4, 0, 3, 5).reshape(ci * stride**2, co, *taps)
    # the gradient padded by (left, right) per axis, through the convolution's own symmetric padding
    # and a crop: padding a copy of the gradient first cost more than the convolution here
    pads = [max(left, right, 0) for _, left, right in plans]
    phased = F.conv2d(grad, w.contiguous(memory_format=torch.channels_last), padding=pads)
    sizes = [g + left + right - t + 1 for g, (_, left, right), t in zip(grad.shape[2:], plans, taps)]
    phased = phased[:, :, pads[0] - plans[0][1]:, pads[1] - plans[1][1]:][:, :, : sizes[0], : sizes[1]]
    n, (mh, mw) = grad.shape[0], sizes
    full = phased.view(n, ci, stride, stride, mh, mw).permute(0, 1, 4, 2, 5, 3).reshape(n, ci, mh * stride, mw * stride)
    return full[:, :, : size[0], : size[1]]


class _StridedConv2d(torch.autograd.Function):
    """``F.conv2d`` (no bias) whose input gradient is :func:`strided_input_grad`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        dx = strided_input_grad(grad, weight, s, p, tuple(x.shape[2:])) if ctx.needs_input_grad[0] else None
        dw = None
        if ctx.needs_input_grad[1]:
            dw = torch.ops.aten.convolution_backward(grad, x, weight, None, [s, s], [p, p], [1, 1], False, [0, 0], 1,
                                                     [False, True, False])[1]
        return dx, dw, None, None


class StridedConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose strided, bias-free, square form (equal stride and padding on both axes,
    zero padding, undilated, one group) back-propagates to its input with :func:`strided_input_grad`;
    anything else is ``nn.Conv2d`` as is. Same parameters and state dict."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        (sh, sw), (ph, pw) = self.stride, self.padding if not isinstance(self.padding, str) else (None, None)
        if (bias is not None or self.padding_mode != "zeros" or self.groups != 1 or self.dilation != (1, 1)
                or sh == 1 or sh != sw or ph is None or ph != pw):
            return super()._conv_forward(input, weight, bias)
        return _StridedConv2d.apply(input, weight, sh, ph)


_LAYERS: dict[str, tuple[type[nn.Module], type[nn.Module], type[nn.Module]]] = {
    "conv": (nn.Conv1d, Conv2d, Conv3d),
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
