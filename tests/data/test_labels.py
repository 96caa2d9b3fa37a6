"""Tests of the KL priors, the OA label and the label-noise model."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from oaprobe.data.labels import (
    KL_PRIOR_OAI,
    KL_PRIOR_OAIZIB,
    expected_kappa,
    kl_prior,
    noise_matrix,
    oa_from_kl,
    observe_kl,
)


def test_priors_sum_to_one_and_match_published_numbers():
    assert KL_PRIOR_OAI.sum() == pytest.approx(1.0)
    assert KL_PRIOR_OAIZIB.sum() == pytest.approx(1.0)
    assert KL_PRIOR_OAI[0] == pytest.approx(0.463, abs=1e-3)
    # OAI-ZIB train + test counts: 103/58/108/139/73 of 481 knees.
    assert KL_PRIOR_OAIZIB[3] == pytest.approx(139 / 481)
    assert kl_prior("oai") is not KL_PRIOR_OAI  # a copy, safe to modify
    with pytest.raises(ValueError, match="unknown KL prior 'zib'"):
        kl_prior("zib")


def test_oa_from_kl():
    assert oa_from_kl([0, 1, 2, 3, 4]).tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="0-4"):
        oa_from_kl([5])


def test_identity_at_zero_strength():
    assert np.array_equal(noise_matrix(0.0), np.eye(5))
    kl = np.random.default_rng(0).integers(0, 5, 1000)
    assert np.array_equal(observe_kl(kl, 0.0, np.random.default_rng(1)), kl)


@pytest.mark.parametrize("strength", [0.1, 0.5, 1.0, 2.0, 5.0])
def test_rows_are_distributions(strength):
    P = noise_matrix(strength)
    assert P.shape == (5, 5)
    assert (P >= 0).all()
    assert np.allclose(P.sum(axis=1), 1.0)


def test_mostly_one_grade_and_strongest_at_oa_boundary():
    P = noise_matrix(1.0)
    off = P - np.diag(np.diag(P))
    one_grade = sum(P[k, k + d] for k in range(5) for d in (-1, 1) if 0 <= k + d < 5)
    assert one_grade / off.sum() > 0.8
    neighbour = [P[b, b + 1] for b in range(4)]
    assert int(np.argmax(neighbour)) == 1  # the 1 -> 2 confusion is the largest


def test_monotone_in_strength():
    diags = np.array([np.diag(noise_matrix(s)) for s in np.linspace(0, 3, 13)])
    assert (np.diff(diags, axis=0) < 0).all()


def test_empirical_confusion_matches_matrix():
    n = 200_000
    kl = np.repeat(np.arange(5), n // 5)
    obs = observe_kl(kl, 1.0, np.random.default_rng(42))
    emp = confusion_matrix(kl, obs, labels=range(5), normalize="true")
    assert np.abs(emp - noise_matrix(1.0)).max() < 0.01


def test_kappa_at_default_strength_in_human_reader_range():
    rng = np.random.default_rng(7)
    kl = rng.choice(5, size=20_000, p=KL_PRIOR_OAIZIB)
    kappa = cohen_kappa_score(kl, observe_kl(kl, 1.0, rng))
    assert 0.52 <= kappa <= 0.68
    assert kappa == pytest.approx(expected_kappa(1.0, KL_PRIOR_OAIZIB), abs=0.02)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="strength"):
        noise_matrix(-1.0)
    with pytest.raises(ValueError, match="observe_kl"):
        observe_kl(np.array([0, 7]), 1.0, np.random.default_rng(0))
