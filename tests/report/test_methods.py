"""Tests of oaprobe.report.methods on the shared smoke runs: tables built from the configs used."""

from __future__ import annotations

import pytest

from oaprobe.config import PRESETS, get_preset
from oaprobe.report.methods import REFERENCE_PROTOCOL, methods_tables
from oaprobe.report.study import Study
from tests.report import smoke_study_runs


@pytest.fixture(scope="module")
def tables(tmp_path_factory, smoke_manifest, volume_cache):
    root, grid = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache)
    study = Study.from_grid("smoke", smoke_manifest, grid, root)
    return study, methods_tables(study)


def test_cohort_table_counts_the_manifest(tables):
    study, t = tables
    cohort = dict(zip(t["cohort"]["setting"], t["cohort"]["value"]))
    assert cohort["n_subjects"] == "24" and cohort["knees"] == str(len(study.table))
    assert cohort["subjects"] == str(study.table["subject_id"].nunique())
    for split, n in study.table["split"].value_counts().items():
        assert cohort[f"{split} knees"] == str(n)


def test_shared_settings_exclude_per_run_fields(tables):
    _, t = tables
    shared = dict(zip(t["shared"]["setting"], t["shared"]["value"]))
    assert shared["epochs"] == "1" and shared["input_shape"] == "(16, 16, 16)"
    assert not {"manifest", "backbone", "mode", "seed"} & set(shared)


def test_deviations_list_exactly_the_settings_that_differ(tables):
    study, t = tables
    dev = t["deviations"].set_index("setting")
    cfg = study.runs[0].config
    expected = {f for f, ref in REFERENCE_PROTOCOL.items() if str(getattr(cfg, f)) != str(ref)}
    assert set(dev.index) == expected and {"epochs", "input_shape", "width"} <= expected
    assert dev.loc["epochs", "reference"] == "100" and dev.loc["epochs", "this build"] == "1"
    assert dev.loc["select", "this build"] == "val_loss"  # the converging recipe departs from the final-epoch model
    assert "ema_decay" not in dev.index  # no weight average, as the reference


def test_backbone_table_sums_history_seconds(tables):
    study, t = tables
    row = t["backbones"].iloc[0]
    secs = sum(float(r.history["seconds"].sum()) for r in study.runs)
    assert row["backbone"] == "resnet3d" and row["runs"] == 6
    assert row["training s (all runs)"] == pytest.approx(round(secs, 1))
    for run in study.select(seed=study.runs[0].config.seed):  # one count per mode: the heads differ
        assert f"{run.config.mode} {run.meta['n_parameters']:,}" in row["parameters"]


def test_presets_table_lists_every_preset(tables):
    _, t = tables
    presets = t["presets"].set_index("preset")
    assert list(presets.index) == list(PRESETS)
    assert presets.loc["default", "seeds"] == len(get_preset("default").seeds)
    assert presets.loc["smoke", "noise levels"] == "0.0, 1.0" and presets.loc["smoke", "volume"] == "24x24x24"
