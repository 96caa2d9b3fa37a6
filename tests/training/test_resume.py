"""Exact resume: a run interrupted at any point ends with the same predictions as an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from oaprobe.device import cpu_threads
from oaprobe.training.engine import fit
from oaprobe.training.runs import is_done, run_id


def _fit(cfg, root: Path, cache: Path, **kwargs) -> Path:
    return fit(cfg, root, cache_dir=cache, progress=False, device="cpu", **kwargs)


def _same_history(a: Path, b: Path) -> None:
    ha = pd.read_csv(a / "history.csv").drop(columns="seconds")
    hb = pd.read_csv(b / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(ha, hb, check_exact=True)


@pytest.mark.parametrize(
    "switches",
    [
        {},
        {"select": "val_loss", "schedule": "cosine", "augment": True, "class_weighting": True},
    ],
    ids=["reference", "all-switches"],
)
def test_stop_after_one_epoch_then_continue_matches_uninterrupted(smoke_config, volume_cache, tmp_path, switches):
    cfg = smoke_config(epochs=2, **switches)
    whole = _fit(cfg, tmp_path / "whole", volume_cache)

    part = _fit(cfg, tmp_path / "sliced", volume_cache, max_epochs_this_call=1)
    assert not is_done(part) and not (part / "predictions.csv").exists()
    assert torch.load(part / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert is_done(_fit(cfg, tmp_path / "sliced", volume_cache))

    assert (part / "predictions.csv").read_bytes() == (whole / "predictions.csv").read_bytes()
    _same_history(part, whole)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(smoke_config, volume_cache, tmp_path):
    """Really kill a training process (SIGKILL) after its first checkpoint, then resume here."""
    cfg = smoke_config(epochs=5, augment=True, select="val_oa_auc")
    folder = tmp_path / "killed" / run_id(cfg)
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from oaprobe.config import RunConfig
        from oaprobe.training.engine import fit
        cfg = RunConfig.from_dict({cfg.to_dict()!r})
        fit(cfg, Path({str(tmp_path / "killed")!r}), cache_dir=Path({str(volume_cache)!r}),
            progress=False, device="cpu")
        """
    )
    threads = str(cpu_threads())  # the same thread count as the resuming process here
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 300
        while not (folder / "checkpoint.pt").exists():
            assert proc.poll() is None, "training process ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    state = torch.load(folder / "checkpoint.pt", weights_only=False)
    assert state["epoch"] < cfg.epochs and not is_done(folder)

    resumed = _fit(cfg, tmp_path / "killed", volume_cache)
    whole = _fit(cfg, tmp_path / "whole", volume_cache)
    assert (resumed / "predictions.csv").read_bytes() == (whole / "predictions.csv").read_bytes()
    _same_history(resumed, whole)
    assert not list(resumed.glob(".*.tmp"))  # a write cut by the kill leaves no debris behind


@pytest.mark.parametrize(("interval", "saved_after"), [(float("inf"), [1]), (0.0, [1, 2, 3])])
def test_checkpoints_after_the_first_epoch_then_by_interval_then_the_final_one(
        smoke_config, volume_cache, tmp_path, monkeypatch, interval, saved_after):
    from oaprobe.training import engine

    saved: list[int | str] = []  # the epoch of each checkpoint written; "final" / "kept only" for the last two
    write = engine.write_atomic_torch

    def recording_write(path, state):
        saved.append(state["epoch"] if state["kept"] is None else "final" if "optimizer" in state else "kept only")
        write(path, state)

    monkeypatch.setattr(engine, "CHECKPOINT_SECONDS", interval)
    monkeypatch.setattr(engine, "write_atomic_torch", recording_write)
    _fit(smoke_config(epochs=4), tmp_path, volume_cache)
    # never after the last epoch: the final checkpoint (resume state and kept weights) follows, and once
    # DONE is written, the kept weights alone
    assert saved == [*saved_after, "final", "kept only"]


def test_a_time_slice_always_ends_with_a_checkpoint(smoke_config, volume_cache, tmp_path, monkeypatch):
    from oaprobe.training import engine

    monkeypatch.setattr(engine, "CHECKPOINT_SECONDS", float("inf"))
    cfg = smoke_config(epochs=4)
    part = _fit(cfg, tmp_path / "sliced", volume_cache, max_epochs_this_call=3)
    assert torch.load(part / "checkpoint.pt", weights_only=False)["epoch"] == 3
    whole = _fit(cfg, tmp_path / "whole", volume_cache)
    assert (_fit(cfg, tmp_path / "sliced", volume_cache) / "predictions.csv").read_bytes() == \
        (whole / "predictions.csv").read_bytes()
