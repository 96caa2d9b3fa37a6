"""Findings boxes and the convergence sentence, on planted tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from oaprobe.report.sentences import describe_convergence, findings_box


def test_findings_box_is_a_myst_admonition():
    box = findings_box(["a", "b"])
    assert box.startswith(":::{admonition} What this chapter finds") and "- a\n- b" in box and box.endswith(":::")


def test_convergence_sentence_counts_the_flags():
    conv = pd.DataFrame({"unstable": [True, False, False], "below_majority": [False, False, True],
                         "degenerate": [False, False, True], "flagged": [True, False, True]})
    text = describe_convergence(conv)
    assert text.startswith("2 of 3 runs are flagged as failed training") and "1 below the OA majority rate" in text
    assert "; 1 never predict a frequent grade (degenerate" in text
    only_degenerate = describe_convergence(conv.assign(unstable=False, below_majority=False, flagged=False))
    assert only_degenerate.startswith("None of the 3 runs failed to train; 1 never predict")  # not counted as flagged
    assert describe_convergence(conv.assign(unstable=False, below_majority=False, degenerate=False, flagged=False)).startswith("All 3 runs")


def test_targets_sentence_names_what_is_missed():
    from oaprobe.report.sentences import describe_targets

    targets = pd.DataFrame({"target": ["runs below the OA majority rate", "seed sd of the QWK per backbone and mode"],
                            "value": [1, 0.03], "limit": ["0", "≤ 0.05"], "met": [False, True],
                            "failing": ["m3t dual seed 1", ""]})
    assert describe_targets(targets, "kl_clean") == (
        "The models meet 1 of the 2 convergence targets (scored against the clean grade); not met: "
        "runs below the OA majority rate: 1, needed 0 (m3t dual seed 1) (the methods page lists every run).")
    one_seed = targets.assign(value=[3, float("nan")], met=[True, False], failing=["", "a nan, b nan"])
    text = describe_targets(one_seed, "kl")
    assert "nan" not in text and "seed sd of the QWK per backbone and mode: not measurable (fewer than 2 seeds)" in text
    assert "a nan" not in text  # lists of unmeasurable runs stay in the methods page's table
    two = describe_targets(targets.assign(met=False), "kl")  # two targets missed: named on the methods page only
    assert two.endswith("; 2 are not met (the methods page gives each, with its value and runs).")
    assert describe_targets(targets.assign(met=True), "kl").endswith("2 of the 2 convergence targets (scored against the observed grade).")
    many = pd.concat([targets] * 2).assign(met=False)
    assert describe_targets(many, "kl").endswith("; 4 are not met (the methods page gives each, with its value and runs).")


def test_detectable_sentence_gives_the_range_over_backbones():
    from oaprobe.report.sentences import describe_detectable

    table = pd.DataFrame({"backbone": ["a", "b", "a", "b"], "metric": ["oa_roc_auc", "oa_roc_auc", "kl_accuracy", "kl_accuracy"],
                          "n_knees": [643] * 4, "knee_level": [0.021, 0.034, 0.05, 0.05],
                          "n_seeds": [3, 3, 3, 3], "over_seeds": [0.04, 0.09, 0.1, 0.12]})
    assert describe_detectable(table) == (
        "With 643 test knees, a knee-level paired test detects a dual-minus-single difference of OA AUC 0.021–0.034, "
        "KL accuracy 0.050 with 80% power at α = 0.05 (range over backbones); over 3 seeds, a paired t-test detects "
        "OA AUC 0.040–0.090, KL accuracy 0.100–0.120.")
    one_seed = describe_detectable(table.assign(n_seeds=1, over_seeds=np.nan))
    assert one_seed.endswith("; one seed allows no test across seeds.")
