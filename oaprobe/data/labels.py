"""KL grade priors, the OA label, and the clean -> observed KL label-noise model.

A Kellgren-Lawrence (KL) grade read by a human is noisy: readers disagree mostly by one
grade, and least reliably at the KL1/KL2 boundary (which is also the OA boundary). The
synthetic cohort knows each knee's clean grade, so the noise can be set and measured.

The noise model is a continuous-time Markov chain on the grades 0..4 that only jumps between
neighbouring grades: ``P(strength) = expm(strength * Q)`` with a symmetric tridiagonal rate
matrix ``Q`` whose rate is largest at the 1/2 boundary. This gives, for free, a matrix that is
the identity at strength 0, row-stochastic at every strength, made mostly of one-grade
confusions (two-grade confusions appear only at second order), and monotone: every diagonal
entry falls as the strength grows (``Q`` is symmetric, so ``P`` is a sum of decaying modes).

The rates are calibrated so that the default ``label_noise = 1.0`` gives an unweighted Cohen's
kappa of 0.60 between clean and observed KL on the OAI-ZIB prior, inside the human-reader
range (0.52 site vs central reader, 0.62 adjudicator vs central). Population kappa per
strength (:func:`expected_kappa`):

==========  =========  =========
strength    OAI-ZIB    OAI
==========  =========  =========
0           1.00       1.00
0.5         0.76       0.72
1           0.60       0.55
2           0.41       0.35
==========  =========  =========

Example:
    >>> import numpy as np
    >>> P = noise_matrix(1.0)
    >>> P.shape, bool(np.allclose(P.sum(axis=1), 1.0))
    ((5, 5), True)
    >>> bool(np.allclose(noise_matrix(0.0), np.eye(5)))
    True
    >>> oa_from_kl([0, 1, 2, 4]).tolist()
    [0, 0, 1, 1]
    >>> round(expected_kappa(1.0, KL_PRIOR_OAIZIB), 2)
    0.6
    >>> observe_kl(np.array([0, 2, 4]), 0.0, np.random.default_rng(0)).tolist()
    [0, 2, 4]
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from scipy.linalg import expm

from oaprobe.facts import N_KL

#: OAI baseline KL distribution (12,751 knees): KL0..KL4 = 46.3 / 21.2 / 20.1 / 10.2 / 2.3 %.
_OAI_PERCENT = np.array([46.3, 21.2, 20.1, 10.2, 2.3])  # sums to 100.1 (rounding)
KL_PRIOR_OAI: np.ndarray = _OAI_PERCENT / _OAI_PERCENT.sum()

#: OAI-ZIB KL counts of the predefined train (82/46/86/111/58) + test (21/12/22/28/15) knees.
KL_COUNTS_OAIZIB: tuple[int, ...] = (103, 58, 108, 139, 73)
KL_PRIOR_OAIZIB: np.ndarray = np.array(KL_COUNTS_OAIZIB, dtype=float) / sum(KL_COUNTS_OAIZIB)

#: Named priors as used by ``CohortConfig.kl_prior``.
KL_PRIORS: dict[str, np.ndarray] = {"oai": KL_PRIOR_OAI, "oaizib": KL_PRIOR_OAIZIB}

#: Jump rates between neighbouring grades (0/1, 1/2, 2/3, 3/4) at strength 1; the 1/2
#: boundary is twice as unreliable as 0/1 and 2/3. Calibrated to kappa 0.60 on OAI-ZIB.
BOUNDARY_RATES: tuple[float, float, float, float] = (0.256, 0.512, 0.256, 0.179)


def kl_prior(name: str) -> np.ndarray:
    """Return a copy of the named KL prior (``"oai"`` or ``"oaizib"``), summing to 1.

    Raises:
        ValueError: naming the unknown prior and the valid names.
    """
    if name not in KL_PRIORS:
        raise ValueError(f"unknown KL prior {name!r}; expected one of {sorted(KL_PRIORS)}")
    return KL_PRIORS[name].copy()


def _check_kl(kl: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(kl)
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() > 4):
        bad = arr.ravel()[~np.isin(arr.ravel(), np.arange(N_KL))][:5]
        raise ValueError(f"{what}: KL grades must be integers 0-4, got {bad.tolist()}")
    return arr.astype(np.int64)


def oa_from_kl(kl: Sequence[int] | np.ndarray) -> np.ndarray:
    """OA label (int 0/1) from KL grades: OA is present when KL >= 2.

    Raises:
        ValueError: if a grade lies outside the integers 0-4.
    """
    return (_check_kl(np.asarray(kl), "oa_from_kl") >= 2).astype(np.int64)


def noise_matrix(strength: float) -> np.ndarray:
    """Confusion matrix ``P[clean, observed]`` of the KL label noise at ``strength`` >= 0.

    Row ``k`` is the distribution of the observed grade given clean grade ``k``.

    Raises:
        ValueError: if ``strength`` is negative or not finite.
    """
    if not np.isfinite(strength) or strength < 0:
        raise ValueError(f"label-noise strength must be a finite number >= 0, got {strength!r}")
    return _noise_matrix(float(strength)).copy()


@functools.lru_cache(maxsize=64)
def _noise_matrix(strength: float) -> np.ndarray:
    rates = np.zeros((N_KL, N_KL))
    for b, r in enumerate(BOUNDARY_RATES):
        rates[b, b + 1] = rates[b + 1, b] = r
    rates -= np.diag(rates.sum(axis=1))
    P = expm(strength * rates)
    P = np.clip(P, 0.0, None)  # remove -1e-17 round-off
    return P / P.sum(axis=1, keepdims=True)


def expected_kappa(strength: float, prior: Sequence[float] | np.ndarray) -> float:
    """Population unweighted Cohen's kappa between clean and observed KL.

    ``prior`` is the clean-grade distribution; the observed marginal is ``prior @ P``.
    """
    p = np.asarray(prior, dtype=float)
    p = p / p.sum()
    P = noise_matrix(strength)
    p_obs_agree = float(np.sum(p * np.diag(P)))
    p_chance = float(np.sum(p * (p @ P)))
    return (p_obs_agree - p_chance) / (1.0 - p_chance)


def observe_kl(
    kl_clean: Sequence[int] | np.ndarray, strength: float, rng: np.random.Generator
) -> np.ndarray:
    """Draw observed (noisy) KL grades for clean grades, one independent draw per knee.

    Args:
        kl_clean: clean grades 0-4 (any shape).
        strength: noise strength (0 returns the clean grades unchanged).
        rng: the random generator (the only source of randomness).

    Returns:
        int64 array of observed grades, same shape as ``kl_clean``.
    """
    clean = _check_kl(np.asarray(kl_clean), "observe_kl")
    cdf = np.cumsum(noise_matrix(strength), axis=1)
    cdf[:, -1] = 1.0
    u = rng.random(clean.shape)
    observed = (u[..., None] >= cdf[clean][..., :-1]).sum(axis=-1)
    return observed.astype(np.int64)
