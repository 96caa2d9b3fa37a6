"""The saliency stage: maps, region overlap and sanity checks of a finished run, from its checkpoint.

Why: analyses never train and training never analyses. This stage reads a finished run
folder (``DONE``) read-only, rebuilds the probe with the weights its predictions were made
with (:func:`kept_state`) and writes its results into ``<run folder>/saliency-<settings_id>/``
(:meth:`~oaprobe.config.SaliencyConfig.settings_id`), every file atomically and ``DONE`` last:

- ``settings.json``: the settings, the run id, the weights used and a prediction check (the
  largest difference between the p_oa recomputed here and ``predictions.csv``'s);
- ``saliency.csv``: one row per knee, target, method and region (:data:`STAGE_TABLE_COLUMNS`),
  over the manifest's :func:`fixed_knees` (the same knees in every run, so runs pair by seed);
- ``saliency_maps.npz``: the maps of the first ``keep_maps`` knees with their image and mask;
- ``sanity.csv`` / ``deletion.csv``: the randomisation check (the trained maps against the fully
  randomised model's: the cascade's last step) and deletion curves of the first
  ``sanity_knees`` knees, from the same trained maps (:mod:`oaprobe.analysis.saliency_checks`);
- ``evidence.csv`` (when the manifest has an ``evidence`` column, i.e. a synthetic cohort): every
  map scored against the knee's ground-truth evidence and distractors (:mod:`oaprobe.analysis.evidence`).

A finished subfolder is never recomputed; one without ``DONE`` (a killed stage) is redone whole.
Other settings add another subfolder. The maps are :mod:`oaprobe.analysis.attribution`'s, the
overlap metrics :mod:`oaprobe.analysis.regions`'.

Example:
    >>> kept_state({"kept": {"w": 2}, "epoch": 3, "kept_epoch": 2})
    {'w': 2}
"""

from __future__ import annotations

import itertools
import json
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

import oaprobe
from oaprobe.analysis.attribution import (
    METHODS,
    ProbeAttributor,
    as_batch,
    knee_seed,
    predicted_kl,
    targets_for_mode,
)
from oaprobe.analysis.evidence import evidence_scorer
from oaprobe.analysis.regions import (
    TABLE_KS,
    region_masks,
    region_overlap,
)
from oaprobe.analysis.saliency_checks import run_sanity_checks
from oaprobe.analysis.saliency_results import (
    _ID_TYPES,
    DELETION,
    EVIDENCE,
    MAPS,
    SANITY,
    SETTINGS,
    TABLE,
    saliency_dir,
)
from oaprobe.config import RunConfig, SaliencyConfig
from oaprobe.data.dataset import load_masks, load_volumes
from oaprobe.data.manifest import data_hash, read_manifest
from oaprobe.device import compute_settings, eval_mode, resolve_device
from oaprobe.errors import OaprobeError
from oaprobe.io import file_sha256
from oaprobe.models.probe import build_probe
from oaprobe.training import runs

TABLE_COLUMNS: tuple[str, ...] = (
    "case_id", "target", "method", "region", "roi_fraction", "mass",
    "top1", "top5", "top10", "dice1", "dice5", "dice10", "enrichment",
)
#: ``saliency.csv`` as the stage writes it: :data:`TABLE_COLUMNS` with the knee's subject.
STAGE_TABLE_COLUMNS: tuple[str, ...] = ("case_id", "subject_id", *TABLE_COLUMNS[1:])
_MAP_KEYS = ("case_id", "target", "method", "saliency", "image", "mask")


class SaliencyStageError(OaprobeError):
    """The saliency stage cannot read a run folder (unfinished, inconsistent); the message names it."""


