"""M3T: slice tokens sized from the input shape, head adaptation, shapes and gradients."""

from __future__ import annotations

import pytest
import torch

from oaprobe.models.m3t import M3T, ResNet2D18, _heads_for, dropout, encoder_layer


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


def _reference_forward(net: M3T, x: torch.Tensor, batched: bool = False) -> torch.Tensor:
    """The pre-speed-up forward (issue 32): planes through the slice encoder one at a time, torch's
    transformer; ``batched``: the three planes' slices as one batch (the new training grouping)."""
    feat = net.stem(x)
    b, c = feat.shape[:2]
    moved = [feat.movedim(axis + 2, 1) for axis in (2, 0, 1)]
    slices = [m.reshape(b * m.shape[1], c, *m.shape[3:]) for m in moved]
    if batched:
        vectors = net.project(net.slice_encoder(torch.cat(slices))).split([len(s) for s in slices])
    else:
        vectors = [net.project(net.slice_encoder(s)) for s in slices]
    parts = [net.cls_token.expand(b, 1, -1)]
    for v, m in zip(vectors, moved):
        parts += [v.reshape(b, m.shape[1], -1), net.sep_token.expand(b, 1, -1)]
    tokens = torch.cat(parts, dim=1) + net.pos_embed + net.plane_embed(net.plane_ids)
    return net.norm(net.transformer(tokens)[:, 0])


def _outputs_and_grads(net, forward, x, w):
    net.zero_grad()
    out = forward(x)
    (out * w).sum().backward()
    return out.detach(), [p.grad.clone() for p in net.parameters()]


def _assert_same(got, want):
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    for new, old in zip(got[1], want[1]):
        torch.testing.assert_close(new, old, rtol=1e-4, atol=1e-5)


def test_training_forward_and_gradient_equal_the_reference_computed_with_batched_planes():
    # training mode, no dropout: the written-out transformer and batched planes against torch's layers
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = M3T((8, 8, 8), width=0.25, dropout=0.0).train().double()  # float64: train-mode batch norm's
    x = torch.randn(3, 1, 8, 8, 8, generator=g, dtype=torch.float64)  # gradients amplify float32 rounding
    w = torch.randn(3, net.out_dim, generator=g, dtype=torch.float64)
    got = _outputs_and_grads(net, net, x, w)
    _assert_same(got, _outputs_and_grads(net, lambda v: _reference_forward(net, v, batched=True), x, w))


@pytest.mark.parametrize("shape", [(8, 8, 8), (8, 12, 16)])
def test_eval_forward_and_gradient_equal_the_reference(shape):
    # in eval mode batch norm uses running statistics, so batching the planes must change nothing
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = M3T(shape, width=0.25)
    for m in net.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    net.eval()
    x, w = torch.randn(3, 1, *shape, generator=g), torch.randn(3, net.out_dim, generator=g)
    _assert_same(_outputs_and_grads(net, net, x, w), _outputs_and_grads(net, lambda v: _reference_forward(net, v), x, w))


def test_training_batches_the_planes_through_one_batch_norm_call():
    # a cubic input: one slice-encoder call over 3 * B * side slices (the reference M3T's grouping)
    net = M3T((8, 8, 8), width=0.25).train()
    calls = []
    net.slice_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    net(torch.randn(2, 1, 8, 8, 8))
    assert calls == [3 * 2 * 8]
    calls.clear()
    net.eval()(torch.randn(2, 1, 8, 8, 8))  # eval: one plane at a time (faster there; the same outputs)
    assert calls == [2 * 8] * 3
    calls.clear()
    odd = M3T((8, 12, 16), width=0.25).train()  # planes of different slice shapes: one call each
    odd.slice_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    odd(torch.randn(2, 1, 8, 12, 16))
    assert calls == [2 * 16, 2 * 8, 2 * 12]


def test_slice_stem_pools_before_its_relu_with_the_same_outputs_and_gradients():
    # max-pool then ReLU equals ReLU then max-pool bit for bit, forward and backward
    torch.manual_seed(0)
    stem = ResNet2D18(4, width=0.25).train().stem
    conv, norm, pool, relu = stem
    x = torch.randn(6, 4, 12, 12, requires_grad=True)
    upstream = torch.randn(stem(x).shape)
    results = []
    for order in ((conv, norm, pool, relu), (conv, norm, relu, pool)):
        out = torch.nn.Sequential(*order)(x)
        results.append([out, *torch.autograd.grad((out * upstream).sum(), (x, conv.weight, norm.weight))])
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_encoder_layer_equals_torch_transformer_layer_without_dropout():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = M3T((8, 8, 8), width=0.25, dropout=0.0).train()
        tokens = torch.randn(2, 28, net.out_dim, requires_grad=True)
    layer = net.transformer.layers[0]
    got = encoder_layer(layer, tokens, training=True)
    want = layer(tokens)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(1))
    g_got = torch.autograd.grad((got * w).sum(), [tokens, *layer.parameters()])
    g_want = torch.autograd.grad((want * w).sum(), [tokens, *layer.parameters()])
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_dropout_keeps_with_probability_one_minus_p_and_rescales():
    x = torch.ones(200_000)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        out = dropout(x, 0.25, training=True)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.75))
    assert dropout(x, 0.25, training=False) is x


def test_same_seed_same_training_forward():
    outs = []
    for _ in range(2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            net = M3T((8, 8, 8), width=0.25).train()
            outs.append(net(torch.randn(2, 1, 8, 8, 8)))
    assert torch.equal(outs[0], outs[1])
