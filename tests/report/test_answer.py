"""The answer page's table and sentences, on the shared smoke runs and on planted intervals."""

from __future__ import annotations

import pandas as pd
import pytest

from oaprobe.analysis.decision import DELTAS, decide, decide_with_flags
from oaprobe.report.answer import (
    QUESTIONS,
    answer_findings,
    answer_table,
    decided_count,
    describe_answer,
    describe_best_mode,
    describe_ceilings,
    describe_flag_rates,
    describe_perturbation,
    flag_rates,
    levels_for_figure,
    rule_sentences,
)
from oaprobe.report.stated import collect, strip_marks
from oaprobe.report.study import Study
from tests.report import smoke_study_runs


@pytest.fixture(scope="module")
def study(tmp_path_factory, smoke_manifest, volume_cache) -> Study:
    root, grid = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache)
    return Study.from_grid("smoke", smoke_manifest, grid, root)


def test_answer_rows_are_the_rule_on_the_paired_seeds(study):
    table = answer_table(study)
    assert set(table["question"]) == {"coarse", "fine"} and set(table["truth"]) == {"kl", "kl_clean"}
    seeds = study.paired_seeds(truth="kl_clean", metrics=["kl_qwk"])
    row = table[(table["question"] == "fine") & (table["truth"] == "kl_clean")].iloc[0]
    expected = decide(seeds["diff"], delta=DELTAS["kl_qwk"])
    assert row["mean"] == pytest.approx(expected["mean"]) and row["verdict_all"] == expected["verdict"]
    pm = study.point_metrics(truth="kl_clean")
    dual = pm[(pm["mode"] == "dual") & (pm["metric"] == "kl_qwk")]["value"].mean()
    assert row["dual"] == pytest.approx(dual) and row["n_seeds"] == len(study.seeds)
    text = describe_answer(row)
    assert f"{row['dual']:.3f}" in text and f"**{row['verdict']}**" in text and "over 2 seeds" in text


def test_paired_seeds_pair_dual_with_its_baseline_of_the_same_seed(study):
    seeds = study.paired_seeds(truth="kl", metrics=["oa_roc_auc", "kl_qwk"])
    pm = study.point_metrics(truth="kl").set_index(["mode", "seed", "metric"])["value"]
    for _, r in seeds.iterrows():
        assert r["a"] == pm[("dual", r["seed"], r["metric"])] and r["b"] == pm[(r["baseline"], r["seed"], r["metric"])]
    assert set(seeds[seeds["metric"] == "oa_roc_auc"]["baseline"]) == {"single_oa"}


def test_levels_for_the_figure(study):
    levels = levels_for_figure(study, "kl")
    assert set(levels["mode"]) == {"single_oa", "single_kl", "dual"} and (levels["n_seeds"] == len(study.seeds)).all()


def test_flag_rates_count_every_run_once(study):
    rates = flag_rates(study)
    assert rates["runs"].sum() == len(study.runs) and set(rates["mode"]) == {"single_oa", "single_kl", "dual"}
    text = describe_flag_rates(rates)
    assert ("No run" in text) == (rates["flagged"].sum() == 0) and "dual" in text


def _planted_answer() -> pd.DataFrame:
    """Two backbones x two questions x one truth, from per-seed differences chosen to give each verdict."""
    planted = [("resnet3d", "coarse", [0.05, 0.06, 0.055, 0.065]), ("nnmamba", "coarse", [0.001, -0.001, 0.002, 0.0]),
               ("resnet3d", "fine", [-0.2, -0.15, -0.18, -0.16]), ("nnmamba", "fine", [0.05, -0.06, 0.02, 0.01])]
    rows = []
    for b, q, d in planted:
        metric = QUESTIONS[q][0]
        out = decide_with_flags(d, [False] * len(d), DELTAS[metric])
        rows.append({"backbone": b, "question": q, "truth": "kl_clean", "metric": metric, "single": 0.5,
                     "dual": 0.5 + out["mean"], **out})
    return pd.DataFrame(rows)


