"""Tests for oaprobe.analysis.paired: hand-computed answers and independent references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from oaprobe.analysis.metrics import MetricsError
from oaprobe.analysis.paired import (
    align,
    bh,
    bootstrap_p,
    compare_pair,
    delong_test,
    from_reference_table,
    holm,
    mcnemar_test,
    reference_family,
)
from tests.analysis.test_metrics import make_preds

COMPARE_COLUMNS = [
    "metric", "task", "test", "estimate_a", "estimate_b", "diff", "ci_low", "ci_high", "p",
    "p_bootstrap", "statistic", "discordant", "a_only", "b_only", "mcnemar_table", "n",
    "n_subjects", "B", "n_valid", "level",
]


def correctness(a_only: int, b_only: int, both: int, neither: int) -> tuple[np.ndarray, ...]:
    ca = np.r_[np.ones(both + a_only), np.zeros(b_only + neither)]
    cb = np.r_[np.ones(both), np.zeros(a_only), np.ones(b_only), np.zeros(neither)]
    return ca, cb


def test_mcnemar_exact_is_the_two_sided_binomial_by_hand():
    r = mcnemar_test(*correctness(a_only=8, b_only=6, both=72, neither=12))
    want = 2 * sum(math.comb(14, k) for k in range(7)) / 2 ** 14
    assert r["test"] == "mcnemar_exact"
    assert r["p"] == pytest.approx(want, abs=1e-15)
    assert r["table"] == [[72, 8], [6, 12]]
    assert (r["discordant"], r["a_only"], r["b_only"]) == (14, 8, 6)


def test_mcnemar_chi2_with_continuity_by_hand():
    r = mcnemar_test(*correctness(a_only=13, b_only=18, both=56, neither=11))
    x2 = (abs(13 - 18) - 1) ** 2 / 31
    assert r["test"] == "mcnemar_chi2_cc"
    assert r["statistic"] == pytest.approx(x2)
    assert r["p"] == pytest.approx(math.erfc(math.sqrt(x2 / 2)), abs=1e-15)


@pytest.mark.parametrize("a_only, b_only, test", [(12, 12, "mcnemar_exact"),
                                                  (13, 12, "mcnemar_chi2_cc")])
def test_mcnemar_switches_at_25_discordant_pairs(a_only, b_only, test):
    assert mcnemar_test(*correctness(a_only, b_only, 5, 5))["test"] == test


def test_bootstrap_p_known_answers():
    assert bootstrap_p(np.full(99, 0.1)) == pytest.approx(2 / 100)
    assert bootstrap_p(np.r_[np.full(9, -1.0), np.full(90, 1.0)]) == pytest.approx(20 / 100)
    assert bootstrap_p(np.zeros(10)) == 1.0  # ties count on both sides; capped at 1
    assert bootstrap_p(np.r_[1e-15, -1e-15, 1.0]) == pytest.approx(1.0)


def test_bh_and_holm_match_statsmodels():
    p = np.random.default_rng(0).random(18) ** 3
    np.testing.assert_allclose(bh(p), multipletests(p, method="fdr_bh")[1], atol=1e-15)
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], atol=1e-15)


def test_bh_and_holm_known_answers_and_nan():
    p = np.array([0.01, 0.03, 0.02, np.nan, 0.20])  # NaN is left out: m = 4
    np.testing.assert_allclose(bh(p), [0.04, 0.04, 0.04, np.nan, 0.20])
    np.testing.assert_allclose(holm(p), [0.04, 0.06, 0.06, np.nan, 0.20])


def test_compare_pair_identical_runs_gives_zero_difference():
    df = make_preds(seed=1)
    t = compare_pair(df, df, ["oa_accuracy", "oa_roc_auc", "kl_f1_macro"], B=200)
    assert list(t.columns) == COMPARE_COLUMNS
    assert (t["diff"] == 0).all() and (t["ci_low"] == 0).all() and (t["ci_high"] == 0).all()
    assert (t["p"] == 1).all()
    acc = t.set_index("metric").loc["oa_accuracy"]
    assert acc["test"] == "mcnemar_exact" and acc["discordant"] == 0


def test_compare_pair_vectorised_equals_loop():
    a, b = make_preds(seed=2), make_preds(seed=3)
    b[["kl", "oa", "kl_clean", "subject_id"]] = a[["kl", "oa", "kl_clean", "subject_id"]]
    metrics = ["oa_accuracy", "oa_roc_auc", "oa_f1", "kl_auc_macro", "kl_accuracy", "kl_f1_macro"]
    vec = compare_pair(a, b, metrics, B=30, seed=4)
    loop = compare_pair(a, b, metrics, B=30, seed=4, method="loop")
    cols = ["estimate_a", "estimate_b", "diff", "ci_low", "ci_high", "p"]
    np.testing.assert_allclose(vec[cols], loop[cols], rtol=0, atol=1e-12)


def test_compare_pair_finds_a_planted_improvement():
    rng = np.random.default_rng(5)
    b = make_preds(n=80, seed=5, knees_per_subject=1, rounded=False)
    a = b.copy()
    a["p_oa"] = np.clip(0.5 * a["oa"] + 0.5 * rng.random(80), 0, 1)  # near-perfect ranking
    t = compare_pair(a, b, ["oa_roc_auc"], B=500).iloc[0]
    assert t["diff"] > 0.2 and t["ci_low"] > 0 and t["p"] < 0.01
    assert t["ci_low"] <= t["diff"] <= t["ci_high"]


def test_compare_pair_aligns_on_case_id():
    a, b = make_preds(seed=6), make_preds(seed=6)
    t1 = compare_pair(a, b, ["oa_roc_auc"], B=100, seed=1)
    t2 = compare_pair(a, b.iloc[::-1], ["oa_roc_auc"], B=100, seed=1)
    pd.testing.assert_frame_equal(t1, t2)


def test_compare_pair_knee_level_resampling_is_narrower_for_twin_knees():
    one = make_preds(n=30, seed=10, knees_per_subject=1, rounded=False)
    a = pd.concat([one, one.assign(case_id=one["case_id"] + "b")], ignore_index=True)
    b = a.assign(p_oa=a["p_oa"][::-1].to_numpy())
    subj = compare_pair(a, b, ["oa_roc_auc"], B=300).iloc[0]
    knee = compare_pair(a, b, ["oa_roc_auc"], B=300, groups="case_id").iloc[0]
    assert subj["n_subjects"] == 30 and knee["n_subjects"] == 60
    assert knee["ci_high"] - knee["ci_low"] < subj["ci_high"] - subj["ci_low"]


def test_compare_pair_rejects_different_knees_or_labels():
    a = make_preds(seed=7)
    with pytest.raises(MetricsError, match="same knees"):
        align(a, a.iloc[1:])
    with pytest.raises(MetricsError, match="disagree.*case_id 'k0'"):
        align(a, a.assign(kl=np.r_[4, a["kl"].iloc[1:]], oa=np.r_[1, a["oa"].iloc[1:]]))


def test_reference_family_columns_and_missing_mode():
    preds = {("net", m): make_preds(seed=8, kl_cols=m != "single_oa")
             for m in ("single_oa", "single_kl", "dual")}
    fam = reference_family(preds, B=50)
    assert len(fam) == 6
    assert list(fam.columns[:4]) == ["backbone", "mode_a", "mode_b", "reference_name"]
    assert {"q_bh", "significant"} <= set(fam.columns)
    assert set(fam.loc[fam["task"] == "OA", "mode_b"]) == {"single_oa"}
    np.testing.assert_allclose(fam["q_bh"], bh(fam["p"]))
    with pytest.raises(MetricsError, match="'net', 'single_kl'"):
        reference_family({k: v for k, v in preds.items() if k[1] != "single_kl"}, B=10)


def slow_delong(y, pa, pb):
    """DeLong 1988 written out: structural components by explicit double loops."""
    pos, neg = [i for i in range(len(y)) if y[i] == 1], [i for i in range(len(y)) if y[i] == 0]
    m, n = len(pos), len(neg)

    def psi(x, z):
        return 1.0 if x > z else 0.5 if x == z else 0.0

    v10, v01, aucs = [], [], []
    for s in (pa, pb):
        v10.append([sum(psi(s[i], s[j]) for j in neg) / n for i in pos])
        v01.append([sum(psi(s[i], s[j]) for i in pos) / m for j in neg])
        aucs.append(sum(v10[-1]) / m)
    s10 = [[sum((v10[r][i] - aucs[r]) * (v10[q][i] - aucs[q]) for i in range(m)) / (m - 1)
            for q in range(2)] for r in range(2)]
    s01 = [[sum((v01[r][j] - aucs[r]) * (v01[q][j] - aucs[q]) for j in range(n)) / (n - 1)
            for q in range(2)] for r in range(2)]
    var = (s10[0][0] + s10[1][1] - 2 * s10[0][1]) / m + (s01[0][0] + s01[1][1] - 2 * s01[0][1]) / n
    z = (aucs[0] - aucs[1]) / math.sqrt(var)
    return aucs, z, math.erfc(abs(z) / math.sqrt(2))


def test_delong_matches_explicit_structural_components():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 40)
    pa = np.round(y * 0.6 + rng.random(40), 1)  # ties on purpose
    pb = np.round(y * 0.2 + rng.random(40), 1)
    (auc_a, auc_b), z, p = slow_delong(y.tolist(), pa.tolist(), pb.tolist())
    r = delong_test(y, pa, pb).iloc[0]
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, pa), abs=1e-12)
    assert r["auc_a"] == pytest.approx(auc_a, abs=1e-12)
    assert r["auc_b"] == pytest.approx(auc_b, abs=1e-12)
    assert r["z"] == pytest.approx(z, rel=1e-10)
    assert r["p"] == pytest.approx(p, rel=1e-10)
    assert r["ci_low"] < r["diff"] < r["ci_high"]


def test_delong_identical_scores_gives_p_one():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    r = delong_test(y, s, s).iloc[0]
    assert r["diff"] == 0 and r["p"] == 1.0


def test_from_reference_table_maps_columns():
    ref = pd.DataFrame({"CMT_ID": [405], "label_kl": [3], "label_oa": [1], "prob_oa": [0.7],
                        "pred_oa": [1]})
    t = from_reference_table(ref)
    assert t.loc[0, "case_id"] == "CMT405" and t.loc[0, "split"] == "test"
    assert t[["p_kl0", "p_kl4"]].isna().all().all()
    with pytest.raises(MetricsError, match="prob_oa"):
        from_reference_table(ref.drop(columns="prob_oa"))
