"""HierarchicalProbe: heads per mode/variant, losses against independent formulas, probabilities."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from oaprobe.config import RunConfig
from oaprobe.errors import ConfigError
from oaprobe.models import HierarchicalProbe, build_backbone
from oaprobe.models.probe import LinearHead, build_probe

MODES = [("single_oa", "parallel"), ("single_kl", "parallel"), ("dual", "parallel"), ("dual", "stacked")]


class TinyEncoder(nn.Module):
    """Stand-in encoder: flatten + linear, so probe tests stay fast."""

    def __init__(self, side: int = 4, out_dim: int = 6) -> None:
        super().__init__()
        self.lin = nn.Linear(side**3, out_dim)
        self.out_dim = out_dim
        self.gradcam_layer = "lin"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


def _probe(mode: str, variant: str = "parallel", seed: int = 0) -> HierarchicalProbe:
    torch.manual_seed(seed)
    return HierarchicalProbe(TinyEncoder(), mode, variant)


X = torch.randn(4, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
KL = torch.tensor([0, 2, 4, 1])
OA = (KL >= 2).long()


@pytest.mark.parametrize("mode, variant", MODES)
def test_output_keys_and_shapes(mode, variant):
    out = _probe(mode, variant)(X)
    assert set(out) == {"oa", "kl", "embedding"}
    assert out["embedding"].shape == (4, 6)
    expected_oa = {"single_oa": (4, 1), "single_kl": None, "dual": (4, 2)}[mode]
    expected_kl = None if mode == "single_oa" else (4, 5)
    assert (None if out["oa"] is None else tuple(out["oa"].shape)) == expected_oa
    assert (None if out["kl"] is None else tuple(out["kl"].shape)) == expected_kl


def test_single_oa_loss_is_bce():
    probe = _probe("single_oa")
    out = probe(X)
    loss, parts = probe.loss(out, None, OA)
    p = torch.sigmoid(out["oa"][:, 0]).double()
    y = OA.double()
    want = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    assert math.isclose(loss.item(), want.item(), rel_tol=1e-5) and set(parts) == {"oa"}


def test_single_oa_class_weights_are_a_weighted_mean():
    probe = _probe("single_oa")
    out = probe(X)
    w = torch.tensor([1.0, 3.0])
    loss, _ = probe.loss(out, None, OA, oa_weight_classes=w)
    per = F.binary_cross_entropy_with_logits(out["oa"][:, 0], OA.float(), reduction="none")
    want = (per * w[OA]).sum() / w[OA].sum()
    assert math.isclose(loss.item(), want.item(), rel_tol=1e-6)


def test_single_kl_loss_is_ce_with_class_weights():
    probe = _probe("single_kl")
    out = probe(X)
    w = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    loss, parts = probe.loss(out, KL, None, kl_weight=w)
    logp = torch.log_softmax(out["kl"].double(), 1)[torch.arange(4), KL]
    want = -(w.double()[KL] * logp).sum() / w.double()[KL].sum()
    assert math.isclose(loss.item(), want.item(), rel_tol=1e-5) and set(parts) == {"kl"}


@pytest.mark.parametrize("variant", ["parallel", "stacked"])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 2.0])
def test_dual_loss_is_kl_plus_lambda_oa(variant, lam):
    probe = _probe("dual", variant)
    out = probe(X)
    loss, parts = probe.loss(out, KL, OA, oa_weight=lam)
    ce_kl = F.cross_entropy(out["kl"], KL)
    ce_oa = F.cross_entropy(out["oa"], OA)
    assert torch.equal(loss, ce_kl + lam * ce_oa)
    assert parts == {"kl": ce_kl.item(), "oa": ce_oa.item()}


def test_missing_or_bad_labels_are_clear_errors():
    probe = _probe("dual")
    out = probe(X)
    with pytest.raises(ValueError, match="'oa' labels"):
        probe.loss(out, KL, None)
    with pytest.raises(ValueError, match="0..4"):
        probe.loss(out, torch.tensor([0, 1, 5, 2]), OA)


def test_oa_probability_from_kl_known_answer():
    probe = _probe("single_kl")
    p_kl = torch.tensor([[0.1, 0.2, 0.3, 0.25, 0.15], [0.5, 0.4, 0.05, 0.03, 0.02]])
    p_oa, got_kl = probe.predict_proba({"oa": None, "kl": torch.log(p_kl) + 7.0, "embedding": None})
    torch.testing.assert_close(p_oa, torch.tensor([0.7, 0.1]))
    torch.testing.assert_close(got_kl, p_kl)


def test_predict_proba_single_oa_and_dual():
    p_oa, p_kl = _probe("single_oa").predict_proba({"oa": torch.tensor([[0.0], [math.log(3)]]), "kl": None})
    torch.testing.assert_close(p_oa, torch.tensor([0.5, 0.75]))
    assert p_kl is None
    dual = _probe("dual")
    p_oa, p_kl = dual.predict_proba({"oa": torch.tensor([[0.0, math.log(3)]]), "kl": torch.zeros(1, 5)})
    torch.testing.assert_close(p_oa, torch.tensor([0.75]))
    torch.testing.assert_close(p_kl, torch.full((1, 5), 0.2))


def test_stacked_oa_head_reads_kl_logits():
    probe = _probe("dual", "stacked")
    assert probe.oa_head.in_features == 5
    out = probe(X)
    torch.testing.assert_close(out["oa"], probe.oa_head.fc(out["kl"]))
    F.cross_entropy(out["oa"], OA).backward()  # the OA term alone trains the KL head
    assert probe.kl_head.fc.weight.grad.abs().sum() > 0


def test_parallel_heads_both_read_embedding():
    probe = _probe("dual", "parallel")
    assert probe.oa_head.in_features == probe.kl_head.in_features == 6


def test_linear_head_timm_interface():
    head = LinearHead(6, 5)
    x = torch.randn(2, 6)
    assert torch.equal(head(x, pre_logits=True), x)
    head.reset(3)
    assert head(x).shape == (2, 3)
    head.reset(0)
    assert torch.equal(head(x), x)


@pytest.mark.parametrize(
    "field, kwargs", [("mode", {"mode": "triple"}), ("dual_variant", {"mode": "dual", "dual_variant": "x"})]
)
def test_unknown_mode_or_variant_names_field(field, kwargs):
    with pytest.raises(ConfigError, match=f"HierarchicalProbe.{field} = .*expected one of"):
        HierarchicalProbe(TinyEncoder(), **kwargs)


def test_gradcam_layer_is_prefixed():
    assert _probe("dual").gradcam_layer == "encoder.lin"


def _cfg(**kw) -> RunConfig:
    base = {"manifest": "m.csv", "backbone": "resnet3d", "width": 0.25, "input_shape": [16, 16, 16]}
    return RunConfig.from_dict({**base, **kw})


def test_build_probe_from_config_is_seeded_and_leaves_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_probe(_cfg(mode="dual", dual_variant="stacked", seed=1))
    b = build_probe(_cfg(mode="dual", dual_variant="stacked", seed=1))
    assert torch.equal(torch.get_rng_state(), before)
    c = build_probe(_cfg(mode="dual", dual_variant="stacked", seed=2))
    x = torch.randn(2, 1, 16, 16, 16)
    a.eval(), b.eval(), c.eval()
    with torch.no_grad():
        assert torch.equal(a(x)["oa"], b(x)["oa"])
        assert not torch.equal(a(x)["oa"], c(x)["oa"])
    assert a.mode == "dual" and a.dual_variant == "stacked" and a.out_dim == 128


def test_build_probe_unknown_backbone_is_config_error():
    with pytest.raises(ConfigError, match="unknown backbone"):
        build_probe(_cfg(backbone="vgg"))


def test_probe_on_real_backbone_trains_one_step():
    probe = HierarchicalProbe(build_backbone("nnmamba", (16, 16, 16), 0.25), "dual")
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-3)
    x = torch.randn(4, 1, 16, 16, 16)
    loss, _ = probe.loss(probe(x), KL, OA)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


# ----------------------------------------------------------------------------- ordinal (CORN) and label smoothing
def _bce(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy written out from the sigmoid, in float64 (independent of torch's BCE)."""
    p = 1 / (1 + torch.exp(-z.double()))
    return -(t * torch.log(p) + (1 - t) * torch.log(1 - p))


