"""Known-answer tests of oaprobe.report.results.kl_confusion on hand-made predictions (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oaprobe.config import RunConfig
from oaprobe.report.results import kl_confusion
from oaprobe.report.study import Study
from oaprobe.training.runs import Run


def _run(mode: str, seed: int, truth: list[int], pred: list[float], backbone: str = "resnet3d",
         split: str = "test") -> Run:
    n = len(truth)
    preds = pd.DataFrame({"case_id": [f"K{i}" for i in range(n)], "split": split, "kl": truth,
                          "kl_clean": truth, "pred_kl": pd.array(pred, dtype="Int64")})
    cfg = RunConfig(manifest="m.csv", backbone=backbone, mode=mode, seed=seed)
    return Run(Path(f"{mode}{seed}"), cfg, {"run_id": f"{backbone}-{mode}-{seed}"}, pd.DataFrame(), preds, {})


def _study(*runs: Run) -> Study:
    return Study("smoke", Path("m.csv"), pd.DataFrame(), list(runs))


def test_counts_are_pooled_over_seeds_and_rows_normalised():
    study = _study(
        _run("dual", 0, [0, 0, 1, 4], [0, 1, 1, 3]),
        _run("dual", 1, [0, 2, 2], [0, 2, 3]),
        _run("single_kl", 0, [3, 3], [3, 3]),
        _run("single_oa", 0, [0, 1], [None, None]),  # no KL head: no rows
        _run("dual", 0, [1], [1], split="val"),  # another split: not counted
    )
    t = kl_confusion(study, truth="kl_clean")
    assert list(dict.fromkeys(t["mode"])) == ["single_kl", "dual"]  # the book's mode order, single-OA absent
    assert len(t) == 2 * 25 and set(t["n_runs"]) == {1, 2}
    dual = t[t["mode"] == "dual"].pivot(index="truth", columns="predicted", values="count").to_numpy()
    expected = np.zeros((5, 5), int)
    for a, b in [(0, 0), (0, 1), (1, 1), (4, 3), (0, 0), (2, 2), (2, 3)]:
        expected[a, b] += 1
    np.testing.assert_array_equal(dual, expected)
    share = t[t["mode"] == "dual"].pivot(index="truth", columns="predicted", values="share").to_numpy()
    np.testing.assert_allclose(share[0], [2 / 3, 1 / 3, 0, 0, 0])
    np.testing.assert_allclose(share[3], 0.0)  # an empty row stays 0
    np.testing.assert_allclose(share.sum(axis=1), [1, 1, 1, 0, 1])
    kl = t[(t["mode"] == "single_kl") & (t["count"] > 0)]
    assert kl[["truth", "predicted", "count", "share"]].values.tolist() == [[3, 3, 2, 1.0]]


def test_backbones_keep_their_study_order_and_a_missing_truth_is_a_clear_error():
    study = _study(_run("dual", 0, [0], [0], backbone="nnmamba"), _run("dual", 0, [1], [2]))
    t = kl_confusion(study, truth="kl")
    assert list(dict.fromkeys(t["backbone"])) == ["nnmamba", "resnet3d"]
    assert t.loc[(t["backbone"] == "resnet3d") & (t["count"] > 0), ["truth", "predicted"]].values.tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="no 'severity' column"):
        kl_confusion(study, truth="severity")
