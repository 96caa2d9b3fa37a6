"""Build (or reuse) a synthetic knee cohort on disk: NIfTI volumes, manifest.csv, cohort.json.

A :class:`~oaprobe.config.CohortConfig` fully determines the cohort. Each subject has one or
two knees (``bilateral_fraction``); the two knees' severities are correlated through a
Gaussian copula (correlation :data:`SEVERITY_CORRELATION`) and each marginally follows the
configured KL prior. Every random quantity comes from its own seeded stream keyed by
``(seed, subject, side)``, so:

- a knee's volume depends only on ``(seed, shape, spacing, kl_prior)`` (and the phantom
  version), not on ``label_noise``, ``split``, ``bilateral_fraction`` or ``n_subjects``. The
  volumes are rendered once into a shared store ``root/_volumes/<volume_key>/`` and
  hard-linked (copied where links fail) into each cohort folder, so the label-noise cohorts
  of the book share their images;
- the observed grade draws one uniform number per knee, so the noisy labels of different
  strengths are coupled (a label flipped at a low strength tends to stay flipped at a higher);
- the split is stratified by each subject's worst CLEAN grade, so every noise level of one
  recipe has the same train / val / test knees.

Layout of ``root/<cohort_id>/``: ``images/``, ``masks/``, ``lesions/``, ``evidence/`` (the
ground-truth evidence and distractor map, :func:`oaprobe.data.phantom.render_knee`) (``<case_id>.nii.gz``,
spacing in the affine), ``manifest.csv`` (``book/architecture.md``) and ``cohort.json``
(the recipe, the measured clean-vs-observed kappa, counts). Building the same recipe again
skips every knee whose files exist.

Example:
    >>> import tempfile, pathlib
    >>> from oaprobe.config import get_preset
    >>> from oaprobe.data.manifest import read_manifest
    >>> cfg = get_preset("smoke").cohort.replace(n_subjects=4)
    >>> path = build_cohort(cfg, pathlib.Path(tempfile.mkdtemp()), progress=False)
    >>> path.name, path.parent.name == cfg.cohort_id()
    ('manifest.csv', True)
    >>> table = read_manifest(path)
    >>> bool(((table["kl"] >= 2).astype(int) == table["oa"]).all())
    True
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.metrics import cohen_kappa_score
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from oaprobe.config import DEFAULT_COHORTS, CohortConfig
from oaprobe.data.labels import expected_kappa, kl_prior, oa_from_kl, observe_kl
from oaprobe.data.manifest import write_manifest
from oaprobe.data.phantom import (
    PHANTOM_VERSION,
    kl_from_severity,
    render_knee,
    sample_knee_params,
    severity_from_uniform,
    size_factor,
)
from oaprobe.data.splits import assign_splits, check_leakage
from oaprobe.facts import KL_GRADES
from oaprobe.io import write_atomic

#: Correlation (latent Gaussian) between the severities of a subject's two knees.
SEVERITY_CORRELATION = 0.7
SIDE_CODE = {"R": 0, "L": 1}
FOLDERS = {"image": "images", "mask": "masks", "lesion": "lesions", "evidence": "evidence"}
STORE = "_volumes"
#: float images are stored (level 0): at level 1 a 48^3 image shrank 432 -> 382 KiB for 11 ms of a
#: knee's 35 ms render; masks and lesions compress 100x in under 1 ms
_GZIP_LEVEL = {"image": 0, "mask": 6, "lesion": 6, "evidence": 6}


def volume_key(cfg: CohortConfig) -> str:
    """Hash of what a knee's volume depends on: seed, grid, prior and the phantom version."""
    payload = {
        "seed": cfg.seed,
        "shape": list(cfg.shape),
        "spacing": list(cfg.spacing),
        "kl_prior": cfg.kl_prior,
        "phantom_version": PHANTOM_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]