def test_answer_findings_give_each_backbones_verdict():
    table = _planted_answer()
    assert list(table["verdict"]) == ["helps", "equivalent", "hurts", "inconclusive"]
    coarse, fine = answer_findings(table, "kl_clean")
    coarse, fine = strip_marks(coarse), strip_marks(fine)
    assert coarse.startswith("The coarse label (OA AUC), dual vs single-OA, clean grade, 4 seeds: ") and len(coarse.split()) < 40
    assert "ResNet3D **helps** (+0.058)" in coarse and "nnMamba **equivalent**" in coarse
    assert "ResNet3D **hurts**" in fine and "nnMamba **inconclusive**" in fine
    assert answer_findings(table, "kl") == []  # no rows against the observed labels here
    assert decided_count(table, "kl_clean") == (3, 4)


def test_describe_answer_gives_both_intervals_and_the_flagged_runs():
    row = _planted_answer().iloc[0]
    text = describe_answer(row)
    assert "**helps**" in text and "**" not in describe_answer(row, bold=False) and "single-OA 0.500" in text
    assert "95% CI" in text and "δ ±0.015" in text and "Means over the same 4 seeds" in text
    first = strip_marks(text).split(". ")[0]
    assert first.startswith("ResNet3D, OA AUC, dual vs single-OA, clean grade: ") and len(first.split()) < 40
    flagged = row.copy()
    flagged["n_flagged"], flagged["verdict_unflagged"] = 1, "inconclusive"
    assert "1 seed with a flagged run: helps with it, inconclusive without" in describe_answer(flagged)
    stated = dict(collect(text))
    assert stated["resnet3d: dual - single_oa | oa_roc_auc | kl_clean | 4 seeds | verdict"] == "helps, tested alone"
    assert stated["resnet3d: single_oa | oa_roc_auc | kl_clean | 4 seeds"] == "0.500"


def test_the_rule_is_declared_from_its_constants():
    text = " ".join(rule_sentences())
    assert "90% interval" in text and "95% interval" in text and f"±{DELTAS['kl_qwk']:g}" in text
    assert "Bonferroni" in text and "flag" in text


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
        "Best KL QWK against the observed labels: dual 0.600 ± 0.141 over 2 seeds; "
        "the linear probe on the input volumes reaches 0.250.")
    one = describe_best_mode(pm[pm["seed"] == 0], ceilings.iloc[:0], "kl_clean")
    assert one == "Best KL QWK against the clean grade: dual 0.500 over 1 seed."  # no sd, no probe
    assert describe_best_mode(pm, ceilings, "kl", metric="oa_f1") is None
    marked = describe_best_mode(pm.assign(backbone="m3t"), ceilings, "kl")  # the level, keyed as describe_answer keys it
    assert collect(marked) == [("m3t: dual | kl_qwk | kl | 2 seeds", "0.600")]


def test_describe_perturbation_counts_flips_and_names_what_was_not_retrained():
    rows = [("resnet3d", "helps", "helps"), ("nnmamba", "equivalent", "inconclusive"), ("m3t", "helps", None)]
    verdicts = pd.DataFrame([{"role": "primary", "backbone": b, "metric": "latent_order", "baseline": "single_kl",
                              "verdict": v, "verdict_perturbed": p,
                              "same_under_perturbation": None if p is None else v == p} for b, v, p in rows])
    text = describe_perturbation(verdicts, "note")
    assert "1 of 2 primary verdicts are the same (M3T not retrained yet)" in text
    assert "nnMamba" in text and "equivalent → inconclusive" in text
    observed = describe_perturbation(verdicts.assign(truth="kl"), "note")  # a flip names the truth it was scored on
    assert "vs single-KL, observed labels (equivalent → inconclusive)" in observed
    assert "not compared" in describe_perturbation(verdicts.assign(same_under_perturbation=None), "no file")


def test_claim_findings_say_why_a_test_set_carries_no_verdict():
    from oaprobe.report.answer import claim_findings

    rows = pd.DataFrame([{"claim": "metrics", "role": "primary", "truth": "kl_clean", "backbone": b, "metric": "kl_qwk",
                          "baseline": "single_kl", "n": 3, "mean": 0.01, "m": 1, "verdict": "inconclusive",
                          "reason": "only 7 test knees (a finding needs at least 20)", "method": ""}
                         for b in ("resnet3d", "m3t")])
    (bullet,) = claim_findings(rows)
    assert "0 of 2 decided. No verdict on this test set: only 7 test knees (a finding needs at least 20)." in bullet
    assert "Dual vs single-KL on the fine label (KL QWK), 3 seeds: ResNet3D **inconclusive** (+0.010)" in strip_marks(bullet)
    sentences = strip_marks(bullet).split(". ")
    assert max(len(x.split()) for x in sentences) < 40
