"""Fixtures writing tiny NIfTI knees and manifests into ``tmp_path`` (no phantom needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest


def planted_mask(shape: tuple[int, int, int]) -> np.ndarray:
    """A label map with every OAI-ZIB label 0-4 present: slabs along H (femur, cartilage, tibia)."""
    mask = np.zeros(shape, dtype=np.uint8)
    h = shape[1]
    bounds = np.linspace(0, h, 6).round().astype(int)
    for label, (lo, hi) in zip((1, 2, 4, 3), zip(bounds[1:-1], bounds[2:])):
        mask[:, lo:hi, :] = label
    return mask


def write_nifti(path: Path, array: np.ndarray, spacing: float = 1.0, affine: np.ndarray | None = None) -> Path:
    """Write ``array`` (D, H, W) with a diagonal affine (or ``affine``), so the stored axes are the (D, H, W) axes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([spacing, spacing, spacing, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


@pytest.fixture
def make_knee(tmp_path: Path) -> Callable[..., tuple[str, str]]:
    """Factory: write ``<name>.nii.gz`` (float32 image) and ``<name>_mask.nii.gz`` (uint8 labels).

    Returns the two file names relative to ``tmp_path``.
    """

    def _make(
        name: str,
        shape: tuple[int, int, int] = (8, 8, 8),
        seed: int = 0,
        image: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        folder: Path | None = None,
    ) -> tuple[str, str]:
        root = folder or tmp_path
        rng = np.random.default_rng(seed)
        img = image if image is not None else (100 + 20 * rng.standard_normal(shape)).astype(np.float32)
        msk = mask if mask is not None else planted_mask(tuple(img.shape))
        write_nifti(root / f"{name}.nii.gz", img)
        write_nifti(root / f"{name}_mask.nii.gz", msk)
        return f"{name}.nii.gz", f"{name}_mask.nii.gz"

    return _make


@pytest.fixture
def make_manifest(tmp_path: Path, make_knee) -> Callable[..., Path]:
    """Factory: ``n`` knees + ``manifest.csv`` in ``tmp_path``; ``edits`` override cells per row.

    Defaults: case ``k<i>``, subject ``s<i>``, splits cycle train/train/val/test, ``kl = i % 5``,
    ``oa = kl >= 2``, ``kl_clean = kl``.
    """

    def _make(
        n: int = 4,
        shape: tuple[int, int, int] = (8, 8, 8),
        edits: dict[int, dict] | None = None,
        drop: tuple[str, ...] = (),
        name: str = "manifest.csv",
    ) -> Path:
        rows = []
        for i in range(n):
            image, mask = make_knee(f"k{i}", shape=shape, seed=i)
            kl = i % 5
            rows.append(
                dict(
                    case_id=f"k{i}",
                    subject_id=f"s{i}",
                    side="LR"[i % 2],
                    split=("train", "train", "val", "test")[i % 4],
                    image=image,
                    mask=mask,
                    kl=kl,
                    oa=int(kl >= 2),
                    kl_clean=kl,
                )
            )
        for i, changes in (edits or {}).items():
            rows[i].update(changes)
        table = pd.DataFrame(rows).drop(columns=list(drop))
        path = tmp_path / name
        table.to_csv(path, index=False)
        return path

    return _make
