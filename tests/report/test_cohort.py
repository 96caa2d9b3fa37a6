"""Tests of oaprobe.report.cohort on the smoke cohort: label agreement (sklearn), split counts, slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from oaprobe.report.cohort import CohortView, example_slices, human_range_verdict, load_cohort


@pytest.fixture(scope="module")
def view(smoke_manifest) -> CohortView:
    # the session cohort lives in <root>/<cohort_id>/manifest.csv: load_cohort reuses it
    return load_cohort("smoke", smoke_manifest.parent.parent)


def test_load_cohort_reuses_the_preset_cohort(view, smoke_manifest):
    assert view.manifest == smoke_manifest and view.label_noise == 1.0 and view.has_clean
    given = load_cohort("smoke", "unused", manifest=smoke_manifest)
    assert given.label_noise is None and len(given.table) == len(view.table)
    assert np.isnan(given.summary["label_noise"])


def test_summary_against_sklearn_and_direct_counts(view):
    t = pd.read_csv(view.manifest)
    s = view.summary
    assert s["kappa"] == pytest.approx(cohen_kappa_score(t["kl_clean"], t["kl"]))
    assert s["flip_rate"] == pytest.approx(np.mean(t["kl_clean"] != t["kl"]))
    assert s["oa_flip_rate"] == pytest.approx(np.mean((t["kl_clean"] >= 2) != (t["kl"] >= 2)))
    assert s["label_noise"] == 1.0 and s["kappa_verdict"] == human_range_verdict(s["kappa"])


def test_split_table_counts(view):
    t = pd.read_csv(view.manifest)
    table = view.split_table()
    for split, g in t.groupby("split"):
        assert table.loc[split, "all"] == len(g)
        assert table.loc[split, "subjects"] == g["subject_id"].nunique()
        for grade, n in g["kl"].value_counts().items():
            assert table.loc[split, f"KL{grade}"] == n
    assert table.loc["all", "all"] == len(t) and table.loc["all", "subjects"] == t["subject_id"].nunique()


def test_noise_confusion_rows_are_clean_grades(view):
    t = pd.read_csv(view.manifest)
    m = view.noise_confusion()
    assert m.shape == (5, 5) and m.sum() == len(t)
    assert np.trace(m) == int((t["kl_clean"] == t["kl"]).sum())
    np.testing.assert_array_equal(m.sum(axis=1), np.bincount(t["kl_clean"], minlength=5))


def test_human_range_verdict():
    assert human_range_verdict(0.3).startswith("below")
    assert human_range_verdict(0.46).startswith("inside") and human_range_verdict(0.85).startswith("inside")
    assert human_range_verdict(0.9).startswith("above")
    assert "0.46–0.85" in human_range_verdict(0.6)


def test_no_clean_grades_no_kappa(view):
    plain = CohortView(view.manifest, view.table.drop(columns="kl_clean"), None)
    assert not plain.has_clean and "kappa" not in plain.summary


def test_example_slices_one_per_present_grade(view):
    out = example_slices(view.table, per_grade=1)
    grades = sorted(view.table["kl_clean"].astype(int).unique())
    assert len(out["images"]) == len(out["titles"]) == len(out["cartilage"]) == len(out["lesion"]) == len(grades)
    assert [t.split("<br>")[0] for t in out["titles"]] == [f"clean KL{g}" for g in grades]
    assert out["images"][0].shape == (24, 24) and out["cartilage"][0].dtype == bool and out["cartilage"][0].any()


def test_label_sentence_states_the_table_numbers(view):
    s = view.summary
    text = view.label_sentence()
    assert f"κ = {s['kappa']:.2f}" in text and f"{s['flip_rate']:.1%}" in text and s["kappa_verdict"] in text


def test_label_sentence_on_real_data_says_the_noise_is_unknown(view):
    real = CohortView(view.manifest, view.table.drop(columns=["kl_clean"]), None)
    assert "no clean grade" in real.label_sentence() and "κ" not in real.label_sentence()
