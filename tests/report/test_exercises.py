"""Tests of oaprobe.report.exercises: the pure helpers on planted tables, the answers on planted
beyond / label-noise results, the answers from real runs, and the chapter's headings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from IPython.display import Markdown
from scipy import stats
from sklearn.metrics import roc_auc_score

from oaprobe.analysis.decision import DELTAS, decide, seeds_needed
from oaprobe.report.beyond import BeyondStudy, describe_comparison
from oaprobe.report.exercises import (
    EXERCISES,
    Answer,
    Exercises,
    adjacent_confusions,
    best_and_rival,
    combine,
    epoch_summary,
    gap,
    interval_clause,
    largest_gain,
    top_region,
    trend_clause,
    variant_title,
)
from oaprobe.report.noise import NoiseStudy
from oaprobe.report.saliency import saliency_enrichment, sanity_summary
from oaprobe.report.sentences import describe_trend, rule_clause, signed
from oaprobe.report.stated import strip_marks
from oaprobe.report.study import Study
from tests.report import smoke_study_runs

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "exercises.ipynb"


def _t_interval(x: list[float]) -> tuple[float, float]:
    a = np.asarray(x, float)
    return stats.t.interval(0.95, a.size - 1, loc=a.mean(), scale=a.std(ddof=1) / np.sqrt(a.size))


# ---------------------------------------------------------------------------------- pure helpers
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


def _row(n, mean, lo=np.nan, hi=np.nan):
    return {"n_seeds": n, "mean": mean, "ci_low": lo, "ci_high": hi}


def test_interval_clause_reads_a_level_against_its_null():
    assert interval_clause(_row(3, 0.02, -0.01, 0.05)) == (
        "mean +0.020 over 3 seeds (95% CI -0.010 to +0.050): the interval covers 0", "open")
    assert interval_clause(_row(3, 0.04, 0.01, 0.07)) == (
        "mean +0.040 over 3 seeds (95% CI +0.010 to +0.070): the interval lies above 0", "clear")
    assert interval_clause(_row(5, -0.04, -0.07, -0.01))[0].endswith("the interval lies below 0")
    assert interval_clause(_row(1, 0.3)) == ("+0.300 from a single seed, which gives no interval", "open")
    assert interval_clause(_row(3, 0.0)) == ("0.000 in each of the 3 seeds", "open")
    assert interval_clause(_row(3, 0.1)) == ("+0.100 in each of the 3 seeds", "clear")
    text, status = interval_clause(_row(4, 3.0, 1.5, 4.5), null=1.0, unit="knee", fmt=lambda x: f"{x:.2f}")
    assert (text, status) == ("mean 3.00 over 4 knees (95% CI 1.50 to 4.50): the interval lies above 1", "clear")
    assert interval_clause(_row(4, 1.2, 0.8, 1.6), null=1.0)[1] == "open"


def test_gap_is_the_rule_on_the_per_seed_difference():
    wide = pd.DataFrame({"a": [0.5, 0.7, 0.6, 0.9], "b": [0.4, 0.5, 0.5, np.nan]}, index=[0, 1, 2, 3])
    row = gap(wide, "a", "b", "kl_qwk", m=2)
    lo, hi = stats.t.interval(1 - 0.025, 2, loc=0.4 / 3, scale=np.std([0.1, 0.2, 0.1], ddof=1) / np.sqrt(3))
    assert row["n_seeds"] == 3 and row["mean"] == pytest.approx(0.4 / 3)  # seed 3 lacks b: left out
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi)) and row["delta"] == DELTAS["kl_qwk"]
    text, status = rule_clause(row)
    assert text.startswith("+0.133 over 3 seeds (97.5% CI") and "Bonferroni over 2)" in text
    assert status == ("open" if row["verdict"] == "inconclusive" else "clear")


def test_best_and_rival_on_planted_lambdas():
    wide = pd.DataFrame({0.25: [0.40, 0.41], 1.0: [0.50, 0.52], 4.0: [0.60, 0.62]})
    assert best_and_rival(wide, reference=1.0) == (4.0, 1.0)  # the best, against the book's lambda
    wide[1.0] = [0.70, 0.72]
    assert best_and_rival(wide, reference=1.0) == (1.0, 4.0)  # the reference is best: against the runner-up


def test_largest_gain_and_top_region_pick_the_maximum():
    sl = pd.DataFrame({"backbone": ["a", "b", "c", "a"], "metric": ["kl_qwk", "kl_qwk", "kl_qwk", "oa_roc_auc"],
                       "mean": [0.01, 0.05, -0.02, 0.30]})
    assert largest_gain(sl, "kl_qwk")["backbone"] == "b" and largest_gain(sl, "oa_roc_auc")["backbone"] == "a"
    enr = pd.DataFrame({"region": ["cartilage", "bone_margin", "lesion"], "enrichment": [2.0, 0.9, 3.5]})
    assert top_region(enr)["region"] == "lesion"


def test_epoch_summary_counts_runs_still_improving():
    conv = pd.DataFrame({"best_epoch": [8, 3, 8, 5], "epochs": [8, 8, 8, 8]})
    assert epoch_summary(conv) == {"runs": 4, "epochs": 8, "median_best": 6.5, "best_at_last": 2}


def test_trend_clause_combine_and_variant_title():
    row = {"metric": "kl_qwk", "baseline": "single_kl", "slope": 0.05, "ci_low": 0.01, "ci_high": 0.09, "m": 3,
           "alpha": 0.05 / 3, "n_seeds": 3, "n_levels": 3, "verdict": "grows"}
    text, status = trend_clause(row)
    assert text == describe_trend(row) and status == "clear"  # the chapter's own sentence and family
    assert strip_marks(text).endswith("the gain grows.") and "Bonferroni over 3" in text
    assert trend_clause({**row, "verdict": "inconclusive"})[1] == "open"
    assert "either way" not in text
    assert combine(["open", "clear"]) == "clear" and combine(["absent", "open"]) == "open"
    assert combine(["absent", "absent"]) == "absent" and combine([]) == "open"
    assert variant_title("single_kl + smoothing") == "single-KL + smoothing" and variant_title("dual") == "dual"
    assert variant_title("dual (lambda 4)") == "dual (lambda 4)"


# ---------------------------------------------------------------------------------- planted results
class PlantedBeyond(BeyondStudy):
    """A beyond study whose per-seed metrics are given (no runs)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame, self.preset, self.study = frame, "smoke", None

    def metrics(self) -> pd.DataFrame:
        return self.frame

    @property
    def truth(self) -> str:
        return "kl_clean"