def test_ordinal_head_is_a_four_logit_chain_and_no_oa_head():
    probe = _probe("ordinal")
    out = probe(X)
    assert out["oa"] is None and probe.oa_head is None
    assert out["kl"].shape == (4, 4) and out["embedding"].shape == (4, 6)


def test_ordinal_probabilities_known_answer():
    """sigmoids 0.8, 0.5, 0.5, 0.25 -> P(KL > k) = 0.8, 0.4, 0.2, 0.05 -> p_kl 0.2, 0.4, 0.2, 0.15, 0.05."""
    s = torch.tensor([[0.8, 0.5, 0.5, 0.25]])
    p_oa, p_kl = _probe("ordinal").predict_proba({"oa": None, "kl": torch.log(s / (1 - s)), "embedding": None})
    torch.testing.assert_close(p_kl, torch.tensor([[0.2, 0.4, 0.2, 0.15, 0.05]]))
    torch.testing.assert_close(p_oa, torch.tensor([0.4]))


def test_ordinal_probabilities_sum_to_one_and_oa_is_kl_at_least_two():
    chain = 4 * torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    p_oa, p_kl = _probe("ordinal").predict_proba({"oa": None, "kl": chain, "embedding": None})
    assert p_kl.shape == (64, 5) and (p_kl >= 0).all()
    torch.testing.assert_close(p_kl.sum(1), torch.ones(64))
    torch.testing.assert_close(p_oa, p_kl[:, 2:].sum(1))


