"""Tests of oaprobe.report.study on real smoke runs (resnet3d x 3 modes x 2 seeds, 1 epoch).

Metric values are checked against sklearn on the runs' own predictions; the compact views
against the tables they summarise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from oaprobe.config import get_preset
from oaprobe.facts import MODES
from oaprobe.report.claims import latent_verdicts
from oaprobe.report.latent import latent_findings, latent_summary, projections
from oaprobe.report.results import family_table, metric_pivot
from oaprobe.report.saliency import saliency_enrichment, saliency_slices, sanity_summary
from oaprobe.report.study import Study, mean_sd
from oaprobe.training.runs import run_dir, run_id
from tests.report import SMOKE_STUDY, smoke_study_runs


@pytest.fixture(scope="module")
def study(tmp_path_factory, smoke_manifest, volume_cache) -> Study:
    root, grid = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache)
    return Study.from_grid("smoke", smoke_manifest, grid, root)


def _test_auc(run) -> float:
    t = run.predictions[run.predictions["split"] == "test"]
    return roc_auc_score(t["oa"], t["p_oa"])


def test_study_holds_the_grid(study, tmp_path_factory, smoke_manifest, volume_cache):
    root, grid = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache)
    assert [r.path for r in study.runs] == [run_dir(c, root) for c in grid]
    assert study.backbones == ["resnet3d"] and study.seeds == [0, 1] and study.has_clean
    assert len(study.select(mode="dual")) == 2 and len(study.select(mode={"dual", "single_kl"}, seed=1)) == 2
    frame = study.runs_frame()
    assert len(frame) == 6 and set(frame["mode"]) == set(MODES) and set(frame["epochs"]) == {1}
    assert all(r.run_id in study.provenance() for r in study.runs)


def test_main_truth_is_the_clean_grade_only_where_the_cohort_knows_it(study):
    assert study.main_truth == "kl_clean"
    real = Study(study.preset, study.manifest, study.table.assign(kl_clean=pd.NA), study.runs)
    assert not real.has_clean and real.main_truth == "kl"


def test_point_metrics_are_computed_once_and_handed_out_as_copies(study, monkeypatch):
    from oaprobe.report import study as study_module

    expected = study.point_metrics(truth="kl_clean")
    fresh = Study(study.preset, study.manifest, study.table, study.runs)
    first = fresh.point_metrics(truth="kl_clean")
    first.loc[:, "value"] = -1.0  # a caller's change must not reach the next caller
    monkeypatch.setattr(study_module, "prediction_metrics", lambda *a, **k: pytest.fail("recomputed"))
    again = fresh.point_metrics(truth="kl_clean")
    assert (again["value"] != -1.0).all() and len(again) == len(first)
    pd.testing.assert_frame_equal(again, expected)


def test_load_reads_the_finished_runs(study, tmp_path_factory, smoke_manifest):
    root = tmp_path_factory.getbasetemp() / "report_runs"
    again = Study.load("smoke", root, "unused", manifest=smoke_manifest, **SMOKE_STUDY)
    assert [r.run_id for r in again.runs] == [r.run_id for r in study.runs]


def test_a_missing_run_is_an_error_naming_the_command_never_training(study, tmp_path_factory, smoke_manifest, monkeypatch):
    from oaprobe.report.missing import RunsMissingError
    from oaprobe.training import engine

    def must_not_train(*args, **kwargs):
        raise AssertionError("the report layer trained a run")

    monkeypatch.setattr(engine, "fit", must_not_train)
    root = tmp_path_factory.getbasetemp() / "report_runs"
    with pytest.raises(RunsMissingError) as err:
        Study.load("smoke", root, "unused", manifest=smoke_manifest, **{**SMOKE_STUDY, "seeds": [0, 7], "width": 0.5})
    text = str(err.value)
    assert text.startswith("6 of the 6 runs")  # width 0.5: none of the grid is trained
    assert "--backbones resnet3d --modes single_oa,single_kl,dual --seeds 0,7" in text and "--width 0.5" in text
    assert "--epochs 1" in text and "--input-shape" not in text


def test_missing_runs_guidance_trains_exactly_what_is_missing_with_jobs_and_an_estimate(study, tmp_path_factory,
                                                                                         smoke_manifest):
    """A missing set that is not a full backbones x modes x seeds product gets one line per group, and
    each line's grid is exactly its part of the missing runs; the estimate comes from the finished runs."""
    from oaprobe.cli import _parse_value
    from oaprobe.config import RunConfig
    from oaprobe.report.missing import RunsMissingError, sweep_commands
    from oaprobe.sweep import study_grid

    root = tmp_path_factory.getbasetemp() / "report_runs"
    on = dict(epochs=1)
    missing = (study_grid(smoke_manifest, "smoke", ["resnet3d"], ["dual"], [5, 6], **on)
               + study_grid(smoke_manifest, "smoke", ["resnet3d"], ["single_kl"], [7], **on)
               + study_grid(smoke_manifest, "smoke", ["resnet3d"], ["dual"], [5], **on, ema_decay=0.99))
    lines = sweep_commands(missing, "smoke", root, jobs=2)
    assert len(lines) == 3 and all(line.endswith("--jobs 2") and f"--runs {root}" in line for line in lines)
    covered = []
    for line in lines:
        words = line.split()
        flags = dict(zip(words[2::2], words[3::2]))
        fields = {k[2:].replace("-", "_"): _parse_value(RunConfig, k[2:].replace("-", "_"), v) for k, v in flags.items()
                  if k not in ("--preset", "--runs", "--manifest", "--backbones", "--modes", "--seeds", "--jobs")}
        covered += study_grid(flags["--manifest"], flags["--preset"], flags["--backbones"].split(","),
                              flags["--modes"].split(","), [int(x) for x in flags["--seeds"].split(",")], **fields)
    assert sorted(run_id(c) for c in covered) == sorted(run_id(c) for c in missing)
    with pytest.raises(RunsMissingError) as err:
        Study.from_grid("smoke", smoke_manifest, missing, root)
    text = str(err.value)
    assert "build the book" not in text and "--jobs" in text and "with --jobs" in text and text.count("oaprobe sweep") == 3
    assert err.value.missing == missing


