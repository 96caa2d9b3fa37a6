"""Tests of oaprobe.report.methods on the shared smoke runs: tables built from the configs used."""

from __future__ import annotations

import pandas as pd
import pytest

from oaprobe.config import PRESETS, get_preset
from oaprobe.report.display import MODE_NAMES
from oaprobe.report.methods import (
    REFERENCE_PROTOCOL,
    describe_cohort,
    describe_deviations,
    describe_grid,
    describe_recipe,
    methods_findings,
    methods_tables,
    used,
)
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
    assert dev.loc["select", "this build"] == "final near best"  # the converging recipe departs from the final-epoch model
    assert "ema_decay" not in dev.index  # no weight average, as the reference


def test_backbone_table_sums_history_seconds(tables):
    study, t = tables
    row = t["backbones"].iloc[0]
    secs = sum(float(r.history["seconds"].sum()) for r in study.runs)
    assert row["backbone"] == "resnet3d" and row["runs"] == 6
    assert row["training s (all runs)"] == pytest.approx(round(secs, 1))
    for run in study.select(seed=study.runs[0].config.seed):  # one count per mode: the heads differ
        assert f"{MODE_NAMES[run.config.mode]} {run.meta['n_parameters']:,}" in row["parameters"]


def test_presets_table_lists_every_preset(tables):
    _, t = tables
    presets = t["presets"].set_index("preset")
    assert list(presets.index) == list(PRESETS)
    assert presets.loc["default", "seeds"] == len(get_preset("default").seeds)
    assert presets.loc["smoke", "noise levels"] == "0.0, 1.0" and presets.loc["smoke", "volume"] == "24x24x24"


def _configs() -> list[dict]:
    base = {"backbone": "resnet3d", "mode": "dual", "seed": 0, "epochs": 8, "warmup_epochs": 1, "schedule": "cosine",
            "lr": 0.001, "batch_size": 8, "weight_decay": 0.0001, "select": "val_loss", "input_shape": [32, 32, 32],
            "width": 0.25, "grad_clip": 5.0}
    return [{**base, "backbone": b, "mode": m, "seed": s} for b in ("resnet3d", "nnmamba")
            for m in ("single_oa", "single_kl", "dual") for s in (0, 1)]


def test_used_lists_distinct_values_as_strings():
    configs = _configs()
    assert used(configs, "input_shape") == ["(32, 32, 32)"] and used(configs, "seed") == ["0", "1"]


def test_describe_grid_and_recipe():
    configs = _configs()
    assert describe_grid(configs) == "12 runs: 2 backbones (ResNet3D, nnMamba) × 3 modes × 2 seeds."
    assert describe_recipe(configs) == (
        "The recipe as run: 8 epochs (1 of warm-up), cosine learning-rate schedule at peak lr 0.001, batch 8, weight "
        "decay 0.0001, gradient-norm clip 5.0. The weights kept are the epoch with the lowest validation loss; "
        "input 32x32x32 voxels at width 0.25.")
    mixed = configs[:1] + [{**configs[1], "epochs": 4, "select": "final", "grad_clip": 0.0}]
    text = describe_recipe(mixed)
    assert text.startswith("The recipe as run: 4 / 8 epochs") and "the final epoch's / the epoch with the lowest" in text
    assert "gradient-norm clip off / 5.0" in text


def test_describe_deviations_and_cohort():
    dev = pd.DataFrame([{"setting": "epochs", "reference": "100", "this build": "8"}])
    assert describe_deviations(dev) == (f"1 of the {len(REFERENCE_PROTOCOL)} reference settings differ (reference → "
                                        "this build): `epochs` 100 → 8.")
    assert describe_deviations(dev.iloc[:0]).startswith("Every one of the")
    many = pd.concat([dev.assign(setting=s) for s in ("epochs", "lr", "width", "batch_size")])
    assert describe_deviations(many).startswith("4 of the") and "the table below gives each" in describe_deviations(many)
    table = pd.DataFrame({"subject_id": [1, 1, 2, 3], "split": ["train", "train", "test", "val"]})
    assert describe_cohort(table) == "Cohort: 4 knees of 3 subjects (2 train, 1 val, 1 test)."


def test_methods_findings_on_the_runs(tables):
    study, t = tables
    conv, targets = study.convergence(), study.quality_targets()
    bullets = methods_findings(study, t, conv, targets)
    assert len(bullets) == 6
    assert bullets[0] == f"{len(study.runs)} runs: 1 backbone (ResNet3D) × 3 modes × 2 seeds."
    assert bullets[1].startswith("The recipe as run: 1 epoch ") and f"{len(t['deviations'])} of the" in bullets[4]
    assert str(int(conv["flagged"].sum())) in bullets[2] and f"{len(study.table)} knees" in bullets[5]
    met = int(targets["met"].sum())
    assert bullets[3].startswith(f"The models meet {met} of the {len(targets)} convergence targets (scored against the clean grade)")