def test_ordinal_exceedance_is_rank_consistent():
    from oaprobe.models.probe import corn_exceedance

    chain = 6 * torch.randn(256, 4, generator=torch.Generator().manual_seed(2))
    above = corn_exceedance(chain)
    assert (above[:, 1:] <= above[:, :-1]).all() and (above >= 0).all() and (above <= 1).all()


def test_corn_log_proba_is_log_of_proba_and_finite_at_extremes():
    from oaprobe.models.probe import corn_log_proba, corn_proba

    chain = 3 * torch.randn(16, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(corn_log_proba(chain), torch.log(corn_proba(chain)))
    extreme = torch.tensor([[60.0, 60.0, 60.0, 60.0], [-60.0, 0.0, 0.0, 0.0]])
    log_p = corn_log_proba(extreme)
    assert torch.isfinite(log_p).all()
    torch.testing.assert_close(log_p[[0, 1], [4, 0]], torch.zeros(2), atol=1e-6, rtol=0)  # sure of KL4, of KL0
    assert log_p[1, 1:].max() < -55  # where corn_proba's probabilities are ~1e-26


def test_corn_loss_known_answer():
    """Knee KL0 sees task 0 (target 0); knee KL2 sees tasks 0, 1 (target 1) and 2 (target 0); 4 pairs."""
    from oaprobe.models.probe import corn_loss

    l3 = math.log(3)
    chain = torch.tensor([[l3, 9.0, 9.0, 9.0], [l3, 0.0, l3, 9.0]])
    kl = torch.tensor([0, 2])
    # softplus(log 3) = log 4, softplus(-log 3) = log 4/3, softplus(0) = log 2
    want = (math.log(4) + math.log(4 / 3) + math.log(2) + math.log(4)) / 4
    assert math.isclose(corn_loss(chain, kl).item(), want, rel_tol=1e-6)
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])  # knee KL0 weighs 1 per pair, knee KL2 weighs 3
    want_w = (math.log(4) + 3 * (math.log(4 / 3) + math.log(2) + math.log(4))) / (1 + 3 * 3)
    assert math.isclose(corn_loss(chain, kl, weight=w).item(), want_w, rel_tol=1e-6)


def test_corn_loss_label_smoothing_moves_targets_toward_half():
    from oaprobe.models.probe import corn_loss

    s = 0.2
    chain = torch.randn(5, 4, generator=torch.Generator().manual_seed(4))
    kl = torch.tensor([0, 1, 2, 3, 4])
    tasks = torch.arange(4)
    seen = kl.view(-1, 1) >= tasks
    target = (kl.view(-1, 1) > tasks).double() * (1 - s) + s / 2
    want = _bce(chain, target)[seen].mean()
    assert math.isclose(corn_loss(chain, kl, label_smoothing=s).item(), want.item(), rel_tol=1e-5)
    assert not math.isclose(corn_loss(chain, kl).item(), want.item(), rel_tol=1e-3)


