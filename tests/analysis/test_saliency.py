"""Tests of the saliency stage (oaprobe.analysis.saliency): per-run computation and run folders."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from oaprobe.analysis import saliency as stage
from oaprobe.analysis.attribution import METHODS
from oaprobe.analysis.saliency import (
    STAGE_TABLE_COLUMNS,
    TABLE_COLUMNS,
    SaliencyStageError,
    compute_run_saliency,
    kept_state,
    run_saliency,
)
from oaprobe.analysis.saliency_results import PREFIX, load_saliency, saliency_dir, saliency_missing
from oaprobe.config import SaliencyConfig
from oaprobe.errors import OaprobeError
from tests.analysis.saliency_models import S, TinyProbe, label_map

torch.set_num_threads(1)
FAST = dict(knees=2, samples=2, keep_maps=1, sanity_knees=1, deletion_steps=3, methods=("smoothgrad", "gradcam"))


# --------------------------------------------------------------------------- per-run computation
def _inputs(n: int = 2):
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 1, S, S, S, generator=gen)
    masks = np.stack([label_map()] * n)
    lesions = np.stack([(label_map() == 4).astype(np.uint8)] * n)
    return images, masks, lesions, [f"k{i}" for i in range(n)]


@pytest.mark.parametrize("mode,targets", [("single_oa", {"oa"}), ("single_kl", {"kl", "oa"}), ("dual", {"kl", "oa"})])
def test_compute_run_saliency_table_and_maps(mode, targets):
    images, masks, lesions, ids = _inputs()
    probe = TinyProbe(mode).train()
    table, maps = compute_run_saliency(probe, images, masks, lesions, ids, mode, n_samples=2, keep_maps=1, progress=False)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert set(table["target"]) == targets and set(table["method"]) == set(METHODS)
    assert len(table) == 2 * len(targets) * len(METHODS) * 5  # knees x targets x methods x regions
    assert probe.training  # mode restored
    assert not probe.encoder.features[2]._forward_hooks  # Grad-CAM hooks live on a copy
    k = len(targets) * len(METHODS)
    assert maps["saliency"].shape == (k, S, S, S) and maps["saliency"].dtype == np.float16
    assert maps["image"].shape == maps["mask"].shape == (k, S, S, S)
    assert set(maps["case_id"]) == {"k0"}


def test_compute_run_saliency_is_deterministic_and_validates():
    images, masks, _, ids = _inputs()
    probe = TinyProbe("dual")
    a, _ = compute_run_saliency(probe, images, masks, None, ids, "dual", n_samples=2, methods=("smoothgrad",), progress=False)
    b, _ = compute_run_saliency(probe, images, masks, None, ids, "dual", n_samples=2, methods=("smoothgrad",), progress=False)
    pd.testing.assert_frame_equal(a, b)
    assert "lesion" not in set(a["region"])
    c, _ = compute_run_saliency(probe, images, masks, None, ids, "dual", n_samples=1, methods=("gradcam",),
                                gradcam_layer="encoder.features.2", progress=False)
    assert len(c) == 2 * 2 * 4  # a path already inside the probe is accepted
    with pytest.raises(ValueError, match="masks"):
        compute_run_saliency(probe, images, masks[:1], None, ids, "dual", progress=False)
    with pytest.raises(ValueError, match="mode"):
        compute_run_saliency(probe, images, masks, None, ids, "both", progress=False)


@pytest.mark.skipif(importlib.util.find_spec("oaprobe.models.probe") is None, reason="oaprobe.models.probe not written yet")
def test_with_the_real_probe():
    from oaprobe.models.backbones import build_backbone
    from oaprobe.models.probe import HierarchicalProbe

    images, masks, lesions, ids = _inputs(1)
    shape = (16, 16, 16)
    images = torch.nn.functional.interpolate(images, size=shape)
    masks = np.stack([np.kron(label_map(), np.ones((2, 2, 2), np.uint8))])
    lesions = (masks == 4).astype(np.uint8)
    enc = build_backbone("resnet3d", shape, 0.25)
    probe = HierarchicalProbe(enc, "dual", "parallel")
    table, _ = compute_run_saliency(probe, images, masks, lesions, ids, "dual", n_samples=1, keep_maps=0,
                                    methods=("smoothgrad", "gradcam"), progress=False)
    assert set(table["method"]) == {"smoothgrad", "gradcam"}
    assert table["roi_fraction"].notna().all()
    # SmoothGrad is always defined; Grad-CAM of an untrained net at a 1-2 voxel layer may be flat (NaN)
    assert table.loc[table["method"] == "smoothgrad", "mass"].notna().all()


# --------------------------------------------------------------------------- kept weights
def test_kept_state_uses_the_weights_the_predictions_used():
    kept = {"w": torch.tensor(3.0)}
    assert kept_state({"kept": kept, "epoch": 3, "kept_epoch": 2}) is kept  # a finished run's checkpoint
    with pytest.raises(SaliencyStageError, match="no kept model weights"):
        kept_state({"model": {"w": torch.tensor(1.0)}, "optimizer": {}})  # an unfinished run's


# --------------------------------------------------------------------------- the stage on a real run
@pytest.fixture()
def trained_run(smoke_config, volume_cache, tmp_path_factory) -> Path:
    """A finished 1-epoch smoke run (the smoke cohort, 16^3 voxels); reused across tests by its run id."""
    from oaprobe.training.engine import fit

    root = tmp_path_factory.getbasetemp() / "saliency_runs"
    return fit(smoke_config(), root, cache_dir=volume_cache, progress=False)


def _model_files(folder: Path) -> dict[str, str]:
    """Hash of every file and folder name at the top of a run folder except the stage's subfolders."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.iterdir()) if not p.name.startswith(PREFIX)}


