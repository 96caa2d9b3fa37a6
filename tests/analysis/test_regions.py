"""Known-answer tests for oaprobe.analysis.regions: region masks, overlap metrics, the paired test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from oaprobe.analysis.regions import overlap_metrics, paired_overlap, region_masks, region_overlap
from tests.analysis.saliency_models import S, label_map


# --------------------------------------------------------------------------- overlap metrics
def test_map_equal_to_mask_is_fully_inside():
    roi = label_map() == 2
    m = overlap_metrics(roi.astype(float), roi)
    assert m["roi_fraction"] == pytest.approx(1 / 8)
    assert m["mass"] == pytest.approx(1.0)
    assert m["enrichment"] == pytest.approx(8.0)
    for k in (1, 5, 10):  # all k% <= the 12.5% ROI fraction
        assert m[f"top{k}"] == pytest.approx(1.0)


def test_dice_known_answer():
    roi = np.zeros((10, 10, 10), bool)
    roi.flat[:100] = True  # ROI = 10% of voxels
    m = overlap_metrics(roi.astype(float), roi)
    assert m["dice10"] == pytest.approx(1.0)
    assert m["dice5"] == pytest.approx(2 * 50 / (50 + 100))
    assert m["top1"] == pytest.approx(1.0)


def test_uniform_noise_is_at_chance():
    rng = np.random.default_rng(0)
    roi = np.zeros((32, 32, 32), bool)
    roi[:, :8] = True
    m = overlap_metrics(rng.uniform(size=roi.shape), roi)
    assert m["mass"] == pytest.approx(0.25, abs=0.01)
    assert m["enrichment"] == pytest.approx(1.0, abs=0.04)
    assert m["top10"] == pytest.approx(0.25, abs=0.03)


def test_region_overlap_matches_a_full_sort():
    rng = np.random.default_rng(3)
    sal = rng.uniform(size=(10, 10, 10))  # distinct values: the top-k sets are unique
    regions = {"a": rng.uniform(size=sal.shape) < 0.2, "b": rng.uniform(size=sal.shape) < 0.05}
    got = region_overlap(sal, regions, ks=(1, 10, 5))
    order = np.argsort(sal.ravel())[::-1]
    for name, roi in regions.items():
        for k in (1, 5, 10):
            top = order[: int(np.ceil(k / 100 * sal.size))]
            inside = roi.ravel()[top].sum()
            assert got[name][f"top{k}"] == pytest.approx(inside / len(top))
            assert got[name][f"dice{k}"] == pytest.approx(2 * inside / (len(top) + roi.sum()))
        assert got[name] == overlap_metrics(sal, roi, ks=(1, 10, 5))


def test_empty_roi_and_flat_map_are_undefined():
    sal = np.random.default_rng(0).uniform(size=(S, S, S))
    empty = overlap_metrics(sal, np.zeros((S, S, S), bool))
    assert empty["roi_fraction"] == 0 and np.isnan(empty["mass"]) and np.isnan(empty["top5"])
    flat = overlap_metrics(np.zeros((S, S, S)), label_map() == 2)
    assert np.isnan(flat["mass"]) and np.isnan(flat["enrichment"])


def test_overlap_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        overlap_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 5), bool))


def test_regions_from_label_map():
    lab = label_map()
    regions = region_masks(lab, lesion=(lab == 4).astype(np.uint8))
    assert set(regions) == {"cartilage", "femoral_cartilage", "tibial_cartilage", "bone_margin", "lesion"}
    np.testing.assert_array_equal(regions["cartilage"], np.isin(lab, (2, 4)))
    # the shell: bone rows touching cartilage/background (rows 1, 2 of the femur are both on a
    # surface: row 1 touches background at row 0, row 2 touches cartilage at row 3)
    margin = regions["bone_margin"]
    assert margin[:, 1].all() and margin[:, 2].all() and margin[:, 5].all() and margin[:, 6].all()
    assert not margin[:, 0].any() and not margin[:, 3].any()
    thick = np.zeros((S, S, S), np.uint8)
    thick[:, 1:7] = 1
    inner = region_masks(thick)["bone_margin"]
    assert inner[:, 1].all() and inner[:, 6].all() and not inner[:, 2:6].any()


# --------------------------------------------------------------------------- paired comparison
def _table(values: np.ndarray, subjects: list[str] | None = None) -> pd.DataFrame:
    ids = [f"k{i}" for i in range(len(values))]
    subjects = subjects if subjects is not None else [f"s{i}" for i in range(len(values))]
    return pd.DataFrame({"case_id": ids, "subject_id": subjects, "target": "oa", "method": "smoothgrad",
                         "region": "cartilage", "mass": values})


def test_paired_overlap_known_shift_and_scipy_reference():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.1, 0.3, 40)
    a = b + 0.05 + 0.01 * rng.normal(size=40)
    res = paired_overlap(_table(a), _table(b).iloc[::-1], "mass", "cartilage", "oa", "smoothgrad", n_boot=2000)
    row = res.iloc[0]
    assert row["n"] == row["n_subjects"] == 40
    assert row["mean_diff"] == pytest.approx(np.mean(a - b))
    assert row["ci_low"] < 0.05 < row["ci_high"] and row["ci_low"] > 0
    assert row["p_value"] == pytest.approx(wilcoxon(a, b).pvalue)  # one knee per subject: over knees


def test_paired_overlap_matches_pingouin():
    pg = pytest.importorskip("pingouin")
    rng = np.random.default_rng(1)
    a, b = rng.uniform(size=15), rng.uniform(size=15)
    res = paired_overlap(_table(a), _table(b), "mass", "cartilage", "oa", "smoothgrad", n_boot=500)
    ref = pg.wilcoxon(a, b)
    p_col = "p_val" if "p_val" in ref.columns else "p-val"
    assert res["p_value"].iloc[0] == pytest.approx(float(ref[p_col].iloc[0]))


def test_paired_overlap_resamples_subjects_not_knees():
    # 4 subjects x 2 knees; a subject's knees share one large difference. Resampling subjects,
    # the bootstrap mean can take only values that are means of whole-subject draws, and the
    # Wilcoxon runs over the 4 subject means (knee-level resampling would give 8 independent units).
    per_subject = np.array([0.4, -0.1, 0.3, 0.2])
    diff = np.repeat(per_subject, 2)
    b = np.full(8, 0.5)
    subjects = [f"s{i // 2}" for i in range(8)]
    res = paired_overlap(_table(b + diff, subjects), _table(b, subjects), "mass", "cartilage", "oa", "smoothgrad",
                         n_boot=4000, seed=1).iloc[0]
    assert res["n"] == 8 and res["n_subjects"] == 4
    assert res["p_value"] == pytest.approx(wilcoxon(per_subject).pvalue)
    assert res["p_value"] != pytest.approx(wilcoxon(diff).pvalue)
    # the extreme draw "subject 0 four times" has probability 4^-4: the CI's upper end is below 0.4,
    # and the lower end cannot go below the mean of the most negative 4-subject draws
    assert -0.1 <= res["ci_low"] < res["mean_diff"] < res["ci_high"] <= 0.4
    # the same table with the knees' subjects given explicitly instead of as a column
    plain_a, plain_b = (_table(v).drop(columns="subject_id") for v in (b + diff, b))
    mapping = dict(zip(plain_a["case_id"], subjects))
    again = paired_overlap(plain_a, plain_b, "mass", "cartilage", "oa", "smoothgrad", n_boot=4000, seed=1,
                           subjects=mapping).iloc[0]
    assert again["ci_low"] == res["ci_low"] and again["ci_high"] == res["ci_high"]
    # knee-level resampling (each knee its own subject) gives a narrower interval on this table
    knees = paired_overlap(plain_a, plain_b, "mass", "cartilage", "oa", "smoothgrad", n_boot=4000, seed=1,
                           subjects={c: c for c in mapping}).iloc[0]
    assert knees["ci_high"] - knees["ci_low"] < res["ci_high"] - res["ci_low"]


def test_paired_overlap_needs_subjects_that_agree():
    a, b = _table(np.array([0.1, 0.2, 0.3])), _table(np.array([0.2, 0.2, 0.2]))
    with pytest.raises(ValueError, match="no 'subject_id' column"):
        paired_overlap(a.drop(columns="subject_id"), b, "mass", "cartilage", "oa", "smoothgrad", n_boot=10)
    with pytest.raises(ValueError, match="disagree on the subject of case_id 'k1'"):
        paired_overlap(a, b.assign(subject_id=["s0", "s9", "s2"]), "mass", "cartilage", "oa", "smoothgrad", n_boot=10)
    with pytest.raises(ValueError, match="no subject for case_id"):
        paired_overlap(a, b, "mass", "cartilage", "oa", "smoothgrad", n_boot=10, subjects={"k0": "s0"})


def test_paired_overlap_drops_nan_and_names_missing_rows():
    a = _table(np.array([0.1, np.nan, 0.3]))
    b = _table(np.array([0.2, 0.2, 0.2]))
    assert paired_overlap(a, b, "mass", "cartilage", "oa", "smoothgrad", n_boot=100)["n"].iloc[0] == 2
    with pytest.raises(ValueError, match="region='lesion'"):
        paired_overlap(a, b, "mass", "lesion", "oa", "smoothgrad")
