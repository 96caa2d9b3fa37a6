"""Knee-sampling share of a paired difference's seed variance: planted random-effects data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oaprobe.analysis.decision import ALPHA, seeds_needed
from oaprobe.analysis.knee_sampling import (
    knee_share,
    seed_equivalent_of_more_knees,
    seeds_needed_with_knees,
    split_half_knee_variance,
)


def _planted(seed_sd: float, knee_sd: float, seeds: int = 3000, knees: int = 8, mean: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(mean + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, knee_sd, (seeds, knees)))


@pytest.mark.parametrize("seed_sd,knee_sd", [(1.0, 1.0), (0.5, 2.0), (1.0, 0.0), (0.0, 1.0)])
def test_knee_share_recovers_the_planted_split(seed_sd, knee_sd):
    expected = (knee_sd**2 / 8) / (seed_sd**2 + knee_sd**2 / 8)
    assert knee_share(_planted(seed_sd, knee_sd)) == pytest.approx(expected, abs=0.03)


def test_more_knees_need_fewer_seeds_only_as_far_as_the_knee_share_allows():
    diffs = _planted(0.5, 1.0, seeds=12, mean=0.3)
    sd = float(diffs.mean(axis=1).std(ddof=1))
    assert seeds_needed_with_knees(diffs, 0.1, 1, 1.0) == seeds_needed(float(diffs.to_numpy().mean()), sd, 0.1, ALPHA)
    many, every = (seeds_needed_with_knees(diffs, 0.1, 1, f) for f in (4.0, np.inf))
    assert every <= many <= seeds_needed_with_knees(diffs, 0.1, 1, 1.0)
    # seed means within 0.01 of each other, knees spread by 1: the knees explain it all, the fewest seeds
    only_knees = pd.DataFrame([[0.3 - 1 + e, 0.3 + 1 + e] for e in (0.0, 0.01, -0.01)])
    assert knee_share(only_knees) == 1.0 and seeds_needed_with_knees(only_knees, 0.1, 1, np.inf) == 2


def test_knee_share_names_what_it_needs():
    with pytest.raises(ValueError, match="2 seeds and >= 2 knees"):
        knee_share(pd.DataFrame([[1.0, 2.0]]))


@pytest.mark.parametrize("seed_sd,knee_sd", [(1.0, 1.0), (0.5, 2.0), (1.0, 0.0)])
def test_split_halves_recover_the_planted_knee_variance_of_the_whole_test_set(seed_sd, knee_sd):
    # a score averaging 16 knees: its knee variance is knee_sd^2 / 16, whatever the seed part
    knees = _planted(seed_sd, knee_sd, knees=16).to_numpy()
    cut = np.random.default_rng(1).permutation(16)
    half_a, half_b = knees[:, cut[:8]].mean(axis=1), knees[:, cut[8:]].mean(axis=1)
    assert split_half_knee_variance(half_a, half_b) == pytest.approx(knee_sd**2 / 16, abs=0.01)


def test_more_knees_are_worth_seeds_only_through_the_knee_share():
    assert seed_equivalent_of_more_knees(0.0) == 1.0  # no knee noise: knees buy nothing
    assert seed_equivalent_of_more_knees(1.0) == 2.0  # all knee noise: twice the knees, twice the seeds
    assert seed_equivalent_of_more_knees(0.77) == pytest.approx(1 / (1 - 0.77 / 2))
    with pytest.raises(ValueError, match="share"):
        seed_equivalent_of_more_knees(1.5)