class PlantedNoise(NoiseStudy):
    """A label-noise study whose gains and trend are given (no runs)."""

    def __init__(self, gain: pd.DataFrame, trend: pd.DataFrame) -> None:
        self._gain, self._trend, self.studies = gain, trend, {0.0: None, 1.0: None, 2.0: None}

    def gain(self, truth: str = "kl_clean") -> pd.DataFrame:
        return self._gain

    def trend(self, truth: str = "kl_clean") -> pd.DataFrame:
        return self._trend


#: KL QWK per seed (0, 1, 2) of each beyond variant; lambda only for plain dual runs
PLANTED = {("dual", 1.0): [0.50, 0.51, 0.55], ("dual (lambda 4)", 4.0): [0.60, 0.62, 0.64],
           ("dual (lambda 0.25)", 0.25): [0.40, 0.41, 0.42], ("ordinal", None): [0.50, 0.51, 0.55],
           ("single_kl", None): [0.45, 0.50, 0.52], ("single_kl + smoothing", None): [0.47, 0.49, 0.56],
           ("dual + smoothing", None): [0.44, 0.46, 0.52]}


def _planted_beyond() -> PlantedBeyond:
    rows = [{"seed": s, "metric": "kl_qwk", "value": v, "variant": name, "lambda": lam}
            for (name, lam), values in PLANTED.items() for s, v in enumerate(values)]
    rows += [{"seed": s, "metric": "oa_roc_auc", "value": 0.8, "variant": name, "lambda": lam}
             for (name, lam) in PLANTED for s in range(3)]
    return PlantedBeyond(pd.DataFrame(rows))


def _clause(a: list[float], b: list[float], m: int = 1) -> str:
    return rule_clause(decide(np.subtract(a, b), DELTAS["kl_qwk"], m=m))[0]


def test_lambda_answer_names_the_best_lambda_and_its_lead():
    ex = Exercises("smoke", None, None, beyond=_planted_beyond())
    a = ex.lambda_answer()
    assert a.text.startswith("Against the clean grade, the highest mean KL QWK is at λ 4 (λ 0.25: 0.410, λ 1: 0.520, λ 4: 0.620).")
    assert f"ResNet3D, KL QWK, dual (λ 4) vs dual (λ 1), clean grade: {_clause([0.60, 0.62, 0.64], [0.50, 0.51, 0.55])}." in strip_marks(a.text)
    assert "helps" in a.text and a.status == "clear"


