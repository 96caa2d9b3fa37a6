"""Known answers for the book's decision rule: statsmodels / pingouin / scipy as references, planted
differences whose verdict is known, and the power formula against a simulation."""

from __future__ import annotations

import numpy as np
import pingouin as pg
import pytest
from scipy import stats
from statsmodels.stats.weightstats import ttost_paired

from oaprobe.analysis.decision import (
    DELTAS,
    _interval,
    decide,
    decide_with_flags,
    difference_power,
    seeds_needed,
    tost_power,
    verdict_of,
)


def test_tost_p_matches_statsmodels_and_pingouin() -> None:
    rng = np.random.default_rng(3)
    b = rng.normal(0.8, 0.02, 8)
    a = b + rng.normal(0.004, 0.01, 8)
    out = decide(a - b, delta=0.03)
    p_sm = ttost_paired(a, b, -0.03, 0.03)[0]
    p_pg = float(pg.tost(a, b, bound=0.03, paired=True)["pval"].iloc[0])
    assert out["p_equiv"] == pytest.approx(p_sm, rel=1e-9)
    assert out["p_equiv"] == pytest.approx(p_pg, rel=1e-6)


def test_difference_test_and_intervals_match_scipy() -> None:
    d = np.array([0.03, 0.01, 0.05, 0.02, 0.04])
    out = decide(d, delta=0.03)
    assert out["p_diff"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue, rel=1e-9)
    ci = stats.ttest_1samp(d, 0).confidence_interval(0.95)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((ci.low, ci.high))
    eq = stats.ttest_1samp(d, 0).confidence_interval(0.90)
    assert (out["eq_low"], out["eq_high"]) == pytest.approx((eq.low, eq.high))


def test_equivalence_is_the_90_interval_inside_delta() -> None:
    # the 90% interval inside +-delta <=> both one-sided p < 0.05
    rng = np.random.default_rng(0)
    for _ in range(50):
        d = rng.normal(rng.uniform(-0.03, 0.03), rng.uniform(0.005, 0.04), rng.integers(3, 12))
        out = decide(d, delta=0.03)
        assert (out["verdict"] == "equivalent") == (out["p_equiv"] < 0.05)


@pytest.mark.parametrize("shift, lower_is_better, expected", [
    (0.08, False, "helps"), (-0.08, False, "hurts"), (-0.08, True, "helps"), (0.08, True, "hurts"), (0.0, False, "equivalent"),
])
def test_planted_differences_get_their_verdict(shift: float, lower_is_better: bool, expected: str) -> None:
    d = shift + np.random.default_rng(1).normal(0, 0.005, 10)
    assert decide(d, delta=0.03, lower_is_better=lower_is_better)["verdict"] == expected


def test_a_small_real_difference_is_equivalent_not_helps() -> None:
    # every seed above 0, but well inside delta: the difference exists and does not matter
    d = 0.01 + np.random.default_rng(2).normal(0, 0.002, 10)
    out = decide(d, delta=0.03)
    assert out["ci_low"] > 0 and out["verdict"] == "equivalent"


def test_one_seed_or_no_spread_is_inconclusive() -> None:
    assert decide([0.05], delta=0.03)["verdict"] == "inconclusive"
    assert decide([0.01, 0.01, 0.01], delta=0.03)["verdict"] == "inconclusive"
    assert verdict_of((float("nan"),) * 2, (float("nan"),) * 2, 0.03) == "inconclusive"


def test_bonferroni_widens_both_intervals() -> None:
    d = [0.02, 0.035, 0.03, 0.025]
    one, six = decide(d, delta=0.03), decide(d, delta=0.03, m=6)
    assert six["alpha"] == pytest.approx(0.05 / 6)
    assert six["ci_low"] < one["ci_low"] and six["ci_high"] > one["ci_high"]
    assert one["verdict"] == "helps" and six["verdict"] == "helps"
    assert decide([0.02, 0.04, 0.03], delta=0.03)["verdict"] == "helps"
    assert decide([0.02, 0.04, 0.03], delta=0.03, m=6)["verdict"] == "inconclusive"


def _simulated_rate(n: int, mean: float, sd: float, delta: float, verdicts: set[str], reps: int = 4000) -> float:
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(reps):  # the rule's two intervals, without decide's seed planning (it is not simulated)
        d = rng.normal(mean, sd, n)
        hits += verdict_of(_interval(d, 0.95), _interval(d, 0.90), delta) in verdicts
    return hits / reps


@pytest.mark.parametrize("n, mean", [(6, 0.0), (10, 0.01)])
def test_tost_power_matches_simulation(n: int, mean: float) -> None:
    formula = tost_power(n, mean, sd=0.02, delta=0.03)
    assert 0.3 < formula < 0.99
    assert formula == pytest.approx(_simulated_rate(n, mean, 0.02, 0.03, {"equivalent"}), abs=0.03)


def test_difference_power_matches_simulation() -> None:
    formula = difference_power(6, 0.03, 0.025)
    assert formula == pytest.approx(_simulated_rate(6, 0.03, 0.025, 0.001, {"helps"}), abs=0.03)


def test_seeds_needed_is_the_first_n_with_enough_power() -> None:
    n = seeds_needed(0.005, 0.03, 0.03)
    assert n is not None and n > 3
    best = lambda k: max(tost_power(k, 0.005, 0.03, 0.03), difference_power(k, 0.005, 0.03))  # noqa: E731
    assert best(n) >= 0.8 > best(n - 1)
    assert seeds_needed(0.03, 0.02, 0.03) is not None  # at the boundary only a difference can be found
    assert seeds_needed(0.0, 0.0, 0.03) is None and seeds_needed(float("nan"), 0.01, 0.03) is None


def test_a_flagged_seed_cannot_decide_alone() -> None:
    d = np.array([0.002, -0.004, 0.001, 0.003, -0.12, 0.0])  # seed 4 diverged
    flagged = [False, False, False, False, True, False]
    out = decide_with_flags(d, flagged, delta=0.03)
    assert out["verdict_all"] == "inconclusive" and out["verdict_unflagged"] == "equivalent"
    assert out["verdict"] == "inconclusive" and out["n_flagged"] == 1 and not out["loo_stable"]
    agree = decide_with_flags(d[[0, 1, 2, 3, 5]], [False] * 5, delta=0.03)
    assert agree["verdict"] == "equivalent" and agree["loo_stable"]


def test_every_primary_metric_has_a_delta_within_the_declared_bounds() -> None:
    assert DELTAS["kl_qwk"] <= 0.03 and DELTAS["oa_roc_auc"] <= 0.015


def test_a_test_set_too_small_for_a_finding_gets_no_verdict():
    d = [0.05, 0.06, 0.055, 0.065]
    assert decide(d, delta=0.03)["verdict"] == "helps"
    out = decide_with_flags(d, [False] * 4, delta=0.03, limit="only 2 test knees (a finding needs at least 20)")
    assert out["verdict"] == out["verdict_all"] == "inconclusive" and out["reason"].startswith("only 2 test knees")


def test_decide_without_planning_gives_the_same_decision_and_no_seed_count():
    diffs = [0.05, 0.07, 0.06, 0.08]
    planned, unplanned = decide(diffs, delta=0.03), decide(diffs, delta=0.03, plan=False)
    assert planned["seeds_needed"] is not None and unplanned["seeds_needed"] is None
    assert {k: v for k, v in planned.items() if k != "seeds_needed"} == {k: v for k, v in unplanned.items() if k != "seeds_needed"}
