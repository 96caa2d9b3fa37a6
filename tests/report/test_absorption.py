"""Extreme-grade absorption evidence on planted runs: known shares, degenerate runs as a tail, lambda."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from oaprobe.report.absorption import (
    absorption_by_lambda,
    absorption_runs,
    absorption_summary,
    degenerate_vs_rest,
    describe_absorption,
)
from oaprobe.report.stated import collect, strip_marks


def _run(mode: str, seed: int, absorbed: int, oa_weight: float = 1.0) -> SimpleNamespace:
    """A run over 10 KL0 and 10 KL4 test knees (and 10 of KL 1-3), ``absorbed`` of each extreme moved."""
    true = np.repeat([0, 4, 1, 2, 3], 10)
    pred = true.copy()
    pred[:absorbed] = 1
    pred[10:10 + absorbed] = 3
    preds = pd.DataFrame({"split": "test", "kl_clean": true, "pred_kl": pred})
    config = SimpleNamespace(backbone="resnet3d", mode=mode, seed=seed, oa_weight=oa_weight, label_smoothing=0.0)
    return SimpleNamespace(run_id=f"{mode}-{seed}-{oa_weight}", config=config, predictions=preds)


def test_absorption_shares_are_the_planted_ones():
    runs = [_run("single_kl", 0, 2), _run("dual", 0, 5), _run("dual", 1, 10)]
    conv = pd.DataFrame({"run_id": [r.run_id for r in runs], "degenerate": [False, False, True]})
    table = absorption_runs(runs, conv, None, "kl_clean")
    assert table["extreme_absorption"].tolist() == pytest.approx([0.2, 0.5, 1.0])
    assert table["kl0_as_kl1"].tolist() == pytest.approx([0.2, 0.5, 1.0])
    split = degenerate_vs_rest(table)
    assert (split["dual_degenerate"], split["dual_other"], split["single_kl"]) == pytest.approx((1.0, 0.5, 0.2))
    summary = absorption_summary(table).set_index("mode")
    assert summary.loc["dual", "runs"] == 2 and summary.loc["dual", "degenerate"] == 1


def test_lambda_trend_and_the_sentence_follow_the_verdicts():
    runs = [_run("single_kl", 0, 1), _run("dual", 0, 3, 1.0), _run("dual", 0, 6, 4.0)]
    conv = pd.DataFrame({"run_id": [r.run_id for r in runs], "degenerate": False})
    table = absorption_runs(runs, conv, None, "kl_clean")
    lam = absorption_by_lambda(table).set_index("oa_weight")["extreme_absorption"]
    assert lam.to_dict() == pytest.approx({0.0: 0.1, 1.0: 0.3, 4.0: 0.6})
    verdicts = pd.DataFrame({"metric": ["extreme_absorption"], "baseline": ["single_kl"], "backbone": ["resnet3d"],
                             "mean": [0.2], "verdict": ["hurts"], "n": [3], "m": [8], "truth": ["kl_clean"]})
    text = describe_absorption(table, verdicts, absorption_by_lambda(table))
    assert "every backbone" in text and "λ 4 0.60" in text
    # the claim's verdict as the answer page states it (metric, truth, seeds; marked with its key)
    assert "Extreme-grade absorption, dual vs single-KL, clean grade, 3 seeds: ResNet3D hurts (+0.200)" in strip_marks(text)
    assert ("resnet3d: dual - single_kl | extreme_absorption | kl_clean | 3 seeds | verdict", "hurts, Bonferroni over 8") in collect(text)
    assert "On no backbone" in describe_absorption(table, verdicts.assign(verdict="equivalent"))
