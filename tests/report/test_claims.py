"""The three claims' verdicts: planted per-run values with known answers, an independent recompute
of the latent verdict from embeddings (scikit-learn + scipy), and the real smoke runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from oaprobe.analysis.latent import within_class_order
from oaprobe.report.claims import (
    QUESTIONS,
    VERDICT_COLUMNS,
    compare_verdicts,
    decide_claim,
    decisive_method,
    describe_knee_sampling,
    extreme_absorption,
    family_size,
    knee_sampling,
    latent_verdicts,
    mark_perturbed,
    metric_verdicts,
    pair_seeds,
    read_perturbed,
    reference_diff,
    saliency_verdicts,
    stack_verdicts,
    write_perturbed,
)
from oaprobe.report.study import Study
from tests.report import smoke_study_runs


def _values(effect: dict[str, float], seeds: int = 8, metric: str = "latent_order", noise: float = 0.005) -> pd.DataFrame:
    """Per-run values of one metric: single-KL and single-OA at 0.6, dual at 0.6 + effect[backbone]."""
    rng = np.random.default_rng(1)
    rows = []
    for bb, shift in effect.items():
        for s in range(seeds):
            base = 0.6 + rng.normal(0, 0.02)
            for mode, extra in (("single_kl", 0.0), ("single_oa", 0.0), ("dual", shift)):
                rows.append({"run_id": f"{bb}-{mode}-{s}", "backbone": bb, "mode": mode, "seed": s, "metric": metric,
                             "value": base + extra + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def test_planted_effects_get_their_verdicts():
    values = _values({"resnet3d": 0.10, "m3t": 0.0, "nnmamba": -0.10})
    failed = pd.Series(False, index=values["run_id"])
    pairs = pd.concat([pair_seeds(values, b, failed) for b in ("single_kl", "single_oa")])
    out = decide_claim(pairs, "latent", truth="kl_clean").set_index(["backbone", "baseline"])
    for base in ("single_kl", "single_oa"):
        assert out.loc[("resnet3d", base), "verdict"] == "helps"
        assert out.loc[("m3t", base), "verdict"] == "equivalent"
        assert out.loc[("nnmamba", base), "verdict"] == "hurts"
    assert set(out["m"]) == {6} and list(decide_claim(pairs, "latent").columns) == list(VERDICT_COLUMNS)
    part = pairs[pairs["backbone"] == "resnet3d"]  # a part-finished grid keeps the whole family's m
    assert set(decide_claim(part, "latent")["m"]) == {2}
    assert set(decide_claim(part, "latent", family_backbones=3)["m"]) == {6}


def test_nominal_intervals_are_plain_t_intervals_and_the_test_ones_bonferroni():
    values = _values({"resnet3d": 0.02}, noise=0.02)
    pairs = pair_seeds(values, "single_kl", pd.Series(False, index=values["run_id"]))
    row = decide_claim(pairs, "latent").iloc[0]
    d = pairs["diff"].to_numpy()
    se = d.std(ddof=1) / np.sqrt(d.size)
    for level, lo, hi in ((0.90, "ci90_low", "ci90_high"), (0.95, "ci95_low", "ci95_high"),
                          (1 - 0.05 / row["m"], "test_low", "test_high")):
        ref = stats.t.interval(level, d.size - 1, loc=d.mean(), scale=se)
        assert (row[lo], row[hi]) == pytest.approx(ref)
    assert row["m"] == family_size("latent", "primary", 1) == 2


def test_a_failed_run_cannot_decide_alone():
    values = _values({"resnet3d": 0.0}, seeds=6, noise=0.001)
    values.loc[(values["mode"] == "dual") & (values["seed"] == 0), "value"] += 1.0  # one wild dual run
    failed = pd.Series(values["run_id"].eq("resnet3d-dual-0").to_numpy(), index=values["run_id"])
    row = decide_claim(pair_seeds(values, "single_kl", failed), "latent").iloc[0]
    assert row["n_flagged"] == 1 and row["verdict_without_flagged"] == "equivalent"
    assert row["verdict_all"] != "equivalent" and row["verdict"] == "inconclusive"


def test_saliency_pairs_compare_maps_of_the_baselines_target():
    rows, rng = [], np.random.default_rng(2)
    for s in range(6):
        for mode in ("single_oa", "single_kl", "dual"):
            for target in ("oa", "kl"):
                value = 2.0 + (0.5 if (mode == "dual" and target == "oa") else 0.0) + 0.01 * rng.normal()
                rows.append({"run_id": f"r-{mode}-{s}", "backbone": "resnet3d", "mode": mode, "seed": s,
                             "target": target, "method": "gradcam", "region": "cartilage", "enrichment": value,
                             "n_knees": 8, "randomisation_passed": True, "deletion_passed": True, "trusted": True})
    table = pd.DataFrame(rows)

    class Conv:  # what saliency_verdicts reads of a Study: convergence, and a test set that carries findings
        table = pd.DataFrame({"split": "test", "kl": np.arange(100) % 5})
        backbones = ["resnet3d"]

        @staticmethod
        def convergence():
            return pd.DataFrame({"run_id": table["run_id"].unique(), "flagged": False})

    out = saliency_verdicts(Conv, table, "gradcam").set_index("baseline")
    assert out.loc["single_oa", "verdict"] == "helps" and out.loc["single_kl", "verdict"] == "equivalent"
    table.loc[table["mode"] == "dual", "trusted"] = False  # every dual map fails its check
    out = saliency_verdicts(Conv, table, "gradcam")
    assert (out["n_flagged"] == 6).all() and (out["verdict"] == "inconclusive").all()


def test_extreme_absorption_and_within_class_order_known_answers():
    true = np.array([0, 0, 0, 0, 4, 4, 1, 3])
    assert extreme_absorption(true, np.array([1, 1, 0, 0, 3, 4, 1, 3])) == pytest.approx((0.5 + 0.5) / 2)
    kl = np.repeat(np.arange(5), 20)
    rng = np.random.default_rng(0)
    assert within_class_order(kl + 0.1 * rng.normal(size=kl.size), kl) > 0.9
    coarse = (kl >= 2) + 0.01 * rng.normal(size=kl.size)  # only OA vs no-OA: no order inside a class
    assert abs(within_class_order(coarse, kl)) < 0.3
    assert spearmanr(coarse, kl).statistic > 0.7  # ... although the overall order is high


def test_reference_differences_are_the_published_ones():
    assert reference_diff("resnet3d", "latent_order", "single_kl") == pytest.approx(0.7526 - 0.6665)
    assert reference_diff("m3t", "oa_roc_auc", "single_oa") == pytest.approx(0.9170 - 0.7922)
    assert np.isnan(reference_diff("m3t", "kl_qwk", "single_kl"))


@pytest.fixture(scope="module")
def study(tmp_path_factory, smoke_manifest, volume_cache) -> Study:
    root, grid = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache)
    return Study.from_grid("smoke", smoke_manifest, grid, root)


def test_latent_verdicts_recompute_independently_from_embeddings(study):
    """The verdict table's mean difference is |Spearman(PC1, clean KL)| of dual minus single-KL, with
    StandardScaler + PCA fitted on train embeddings only, recomputed here without oaprobe's latent code."""
    table = study.table.set_index("case_id")
    value = {}
    for r in study.runs:
        e = r.embeddings
        split, cases, x = np.asarray(e["split"]).astype(str), np.asarray(e["case_id"]).astype(str), e["embedding"]
        scaler = StandardScaler().fit(x[split == "train"])
        pca = PCA(2, random_state=0).fit(scaler.transform(x[split == "train"]))
        pc1 = pca.transform(scaler.transform(x[split == "test"]))[:, 0]
        value[(r.config.backbone, r.config.mode, r.config.seed)] = abs(
            spearmanr(pc1, table.loc[cases[split == "test"], "kl_clean"]).statistic)
    out = latent_verdicts(study, "kl_clean")
    row = out[(out["metric"] == "latent_order") & (out["baseline"] == "single_kl")].iloc[0]
    diffs = [value[(row["backbone"], "dual", s)] - value[(row["backbone"], "single_kl", s)] for s in study.seeds]
    assert row["mean"] == pytest.approx(np.mean(diffs)) and row["n"] == len(study.seeds)