def draw_knees(cfg: CohortConfig) -> pd.DataFrame:
    """The cohort's knee table (no volumes): ids, side, severity, clean and observed KL, OA.

    Deterministic in ``cfg``; subject ``i`` is drawn from its own stream, so the first ``n``
    subjects of a larger cohort with the same seed are the same people.
    """
    prior = kl_prior(cfg.kl_prior)
    rho = SEVERITY_CORRELATION
    rows = []
    for i in range(cfg.n_subjects):
        rng = np.random.default_rng([cfg.seed, 0, i])
        bilateral = rng.random() < cfg.bilateral_fraction
        lone_side = "R" if rng.random() < 0.5 else "L"
        z_r, e = rng.standard_normal(2)
        z = {"R": z_r, "L": rho * z_r + math.sqrt(1 - rho**2) * e}
        sides = ("L", "R") if bilateral else (lone_side,)
        for side in sides:
            severity = float(severity_from_uniform(norm.cdf(z[side]), prior))
            kl_clean = int(kl_from_severity(severity))
            noise_rng = np.random.default_rng([cfg.seed, 2, i, SIDE_CODE[side]])
            kl = int(observe_kl(np.array([kl_clean]), cfg.label_noise, noise_rng)[0])
            rows.append(
                dict(
                    case_id=f"S{i:04d}_{side}",
                    subject_id=f"S{i:04d}",
                    side=side,
                    subject_index=i,
                    severity=round(severity, 6),
                    kl_clean=kl_clean,
                    kl=kl,
                )
            )
    table = pd.DataFrame(rows)
    table["oa"] = oa_from_kl(table["kl"].to_numpy())
    return table


def _nifti_bytes(array: np.ndarray, spacing: tuple[float, float, float], level: int = 6) -> bytes:
    """Gzipped NIfTI bytes, reproducible (no time stamp), volume centred on the origin."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(array.shape, spacing)]
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    return gzip.compress(img.to_bytes(), compresslevel=level, mtime=0)


def _one_thread() -> None:
    """Worker initialiser: one BLAS/OpenMP thread per rendering process. With the libraries' own
    threads, 2 workers on 2 cores rendered slower than 1 process (7.5 s against 6.3 s for 120
    subjects); with one thread each, 1.75x faster."""
    threadpool_limits(limits=1)


def _render_case(job: tuple) -> str:
    """Render one knee into the store (worker function; skips files that exist)."""
    store, case_id, seed, index, side, severity, shape, spacing = job
    targets = {k: Path(store) / folder / f"{case_id}.nii.gz" for k, folder in FOLDERS.items()}
    if all(p.is_file() for p in targets.values()):
        return case_id
    rng = np.random.default_rng([seed, 1, index, SIDE_CODE[side]])
    knee = render_knee(sample_knee_params(rng, severity, side, size_factor(spacing)), shape, spacing)
    for key in FOLDERS:
        array = getattr(knee, key)
        write_atomic(targets[key], _nifti_bytes(array, spacing, _GZIP_LEVEL[key]))
    return case_id


def _link_or_copy(source: Path, target: Path) -> None:
    if target.is_file():
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


def _json_number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def build_cohort(
    cfg: CohortConfig, root: Path = DEFAULT_COHORTS, progress: bool = True, jobs: int = 1
) -> Path:
    """Build (or reuse) the cohort of ``cfg`` under ``root`` and return its manifest path.

    Args:
        cfg: the recipe; its :meth:`~oaprobe.config.CohortConfig.cohort_id` names the folder.
        root: folder holding all cohorts (and the shared volume store ``_volumes``).
        progress: show a tqdm bar while rendering.
        jobs: worker processes for rendering (1 = in this process).

    Returns:
        ``root / cfg.cohort_id() / "manifest.csv"``.
    """
    if jobs < 1:
        raise ValueError(f"build_cohort: jobs = {jobs}; expected an integer >= 1")
    root = Path(root)
    folder = root / cfg.cohort_id()
    manifest_path = folder / "manifest.csv"
    store = root / STORE / volume_key(cfg)
    for sub in FOLDERS.values():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (store / sub).mkdir(parents=True, exist_ok=True)

    _drop_stale_volumes(cfg, folder)
    knees = draw_knees(cfg)
    for key, sub in FOLDERS.items():
        knees[key] = [f"{sub}/{c}.nii.gz" for c in knees["case_id"]]
    knees["split"] = assign_splits(knees, cfg.split, cfg.seed, "kl_clean").to_numpy()
    check_leakage(knees)

    missing = [
        r for r in knees.itertuples(index=False) if not all((folder / getattr(r, k)).is_file() for k in FOLDERS)
    ]
    shape, spacing = tuple(cfg.shape), tuple(cfg.spacing)
    jobs_list = [(str(store), r.case_id, cfg.seed, r.subject_index, r.side, r.severity, shape, spacing) for r in missing]
    bar = tqdm(total=len(jobs_list), desc=f"cohort {cfg.cohort_id()}", unit="knee", disable=not progress)
    try:
        if jobs == 1 or len(jobs_list) < 2:
            done = map(_render_case, jobs_list)
        else:
            pool = ProcessPoolExecutor(max_workers=jobs, initializer=_one_thread)
            done = pool.map(_render_case, jobs_list, chunksize=4)
        for case_id in done:
            for sub in FOLDERS.values():
                _link_or_copy(store / sub / f"{case_id}.nii.gz", folder / sub / f"{case_id}.nii.gz")
            bar.update(1)
    finally:
        bar.close()
        if jobs > 1 and len(jobs_list) >= 2:
            pool.shutdown()

    columns = ["case_id", "subject_id", "side", "split", "image", "mask", "kl", "oa", "kl_clean", "lesion", "evidence", "severity"]
    table = knees[columns]
    _write_manifest_if_changed(table, manifest_path)
    _write_summary(cfg, table, folder / "cohort.json")
    return manifest_path


def _drop_stale_volumes(cfg: CohortConfig, folder: Path) -> None:
    """Delete a cohort's volume files if they were rendered by another phantom version."""
    summary = folder / "cohort.json"
    if not summary.is_file():
        return
    try:
        previous = json.loads(summary.read_text()).get("volume_key")
    except (OSError, ValueError):
        previous = None
    if previous != volume_key(cfg):
        for sub in FOLDERS.values():
            for file in (folder / sub).glob("*.nii.gz"):
                file.unlink()
        summary.unlink()


