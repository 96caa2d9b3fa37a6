"""Tests of oaprobe.report.sentences: verdicts from planted result rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oaprobe.report.sentences import (
    describe_paired,
    describe_seed_level,
    describe_trend,
    describe_verdicts,
    dual_is_better,
    plural,
    signed,
    tally,
)
from oaprobe.report.stated import collect, strip_marks


def _paired(metric="kl_qwk", diff=0.05, significant=True, **extra):
    return {"backbone": "resnet3d", "metric": metric, "diff": diff, "ci_low": diff - 0.04, "ci_high": diff + 0.04,
            "q_bh": 0.01 if significant else 0.4, "significant": significant, **extra}


def test_signed_and_direction():
    assert signed(0.05) == "+0.050" and signed(-0.0004) == "-0.0004" and signed(-0.00004) == "0.000" == signed(0.0)
    assert "-0.000" not in signed(-1e-9) and signed(float("nan")) == "–"
    assert dual_is_better("kl_qwk", 0.1) and not dual_is_better("kl_qwk", -0.1)
    assert dual_is_better("kl_mae", -0.1) and not dual_is_better("kl_mae", 0.1)


@pytest.mark.parametrize(
    ("metric", "diff", "significant", "verdict"),
    [
        ("kl_qwk", 0.05, True, "dual is better, and the difference survives"),
        ("oa_roc_auc", -0.05, True, "dual is worse, and the difference survives"),
        ("kl_mae", -0.2, True, "dual is better"),
        ("kl_mae", 0.2, True, "dual is worse"),
        ("kl_qwk", 0.05, False, "does not survive the FDR correction"),
    ],
)
def test_describe_paired_verdicts(metric, diff, significant, verdict):
    text = describe_paired(_paired(metric, diff, significant))
    assert verdict in text
    from oaprobe.report.display import readable_name

    assert text.startswith(f"ResNet3D, {readable_name(metric)}: dual minus single = {signed(diff)} ")
    assert f"95% CI {signed(diff - 0.04)} to {signed(diff + 0.04)}" in text


def test_describe_paired_names_the_seed_when_given():
    assert describe_paired(_paired(seed=2)).startswith("ResNet3D (seed 2), KL QWK")
    assert "(seed" not in describe_paired(_paired(seed=np.nan))


def _seed_row(diffs=(0.03, 0.05, 0.04, 0.06, 0.045), metric="kl_qwk", m=1):
    from oaprobe.analysis.decision import DELTAS, LOWER_IS_BETTER, decide

    out = decide(diffs, DELTAS[metric], m=m, lower_is_better=metric in LOWER_IS_BETTER)
    return {"backbone": "m3t", "metric": metric, "baseline": "single_kl", **out}


def test_describe_seed_level_states_the_rule():
    text = strip_marks(describe_seed_level(_seed_row(), "kl_clean"))
    assert text.startswith("M3T, KL QWK, dual vs single-KL, clean grade: +0.045 over 5 seeds (95% CI ")
    assert "δ ±0.03, tested alone" in text and text.endswith(": helps.") and len(text.split()) < 40
    assert strip_marks(describe_seed_level(_seed_row(diffs=(-0.03, -0.05, -0.04, -0.06, -0.045)))).endswith(": hurts.")
    same = strip_marks(describe_seed_level(_seed_row(diffs=(0.001, -0.002, 0.0, 0.002, -0.001))))
    assert same.endswith(": equivalent.") and "90% CI" in same
    assert "Bonferroni over 18" in describe_seed_level(_seed_row(m=18))


def test_equivalent_with_an_interval_that_excludes_0_says_the_difference_is_real():
    text = strip_marks(describe_seed_level(_seed_row(diffs=(0.010, 0.012, 0.011, 0.009, 0.0105)), "kl"))
    assert "equivalent (a real difference of +0.011, but smaller than δ ±0.03)" in text


def test_verdict_sentences_carry_their_quantity():
    stated = dict(collect(describe_seed_level(_seed_row(), "kl_clean")))
    key = "m3t: dual - single_kl | kl_qwk | kl_clean | 5 seeds"
    assert stated == {key + " | mean": "+0.045", key + " | verdict": "helps, tested alone"}


def test_describe_seed_level_lower_is_better():
    assert strip_marks(describe_seed_level(_seed_row(diffs=(-0.1, -0.12, -0.11), metric="kl_mae"))).endswith(": helps.")


def test_describe_verdicts_and_plurals():
    table = pd.DataFrame([_seed_row(), _seed_row(diffs=(0.05, -0.06, 0.01))])
    table["m"] = 2
    assert describe_verdicts(table, "two comparisons") == (
        "Of 2 comparisons in two comparisons (5 seeds, Bonferroni over 2): 1 helps, 1 inconclusive.")
    assert plural(1, "seed") == "1 seed" and plural(3, "analysis", "analyses") == "3 analyses"


def test_tally_counts_direction_per_metric():
    family = pd.DataFrame({
        "metric": ["kl_qwk", "kl_mae", "kl_mae", "oa_roc_auc", "kl_accuracy"],
        "diff": [0.1, -0.1, 0.1, -0.05, 0.2],
        "significant": [True, True, True, True, False],
    })
    assert tally(family) == {"tests": 5, "significant": 4, "dual_better": 2, "dual_worse": 2}
    assert tally(family.assign(significant=False)) == {"tests": 5, "significant": 0, "dual_better": 0, "dual_worse": 0}


def test_describe_trend():
    row = {"comparison": "dual − single_kl: kl_qwk", "metric": "kl_qwk", "baseline": "single_kl", "slope": 0.04,
           "ci_low": 0.01, "ci_high": 0.07, "p": 0.01, "m": 3, "alpha": 0.05 / 3, "n_seeds": 4, "n_levels": 3,
           "verdict": "grows"}
    text = strip_marks(describe_trend(row))
    assert text.startswith("KL QWK gain of dual over single-KL, clean grade, 4 seeds at 3 strengths: slope +0.040 per noise")
    assert "(1 = the cohort's default noise; 98.3% CI +0.010 to +0.070, Bonferroni over 3)" in text
    assert text.endswith("the gain grows.") and len(text.split()) < 40
    assert strip_marks(describe_trend({**row, "verdict": "inconclusive"})).endswith(": inconclusive.")


def test_one_seed_and_one_noise_level_print_no_nan():
    one = strip_marks(describe_seed_level(_seed_row(diffs=(0.3,))))
    assert "nan" not in one and "+0.300 over 1 seed (no interval; δ ±0.03" in one
    trend = describe_trend({"comparison": "dual − single_kl: kl_qwk", "metric": "kl_qwk", "baseline": "single_kl",
                            "slope": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan})
    assert trend == ("KL QWK gain of dual over single-KL, clean grade: too few noise strengths or seeds for a trend: "
                     "inconclusive.")
