"""Known-answer tests of the convergence diagnostics on planted histories and predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oaprobe.analysis.convergence import history_diagnostics, prediction_diagnostics, run_diagnostics


def _history(losses, kept):
    return pd.DataFrame({"epoch": range(1, len(losses) + 1), "val_loss": losses,
                         "kept": [int(i + 1 == kept) for i in range(len(losses))]})


def test_kept_best_and_final_epochs():
    d = history_diagnostics(_history([1.2, 0.9, 1.04, 21.6], kept=4))
    assert (d["kept_epoch"], d["best_epoch"], d["epochs"]) == (4, 2, 4)
    assert d["kept_over_best"] == pytest.approx(24.0) and d["unstable"]
    d = history_diagnostics(_history([1.2, 0.9, 1.04, 21.6], kept=2))
    assert d["kept_over_best"] == 1.0 and not d["unstable"]


def test_history_without_kept_column_keeps_the_last_epoch():
    d = history_diagnostics(pd.DataFrame({"epoch": [1, 2], "val_loss": [1.0, 1.1]}))
    assert d["kept_epoch"] == 2 and d["kept_over_best"] == pytest.approx(1.1) and not d["unstable"]


def _test_rows(grades, pred_kl, p_oa):
    return pd.DataFrame({"split": "test", "kl": grades, "pred_kl": pd.array(pred_kl, dtype="Int64"), "p_oa": p_oa})


def test_below_majority_and_degenerate():
    grades = np.array([0] * 3 + [1] * 1 + [2] * 3 + [3] * 2 + [4] * 1)  # OA share 0.6
    always_oa = _test_rows(grades, [3] * 10, [0.9] * 10)
    d = prediction_diagnostics(always_oa)
    assert d["test_oa_accuracy"] == pytest.approx(0.6) and d["majority_rate"] == pytest.approx(0.6)
    assert not d["below_majority"]  # equal to the majority rate is not below it
    assert d["missing_grades"] == (0, 1, 2, 4) and d["degenerate"]  # each holds >= 10% of the knees
    worse = _test_rows(grades, list(grades), [0.1] * 10)
    assert prediction_diagnostics(worse)["below_majority"] and not prediction_diagnostics(worse)["degenerate"]


def test_single_oa_runs_are_never_degenerate():
    d = prediction_diagnostics(_test_rows([0, 2, 3], [pd.NA] * 3, [0.2, 0.7, 0.9]))
    assert d["missing_grades"] == () and not d["degenerate"] and d["test_oa_accuracy"] == 1.0


def test_run_diagnostics_flags_any():
    preds = pd.concat([_test_rows([0, 2, 3, 4], [0, 2, 3, 4], [0.1, 0.8, 0.9, 0.9]),
                       _test_rows([0], [4], [0.9]).assign(split="val")])
    row = run_diagnostics(_history([1.0, 2.0], kept=2), preds)
    assert row["unstable"] and row["flagged"] and not row["degenerate"] and row["test_oa_accuracy"] == 1.0
    assert not run_diagnostics(_history([1.0, 2.0], kept=1), preds)["flagged"]


def test_time_to_quality_accumulates_seconds_and_averages_seeds():
    from oaprobe.analysis.convergence import time_to_quality

    rows = []
    for seed, qwk in ((0, (0.2, 0.6)), (1, (0.4, 0.8))):
        for epoch, (secs, q) in enumerate(zip((10.0, 12.0), qwk), start=1):
            rows.append({"run_id": f"r{seed}", "backbone": "resnet3d", "mode": "dual", "seed": seed,
                         "epoch": epoch, "seconds": secs + seed, "val_kl_qwk": q, "val_oa_auc": 0.9})
    t = time_to_quality(pd.DataFrame(rows))
    q = t[t["metric"] == "val_kl_qwk"].set_index("epoch")
    assert q.loc[1, "seconds"] == pytest.approx(10.5) and q.loc[2, "seconds"] == pytest.approx(22.0 + 1.0)
    assert q.loc[2, "mean"] == pytest.approx(0.7) and q.loc[2, "sd"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert (q["n"] == 2).all() and len(t) == 4