def _write_manifest_if_changed(table: pd.DataFrame, path: Path) -> None:
    """Write the manifest atomically unless an identical one is already there (keeps mtime)."""
    text = table.to_csv(index=False)
    if path.is_file() and path.read_text() == text:
        return
    write_manifest(table, path)


def _write_summary(cfg: CohortConfig, table: pd.DataFrame, path: Path) -> None:
    """cohort.json: the recipe, the label noise actually drawn, counts per grade and split."""
    clean, observed = table["kl_clean"].to_numpy(), table["kl"].to_numpy()
    if len(np.unique(np.concatenate([clean, observed]))) > 1:
        kappa = float(cohen_kappa_score(clean, observed))
    else:
        kappa = float("nan")
    summary = {
        "cohort_id": cfg.cohort_id(),
        "config": cfg.to_dict(),
        "phantom_version": PHANTOM_VERSION,
        "volume_key": volume_key(cfg),
        "n_subjects": int(table["subject_id"].nunique()),
        "n_knees": int(len(table)),
        "label_kappa": _json_number(kappa),
        "label_kappa_expected": _json_number(expected_kappa(cfg.label_noise, kl_prior(cfg.kl_prior))),
        "label_flip_rate": float(np.mean(clean != observed)),
        "kl_counts": {str(g): int((observed == g).sum()) for g in KL_GRADES},
        "kl_clean_counts": {str(g): int((clean == g).sum()) for g in KL_GRADES},
        "split_counts": {s: int((table["split"] == s).sum()) for s in ("train", "val", "test")},
    }
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    if path.is_file() and path.read_text() == text:
        return
    write_atomic(path, text.encode())
