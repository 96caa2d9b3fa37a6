"""What a build's test set can carry: the smallest data a chapter states a finding on.

A tiny real-data build (a few dozen knees imported from an OAI-ZIB copy) gives intervals of NaN
and paired tests that "survive" an FDR correction on two knees. A chapter asks
:func:`finding_limit` first and, where it names a reason, says that reason instead of a finding.

The thresholds: with 20 test knees split 10/10 between the OA classes, the Hanley-McNeil standard
error of an AUC of 0.75 is 0.11, so its 95% interval spans about +-0.22, the whole gap between a
useless and a good model; fewer knees cannot tell them apart. A KL finding needs at least three
grades among the test knees (with two, a five-grade QWK or macro-F1 is a binary score renamed).

Example:
    >>> import pandas as pd
    >>> two = pd.DataFrame({"split": ["test", "test"], "kl": [0, 3], "oa": [0, 1]})
    >>> finding_limit(two)
    'only 2 test knees (a finding needs at least 20)'
"""

from __future__ import annotations

import math

import pandas as pd

from oaprobe.report.display import signed

#: fewest test knees a chapter states a finding (a verdict, a significant test) on
MIN_TEST_KNEES = 20
#: fewest knees of each OA class among them (an AUC needs both classes)
MIN_PER_OA_CLASS = 5
#: fewest distinct KL grades among them for a KL finding
MIN_TEST_GRADES = 3


def finding_limit(table: pd.DataFrame, split: str = "test", truth: str = "kl") -> str | None:
    """Why the ``split`` knees of a manifest table (columns ``split``, ``truth``) cannot carry a
    finding, in words; None when they can."""
    knees = table[table["split"] == split]
    n = len(knees)
    if n < MIN_TEST_KNEES:
        return f"only {n} {split} knee{'s' if n != 1 else ''} (a finding needs at least {MIN_TEST_KNEES})"
    oa = (knees[truth].astype(int) >= 2).astype(int)
    fewest = int(min((oa == 1).sum(), (oa == 0).sum()))
    if fewest < MIN_PER_OA_CLASS:
        return (f"{fewest} {split} knee{'s' if fewest != 1 else ''} in the rarer OA class "
                f"(an OA finding needs at least {MIN_PER_OA_CLASS} of each)")
    grades = int(knees[truth].nunique())
    if grades < MIN_TEST_GRADES:
        return f"the {split} knees hold {grades} KL grade(s) (a KL finding needs at least {MIN_TEST_GRADES})"
    return None


def interval_text(low: float, high: float, reason: str = "too few knees to resample") -> str:
    """``+0.010 to +0.090``, or ``no interval (<reason>)`` where a bound is not a number."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"no interval ({reason})"
    return f"{signed(low)} to {signed(high)}"
