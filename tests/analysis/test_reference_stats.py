"""The reference study's released per-knee predictions run through oaprobe's statistics must
give its released metrics and its 18-test paired-statistics table (fixtures: README.md there).

Its protocol file names seed 42; one ``numpy.random.default_rng(42)`` drawing ``(B, n)``
knee indices per test, in the table's order, reproduces its bootstrap CIs exactly. Two p-values
differ by a few counts out of B + 1 because resamples with an exactly zero AUC difference
(ties) landed on one side of 0 through the reference's floating-point noise; oaprobe counts
them as ties (both sides).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oaprobe.analysis.metrics import bootstrap_distribution, prediction_metrics
from oaprobe.analysis.paired import (
    REFERENCE_SEED,
    ZERO_TOL,
    align,
    bh,
    load_reference,
    reference_family,
)

FIXTURES = Path(__file__).parent / "fixtures" / "reference"
B = 10_000
METRIC_COLUMNS = {  # reference *_metrics.csv column -> oaprobe metric
    "acc_oa": "oa_accuracy", "auc_oa": "oa_roc_auc", "precision_oa": "oa_precision",
    "recall_oa": "oa_recall", "f1_oa": "oa_f1", "acc_kl": "kl_accuracy",
    "precision_macro_kl": "kl_precision_macro", "recall_macro_kl": "kl_recall_macro",
    "f1_macro_kl": "kl_f1_macro", "auc_macro_kl": "kl_auc_macro",
}


@pytest.fixture(scope="module")
def preds():
    return load_reference(FIXTURES)


@pytest.fixture(scope="module")
def released():
    return pd.read_csv(FIXTURES / "stats_recomputed_with_fdr.csv")


@pytest.fixture(scope="module")
def family(preds):
    return reference_family(preds, B=B, seed=REFERENCE_SEED)


def test_point_metrics_equal_the_released_run_metrics(preds):
    for (backbone, mode), table in preds.items():
        ref = pd.read_csv(FIXTURES / f"{backbone}_{mode}_metrics.csv").iloc[0]
        ours = prediction_metrics(table)
        for col, metric in METRIC_COLUMNS.items():
            if col in ref.index:
                assert ours[metric] == pytest.approx(ref[col], abs=1e-12), (backbone, mode, col)


def test_family_rows_line_up_with_the_released_table(family, released):
    assert family["backbone"].tolist() == released["backbone"].tolist()
    assert family["task"].tolist() == released["task"].tolist()
    assert family["reference_name"].tolist() == released["metric"].tolist()
    np.testing.assert_allclose(family["estimate_a"], released["dual"], atol=1e-6)
    np.testing.assert_allclose(family["estimate_b"], released["single"], atol=1e-6)
    np.testing.assert_allclose(family["diff"], released["delta"], atol=1e-6)


def test_mcnemar_rows_are_exact(family, released):
    rows = released["test"].str.startswith("mcnemar").to_numpy()
    assert rows.sum() == 3
    np.testing.assert_allclose(family.loc[rows, "p"], released.loc[rows, "p_value"], atol=1e-15)
    tables = family.loc[rows, "mcnemar_table"].tolist()
    assert tables == released.loc[rows, "mcnemar_table"].tolist()
    kinds = {"mcnemar_exact": "mcnemar_exact", "mcnemar_chi2+continuity": "mcnemar_chi2_cc"}
    assert family.loc[rows, "test"].tolist() == released.loc[rows, "test"].map(kinds).tolist()


def test_bootstrap_cis_reproduce_the_released_stream(family, released):
    np.testing.assert_allclose(family["ci_low"], released["ci_lo"], atol=1e-6)
    np.testing.assert_allclose(family["ci_high"], released["ci_hi"], atol=1e-6)


def test_bootstrap_p_values_agree_up_to_exact_ties(family, released, preds):
    boot = (released["test"] == "paired_bootstrap").to_numpy()
    gap = (family["p"] - released["p_value"]).abs()
    rng = np.random.default_rng(REFERENCE_SEED)  # replay the stream to count the ties
    for i, row in family.iterrows():
        a, b = align(preds[(row["backbone"], "dual")], preds[(row["backbone"], row["mode_b"])])
        dist = bootstrap_distribution([a, b], [row["metric"]], B, rng)[row["metric"]]
        ties = int((np.abs(dist[:, 0] - dist[:, 1]) <= ZERO_TOL).sum())
        if boot[i]:
            assert gap[i] <= 2 * ties / (B + 1) + 1e-12, (row["backbone"], row["metric"], ties)
    assert boot.sum() == 15 and (gap[boot] < 1e-12).sum() == 13  # the 2 others: OA AUC ties


def test_bh_on_released_p_gives_released_q(released):
    np.testing.assert_allclose(bh(released["p_value"]), released["q_value_BH"], atol=1e-6)


def test_significant_set_matches(family, released):
    assert family["significant"].tolist() == released["sig_fdr_0.05"].tolist()
    assert family["significant"].sum() == 4


def test_other_seed_agrees_within_monte_carlo_tolerance(preds, released):
    other = reference_family(preds, B=B, seed=2026)
    boot = (released["test"] == "paired_bootstrap").to_numpy()
    tail = released["p_value"].to_numpy() / 2  # p = 2 x a tail proportion of B resamples
    sd_diff = np.sqrt(2) * 2 * np.sqrt(np.maximum(tail * (1 - tail), 1e-4) / B)
    tol = 4 * sd_diff + 0.011  # 4 MC sds of a two-run difference + the largest tie allowance
    assert (np.abs(other["p"] - 2 * tail)[boot] <= tol[boot]).all()
    step = 1 / 98  # accuracy differences move on a grid of 1/n
    assert (np.abs(other["ci_low"] - released["ci_lo"]) <= step + 1e-9).all()
    assert (np.abs(other["ci_high"] - released["ci_hi"]) <= step + 1e-9).all()
    assert other["significant"].tolist() == released["sig_fdr_0.05"].tolist()
