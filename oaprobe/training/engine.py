"""The training engine: validate a RunConfig, train it (resumably), write its run folder.

:func:`fit` is the one entry point. It checks everything before any work (manifest, backbone,
input shape, split sizes), returns a finished folder at once, and otherwise trains with
checkpoints after every epoch. Resume is exact: at the start of epoch ``e`` every random
generator is reseeded from ``(cfg.seed, e)`` and the checkpoint holds model, optimiser,
scheduler, history and the best-so-far weights, so a run killed at any point and resumed ends
with the same bytes in ``predictions.csv`` as an uninterrupted run (on CPU).

Volumes are loaded once into one in-memory tensor per split (:func:`oaprobe.data.dataset.load_volumes`)
and batches are index gathers from it: no file is read per step.

Example:
    >>> from oaprobe.config import RunConfig
    >>> from oaprobe.data.cohort import build_cohort
    >>> from oaprobe.config import get_preset
    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> manifest = build_cohort(get_preset("smoke").cohort, tmp / "cohort", progress=False)
    >>> cfg = RunConfig.from_dict({"manifest": str(manifest), **get_preset("smoke").run,
    ...                            "epochs": 1, "saliency_knees": 0})
    >>> folder = fit(cfg, tmp / "runs", progress=False)
    >>> sorted(p.name for p in folder.iterdir())  # doctest: +NORMALIZE_WHITESPACE
    ['DONE', 'checkpoint.pt', 'config.json', 'embeddings.npz', 'history.csv', 'predictions.csv']
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from torch import nn
from tqdm.auto import tqdm

import oaprobe
from oaprobe.config import ConfigError, RunConfig, file_sha256
from oaprobe.training.runs import (
    CHECKPOINT,
    CONFIG,
    DONE,
    EMBEDDINGS,
    HISTORY,
    HISTORY_COLUMNS,
    PREDICTION_COLUMNS,
    PREDICTIONS,
    SALIENCY,
    SALIENCY_MAPS,
    is_done,
    run_dir,
    run_lock,
    write_atomic_csv,
    write_atomic_json,
    write_atomic_npz,
    write_atomic_text,
    write_atomic_torch,
)

N_KL = 5
EVAL_BATCH_FACTOR = 2  # evaluation batches are this many training batches (no gradients kept)
SALIENCY_KEEP_MAPS = 3  # saliency maps saved to saliency_maps.npz for figures
_HIGHER_IS_BETTER = {"val_loss": False, "val_oa_auc": True, "val_kl_qwk": True}


# ---------------------------------------------------------------------------- validation
def validate(cfg: RunConfig) -> pd.DataFrame:
    """Check ``cfg`` against its backbone and manifest before any work; return the manifest table.

    Raises:
        ConfigError: unknown backbone (listing valid names), an input shape the backbone cannot
            take, a batch size larger than the training split, or ``select`` needing a missing
            validation split.
        ManifestError: the manifest is invalid (message names the file and row).
    """
    from oaprobe.data.manifest import read_manifest
    from oaprobe.models.backbones import check_input_shape

    if not isinstance(cfg, RunConfig):
        raise ConfigError(f"fit() needs a RunConfig, got {type(cfg).__name__}")
    check_input_shape(cfg.backbone, cfg.input_shape)
    table = read_manifest(cfg.manifest)
    counts = table["split"].value_counts()
    n_train, n_val = int(counts.get("train", 0)), int(counts.get("val", 0))
    if n_train < cfg.batch_size:
        raise ConfigError(
            f"RunConfig.batch_size = {cfg.batch_size}; the manifest {cfg.manifest!r} has only {n_train} "
            "train knees (training drops the last incomplete batch, so none would remain)"
        )
    if cfg.select != "final" and n_val == 0:
        raise ConfigError(
            f"RunConfig.select = {cfg.select!r} needs validation knees; manifest {cfg.manifest!r} has none "
            "(use select='final')"
        )
    if cfg.saliency_knees > int(counts.get("test", 0)):
        raise ConfigError(
            f"RunConfig.saliency_knees = {cfg.saliency_knees}; manifest {cfg.manifest!r} has only "
            f"{int(counts.get('test', 0))} test knees"
        )
    return table


# ---------------------------------------------------------------------------- devices & seeds
def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {device!r} but CUDA is not available on this machine")
    return dev


def cpu_threads() -> int:
    """Threads for CPU training: ``OMP_NUM_THREADS`` when set, else ``min(2, cores)``.

    More threads than free cores is catastrophic on a shared machine (ENV-NOTES), hence the cap.
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(2, os.cpu_count() or 1))


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run seeded ``seed`` (a pure function: resume is exact)."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a fresh CPU generator with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def _compute_settings(device: torch.device) -> Iterator[None]:
    """Deterministic CPU compute / autotuned cuDNN on GPU (the caller's settings are restored)."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_benchmark = torch.backends.cudnn.benchmark
    try:
        if device.type == "cpu":
            torch.set_num_threads(cpu_threads())
            torch.use_deterministic_algorithms(True, warn_only=True)
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: autotuned kernels pay off
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.backends.cudnn.benchmark = old_benchmark


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA devices that support it; a no-op elsewhere (CPU runs in float32)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _Volumes:
    """Batches from the preloaded volume tensor, moved to the device.

    On CUDA the whole tensor is moved to the GPU once when it takes under a quarter of the free
    memory; otherwise every batch is gathered into pinned memory and copied asynchronously.
    Conv nets on CUDA get channels-last 3D inputs (cuDNN's fast layout).
    """

    def __init__(self, images: torch.Tensor, device: torch.device, channels_last: bool) -> None:
        self.device = device
        self.channels_last = channels_last
        self.images = images
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if images.numel() * images.element_size() < free // 4:
                self.images = images.to(device)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        if self.images.device == self.device:
            x = self.images[index.to(self.device)]
        else:
            x = self.images[index].pin_memory().to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x


# ---------------------------------------------------------------------------- augmentation
def augment_batch(x: torch.Tensor, generator: torch.Generator, max_shift: int | None = None) -> torch.Tensor:
    """Light 3D augmentation of a batch ``(B, 1, D, H, W)``, parameters drawn from ``generator``.

    Per knee: an anterior-posterior flip (W axis) with probability 1/2, a circular shift of up to
    ``max_shift`` voxels (default 1/16 of each side) along each axis, and an intensity scale in
    [0.9, 1.1] plus offset in [-0.1, 0.1] (inputs are z-scored). The medial-lateral axis (D) is
    never flipped: that would swap the medial and lateral compartments.
    """
    b = x.shape[0]
    sides = x.shape[2:]
    flip = torch.rand(b, generator=generator) < 0.5
    limits = [max_shift if max_shift is not None else max(1, s // 16) for s in sides]
    shifts = [torch.randint(-m, m + 1, (b,), generator=generator) for m in limits]
    scale = 0.9 + 0.2 * torch.rand(b, generator=generator)
    offset = -0.1 + 0.2 * torch.rand(b, generator=generator)
    out = []
    for i in range(b):
        v = x[i]
        if flip[i]:
            v = v.flip(-1)
        v = torch.roll(v, shifts=[int(s[i]) for s in shifts], dims=(1, 2, 3))
        out.append(v * float(scale[i]) + float(offset[i]))
    return torch.stack(out)


# ---------------------------------------------------------------------------- class weights
def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``n / (K * n_c)`` of integer ``labels``, K = classes present.

    The same as scikit-learn's ``compute_class_weight("balanced")``; absent classes get 0.
    """
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
    present = max(1, int((counts > 0).sum()))
    weights = np.where(counts > 0, counts.sum() / (present * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


# ---------------------------------------------------------------------------- prediction
@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor | _Volumes, batch_size: int, device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Run ``model`` (a HierarchicalProbe) in eval mode over ``images`` in order.

    Returns numpy arrays: ``embedding`` (N, D) float32, ``oa_logits`` / ``kl_logits`` (absent head:
    None), ``p_oa`` (N,) and ``p_kl`` (N, 5) or None, via ``model.predict_proba``.
    """
    device = torch.device(device)
    volumes = images if isinstance(images, _Volumes) else _Volumes(images, device, channels_last=False)
    was_training = model.training
    model.eval()
    outs: dict[str, list[torch.Tensor]] = {"oa": [], "kl": [], "embedding": []}
    n = len(volumes)
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n))
        with _autocast(volumes.device):
            out = model(volumes.batch(index))
        for key in outs:
            if out.get(key) is not None:
                outs[key].append(out[key].float().cpu())
    model.train(was_training)
    cat = {k: (torch.cat(v) if v else None) for k, v in outs.items()}
    if cat["embedding"] is None:  # no knees
        cat = {"oa": None, "kl": None, "embedding": torch.zeros(0, getattr(model.encoder, "out_dim", 0))}
        return {"embedding": cat["embedding"].numpy(), "oa_logits": None, "kl_logits": None, "p_oa": np.zeros(0), "p_kl": None}
    p_oa, p_kl = model.predict_proba(cat)
    return {
        "embedding": cat["embedding"].numpy().astype(np.float32),
        "oa_logits": None if cat["oa"] is None else cat["oa"].numpy(),
        "kl_logits": None if cat["kl"] is None else cat["kl"].numpy(),
        "p_oa": p_oa.detach().float().cpu().numpy().astype(np.float64),
        "p_kl": None if p_kl is None else p_kl.detach().float().cpu().numpy().astype(np.float64),
    }


def _loss_value(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().cpu())
    return float(value)


def evaluate(model: nn.Module, pred: dict[str, np.ndarray], kl: np.ndarray, oa: np.ndarray, oa_weight: float) -> dict[str, float]:
    """Validation metrics from :func:`predict` output: loss (unweighted by class), OA AUC, KL QWK.

    Metrics that cannot be computed (head absent, one class only, no knees) are NaN.
    """
    result = {"val_loss": math.nan, "val_oa_auc": math.nan, "val_kl_qwk": math.nan}
    if len(oa) == 0:
        return result
    out = {
        "oa": None if pred["oa_logits"] is None else torch.from_numpy(pred["oa_logits"]),
        "kl": None if pred["kl_logits"] is None else torch.from_numpy(pred["kl_logits"]),
        "embedding": torch.from_numpy(pred["embedding"]),
    }
    with torch.no_grad():
        kl_t, oa_t = torch.tensor(np.asarray(kl, dtype=np.int64)), torch.tensor(np.asarray(oa, dtype=np.int64))
        loss, _ = model.loss(out, kl_t, oa_t, oa_weight=oa_weight)
    result["val_loss"] = _loss_value(loss)
    if len(np.unique(oa)) == 2:
        result["val_oa_auc"] = float(roc_auc_score(oa, pred["p_oa"]))
    if pred["p_kl"] is not None:
        result["val_kl_qwk"] = float(cohen_kappa_score(kl, pred["p_kl"].argmax(1), weights="quadratic", labels=list(range(N_KL))))
    return result


# ---------------------------------------------------------------------------- one epoch
def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    volumes: _Volumes,
    kl: torch.Tensor,
    oa: torch.Tensor,
    cfg: RunConfig,
    generator: torch.Generator,
    loss_kwargs: dict[str, Any],
    progress: bool = True,
    desc: str = "",
) -> dict[str, float]:
    """One pass over the training knees in a ``generator``-shuffled order, last partial batch dropped.

    Returns the mean ``train_loss``, ``train_loss_kl`` and ``train_loss_oa`` (NaN for an absent head).
    """
    model.train()
    n = len(volumes)
    order = torch.randperm(n, generator=generator)
    batches = order[: n - n % cfg.batch_size].view(-1, cfg.batch_size)
    device = volumes.device
    kl_dev, oa_dev = kl.to(device), oa.to(device)
    sums: dict[str, torch.Tensor | float] = {"loss": 0.0, "kl": 0.0, "oa": 0.0}
    seen = {"kl": False, "oa": False}
    bar = tqdm(batches, desc=desc, leave=False, disable=not progress, unit="batch")
    for step, index in enumerate(bar):
        x = volumes.batch(index)
        if cfg.augment:
            x = augment_batch(x, generator)
            if volumes.channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
        idx = index.to(device)
        with _autocast(device):
            out = model(x)
            loss, parts = model.loss(out, kl_dev[idx], oa_dev[idx], oa_weight=cfg.oa_weight, **loss_kwargs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums["loss"] = sums["loss"] + loss.detach()
        for head in ("kl", "oa"):
            part = (parts or {}).get(head)
            if part is not None:
                seen[head] = True
                sums[head] = sums[head] + (part.detach() if isinstance(part, torch.Tensor) else float(part))
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{_loss_value(loss):.4f}")
    n_steps = max(1, len(batches))
    return {
        "train_loss": _loss_value(sums["loss"]) / n_steps,
        "train_loss_kl": _loss_value(sums["kl"]) / n_steps if seen["kl"] else math.nan,
        "train_loss_oa": _loss_value(sums["oa"]) / n_steps if seen["oa"] else math.nan,
    }


# ---------------------------------------------------------------------------- outputs
def _prediction_table(rows: pd.DataFrame, pred: dict[str, np.ndarray]) -> pd.DataFrame:
    n = len(rows)
    table = pd.DataFrame(
        {
            "case_id": rows["case_id"].astype(str).to_numpy(),
            "subject_id": rows["subject_id"].astype(str).to_numpy(),
            "split": rows["split"].astype(str).to_numpy(),
            "kl": rows["kl"].astype(int).to_numpy(),
            "oa": rows["oa"].astype(int).to_numpy(),
        }
    )
    if "kl_clean" in rows:
        table["kl_clean"] = pd.array(rows["kl_clean"].to_numpy(), dtype="Int64")
    else:
        table["kl_clean"] = pd.array([pd.NA] * n, dtype="Int64")
    table["p_oa"] = pred["p_oa"]
    p_kl = pred["p_kl"]
    for k in range(N_KL):
        table[f"p_kl{k}"] = p_kl[:, k] if p_kl is not None else np.full(n, np.nan)
    table["pred_oa"] = (pred["p_oa"] >= 0.5).astype(int)
    if p_kl is not None:
        table["pred_kl"] = pd.array(p_kl.argmax(1), dtype="Int64")
    else:
        table["pred_kl"] = pd.array([pd.NA] * n, dtype="Int64")
    return table[list(PREDICTION_COLUMNS)]


def _saliency(
    model: nn.Module,
    cfg: RunConfig,
    test_rows: pd.DataFrame,
    test_images: torch.Tensor,
    cache_dir: Path | None,
    progress: bool,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Saliency of the first ``cfg.saliency_knees`` test knees (masks resized to the input grid)."""
    from oaprobe.analysis.saliency import compute_run_saliency
    from oaprobe.data.dataset import load_masks

    rows = test_rows.iloc[: cfg.saliency_knees]
    masks = load_masks(rows, cfg.input_shape, cache_dir=cache_dir)
    lesions = None
    if "lesion_path" in rows and rows["lesion_path"].notna().all():
        lesions = load_masks(rows, cfg.input_shape, column="lesion_path", cache_dir=cache_dir)
    return compute_run_saliency(
        model,
        test_images[: cfg.saliency_knees].float(),
        masks,
        lesions,
        rows["case_id"].astype(str).tolist(),
        mode=cfg.mode,
        n_samples=cfg.saliency_samples,
        noise_std=cfg.saliency_noise,
        seed=cfg.seed,
        gradcam_layer=model.encoder.gradcam_layer,
        keep_maps=SALIENCY_KEEP_MAPS,
        progress=progress,
    )


def _history_frame(history: list[dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(history, columns=list(HISTORY_COLUMNS))


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _is_better(score: float, best: float | None, select: str) -> bool:
    if math.isnan(score):
        return False
    if best is None or math.isnan(best):
        return True
    return score > best if _HIGHER_IS_BETTER[select] else score < best


# ---------------------------------------------------------------------------- fit
def fit(
    cfg: RunConfig,
    runs_root: Path = Path("runs"),
    cache_dir: Path | None = None,
    progress: bool = True,
    device: str = "auto",
    max_epochs_this_call: int | None = None,
) -> Path:
    """Train ``cfg`` (or resume it) and write its run folder; return the folder.

    A folder with ``DONE`` is returned at once without loading anything. Every check runs before
    a folder is created. ``max_epochs_this_call`` stops after that many new epochs (the folder is
    then not DONE; call again to continue), for time-sliced schedulers and tests.

    Args:
        cfg: the run.
        runs_root: parent of the run folders.
        cache_dir: disk cache of resized volumes (shared by runs of one manifest and shape).
        progress: tqdm bars and an epoch summary line.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        max_epochs_this_call: at most this many epochs before returning (None: all).
    """
    runs_root = Path(runs_root)
    table = validate(cfg)
    dev = resolve_device(device)
    if max_epochs_this_call is not None and max_epochs_this_call < 1:
        raise ConfigError(f"max_epochs_this_call = {max_epochs_this_call}; expected >= 1 or None")
    folder = run_dir(cfg, runs_root)
    if is_done(folder):
        return folder
    with run_lock(runs_root, folder.name):
        if is_done(folder):  # another process finished it while we waited for the lock
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        with _compute_settings(dev):
            _train_and_write(cfg, table, folder, cache_dir, progress, dev, max_epochs_this_call)
    return folder


def _train_and_write(
    cfg: RunConfig,
    table: pd.DataFrame,
    folder: Path,
    cache_dir: Path | None,
    progress: bool,
    dev: torch.device,
    max_epochs_this_call: int | None,
) -> None:
    from oaprobe.data.dataset import load_volumes
    from oaprobe.models.probe import build_probe

    for stale in folder.glob(".*.tmp"):  # left by a process killed mid-write; we hold the lock
        stale.unlink(missing_ok=True)
    seed_everything(cfg.seed)
    model = build_probe(cfg)
    n_parameters = int(sum(p.numel() for p in model.parameters()))
    write_atomic_json(
        folder / CONFIG,
        {
            "config": cfg.to_dict(),
            "run_id": folder.name,
            "oaprobe_version": oaprobe.__version__,
            "manifest_sha256": file_sha256(cfg.manifest),
            "embedding_dim": int(model.encoder.out_dim),
            "n_parameters": n_parameters,
        },
    )
    channels_last = dev.type == "cuda"
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs) if cfg.schedule == "cosine" else None
    )

    start_epoch, history = 0, []
    best: dict[str, Any] = {"epoch": None, "score": None, "state": None}
    checkpoint_path = folder / CHECKPOINT
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        start_epoch, history, best = int(state["epoch"]), list(state["history"]), dict(state["best"])

    # one tensor per split, loaded once (no second copy of the whole cohort at paper sizes)
    rows = {s: table[table["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")}
    imgs = {s: load_volumes(rows[s], cfg.input_shape, cache_dir=cache_dir, progress=progress) for s in rows}
    train_vol = _Volumes(imgs["train"], dev, channels_last)
    val_vol = _Volumes(imgs["val"], dev, channels_last)
    kl_train = torch.tensor(rows["train"]["kl"].to_numpy(dtype=np.int64))
    oa_train = torch.tensor(rows["train"]["oa"].to_numpy(dtype=np.int64))
    loss_kwargs: dict[str, Any] = {}
    if cfg.class_weighting:
        loss_kwargs = {
            "kl_weight": class_weights(kl_train.numpy(), N_KL).to(dev),
            "oa_weight_classes": class_weights(oa_train.numpy(), 2).to(dev),
        }
    eval_bs = cfg.batch_size * EVAL_BATCH_FACTOR

    end_epoch = cfg.epochs if max_epochs_this_call is None else min(cfg.epochs, start_epoch + max_epochs_this_call)
    for epoch in range(start_epoch, end_epoch):
        tic = time.perf_counter()
        generator = seed_everything(epoch_seed(cfg.seed, epoch))
        lr = float(optimizer.param_groups[0]["lr"])
        train = train_epoch(
            model, optimizer, train_vol, kl_train, oa_train, cfg, generator, loss_kwargs,
            progress=progress, desc=f"{folder.name} epoch {epoch + 1}/{cfg.epochs}",
        )
        if scheduler is not None:
            scheduler.step()
        val_pred = predict(model, val_vol, eval_bs, dev)
        val = evaluate(model, val_pred, rows["val"]["kl"].to_numpy(), rows["val"]["oa"].to_numpy(), cfg.oa_weight)
        record = {"epoch": epoch + 1, **train, **val, "lr": lr, "seconds": time.perf_counter() - tic}
        history.append(record)
        if cfg.select != "final" and _is_better(val[cfg.select], best["score"], cfg.select):
            best = {"epoch": epoch + 1, "score": val[cfg.select], "state": _cpu_state(model)}
        write_atomic_torch(
            checkpoint_path,
            {
                "model": _cpu_state(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": None if scheduler is None else scheduler.state_dict(),
                "epoch": epoch + 1,
                "history": history,
                "best": best,
            },
        )
        if progress:
            tqdm.write(
                f"[{folder.name}] epoch {epoch + 1}/{cfg.epochs} loss {record['train_loss']:.4f} "
                f"val_loss {record['val_loss']:.4f} val_auc {record['val_oa_auc']:.3f} "
                f"val_qwk {record['val_kl_qwk']:.3f} ({record['seconds']:.1f}s)",
                file=sys.stderr,  # stdout carries only results (the CLI prints the run folder there)
            )
    if len(history) < cfg.epochs:
        return  # time slice over: the folder stays without DONE and resumes next call

    if cfg.select != "final" and best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    write_atomic_csv(folder / HISTORY, _history_frame(history))
    volumes = {"train": train_vol, "val": val_vol, "test": _Volumes(imgs["test"], dev, channels_last)}
    preds = {s: predict(model, v, eval_bs, dev) for s, v in volumes.items()}
    del volumes, train_vol, val_vol  # free device copies before saliency
    write_atomic_csv(
        folder / PREDICTIONS,
        pd.concat([_prediction_table(rows[s], preds[s]) for s in ("val", "test")], ignore_index=True),
    )
    write_atomic_npz(
        folder / EMBEDDINGS,
        case_id=np.concatenate([rows[s]["case_id"].astype(str).to_numpy(dtype=str) for s in preds]).astype(str),
        split=np.concatenate([np.full(len(rows[s]), s) for s in preds]).astype(str),
        embedding=np.concatenate([preds[s]["embedding"] for s in preds]).astype(np.float32),
    )
    if cfg.saliency_knees > 0:  # float32, on the training device, standard memory layout
        model = model.to(memory_format=torch.contiguous_format).float()
        sal_table, sal_maps = _saliency(model, cfg, rows["test"], imgs["test"], cache_dir, progress)
        write_atomic_csv(folder / SALIENCY, sal_table)
        write_atomic_npz(folder / SALIENCY_MAPS, **sal_maps)
    write_atomic_text(folder / DONE, f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
