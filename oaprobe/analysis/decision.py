"""The book's one decision rule: does one training procedure help, hurt, or change nothing that matters?

Every comparison of two procedures in the book (dual vs single-task, a variant vs dual, ...) is read
the same way, from the per-seed paired differences ``d_s = a_s - b_s`` (both runs of seed ``s``
share the encoder's initialisation and the batch order):

- **equivalent** when the ``1 - 2 alpha`` t-interval of the mean difference lies inside
  ``(-delta, +delta)``: two one-sided t-tests (TOST, Lakens 2017) reject a difference of
  ``delta`` or more at ``alpha``; checked first, so a real but negligible difference is "equivalent";
- **helps** / **hurts** when the ``1 - alpha`` t-interval lies above / below 0 (a paired t-test at
  ``alpha``, two-sided), in the direction where the metric is better (lower for MAE);
- **inconclusive** otherwise, with the number of seeds a decision would need (:func:`seeds_needed`).

``delta`` is the smallest effect of interest of the metric (:data:`DELTAS`). A family of ``m``
comparisons (a chapter's secondary ones) divides ``alpha`` by ``m`` (Bonferroni), which widens
both intervals. :func:`decide_with_flags` keeps a flagged (diverged or degenerate) run from
deciding a verdict alone.

Example:
    >>> decide([0.004, -0.002, 0.001, 0.003, -0.001, 0.000], delta=0.03)["verdict"]
    'equivalent'
    >>> decide([0.05, 0.07, 0.06, 0.08], delta=0.03)["verdict"]
    'helps'
    >>> decide([0.05, -0.06, 0.02], delta=0.03)["verdict"]
    'inconclusive'
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.power import TTestPower

#: the four verdicts, in the order the book counts them
VERDICTS: tuple[str, ...] = ("helps", "hurts", "equivalent", "inconclusive")
ALPHA: float = 0.05
POWER: float = 0.8
#: seeds beyond which :func:`seeds_needed` stops looking (and answers None: "more than this")
MAX_SEEDS: int = 200

#: Smallest effect of interest per metric (same units as the metric). The reasons:
#: - OA ROC-AUC 0.015 and KL macro-AUC 0.015: the reference study's OA AUC gains of dual over a
#:   single-task model were 0.05-0.13 where it found any, and a model's AUC on its 98 test knees
#:   has a 95% interval about +-0.04 wide, so a difference under 0.015 is one no study of its kind
#:   could see, and no reader would choose a training procedure for.
#: - KL QWK 0.03 (and KL accuracy, macro-F1, OA accuracy, OA F1 0.03): about a tenth of the spread of
#:   human readers' weighted kappa on KL (0.46-0.85 across studies) and under half the reference's
#:   smallest reported KL gain (macro-F1 +0.07 for M3T); the QWK of one model on 98 knees has a
#:   95% interval about +-0.06 wide.
#: - KL MAE 0.03 grades: three knees in a hundred moved by one grade.
DELTAS: dict[str, float] = {
    "oa_roc_auc": 0.015, "kl_auc_macro": 0.015,
    "kl_qwk": 0.03, "kl_accuracy": 0.03, "kl_f1_macro": 0.03, "oa_accuracy": 0.03, "oa_f1": 0.03,
    "kl_mae": 0.03,
}
#: Metrics where a lower value is better (the direction of "helps" flips).
LOWER_IS_BETTER = frozenset({"kl_mae"})


def _interval(d: np.ndarray, level: float) -> tuple[float, float]:
    """The ``level`` t-interval of the mean of ``d`` (NaN with fewer than 2 values or no spread)."""
    if d.size < 2 or not np.ptp(d) > 0:
        return math.nan, math.nan
    lo, hi = stats.t.interval(level, d.size - 1, loc=d.mean(), scale=d.std(ddof=1) / math.sqrt(d.size))
    return float(lo), float(hi)


def verdict_of(ci_test: tuple[float, float], ci_equiv: tuple[float, float], delta: float,
               lower_is_better: bool = False) -> str:
    """The verdict of the rule from the two intervals (NaN intervals: inconclusive)."""
    lo, hi = ci_test
    elo, ehi = ci_equiv
    if elo == elo and -delta < elo and ehi < delta:
        return "equivalent"
    if lo == lo and (lo > 0 or hi < 0):
        return "helps" if (lo > 0) != lower_is_better else "hurts"
    return "inconclusive"


def decide(diffs: Sequence[float] | np.ndarray, delta: float, alpha: float = ALPHA, m: int = 1,
           lower_is_better: bool = False, power: float = POWER, limit: str | None = None,
           plan: bool = True) -> dict[str, object]:
    """Apply the rule to per-seed paired differences (NaNs dropped) in a family of ``m`` comparisons.

    ``limit``: why the test set cannot carry a finding (:func:`oaprobe.report.guards.finding_limit`);
    given, the verdict is inconclusive whatever the intervals say, and ``reason`` holds it.

    Returns ``n_seeds, mean, sd, ci_low, ci_high`` (the ``1 - alpha/m`` interval: the test),
    ``eq_low, eq_high`` (the ``1 - 2 alpha/m`` interval: the equivalence test), ``delta``,
    ``alpha`` (``alpha / m``), ``m``, ``p_diff`` (paired t, two-sided), ``p_equiv`` (TOST: the larger
    one-sided p), ``verdict``
    and ``seeds_needed`` (:func:`seeds_needed` at the observed mean and sd; None with ``plan=False``,
    for callers that read only the verdict: the search costs about 20 ms a call).
    """
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    a = alpha / max(int(m), 1)
    ci, eq = _interval(d, 1 - a), _interval(d, 1 - 2 * a)
    mean = float(d.mean()) if d.size else math.nan
    sd = float(d.std(ddof=1)) if d.size > 1 else math.nan
    p_diff = p_equiv = math.nan
    if d.size >= 2 and sd > 0:
        se = sd / math.sqrt(d.size)
        p_diff = float(2 * stats.t.sf(abs(mean) / se, d.size - 1))
        p_equiv = float(max(stats.t.sf((mean + delta) / se, d.size - 1), stats.t.cdf((mean - delta) / se, d.size - 1)))
    return {
        "n_seeds": int(d.size), "mean": mean, "sd": sd, "ci_low": ci[0], "ci_high": ci[1],
        "eq_low": eq[0], "eq_high": eq[1], "delta": float(delta), "alpha": a, "m": max(int(m), 1), "p_diff": p_diff, "p_equiv": p_equiv,
        "verdict": "inconclusive" if limit else verdict_of(ci, eq, delta, lower_is_better), "reason": limit or "",
        "seeds_needed": seeds_needed(mean, sd, delta, a, power) if plan else None,
    }


def tost_power(n: int, mean: float, sd: float, delta: float, alpha: float = ALPHA) -> float:
    """Probability that TOST over ``n`` seeds declares equivalence when the true mean paired
    difference is ``mean`` and its seed-to-seed sd is ``sd`` (noncentral t, the usual lower bound
    ``1 - P(miss lower) - P(miss upper)``, accurate where the power is high)."""
    if n < 2 or not sd > 0 or abs(mean) >= delta:
        return 0.0
    dof, crit, root = n - 1, stats.t.ppf(1 - alpha, n - 1), math.sqrt(n) / sd
    miss_low = stats.nct.cdf(crit, dof, (mean + delta) * root)
    miss_high = stats.nct.sf(-crit, dof, (mean - delta) * root)
    return float(max(0.0, 1.0 - miss_low - miss_high))


def difference_power(n: int, mean: float, sd: float, alpha: float = ALPHA) -> float:
    """Probability that a two-sided paired t-test over ``n`` seeds finds a true mean difference
    ``mean`` with seed-to-seed sd ``sd`` (statsmodels' power of the one-sample t-test)."""
    if n < 2 or not sd > 0 or mean == 0:
        return 0.0
    return float(TTestPower().power(effect_size=abs(mean) / sd, nobs=n, alpha=alpha, alternative="two-sided"))


def seeds_needed(mean: float, sd: float, delta: float, alpha: float = ALPHA, power: float = POWER,
                 max_seeds: int = MAX_SEEDS) -> int | None:
    """The fewest seeds (>= 2) at which the rule reaches a verdict other than inconclusive with
    probability ``power``, if the true mean difference and sd are the observed ones: equivalence
    when ``|mean| < delta``, else a difference. ``None``: more than ``max_seeds``, or no estimate.

    Planning from the observed values is optimistic when the mean is near a boundary (near 0 or
    near ``delta``, no number of seeds is enough); it says what this build's spread implies.
    """
    if not (sd == sd and mean == mean) or sd <= 0:
        return None
    for n in range(2, max_seeds + 1):
        p_eq = tost_power(n, mean, sd, delta, alpha)
        p_diff = difference_power(n, mean, sd, alpha)
        if max(p_eq, p_diff) >= power:
            return n
    return None


def decide_with_flags(diffs: Sequence[float], flagged: Sequence[bool], delta: float, alpha: float = ALPHA,
                      m: int = 1, lower_is_better: bool = False, limit: str | None = None) -> dict[str, object]:
    """:func:`decide` on every seed and on the seeds whose two runs are both unflagged; the verdict
    stands only where both agree (else inconclusive: a flagged run would decide it alone).

    Returns the keys of :func:`decide` for all seeds, plus ``verdict_all``, ``verdict_unflagged``,
    ``n_flagged`` (seeds with a flagged run), ``mean_unflagged`` and ``loo_stable`` (whether every
    leave-one-seed-out verdict equals the verdict on all seeds).
    """
    d = np.asarray(diffs, dtype=float)
    f = np.asarray(flagged, dtype=bool)
    every = decide(d, delta, alpha, m, lower_is_better, limit=limit)
    clean = decide(d[~f], delta, alpha, m, lower_is_better, limit=limit, plan=False)
    loo = [decide(np.delete(d, i), delta, alpha, m, lower_is_better, limit=limit, plan=False)["verdict"]
           for i in range(d.size)]
    agreed = every["verdict"] if every["verdict"] == clean["verdict"] else "inconclusive"
    return {**every, "verdict_all": every["verdict"], "verdict_unflagged": clean["verdict"],
            "mean_unflagged": clean["mean"], "n_flagged": int(f.sum()),
            "loo_stable": bool(d.size > 2 and all(v == every["verdict"] for v in loo)), "verdict": agreed}


def decide_table(diffs: pd.DataFrame, by: Sequence[str], m: int | None = None, alpha: float = ALPHA,
                 limit: str | None = None) -> pd.DataFrame:
    """The rule on every group of a long table of per-seed differences (columns ``*by, metric, seed,
    diff`` and optionally ``flagged``), ``metric`` giving each group's delta and direction.

    ``m``: the family's size for the Bonferroni correction (None: every group of the table is one
    family, ``m`` = the number of groups). One row per group: ``*by`` and the keys of
    :func:`decide_with_flags` (``m`` among them).
    """
    keys = list(dict.fromkeys([*by, "metric"]))
    missing = [c for c in (*keys, "diff") if c not in diffs.columns]
    if missing:
        raise KeyError(f"decide_table: columns {missing} not in {list(diffs.columns)}")
    groups = list(diffs.groupby(keys, sort=False))
    family = len(groups) if m is None else m
    rows = []
    for key, g in groups:
        metric = dict(zip(keys, key))["metric"]
        flagged = g["flagged"].to_numpy(bool) if "flagged" in g else np.zeros(len(g), bool)
        out = decide_with_flags(g["diff"].to_numpy(float), flagged, DELTAS.get(metric, math.nan), alpha, family,
                                metric in LOWER_IS_BETTER, limit)
        rows.append({**dict(zip(keys, key)), **out})
    return pd.DataFrame(rows)
