"""Power: detectable differences against independent computations (scipy's normal and noncentral t)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from oaprobe.analysis.power import detectable_from_ci, detectable_over_seeds, detectable_table


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


def _family_row(backbone: str, metric: str, seed: int, se: float, n: int = 100) -> dict:
    z = stats.norm.ppf(0.975)
    return {"backbone": backbone, "metric": metric, "seed": seed, "diff": 0.01, "ci_low": 0.01 - z * se,
            "ci_high": 0.01 + z * se, "level": 0.95, "n": n}


def test_detectable_table_takes_the_median_seed_and_the_seed_spread():
    family = pd.DataFrame([_family_row("a", "oa_roc_auc", s, se) for s, se in enumerate((0.01, 0.03, 0.02))]
                          + [_family_row("a", "kl_accuracy", 0, 0.05)])
    seed_level = pd.DataFrame({"backbone": ["a"], "metric": ["oa_roc_auc"], "sd": [0.04], "n_seeds": [3]})
    table = detectable_table(family, seed_level).set_index("metric")
    z_sum = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert table.loc["oa_roc_auc", "knee_level"] == pytest.approx(z_sum * 0.02)  # the median seed's SE
    assert table.loc["kl_accuracy", "knee_level"] == pytest.approx(z_sum * 0.05)
    assert table.loc["oa_roc_auc", "n_knees"] == 100 and table.loc["oa_roc_auc", "n_seeds"] == 3
    d = table.loc["oa_roc_auc", "over_seeds"]
    crit, nc = stats.t.ppf(0.975, 2), d / 0.04 * np.sqrt(3)  # the paired t's power at that difference
    assert stats.nct.sf(crit, 2, nc) + stats.nct.cdf(-crit, 2, nc) == pytest.approx(0.8, abs=1e-4)
    assert np.isnan(table.loc["kl_accuracy", "over_seeds"])  # no seed-level row for it
