"""Tests of oaprobe.report.beyond's tables and sentences on planted per-seed metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oaprobe.report.answer import main_family
from oaprobe.report.beyond import (
    KEY_FINDINGS,
    BeyondStudy,
    beyond_findings,
    comparison_family,
    describe_comparison,
    describe_lambda,
    variant_name,
)
from oaprobe.report.stated import strip_marks

#: variant -> per-seed kl_qwk (seeds 0, 1, 2); kl_mae and oa_roc_auc are planted from it
QWK = {"single_kl": [0.50, 0.52, 0.54], "dual": [0.60, 0.61, 0.65], "ordinal": [0.58, 0.60, 0.62],
       "single_kl + smoothing": [0.50, 0.53, 0.54], "dual (lambda 4)": [0.55, 0.56, 0.57]}


@pytest.fixture()
def planted() -> BeyondStudy:
    rows = []
    for variant, values in QWK.items():
        lam = 4.0 if "lambda" in variant else (1.0 if variant == "dual" else None)
        for seed, q in enumerate(values):
            for metric, v in (("kl_qwk", q), ("kl_mae", 1 - q), ("oa_roc_auc", 0.8)):
                rows.append({"variant": variant, "lambda": lam, "seed": seed, "metric": metric, "value": v})
    bs = BeyondStudy("smoke", study=None)  # type: ignore[arg-type]
    frame = pd.DataFrame(rows)
    bs.metrics = lambda: frame.copy()  # type: ignore[method-assign]
    return bs


def test_variant_names():
    assert variant_name("single_kl", 0.1, 1.0) == "single_kl + smoothing"
    assert variant_name("dual", 0.1, 0.25) == "dual + smoothing (lambda 0.25)"


def test_summary_table_mean_and_sd_in_run_order(planted):
    t = planted.summary_table()
    assert list(t.index) == list(QWK) and list(t.columns) == ["kl_qwk", "kl_mae", "oa_roc_auc"]
    dual = np.array(QWK["dual"])
    assert t.loc["dual", "kl_qwk"] == f"{dual.mean():.3f} ± {dual.std(ddof=1):.3f}"
    assert t.loc["dual", "oa_roc_auc"] == "0.800 ± 0.000"


def test_comparisons_are_paired_by_seed(planted):
    tests = planted.comparisons().set_index(["comparison", "metric"])
    diff = np.array(QWK["dual"]) - np.array(QWK["ordinal"])
    row = tests.loc[("dual vs ordinal", "kl_qwk")]
    assert row["mean"] == pytest.approx(diff.mean()) and row["n_seeds"] == 3
    assert ("dual + smoothing vs dual", "kl_qwk") not in tests.index  # no such runs planted


def test_comparisons_follow_the_rule_with_bonferroni_over_the_chapter(planted):
    from oaprobe.analysis.decision import decide

    tests = planted.comparisons()
    own = tests[[comparison_family(c, mt, planted.preset) is None for c, mt in zip(tests["comparison"], tests["metric"])]]
    family = len(own)
    # 4 comparisons with both variants x 3 metrics; dual vs single-KL in KL QWK (primary) and KL MAE (secondary)
    # keep the main grid's families, so every page states them with one verdict
    assert len(tests) == 12 and family == 10 and (own["m"] == family).all()
    main = tests[tests["comparison"] == "dual vs single_kl"].set_index("metric")["m"]
    assert main["kl_qwk"] == 1 and main["kl_mae"] == main_family("kl_mae", "single_kl", planted.preset)
    row = tests.set_index(["comparison", "metric"]).loc[("dual vs ordinal", "kl_mae")]
    diff = (1 - np.array(QWK["dual"])) - (1 - np.array(QWK["ordinal"]))
    expected = decide(diff, delta=0.03, m=family, lower_is_better=True)
    assert row["verdict"] == expected["verdict"] and row["ci_low"] == pytest.approx(expected["ci_low"])


def test_describe_comparison_states_the_rule():
    row = pd.Series({"comparison": "dual vs ordinal", "metric": "kl_mae", "n_seeds": 3, "mean": -0.1, "alpha": 0.05 / 9,
                     "ci_low": -0.2, "ci_high": -0.01, "eq_low": -0.15, "eq_high": -0.05, "delta": 0.03, "m": 9,
                     "verdict": "helps"})
    text = strip_marks(describe_comparison(row, "kl_clean", "resnet3d"))
    assert text == ("ResNet3D, KL MAE, dual vs ordinal, clean grade: -0.100 over 3 seeds (99.4% CI -0.200 to -0.010; "
                    "δ ±0.03, Bonferroni over 9): helps.")
    assert len(text.split()) < 40
    one = row.copy()
    one[["ci_low", "ci_high"]] = np.nan
    one["verdict"] = "inconclusive"
    assert "(no spread, so no interval; δ ±0.03" in describe_comparison(one)


def test_describe_lambda_peak(planted):
    curve = planted.lambda_curve()
    dual = np.array(QWK["dual"])
    assert describe_lambda(curve) == (f"Over λ 1, 4, dual's KL QWK peaks at λ 1 "
                                      f"({dual.mean():.3f} ± {dual.std(ddof=1):.3f} over 3 seeds).")
    assert "is lowest at λ 1" in describe_lambda(curve, "kl_mae")
    assert describe_lambda(curve.iloc[:0]) is None


def test_beyond_findings_state_the_key_comparisons_and_the_peak(planted):
    bullets = beyond_findings(planted.comparisons(), planted.lambda_curve())
    assert len(bullets) == len(KEY_FINDINGS) + 1
    assert bullets[0].startswith("ResNet3D, KL QWK, dual vs ordinal") and bullets[3].startswith("ResNet3D, OA AUC, dual vs ordinal")
    assert bullets[2].startswith("ResNet3D, KL QWK, single-KL + smoothing vs single-KL") and bullets[-1].startswith("Over λ")
    assert beyond_findings(pd.DataFrame(), pd.DataFrame()) == []