def test_metric_verdicts_match_the_answer_table(study):
    from oaprobe.report.answer import answer_table

    ours = metric_verdicts(study, "kl_clean").set_index(["backbone", "metric"])
    theirs = answer_table(study).query("truth == 'kl_clean'").set_index(["backbone", "metric"])
    for key, row in ours.iterrows():
        assert row["mean"] == pytest.approx(theirs.loc[key, "mean"]) and row["verdict"] == theirs.loc[key, "verdict"]
    assert len(stack_verdicts([ours.reset_index()])) == len(ours)


def test_questions_are_declared_once_each():
    keys = [(q.claim, q.metric, q.baseline) for q in QUESTIONS]
    assert len(keys) == len(set(keys)) and {q.claim for q in QUESTIONS} == {"metrics", "latent", "saliency"}


def test_compare_verdicts_marks_flips_and_missing_questions():
    base = {"claim": "latent", "role": "primary", "metric": "latent_order", "baseline": "single_kl", "truth": "kl",
            "method": "", "n": 12}
    book = pd.DataFrame([{**base, "backbone": b, "mean": 0.1, "verdict": v}
                         for b, v in (("resnet3d", "helps"), ("m3t", "equivalent"), ("nnmamba", "helps"))])
    other = book.iloc[:2].assign(verdict=["helps", "inconclusive"])
    out = compare_verdicts(book, other).set_index("backbone")
    assert out.loc["resnet3d", "same"] == True and out.loc["m3t", "same"] == False  # noqa: E712
    assert pd.isna(out.loc["nnmamba", "same"])


