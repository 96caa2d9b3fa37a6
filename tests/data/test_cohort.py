"""Tests of the synthetic cohort builder: determinism, reuse, labels, splits, shared volumes."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from oaprobe.config import CohortConfig
from oaprobe.data.cohort import build_cohort, draw_knees
from oaprobe.data.labels import KL_PRIOR_OAIZIB, expected_kappa, noise_matrix
from oaprobe.data.manifest import read_manifest

TINY = CohortConfig(n_subjects=6, shape=(16, 16, 16), spacing=(6.0, 6.0, 6.0), seed=3)


def _volume_files(manifest):
    folder = manifest.parent
    table = pd.read_csv(manifest)
    return [folder / p for col in ("image", "mask", "lesion", "evidence") for p in table[col]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohorts")
    return root, build_cohort(TINY, root, progress=False)


def test_manifest_follows_the_contract(tiny):
    root, manifest = tiny
    assert manifest == root / TINY.cohort_id() / "manifest.csv"
    table = read_manifest(manifest)  # validates files, shapes, labels, leakage, cartilage
    assert list(pd.read_csv(manifest).columns) == [
        "case_id", "subject_id", "side", "split", "image", "mask", "kl", "oa", "kl_clean", "lesion", "evidence",
        "severity",
    ]
    assert (table["oa"] == (table["kl"] >= 2)).all()
    assert (table["kl_clean"] == np.floor(table["severity"]).astype(int)).all()
    assert table["subject_id"].nunique() == TINY.n_subjects
    img = nib.load(table["image_path"].iloc[0])
    assert img.shape == TINY.shape and np.allclose(img.header.get_zooms(), TINY.spacing)
    assert img.get_data_dtype() == np.float32 and nib.load(table["mask_path"].iloc[0]).get_data_dtype() == np.uint8
    summary = json.loads((manifest.parent / "cohort.json").read_text())
    assert summary["config"] == json.loads(json.dumps(TINY.to_dict()))
    assert summary["n_knees"] == len(table) and "label_kappa" in summary


def test_same_recipe_gives_identical_manifest_and_voxels(tiny, tmp_path):
    _, first = tiny
    second = build_cohort(TINY, tmp_path, progress=False)
    assert first.read_bytes() == second.read_bytes()
    for a, b in zip(_volume_files(first), _volume_files(second)):
        assert np.array_equal(np.asanyarray(nib.load(a).dataobj), np.asanyarray(nib.load(b).dataobj))


def test_second_build_reuses_everything(tiny):
    root, manifest = tiny
    files = [manifest, manifest.parent / "cohort.json", *_volume_files(manifest)]
    before = [f.stat().st_mtime_ns for f in files]
    assert build_cohort(TINY, root, progress=False) == manifest
    assert [f.stat().st_mtime_ns for f in files] == before


def test_a_missing_knee_is_rebuilt_identically(tiny):
    root, manifest = tiny
    image = _volume_files(manifest)[0]
    data = np.asanyarray(nib.load(image).dataobj).copy()
    image.unlink()
    build_cohort(TINY, root, progress=False)
    assert np.array_equal(np.asanyarray(nib.load(image).dataobj), data)


def test_noise_levels_share_volumes_and_splits(tiny):
    root, manifest = tiny
    clean = build_cohort(TINY.replace(label_noise=0.0), root, progress=False)
    a, b = pd.read_csv(manifest), pd.read_csv(clean)
    assert a[["case_id", "split", "kl_clean", "severity"]].equals(b[["case_id", "split", "kl_clean", "severity"]])
    for fa, fb in zip(_volume_files(manifest), _volume_files(clean)):
        assert fa.read_bytes() == fb.read_bytes()


def test_zero_noise_means_observed_equals_clean():
    knees = draw_knees(CohortConfig(n_subjects=300, label_noise=0.0))
    assert (knees["kl"] == knees["kl_clean"]).all()


def test_label_noise_rate_as_configured():
    knees = draw_knees(CohortConfig(n_subjects=3000, label_noise=1.0, kl_prior="oaizib"))
    clean_freq = np.bincount(knees["kl_clean"], minlength=5) / len(knees)
    assert np.allclose(clean_freq, KL_PRIOR_OAIZIB, atol=0.02)
    expected_flip = 1 - float(np.sum(KL_PRIOR_OAIZIB * np.diag(noise_matrix(1.0))))
    assert np.mean(knees["kl"] != knees["kl_clean"]) == pytest.approx(expected_flip, abs=0.02)
    from sklearn.metrics import cohen_kappa_score

    kappa = cohen_kappa_score(knees["kl_clean"], knees["kl"])
    assert kappa == pytest.approx(expected_kappa(1.0, KL_PRIOR_OAIZIB), abs=0.03)


def test_bilateral_subjects_and_correlated_severity():
    knees = draw_knees(CohortConfig(n_subjects=2000, bilateral_fraction=0.5))
    per_subject = knees.groupby("subject_id").size()
    assert per_subject.isin([1, 2]).all()
    assert (per_subject == 2).mean() == pytest.approx(0.5, abs=0.04)
    both = knees.pivot(index="subject_id", columns="side", values="severity").dropna()
    assert pearsonr(both["L"], both["R"]).statistic > 0.5
    assert draw_knees(CohortConfig(n_subjects=50, bilateral_fraction=0.0)).groupby("subject_id").size().max() == 1


def test_bad_jobs_is_named(tmp_path):
    with pytest.raises(ValueError, match="jobs"):
        build_cohort(TINY, tmp_path, progress=False, jobs=0)


def test_parallel_build_matches_serial(tiny, tmp_path):
    _, serial = tiny
    parallel = build_cohort(TINY, tmp_path, progress=False, jobs=2)
    assert serial.read_bytes() == parallel.read_bytes()
    for a, b in zip(_volume_files(serial), _volume_files(parallel)):
        assert a.read_bytes() == b.read_bytes()


def test_evidence_maps_sit_beside_the_masks_and_real_manifests_need_none(tiny, tmp_path):
    """The evidence column is optional: a manifest without it (real OAI-ZIB) validates unchanged."""
    _, manifest = tiny
    table = read_manifest(manifest)
    evidence = nib.load(table["evidence_path"].iloc[0])
    assert evidence.shape == TINY.shape and np.allclose(evidence.affine, nib.load(table["mask_path"].iloc[0]).affine)
    plain = pd.read_csv(manifest).drop(columns=["lesion", "evidence", "kl_clean", "severity"])
    (tmp_path / "images").symlink_to(manifest.parent / "images")
    (tmp_path / "masks").symlink_to(manifest.parent / "masks")
    plain.to_csv(tmp_path / "manifest.csv", index=False)
    assert "evidence_path" not in read_manifest(tmp_path / "manifest.csv").columns
