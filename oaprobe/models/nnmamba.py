"""nnMamba-style encoder: residual 3D CNN stages, then a Mamba layer over the bottleneck tokens.

The reference code needs the CUDA-only ``mamba_ssm`` package. Here the selective state-space
scan is written in PyTorch (chunked: exact within chunks of ``chunk_size`` steps by a masked
cumulative-sum form, a carried state between chunks), so the backbone runs on CPU. When
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
import torch.utils.checkpoint
from torch import nn

from oaprobe.models.layers import conv_norm_act, residual_stage, scale_channels

try:  # optional fused CUDA kernel
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_selective_scan_fn
except Exception:  # noqa: BLE001 - any import failure means "not available"
    _mamba_selective_scan_fn = None


def has_mamba_ssm() -> bool:
    """True when the fused ``mamba_ssm`` selective-scan kernel could be imported."""
    return _mamba_selective_scan_fn is not None


def _scan_chunk(
    log_decay: torch.Tensor, inputs: torch.Tensor, C: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact scan of one chunk: (b,d,k,n) decays and inputs, (b,n,k) C, (b,d,n) state -> y, last state."""
    k = log_decay.shape[2]
    cum = log_decay.cumsum(dim=2)  # (b, d, k, n)
    # weight of step s on state t within the chunk: exp(cum_t - cum_s) for s <= t, else 0
    diff = cum.unsqueeze(3) - cum.unsqueeze(2)  # (b, d, t, s, n)
    causal = torch.ones(k, k, dtype=torch.bool, device=log_decay.device).tril()
    weights = torch.exp(diff.masked_fill(~causal[:, :, None], float("-inf")))
    states = torch.einsum("bdtsn,bdsn->bdtn", weights, inputs) + torch.exp(cum) * h.unsqueeze(2)
    return torch.einsum("bdtn,bnt->bdt", states, C), states[:, :, -1]


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
    chunk_size: int = 16,
    checkpoint: bool | None = None,
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
        chunk_size: steps solved in closed form at once; the state is carried between chunks.
        checkpoint: recompute each chunk in backward instead of storing its (k x k) weights;
            ``None`` = only for long sequences (> 1024 steps, e.g. paper-size volumes on GPU).

    Returns:
        y (batch, d, L) in the dtype of ``u``.
    """
    dtype = u.dtype
    with torch.autocast(device_type=u.device.type, enabled=False):  # the scan needs float32
        u_f, delta, B, C, A = u.float(), delta.float(), B.float(), C.float(), A.float()
        if delta_bias is not None:
            delta = delta + delta_bias.float()[None, :, None]
        if delta_softplus:
            delta = F.softplus(delta)
        batch, d, length = u_f.shape
        log_decay = torch.einsum("bdl,dn->bdln", delta, A)  # <= 0
        inputs = torch.einsum("bdl,bnl->bdln", delta * u_f, B)
        if checkpoint is None:
            checkpoint = torch.is_grad_enabled() and length > 1024
        h = u_f.new_zeros(batch, d, A.shape[1])
        outputs = []
        for start in range(0, length, chunk_size):
            stop = start + chunk_size
            args = (log_decay[:, :, start:stop], inputs[:, :, start:stop], C[:, :, start:stop], h)
            if checkpoint:
                y, h = torch.utils.checkpoint.checkpoint(_scan_chunk, *args, use_reentrant=False)
            else:
                y, h = _scan_chunk(*args)
            outputs.append(y)
        y = torch.cat(outputs, dim=2)
        if D is not None:
            y = y + u_f * D.float()[None, :, None]
        if z is not None:
            y = y * F.silu(z.float())
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
            x, delta, -torch.exp(self.A_log.float()), b_in.transpose(1, 2), c_out.transpose(1, 2),
            D=self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
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