# --------------------------------------------------------------------------- per-run computation
def compute_run_saliency(
    model: nn.Module,
    images: torch.Tensor,
    masks: np.ndarray,
    lesions: np.ndarray | None,
    case_ids: list[str],
    mode: str,
    n_samples: int = 8, noise_std: float = 0.05, seed: int = 0,
    methods: Sequence[str] = METHODS,
    gradcam_layer: str | None = None,
    keep_maps: int = 3,
    progress: bool = True,
    on_map: Callable[[int, str, str, np.ndarray], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Saliency maps and overlap metrics for the knees of one run.

    Args:
        model: a HierarchicalProbe (``forward(x) -> {"oa", "kl", "embedding"}``); the model is
            used in eval mode on the device of its parameters and its mode is restored after.
        images, masks, lesions, case_ids: (N, 1, D, H, W) model inputs, (N, D, H, W) label maps
            and lesion masks (synthetic cohort; else None) on the input grid, N knee ids.
        mode: ``single_oa`` / ``single_kl`` / ``dual`` (sets the targets, see :func:`targets_for_mode`).
        n_samples, noise_std, seed: SmoothGrad settings; each knee's noise is seeded from
            ``seed`` and its case id (:func:`knee_seed`).
        methods: subset of ``("smoothgrad", "gradcam")``.
        gradcam_layer: dotted path inside ``model.encoder`` (default: ``model.encoder.gradcam_layer``).
        keep_maps: how many knees (the first ones) keep their maps for figures.
        progress: show a tqdm bar.
        on_map: called as ``on_map(knee index, target, method, map)`` for every map (the
            evidence scores, :func:`oaprobe.analysis.evidence.evidence_scorer`).

    Returns:
        ``(table, maps)``: the overlap table (columns :data:`TABLE_COLUMNS`, one row per knee,
        target, method and region) and the arrays of ``saliency_maps.npz``: ``case_id``,
        ``target``, ``method`` (K,), ``saliency`` (K, D, H, W float16) and the matching
        ``image`` (float16) and ``mask`` (uint8), row-aligned with ``saliency``.
    """
    targets = targets_for_mode(mode)
    images = as_batch(images)
    masks = _checked_masks(images, masks, lesions, case_ids)
    attributor = ProbeAttributor(model, targets, methods, n_samples, noise_std, gradcam_layer)
    device = next(model.parameters()).device
    rows: list[dict[str, Any]] = []
    kept: list[tuple[Any, ...]] = []
    with eval_mode(model):
        for i in tqdm(range(len(case_ids)), desc="saliency", disable=not progress):
            cid, x = str(case_ids[i]), images[i : i + 1].to(device)
            kl_class = predicted_kl(model, x)
            regions = region_masks(masks[i], None if lesions is None else np.asarray(lesions)[i])
            for target, method in itertools.product(targets, methods):
                sal = attributor(x, target, method, kl_class, knee_seed(seed, cid))
                if on_map is not None:
                    on_map(i, target, method, sal)
                rows += [{"case_id": cid, "target": target, "method": method, "region": region, **metrics}
                         for region, metrics in region_overlap(sal, regions, TABLE_KS).items()]
                if i < keep_maps:
                    kept.append((cid, target, method, sal.astype(np.float16),
                                 images[i, 0].detach().cpu().numpy().astype(np.float16), masks[i].astype(np.uint8)))
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)), _stacked_maps(kept, tuple(images.shape[2:]))


def _checked_masks(images: torch.Tensor, masks: np.ndarray, lesions: np.ndarray | None,
                   case_ids: Sequence[str]) -> np.ndarray:
    """``masks`` as an array, once it, ``lesions`` and ``case_ids`` match ``images`` knee for knee."""
    n, spatial = images.shape[0], tuple(images.shape[2:])
    masks = np.asarray(masks)
    if masks.shape != (n, *spatial):
        raise ValueError(f"masks: expected shape {(n, *spatial)} (one label map per image), got {masks.shape}")
    if lesions is not None and np.asarray(lesions).shape != (n, *spatial):
        raise ValueError(f"lesions: expected shape {(n, *spatial)}, got {np.asarray(lesions).shape}")
    if len(case_ids) != n:
        raise ValueError(f"case_ids: {len(case_ids)} ids for {n} images")
    return masks


def _stacked_maps(kept: list[tuple[Any, ...]], spatial: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The kept ``(case_id, target, method, saliency, image, mask)`` rows as the arrays of
    ``saliency_maps.npz`` (empty arrays of the right shape when none were kept)."""
    columns = dict(zip(_MAP_KEYS, zip(*kept))) if kept else {key: () for key in _MAP_KEYS}
    maps = {key: np.array(columns[key], dtype=str) for key in ("case_id", "target", "method")}
    for key, dtype in (("saliency", np.float16), ("image", np.float16), ("mask", np.uint8)):
        maps[key] = np.stack(columns[key]) if kept else np.zeros((0, *spatial), dtype=dtype)
    return maps


# --------------------------------------------------------------------------- reading a run

def kept_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict the run's predictions were made with: a finished run's checkpoint holds only
    those weights (``kept``)."""
    if checkpoint.get("kept") is None:
        raise SaliencyStageError(f"checkpoint holds no kept model weights (keys: {sorted(checkpoint)})")
    return checkpoint["kept"]


def _check_finished(folder: Path) -> None:
    """A one-line error naming ``folder`` unless it is a finished run (``DONE``)."""
    if not runs.is_done(folder):
        state = "does not exist" if not folder.is_dir() else "has no DONE marker (training unfinished or crashed)"
        raise SaliencyStageError(f"run folder {str(folder)!r} {state}; saliency reads finished runs only")


def _run_config(folder: Path) -> tuple[RunConfig, dict[str, Any]]:
    """The RunConfig and ``config.json`` of a finished run folder, or a one-line error naming it."""
    try:
        meta = json.loads((folder / runs.CONFIG).read_text())
        return RunConfig.from_dict(meta["config"]), meta
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SaliencyStageError(f"run folder {str(folder)!r}: cannot read {runs.CONFIG}: {err}") from err


def fixed_knees(test: pd.DataFrame, n_knees: int) -> pd.DataFrame:
    """The saliency stage's knees: ``n_knees`` of the test knees ``test`` (0 or more than there are:
    all), the same for every run of a manifest, whatever its backbone, mode or seed.

    Why: dual and single-task maps pair by seed only when every run explains the same knees.
    Stratified by grade (``kl_clean`` where the manifest has it, else ``kl``): the grades take
    turns, lowest first, and within a grade knees are taken in the order of a hash of their case
    id (CRC-32), so the set depends on the manifest's test knees alone, not on the run or its row
    order. Returned in that order (the first knees of the set are its grades' first).
    """
    if n_knees == 0 or n_knees >= len(test):
        n_knees = len(test)
    grade = "kl_clean" if "kl_clean" in test and test["kl_clean"].notna().all() else "kl"
    order = test.assign(_hash=[zlib.crc32(str(c).encode()) for c in test["case_id"]], _case=test["case_id"].astype(str))
    order = order.sort_values([grade, "_hash", "_case"], kind="stable")
    order["_turn"] = order.groupby(grade).cumcount()
    order = order.sort_values(["_turn", grade], kind="stable")
    return order.drop(columns=["_hash", "_case", "_turn"]).head(n_knees).reset_index(drop=True)


def _knees(cfg: RunConfig, meta: dict[str, Any], folder: Path, n_knees: int) -> pd.DataFrame:
    """The run's :func:`fixed_knees` of its manifest's test split, which must be unchanged: its bytes
    and every volume it names (a run shared by two copies of one dataset is read from the copy it was
    trained on, so that copy must still hold the same data)."""
    manifest = Path(cfg.manifest)
    if not manifest.is_file():
        raise SaliencyStageError(f"run folder {str(folder)!r}: its manifest {str(manifest)!r} does not exist")
    if meta.get("manifest_sha256") not in (None, file_sha256(manifest)):
        raise SaliencyStageError(f"manifest {str(manifest)!r} changed since run {str(folder)!r} was trained")
    if meta.get("data_sha256") not in (None, data_hash(manifest)):
        raise SaliencyStageError(f"the volumes of manifest {str(manifest)!r} changed since run {str(folder)!r} "
                                 "was trained; expected the data it was trained on")
    table = read_manifest(manifest, check_volumes=False)
    test = table[table["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise SaliencyStageError(f"manifest {str(manifest)!r} of run {str(folder)!r} has no test knees")
    return fixed_knees(test, n_knees)


def _load_model(folder: Path, cfg: RunConfig, device: torch.device) -> tuple[nn.Module, str]:
    """The probe with the run's kept weights, float32 on ``device`` in eval mode, and their source."""
    with open(folder / runs.CHECKPOINT, "rb") as handle:  # read-only; our own file, so a full unpickle
        checkpoint = torch.load(handle, map_location="cpu", weights_only=False)
    model = build_probe(cfg)
    model.load_state_dict(kept_state(checkpoint))
    return model.float().to(device).eval(), "kept"


@torch.no_grad()
def _prediction_gap(model: nn.Module, images: torch.Tensor, rows: pd.DataFrame, folder: Path) -> float:
    """Largest |p_oa here - p_oa in predictions.csv| over the knees: ~0 when the weights are the kept ones."""
    pred = pd.read_csv(folder / runs.PREDICTIONS, dtype=_ID_TYPES).set_index("case_id")
    ids = rows["case_id"].astype(str)
    missing = [c for c in ids if c not in pred.index]
    if missing:
        raise SaliencyStageError(f"{str(folder / runs.PREDICTIONS)!r} has no row for test knee {missing[0]!r}")
    device = next(model.parameters()).device
    p_oa = torch.cat([model.predict_proba(model(images[i : i + 1].to(device)))[0].float().cpu()
                      for i in range(images.shape[0])])
    return float(np.max(np.abs(p_oa.numpy() - pred.loc[ids, "p_oa"].to_numpy(float)), initial=0.0))


# --------------------------------------------------------------------------- the stage
def _compute(folder: Path, settings: SaliencyConfig, cache_dir: Path | None, progress: bool,
             dev: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stage's tables and maps for one run, and the facts settings.json records."""
    cfg, meta = _run_config(folder)
    rows = _knees(cfg, meta, folder, settings.knees)
    images = load_volumes(rows, cfg.input_shape, cache_dir=cache_dir, progress=progress)
    masks = load_masks(rows, cfg.input_shape, cache_dir=cache_dir)
    lesions = None
    if "lesion_path" in rows and rows["lesion_path"].notna().all():
        lesions = load_masks(rows, cfg.input_shape, column="lesion_path", cache_dir=cache_dir)
    ids = rows["case_id"].astype(str).tolist()
    score, evidence_table = None, None
    if "evidence_path" in rows and rows["evidence_path"].notna().all():
        evidence = load_masks(rows, cfg.input_shape, column="evidence_path", cache_dir=cache_dir)
        score, evidence_table = evidence_scorer(evidence, ids)
    k = min(settings.sanity_knees, len(ids))
    checked: dict[tuple[int, str, str], np.ndarray] = {}

    def on_map(i: int, target: str, method: str, sal: np.ndarray) -> None:
        if score is not None:
            score(i, target, method, sal)
        if i < k:  # the checks reuse the trained maps of their knees
            checked[i, target, method] = sal

    with compute_settings(dev):
        model, source = _load_model(folder, cfg, dev)
        gap = _prediction_gap(model, images, rows, folder)
        table, maps = compute_run_saliency(
            model, images, masks, lesions, ids, cfg.mode, n_samples=settings.samples, noise_std=settings.noise,
            seed=settings.seed, methods=settings.methods, keep_maps=settings.keep_maps, progress=progress,
            on_map=on_map,
        )
        sanity, deletion = run_sanity_checks(
            model, images[:k], ids[:k], cfg.mode, settings.methods, settings.samples, settings.noise,
            settings.seed, settings.deletion_steps, progress=progress, last_only=True, maps=checked,
        )
    table.insert(1, "subject_id", table["case_id"].map(dict(zip(ids, rows["subject_id"].astype(str)))))
    facts = {"weights": source, "n_knees": len(ids), "n_sanity_knees": k, "device": str(dev), "p_oa_max_abs_diff": gap}
    results = {TABLE: table[list(STAGE_TABLE_COLUMNS)], SANITY: sanity, DELETION: deletion, MAPS: maps}
    if evidence_table is not None:
        results[EVIDENCE] = evidence_table()
    return results, facts


def run_saliency(
    run_folder: Path | str,
    settings: SaliencyConfig,
    cache_dir: Path | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> Path:
    """Compute a finished run's saliency results for ``settings`` unless done; return their folder.

    Knees: the manifest's :func:`fixed_knees` (``settings.knees`` of its test knees, 0 or more than
    there are: all), the same in every run of the manifest. The run's files are only read. On CPU the computation is float32 with
    deterministic algorithms (the caller's torch settings are restored), so the same settings
    write the same bytes. A run folder without ``DONE`` raises :class:`SaliencyStageError`.
    """
    folder = Path(run_folder)
    out = saliency_dir(folder, settings)
    _check_finished(folder)
    if runs.is_done(out):
        return out
    dev = resolve_device(device)
    out.mkdir(exist_ok=True)
    with runs.run_lock(out, ""):  # out/.lock: one process per subfolder
        if runs.is_done(out):  # another process finished it while we waited
            return out
        for stale in out.glob(".*.tmp"):  # left by a killed writer; we hold the lock
            stale.unlink(missing_ok=True)
        results, facts = _compute(folder, settings, cache_dir, progress, dev)
        runs.write_atomic_json(out / SETTINGS, {"settings": settings.to_dict(), "settings_id": settings.settings_id(),
                                                "run_id": folder.name, "oaprobe_version": _version(), **facts})
        for name in (TABLE, SANITY, DELETION, EVIDENCE):
            if name in results:
                runs.write_atomic_csv(out / name, results[name])
        runs.write_atomic_npz(out / MAPS, **results[MAPS])
        runs.write_atomic_text(out / runs.DONE, f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    return out


def _version() -> str:
    return str(oaprobe.__version__)
