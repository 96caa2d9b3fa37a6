"""nnMamba encoder and the selective scan (checked against a naive per-step recurrence)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from oaprobe.models import nnmamba
from oaprobe.models.layers import ResidualBlock
from oaprobe.models.nnmamba import Mamba, NNMambaEncoder, selective_scan, selective_scan_torch


def naive_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Reference: the recurrence written out one step at a time, in float64."""
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.double()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, d, length = u.shape
    h = torch.zeros(batch, d, A.shape[1], dtype=torch.float64)
    ys = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A[None])  # (b, d, n)
        h = decay * h + delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.double()[None, :, None]
    if z is not None:
        y = y * F.silu(z.double())
    return y


def _inputs(seed=0, batch=2, d=5, n=4, length=37, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    t = {
        "u": torch.randn(batch, d, length, generator=g),
        "delta": torch.randn(batch, d, length, generator=g) * 0.5,
        "A": -torch.rand(d, n, generator=g) * 2 - 0.1,
        "B": torch.randn(batch, n, length, generator=g),
        "C": torch.randn(batch, n, length, generator=g),
        "D": torch.randn(d, generator=g),
        "z": torch.randn(batch, d, length, generator=g),
        "delta_bias": torch.randn(d, generator=g) * 0.1,
    }
    for v in t.values():
        v.requires_grad_(requires_grad)
    return t


def _double(t, requires_grad=False):
    return {k: v.double().detach().requires_grad_(requires_grad) for k, v in t.items()}


@pytest.mark.parametrize("chunk_size", [None, 1, 5, 16, 64])
def test_scan_matches_naive_recurrence(chunk_size):
    t = _inputs()
    got = selective_scan_torch(**t, delta_softplus=True, chunk_size=chunk_size)
    want = naive_scan(**t, delta_softplus=True)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("length, chunk_size", [(37, None), (37, 1), (37, 6), (64, 8), (1, None), (2, 1)])
def test_scan_float64_equals_naive_recurrence_to_rounding(length, chunk_size):
    t = _double(_inputs(seed=6, length=length))
    got = selective_scan_torch(**t, delta_softplus=True, chunk_size=chunk_size)
    assert got.dtype == torch.float64  # computed in float64, not rounded through float32
    torch.testing.assert_close(got, naive_scan(**t, delta_softplus=True), rtol=1e-12, atol=1e-12)


def test_scan_without_optional_terms_matches_naive():
    t = _inputs(seed=1)
    core = {k: t[k] for k in ("u", "delta", "A", "B", "C")}
    core["delta"] = core["delta"].abs()
    torch.testing.assert_close(selective_scan_torch(**core).double(), naive_scan(**core), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [None, 8])
def test_scan_gradients_match_naive(chunk_size):
    t1, t2 = _inputs(seed=2, requires_grad=True), _inputs(seed=2, requires_grad=True)
    w = torch.randn(2, 5, 37, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    (selective_scan_torch(**t1, delta_softplus=True, chunk_size=chunk_size).double() * w).sum().backward()
    (naive_scan(**t2, delta_softplus=True) * w).sum().backward()
    for k in t1:
        torch.testing.assert_close(t1[k].grad, t2[k].grad, rtol=1e-3, atol=1e-4, msg=f"gradient of {k}")


@pytest.mark.parametrize("chunk_size", [None, 1, 6])
def test_scan_float64_gradients_equal_naive_to_rounding(chunk_size):
    t1, t2 = _double(_inputs(seed=7), True), _double(_inputs(seed=7), True)
    w = torch.randn(2, 5, 37, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (selective_scan_torch(**t1, delta_softplus=True, chunk_size=chunk_size) * w).sum().backward()
    (naive_scan(**t2, delta_softplus=True) * w).sum().backward()
    for k in t1:
        torch.testing.assert_close(t1[k].grad, t2[k].grad, rtol=1e-10, atol=1e-12, msg=f"gradient of {k}")


def test_recurrence_backward_passes_gradcheck():
    g = torch.Generator().manual_seed(8)
    a = torch.rand(6, 2, 3, dtype=torch.float64, generator=g).requires_grad_()
    x = torch.randn(6, 2, 3, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(nnmamba._Recurrence.apply, (a, x))


def test_scan_returns_the_input_dtype_from_float32_work():
    t = _inputs(seed=9)
    low = {k: v.bfloat16() for k, v in t.items()}
    got = selective_scan_torch(**low, delta_softplus=True)
    assert got.dtype == torch.bfloat16
    want = selective_scan_torch(**{k: v.float() for k, v in low.items()}, delta_softplus=True)
    torch.testing.assert_close(got, want.bfloat16())


def test_dispatch_uses_torch_scan_on_cpu():
    t = _inputs(seed=4)
    torch.testing.assert_close(selective_scan(**t, delta_softplus=True), selective_scan_torch(**t, delta_softplus=True))


@pytest.mark.gpu
@pytest.mark.skipif(
    not (nnmamba.has_mamba_ssm() and torch.cuda.is_available()),
    reason="needs mamba_ssm importable and a CUDA device",
)
def test_mamba_ssm_kernel_agrees_with_torch_scan():
    t = {k: v.cuda() for k, v in _inputs(seed=5, d=16, n=8, length=64).items()}
    fast = selective_scan(**t, delta_softplus=True)
    torch.testing.assert_close(fast, selective_scan_torch(**t, delta_softplus=True), rtol=1e-3, atol=1e-3)


def test_mamba_layer_is_causal():
    torch.manual_seed(0)
    layer = Mamba(d_model=8, d_state=4)
    x = torch.randn(1, 12, 8)
    y = layer(x)
    x2 = x.clone()
    x2[:, 7:] += 1.0  # change only the future of step 6
    torch.testing.assert_close(layer(x2)[:, :7], y[:, :7])
    assert not torch.allclose(layer(x2)[:, 7:], y[:, 7:])


def reference_mamba(layer, tokens):
    """Reference: the Mamba mixer written out with :func:`naive_scan` for the selective scan."""
    length = tokens.shape[1]
    x, z = layer.in_proj(tokens).transpose(1, 2).chunk(2, dim=1)
    x = F.silu(layer.conv1d(x)[..., :length])
    dt, b_in, c_out = layer.x_proj(x.transpose(1, 2)).split([layer.dt_rank, layer.d_state, layer.d_state], dim=-1)
    y = naive_scan(
        x, (dt @ layer.dt_proj.weight.T).transpose(1, 2), -torch.exp(layer.A_log), b_in.transpose(1, 2),
        c_out.transpose(1, 2), D=layer.D, z=z, delta_bias=layer.dt_proj.bias, delta_softplus=True,
    )
    return layer.out_proj(y.transpose(1, 2))


def test_mamba_layer_equals_reference_in_float64():
    torch.manual_seed(0)
    layer = Mamba(d_model=8, d_state=4).double()
    tokens = torch.randn(2, 13, 8, dtype=torch.float64, requires_grad=True)
    got, want = layer(tokens), reference_mamba(layer, tokens)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    w = torch.randn(got.shape, dtype=torch.float64)
    params = [tokens, *layer.parameters()]
    for g1, g2 in zip(torch.autograd.grad((got * w).sum(), params), torch.autograd.grad((want * w).sum(), params)):
        torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("width, dim", [(0.25, 16), (0.5, 16), (1.0, 32), (2.0, 64)])
def test_embedding_width_at_least_16(width, dim):
    assert NNMambaEncoder((16, 16, 16), width=width).out_dim == dim


def test_forward_shape_and_token_count():
    net = NNMambaEncoder((16, 24, 32), width=0.25)
    seen = {}

    def keep_tokens(module, inputs, output):
        seen["shape"] = inputs[0].shape

    net.mamba.register_forward_hook(keep_tokens)
    assert net(torch.randn(2, 1, 16, 24, 32)).shape == (2, 16)
    assert seen["shape"] == (2, 2 * 3 * 4, 32)  # 1/8-resolution map flattened; 4 * (32 * 0.25) channels


def test_gradient_reaches_stem_and_mamba():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a fixed net, independent of the suite's RNG state
        net = NNMambaEncoder((16, 16, 16), width=0.25)
        net(torch.randn(2, 1, 16, 16, 16)).sum().backward()
    assert net.stem[0].weight.grad.abs().sum() > 0
    assert net.mamba.A_log.grad.abs().sum() > 0 and net.mamba.dt_proj.bias.grad.abs().sum() > 0


def test_stages_use_the_shared_residual_block():
    net = NNMambaEncoder((16, 16, 16), width=0.25)
    blocks = [b for stage in net.stages for b in stage]
    assert len(blocks) == 6 and all(isinstance(b, ResidualBlock) for b in blocks)
    assert [b.conv1.stride[0] for b in blocks] == [2, 1, 2, 1, 2, 1]


def test_loads_checkpoints_written_with_the_old_shortcut_name():
    net = NNMambaEncoder((16, 16, 16), width=0.25).eval()
    legacy = {k.replace(".downsample.", ".shortcut."): v + 1 for k, v in net.state_dict().items()}
    assert any(".shortcut." in k for k in legacy)
    fresh = NNMambaEncoder((16, 16, 16), width=0.25)
    fresh.load_state_dict(legacy)  # strict: every old key must find its module
    key = "stages.0.0.downsample.0.weight"
    torch.testing.assert_close(fresh.state_dict()[key], net.state_dict()[key] + 1)