def test_perturbed_verdicts_belong_to_the_grid_they_were_compared_with(tmp_path):
    book = pd.DataFrame([{"claim": "latent", "role": "primary", "metric": "latent_order", "baseline": "single_kl",
                          "truth": "kl", "method": "", "backbone": "m3t", "n": 12, "mean": 0.1, "verdict": "helps"}])
    assert read_perturbed(tmp_path, ["a", "b"])[0] is None
    write_perturbed(book.assign(verdict="inconclusive"), tmp_path, ["b", "a"])
    table, _ = read_perturbed(tmp_path, ["a", "b"])
    marked = mark_perturbed(book, table)
    assert marked["verdict_perturbed"].tolist() == ["inconclusive"] and marked["same_under_perturbation"].tolist() == [False]
    other, note = read_perturbed(tmp_path, ["a", "c"])
    assert other is None and "another grid" in note


def test_the_decisive_method_is_chosen_by_its_checks():
    rows = [{"run_id": f"r{i}", "method": m, "trusted": t}
            for m, flags in (("ig", [True, True, True, False]), ("gradcam", [True, False, False, False]))
            for i, t in enumerate(flags)]
    table = pd.DataFrame(rows)
    assert decisive_method(table) == "ig"
    table.loc[table["method"] == "ig", "trusted"] = [True, True, False, False]  # half is not most
    assert decisive_method(table) is None and decisive_method(table.iloc[:0]) is None


def test_claim_figure_lists_backbones_in_the_verdicts_order():
    from oaprobe.report.answer import claim_figure_inputs

    values = _values({"resnet3d": 0.1, "m3t": 0.0, "nnmamba": -0.1})
    pairs = pair_seeds(values, "single_kl", pd.Series(False, index=values["run_id"]))
    pairs = pairs.sort_values("backbone")  # alphabetical, as a pivot leaves them
    verdicts = decide_claim(pairs, "latent", order=["resnet3d", "m3t", "nnmamba"])
    seeds, summary, panels = claim_figure_inputs(pairs, verdicts)
    assert list(dict.fromkeys(seeds["backbone"])) == list(summary["backbone"]) == ["ResNet3D", "M3T", "nnMamba"]
    assert list(panels.values()) == ["latent order |ρ(PC1, grade)| vs single-KL"]


def test_knee_sampling_pairs_each_baseline_with_duals_map_of_its_target():
    rng = np.random.default_rng(3)
    rows = []
    for seed in range(40):
        for mode, target in (("dual", "kl"), ("dual", "oa"), ("single_kl", "kl"), ("single_oa", "oa")):
            shift = {"dual": 1.0, "single_kl": 0.0, "single_oa": 0.5}[mode] + rng.normal(0, 0.1)
            for knee in range(5):
                for region in ("cartilage", "lesion"):
                    rows.append({"backbone": "m3t", "mode": mode, "target": target, "seed": seed, "case_id": f"k{knee}",
                                 "method": "ig", "region": region, "enrichment": 5 + shift + rng.normal(0, 1.0)})
    table = knee_sampling(pd.DataFrame(rows), "ig", ["m3t"]).set_index("baseline")
    assert table["knees"].tolist() == [5, 5] and table["seeds"].tolist() == [40, 40]
    # per-knee difference variance 2 over 5 knees against a seed-mean difference variance of 0.02: 0.95
    assert table["knee_share"].between(0.5, 1.0).all()  # 40 seeds estimate a variance within about +-25%
    assert (table["seeds_needed_xinf"] <= table["seeds_needed_x1"]).all()
    assert "of 2 questions" in describe_knee_sampling(table.reset_index())
