"""Tests of oaprobe.training.loop's epoch: gradient clipping (the schedule has its doctest)."""

from __future__ import annotations

import pytest
import torch

from oaprobe.models.probe import build_probe
from oaprobe.training.batches import Volumes
from oaprobe.training.loop import make_optimizer, train_epoch


def _gradient_norms_seen_by_the_optimiser(cfg) -> list[float]:
    """Train one epoch of ``cfg`` on 16 random knees; the global gradient norm at every optimiser step."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(16, 1, *cfg.input_shape, generator=g)
    kl = torch.randint(0, 5, (16,), generator=g)
    model = build_probe(cfg)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, torch.device("cpu"))
    norms, step = [], optimizer.step

    def recording_step(*args, **kwargs):
        grads = [p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]
        norms.append(float(torch.cat(grads).norm()))
        return step(*args, **kwargs)

    optimizer.step = recording_step
    train_epoch(model, optimizer, Volumes(images, torch.device("cpu"), channels_last=False), kl, (kl >= 2).long(),
                cfg, torch.Generator().manual_seed(1), {}, progress=False)
    return norms


@pytest.mark.parametrize("mode", ["single_oa", "dual"])
def test_grad_clip_caps_the_gradient_norm_of_every_step(smoke_config, mode):
    free = _gradient_norms_seen_by_the_optimiser(smoke_config(mode=mode, grad_clip=0.0))
    cap = min(free) / 2  # half the smallest unclipped norm: every step of this short epoch is clipped (asserted next)
    clipped = _gradient_norms_seen_by_the_optimiser(smoke_config(mode=mode, grad_clip=cap))
    assert len(clipped) == len(free) == 16 // smoke_config().batch_size
    assert clipped == pytest.approx([cap] * len(free), rel=1e-4)
    # a cap above every norm changes nothing: the same norms, step by step
    assert _gradient_norms_seen_by_the_optimiser(smoke_config(mode=mode, grad_clip=max(free) * 10)) == free


def _batches_seen(cfg) -> list[list[int]]:
    """The knee indices of every training batch of one epoch of ``cfg`` on 16 random knees (generator seed 1)."""
    g = torch.Generator().manual_seed(0)
    images = torch.arange(16, dtype=torch.float32).view(16, 1, 1, 1, 1).expand(16, 1, *cfg.input_shape).contiguous()
    kl = torch.randint(0, 5, (16,), generator=g)
    model = build_probe(cfg)
    seen: list[list[int]] = []
    forward = model.forward

    def recording_forward(x):
        seen.append([int(v) for v in x[:, 0, 0, 0, 0]])  # each knee's volume holds its own index
        return forward(x)

    model.forward = recording_forward
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, torch.device("cpu"))
    train_epoch(model, optimizer, Volumes(images, torch.device("cpu"), channels_last=False), kl, (kl >= 2).long(),
                cfg, torch.Generator().manual_seed(1), {}, progress=False)
    return seen


def test_paired_runs_see_the_same_batches_and_start_from_the_same_encoder(smoke_config):
    from oaprobe.models.probe import encoder_fingerprint

    orders = {mode: _batches_seen(smoke_config(mode=mode)) for mode in ("single_oa", "single_kl", "dual")}
    assert orders["single_oa"] == orders["single_kl"] == orders["dual"]
    assert sorted(sum(orders["dual"], [])) == list(range(16))  # a permutation: every knee once
    prints = {encoder_fingerprint(smoke_config(mode=mode)) for mode in ("single_oa", "single_kl", "dual")}
    assert len(prints) == 1 and encoder_fingerprint(smoke_config(mode="dual", seed=1)) not in prints
