"""Known answers of the small-data guards."""

from __future__ import annotations

import pandas as pd

from oaprobe.report.guards import MIN_TEST_KNEES, finding_limit, interval_text


def _knees(grades: list[int], split: str = "test") -> pd.DataFrame:
    return pd.DataFrame({"split": split, "kl": grades})


def test_a_balanced_test_set_of_the_minimum_size_carries_findings():
    grades = [0, 1, 2, 3, 4] * (MIN_TEST_KNEES // 5)
    assert finding_limit(_knees(grades)) is None
    assert finding_limit(pd.concat([_knees(grades), _knees([0, 1], "train")])) is None


def test_each_reason_is_named():
    assert finding_limit(_knees([0, 4])) == "only 2 test knees (a finding needs at least 20)"
    assert finding_limit(_knees([0, 4], "train")) == "only 0 test knees (a finding needs at least 20)"
    one_oa = [0] * 17 + [1] * 2 + [3]
    assert finding_limit(_knees(one_oa)).startswith("1 test knee in the rarer OA class")
    two_grades = [0] * 10 + [3] * 10
    assert finding_limit(_knees(two_grades)) == "the test knees hold 2 KL grade(s) (a KL finding needs at least 3)"


def test_interval_text_names_the_reason_instead_of_nan():
    assert interval_text(0.01, 0.09) == "+0.010 to +0.090"
    assert interval_text(float("nan"), 0.2) == "no interval (too few knees to resample)"
    assert interval_text(float("nan"), float("nan"), "2 test knees") == "no interval (2 test knees)"