def test_ordinal_and_smoothing_answers_from_planted_runs():
    ex = Exercises("smoke", None, None, beyond=_planted_beyond())
    o = ex.ordinal_answer()
    tests = ex.beyond.comparisons()
    row = lambda c, m: tests[(tests["comparison"] == c) & (tests["metric"] == m)].iloc[0]  # noqa: E731
    # the exercises state the chapter's own rows (one family): the same sentence on both pages
    assert describe_comparison(row("dual vs ordinal", "kl_qwk")) in o.text
    assert describe_comparison(row("dual vs ordinal", "oa_roc_auc")) in o.text
    assert "inconclusive" in o.text and o.status == "open"
    s = ex.smoothing_answer()
    assert s.text.startswith("Label smoothing 0.1 on the KL targets. ResNet3D, KL QWK, single-KL + smoothing vs single-KL")
    assert describe_comparison(row("single_kl + smoothing vs single_kl", "kl_qwk")) in s.text
    assert describe_comparison(row("dual + smoothing vs dual", "kl_qwk")) in s.text
    own = int(row("dual + smoothing vs dual", "kl_qwk")["m"])
    assert own == int(row("dual vs ordinal", "kl_qwk")["m"]) and f"Bonferroni over {own})" in s.text
    assert s.status == "open"  # 3 seeds, the chapter's family: neither is decided


def test_strong_noise_answer_from_a_planted_trend():
    gain = pd.DataFrame({"metric": "kl_qwk", "label_noise": [0.0, 1.0, 2.0], "mean": [0.0, 0.02, 0.05],
                         "sd": [0.01, 0.01, np.nan]})
    trend = pd.DataFrame([{"comparison": "dual − single_kl: kl_qwk", "metric": "kl_qwk", "slope": 0.025,
                           "ci_low": 0.01, "ci_high": 0.04, "p": 0.01, "n_gains": 9, "baseline": "single_kl", "m": 3,
                           "alpha": 0.05 / 3, "n_seeds": 3, "n_levels": 3, "verdict": "grows", "backbone": "resnet3d"}])
    a = Exercises("smoke", None, None, noise=PlantedNoise(gain, trend)).strong_noise_answer()
    assert "noise 0: 0.000 ± 0.010, noise 1: +0.020 ± 0.010, noise 2: +0.050." in a.text
    assert strip_marks(a.text).endswith("the gain grows.") and a.status == "clear"


def test_answers_without_the_runs_say_so():
    real = Study("smoke", Path("manifest.csv"), pd.DataFrame({"case_id": ["a"], "kl": [2]}), [])  # no clean grade
    ex = Exercises("smoke", real, None)
    assert ex.truth == "kl" and ex.truth_answer() == Answer(
        "This cohort has no clean grade (real data), so only the observed grade can be the truth.", "absent")
    for method in (ex.lambda_answer, ex.ordinal_answer, ex.smoothing_answer, ex.strong_noise_answer, ex.noise_free_answer):
        a = method()
        assert a.status == "absent" and a.text.startswith("This build has no") and a.text.count(".") == 1


# ---------------------------------------------------------------------------------- real runs
@pytest.fixture(scope="module")
def exercises(tmp_path_factory, smoke_manifest, volume_cache) -> Exercises:
    root, grid = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache)
    _, stacked = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache, modes=["dual"],
                                  dual_variant="stacked")
    main = Study.from_grid("smoke", smoke_manifest, grid, root)
    return Exercises("smoke", main, Study.from_grid("smoke", smoke_manifest, stacked, root))


def _test_auc(run) -> float:
    t = run.predictions[run.predictions["split"] == "test"]
    return roc_auc_score(t["oa"], t["p_oa"])


def test_stacked_vs_parallel_is_the_rule_on_each_seeds_difference(exercises):
    text = exercises.stacked_vs_parallel().text
    auc = lambda study: study.point_metrics(truth="kl_clean").query("metric == 'oa_roc_auc' and mode == 'dual'")  # noqa: E731
    diffs = auc(exercises.stacked).set_index("seed")["value"] - auc(exercises.study).set_index("seed")["value"]
    assert text.startswith("ResNet3D, OA AUC, stacked dual vs parallel dual, clean grade: ")
    assert "ResNet3D, KL QWK, stacked dual vs parallel dual, clean grade: " in text
    assert signed(np.mean(diffs)) in text and "over 2 seeds" in text and "Bonferroni over 2)" in text


