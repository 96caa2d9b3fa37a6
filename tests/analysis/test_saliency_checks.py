"""Known-answer tests for oaprobe.analysis.saliency_checks on planted models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from oaprobe.analysis.attribution import ProbeAttributor
from oaprobe.analysis.saliency_checks import (
    DELETION_COLUMNS,
    SANITY_COLUMNS,
    cascading_randomisation,
    deletion_curve,
    deletion_fractions,
    knee_deletion,
    map_similarity,
    randomisation_steps,
    reinitialise_,
    run_sanity_checks,
)
from oaprobe.analysis.saliency_results import deletion_auc
from tests.analysis.saliency_models import LinearProbe, S, TinyProbe


def _planted(seed: int = 0) -> tuple[LinearProbe, torch.Tensor, torch.Tensor]:
    """A linear probe with positive, spread-out weights and a positive input: contributions w*x > 0."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.rand(S, S, S, generator=gen) ** 4 + 0.01
    x = torch.rand(1, 1, S, S, S, generator=gen) + 0.5
    return LinearProbe(w).eval(), w, x


class SquareEnergy(nn.Module):
    """A model that fails the randomisation check by design: score ``a * sum(x^2)``, whose
    SmoothGrad x input ``2 |a| x^2`` ranks voxels the same for any weight ``a != 0``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.out_dim = 1
        self.oa_head = nn.Linear(1, 1, bias=False)
        nn.init.constant_(self.oa_head.weight, 2.0)

    def forward(self, x: torch.Tensor) -> dict:
        e = (x**2).sum(dim=(1, 2, 3, 4)).unsqueeze(1)
        return {"oa": self.oa_head(e), "kl": None, "embedding": e}


# --------------------------------------------------------------------------- deletion
def test_deletion_of_salient_voxels_drops_a_linear_score_fastest():
    model, w, x = _planted()
    attributor = ProbeAttributor(model, ("oa",), ("smoothgrad",), n_samples=1, noise_std=0.0)
    fractions = deletion_fractions(10)
    rows = knee_deletion(attributor, x, "k0", ("oa",), ("smoothgrad",), fractions)
    table = pd.DataFrame(rows, columns=DELETION_COLUMNS)
    contrib = np.sort((w * x[0, 0]).numpy().ravel().astype(np.float64))[::-1]
    n = contrib.size
    expected = [contrib[int(round(f * n)):].sum() for f in fractions]  # what is left after the top ones go
    salient = table[table["order"] == "salient"].sort_values("fraction")["logit"].to_numpy()
    np.testing.assert_allclose(salient, expected, rtol=1e-4, atol=1e-3)
    random = table[table["order"] == "random"].sort_values("fraction")["logit"].to_numpy()
    assert np.all(random[1:-1] > salient[1:-1])
    auc = deletion_auc(table).iloc[0]
    assert auc["auc_salient"] < 0.25 and auc["auc_salient"] < auc["auc_random"] - 0.25
    assert auc["auc_random"] == pytest.approx(0.5, abs=0.08)  # random removal: the score falls linearly
    assert auc["auc_gap"] == pytest.approx(auc["auc_random"] - auc["auc_salient"])


def test_deletion_random_order_is_seeded():
    model, _, x = _planted()
    fn = lambda xb: model(xb)["oa"][:, 0]  # noqa: E731
    sal = np.random.default_rng(0).uniform(size=(S, S, S))
    a, b, c = (deletion_curve(fn, x, sal, deletion_fractions(4), seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a["random"], b["random"])
    assert not np.array_equal(a["random"], c["random"])
    np.testing.assert_array_equal(a["salient"], c["salient"])
    assert a["salient"][0] == a["random"][0] and a["salient"][-1] == a["random"][-1] == 0.0  # shared ends
    with pytest.raises(ValueError, match="voxels"):
        deletion_curve(fn, x, sal[:4], deletion_fractions(4), seed=0)


def test_deletion_auc_known_answer_and_flat_curve():
    rows = []
    curves = (("k0", [2.0, 0.0, 0.0], [2.0, 1.0, 0.0]), ("k1", [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]))
    for cid, sal_logits, rnd_logits in curves:
        for order, logits in (("salient", sal_logits), ("random", rnd_logits)):
            rows += [{"case_id": cid, "target": "oa", "method": "smoothgrad", "order": order, "fraction": f, "logit": v}
                     for f, v in zip((0.0, 0.5, 1.0), logits)]
    auc = deletion_auc(pd.DataFrame(rows)).set_index("case_id")
    assert auc.loc["k0", "auc_salient"] == pytest.approx(0.25)
    assert auc.loc["k0", "auc_random"] == pytest.approx(0.5)
    assert auc.loc["k0", "auc_gap"] == pytest.approx(0.25)
    assert auc.loc["k1"].drop(["target", "method"]).isna().all()  # the score does not move: undefined
    with pytest.raises(ValueError, match="lacks fraction 0 or 1"):
        deletion_auc(pd.DataFrame(rows[:2]))
    with pytest.raises(ValueError, match="deletion steps"):
        deletion_fractions(0)


# --------------------------------------------------------------------------- randomisation
def test_randomisation_of_a_planted_model_destroys_its_map():
    model, _, _ = _planted()
    x = torch.ones(1, 1, S, S, S)  # map = |w|: the planted weights themselves
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    rows = cascading_randomisation(model, x, "k0", ("oa",), ("smoothgrad",), n_samples=1, noise_std=0.0)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    for k, v in model.state_dict().items():  # the trained model is untouched (the cascade runs on a copy)
        assert torch.equal(v, before[k])
    assert [(r["step"], r["layer"]) for r in rows] == [(0, "none"), (1, "heads"), (2, "encoder.0")]
    assert rows[0]["spearman"] == pytest.approx(1.0) and rows[0]["top10_overlap"] == 1.0  # the trained map itself
    assert abs(rows[1]["spearman"]) < 0.2 and rows[1]["top10_overlap"] < 0.35  # random head: unrelated map
    assert rows[2]["spearman"] == pytest.approx(rows[1]["spearman"])  # a 1x1x1 conv only rescales
    assert all(np.isnan(r["input_spearman"]) for r in rows)  # a constant input: no ranking to follow
    again = cascading_randomisation(model, x, "k0", ("oa",), ("smoothgrad",), n_samples=1, noise_std=0.0)
    pd.testing.assert_frame_equal(pd.DataFrame(rows), pd.DataFrame(again))  # seeded: the same every time


def test_randomisation_flags_a_map_that_ignores_the_weights():
    x = torch.rand(1, 1, S, S, S, generator=torch.Generator().manual_seed(0)) + 0.1
    rows = cascading_randomisation(SquareEnergy().eval(), x, "k0", ("oa",), ("smoothgrad",), n_samples=1, noise_std=0.0)
    assert [r["layer"] for r in rows] == ["none", "heads"]  # the parameterless encoder is no step
    assert rows[1]["spearman"] == pytest.approx(1.0) and rows[1]["top10_overlap"] == pytest.approx(1.0)
    assert rows[1]["input_spearman"] == pytest.approx(1.0)  # the map is the input's own ranking


def test_randomisation_steps_of_a_probe():
    steps = randomisation_steps(TinyProbe("dual"))
    # the pool has no parameters, so "features" is the one block and is looked through
    assert [name for name, _ in steps] == ["heads", "encoder.features.2", "encoder.features.0"]
    assert len(steps[0][1]) == 2

    class Wrapped(nn.Module):  # a MONAI backbone inside an encoder: encoder.net.<blocks>
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Module()
            self.encoder.net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3))
            self.oa_head = nn.Linear(3, 1)

    assert [name for name, _ in randomisation_steps(Wrapped())] == ["heads", "encoder.net.2", "encoder.net.0"]


def test_reinitialise_resets_and_permutes_reproducibly():
    class Raw(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.arange(16.0))  # no reset_parameters covers it
            self.lin = nn.Linear(4, 4)

    a, b = Raw(), Raw()
    b.load_state_dict(a.state_dict())
    trained = a.lin.weight.detach().clone()
    reinitialise_([a], seed=5)
    reinitialise_([b], seed=5)
    assert torch.equal(a.scale, b.scale) and torch.equal(a.lin.weight, b.lin.weight)
    assert not torch.equal(a.lin.weight, trained)
    assert torch.equal(a.scale.detach().sort().values, torch.arange(16.0))  # the same values ...
    assert not torch.equal(a.scale, torch.arange(16.0))  # ... elsewhere


def test_map_similarity_known_answers():
    ramp = np.arange(1000.0).reshape(10, 10, 10)
    assert map_similarity(ramp, ramp**2) == {"spearman": pytest.approx(1.0), "top10_overlap": 1.0}
    opposite = map_similarity(ramp, -ramp)
    assert opposite["spearman"] == pytest.approx(-1.0) and opposite["top10_overlap"] == 0.0
    assert np.isnan(map_similarity(ramp, np.zeros_like(ramp))["spearman"])


# --------------------------------------------------------------------------- both
def test_run_sanity_checks_tables_and_the_model_left_alone():
    probe = TinyProbe("dual").train()
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    images = torch.randn(2, 1, S, S, S, generator=torch.Generator().manual_seed(0))
    args = dict(case_ids=["k0", "k1"], mode="dual", methods=("smoothgrad", "gradcam"), n_samples=2, deletion_steps=4,
                progress=False)
    sanity, deletion = run_sanity_checks(probe, images, **args)
    assert list(sanity.columns) == list(SANITY_COLUMNS) and list(deletion.columns) == list(DELETION_COLUMNS)
    assert len(sanity) == 2 * 2 * 2 * 4  # knees x targets x methods x steps (trained, heads, 2 convs)
    assert len(deletion) == 2 * 2 * 2 * 2 * 5  # knees x targets x methods x orders x fractions
    assert probe.training and all(torch.equal(v, before[k]) for k, v in probe.state_dict().items())
    again, _ = run_sanity_checks(probe, images, **args)
    pd.testing.assert_frame_equal(sanity, again)
    with pytest.raises(ValueError, match="case_ids"):
        run_sanity_checks(probe, images, **{**args, "case_ids": ["k0"]})


def test_randomisation_last_step_only_and_given_trained_maps():
    model, _, _ = _planted()
    x = torch.ones(1, 1, S, S, S)
    full = cascading_randomisation(model, x, "k0", ("oa",), ("smoothgrad",), n_samples=1, noise_std=0.0)
    last = cascading_randomisation(model, x, "k0", ("oa",), ("smoothgrad",), n_samples=1, noise_std=0.0, last_only=True)
    assert [(r["step"], r["layer"]) for r in last] == [(0, "none"), (2, "all")]
    assert last[1]["spearman"] == pytest.approx(full[-1]["spearman"])  # the cascade's end, the same re-inits
    planted = {("oa", "smoothgrad"): np.arange(S**3, dtype=float).reshape(S, S, S)}
    given = cascading_randomisation(model, x, "k0", ("oa",), ("smoothgrad",), n_samples=1, noise_std=0.0,
                                    last_only=True, reference=planted)
    assert given[0]["spearman"] == pytest.approx(1.0) and given[1]["spearman"] != pytest.approx(last[1]["spearman"])
