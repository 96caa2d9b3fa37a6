"""Tests of the training engine on the smoke cohort (16^3 inputs, width 0.25, 1-2 epochs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from oaprobe.errors import ConfigError
from oaprobe.training import engine, runs
from oaprobe.training.batches import augment_batch, class_weights
from oaprobe.training.engine import fit
from oaprobe.training.runs import is_done, load_run, run_id

MODES = [("single_oa", "parallel"), ("single_kl", "parallel"), ("dual", "parallel"), ("dual", "stacked")]


def _fit(cfg, root: Path, cache: Path, **kwargs) -> Path:
    return fit(cfg, root, cache_dir=cache, progress=False, device="cpu", **kwargs)


@pytest.mark.parametrize(("mode", "variant"), MODES)
def test_every_mode_writes_a_complete_folder(smoke_config, volume_cache, smoke_manifest, tmp_path, mode, variant):
    cfg = smoke_config(mode=mode, dual_variant=variant)
    folder = _fit(cfg, tmp_path / "runs", volume_cache)
    assert folder == tmp_path / "runs" / run_id(cfg) and is_done(folder)
    assert {p.name for p in folder.iterdir()} == {
        "config.json", "history.csv", "predictions.csv", "embeddings.npz", "checkpoint.pt", "DONE"
    }
    manifest = pd.read_csv(smoke_manifest, dtype={"case_id": str})
    run = load_run(folder)
    meta = run.meta
    assert set(meta) == {
        "config", "run_id", "oaprobe_version", "manifest_sha256", "data_sha256", "embedding_dim", "n_parameters"
    }
    assert meta["run_id"] == folder.name and meta["config"]["mode"] == mode
    assert list(run.history.columns) == list(runs.HISTORY_COLUMNS) and run.history["epoch"].tolist() == [1]
    assert run.history["train_loss_kl"].isna().all() == (mode == "single_oa")
    assert run.history["train_loss_oa"].isna().all() == (mode == "single_kl")
    assert run.history["val_kl_qwk"].isna().all() == (mode == "single_oa")

    pred = run.predictions
    assert list(pred.columns) == list(runs.PREDICTION_COLUMNS)
    evaluated = manifest[manifest["split"].isin(["val", "test"])]
    assert sorted(pred["case_id"]) == sorted(evaluated["case_id"])
    assert pred["kl_clean"].notna().all()  # the synthetic manifest has kl_clean
    assert pred["p_oa"].between(0, 1).all()
    assert (pred["pred_oa"] == (pred["p_oa"] >= 0.5)).all()
    p_kl = pred[[f"p_kl{k}" for k in range(5)]].to_numpy()
    if mode == "single_oa":
        assert np.isnan(p_kl).all() and pred["pred_kl"].isna().all()
    else:
        np.testing.assert_allclose(p_kl.sum(1), 1.0, atol=1e-5)
        assert (pred["pred_kl"].to_numpy(dtype=int) == p_kl.argmax(1)).all()
    if mode == "single_kl":  # p_oa = P(KL >= 2) by contract
        np.testing.assert_allclose(pred["p_oa"], p_kl[:, 2:].sum(1), atol=1e-5)

    emb = run.embeddings
    assert sorted(emb["case_id"]) == sorted(manifest["case_id"])
    assert set(emb["split"]) == {"train", "val", "test"}
    assert emb["embedding"].shape == (len(manifest), meta["embedding_dim"]) and emb["embedding"].dtype == np.float32


@pytest.mark.parametrize("backbone", ["resnet3d", "m3t", "nnmamba"])
def test_ordinal_mode_end_to_end_on_every_paper_backbone(smoke_config, volume_cache, tmp_path, backbone):
    """The CORN baseline writes a complete folder whose p_kl is a distribution and p_oa = P(KL >= 2)."""
    from oaprobe.config import get_preset
    from oaprobe.models.backbones import check_input_shape

    assert backbone in get_preset("paper").backbones
    cfg = smoke_config(mode="ordinal", backbone=backbone, label_smoothing=0.1, warmup_epochs=0)  # 1 epoch
    check_input_shape(backbone, cfg.input_shape)
    folder = fit(cfg, tmp_path / "runs", cache_dir=volume_cache, progress=False)
    assert folder.name == run_id(cfg) and is_done(folder)
    run = load_run(folder)
    assert run.meta["config"]["mode"] == "ordinal" and run.meta["config"]["label_smoothing"] == 0.1
    assert run.history["train_loss_oa"].isna().all() and np.isfinite(run.history["train_loss_kl"]).all()
    assert np.isfinite(run.history["val_kl_qwk"]).all() and np.isfinite(run.history["val_loss"]).all()
    pred = run.predictions
    p_kl = pred[[f"p_kl{k}" for k in range(5)]].to_numpy()
    assert (p_kl >= 0).all() and pred["p_oa"].between(0, 1).all()
    np.testing.assert_allclose(p_kl.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(pred["p_oa"], p_kl[:, 2:].sum(1), atol=1e-5)
    assert (pred["pred_kl"].to_numpy(dtype=int) == p_kl.argmax(1)).all()
    assert (pred["pred_oa"] == (pred["p_oa"] >= 0.5)).all()


def test_training_writes_the_model_outputs_only(smoke_config, volume_cache, tmp_path):
    folder = _fit(smoke_config(), tmp_path / "runs", volume_cache)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["DONE", "checkpoint.pt", "config.json", "embeddings.npz", "history.csv", "predictions.csv"]
    )


def test_training_imports_no_analysis():
    import pathlib
    import re

    import oaprobe.training

    sources = pathlib.Path(oaprobe.training.__file__).parent.glob("*.py")
    assert not [p.name for p in sources if re.search(r"(from|import) oaprobe\.analysis", p.read_text())]


def test_warmup_then_cosine_schedule_in_history(smoke_config, volume_cache, tmp_path):
    cfg = smoke_config(epochs=3, warmup_epochs=1, schedule="cosine", lr=1e-3)
    history = load_run(_fit(cfg, tmp_path / "runs", volume_cache)).history
    lrs = history["lr"].to_numpy()  # the rate at the start of each epoch
    assert lrs[0] < lrs[1] and lrs[2] < lrs[1] <= 1e-3


@pytest.mark.parametrize("ema_decay", [0.0, 0.5])
def test_selected_epoch_is_kept_and_marked(smoke_config, volume_cache, tmp_path, ema_decay):
    cfg = smoke_config(epochs=3, select="val_loss", ema_decay=ema_decay)
    folder = _fit(cfg, tmp_path / "runs", volume_cache)
    history = load_run(folder).history
    assert history["kept"].sum() == 1
    assert int(history.loc[history["kept"] == 1, "epoch"].iloc[0]) == int(history.loc[history["val_loss"].idxmin(), "epoch"])
    state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert set(state) == {"kept", "epoch", "kept_epoch"}  # finished: no resume state (optimiser, EMA, best)
    assert state["kept_epoch"] == int(history.loc[history["kept"] == 1, "epoch"].iloc[0]) and state["epoch"] == 3
    again = _fit(cfg, tmp_path / "again", volume_cache)
    assert (folder / "predictions.csv").read_bytes() == (again / "predictions.csv").read_bytes()


def test_final_near_best_keeps_the_final_weights_unless_the_validation_loss_vetoes_them():
    from oaprobe.config import RunConfig
    from oaprobe.facts import NEAR_BEST_LOSS
    from oaprobe.training.engine import kept_epoch

    cfg = RunConfig(manifest="m.csv", epochs=8, select="final_near_best")
    assert kept_epoch(cfg, 3, final_val_loss=1.10, best_val_loss=1.0) == 8  # within 1.2x: the annealed weights
    assert kept_epoch(cfg, 3, final_val_loss=NEAR_BEST_LOSS * 1.0, best_val_loss=1.0) == 8  # the bound itself
    assert kept_epoch(cfg, 3, final_val_loss=1.25, best_val_loss=1.0) == 3  # vetoed: the best epoch
    assert kept_epoch(cfg, 3, final_val_loss=float("nan"), best_val_loss=1.0) == 8
    assert kept_epoch(RunConfig(manifest="m.csv", epochs=8, select="val_loss"), 3, 1.1, 1.0) == 3
    assert kept_epoch(RunConfig(manifest="m.csv", epochs=8, select="final"), 3, 9.0, 1.0) == 8


def test_final_near_best_end_to_end_marks_the_kept_epoch(smoke_config, volume_cache, tmp_path):
    cfg = smoke_config(epochs=3, select="final_near_best")
    folder = _fit(cfg, tmp_path / "runs", volume_cache)
    history = load_run(folder).history
    loss = history["val_loss"].to_numpy()
    want = 3 if loss[-1] <= 1.2 * loss.min() else int(history["epoch"].iloc[loss.argmin()])
    assert int(history.loc[history["kept"] == 1, "epoch"].iloc[0]) == want


def test_rerun_returns_without_training(smoke_config, volume_cache, tmp_path, monkeypatch):
    cfg = smoke_config()
    folder = _fit(cfg, tmp_path / "runs", volume_cache)
    before = (folder / "predictions.csv").read_bytes()

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(engine, "train_epoch", must_not_train)
    monkeypatch.setattr(engine, "_train_and_write", must_not_train)
    assert _fit(cfg, tmp_path / "runs", volume_cache) == folder
    assert (folder / "predictions.csv").read_bytes() == before


def test_same_config_and_seed_give_identical_predictions(smoke_config, volume_cache, tmp_path):
    cfg = smoke_config(epochs=2, augment=True)
    a = _fit(cfg, tmp_path / "a", volume_cache)
    b = _fit(cfg, tmp_path / "b", volume_cache)
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()
    other = _fit(cfg.replace(seed=1), tmp_path / "c", volume_cache)
    assert (other / "predictions.csv").read_bytes() != (a / "predictions.csv").read_bytes()


@pytest.mark.parametrize("backbone", ["m3t", "nnmamba"])
def test_sped_up_backbones_train_deterministically(backbone, smoke_config, volume_cache, tmp_path):
    # issue 32: M3T's batched planes and rand_like dropout masks, nnMamba's scan: same config+seed, same bytes
    cfg = smoke_config(backbone=backbone, mode="dual")
    a = _fit(cfg, tmp_path / "a", volume_cache)
    b = _fit(cfg, tmp_path / "b", volume_cache)
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()


def test_crash_while_writing_leaves_no_done_and_resumes(smoke_config, volume_cache, tmp_path, monkeypatch):
    cfg = smoke_config()
    reference = _fit(cfg, tmp_path / "ref", volume_cache)

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash while writing embeddings")

    monkeypatch.setattr(engine, "write_atomic_npz", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(cfg, tmp_path / "runs", volume_cache)
    folder = tmp_path / "runs" / run_id(cfg)
    assert folder.is_dir() and not is_done(folder) and (folder / "checkpoint.pt").is_file()
    with pytest.raises(runs.RunNotDoneError):
        load_run(folder)
    assert "optimizer" in torch.load(folder / "checkpoint.pt", weights_only=False)  # resumable before DONE
    monkeypatch.undo()
    assert is_done(_fit(cfg, tmp_path / "runs", volume_cache))
    assert (folder / "predictions.csv").read_bytes() == (reference / "predictions.csv").read_bytes()
    assert set(torch.load(folder / "checkpoint.pt", weights_only=False)) == {"kept", "epoch", "kept_epoch"}


def test_finished_checkpoint_keeps_the_kept_weights_only(smoke_config, volume_cache, tmp_path):
    from oaprobe.models.probe import build_probe

    cfg = smoke_config(epochs=2, ema_decay=0.5)
    folder = _fit(cfg, tmp_path / "runs", volume_cache)
    state = torch.load(folder / "checkpoint.pt", weights_only=False)
    assert set(state) == {"kept", "epoch", "kept_epoch"} and (state["epoch"], state["kept_epoch"]) == (2, 2)
    build_probe(cfg).load_state_dict(state["kept"])  # the whole model, nothing else
    n_bytes = sum(t.numel() * t.element_size() for t in state["kept"].values())
    assert (folder / "checkpoint.pt").stat().st_size < 1.2 * n_bytes + 100_000


def test_fit_says_whether_it_reused_a_finished_run(smoke_config, volume_cache, tmp_path):
    cfg = smoke_config()
    first = _fit(cfg, tmp_path / "runs", volume_cache)
    again = _fit(cfg, tmp_path / "runs", volume_cache)
    assert (first.reused, again.reused) == (False, True) and first == again == tmp_path / "runs" / run_id(cfg)


def test_switches_select_weighting_augment_cosine(smoke_config, volume_cache, tmp_path):
    cfg = smoke_config(epochs=3, select="val_oa_auc", class_weighting=True, augment=True, schedule="cosine")
    folder = _fit(cfg, tmp_path / "runs", volume_cache)
    run = load_run(folder)
    lr = run.history["lr"].to_numpy()
    assert lr[0] == pytest.approx(cfg.lr) and np.all(np.diff(lr) < 0)  # cosine decays
    # select: predictions come from the best-val-AUC epoch's weights, kept in the checkpoint
    state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)
    auc = run.history["val_oa_auc"].to_numpy()
    assert state["kept_epoch"] == int(np.nanargmax(auc)) + 1
    from oaprobe.data.dataset import load_volumes
    from oaprobe.data.manifest import read_manifest
    from oaprobe.models.probe import build_probe

    table = read_manifest(cfg.manifest)
    model = build_probe(cfg)
    model.load_state_dict(state["kept"])
    images = load_volumes(table, cfg.input_shape, cache_dir=volume_cache, progress=False)
    val = np.flatnonzero(table["split"].to_numpy() == "val")
    out = engine.predict(model, images[torch.as_tensor(val)], cfg.batch_size * engine.EVAL_BATCH_FACTOR)
    got = run.predictions.set_index("case_id").loc[table["case_id"].iloc[val].astype(str), "p_oa"].to_numpy()
    np.testing.assert_allclose(got, out["p_oa"], rtol=1e-6)


# ------------------------------------------------------------------ refusals before any folder
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backbone": "resnet50"}, "unknown backbone 'resnet50'; valid backbones: resnet3d"),
        ({"backbone": "densenet121"}, "cannot take input_shape"),
        ({"batch_size": 1000}, "batch_size = 1000"),
    ],
)
def test_bad_parameters_refused_before_any_folder(smoke_config, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        fit(smoke_config(**overrides), tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


def test_negative_lambda_refused_by_config(smoke_config):
    with pytest.raises(ConfigError, match="oa_weight"):
        smoke_config(oa_weight=-1.0)


def test_invalid_manifest_refused_before_any_folder(smoke_manifest, smoke_config, tmp_path):
    from oaprobe.data.manifest import ManifestError

    broken = smoke_manifest.parent / "broken_manifest.csv"
    table = pd.read_csv(smoke_manifest, dtype=str, keep_default_na=False)
    table.loc[0, "kl"] = "7"
    table.to_csv(broken, index=False)
    try:
        with pytest.raises(ManifestError, match="kl"):
            fit(smoke_config(manifest=str(broken)), tmp_path / "runs", progress=False)
    finally:
        broken.unlink()
    assert not (tmp_path / "runs").exists()


def _manifest_copy(smoke_manifest: Path, folder: Path, images: dict[int, str] | None = None) -> Path:
    """The smoke manifest written into ``folder`` (paths made relative to it), row ``i``'s image
    replaced by the file ``images[i]`` of ``folder``."""
    import os

    table = pd.read_csv(smoke_manifest, dtype=str, keep_default_na=False)
    for column in ("image", "mask", "lesion", "evidence"):
        table[column] = [os.path.relpath(smoke_manifest.parent / p, folder) for p in table[column]]
    for i, name in (images or {}).items():
        table.loc[i, "image"] = name
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def test_truncated_integer_image_refused_leaving_nothing(smoke_manifest, smoke_config, tmp_path):
    """Its header promises finite int16 voxels; the gzip stream ends early. Training would end in an
    EOFError after creating the run folder and its lock: validation decodes it first instead."""
    import nibabel as nib

    from oaprobe.data.manifest import ManifestError

    data = np.random.default_rng(0).integers(0, 1000, (24, 24, 24)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0])), str(tmp_path / "short.nii.gz"))
    raw = (tmp_path / "short.nii.gz").read_bytes()
    (tmp_path / "short.nii.gz").write_bytes(raw[: len(raw) * 3 // 4])
    manifest = _manifest_copy(smoke_manifest, tmp_path / "data", {0: "../short.nii.gz"})
    with pytest.raises(ManifestError, match=r"image file '../short.nii.gz' is unreadable \(EOFError"):
        fit(smoke_config(manifest=str(manifest)), tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flag", ["runs_root", "cache_dir"])
def test_a_file_given_as_a_folder_is_one_error(smoke_config, tmp_path, flag):
    (tmp_path / "taken").write_text("a file")
    folders = {"runs_root": tmp_path / "runs", "cache_dir": tmp_path / "cache", flag: tmp_path / "taken"}
    with pytest.raises(ConfigError, match=f"{flag} '{tmp_path / 'taken'}' is a file; expected a folder"):
        fit(smoke_config(), folders["runs_root"], cache_dir=folders["cache_dir"], progress=False)
    with pytest.raises(ConfigError, match=f"lies under '{tmp_path / 'taken'}', a file"):
        fit(smoke_config(), tmp_path / "taken" / "runs", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"] and (tmp_path / "taken").read_text() == "a file"


def test_failure_before_the_first_checkpoint_leaves_no_folder_or_lock(smoke_config, volume_cache, tmp_path,
                                                                      monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash in the first epoch")

    monkeypatch.setattr(engine, "train_epoch", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(smoke_config(), tmp_path / "runs", volume_cache)
    assert not (tmp_path / "runs").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(smoke_config(), tmp_path / "kept", volume_cache)
    assert list((tmp_path / "kept").iterdir()) == []  # a folder the caller made is the caller's


def test_missing_manifest_refused(smoke_config, tmp_path):
    with pytest.raises((ConfigError, Exception), match="missing.csv"):
        fit(smoke_config(manifest=str(tmp_path / "missing.csv")), tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ units
def test_class_weights_match_sklearn_balanced():
    labels = np.array([0, 0, 0, 1, 2, 2, 4, 4, 4, 4])
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 2, 4]), y=labels)
    got = class_weights(labels, 5).numpy()
    np.testing.assert_allclose(got[[0, 1, 2, 4]], expected, rtol=1e-6)
    assert got[3] == 0.0  # absent class


def test_augment_never_flips_the_medial_lateral_axis():
    torch.manual_seed(0)
    x = torch.randn(16, 1, 6, 5, 4)
    y = augment_batch(x, torch.Generator().manual_seed(1), max_shift=0)
    flips_seen = set()
    for i in range(len(x)):
        for flipped in (False, True):
            ref = x[i].flip(-1) if flipped else x[i]
            a = ref.flatten()
            b = y[i].flatten()
            # y = scale * ref + offset exactly for the right orientation
            coef = np.polyfit(a.numpy(), b.numpy(), 1)
            if np.allclose(np.polyval(coef, a.numpy()), b.numpy(), atol=1e-5):
                flips_seen.add(flipped)
                assert 0.9 <= coef[0] <= 1.1 and -0.1 <= coef[1] <= 0.1
                break
        else:
            pytest.fail(f"knee {i}: output is not an intensity-scaled (W-flipped) copy of the input")
    assert flips_seen == {False, True}


def test_augment_is_reproducible_from_the_generator():
    x = torch.randn(4, 1, 8, 8, 8)
    a = augment_batch(x, torch.Generator().manual_seed(5))
    b = augment_batch(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_fit_writes_a_complete_folder(smoke_config, volume_cache, tmp_path):
    cfg = smoke_config(epochs=2, augment=True)
    folder = fit(cfg, tmp_path / "runs", cache_dir=volume_cache, progress=False, device="cuda")
    run = load_run(folder)
    assert run.predictions["p_oa"].between(0, 1).all() and np.isfinite(run.embeddings["embedding"]).all()