def test_hardest_boundary_names_the_worst_pair(exercises):
    test = pd.concat(r.predictions[r.predictions["split"] == "test"] for r in exercises.study.select(mode="dual"))
    y, pred = test["kl_clean"].astype(int).to_numpy(), test["pred_kl"].astype(int).to_numpy()
    rates = {}
    for g in range(4):
        pair = (y == g) | (y == g + 1)
        swapped = ((y == g) & (pred == g + 1)) | ((y == g + 1) & (pred == g))
        rates[f"{g}/{g + 1}"] = swapped.sum() / max(pair.sum(), 1)
    worst = max(rates, key=rates.get)  # the first of equal rates, as a stable sort keeps
    text = exercises.hardest_boundary().text
    assert text.startswith(f"Against the clean grade, the dual model swaps the {worst} pair most often")
    assert "The label-noise model (strength 1.0) confuses" in text


def test_seeds_needed_uses_the_seed_spread(exercises):
    row = exercises.study.seed_level(truth="kl_clean", metrics=["kl_qwk"]).iloc[0]
    text = exercises.seeds_needed().text
    assert f"dual-minus-single-KL difference in KL QWK against the clean grade is {row['sd']:.3f} over 2 seeds" in text
    n = seeds_needed(0.0, float(row["sd"]), DELTAS["kl_qwk"])
    assert (f"{n} seeds to show equivalence" if n else "more than 200 seeds to show equivalence") in text


def test_truth_answer_reads_both_truths(exercises):
    a = exercises.truth_answer()
    for truth, words in (("kl", "observed labels"), ("kl_clean", "clean grade")):
        row = exercises.first.seed_level(truth=truth, metrics=["kl_qwk"], m=1).iloc[0]  # the primary question's family
        assert f"ResNet3D, KL QWK, dual vs single-KL, {words}: {rule_clause(row)[0]}." in strip_marks(a.text)


def test_epochs_answer_counts_from_the_histories(exercises):
    conv = exercises.study.convergence(truth="kl_clean")
    last = int((conv["best_epoch"] == conv["epochs"]).sum())
    assert exercises.epochs_answer().text.startswith(f"{last} of the 6 main-grid runs (up to 1 epoch)")


def test_region_answer_names_the_most_enriched_region_only_for_maps_that_pass(exercises, monkeypatch):
    from oaprobe.report import saliency as gate

    real = gate.randomisation_verdicts
    checks = real(sanity_summary(exercises.first.saliency_sanity()))
    dual = checks[(checks["method"] == "ig") & (checks["mode"] == "dual")]
    a = exercises.region_answer()
    if not dual["passes"].all():  # the smoke models' maps fail the check: no enrichment is stated
        assert "fail the randomisation check" in a.text and "not trustworthy" in a.text and a.status == "open"
        assert "most enriched" not in a.text
    monkeypatch.setattr("oaprobe.report.exercises.randomisation_verdicts", lambda summary: real(summary).assign(passes=True))
    sal = exercises.study.saliency()
    enr = saliency_enrichment(sal[sal["mode"] == "dual"], method="ig", target="oa")
    best = enr.loc[enr["enrichment"].idxmax()]
    a = exercises.region_answer()
    assert f"For the OA head, the dual model's ig saliency is most enriched in the {best['region'].replace('_', ' ')}: " in a.text
    assert f"mean {best['enrichment']:.2f} over {int(best['n'])} knees" in a.text


def test_answers_cover_every_exercise_and_the_findings_count_them(exercises):
    answers = exercises.answers()
    assert list(answers) == list(EXERCISES) and all(isinstance(m, Markdown) and m.data for m in answers.values())
    assert all(isinstance(a, Answer) and a.status in ("clear", "open", "absent") for a in exercises.computed.values())
    assert exercises.backbone_answer() == Answer("This build trains one backbone, so there is no other to compare.", "absent")
    findings = exercises.findings()
    assert findings[0].startswith(f"12 exercises, each changing one parameter; every answer is computed from the "
                                  f"{len(exercises.study.runs) + 2} runs")
    numbers = [int(n) for b in findings[1:] for n in re.search(r": exercises? ([\d, ]+)\.$", b).group(1).split(", ")]
    assert sorted(numbers) == list(range(1, len(EXERCISES) + 1))  # each exercise counted once
    assert all(len(b.split()) < 40 for b in findings)


# ---------------------------------------------------------------------------------- the chapter
def test_chapter_has_each_exercise_with_its_parameter_run_line_and_answer():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    text = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    for i, (key, title) in enumerate(EXERCISES.items(), 1):
        cell = next(t for t in text if t.startswith(f"## {i}. {title}\n"))
        assert "**Parameter:**" in cell and "**Run it yourself:**" in cell and f"{{glue:md}}`{key}`" in cell
    assert all("id" in c for c in cells)
