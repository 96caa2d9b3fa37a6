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


# ------------------------------------------------------------------ the build's convergence targets
def _planted_build():
    """Two cells of 3 seeds with planted QWK / AUC, one below-majority run; probe QWK 0.70."""
    from oaprobe.analysis.convergence import quality_targets

    qwk = {("resnet3d", "single_kl"): [0.80, 0.82, 0.84], ("resnet3d", "dual"): [0.70, 0.80, 0.90]}
    auc = {("resnet3d", "single_kl"): [0.90, 0.91, 0.92], ("resnet3d", "dual"): [0.93, 0.93, 0.93]}
    long = [{"backbone": b, "mode": m, "seed": s, "metric": name, "value": v}
            for name, table in (("kl_qwk", qwk), ("oa_roc_auc", auc)) for (b, m), vals in table.items()
            for s, v in enumerate(vals)]
    conv = pd.DataFrame([{"backbone": b, "mode": m, "seed": s, "kept_over_best": 1.0 + 0.01 * s, "unstable": False,
                          "below_majority": (m, s) == ("dual", 2), "degenerate": False}
                         for (b, m) in qwk for s in range(3)])
    return quality_targets(conv, pd.DataFrame(long), probe_qwk=0.70).set_index("target")


def test_quality_targets_known_answers():
    t = _planted_build()
    flags = t.loc["runs below the OA majority rate"]
    assert flags["value"] == 1 and not flags["met"] and flags["failing"] == "ResNet3D dual seed 2"
    assert t.filter(like="never predicting", axis=0)["met"].all()
    assert t.loc["kept validation loss over the run's best", "value"] == pytest.approx(1.02)
    sd = t.loc["seed sd of the QWK per backbone and mode"]
    assert sd["value"] == pytest.approx(np.std([0.7, 0.8, 0.9], ddof=1)) and not sd["met"]
    assert sd["failing"] == "ResNet3D dual 0.100"  # single_kl's sd 0.02 meets the 0.05
    assert t.loc["seed sd of the OA AUC per backbone and mode", "met"]  # 0.01 and 0
    margin = t.loc["mean QWK of every KL model over the linear probe's"]
    assert margin["value"] == pytest.approx(0.10) and margin["met"]  # both cells' mean is 0.80 or more
    best = t.loc["mean QWK of the best backbone and mode"]
    assert best["value"] == pytest.approx(0.82) and not best["met"] and best["failing"] == "ResNet3D single-KL 0.820"


def test_quality_targets_need_two_seeds_for_a_spread():
    from oaprobe.analysis.convergence import quality_targets

    one = pd.DataFrame([{"backbone": "m3t", "mode": "dual", "seed": 0, "metric": m, "value": 0.9}
                        for m in ("kl_qwk", "oa_roc_auc")])
    conv = pd.DataFrame([{"backbone": "m3t", "mode": "dual", "seed": 0, "kept_over_best": 1.0, "unstable": False,
                          "below_majority": False, "degenerate": False}])
    t = quality_targets(conv, one, probe_qwk=0.5).set_index("target")
    assert not t.loc["seed sd of the QWK per backbone and mode", "met"]  # NaN sd: not shown to be small
    assert t.loc["mean QWK of the best backbone and mode", "met"]
