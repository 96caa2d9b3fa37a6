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
"""

from __future__ import annotations

import math

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
