"""Power: detectable differences against independent computations (scipy's noncentral t)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from oaprobe.analysis.power import detectable_from_ci, detectable_over_seeds


def test_detectable_from_ci_is_z_sum_times_se():
    se = 0.03
    low, high = -1.959964 * se, 1.959964 * se
    assert detectable_from_ci(low, high) == pytest.approx((1.959964 + 0.841621) * se, rel=1e-5)


@pytest.mark.parametrize("n", [3, 5, 10])
def test_detectable_over_seeds_has_the_asked_power(n):
    sd = 0.04
    d = detectable_over_seeds(sd, n)
    crit = stats.t.ppf(0.975, n - 1)
    nc = d / sd * np.sqrt(n)  # noncentrality of the paired t at that difference
    achieved = stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
    assert achieved == pytest.approx(0.8, abs=1e-4)


def test_one_seed_cannot_detect_anything():
    assert np.isnan(detectable_over_seeds(0.02, 1))
