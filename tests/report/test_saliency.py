"""The saliency gate: randomisation pass criterion, deletion sign test, trust marks and sentences."""

import pandas as pd
import pytest

from oaprobe.report.saliency import (NOT_TRUSTWORTHY, deletion_sentence, deletion_verdicts, gate_sentences, mark_trust,
                                     min_deletion_cases, randomisation_verdicts, trusted)


def _summary() -> pd.DataFrame:
    rows = []
    for mode, sg_last in (("dual", 0.42), ("single_oa", 0.60)):
        for method, last in (("smoothgrad", sg_last), ("gradcam", -0.05)):
            for step, rho in ((0, 1.0), (1, 0.8), (2, last)):
                rows.append({"backbone": "resnet3d", "mode": mode, "method": method, "step": step, "layer": "l",
                             "spearman": rho, "sd": 0.1, "n": 2})
    return pd.DataFrame(rows)


def test_randomisation_verdict_reads_the_last_step_only():
    v = randomisation_verdicts(_summary())
    assert len(v) == 4
    by = v.set_index(["mode", "method"])
    assert not by.loc[("dual", "smoothgrad"), "passes"] and by.loc[("dual", "gradcam"), "passes"]
    assert by.loc[("single_oa", "smoothgrad"), "spearman_randomised"] == 0.60
    assert by.loc[("dual", "gradcam"), "verdict"] == "passes"
    assert "not below 0.3" in by.loc[("dual", "smoothgrad"), "reason"]


def test_a_strongly_negative_correlation_fails_too():
    s = _summary()
    s.loc[(s["method"] == "gradcam") & (s["step"] == 2), "spearman"] = -0.5
    assert not randomisation_verdicts(s)["passes"].any()


def test_deletion_verdicts_need_five_knee_targets_and_a_sign_test():
    assert min_deletion_cases(0.05) == 5 and min_deletion_cases(0.01) == 7
    rows = [("a", [0.1] * 5), ("b", [0.1] * 4), ("c", [0.1, -0.1] * 3)]
    auc = pd.DataFrame([{"backbone": "r", "mode": m, "method": "gradcam", "case_id": f"k{i}", "auc_gap": g}
                        for m, gaps in rows for i, g in enumerate(gaps)])
    v = deletion_verdicts(auc).set_index("mode")
    assert v.loc["a", "verdict"] == "faithful" and v.loc["a", "p_sign"] == pytest.approx(0.5 ** 5)
    assert v.loc["b", "verdict"] == "too few knees"  # 4 of 4 faster: p = 0.0625, no verdict possible
    assert v.loc["c", "verdict"] == "not shown faithful" and v.loc["c", "faster"] == 3


def test_untrusted_rows_are_marked_and_left_out_of_findings():
    v = randomisation_verdicts(_summary())
    enrichment = pd.DataFrame({"backbone": "resnet3d", "mode": ["dual", "single_oa", "single_kl"], "enrichment": [5.0, 6.9, 2.0]})
    marked = mark_trust(enrichment, v, method="smoothgrad")
    assert marked["trust"].tolist() == [NOT_TRUSTWORTHY] * 3  # single_kl never checked: not trustworthy either
    assert trusted(enrichment, v, method="smoothgrad").empty
    assert trusted(enrichment, v, method="gradcam")["mode"].tolist() == ["dual", "single_oa"]


def test_gate_sentence_names_the_failing_method_and_its_range():
    (sentence,) = gate_sentences(randomisation_verdicts(_summary()))
    assert sentence.startswith("SmoothGrad × input fails the randomisation check in every model")
    assert "+0.42 to +0.60" in sentence and NOT_TRUSTWORTHY in sentence


def test_a_constant_map_fails_and_one_value_is_no_range():
    s = _summary()
    s.loc[(s["mode"] == "dual") & (s["method"] == "gradcam") & (s["step"] == 2), "spearman"] = float("nan")
    s.loc[(s["mode"] == "single_oa") & (s["method"] == "smoothgrad") & (s["step"] == 2), "spearman"] = 0.42
    v = randomisation_verdicts(s)
    assert v.set_index(["mode", "method"]).loc[("dual", "gradcam"), "reason"] == "no rank correlation (a constant map)"
    sentences = gate_sentences(v)
    assert "(rank correlation with the fully randomised model +0.42, not below 0.3)" in sentences[0]
    assert sentences[1].startswith("Grad-CAM fails the randomisation check in 1 of 2 models (no rank correlation")


def test_deletion_sentence_says_why_there_is_no_verdict():
    v = pd.DataFrame({"verdict": ["too few knees", "too few knees", "faithful"], "n": [1, 2, 6]})
    assert deletion_sentence(v) == ["Deletion check over 3 models and methods: 2 too few knees, 1 faithful; a verdict "
                                    "needs at least 5 knee-targets per model and these had 1–2."]


