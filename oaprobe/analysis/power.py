"""What the study can detect: the smallest difference a test finds with 80% power.

Two questions a reader asks of a null result: could the test set have shown the effect the
reference reported, and could the seeds? For a knee-level paired comparison the standard error
of the difference comes from its own bootstrap interval; for the seed-level paired t-test from
statsmodels' power solver on the seed-to-seed sd of the differences.

Example:
    >>> round(detectable_from_ci(-0.05, 0.05), 3)   # a 95% CI of +-0.05 -> SE 0.0255
    0.071
    >>> round(detectable_over_seeds(sd=0.02, n_seeds=3), 3)
    0.065

:func:`detectable_table` puts both beside each other per backbone and metric of a build.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy.stats import norm
from statsmodels.stats.power import TTestPower


def detectable_from_ci(ci_low: float, ci_high: float, alpha: float = 0.05, power: float = 0.8,
                       ci: float = 0.95) -> float:
    """Smallest true difference a two-sided test at ``alpha`` detects with ``power``, given the
    ``ci`` interval of the observed difference (normal approximation: SE = width / (2 z))."""
    se = (ci_high - ci_low) / (2 * norm.ppf(0.5 + ci / 2))
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


def detectable_over_seeds(sd: float, n_seeds: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest mean paired difference (in the metric's units) a paired t-test over ``n_seeds``
    seeds detects with ``power``, when the per-seed differences have standard deviation ``sd``."""
    if n_seeds < 2 or not math.isfinite(sd):
        return float("nan")
    effect = TTestPower().solve_power(nobs=n_seeds, alpha=alpha, power=power, alternative="two-sided")
    return float(effect * sd)


def detectable_table(family: pd.DataFrame, seed_level: pd.DataFrame, alpha: float = 0.05,
                     power: float = 0.8) -> pd.DataFrame:
    """Per backbone and metric of a paired family (``Study.paired``), the smallest dual-minus-single
    difference this build detects with ``power``: ``knee_level`` from each seed's bootstrap interval
    (median over seeds; ``n_knees`` test knees) and ``over_seeds`` from the spread of the per-seed
    differences (``Study.seed_level``; ``n_seeds`` seeds). Columns: ``backbone, metric, n_knees,
    knee_level, n_seeds, over_seeds``."""
    knee = family.assign(knee_level=[detectable_from_ci(lo, hi, alpha, power, level) for lo, hi, level
                                     in zip(family["ci_low"], family["ci_high"], family["level"])])
    knee = knee.groupby(["backbone", "metric"], sort=False).agg(n_knees=("n", "median"),
                                                               knee_level=("knee_level", "median"))
    seeds = seed_level.assign(over_seeds=[detectable_over_seeds(sd, int(n), alpha, power)
                                          for sd, n in zip(seed_level["sd"], seed_level["n_seeds"])])
    seeds = seeds.set_index(["backbone", "metric"])[["n_seeds", "over_seeds"]]
    table = knee.join(seeds, how="left").reset_index()
    return table.astype({"n_knees": int})
