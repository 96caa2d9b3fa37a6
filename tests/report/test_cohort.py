"""Tests of oaprobe.report.cohort on the smoke cohort: label agreement (sklearn), split counts, slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from oaprobe.data.phantom import LESION_DEFECT, LESION_OSTEOPHYTE, X_MED, render_knee, sample_knee_params
from oaprobe.report.cohort import (
    CohortView,
    example_slices,
    human_range_verdict,
    lesion_slice,
    load_cohort,
    medial_box,
)
from tests.data.fake_oai import import_fake_copy


@pytest.fixture()
def imported_copy(tmp_path):
    return import_fake_copy(tmp_path)


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
    n = len(grades)
    assert len(out["images"]) == len(out["titles"]) == len(out["cartilage"]) == len(out["lesion"]) == len(out["boxes"]) == n
    assert [t.split("<br>")[0] for t in out["titles"]] == [f"clean KL{g}" for g in grades]
    assert out["images"][0].shape == (24, 24) and out["cartilage"][0].dtype == bool and out["cartilage"][0].any()
    assert all(8 <= w < 16 for w in out["slices"])  # the middle third of W
    assert set(np.unique(np.concatenate([le.ravel() for le in out["lesion"]]))) <= {0, 1, 2, 3}  # lesion codes
    middle = example_slices(view.table, at="middle")
    assert middle["slices"] == [12] * n and "coronal slice 13/24" in middle["titles"][0]
    with pytest.raises(ValueError, match="'lesions' or 'middle'"):
        example_slices(view.table, at="top")


def _two_bones(h: int = 20, d: int = 20) -> np.ndarray:
    """A coronal label slice: femur rows 0-8 and tibia rows 12-19, both over columns 2-17."""
    mask = np.zeros((h, d), np.uint8)
    mask[:9, 2:18] = 1
    mask[9, 2:18] = 2
    mask[11, 2:18] = 4
    mask[12:, 2:18] = 3
    return mask


def test_medial_box_known_answer_and_mirror():
    # midline 9.5, medial bone edge column 2, joint line row (8 + 12) / 2 = 10; side 7.5 * 1.15 = 8.625
    assert medial_box(_two_bones(), "R") == (6, 15, 1, 10)
    assert medial_box(_two_bones()[:, ::-1], "L") == (6, 15, 10, 19)  # a left knee mirrors a right one
    assert medial_box(_two_bones(), "R", margin=0.0) == (7, 14, 2, 10)
    assert medial_box(np.where(_two_bones() == 3, 0, _two_bones()), "R") == (0, 20, 0, 20)  # no tibia: all


@pytest.mark.parametrize("side", ["R", "L"])
def test_medial_box_follows_the_phantom_at_any_shape(side):
    params = sample_knee_params(np.random.default_rng(3), severity=3.5, side=side)
    boxes = {}
    for n, spacing in ((24, 4.0), (48, 2.0)):  # the same 96 mm knee at two resolutions
        knee = render_knee(params, shape=(n, n, n), spacing=(spacing,) * 3)
        r0, r1, c0, c1 = medial_box(knee.mask[..., n // 2].T, side)
        x_med = X_MED / spacing + (n - 1) / 2  # the medial compartment's centre column (right knee)
        col = x_med if side == "R" else n - 1 - x_med
        assert c0 <= col < c1 and r1 - r0 >= n / 5
        boxes[n] = np.array([r0, r1, c0, c1]) / n
    np.testing.assert_allclose(boxes[24], boxes[48], atol=2 / 24)  # the box is anatomy, not pixel numbers


def test_lesion_slice_weighs_defects_like_osteophytes():
    lesion = np.zeros((10, 6, 30), np.uint8)  # medial half of a right knee: D < 5
    lesion[0:3, 2:4, 11] = LESION_OSTEOPHYTE  # 6 voxels
    lesion[0:3, 2:4, 13] = LESION_OSTEOPHYTE  # 6 voxels
    lesion[1, 2, 13] = LESION_DEFECT  # 1 voxel, counted as much as all osteophyte voxels
    lesion[8, 2:4, 17] = LESION_OSTEOPHYTE  # lateral: ignored
    assert lesion_slice(lesion, "R") == 13
    assert lesion_slice(lesion[::-1], "L") == 13
    assert lesion_slice(lesion, "L") == 17  # for a left knee the high-D half is medial
    lesion[:, :, 11:14] = 0
    lesion[0, 0, 3] = LESION_DEFECT  # outside the middle third (10-19)
    assert lesion_slice(lesion, "R") == 15  # no medial focal lesion there: the middle slice


def test_findings_state_the_table_numbers(view):
    t = pd.read_csv(view.manifest)
    bullets = view.findings()
    assert 3 <= len(bullets) <= 5
    both = int((t.groupby("subject_id").size() > 1).sum())
    assert bullets[0].startswith(f"{len(t)} knees from {t['subject_id'].nunique()} subjects ({both} with both knees)")
    assert f"test {int((t['split'] == 'test').sum())}" in bullets[0]
    assert f"{t['oa'].mean():.1%} of the knees have observed OA" in bullets[1]
    assert f"clean grade {(t['kl_clean'] >= 2).mean():.1%}" in bullets[1]
    counts = ", ".join(str(int((t["kl_clean"] == g).sum())) for g in range(5))
    assert bullets[2] == f"Clean grades KL0–KL4: {counts} knees." and bullets[3] == view.label_sentence()
    plain = CohortView(view.manifest, view.table.drop(columns="kl_clean"), None).findings()
    assert plain[2].startswith("Observed grades") and "clean grade" not in plain[1]


def test_label_sentence_states_the_table_numbers(view):
    s = view.summary
    text = view.label_sentence()
    assert f"κ = {s['kappa']:.2f}" in text and f"{s['flip_rate']:.1%}" in text and s["kappa_verdict"] in text


def test_label_sentence_on_real_data_says_the_noise_is_unknown(view):
    real = CohortView(view.manifest, view.table.drop(columns=["kl_clean"]), None)
    assert "no clean grade" in real.label_sentence() and "κ" not in real.label_sentence()


def test_real_data_words_name_no_clean_grade_or_planted_lesions(view):
    real = CohortView(view.manifest, view.table.drop(columns=["kl_clean", "lesion", "lesion_path"]), None)
    for text in (real.intro(), real.slices_intro(), real.slices_title()):
        assert "clean" not in text.replace("no clean grade", "") and "planted" not in text and "phantom" not in text
    assert f"the {len(real.table)} knees of manifest `{view.manifest.name}`" in real.intro()
    assert real.slices_title() == "One knee per KL grade: coronal slice and its medial compartment"
    assert "clean KL grade" in view.slices_title() and "planted" in view.slices_intro() and "clean" in view.intro()


def test_intro_says_where_a_carved_validation_split_came_from(imported_copy, tmp_path):
    from oaprobe.book import validation_manifest

    carved = validation_manifest(imported_copy, tmp_path / "cohorts")
    text = load_cohort("smoke", "unused", manifest=carved).intro()
    assert (f"The imported manifest (`{imported_copy.name}`) had no validation knees" in text
            and "moved 3 of its training subjects (6 knees, 15%" in text and "seed 0" in text)
    assert "validation" not in load_cohort("smoke", "unused", manifest=imported_copy).intro()