def test_pairing_sentences_verify_every_seed_group(tmp_path_factory, smoke_manifest, volume_cache):
    from oaprobe.report.methods import pairing_sentences
    from oaprobe.report.study import Study
    from tests.report import smoke_study_runs

    root, grid = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache)
    study = Study.from_grid("smoke", smoke_manifest, grid, root)
    checked, sampling = pairing_sentences(study)
    groups = len({(c.backbone, c.seed) for c in grid})
    assert checked.startswith(f"Pairing, checked on this build: in {groups} of {groups} (backbone, seed) groups")
    assert "not resampled per seed" in sampling


def _plant_run(root, name, start, seconds, epoch_seconds, **config):
    """A finished run folder whose config.json is dated ``start`` and DONE ``start + seconds``."""
    import json
    import os

    folder = root / name
    folder.mkdir()
    base = {"backbone": "resnet3d", "mode": "dual", "manifest": "main.csv", "epochs": 2, "width": 0.25,
            "label_smoothing": 0.0, "oa_weight": 1.0, "dual_variant": "parallel", "schedule": "cosine",
            "lr": 1e-3, "batch_size": 8, "select": "final_near_best", "grad_clip": 5.0, "warmup_epochs": 1}
    (folder / "config.json").write_text(json.dumps({"config": {**base, **config}}))
    pd.DataFrame({"seconds": epoch_seconds}).to_csv(folder / "history.csv", index=False)
    (folder / "DONE").write_text("x")
    os.utime(folder / "config.json", (start, start))
    os.utime(folder / "DONE", (start + seconds, start + seconds))
    return folder


def test_cost_table_on_planted_folders(tmp_path):
    import os

    from oaprobe.config import REFERENCE_RECIPE
    from oaprobe.report.methods import cost_table

    t0 = 1_000_000.0
    _plant_run(tmp_path, "a", t0, 100, [40, 40], backbone="m3t")
    _plant_run(tmp_path, "b", t0, 60, [20, 20], backbone="m3t", mode="single_oa")
    _plant_run(tmp_path, "c", t0, 30, [12, 12])
    _plant_run(tmp_path, "d", t0, 50, [20, 20], **REFERENCE_RECIPE)
    _plant_run(tmp_path, "e", t0, 20, [8, 8], manifest="noisy.csv")
    _plant_run(tmp_path, "f", t0, 10, [4, 4], mode="ordinal")
    _plant_run(tmp_path, "g", t0, 10, [4, 4], oa_weight=2.0)
    _plant_run(tmp_path, "h", t0, 999, [9, 9], epochs=5)  # another preset's run: filtered out
    (tmp_path / "unfinished").mkdir()
    sal = tmp_path / "a" / "saliency-x"
    sal.mkdir()
    (sal / "DONE").write_text("x")
    os.utime(sal / "DONE", (t0 + 100 + 30, t0 + 130))  # 30 s after the last run's DONE
    table = cost_table(tmp_path, epochs=2).set_index(["backbone", "grid"])
    m3t = table.loc[("M3T", "main")]
    assert m3t["runs"] == 2 and m3t["s / run"] == pytest.approx(80)
    assert m3t["epochs s / run"] == pytest.approx(60) and m3t["final s / run"] == pytest.approx(20)
    assert table.loc[("ResNet3D", "recipe"), "core min"] == pytest.approx(50 / 60)
    assert table.loc[("ResNet3D", "label noise"), "runs"] == 1
    assert table.loc[("ResNet3D", "variants"), "runs"] == 2
    assert table.loc[("ResNet3D", "main"), "s / run"] == pytest.approx(30)
    assert table.loc[("all", "saliency"), "core min"] == pytest.approx(30 / 60)
    total = (100 + 60 + 30 + 50 + 20 + 10 + 10 + 30) / 60
    assert table["share"].sum() == pytest.approx(1) and m3t["share"] == pytest.approx(160 / 60 / total)
    assert list(table.index.get_level_values("grid").unique()) == ["main", "recipe", "label noise", "variants", "saliency"]
    _plant_run(tmp_path, "i", t0, 70, [30, 30], manifest="other-book.csv")  # another book's cohort, same settings
    assert cost_table(tmp_path, epochs=2).set_index(["backbone", "grid"]).loc[("ResNet3D", "label noise"), "runs"] == 2
    ours = cost_table(tmp_path, epochs=2, cohorts=["main.csv", "noisy.csv"]).set_index(["backbone", "grid"])
    assert ours.loc[("ResNet3D", "label noise"), "runs"] == 1 and ours["core min"].sum() == pytest.approx(total)


def test_cost_table_names_an_empty_runs_folder(tmp_path):
    from oaprobe.report.methods import cost_table

    with pytest.raises(ValueError, match="no finished run folder"):
        cost_table(tmp_path)
