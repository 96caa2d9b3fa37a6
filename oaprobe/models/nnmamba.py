"""nnMamba-style encoder: residual 3D CNN stages, then a Mamba layer over the bottleneck tokens.

The reference code needs the CUDA-only ``mamba_ssm`` package. Here the selective state-space
scan is written in PyTorch (the recurrence itself, one fused multiply-add per step with a
hand-written reverse-recurrence backward; long sequences in two levels, within and across
chunks, about ``2 sqrt(L)`` steps), so the backbone runs on CPU. When
``mamba_ssm`` is importable and the tensors are on CUDA, its fused kernel is used instead; both
compute the same recurrence

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,    y_t = C_t . h_t + D * u_t,

gated by ``silu(z)``. Stages: a 3^3 stem, three strided residual stages (channels c, 2c, 4c with
``c = 32 * width``; blocks from :mod:`oaprobe.models.layers`), the 1/8-resolution map
flattened to tokens, one pre-norm residual Mamba layer, mean pooling and a linear map to the
embedding (``32 * width``, at least 16).

Example:
    >>> import torch
    >>> net = NNMambaEncoder(input_shape=(16, 16, 16), width=0.25)
    >>> net(torch.zeros(2, 1, 16, 16, 16)).shape
    torch.Size([2, 16])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from oaprobe.models.layers import conv_norm_act, residual_stage, scale_channels

try:  # optional fused CUDA kernel
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_selective_scan_fn
except Exception:
    _mamba_selective_scan_fn = None


def has_mamba_ssm() -> bool:
    """True when the fused ``mamba_ssm`` selective-scan kernel could be imported."""
    return _mamba_selective_scan_fn is not None


class _Recurrence(torch.autograd.Function):
    """All states of ``h_t = a_t * h_{t-1} + x_t`` (``h_{-1} = 0``) along dim 0 of contiguous ``a``, ``x``.

    One fused multiply-add per step, written into a preallocated output; backward is the
    reverse recurrence ``g_t = grad_t + a_{t+1} * g_{t+1}``, then ``da_t = g_t * h_{t-1}``, ``dx_t = g_t``.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = torch.empty_like(x)
        h[0] = x[0]
        for t in range(1, x.shape[0]):
            torch.addcmul(x[t], a[t], h[t - 1], out=h[t])
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, h = ctx.saved_tensors
        grad = grad.contiguous()
        g = torch.empty_like(grad)
        g[-1] = grad[-1]
        for t in range(grad.shape[0] - 2, -1, -1):
            torch.addcmul(grad[t], a[t + 1], g[t + 1], out=g[t])
        grad_a = torch.zeros_like(a)
        torch.mul(g[1:], h[:-1], out=grad_a[1:])
        return grad_a, g


