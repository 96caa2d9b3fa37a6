"""Findings boxes and the convergence sentence, on planted tables."""

from __future__ import annotations

import pandas as pd

from oaprobe.report.sentences import describe_convergence, findings_box


def test_findings_box_is_a_myst_admonition():
    box = findings_box(["a", "b"])
    assert box.startswith(":::{admonition} What this chapter finds") and "- a\n- b" in box and box.endswith(":::")


def test_convergence_sentence_counts_the_flags():
    conv = pd.DataFrame({"unstable": [True, False, False], "below_majority": [False, False, True],
                         "degenerate": [False, False, True], "flagged": [True, False, True]})
    text = describe_convergence(conv)
    assert text.startswith("2 of 3 runs are flagged") and "1 below the OA majority rate" in text
    assert describe_convergence(conv.assign(unstable=False, below_majority=False, degenerate=False, flagged=False)).startswith("All 3 runs")