def test_corn_loss_matches_coral_pytorch():
    coral = pytest.importorskip("coral_pytorch.losses")
    from oaprobe.models.probe import corn_loss

    gen = torch.Generator().manual_seed(5)
    chain = 3 * torch.randn(32, 4, generator=gen)
    kl = torch.randint(0, 5, (32,), generator=gen)
    torch.testing.assert_close(corn_loss(chain, kl), coral.corn_loss(chain, kl, num_classes=5))


def test_ordinal_loss_is_corn_on_the_kl_label_alone():
    from oaprobe.models.probe import corn_loss

    probe = _probe("ordinal")
    out = probe(X)
    loss, parts = probe.loss(out, KL, None)
    assert torch.equal(loss, corn_loss(out["kl"], KL)) and set(parts) == {"kl"}
    w = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    loss_w, _ = probe.loss(out, KL, None, kl_weight=w)
    assert torch.equal(loss_w, corn_loss(out["kl"], KL, weight=w))


def _smoothed_ce(logits: torch.Tensor, y: torch.Tensor, s: float) -> torch.Tensor:
    """Label-smoothed CE written out: (1 - s) * NLL + s * mean over classes of -log p."""
    logp = torch.log_softmax(logits.double(), 1)
    return ((1 - s) * -logp[torch.arange(len(y)), y] + s * -logp.mean(1)).mean()


@pytest.mark.parametrize("mode", ["single_kl", "dual"])
def test_label_smoothing_smooths_the_kl_cross_entropy_only(mode):
    s = 0.3
    probe = _probe(mode)
    out = probe(X)
    loss, parts = probe.loss(out, KL, OA, label_smoothing=s)
    want_kl = _smoothed_ce(out["kl"], KL, s)
    assert math.isclose(parts["kl"], want_kl.item(), rel_tol=1e-5)
    assert math.isclose(parts["kl"], F.cross_entropy(out["kl"], KL, label_smoothing=s).item(), rel_tol=1e-6)
    if mode == "dual":  # the OA term is not smoothed
        assert math.isclose(parts["oa"], F.cross_entropy(out["oa"], OA).item(), rel_tol=1e-6)
    unsmoothed, _ = probe.loss(out, KL, OA)
    assert not math.isclose(loss.item(), unsmoothed.item(), rel_tol=1e-3)


def test_probe_label_smoothing_is_the_loss_default_and_comes_from_the_config():
    torch.manual_seed(0)
    probe = HierarchicalProbe(TinyEncoder(), "single_kl", label_smoothing=0.3)
    out = probe(X)
    assert torch.equal(probe.loss(out, KL, None)[0], probe.loss(out, KL, None, label_smoothing=0.3)[0])
    assert not torch.equal(probe.loss(out, KL, None, label_smoothing=0.0)[0], probe.loss(out, KL, None)[0])
    assert build_probe(_cfg(mode="ordinal", label_smoothing=0.1)).label_smoothing == 0.1


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan")])
def test_bad_label_smoothing_is_a_config_error(value):
    with pytest.raises(ConfigError, match="label_smoothing"):
        HierarchicalProbe(TinyEncoder(), "single_kl", label_smoothing=value)
    with pytest.raises(ConfigError, match="label_smoothing"):
        _probe("single_kl").loss(_probe("single_kl")(X), KL, None, label_smoothing=value)


def test_ordinal_probe_trains_one_step_on_a_real_backbone():
    torch.manual_seed(0)
    probe = HierarchicalProbe(build_backbone("resnet3d", (16, 16, 16), 0.25), "ordinal", label_smoothing=0.1)
    x = torch.randn(4, 1, 16, 16, 16)
    loss, _ = probe.loss(probe(x), KL, None)
    loss.backward()
    assert torch.isfinite(loss) and probe.kl_head.fc.weight.grad.abs().sum() > 0