def test_point_metrics_against_sklearn(study):
    pm = study.point_metrics()
    for r in study.runs:
        value = pm[(pm["run_id"] == r.run_id) & (pm["metric"] == "oa_roc_auc")]["value"].item()
        assert value == pytest.approx(_test_auc(r))
    assert not ((pm["mode"] == "single_oa") & pm["metric"].str.startswith("kl_")).any()


def test_summary_table_is_mean_sd_over_seeds(study):
    table = study.summary_table()
    assert sorted(table.index) == sorted(("resnet3d", m) for m in MODES)
    for mode in MODES:
        aucs = [_test_auc(r) for r in study.select(mode=mode)]
        assert table.loc[("resnet3d", mode), "oa_roc_auc"] == f"{np.mean(aucs):.3f} ± {np.std(aucs, ddof=1):.3f}"
    assert pd.isna(table.loc[("resnet3d", "single_oa"), "kl_qwk"])


def test_mean_sd_format():
    assert mean_sd(0.81234, 0.0201) == "0.812 ± 0.020" and mean_sd(0.5, np.nan) == "0.500"


def test_seed_level_diffs_against_sklearn(study):
    sl = study.seed_level(metrics=["oa_roc_auc"]).set_index("baseline")
    diffs = [_test_auc(study.select(mode="dual", seed=s)[0]) - _test_auc(study.select(mode="single_oa", seed=s)[0])
             for s in (0, 1)]
    row = sl.loc["single_oa"]
    assert row["metric"] == "oa_roc_auc" and row["n_seeds"] == 2
    assert row["mean"] == pytest.approx(np.mean(diffs)) and row["sd"] == pytest.approx(np.std(diffs, ddof=1))


