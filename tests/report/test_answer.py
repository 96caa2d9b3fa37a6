"""The answer page's table and sentences, on the shared smoke runs and on planted intervals."""

from __future__ import annotations

import pandas as pd
import pytest

from oaprobe.report.answer import (QUESTIONS, VERDICTS, answer_findings, answer_table, describe_answer, describe_best_mode,
                                   describe_ceilings, levels_for_figure, verdict)
from oaprobe.report.study import Study
from tests.report import smoke_study_runs


@pytest.fixture(scope="module")
def study(tmp_path_factory, smoke_manifest, volume_cache) -> Study:
    root, grid = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache)
    return Study.from_grid("smoke", smoke_manifest, grid, root)


@pytest.mark.parametrize(("lo", "hi", "word"), [(0.001, 0.2, "helps"), (-0.2, -0.001, "hurts"), (-0.1, 0.1, "no evidence")])
def test_verdict_follows_the_interval(lo, hi, word):
    assert word in verdict(lo, hi)


def test_answer_rows_match_the_seed_level_tests(study):
    table = answer_table(study)
    assert set(table["question"]) == {"coarse", "fine"} and set(table["truth"]) == {"kl", "kl_clean"}
    seed = study.seed_level(truth="kl_clean", metrics=["kl_qwk"]).iloc[0]
    row = table[(table["question"] == "fine") & (table["truth"] == "kl_clean")].iloc[0]
    assert row["diff"] == pytest.approx(seed["mean"]) and row["ci_low"] == pytest.approx(seed["ci_low"], nan_ok=True)
    pm = study.point_metrics(truth="kl_clean")
    dual = pm[(pm["mode"] == "dual") & (pm["metric"] == "kl_qwk")]["value"].mean()
    assert row["dual"] == pytest.approx(dual) and row["n_seeds"] == len(study.seeds)
    text = describe_answer(row)
    assert f"{row['dual']:.3f}" in text and row["verdict"] in text


def test_levels_for_the_figure(study):
    levels = levels_for_figure(study, "kl")
    assert set(levels["mode"]) == {"single_oa", "single_kl", "dual"} and (levels["n_seeds"] == len(study.seeds)).all()


def _planted_answer() -> pd.DataFrame:
    """Two backbones x two questions x one truth, with intervals chosen to give each verdict."""
    rows = [("resnet3d", "coarse", 0.02, 0.01, 0.03), ("nnmamba", "coarse", -0.01, -0.05, 0.03),
            ("resnet3d", "fine", -0.04, -0.06, -0.02), ("nnmamba", "fine", 0.0, float("nan"), float("nan"))]
    return pd.DataFrame([{"backbone": b, "question": q, "truth": "kl_clean", "metric": QUESTIONS[q][0], "single": 0.5,
                          "dual": 0.5 + d, "diff": d, "ci_low": lo, "ci_high": hi, "n_seeds": 3, "verdict": verdict(lo, hi)}
                         for b, q, d, lo, hi in rows])


def test_answer_findings_count_the_verdicts():
    coarse, fine = answer_findings(_planted_answer(), "kl_clean")
    assert coarse.startswith("Dual vs single-OA on the coarse label") and "against the clean grade" in coarse
    assert "over 2 backbone(s) and 3 seed(s): dual helps: 1, no evidence either way: 1;" in coarse
    assert coarse.endswith("mean differences ResNet3D +0.020, nnMamba -0.010.")
    assert "dual hurts: 1, too few seeds for a verdict: 1;" in fine and "single-KL" in fine
    assert answer_findings(_planted_answer(), "kl") == []  # no rows against the observed labels here


def test_describe_answer_plain_for_a_fold():
    row = _planted_answer().iloc[0]
    assert "**dual helps**" in describe_answer(row) and "**" not in describe_answer(row, bold=False)
    assert "vs single-OA 0.500" in describe_answer(row)
    assert set(VERDICTS) == {verdict(0.1, 0.2), verdict(-0.2, -0.1), verdict(-0.1, 0.1), verdict(float("nan"), 1.0)}


def test_describe_ceilings_names_the_best_dual_model():
    levels = pd.DataFrame({"question": ["coarse", "coarse", "fine", "fine"], "backbone": ["ResNet3D", "nnMamba"] * 2,
                           "mode": "dual", "mean": [0.7, 0.8, 0.4, 0.3], "sd": 0.01, "n_seeds": 3})
    ceilings = pd.DataFrame({"ceiling": ["linear_probe", "oracle", "oracle"], "truth": ["kl_clean", "kl_clean", "kl"],
                             "oa_roc_auc": [0.6, 0.95, 0.9], "kl_qwk": [0.2, 0.9, 0.85]})
    text = describe_ceilings(levels, ceilings, "kl_clean")
    assert text == ("Best dual model against the clean grade: OA AUC 0.800 (nnMamba) against linear probe 0.600 and oracle "
                    "0.950; KL QWK 0.400 (ResNet3D) against linear probe 0.200 and oracle 0.900.")
    assert describe_ceilings(levels[levels["mode"] == "x"], ceilings, "kl") is None


def test_describe_best_mode_with_and_without_spread():
    pm = pd.DataFrame({"mode": ["dual", "dual", "single_kl", "single_kl"], "seed": [0, 1, 0, 1], "metric": "kl_qwk",
                       "value": [0.5, 0.7, 0.4, 0.4]})
    ceilings = pd.DataFrame({"ceiling": ["linear_probe"], "truth": ["kl"], "kl_qwk": [0.25]})
    assert describe_best_mode(pm, ceilings, "kl") == (
        "Best KL QWK against the observed labels: dual 0.600 ± 0.141 over 2 seed(s); "
        "the linear probe on the input volumes reaches 0.250.")
    one = describe_best_mode(pm[pm["seed"] == 0], ceilings.iloc[:0], "kl_clean")
    assert one == "Best KL QWK against the clean grade: dual 0.500 over 1 seed(s)."  # no sd, no probe
    assert describe_best_mode(pm, ceilings, "kl", metric="oa_f1") is None
