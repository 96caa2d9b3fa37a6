"""The training engine: validate a RunConfig, train it (resumably), write its run folder.

:func:`fit` is the one entry point. It checks everything before any work (manifest and every
volume, backbone, input shape, split sizes, the output folders), returns a finished folder at
once (marked ``reused``), and otherwise trains with checkpoints (after the first epoch, then at
most every ``CHECKPOINT_SECONDS``). Resume is exact: at the start of epoch ``e`` every random
generator is reseeded from ``(cfg.seed, e)`` and the checkpoint holds model, optimiser,
scheduler, history and the best-so-far weights, so a run killed at any point and resumed ends
with the same bytes in ``predictions.csv`` as an uninterrupted run (on CPU). Once ``DONE`` is
written the checkpoint keeps the kept weights only.

Volumes are loaded once into one in-memory tensor per split (:func:`oaprobe.data.dataset.load_volumes`)
and batches are index gathers from it: no file is read per step. Training writes the model's
outputs only; saliency is an analysis stage that reads the checkpoint later
(:mod:`oaprobe.analysis.saliency`). The concepts live in their own modules: checks, device,
batches, loop (epoch, schedule, EMA), evaluation (predictions and validation scores).

Example:
    >>> from oaprobe.config import RunConfig
    >>> from oaprobe.data.cohort import build_cohort
    >>> from oaprobe.config import get_preset
    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> manifest = build_cohort(get_preset("smoke").cohort, tmp / "cohort", progress=False)
    >>> cfg = RunConfig.from_dict({"manifest": str(manifest), **get_preset("smoke").run, "epochs": 1})
    >>> folder = fit(cfg, tmp / "runs", progress=False)
    >>> sorted(p.name for p in folder.iterdir())  # doctest: +NORMALIZE_WHITESPACE
    ['DONE', 'checkpoint.pt', 'config.json', 'embeddings.npz', 'history.csv', 'predictions.csv']
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

import oaprobe
from oaprobe.config import DEFAULT_RUNS, RunConfig
from oaprobe.data.dataset import load_volumes
from oaprobe.device import compute_settings, epoch_seed, resolve_device, seed_everything
from oaprobe.errors import ConfigError
from oaprobe.facts import N_KL, NEAR_BEST_LOSS, SPLITS
from oaprobe.models.probe import build_probe
from oaprobe.training.batches import Volumes, class_weights
from oaprobe.training.checks import check_folder, validate
from oaprobe.training.evaluation import evaluate, predict, prediction_table
from oaprobe.training.loop import make_ema, make_optimizer, make_scheduler, train_epoch
from oaprobe.training.runs import (
    CHECKPOINT,
    CONFIG,
    DONE,
    EMBEDDINGS,
    HISTORY,
    HISTORY_COLUMNS,
    PREDICTIONS,
    RunFolder,
    data_sha256,
    is_done,
    manifest_sha256,
    run_dir,
    run_lock,
    write_atomic_csv,
    write_atomic_json,
    write_atomic_npz,
    write_atomic_text,
    write_atomic_torch,
)

#: at most this long between checkpoints of a training run: one after every epoch cost a default-book
#: resnet3d run 8 x 0.11 s (33 MB each) of its 14 s, while any checkpoint resumes exactly
CHECKPOINT_SECONDS = 60.0
EVAL_BATCH_FACTOR = 2  # evaluation batches are this many training batches (no gradients kept)
_HIGHER_IS_BETTER = {"val_loss": False, "val_oa_auc": True, "val_kl_qwk": True}
#: the validation metric each ``select`` tracks the best epoch by
_TRACKED = {"val_loss": "val_loss", "val_oa_auc": "val_oa_auc", "val_kl_qwk": "val_kl_qwk", "final_near_best": "val_loss"}


def fit(
    cfg: RunConfig,
    runs_root: Path = DEFAULT_RUNS,
    cache_dir: Path | None = None,
    progress: bool = True,
    device: str = "auto",
    max_epochs_this_call: int | None = None,
    check_volumes: bool = True,
) -> RunFolder:
    """Train ``cfg`` (or resume it) and write its run folder; return the folder.

    A folder with ``DONE`` is returned at once without loading anything, with ``reused`` True (a
    caller says "already trained"). Every check runs before a folder is created; a run that fails
    before its first checkpoint leaves no folder (nor lock) behind. ``max_epochs_this_call`` stops
    after that many new epochs (the folder is then not DONE; call again to continue), for
    time-sliced schedulers and tests.

    Args:
        cfg: the run.
        runs_root: parent of the run folders.
        cache_dir: disk cache of resized volumes (shared by runs of one manifest and shape).
        progress: tqdm bars and an epoch summary line.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        max_epochs_this_call: at most this many epochs before returning (None: all).
        check_volumes: validate the manifest's volume headers and voxels too; False only where the
            caller did so already (a sweep validates each manifest once, then its workers skip it).
    """
    runs_root = Path(runs_root)
    check_folder(runs_root, "runs_root", "the run folders")
    if cache_dir is not None:
        check_folder(cache_dir, "cache_dir", "the volume cache")
    table = validate(cfg, check_volumes)
    dev = resolve_device(device)
    if max_epochs_this_call is not None and max_epochs_this_call < 1:
        raise ConfigError(f"max_epochs_this_call = {max_epochs_this_call}; expected >= 1 or None")
    folder = run_dir(cfg, runs_root)
    if is_done(folder):
        return RunFolder.of(folder, reused=True)
    with run_lock(runs_root, folder.name):
        if is_done(folder):  # another process finished it while we waited for the lock
            return RunFolder.of(folder, reused=True)
        with _removed_unless_resumable(folder), compute_settings(dev):
            _train_and_write(cfg, table, folder, cache_dir, progress, dev, max_epochs_this_call)
    return RunFolder.of(folder, reused=False)


@contextlib.contextmanager
def _removed_unless_resumable(folder: Path) -> Iterator[None]:
    """Create ``folder``; if the block fails before a checkpoint exists, delete it again (it holds
    nothing a resume could use). The caller holds the run's lock."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if not (folder / CHECKPOINT).is_file():
            shutil.rmtree(folder, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------- one run's state
@dataclass
class _Training:
    """Everything that changes while a run trains, and what a checkpoint holds of it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: nn.Module | None
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": None, "score": None, "state": None})

    @property
    def evaluated(self) -> nn.Module:
        """The weights validation, selection and predictions use: the EMA when there is one."""
        return self.model if self.ema is None else self.ema.module

    def checkpoint(self, kept: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        return {
            "model": _cpu_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": None if self.ema is None else _cpu_state(self.ema),
            "epoch": len(self.history),
            "history": self.history,
            "best": self.best,
            "kept": kept,
        }

    def resume(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.history, self.best = list(state["history"]), dict(state["best"])


def _start(cfg: RunConfig, folder: Path, dev: torch.device, steps_per_epoch: int) -> _Training:
    """Build the model (seeded), optimiser, schedule and EMA; write config.json; resume if checkpointed."""
    seed_everything(cfg.seed)
    model = build_probe(cfg)
    write_atomic_json(folder / CONFIG, {
        "config": cfg.to_dict(),
        "run_id": folder.name,
        "oaprobe_version": oaprobe.__version__,
        "manifest_sha256": manifest_sha256(cfg.manifest),
        "data_sha256": data_sha256(cfg.manifest),
        "embedding_dim": int(model.encoder.out_dim),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    })
    model.to(dev)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last_3d)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, dev)
    scheduler = make_scheduler(optimizer, cfg.schedule, steps_per_epoch, cfg.epochs, cfg.warmup_epochs)
    training = _Training(model, optimizer, scheduler, make_ema(model, cfg.ema_decay))
    if (folder / CHECKPOINT).is_file():
        training.resume(torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=False))
    return training


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _is_better(score: float, best: float | None, select: str) -> bool:
    if math.isnan(score):
        return False
    if best is None or math.isnan(best):
        return True
    return score > best if _HIGHER_IS_BETTER[select] else score < best


# ---------------------------------------------------------------------------- training
def _train_and_write(cfg: RunConfig, table: pd.DataFrame, folder: Path, cache_dir: Path | None, progress: bool,
                     dev: torch.device, max_epochs_this_call: int | None) -> None:
    for stale in folder.glob(".*.tmp"):  # left by a process killed mid-write; we hold the lock
        stale.unlink(missing_ok=True)
    # one tensor per split, loaded once (no second copy of the whole cohort at paper sizes)
    rows = {s: table[table["split"] == s].reset_index(drop=True) for s in SPLITS}
    volumes = {s: Volumes(load_volumes(rows[s], cfg.input_shape, cache_dir=cache_dir, progress=progress), dev,
                          channels_last=dev.type == "cuda") for s in SPLITS}
    training = _start(cfg, folder, dev, steps_per_epoch=len(volumes["train"]) // cfg.batch_size)
    end = cfg.epochs if max_epochs_this_call is None else min(cfg.epochs, len(training.history) + max_epochs_this_call)
    saved = time.monotonic()
    for epoch in range(len(training.history), end):
        _one_epoch(cfg, training, volumes, rows, epoch, folder.name, progress, dev)
        if _checkpoint_due(epoch + 1, end, cfg.epochs, time.monotonic() - saved):
            write_atomic_torch(folder / CHECKPOINT, training.checkpoint())
            saved = time.monotonic()
    if len(training.history) < cfg.epochs:
        return  # time slice over: the folder stays without DONE and resumes next call
    _write_outputs(cfg, training, volumes, rows, folder, dev)


def _checkpoint_due(done: int, end: int, epochs: int, since_saved: float) -> bool:
    """Checkpoint after the first epoch, at the end of a time slice and then at most every
    CHECKPOINT_SECONDS; never after the last epoch (the final checkpoint, with the kept weights,
    is written at once, before any output). Any checkpoint resumes exactly, so the interval only
    bounds the work a kill loses."""
    if done == epochs:
        return False
    return done == 1 or done == end or since_saved >= CHECKPOINT_SECONDS


def _one_epoch(cfg: RunConfig, training: _Training, volumes: dict[str, Volumes], rows: dict[str, pd.DataFrame],
               epoch: int, name: str, progress: bool, dev: torch.device) -> None:
    """Train one epoch (reseeded from (seed, epoch): resume is exact), validate, update the best weights."""
    tic = time.perf_counter()
    generator = seed_everything(epoch_seed(cfg.seed, epoch))
    lr = float(training.optimizer.param_groups[0]["lr"])
    kl, oa = (torch.tensor(rows["train"][c].to_numpy(dtype=np.int64)) for c in ("kl", "oa"))
    loss_kwargs = {}
    if cfg.class_weighting:
        loss_kwargs = {"kl_weight": class_weights(kl.numpy(), N_KL).to(dev),
                       "oa_weight_classes": class_weights(oa.numpy(), 2).to(dev)}
    train = train_epoch(training.model, training.optimizer, volumes["train"], kl, oa, cfg, generator, loss_kwargs,
                        scheduler=training.scheduler, ema=training.ema, progress=progress,
                        desc=f"{name} epoch {epoch + 1}/{cfg.epochs}")
    model = training.evaluated
    val_pred = predict(model, volumes["val"], cfg.batch_size * EVAL_BATCH_FACTOR, dev)
    val = evaluate(model, val_pred, rows["val"]["kl"].to_numpy(), rows["val"]["oa"].to_numpy(), cfg.oa_weight)
    record = {"epoch": epoch + 1, **train, **val, "lr": lr, "seconds": time.perf_counter() - tic}
    training.history.append(record)
    tracked = _TRACKED.get(cfg.select)
    if tracked and _is_better(val[tracked], training.best["score"], tracked):
        training.best = {"epoch": epoch + 1, "score": val[tracked], "state": _cpu_state(model)}
    if progress:
        tqdm.write(
            f"[{name}] epoch {epoch + 1}/{cfg.epochs} loss {record['train_loss']:.4f} "
            f"val_loss {record['val_loss']:.4f} val_auc {record['val_oa_auc']:.3f} "
            f"val_qwk {record['val_kl_qwk']:.3f} ({record['seconds']:.1f}s)",
            file=sys.stderr,  # stdout carries only results (the CLI prints the run folder there)
        )


def kept_epoch(cfg: RunConfig, best_epoch: int | None, final_val_loss: float = math.nan,
               best_val_loss: float = math.nan) -> int:
    """The epoch whose weights a finished run keeps: the last for ``final``; for ``final_near_best``
    the last unless its validation loss is above NEAR_BEST_LOSS x the best (then the best); else the best."""
    if cfg.select == "final" or best_epoch is None:
        return cfg.epochs
    if cfg.select == "final_near_best" and not final_val_loss > NEAR_BEST_LOSS * best_val_loss:
        return cfg.epochs
    return int(best_epoch)


def _write_outputs(cfg: RunConfig, training: _Training, volumes: dict[str, Volumes], rows: dict[str, pd.DataFrame],
                   folder: Path, dev: torch.device) -> None:
    """Checkpoint (holding the kept weights), history with the kept epoch, predictions and embeddings
    of the kept weights, then DONE, then the checkpoint again with the kept weights only. The full
    checkpoint comes first: a crash while writing the rest resumes from it without training again."""
    model = training.evaluated
    epoch = kept_epoch(cfg, training.best["epoch"], training.history[-1]["val_loss"], training.best["score"])
    if epoch != cfg.epochs:
        model.load_state_dict(training.best["state"])
    model.eval()
    kept = _cpu_state(model)
    write_atomic_torch(folder / CHECKPOINT, training.checkpoint(kept=kept))
    history = pd.DataFrame(training.history).assign(kept=lambda h: (h["epoch"] == epoch).astype(int))
    write_atomic_csv(folder / HISTORY, history[list(HISTORY_COLUMNS)])
    preds = {s: predict(model, v, cfg.batch_size * EVAL_BATCH_FACTOR, dev) for s, v in volumes.items()}
    write_atomic_csv(folder / PREDICTIONS,
                     pd.concat([prediction_table(rows[s], preds[s]) for s in ("val", "test")], ignore_index=True))
    write_atomic_npz(
        folder / EMBEDDINGS,
        case_id=np.concatenate([rows[s]["case_id"].astype(str).to_numpy(dtype=str) for s in preds]).astype(str),
        split=np.concatenate([np.full(len(rows[s]), s) for s in preds]).astype(str),
        embedding=np.concatenate([preds[s]["embedding"] for s in preds]).astype(np.float32),
    )
    write_atomic_text(folder / DONE, f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    # finished: nothing resumes any more, so the checkpoint keeps the kept weights only (a 2M-parameter
    # model's optimiser moments, last and best states tripled its size)
    write_atomic_torch(folder / CHECKPOINT, {"kept": kept, "epoch": len(training.history), "kept_epoch": epoch})