def test_metric_pivot_formats_estimate_and_ci(study):
    metrics = study.metrics(B=20)
    pivot = metric_pivot(metrics)
    assert len(pivot) == 6
    row = metrics[(metrics["mode"] == "dual") & (metrics["seed"] == 1) & (metrics["metric"] == "oa_roc_auc")].iloc[0]
    assert pivot.loc[("resnet3d", "dual", 1), "oa_roc_auc"] == (
        f"{row['estimate']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
    assert row["estimate"] == pytest.approx(_test_auc(study.select(mode="dual", seed=1)[0]))


def test_family_table_layout(study):
    family = study.paired(B=50)
    table = family_table(family)
    assert len(table) == len(family) and set(table["seed"]) == {0, 1}
    assert set(table["comparison"]) == {"dual vs single_oa", "dual vs single_kl"}
    assert (table["q < 0.05"] == np.where(family["significant"], "yes", "")).all()
    np.testing.assert_allclose(table["diff"], table["dual"] - table["single"])


def test_history_and_never_predicted(study):
    h = study.history()
    assert len(h) == 6 and set(h["run_id"]) == {r.run_id for r in study.runs}
    never = study.never_predicted()
    assert len(never) == 4 and "single_oa" not in set(never["mode"])  # no KL head, no row


@pytest.mark.filterwarnings("ignore:Only one sample available")  # sklearn LDA on a 1-knee grade
def test_latent_tables(study):
    lat = study.latent()
    assert len(lat) == 6 * 2 and set(lat["method"]) == {"pca", "lda"}
    summary = latent_summary(lat)
    dual = lat[(lat["method"] == "pca") & (lat["mode"] == "dual")]["abs_spearman_PC1_KL"]
    assert summary.loc[("resnet3d", "dual"), "abs_spearman_PC1_KL"] == mean_sd(dual.mean(), dual.std())
    findings = latent_findings(study, lat)
    verdicts = latent_verdicts(study, study.main_truth, lat[lat["method"] == "pca"])
    assert len(findings) == int((verdicts["role"] == "primary").sum()) + 2
    assert "single-KL" in findings[0] and findings[-1].startswith("On the supervised LDA axis")
    lda_dual = lat[(lat["method"] == "lda") & (lat["mode"] == "dual")]["abs_spearman_PC1_KL"].mean()
    assert f"dual {lda_dual:.3f}" in findings[-1] and latent_findings(study, lat.iloc[:0]) == []


def test_projections_cover_the_test_knees(study):
    proj = projections(study, seed=0)
    n_test = int((study.table["split"] == "test").sum())
    assert len(proj) == 3 * n_test and set(proj["mode"]) == set(MODES)
    assert np.isfinite(proj[["axis1", "axis2"]].to_numpy()).all()


def test_saliency_views(study):
    sal = study.saliency()
    assert set(sal["run_id"]) == {r.run_id for r in study.runs}
    assert sal["case_id"].nunique() == get_preset("smoke").saliency.knees
    assert set(sal[sal["mode"] == "single_oa"]["target"]) == {"oa"}
    from oaprobe.report.saliency import RUN_TABLE_COLUMNS, saliency_run_table

    table = saliency_run_table(study)
    assert list(table.columns) == list(RUN_TABLE_COLUMNS) and set(table["run_id"]) == set(sal["run_id"])
    row = table[(table["mode"] == "dual") & (table["target"] == "oa") & (table["method"] == "ig")
                & (table["region"] == "cartilage")].iloc[0]
    knees = sal[(sal["run_id"] == row["run_id"]) & (sal["target"] == "oa") & (sal["method"] == "ig")
                & (sal["region"] == "cartilage")]
    assert row["enrichment"] == pytest.approx(knees["enrichment"].mean()) and row["n_knees"] == len(knees)
    assert set(table["region"]) == {"cartilage", "evidence"}  # the smoke cohort is a phantom with evidence maps
    slices = saliency_slices(study, "resnet3d", seed=0, methods=("ig", "occlusion"), max_knees=1)
    assert slices["n_cols"] == 2  # one knee, the smoke preset's two methods side by side
    panels = [["single-OA", "OA target"], ["single-KL", "OA target"], ["single-KL", "KL target"], ["dual", "OA target"],
              ["dual", "KL target"]]
    assert [t.split(" · ")[:2] for t in slices["titles"]] == [p for p in panels for _ in range(2)]
    assert [t.split(" · ")[2].split("<br>")[0] for t in slices["titles"][:2]] == ["integrated gradients", "occlusion"]
    case = sal["case_id"].iloc[0]
    grade = int(study.table.set_index("case_id").loc[case, "kl_clean"])
    assert slices["titles"][0].endswith(f"<br>{case}, clean KL{grade}")
    assert slices["images"][0].shape == (16, 16) and len(slices["saliency"]) == 10
    assert slices["lesion"][0].shape == (16, 16) and slices["lesion"][0].dtype == np.uint8


def test_saliency_enrichment_against_t_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 0.5, 8)
    sal = pd.DataFrame({"backbone": "b", "mode": "dual", "region": "cartilage", "method": "smoothgrad", "target": "oa",
                        "enrichment": np.r_[x, np.nan]})
    other = sal.assign(method="gradcam", enrichment=100.0)
    out = saliency_enrichment(pd.concat([sal, other])).iloc[0]
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert out["n"] == 8 and out["enrichment"] == pytest.approx(x.mean())
    assert out["ci_low"] == pytest.approx(lo) and out["ci_high"] == pytest.approx(hi)


def test_sanity_and_deletion_views(study):
    sanity = study.saliency_sanity()
    assert set(sanity["run_id"]) == {r.run_id for r in study.runs}
    summary = sanity_summary(sanity)
    trained = summary[summary["step"] == 0]
    assert np.allclose(trained["spearman"], 1.0)  # step 0 is the trained map compared with itself
    deletion = study.saliency_deletion()
    assert set(deletion["mode"]) == set(MODES) and deletion["auc_gap"].notna().any()
