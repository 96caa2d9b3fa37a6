"""Knee-sampling share of a paired difference's seed variance: planted random-effects data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oaprobe.analysis.decision import ALPHA, seeds_needed
from oaprobe.analysis.knee_sampling import knee_share, seeds_needed_with_knees


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