def test_stage_writes_its_subfolder_and_never_the_model_files(trained_run, volume_cache, monkeypatch):
    settings = SaliencyConfig(**FAST, seed=11)
    before = _model_files(trained_run)
    assert saliency_missing([trained_run], settings) == [trained_run]
    out = run_saliency(trained_run, settings, cache_dir=volume_cache, progress=False)
    assert out == saliency_dir(trained_run, settings) == trained_run / f"saliency-{settings.settings_id()}"
    assert _model_files(trained_run) == before  # byte-identical, and nothing added beside them
    assert {p.name for p in out.iterdir()} >= {"settings.json", "saliency.csv", "saliency_maps.npz", "sanity.csv",
                                               "deletion.csv", "DONE"}
    assert not list(out.glob(".*.tmp"))
    res = load_saliency(trained_run, settings)
    assert res["settings"]["weights"] == "kept" and SaliencyConfig.from_dict(res["settings"]["settings"]) == settings
    assert res["settings"]["p_oa_max_abs_diff"] < 1e-5  # the weights are the ones predictions.csv came from
    sal = res["saliency"]
    assert list(sal.columns) == list(STAGE_TABLE_COLUMNS)
    pred = pd.read_csv(trained_run / "predictions.csv", dtype={"case_id": str, "subject_id": str})
    test = pred[pred["split"] == "test"]
    assert sal["case_id"].unique().tolist() == _fixed(trained_run, 2)  # the fixed knees, in their order
    assert (sal["subject_id"] == sal["case_id"].map(dict(zip(test["case_id"], test["subject_id"])))).all()
    assert set(res["sanity"]["case_id"]) == {_fixed(trained_run, 1)[0]}  # the checks' knees: the set's first
    assert res["sanity"]["layer"].tolist()[:2] == ["none", "none"] and set(res["sanity"]["layer"]) == {"none", "all"}
    assert sorted(res["deletion"]["fraction"].unique()) == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert len(res["deletion_auc"]) == len(res["deletion"]) // 8  # one row per (knee, target, method)
    assert len(res["maps"]["saliency"]) == len(set(sal["target"])) * 2  # first knee, each target and method
    # a second call computes nothing: it does not even load the model
    monkeypatch.setattr(stage, "_load_model", lambda *a: pytest.fail("recomputed a finished subfolder"))
    assert run_saliency(trained_run, settings, cache_dir=volume_cache, progress=False) == out
    assert saliency_missing([trained_run], settings) == []


def _fixed(run: Path, n: int) -> list[str]:
    """The case ids of the fixed knee set of a run's manifest (what every run's stage explains)."""
    import json

    from oaprobe.data.manifest import read_manifest

    manifest = read_manifest(json.loads((run / "config.json").read_text())["config"]["manifest"], check_volumes=False)
    return stage.fixed_knees(manifest[manifest["split"] == "test"], n)["case_id"].astype(str).tolist()


def test_every_run_explains_the_same_fixed_knees(trained_run, smoke_config, volume_cache, tmp_path_factory):
    from oaprobe.training.engine import fit

    other = fit(smoke_config(mode="single_oa", seed=1, backbone="nnmamba"), tmp_path_factory.getbasetemp() / "saliency_runs",
                cache_dir=volume_cache, progress=False)
    settings = SaliencyConfig(**{**FAST, "methods": ("gradcam",), "knees": 3, "sanity_knees": 0}, seed=41)
    knees = [load_saliency(run_saliency(r, settings, cache_dir=volume_cache, progress=False).parent, settings)
             ["saliency"]["case_id"].unique().tolist() for r in (trained_run, other)]
    assert knees[0] == knees[1] == _fixed(trained_run, 3)


def test_fixed_knees_take_grades_in_turn_whatever_the_row_order():
    test = pd.DataFrame({"case_id": [f"c{i:02d}" for i in range(20)], "kl": [0] * 8 + [1] * 2 + [2] * 6 + [4] * 4})
    chosen = stage.fixed_knees(test, 7)
    assert chosen["kl"].tolist() == [0, 1, 2, 4, 0, 1, 2]  # the grades take turns, lowest first
    shuffled = stage.fixed_knees(test.sample(frac=1.0, random_state=3), 7)
    assert shuffled["case_id"].tolist() == chosen["case_id"].tolist()  # a function of the knees, not their order
    assert stage.fixed_knees(test, 0)["case_id"].tolist() == stage.fixed_knees(test, 99)["case_id"].tolist()
    assert sorted(stage.fixed_knees(test, 0)["case_id"]) == test["case_id"].tolist()  # 0 or too many: every knee
    clean = test.assign(kl_clean=[4] * 10 + [0] * 10)  # the clean grade decides where the manifest has it
    assert stage.fixed_knees(clean, 2)["kl_clean"].tolist() == [0, 4]