def _scan_states(log_decay: torch.Tensor, inputs: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """All states of ``h_t = exp(log_decay_t) * h_{t-1} + inputs_t`` for time-major (L, ...) tensors.

    With ``chunk_size < L`` the steps are cut into chunks: the recurrence runs within all chunks
    at once (``chunk_size`` steps), then over the chunk ends (``L / chunk_size`` steps), and each
    chunk adds its entering state times its cumulative decay; about ``2 sqrt(L)`` sequential steps.
    """
    length = log_decay.shape[0]
    if chunk_size >= length:
        return _Recurrence.apply(log_decay.exp(), inputs.contiguous())
    n_chunks = -(-length // chunk_size)
    pad = [0, 0] * (log_decay.dim() - 1) + [0, n_chunks * chunk_size - length]
    rest = log_decay.shape[1:]
    log_decay, inputs = (F.pad(t, pad).view(n_chunks, chunk_size, *rest).transpose(0, 1) for t in (log_decay, inputs))
    local = _Recurrence.apply(log_decay.exp().contiguous(), inputs.contiguous())  # zero state at chunk starts
    cum = log_decay.cumsum(dim=0)  # log decay from each chunk's start, (k, chunks, ...)
    ends = _Recurrence.apply(cum[-1].exp().contiguous(), local[-1].contiguous())  # state at each chunk end
    entering = torch.cat([torch.zeros_like(ends[:1]), ends[:-1]])
    states = local + cum.exp() * entering
    return states.transpose(0, 1).reshape(n_chunks * chunk_size, *rest)[:length]


def selective_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Selective scan in PyTorch, with ``mamba_ssm.selective_scan_fn``'s argument layout.

    Args:
        u: input (batch, d, L).
        delta: step sizes (batch, d, L), before ``delta_bias`` and softplus.
        A: state matrix (d, n), negative real.
        B, C: input and output projections (batch, n, L).
        D: skip weight (d,).
        z: gate (batch, d, L); the output is multiplied by ``silu(z)``.
        delta_bias: added to ``delta`` (d,).
        delta_softplus: apply softplus to ``delta``.
        chunk_size: steps per chunk of the two-level scan (see :func:`_scan_states`); ``None`` =
            one chunk on CPU (fastest there at every measured length, 64 to 4096 steps), about
            ``sqrt(L)`` on other devices for more than 256 steps (fewer kernel launches).

    Returns:
        y (batch, d, L) in the dtype of ``u``; computed in float32 (float64 for float64 inputs).
    """
    dtype = u.dtype
    work = torch.promote_types(dtype, torch.float32)
    with torch.autocast(device_type=u.device.type, enabled=False):  # the scan needs float32
        u_f, delta, B, C, A = (t.to(work) for t in (u, delta, B, C, A))
        if delta_bias is not None:
            delta = delta + delta_bias.to(work)[None, :, None]
        if delta_softplus:
            delta = F.softplus(delta)
        length = u_f.shape[2]
        if chunk_size is None:
            long_on_device = u.device.type != "cpu" and length > 256
            chunk_size = math.isqrt(length - 1) + 1 if long_on_device else length
        # time-major (L, batch, d, n): every step of the recurrence is one contiguous slice
        delta_t = delta.permute(2, 0, 1)
        log_decay = delta_t[..., None] * A  # <= 0
        inputs = (delta_t * u_f.permute(2, 0, 1))[..., None] * B.permute(2, 0, 1)[:, :, None, :]
        states = _scan_states(log_decay, inputs, chunk_size)
        y = torch.einsum("lbdn,lbn->bdl", states, C.permute(2, 0, 1))
        if D is not None:
            y = y + u_f * D.to(work)[None, :, None]
        if z is not None:
            y = y * F.silu(z.to(work))
        return y.to(dtype)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Selective scan: ``mamba_ssm``'s fused kernel on CUDA when installed, else :func:`selective_scan_torch`."""
    if _mamba_selective_scan_fn is not None and u.is_cuda:
        return _mamba_selective_scan_fn(
            u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(), C.contiguous(),
            D=D, z=None if z is None else z.contiguous(), delta_bias=delta_bias, delta_softplus=delta_softplus,
        )
    return selective_scan_torch(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)


class Mamba(nn.Module):
    """One Mamba mixer ``(B, L, d_model) -> (B, L, d_model)``.

    Args:
        d_model: token width.
        d_state: state size per channel.
        d_conv: causal depthwise convolution length.
        expand: inner width = ``expand * d_model``.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2) -> None:
        super().__init__()
        d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.d_state = d_state
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        # step sizes start log-uniform in [1e-3, 1e-1]: bias = softplus^-1(dt)
        dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x, z = self.in_proj(tokens).transpose(1, 2).chunk(2, dim=1)  # (B, d_inner, L) each
        x = F.silu(self.conv1d(x)[..., :length])
        params = self.x_proj(x.transpose(1, 2))  # (B, L, r + 2n)
        dt, b_in, c_out = params.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.T).transpose(1, 2)  # bias added inside the scan
        y = selective_scan(
            x, delta, -torch.exp(self.A_log), b_in.transpose(1, 2), c_out.transpose(1, 2),
            D=self.D, z=z, delta_bias=self.dt_proj.bias, delta_softplus=True,  # the scan works in >= float32
        )
        return self.out_proj(y.transpose(1, 2))


def _rename_legacy_shortcut(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    """Load checkpoints written before the shared block: ``stages.*.shortcut.*`` is now ``...downsample.*``."""
    for key in [k for k in state_dict if k.startswith(prefix + "stages.") and ".shortcut." in k]:
        state_dict[key.replace(".shortcut.", ".downsample.")] = state_dict.pop(key)


class NNMambaEncoder(nn.Module):
    """nnMamba-style encoder ``(B, 1, D, H, W) -> (B, max(16, 32 * width))``.

    Args:
        input_shape: (D, H, W); kept for the registry's shape contract (any size >= 8 works).
        width: channel multiplier (stage channels 32, 64, 128 and embedding 32 at width 1).
        d_state: Mamba state size.
    """

    def __init__(self, input_shape: tuple[int, int, int] = (32, 32, 32), width: float = 1.0, d_state: int = 16) -> None:
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        c = scale_channels(32, width, minimum=8)
        self.stem = nn.Sequential(*conv_norm_act(3, 1, c, 3))
        self.stages = nn.Sequential(
            residual_stage(3, c, c, stride=2),
            residual_stage(3, c, 2 * c, stride=2),
            residual_stage(3, 2 * c, 4 * c, stride=2),
        )
        # channels-last weights: much faster 3D conv backward on CPU at these channel counts.
        self.stem.to(memory_format=torch.channels_last_3d)
        self.stages.to(memory_format=torch.channels_last_3d)
        d_model = 4 * c
        self.norm_in = nn.LayerNorm(d_model)
        self.mamba = Mamba(d_model, d_state=d_state)
        self.norm_out = nn.LayerNorm(d_model)
        self.out_dim: int = max(16, int(round(32 * width)))
        self.project = nn.Linear(d_model, self.out_dim)
        self.gradcam_layer = "stages.2"
        self.register_load_state_dict_pre_hook(_rename_legacy_shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.stages(self.stem(x.contiguous(memory_format=torch.channels_last_3d)))
        tokens = feat.flatten(2).transpose(1, 2)  # (B, L, C), L = d*h*w of the 1/8 map
        tokens = tokens + self.mamba(self.norm_in(tokens))
        return self.project(self.norm_out(tokens).mean(dim=1))
