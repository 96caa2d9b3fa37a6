"""Tests of the run-folder contract: atomic writes, DONE gating, reading back, filtering, locking."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oaprobe.config import RunConfig
from oaprobe.errors import ConfigError
from oaprobe.training import runs
from oaprobe.training.runs import (
    RunLockedError,
    RunNotDoneError,
    find_runs,
    is_done,
    load_run,
    run_dir,
    run_id,
    run_lock,
    write_atomic_csv,
    write_atomic_json,
    write_atomic_npz,
    write_atomic_text,
)


def _fake_run(root: Path, manifest: Path, done: bool = True, **fields) -> Path:
    """Write a minimal, contract-shaped run folder by hand (no training)."""
    cfg = RunConfig.from_dict({"manifest": str(manifest), **fields})
    folder = run_dir(cfg, root)
    write_atomic_json(folder / "config.json", {"config": cfg.to_dict(), "run_id": folder.name})
    write_atomic_csv(folder / "history.csv", pd.DataFrame({c: [1.0] for c in runs.HISTORY_COLUMNS}))
    pred = pd.DataFrame({c: [np.nan, np.nan] for c in runs.PREDICTION_COLUMNS})
    pred["case_id"], pred["subject_id"], pred["split"] = ["007", "008"], ["0001", "0002"], ["val", "test"]
    write_atomic_csv(folder / "predictions.csv", pred)
    write_atomic_npz(folder / "embeddings.npz", case_id=np.array(["007", "008"]), split=np.array(["val", "test"]),
                     embedding=np.zeros((2, 3), np.float32))
    if done:
        write_atomic_text(folder / "DONE", "x\n")
    return folder


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.csv"
    path.write_text("case_id\nk1\n")
    return path


def test_run_dir_is_root_over_run_id(tmp_path: Path, manifest: Path) -> None:
    cfg = RunConfig.from_dict({"manifest": str(manifest)})
    assert run_dir(cfg, tmp_path) == tmp_path / run_id(cfg)


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    write_atomic_text(tmp_path / "a.txt", "hello")
    write_atomic_npz(tmp_path / "b.npz", x=np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.npz"]
    assert np.load(tmp_path / "b.npz")["x"].tolist() == [0, 1, 2]


def test_failed_atomic_write_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.txt"
    write_atomic_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    import oaprobe.io

    monkeypatch.setattr(oaprobe.io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_json_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_atomic_json(tmp_path / "c.json", {"x": float("nan")})


def test_csv_writes_nan_as_empty(tmp_path: Path) -> None:
    write_atomic_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1.0, np.nan], "b": [1, 2]}))
    assert (tmp_path / "t.csv").read_text() == "a,b\n1.0,1\n,2\n"


def test_load_run_refuses_folder_without_done(tmp_path: Path, manifest: Path) -> None:
    folder = _fake_run(tmp_path, manifest, done=False)
    assert not is_done(folder)
    with pytest.raises(RunNotDoneError, match="no DONE marker"):
        load_run(folder)


def test_load_run_reads_every_file(tmp_path: Path, manifest: Path) -> None:
    folder = _fake_run(tmp_path, manifest, mode="single_kl", seed=3)
    run = load_run(folder)
    assert run.config.mode == "single_kl" and run.config.seed == 3
    assert run.run_id == folder.name
    assert list(run.history.columns) == list(runs.HISTORY_COLUMNS)
    assert list(run.predictions.columns) == list(runs.PREDICTION_COLUMNS)
    assert run.predictions["case_id"].tolist() == ["007", "008"]  # ids stay strings
    assert run.embeddings["embedding"].shape == (2, 3)


def test_find_runs_filters_by_fields_and_skips_unfinished(tmp_path: Path, manifest: Path) -> None:
    _fake_run(tmp_path, manifest, mode="dual", seed=0)
    _fake_run(tmp_path, manifest, mode="dual", seed=1)
    _fake_run(tmp_path, manifest, mode="single_oa", seed=0)
    _fake_run(tmp_path, manifest, done=False, mode="single_kl", seed=0)
    (tmp_path / "stray.lock").write_text("")
    assert len(find_runs(tmp_path)) == 3
    assert {r.config.seed for r in find_runs(tmp_path, mode="dual")} == {0, 1}
    assert len(find_runs(tmp_path, mode={"dual", "single_oa"}, seed=0)) == 2
    assert find_runs(tmp_path, mode="single_kl") == []
    assert len(find_runs(tmp_path, input_shape=(32, 32, 32))) == 3
    assert find_runs(tmp_path / "missing") == []


def test_find_runs_unknown_field_lists_valid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown RunConfig field 'lamda'.*valid fields: manifest"):
        find_runs(tmp_path, lamda=1)


def test_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    with run_lock(tmp_path, "abc") as lock_path:
        assert lock_path == tmp_path / "abc.lock"
        with pytest.raises(RunLockedError, match="abc"):
            with run_lock(tmp_path, "abc", blocking=False):
                pass
    with run_lock(tmp_path, "abc", blocking=False):  # released on exit
        pass


def test_lock_leaves_no_file_and_no_folder_it_created(tmp_path: Path) -> None:
    with run_lock(tmp_path / "runs", "abc") as lock_path:
        assert lock_path.is_file()
    assert not (tmp_path / "runs").exists()
    with run_lock(tmp_path, "abc"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_lock_waiter_takes_the_lock_of_the_file_there_now(tmp_path: Path) -> None:
    """The holder deletes the lock file on release; a waiter that held it open must not believe
    itself alone while a newcomer locks the new file at that path."""
    import threading

    inside: list[str] = []
    release_a, b_holds, release_b = threading.Event(), threading.Event(), threading.Event()

    def waiter() -> None:
        with run_lock(tmp_path, "abc"):
            inside.append("b")
            b_holds.set()
            release_b.wait(10)

    with run_lock(tmp_path, "abc"):
        b = threading.Thread(target=waiter)
        b.start()
        release_a.wait(0.3)  # b opens the file and blocks on it
    assert b_holds.wait(10) and inside == ["b"]
    with pytest.raises(RunLockedError):
        with run_lock(tmp_path, "abc", blocking=False):
            pass
    release_b.set()
    b.join(10)
    with run_lock(tmp_path, "abc", blocking=False):
        pass


def test_lock_is_released_when_holder_is_killed(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import time
        from oaprobe.training.runs import run_lock
        with run_lock({str(tmp_path)!r}, "abc"):
            print("held", flush=True)
            time.sleep(120)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError):
            with run_lock(tmp_path, "abc", blocking=False):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with run_lock(tmp_path, "abc", blocking=False):
        pass


def test_config_json_is_sorted_and_stable(tmp_path: Path) -> None:
    write_atomic_json(tmp_path / "c.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "c.json").read_text()) == {"a": [1, 2], "b": 1}
    assert (tmp_path / "c.json").read_text().index('"a"') < (tmp_path / "c.json").read_text().index('"b"')


def test_run_id_of_a_known_config_and_data_is_unchanged(tmp_path):
    """Known answer: the id the package named this run's folder before the id moved out of
    RunConfig (a6aebecadb2e, computed by ``RunConfig.run_id`` at commit 4a47bd3), so existing
    runs folders keep being found; other bytes in one volume make another run."""
    (tmp_path / "k1.nii.gz").write_bytes(b"image of knee 1")
    (tmp_path / "k1_mask.nii.gz").write_bytes(b"mask of knee 1")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("case_id,image,mask\n"
                        "k1,k1.nii.gz,k1_mask.nii.gz\n")
    cfg = RunConfig.from_dict({"manifest": str(manifest), "backbone": "m3t", "mode": "dual", "seed": 3, "epochs": 2})
    assert run_id(cfg) == "a6aebecadb2e" and run_dir(cfg, tmp_path).name == "a6aebecadb2e"
    (tmp_path / "k1_mask.nii.gz").write_bytes(b"another mask of knee 1")
    assert run_id(cfg) != "a6aebecadb2e"


# --- the run id: every field and the content of the data --------------------------------------


def test_run_id_stable_for_equal_configs(manifest):
    a = RunConfig.from_dict({"manifest": str(manifest), "seed": 1})
    b = RunConfig.from_dict({"manifest": str(manifest), "seed": 1})
    assert run_id(a) == run_id(b) and len(run_id(a)) == 12


def test_run_id_changes_with_every_field(manifest):
    base = RunConfig.from_dict({"manifest": str(manifest)})
    changed = {
        "backbone": "m3t", "width": 0.5, "mode": "single_oa", "dual_variant": "stacked", "oa_weight": 0.5,
        "input_shape": (16, 16, 16), "epochs": 2, "batch_size": 4, "lr": 1e-3, "weight_decay": 0.0,
        "schedule": "cosine", "select": "val_loss", "class_weighting": True, "augment": True, "seed": 1,
        "warmup_epochs": 1, "ema_decay": 0.99, "label_smoothing": 0.1, "grad_clip": 5.0,
    }
    assert set(changed) == {f.name for f in dataclasses.fields(RunConfig)} - {"manifest"}
    ids = {run_id(base)}
    for name, value in changed.items():
        ids.add(run_id(base.replace(**{name: value})))
    assert len(ids) == len(changed) + 1


def test_run_id_follows_manifest_content_not_path(manifest, tmp_path):
    copy = tmp_path / "elsewhere" / "other_name.csv"
    copy.parent.mkdir()
    shutil.copyfile(manifest, copy)
    a = RunConfig.from_dict({"manifest": str(manifest)})
    b = RunConfig.from_dict({"manifest": str(copy)})
    assert run_id(a) == run_id(b)
    copy.write_text(manifest.read_text() + "k2,s2\n")
    assert run_id(b) != run_id(a)


def test_run_id_missing_manifest_names_it(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(ConfigError, match="nope.csv"):
        run_id(RunConfig.from_dict({"manifest": str(missing)}))


# --- the run id covers the data ------------------------------------------------------------------


@pytest.fixture()
def cohort(tmp_path: Path) -> Path:
    """A manifest naming two volume files (their bytes only matter here, not that they are NIfTI)."""
    folder = tmp_path / "cohort"
    (folder / "images").mkdir(parents=True)
    for case in ("k1", "k2"):
        (folder / "images" / f"{case}.nii.gz").write_bytes(f"voxels of {case}".encode())
        (folder / "images" / f"{case}_mask.nii.gz").write_bytes(f"labels of {case}".encode())
    path = folder / "m.csv"
    path.write_text("case_id,image,mask\n" + "".join(f"{c},images/{c}.nii.gz,images/{c}_mask.nii.gz\n" for c in ("k1", "k2")))
    return path


def _run_id(manifest: Path) -> str:
    return run_id(RunConfig.from_dict({"manifest": str(manifest)}))


def test_run_id_changes_when_a_volume_is_replaced_in_place(cohort):
    before = _run_id(cohort)
    image = cohort.parent / "images" / "k2.nii.gz"
    stamp = image.stat().st_mtime_ns
    image.write_bytes(b"voxels of k9")  # same name, same size: N4-corrected, say
    os.utime(image, ns=(stamp + 10**9,) * 2)  # a later time stamp whatever the file system's clock tick
    assert _run_id(cohort) != before


def test_run_id_changes_with_other_volumes_under_the_same_names(cohort, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(cohort.parent, other)
    assert _run_id(other / "m.csv") == _run_id(cohort)  # the same data elsewhere: the same runs
    (other / "images" / "k1_mask.nii.gz").write_bytes(b"labels of k1, fixed")
    assert _run_id(other / "m.csv") != _run_id(cohort)


def test_run_id_counts_a_missing_volume(cohort):
    before = _run_id(cohort)
    (cohort.parent / "images" / "k1.nii.gz").unlink()
    assert _run_id(cohort) != before  # validation refuses it; the id must not be the complete data's


def test_run_id_hashes_each_volume_once(cohort, monkeypatch):
    """A rebuild only stats the volumes: their hashes come from the cache file beside the manifest."""
    from oaprobe.data import fingerprint

    first = _run_id(cohort)
    assert (cohort.parent / fingerprint.CACHE_FILE).is_file()
    fingerprint._open.clear()  # as in a new process
    monkeypatch.setattr(fingerprint, "file_sha256", lambda path: pytest.fail(f"{path} was hashed again"))
    assert _run_id(cohort) == first