def test_other_settings_add_a_subfolder(trained_run, volume_cache):
    a = SaliencyConfig(**{**FAST, "sanity_knees": 0}, seed=21)
    b = a.replace(methods=("smoothgrad",), knees=1)
    out_a = run_saliency(trained_run, a, cache_dir=volume_cache, progress=False)
    assert saliency_missing([trained_run], b) == [trained_run]
    out_b = run_saliency(trained_run, b, cache_dir=volume_cache, progress=False)
    assert out_a != out_b and out_a.is_dir() and (out_a / "DONE").is_file()
    sal_a, sal_b = load_saliency(trained_run, a)["saliency"], load_saliency(trained_run, b)["saliency"]
    assert set(sal_b["method"]) == {"smoothgrad"} and sal_b["case_id"].nunique() == 1
    assert sal_a["case_id"].nunique() == 2
    assert load_saliency(trained_run, a)["sanity"].empty  # sanity_knees = 0: header only
    # the same knee and settings seed give the same SmoothGrad map whatever else changed
    same = sal_a[(sal_a["method"] == "smoothgrad") & (sal_a["case_id"] == sal_b["case_id"].iloc[0])]
    pd.testing.assert_frame_equal(same.reset_index(drop=True), sal_b.reset_index(drop=True))


def test_a_killed_subfolder_is_redone(trained_run, volume_cache):
    settings = SaliencyConfig(**{**FAST, "methods": ("smoothgrad",), "samples": 1}, seed=31)
    out = run_saliency(trained_run, settings, cache_dir=volume_cache, progress=False)
    good = {p.name: p.read_bytes() for p in out.iterdir() if p.name not in ("DONE", "settings.json", ".lock")}
    (out / "DONE").unlink()  # as if killed before the marker: a half-written table, a stale temp file
    (out / "sanity.csv").write_text("half a tab")
    (out / ".deletion.csv.x.tmp").write_text("junk")
    assert load_saliency(trained_run, settings) is None
    assert saliency_missing([trained_run], settings) == [trained_run]
    run_saliency(trained_run, settings, cache_dir=volume_cache, progress=False)
    assert (out / "DONE").is_file() and not (out / ".deletion.csv.x.tmp").exists()
    assert {name: (out / name).read_bytes() for name in good} == good  # redone, byte for byte the same


def test_an_unfinished_run_is_refused_by_name(tmp_path):
    folder = tmp_path / "abc123"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(SaliencyStageError, match="abc123.*no DONE marker") as err:
        run_saliency(folder, SaliencyConfig(), progress=False)
    assert isinstance(err.value, OaprobeError) and "\n" not in str(err.value)
    with pytest.raises(SaliencyStageError, match="does not exist"):
        run_saliency(tmp_path / "nope", SaliencyConfig(), progress=False)
    assert saliency_missing([folder, tmp_path / "nope"], SaliencyConfig()) == []  # not results: nothing to do
    assert load_saliency(folder, SaliencyConfig()) is None
    assert not any(p.name.startswith(PREFIX) for p in folder.iterdir())


def test_a_run_whose_volumes_changed_since_training_is_refused(smoke_config, tmp_path):
    """A run shared by two copies of one dataset is read from the copy it was trained on: when that
    copy's volumes no longer hash as they did, the stage refuses instead of reading other data."""
    from oaprobe.data.manifest import data_hash

    cfg = smoke_config()
    same = {"data_sha256": data_hash(cfg.manifest)}
    assert len(stage._knees(cfg, same, tmp_path, 2)) == 2
    with pytest.raises(SaliencyStageError, match="the volumes of manifest .* changed since run"):
        stage._knees(cfg, {"data_sha256": "0" * 64}, tmp_path, 2)


def test_a_planted_map_has_its_known_enrichment():
    from tests.analysis.saliency_models import LinearProbe

    cartilage = np.isin(label_map(), (2, 4))  # 2 of 8 rows: a quarter of the volume
    probe = LinearProbe(torch.from_numpy(cartilage.astype(np.float32))).eval()  # the score reads cartilage only
    images = torch.ones(1, 1, S, S, S)
    table, _ = compute_run_saliency(probe, images, label_map()[None], None, ["k0"], "single_oa", n_samples=2,
                                    methods=("ig",), keep_maps=0, progress=False)
    row = table.set_index("region").loc["cartilage"]
    assert row["roi_fraction"] == 0.25 and row["mass"] == pytest.approx(1.0) and row["enrichment"] == pytest.approx(4.0)
    assert table.set_index("region").loc["bone_margin", "enrichment"] == pytest.approx(0.0)
