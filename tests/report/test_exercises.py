"""Tests of oaprobe.report.exercises: the seed-count rule, adjacent confusions, answers from real runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from oaprobe.report.exercises import Exercises, adjacent_confusions, seeds_for_halfwidth
from oaprobe.report.sentences import signed
from oaprobe.report.study import Study
from tests.report import smoke_study_runs


def _halfwidth(sd: float, n: int) -> float:
    lo, hi = stats.t.interval(0.95, n - 1, loc=0.0, scale=sd / np.sqrt(n))
    return (hi - lo) / 2


@pytest.mark.parametrize(("sd", "halfwidth"), [(0.02, 0.02), (0.05, 0.01), (0.013, 0.02), (0.1, 0.01)])
def test_seeds_for_halfwidth_is_the_smallest_n(sd, halfwidth):
    n = seeds_for_halfwidth(sd, halfwidth)
    assert _halfwidth(sd, n) < halfwidth
    assert n == 2 or _halfwidth(sd, n - 1) >= halfwidth


def test_seeds_for_halfwidth_known_values_and_limit():
    assert seeds_for_halfwidth(0.02, 0.02) == 7
    assert seeds_for_halfwidth(0.0, 0.01) == 2
    assert seeds_for_halfwidth(1.0, 0.001, max_seeds=50) is None


def test_adjacent_confusions_on_planted_predictions():
    y = np.array([0, 0, 1, 1, 1, 2, 2, 3, 4, 4])
    pred = np.array([1, 0, 0, 2, 1, 1, 2, 4, 3, 4])
    t = adjacent_confusions(y, pred).set_index("boundary")
    assert list(t.index) == ["0/1", "1/2", "2/3", "3/4"]
    assert t["knees"].tolist() == [5, 5, 3, 3]
    assert t["swapped"].tolist() == [2, 2, 0, 2]  # 0->1, 1->0 | 1->2, 2->1 | - | 3->4, 4->3
    assert t.loc["3/4", "rate"] == pytest.approx(2 / 3) and t.loc["2/3", "rate"] == 0
    empty = adjacent_confusions(np.array([0]), np.array([0]))
    assert empty["rate"].tolist() == [0.0, 0.0, 0.0, 0.0]  # no division by zero


@pytest.fixture(scope="module")
def exercises(tmp_path_factory, smoke_manifest, volume_cache) -> Exercises:
    root, grid = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache)
    _, stacked = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache, modes=["dual"],
                                  dual_variant="stacked")
    main = Study.from_grid("smoke", smoke_manifest, grid, root)
    return Exercises("smoke", main, Study.from_grid("smoke", smoke_manifest, stacked, root), None)


def _test_auc(run) -> float:
    t = run.predictions[run.predictions["split"] == "test"]
    return roc_auc_score(t["oa"], t["p_oa"])


def test_stacked_vs_parallel_states_each_seeds_difference(exercises):
    text = exercises.stacked_vs_parallel()
    diffs = [_test_auc(exercises.stacked.select(seed=s)[0]) - _test_auc(exercises.main.select(mode="dual", seed=s)[0])
             for s in (0, 1)]
    assert text.startswith(f"oa_roc_auc: stacked minus parallel = {signed(diffs[0])} [")
    assert f", {signed(diffs[1])} [" in text and "over 2 seed(s)" in text and "kl_qwk: stacked minus parallel" in text


def test_hardest_boundary_names_the_worst_pair(exercises):
    test = pd.concat(r.predictions[r.predictions["split"] == "test"] for r in exercises.main.select(mode="dual"))
    y, pred = test["kl_clean"].astype(int).to_numpy(), test["pred_kl"].astype(int).to_numpy()
    rates = {}
    for g in range(4):
        pair = (y == g) | (y == g + 1)
        swapped = ((y == g) & (pred == g + 1)) | ((y == g + 1) & (pred == g))
        rates[f"{g}/{g + 1}"] = swapped.sum() / max(pair.sum(), 1)
    worst = max(rates, key=rates.get)  # the first of equal rates, as a stable sort keeps
    text = exercises.hardest_boundary()
    assert text.startswith(f"Against the clean grade, the dual model swaps the {worst} pair most often")
    assert "The label-noise model (strength 1.0) confuses" in text


def test_seeds_needed_uses_the_seed_spread(exercises):
    sl = exercises.main.seed_level(truth="kl", metrics=["oa_roc_auc"])
    sd = float(sl["sd"].iloc[0])
    text = exercises.seeds_needed(metric="oa_roc_auc", halfwidth=0.02)
    assert f"dual-minus-single-OA difference in oa_roc_auc is {sd:.3f} (over 2 seeds)" in text
    assert "dual-minus-single-KL difference in kl_accuracy" in exercises.seeds_needed()
    n = seeds_for_halfwidth(sd, 0.02)
    assert (f"needs {n} seeds" if n is not None else "needs more than 1000 seeds") in text


def test_no_noise_free_cohort_answer(exercises):
    assert exercises.noise_free_answer().startswith("This build has no noise-free cohort")
    assert set(exercises.answers()) == {"ex_stacked", "ex_boundary", "ex_seeds", "ex_noise0"}
