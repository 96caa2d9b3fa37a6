"""Tests of oaprobe.report.noise: gains and their trend on planted per-seed metrics (scipy reference)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from oaprobe.report.noise import (
    NoiseStudy,
    cohort_subject,
    describe_agreement,
    describe_gain,
    describe_noise_convergence,
    noise_findings,
)
from oaprobe.report.stated import collect, strip_marks

LEVELS = (0.0, 1.0, 2.0)
SEEDS = (0, 1, 2)


def _planted_metrics(level: float, rng: np.random.Generator) -> pd.DataFrame:
    """Per-seed point metrics where the kl_qwk gain of dual over single_kl is 0.1 + 0.05 * level + noise."""
    rows = []
    for seed in SEEDS:
        base = 0.5 + 0.01 * seed
        values = {
            "single_kl": {"kl_qwk": base, "kl_accuracy": 0.4, "oa_roc_auc": 0.7},
            "single_oa": {"oa_roc_auc": 0.8 - 0.02 * level},
            "dual": {"kl_qwk": base + 0.1 + 0.05 * level + rng.normal(0, 0.01), "kl_accuracy": 0.4,
                     "oa_roc_auc": 0.8 - 0.02 * level + 0.01 * seed},
        }
        for mode, metrics in values.items():
            for metric, value in metrics.items():
                rows.append({"backbone": "resnet3d", "mode": mode, "seed": seed, "run_id": f"{mode}{seed}",
                             "metric": metric, "value": value})
    return pd.DataFrame(rows)


@pytest.fixture()
def planted() -> NoiseStudy:
    rng = np.random.default_rng(0)
    studies = {}
    for lvl in LEVELS:
        table = pd.DataFrame({"kl_clean": [0, 1, 2, 3, 4, 2], "kl": [0, 1, 2, 3, 4, 2 + int(lvl > 0)]})
        pm = _planted_metrics(lvl, rng)
        studies[lvl] = SimpleNamespace(table=table, point_metrics=lambda truth="kl", pm=pm: pm.copy(),
                                       provenance=lambda: "runs")
    return NoiseStudy("smoke", "resnet3d", studies)


def _gains(ns: NoiseStudy, metric: str, base: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = [], []
    for lvl, s in ns.studies.items():
        pm = s.point_metrics()
        wide = pm[pm["metric"] == metric].pivot(index="seed", columns="mode", values="value")
        x += [lvl] * len(wide)
        y += list(wide["dual"] - wide[base])
    return np.array(x), np.array(y)


def test_trend_matches_linregress(planted):
    trend = planted.trend().set_index("metric")
    x, y = _gains(planted, "kl_qwk", "single_kl")
    ref = stats.linregress(x, y)
    row = trend.loc["kl_qwk"]
    assert row["slope"] == pytest.approx(ref.slope) and row["p"] == pytest.approx(ref.pvalue)
    m = len(trend)  # one family: Bonferroni over the chapter's trends
    half = stats.t.ppf(1 - 0.05 / m / 2, len(x) - 2) * ref.stderr
    assert row["ci_low"] == pytest.approx(ref.slope - half) and row["ci_high"] == pytest.approx(ref.slope + half)
    assert row["m"] == m == 3 and row["p_adjusted"] == pytest.approx(min(1.0, m * ref.pvalue))
    assert row["n_gains"] == 9 and row["ci_low"] < 0.05 < row["ci_high"] and row["p"] < 0.05 and row["verdict"] == "grows"
    x, y = _gains(planted, "oa_roc_auc", "single_oa")
    assert trend.loc["oa_roc_auc", "slope"] == pytest.approx(stats.linregress(x, y).slope)
    assert trend.loc["oa_roc_auc", "slope"] == pytest.approx(0.0, abs=1e-12)  # planted: no trend
    assert strip_marks(NoiseStudy.describe_trend(trend.reset_index())[0]).endswith("the gain grows.")


def test_trend_needs_two_levels(planted):
    one = NoiseStudy("smoke", "resnet3d", {0.0: planted.studies[0.0]})
    trend = one.trend()
    assert trend["slope"].isna().all() and set(trend["n_gains"]) == {3}


def test_gain_mean_and_sd_per_level(planted):
    g = planted.gain()
    qwk = g[g["metric"] == "kl_qwk"].set_index("label_noise")
    x, y = _gains(planted, "kl_qwk", "single_kl")
    for lvl in LEVELS:
        assert qwk.loc[lvl, "mean"] == pytest.approx(y[x == lvl].mean())
        assert qwk.loc[lvl, "sd"] == pytest.approx(y[x == lvl].std(ddof=1))
        assert qwk.loc[lvl, "n_seeds"] == 3
    assert qwk["comparison"].iloc[0] == "dual − single_kl: kl_qwk"


def test_curve_counts_seeds(planted):
    c = planted.curve()
    assert set(c["n_seeds"]) == {3}
    row = c[(c["label_noise"] == 1.0) & (c["mode"] == "single_oa")]
    assert row["mean"].item() == pytest.approx(0.78)


def test_label_agreement_against_sklearn(planted):
    agree = planted.label_agreement().set_index("label_noise")
    table = planted.studies[1.0].table
    assert agree.loc[1.0, "kappa"] == pytest.approx(cohen_kappa_score(table["kl_clean"], table["kl"]))
    assert agree.loc[0.0, "kappa"] == pytest.approx(1.0) and agree.loc[0.0, "kl_flip_rate"] == 0
    assert agree.loc[2.0, "kl_flip_rate"] == pytest.approx(1 / 6) and agree.loc[2.0, "oa_flip_rate"] == 0


def test_describe_agreement_at_the_strongest_noise(planted):
    text = describe_agreement(planted.label_agreement())
    kappa = cohen_kappa_score(planted.studies[2.0].table["kl_clean"], planted.studies[2.0].table["kl"])
    assert text == (f"At the strongest label noise (strength 2) observed and clean KL grades agree with kappa {kappa:.3f}: "
                    "16.7% of the 6 knees change KL grade and 0.0% change OA label.")


def test_describe_gain_at_the_weakest_and_strongest_noise(planted):
    gain = planted.gain()
    x, y = _gains(planted, "oa_roc_auc", "single_oa")  # planted: 0.01 * seed, the same at every level
    lo, sd = y[x == 0.0].mean(), y[x == 0.0].std(ddof=1)
    text = describe_gain(gain, "oa_roc_auc")
    assert strip_marks(text) == (f"Dual minus single-OA on OA AUC against the clean grade: +{lo:.3f} ± {sd:.3f} at noise 0 "
                                 f"and +{lo:.3f} ± {sd:.3f} at noise 2 (over 3 seeds).")
    # the stated means, keyed by the cohort whose runs they are (noise 0: the noise-free cohort, as exercise 4 keys it)
    assert dict(collect(text)) == {
        "resnet3d (noise-free cohort): dual - single_oa | oa_roc_auc | kl_clean | 3 seeds | mean": f"+{lo:.3f}",
        f"{cohort_subject('resnet3d', 2.0, 1.0)}: dual - single_oa | oa_roc_auc | kl_clean | 3 seeds | mean": f"+{lo:.3f}"}
    assert cohort_subject("resnet3d", 1.0, 1.0) == "resnet3d" and cohort_subject("m3t", 2.0, 1.0) == "m3t (noise 2 cohort)"
    assert describe_gain(gain, "kl_f1_macro") is None


def test_noise_findings_state_fitted_trends(planted):
    bullets = noise_findings(planted.label_agreement(), planted.gain(), planted.trend())
    assert len(bullets) == 6 and bullets[0].startswith("At the strongest label noise")
    assert bullets[1].startswith("Dual minus single-KL on KL QWK") and bullets[2].startswith("Dual minus single-OA on OA AUC")
    trends = [strip_marks(b) for b in bullets[3:]]  # every trend the chapter fits: a decided one is never left out
    assert [t.split(" gain")[0] for t in trends] == ["KL QWK", "KL accuracy", "OA AUC"]
    assert trends[0].endswith("the gain grows.") and all("Bonferroni over 3" in t and len(t.split()) < 40 for t in trends)


def test_noise_findings_say_why_no_trend(planted):
    one = NoiseStudy("smoke", "resnet3d", {0.0: planted.studies[0.0]})
    bullets = noise_findings(one.label_agreement(), one.gain(), one.trend())
    assert bullets[-1] == ("No trend of the gain on noise strength can be fitted: 3 per-seed gains at 1 strength per "
                           "comparison (a slope needs at least 3 at 2 or more strengths).")
    assert not any("nan" in b for b in bullets)


def test_convergence_stacks_every_strength_with_its_level(planted):
    for lvl, study in planted.studies.items():
        study.convergence = lambda lvl=lvl: pd.DataFrame({"run_id": [f"a{lvl}", f"b{lvl}"], "flagged": [lvl == 2.0, False]})
    conv = planted.convergence()
    assert list(conv["label_noise"]) == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    assert conv.loc[conv["flagged"], "run_id"].tolist() == ["a2.0"]


def test_noise_convergence_sentence_says_where_the_flags_are():
    conv = pd.DataFrame({"label_noise": [0.0, 0.0, 2.0, 2.0], "below_majority": [True, True, False, True],
                         "unstable": False, "degenerate": False})
    conv["flagged"] = conv["below_majority"]
    assert describe_noise_convergence(conv) == (
        "3 of 4 runs are flagged as failed training: 3 below the OA majority rate; every run predicts every "
        "frequent grade (the flagged runs: 2 of 2 at noise 0, 1 of 2 at noise 2).")
    clean = conv.assign(below_majority=False, flagged=False)
    assert describe_noise_convergence(clean).startswith("All 4 runs converged without a flag")
