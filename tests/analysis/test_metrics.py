"""Tests for oaprobe.analysis.metrics: known answers, scikit-learn / scipy as references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    cohen_kappa_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from oaprobe.analysis.metrics import (
    METRICS,
    P_KL_COLUMNS,
    MetricsError,
    bootstrap_ci,
    bootstrap_distribution,
    confusion,
    group_rows,
    group_weights,
    kl_metrics,
    metrics_table,
    oa_metrics,
    pred_arrays,
    prediction_metrics,
    resample_groups,
)


def make_preds(n: int = 40, seed: int = 0, knees_per_subject: int = 2, kl_cols: bool = True,
               rounded: bool = True) -> pd.DataFrame:
    """A random predictions.csv table; rounded probabilities give many tied scores."""
    rng = np.random.default_rng(seed)
    kl = np.r_[np.arange(5), rng.integers(0, 5, n - 5)]
    p_kl = rng.dirichlet(np.ones(5), n)
    p_oa = rng.random(n)
    if rounded:
        p_kl = np.round(p_kl, 1) + 1e-3
        p_kl /= p_kl.sum(axis=1, keepdims=True)
        p_oa = np.round(p_oa, 1)
    df = pd.DataFrame({
        "case_id": [f"k{i}" for i in range(n)],
        "subject_id": [f"s{i // knees_per_subject}" for i in range(n)],
        "split": "test", "kl": kl, "oa": (kl >= 2).astype(int),
        "kl_clean": np.clip(kl + rng.integers(-1, 2, n), 0, 4), "p_oa": p_oa,
    })
    for k, col in enumerate(P_KL_COLUMNS):
        df[col] = p_kl[:, k] if kl_cols else np.nan
    df["pred_oa"] = (df["p_oa"] >= 0.5).astype(int)
    df["pred_kl"] = p_kl.argmax(axis=1) if kl_cols else pd.NA
    return df


def test_oa_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 2, 50), rng.random(50)
    pred = (p >= 0.5).astype(int)
    m = oa_metrics(y, p)
    tn = int(((y == 0) & (pred == 0)).sum())
    fp = int(((y == 0) & (pred == 1)).sum())
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["average_precision"] == pytest.approx(average_precision_score(y, p))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["balanced_accuracy"] == pytest.approx((m["recall"] + m["specificity"]) / 2)


def test_oa_metrics_threshold_and_single_class():
    y = np.array([0, 1, 1])
    assert oa_metrics(y, np.array([0.2, 0.3, 0.9]), threshold=0.25)["accuracy"] == pytest.approx(1)
    m = oa_metrics(np.zeros(3, int), np.array([0.1, 0.2, 0.7]))
    assert np.isnan(m["roc_auc"]) and np.isnan(m["average_precision"])


def test_kl_metrics_match_sklearn():
    rng = np.random.default_rng(2)
    y = np.r_[np.arange(5), rng.integers(0, 5, 45)]
    p = rng.dirichlet(np.ones(5), 50)
    pred = p.argmax(axis=1)
    m = kl_metrics(y, p)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert m["precision_macro"] == pytest.approx(
        precision_score(y, pred, average="macro", zero_division=0))
    assert m["recall_macro"] == pytest.approx(m["balanced_accuracy"])
    assert m["auc_macro"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr"))
    assert m["qwk"] == pytest.approx(cohen_kappa_score(y, pred, weights="quadratic"))
    assert m["mae"] == pytest.approx(np.abs(y - pred).mean())


def test_kl_metrics_never_predicted_flags_degenerate_output():
    y = np.array([0, 1, 2, 3, 4])
    p = np.eye(5)[[0, 0, 2, 2, 2]]
    m = kl_metrics(y, p)
    assert m["never_predicted"] == (1, 3, 4)
    assert m["accuracy"] == pytest.approx(0.4)
    assert m["mae"] == pytest.approx((0 + 1 + 0 + 1 + 2) / 5)


def test_kl_macro_auc_uses_present_grades_when_one_is_missing():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 30)  # grade 4 absent
    p = rng.dirichlet(np.ones(5), 30)
    want = np.mean([roc_auc_score(y == k, p[:, k]) for k in range(4)])
    assert kl_metrics(y, p)["auc_macro"] == pytest.approx(want)


def test_confusion_known_answer():
    c = confusion([0, 0, 1, 2], [0, 1, 1, 1])
    assert c.index.name == "true" and c.columns.name == "pred"
    assert c.to_numpy().tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert confusion([0], [0], labels=range(5)).shape == (5, 5)


def test_prediction_metrics_keys_and_single_oa_skips_kl():
    df = make_preds()
    m = prediction_metrics(df)
    assert m["n"] == 40 and m["n_subjects"] == 20
    assert {f"oa_{k}" for k in ("accuracy", "roc_auc")} <= set(m)
    assert "kl_qwk" in m and "kl_never_predicted" in m
    m1 = prediction_metrics(make_preds(kl_cols=False))
    assert not any(k.startswith("kl_") for k in m1)


def test_prediction_metrics_clean_truth_uses_kl_clean():
    df = make_preds()
    m = prediction_metrics(df, truth="kl_clean")
    y = (df["kl_clean"] >= 2).astype(int)
    assert m["oa_accuracy"] == pytest.approx(accuracy_score(y, df["p_oa"] >= 0.5))
    assert m["kl_accuracy"] == pytest.approx(accuracy_score(df["kl_clean"], df["pred_kl"]))


def test_prediction_metrics_split_filter():
    df = make_preds()
    df.loc[:9, "split"] = "val"
    assert prediction_metrics(df, split="val")["n"] == 10
    with pytest.raises(MetricsError, match="split == 'train'"):
        prediction_metrics(df, split="train")


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.drop(columns="p_oa"), "lacks columns"),
    (lambda d: d.assign(oa=1 - d["oa"]), "case_id 'k0'.*oa inconsistent"),
    (lambda d: d.assign(p_kl0=d["p_kl0"] + 0.5), "case_id 'k0'.*sum to 1"),
    (lambda d: d.assign(p_oa=d["p_oa"] + 2), "case_id 'k0'.*p_oa"),
    (lambda d: d.assign(kl=d["kl"] + 7), "case_id 'k0'.*outside 0-4"),
])
def test_bad_tables_raise_naming_the_row(mutate, match):
    with pytest.raises(MetricsError, match=match):
        prediction_metrics(mutate(make_preds()))


@pytest.mark.parametrize("rounded", [True, False], ids=["tied-scores", "distinct-scores"])
def test_vectorised_equals_sklearn_loop_on_same_resamples(rounded):
    a = pred_arrays(make_preds(n=40, seed=4, rounded=rounded))
    vec = bootstrap_distribution([a], METRICS, 25, seed=7)
    loop = bootstrap_distribution([a], METRICS, 25, seed=7, method="loop")
    for m in METRICS:
        np.testing.assert_allclose(vec[m], loop[m], rtol=0, atol=1e-12, err_msg=m)


def test_vectorised_equals_loop_on_tiny_resamples_with_undefined_metrics():
    a = pred_arrays(make_preds(n=6, seed=5, knees_per_subject=1))
    vec = bootstrap_distribution([a], METRICS, 40, seed=1)
    loop = bootstrap_distribution([a], METRICS, 40, seed=1, method="loop")
    for m in METRICS:
        np.testing.assert_allclose(vec[m], loop[m], rtol=0, atol=1e-12, err_msg=m)


def test_chunk_size_does_not_change_the_draws():
    one = np.concatenate(list(resample_groups(7, 10, seed=3, chunk=10)))
    many = np.concatenate(list(resample_groups(7, 10, seed=3, chunk=3)))
    np.testing.assert_array_equal(one, many)


def test_group_weights_count_each_knee_of_each_drawn_subject():
    subject = np.array([0, 0, 1, 2, 2])
    draws = np.array([[0, 0, 2], [1, 2, 1]])
    w = group_weights(draws, subject, 3)
    for row, draw in zip(w, draws):
        rows = group_rows(draw, subject)
        np.testing.assert_array_equal(row, np.bincount(rows, minlength=5))


def test_bootstrap_ci_matches_scipy_bootstrap_on_same_resamples():
    df = make_preds(n=30, seed=6, knees_per_subject=2, rounded=False)
    a = pred_arrays(df)
    members = [np.flatnonzero(a.subject == g) for g in range(a.n_subjects)]

    def auc_of_subjects(s):
        rows = np.concatenate([members[int(g)] for g in s])
        y = a.y_oa[rows]
        return roc_auc_score(y, a.p_oa[rows]) if 0 < y.sum() < y.size else np.nan

    ref = stats.bootstrap((np.arange(a.n_subjects),), auc_of_subjects, n_resamples=199,
                          vectorized=False, method="percentile", confidence_level=0.9,
                          rng=np.random.default_rng(11))
    ours = bootstrap_ci(df, "oa_roc_auc", B=199, seed=11, level=0.9).iloc[0]
    assert ours["n_valid"] == 199
    assert ours["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert ours["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=1e-12)


def test_subject_bootstrap_keeps_a_subjects_knees_together():
    one = make_preds(n=20, seed=8, knees_per_subject=1)
    both = pd.concat([one, one.assign(case_id=one["case_id"] + "b")], ignore_index=True)
    ci1 = bootstrap_ci(one, ["oa_roc_auc", "kl_f1_macro"], B=200, seed=2)
    ci2 = bootstrap_ci(both, ["oa_roc_auc", "kl_f1_macro"], B=200, seed=2)
    np.testing.assert_allclose(ci1[["ci_low", "ci_high"]], ci2[["ci_low", "ci_high"]],
                               atol=1e-12)
    knee = bootstrap_ci(both, "oa_roc_auc", B=200, seed=2, groups="case_id").iloc[0]
    assert knee["ci_high"] - knee["ci_low"] < ci2["ci_high"][0] - ci2["ci_low"][0]


def test_bootstrap_ci_is_deterministic_and_brackets_the_estimate():
    df = make_preds(n=40, seed=9)
    t1 = bootstrap_ci(df, "kl_qwk", B=300, seed=5)
    t2 = bootstrap_ci(df, "kl_qwk", B=300, seed=5)
    pd.testing.assert_frame_equal(t1, t2)
    r = t1.iloc[0]
    assert r["ci_low"] <= r["estimate"] <= r["ci_high"]


def test_unknown_metric_is_an_error():
    with pytest.raises(MetricsError, match="unknown metric 'oa_auc'"):
        bootstrap_ci(make_preds(), "oa_auc", B=10)


def test_metrics_table_is_tidy_and_skips_kl_for_single_oa():
    runs = {("resnet", "dual"): make_preds(seed=1),
            ("resnet", "single_oa"): make_preds(seed=2, kl_cols=False)}
    t = metrics_table(runs, key_names=("backbone", "mode"), B=50)
    assert list(t.columns[:4]) == ["backbone", "mode", "task", "metric"]
    assert {"estimate", "ci_low", "ci_high", "n_valid"} <= set(t.columns)
    assert set(t.loc[t["mode"] == "single_oa", "task"]) == {"OA"}
    assert len(t) == len(METRICS) + 8
