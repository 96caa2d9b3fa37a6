"""Tests for oaprobe.analysis.ceilings: known answers on the smoke cohort and planted features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, roc_auc_score

from oaprobe.analysis import ceilings
from oaprobe.analysis.ceilings import (
    COLUMNS,
    ORACLE_FEATURES,
    ceilings_table,
    cohort_seed,
    fit_predict_kl,
    linear_probe_predictions,
    noise_ceiling,
    oracle_ceiling,
    oracle_features,
    planted_params,
    prediction_table,
    score_predictions,
)
from oaprobe.analysis.metrics import METRICS, P_KL_COLUMNS
from oaprobe.data.dataset import read_volume
from oaprobe.data.manifest import read_manifest, write_manifest
from oaprobe.data.phantom import render_knee
from oaprobe.errors import OaprobeError
from oaprobe.facts import KL_GRADES

SHAPE = (16, 16, 16)


def _row(table: pd.DataFrame, truth: str) -> pd.Series:
    return table[table["truth"] == truth].iloc[0]


def test_noise_ceiling_matches_sklearn_on_observed_labels(smoke_manifest: Path) -> None:
    test = read_manifest(smoke_manifest).query("split == 'test'")
    clean, kl = test["kl_clean"].astype(int).to_numpy(), test["kl"].to_numpy()
    assert (clean != kl).any()  # the smoke cohort has label noise: the ceiling is below 1
    row = _row(noise_ceiling(smoke_manifest), "kl")
    assert row["kl_accuracy"] == pytest.approx(accuracy_score(kl, clean))
    assert row["kl_qwk"] == pytest.approx(cohen_kappa_score(kl, clean, labels=KL_GRADES, weights="quadratic"))
    assert row["oa_roc_auc"] == pytest.approx(roc_auc_score(kl >= 2, clean >= 2))
    assert row["oa_accuracy"] == pytest.approx(accuracy_score(kl >= 2, clean >= 2))
    assert row["n"] == len(test)


def test_noise_ceiling_is_perfect_against_clean_grades(smoke_manifest: Path) -> None:
    row = _row(noise_ceiling(smoke_manifest), "kl_clean")
    assert row["kl_mae"] == 0.0
    assert all(row[m] == pytest.approx(1.0) for m in METRICS if m != "kl_mae")


def test_classifier_reaches_accuracy_one_when_features_determine_the_grade() -> None:
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat(KL_GRADES, 8), np.repeat(KL_GRADES, 2)
    x_train = 10.0 * y_train[:, None] + rng.normal(0, 0.1, (y_train.size, 3))
    x_test = 10.0 * y_test[:, None] + rng.normal(0, 0.1, (y_test.size, 3))
    rows = pd.DataFrame({
        "case_id": [f"k{i}" for i in range(y_test.size)], "subject_id": [f"s{i}" for i in range(y_test.size)],
        "split": "test", "kl": y_test, "oa": (y_test >= 2).astype(int),
    })
    scores = score_predictions(prediction_table(rows, fit_predict_kl(x_train, y_train, x_test, C=100.0)), "x")
    assert list(scores["truth"]) == ["kl"]  # no clean grade in these rows
    assert scores.loc[0, "kl_accuracy"] == 1.0 and scores.loc[0, "oa_accuracy"] == 1.0


def test_classifier_gives_zero_to_grades_absent_from_training() -> None:
    y = np.array([0, 0, 3, 3])
    p = fit_predict_kl(np.array([[0.0], [0.1], [3.0], [3.1]]), y, np.array([[0.0], [3.0]]))
    assert p.shape == (2, 5) and np.allclose(p[:, [1, 2, 4]], 0.0) and np.allclose(p.sum(axis=1), 1.0)


def test_oracle_pipeline_is_perfect_with_features_that_encode_the_label(
    smoke_manifest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def planted(table: pd.DataFrame, seed: int) -> pd.DataFrame:
        return pd.DataFrame(10.0 * np.eye(5)[table["kl"].to_numpy()], index=table["case_id"])

    monkeypatch.setattr(ceilings, "oracle_features", planted)
    row = _row(oracle_ceiling(smoke_manifest), "kl")
    assert row["kl_accuracy"] == 1.0 and row["kl_qwk"] == pytest.approx(1.0) and row["oa_accuracy"] == 1.0


def test_oracle_features_reproduce_the_cohort_draw(smoke_manifest: Path) -> None:
    table, seed = read_manifest(smoke_manifest), cohort_seed(smoke_manifest)
    first = oracle_features(table, seed)
    pd.testing.assert_frame_equal(first, oracle_features(table, seed))
    assert list(first.columns) == list(ORACLE_FEATURES)
    knee = table.sort_values("severity").iloc[-1]  # the most diseased knee: lesions present
    params = planted_params(knee["subject_id"], knee["side"], knee["severity"], seed)
    # the re-drawn parameters render the very volume the cohort holds
    stored = read_volume(knee["image_path"])
    np.testing.assert_array_equal(render_knee(params, stored.shape, (4.0, 4.0, 4.0)).image, stored)
    feats = first.loc[knee["case_id"]]
    assert feats["js_med_mm"] == pytest.approx(params.fem_cart_mm[0] + params.tib_cart_mm[0] + params.gap_mm[0])
    assert feats["n_osteophytes"] == len(params.osteophytes) >= 2
    assert feats["osteophyte_radius_sum_mm"] == pytest.approx(sum(o.radius for o in params.osteophytes))


def test_linear_probe_is_deterministic_with_valid_probabilities(smoke_manifest: Path, volume_cache: Path) -> None:
    first = linear_probe_predictions(smoke_manifest, SHAPE, volume_cache)
    pd.testing.assert_frame_equal(first, linear_probe_predictions(smoke_manifest, SHAPE, volume_cache))
    p = first[list(P_KL_COLUMNS)].to_numpy()
    assert (p >= 0).all() and np.allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(first["p_oa"], p[:, 2:].sum(axis=1))
    assert set(first["split"]) == {"test"}


def test_ceilings_table_has_every_ceiling_on_a_synthetic_cohort(smoke_manifest: Path, volume_cache: Path) -> None:
    table = ceilings_table(smoke_manifest, SHAPE, volume_cache)
    assert list(table.columns) == list(COLUMNS)
    expected = [(c, t) for c in ("oracle", "linear_probe", "noise_ceiling") for t in ("kl", "kl_clean")]
    assert list(zip(table["ceiling"], table["truth"])) == expected
    assert (table["n"] == (read_manifest(smoke_manifest)["split"] == "test").sum()).all()


def test_real_data_skips_oracle_and_noise_ceiling(
    smoke_manifest: Path, volume_cache: Path, tmp_path: Path
) -> None:
    real = read_manifest(smoke_manifest).drop(columns=["kl_clean", "severity", "lesion", "evidence"])
    real["image"], real["mask"] = real["image_path"], real["mask_path"]
    path = write_manifest(real.drop(columns=["image_path", "mask_path", "lesion_path", "evidence_path"]), tmp_path / "real.csv")
    with pytest.raises(OaprobeError, match="cohort.json"):
        oracle_ceiling(path)
    with pytest.raises(OaprobeError, match="kl_clean"):
        noise_ceiling(path)
    table = ceilings_table(path, SHAPE, volume_cache)
    assert list(zip(table["ceiling"], table["truth"])) == [("linear_probe", "kl")]
