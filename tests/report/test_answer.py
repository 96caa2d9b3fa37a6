"""The answer page's table and sentences, on the shared smoke runs and on planted intervals."""

from __future__ import annotations

import pytest

from oaprobe.report.answer import answer_table, describe_answer, levels_for_figure, verdict
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
