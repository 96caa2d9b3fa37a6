"""Known-answer tests for oaprobe.analysis.attribution (tiny volumes, tiny nets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from oaprobe.analysis.attribution import (
    ProbeAttributor,
    gradcam,
    knee_seed,
    probe_gradcam_layer,
    smoothgrad_x_input,
    target_logit,
    targets_for_mode,
)
from tests.analysis.saliency_models import LinearProbe, S, TinyProbe


# --------------------------------------------------------------------------- SmoothGrad
def test_linear_model_noise_free_is_normalised_abs_w_x():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(1, 1, S, S, S, generator=gen)
    x = torch.randn(2, 1, S, S, S, generator=gen)
    sal = smoothgrad_x_input(lambda t: (w * t).sum(dim=(1, 2, 3, 4)), x, n_samples=4, noise_std=0.0)
    expected = (w * x).abs()[:, 0].numpy()
    lo = expected.reshape(2, -1).min(1)[:, None, None, None]
    hi = expected.reshape(2, -1).max(1)[:, None, None, None]
    np.testing.assert_allclose(sal, (expected - lo) / (hi - lo), atol=1e-6)


def test_linear_model_with_noise_uses_noisy_input():
    # grad = w everywhere, so the mean of w * x_noisy = w * (x + mean noise): same seed, same map
    w = torch.ones(1, 1, S, S, S)
    x = torch.zeros(1, 1, S, S, S)
    fn = lambda t: (w * t).sum(dim=(1, 2, 3, 4))  # noqa: E731
    a = smoothgrad_x_input(fn, x, n_samples=3, noise_std=0.05, seed=7)
    b = smoothgrad_x_input(fn, x, n_samples=3, noise_std=0.05, seed=7)
    c = smoothgrad_x_input(fn, x, n_samples=3, noise_std=0.05, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() == 0.0 and a.max() == 1.0  # non-zero although x == 0: x_noisy is used


def test_smoothgrad_checks_score_shape():
    with pytest.raises(ValueError, match="scores of shape"):
        smoothgrad_x_input(lambda t: t.sum(dim=(2, 3, 4)), torch.ones(1, 1, S, S, S), noise_std=0.0)


def test_knee_seed_depends_on_seed_and_case_only():
    assert knee_seed(0, "k1") == knee_seed(0, "k1")
    assert len({knee_seed(0, "k1"), knee_seed(1, "k1"), knee_seed(0, "k2")}) == 3
    assert 0 <= knee_seed(10**9, "k") < 2**31 - 1


# --------------------------------------------------------------------------- targets
def test_targets_for_mode():
    assert targets_for_mode("single_oa") == ("oa",)
    assert targets_for_mode("dual") == targets_for_mode("single_kl") == ("kl", "oa")
    with pytest.raises(ValueError, match="mode = 'both'"):
        targets_for_mode("both")


def test_oa_targets_are_log_odds():
    kl = torch.tensor([[0.1, 0.2, 0.3, -1.0, 2.0]])
    single_kl = target_logit({"oa": None, "kl": kl}, "oa")
    p = torch.softmax(kl, 1)[0]
    assert single_kl.item() == pytest.approx(torch.log(p[2:].sum() / p[:2].sum()).item(), rel=1e-5)
    dual = target_logit({"oa": torch.tensor([[0.5, 2.0]]), "kl": kl}, "oa")
    assert dual.item() == pytest.approx(1.5)
    assert target_logit({"oa": torch.tensor([[0.7]]), "kl": None}, "oa").item() == pytest.approx(0.7)
    assert target_logit({"oa": None, "kl": kl}, "kl").item() == pytest.approx(2.0)  # argmax logit
    with pytest.raises(ValueError, match="no KL head"):
        target_logit({"oa": torch.tensor([[0.7]]), "kl": None}, "kl")


# --------------------------------------------------------------------------- Grad-CAM
def test_gradcam_shape_range_and_no_hooks_left():
    net = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv3d(3, 4, 3, stride=2, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2))
    x = torch.randn(2, 1, S, S, S, generator=torch.Generator().manual_seed(0))
    cam = gradcam(net, x, target=1, layer="2")
    assert cam.shape == (2, S, S, S)
    assert cam.min() >= 0.0 and cam.max() <= 1.0
    assert not net[2]._forward_hooks and not net[2]._backward_hooks


def test_gradcam_peaks_on_the_bright_region():
    # conv with a positive kernel, ReLU, mean pool, weight 1: the CAM follows the activation,
    # so it must be high where the input is bright (catches a flipped normaliser)
    conv = nn.Conv3d(1, 1, 3, padding=1, bias=False)
    nn.init.constant_(conv.weight, 1.0 / 27)
    head = nn.Linear(1, 1, bias=False)
    nn.init.constant_(head.weight, 1.0)
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), head)
    x = torch.zeros(1, 1, 12, 12, 12)
    x[:, :, :4, :4, :4] = 1.0
    cam = gradcam(net, x, target=0, layer="0")[0]
    assert cam[:3, :3, :3].mean() > 0.5 > cam[8:, 8:, 8:].mean()


def test_gradcam_bad_layer_is_named():
    with pytest.raises(ValueError, match="'nope'"):
        gradcam(TinyProbe("dual"), torch.zeros(1, 1, S, S, S), "oa", "nope")


def test_probe_gradcam_layer_paths():
    probe = TinyProbe("dual")
    assert probe_gradcam_layer(probe) == "encoder.features.2"
    assert probe_gradcam_layer(probe, "features.0") == "encoder.features.0"
    assert probe_gradcam_layer(probe, "encoder.features.0") == "encoder.features.0"
    with pytest.raises(ValueError, match="gradcam_layer"):
        probe_gradcam_layer(nn.Linear(2, 2))


# --------------------------------------------------------------------------- one probe
def test_attributor_smoothgrad_of_a_planted_probe_is_abs_w_x():
    gen = torch.Generator().manual_seed(2)
    w, x = torch.randn(S, S, S, generator=gen), torch.randn(1, 1, S, S, S, generator=gen)
    attributor = ProbeAttributor(LinearProbe(w).eval(), ("oa",), ("smoothgrad",), n_samples=1, noise_std=0.0)
    sal = attributor(x, "oa", "smoothgrad", None, seed=0)
    expected = (w * x[0, 0]).abs().numpy()
    np.testing.assert_allclose(sal, (expected - expected.min()) / np.ptp(expected), atol=1e-6)
    with pytest.raises(ValueError, match="method = 'gradcam'"):
        attributor(x, "oa", "gradcam", None, seed=0)


def test_attributor_fixes_the_kl_class():
    probe = TinyProbe("dual").eval()
    x = torch.randn(1, 1, S, S, S, generator=torch.Generator().manual_seed(0))
    attributor = ProbeAttributor(probe, ("kl",), ("smoothgrad", "gradcam"), n_samples=2)
    maps = {c: attributor(x, "kl", "smoothgrad", torch.tensor([c]), seed=0) for c in (0, 3)}
    assert not np.array_equal(maps[0], maps[3])  # a different class is a different score
    cam = attributor(x, "kl", "gradcam", torch.tensor([0]), seed=0)
    assert cam.shape == (S, S, S) and 0.0 <= cam.min() <= cam.max() <= 1.0
    with pytest.raises(ValueError, match="methods"):
        ProbeAttributor(probe, ("kl",), ("lime",))


# --------------------------------------------------------------------------- ordinal (CORN) probes
def _ordinal_probe() -> nn.Module:
    from oaprobe.models.probe import HierarchicalProbe
    from tests.analysis.saliency_models import TinyEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return HierarchicalProbe(TinyEncoder(), "ordinal").eval()


def test_ordinal_targets_are_log_odds_of_its_kl_law():
    """sigmoids 0.9, 0.6, 0.5, 0.25 -> P(KL > k) = 0.9, 0.54, 0.27, 0.0675 -> p_kl 0.1, 0.36, 0.27, 0.2025, 0.0675."""
    assert targets_for_mode("ordinal") == ("kl", "oa")
    s = torch.tensor([[0.9, 0.6, 0.5, 0.25]], dtype=torch.float64)
    out = {"oa": None, "kl": torch.log(s / (1 - s)), "embedding": None}
    assert target_logit(out, "oa").item() == pytest.approx(np.log(0.54 / 0.46), rel=1e-9)
    assert target_logit(out, "kl").item() == pytest.approx(np.log(0.36 / 0.64), rel=1e-9)  # argmax grade 1
    assert target_logit(out, "kl", torch.tensor([3])).item() == pytest.approx(np.log(0.2025 / 0.7975), rel=1e-9)
    with pytest.raises(ValueError, match="target = 'x'"):
        target_logit(out, "x")


def test_ordinal_predicted_kl_is_the_argmax_of_p_kl():
    """Row 0: p_kl = 0.1, 0.36, 0.27, ... -> grade 1, where CORN's count of P(KL > k) > 0.5 says 2."""
    from oaprobe.analysis.attribution import predicted_kl

    s = torch.tensor([[0.9, 0.6, 0.5, 0.25], [0.1, 0.5, 0.5, 0.5], [0.99, 0.99, 0.99, 0.99]])
    chain = torch.log(s / (1 - s))
    got = predicted_kl(lambda x: {"oa": None, "kl": chain, "embedding": None}, torch.zeros(3, 1, S, S, S))
    assert got.tolist() == [1, 0, 4]


