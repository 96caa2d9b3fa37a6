"""How much of a paired difference's seed-to-seed variance comes from the knees it was measured on.

A per-run score averaged over a fixed set of ``k`` knees varies between seeds for two reasons: the
models differ (seed variance, which more knees cannot remove) and the ``k`` knees are a finite
sample (knee variance / ``k``, which more knees shrink). With the same knees in every run, the
knee part of the paired difference's variance is estimated from the spread of the per-knee
differences inside each seed (a one-way random-effects split). Where it is small, more knees per
run cannot decide a question; only more seeds can.

Example (planted: no seed effect, so the knees explain everything):
    >>> import numpy as np, pandas as pd
    >>> d = pd.DataFrame(np.random.default_rng(0).normal(size=(400, 8)))
    >>> round(knee_share(d), 1)
    1.0
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from oaprobe.analysis.decision import ALPHA, seeds_needed


def knee_share(diffs: pd.DataFrame) -> float:
    """Share of the variance of the seeds' mean differences that the finite knee sample explains.

    ``diffs``: seeds x knees, the per-knee paired difference (the same knees in every seed). The
    knee part is the mean within-seed variance over ``k``; capped at 1 (it is an estimate).
    """
    diffs = diffs.dropna(axis=1, how="any")
    seeds, k = diffs.shape
    if seeds < 2 or k < 2:
        raise ValueError(f"knee_share: need >= 2 seeds and >= 2 knees measured in every seed, got {seeds} x {k}")
    total = float(diffs.mean(axis=1).var(ddof=1))
    knees = float(diffs.var(axis=1, ddof=1).mean()) / k
    return min(1.0, knees / total) if total > 0 else float("nan")


def seeds_needed_with_knees(diffs: pd.DataFrame, delta: float, m: int, factor: float) -> int | None:
    """The seeds the rule would need (:func:`oaprobe.analysis.decision.seeds_needed`, Bonferroni
    over ``m``) if each run were measured on ``factor`` times as many knees (``inf``: every knee),
    at the observed mean and variance split. None: more than the rule looks for. Where the knees
    explain all the observed variance, every-knee runs would need the fewest seeds the rule takes (2)."""
    diffs = diffs.dropna(axis=1, how="any")
    var = float(diffs.mean(axis=1).var(ddof=1))
    share = knee_share(diffs)
    sd = np.sqrt(var * (1 - share + share / factor))
    if not sd > 0:
        return 2
    return seeds_needed(float(diffs.to_numpy().mean()), float(sd), delta, ALPHA / m)


def split_half_knee_variance(half_a: np.ndarray, half_b: np.ndarray) -> float:
    """The knee-sampling variance of a score over the whole test set, from the same score on two
    random halves of it (one pair per seed and cut, the same cut in every run).

    For a score that averages over knees (AUC, QWK and rank correlations nearly do), a half's knee
    variance is twice the whole set's and the halves are independent given the model, so
    ``E[(a - b)^2] = 4 x`` the whole set's knee variance. Works for any score, additive over knees
    or not, which :func:`knee_share` (per-knee differences) needs.
    """
    d = np.asarray(half_a, dtype=float) - np.asarray(half_b, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError("split_half_knee_variance: no finite pair of half scores")
    return float(np.mean(d**2) / 4)


def seed_equivalent_of_more_knees(share: float, factor: float = 2.0) -> float:
    """How many times today's seeds scoring every run on ``factor`` times the test knees is worth:
    the paired difference's variance falls to ``1 - share + share / factor`` of today's, which only
    ``1 / (1 - share + share / factor)`` times the seeds would otherwise buy."""
    if not 0.0 <= share <= 1.0 or factor < 1.0:
        raise ValueError(f"seed_equivalent_of_more_knees: share = {share!r} (expected 0..1), factor = {factor!r} (>= 1)")
    return 1.0 / (1.0 - share + share / factor)