def test_a_paired_row_needs_both_models_to_pass():
    s = _summary()
    s.loc[(s["mode"] == "dual") & (s["method"] == "smoothgrad") & (s["step"] == 2), "spearman"] = 0.1
    v = randomisation_verdicts(s)
    pairs = pd.DataFrame({"backbone": "resnet3d", "baseline": ["single_oa", "single_oa"], "method": ["smoothgrad", "gradcam"]})
    assert mark_trust(pairs, v)["trust"].tolist() == [NOT_TRUSTWORTHY, "passes the randomisation check"]


def _evidence_table() -> pd.DataFrame:
    """Per-knee evidence scores planted so the answer is known: Grad-CAM maps of dual put 30% of their
    mass on evidence covering 5% of the volume (6x chance), single-OA's 10% (2x) and 40% on effusion
    covering 10% (4x, every knee); SmoothGrad (failing the randomisation check) would win everything."""
    rows = []
    planted = {("dual", "gradcam"): (0.30, 0.02), ("single_oa", "gradcam"): (0.10, 0.40),
               ("dual", "smoothgrad"): (0.90, 0.90), ("single_oa", "smoothgrad"): (0.90, 0.90)}
    for (mode, method), (ev_mass, eff_mass) in planted.items():
        for knee in range(4):
            for region, share, mass in (("evidence", 0.05, ev_mass), ("effusion", 0.10, eff_mass), ("bml", 0.02, 0.0)):
                rows.append({"case_id": f"k{knee}", "target": "oa", "method": method, "region": region, "roi_fraction": share,
                             "mass": mass, "top5": mass, "pointing": float(knee < 2 and mode == "dual"),
                             "enrichment": mass / share, "backbone": "resnet3d", "mode": mode, "seed": 0})
    return pd.DataFrame(rows)


def test_evidence_sentences_name_the_best_and_least_model_and_the_distractor_they_lean_on():
    from oaprobe.analysis.evidence import distractor_reliance, evidence_summary
    from oaprobe.report.saliency import evidence_sentences

    table, by = _evidence_table(), ("backbone", "mode", "method", "target")
    found = evidence_summary(table, by)
    found = found[found["region"] == "evidence"]
    text = " ".join(evidence_sentences(found, distractor_reliance(table, by), randomisation_verdicts(_summary())))
    assert "in 2 of 2 model-target pairs the maps put more of their mass on the grade-deciding evidence" in text
    assert "most in ResNet3D dual (OA target), 6.0x chance" in text and "50% of knees" in text
    assert "least in ResNet3D single-OA (OA target), 2.0x" in text
    assert "by training mode (mean over backbones and targets): single-OA 2.0x, dual 6.0x." in text
    assert "leans on a distractor (over 1.5x chance in most knees) in 1 of the 2 model-target pairs" in text
    assert "ResNet3D single-OA (OA target): effusion 4.0x; in 1 of them a distractor draws more" in text
    assert "SmoothGrad" not in text and "18.0x" not in text  # the failing method states nothing


def test_evidence_sentences_state_nothing_when_no_method_passes_and_say_so():
    from oaprobe.analysis.evidence import distractor_reliance, evidence_summary
    from oaprobe.report.saliency import evidence_sentences

    table, by = _evidence_table(), ("backbone", "mode", "method", "target")
    failing = randomisation_verdicts(_summary()).assign(passes=False)
    found = evidence_summary(table, by)
    out = evidence_sentences(found[found["region"] == "evidence"], distractor_reliance(table, by), failing)
    assert len(out) == 1 and "No saliency method passes the randomisation check" in out[0]
    assert evidence_sentences(found.iloc[:0], distractor_reliance(table, by), failing) == []


def test_evidence_figures_plot_methods_that_pass_somewhere_with_their_failing_count():
    from oaprobe.report.saliency import evidence_figures

    verdicts = pd.DataFrame({"backbone": "resnet3d", "mode": ["dual", "single_oa", "dual", "single_oa"],
                             "method": ["gradcam", "gradcam", "smoothgrad", "smoothgrad"], "passes": [True, False, False, False]})
    out = evidence_figures(_evidence_table(), verdicts)
    assert [(m, n) for m, n, _ in out] == [("gradcam", 1)]  # SmoothGrad passes nowhere: no figure
    table = out[0][2].set_index(["mode", "region"])
    assert set(table.index.get_level_values("region")) == {"evidence", "effusion", "bml"}
    assert table.loc[("dual", "evidence"), "enrichment"] == pytest.approx(6.0)
    assert table.loc[("single_oa", "effusion"), "enrichment"] == pytest.approx(4.0)
    assert table.loc[("dual", "bml"), "enrichment"] == 0.0  # a distractor the maps miss reads 0, not absent
    assert evidence_figures(_evidence_table().iloc[:0], verdicts) == []