def test_ordinal_probe_maps_for_both_targets_and_methods():
    probe = _ordinal_probe()
    x = torch.randn(1, 1, S, S, S, generator=torch.Generator().manual_seed(4))
    attributor = ProbeAttributor(probe, targets_for_mode("ordinal"), ("smoothgrad", "gradcam"), n_samples=2)
    maps = {(t, m): attributor(x, t, m, None, seed=0) for t in ("kl", "oa") for m in ("smoothgrad", "gradcam")}
    for sal in maps.values():
        assert sal.shape == (S, S, S) and np.isfinite(sal).all() and 0.0 <= sal.min() <= sal.max() <= 1.0
    assert not np.array_equal(maps["kl", "smoothgrad"], maps["oa", "smoothgrad"])


# --------------------------------------------------------------------------- gradient, IG, occlusion
def _linear(seed: int = 3):
    """A positive linear score ``sum(w * x)`` and a positive input: every contribution ``w * x > 0``."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.rand(1, 1, S, S, S, generator=gen) + 0.1
    x = torch.rand(1, 1, S, S, S, generator=gen) + 0.1
    return w, x, (lambda t: (w * t).sum(dim=(1, 2, 3, 4)))


def _scaled(a: np.ndarray) -> np.ndarray:
    return (a - a.min()) / (a.max() - a.min())


def test_smoothgrad_without_the_input_product_is_the_weights():
    w, x, fn = _linear()
    sal = smoothgrad_x_input(fn, x, n_samples=2, noise_std=0.0, times_input=False)[0]
    np.testing.assert_allclose(sal, _scaled(w[0, 0].numpy()), atol=1e-6)


def test_integrated_gradients_of_a_linear_score_is_w_times_x_oriented_to_the_score():
    from oaprobe.analysis.attribution import integrated_gradients

    w, x, fn = _linear()
    np.testing.assert_allclose(integrated_gradients(fn, x, steps=4)[0], _scaled((w * x)[0, 0].numpy()), atol=1e-5)
    # a negative score (f(x) < f(0)): the contributions that lower it are the ones kept
    neg = integrated_gradients(lambda t: -fn(t), x, steps=4)[0]
    np.testing.assert_allclose(neg, _scaled((w * x)[0, 0].numpy()), atol=1e-5)
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(fn, x, steps=0)


def test_occlusion_paints_each_cube_with_its_contribution():
    from oaprobe.analysis.attribution import occlusion

    w, x, fn = _linear()
    sal = occlusion(fn, x, patch=4, batch_size=3)[0]  # 8 cubes of 4^3, in batches of 3
    contrib = (w * x)[0, 0].numpy()
    cubes = contrib.reshape(2, 4, 2, 4, 2, 4).sum(axis=(1, 3, 5))  # a cube's drop = its summed contribution
    expected = _scaled(np.kron(cubes, np.ones((4, 4, 4))))
    np.testing.assert_allclose(sal, expected, atol=1e-5)
    uneven = occlusion(fn, x, patch=3)[0]  # 3 + 3 + 2 voxels an axis: the last cubes are smaller
    assert uneven.shape == (S, S, S) and uneven.max() == 1.0


@pytest.mark.parametrize("method", ["gradient", "ig", "occlusion"])
def test_probe_attributor_runs_the_new_methods_on_both_targets(method):
    probe = TinyProbe("dual").eval()
    x = torch.randn(1, 1, S, S, S, generator=torch.Generator().manual_seed(0))
    attributor = ProbeAttributor(probe, ("oa", "kl"), (method,), n_samples=2, noise_std=0.05)
    for target in ("oa", "kl"):
        sal = attributor(x, target, method, probe(x)["kl"].argmax(dim=1), seed=0)
        assert sal.shape == (S, S, S) and 0.0 <= sal.min() and sal.max() <= 1.0
