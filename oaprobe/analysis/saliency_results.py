"""A finished saliency stage's results, as the report reads them: the folder of a run's results for
given settings, which runs lack them, and the one reader of that folder (torch-free, so the report
layer and the sweep's planning never load a model; :mod:`oaprobe.analysis.saliency` writes it).

Example:
    >>> from oaprobe.config import SaliencyConfig
    >>> saliency_dir("runs/abc", SaliencyConfig(knees=4)).name.startswith("saliency-")
    True
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.integrate import trapezoid

from oaprobe.config import SaliencyConfig
from oaprobe.training import runs

PREFIX = "saliency-"
SETTINGS, TABLE, MAPS = "settings.json", "saliency.csv", "saliency_maps.npz"
SANITY, DELETION, EVIDENCE = "sanity.csv", "deletion.csv", "evidence.csv"
_ID_TYPES = {"case_id": str, "subject_id": str}
#: the two removal orders of a deletion curve: most salient voxels first, or a seeded random order
ORDERS: tuple[str, ...] = ("salient", "random")
DELETION_AUC_COLUMNS: tuple[str, ...] = ("case_id", "target", "method", "auc_salient", "auc_random", "auc_gap")


def saliency_dir(run_folder: Path | str, settings: SaliencyConfig) -> Path:
    """The results' subfolder of a run for ``settings``: ``<run_folder>/saliency-<settings_id>``."""
    return Path(run_folder) / f"{PREFIX}{settings.settings_id()}"


def saliency_missing(run_folders: Iterable[Path | str], settings: SaliencyConfig) -> list[Path]:
    """The finished runs among ``run_folders`` whose results for ``settings`` are not done yet.

    Unfinished runs are left out: they are not results, so there is nothing to analyse.
    """
    return [Path(f) for f in run_folders if runs.is_done(f) and not runs.is_done(saliency_dir(f, settings))]


def deletion_auc(table: pd.DataFrame, flat_tol: float = 1e-6) -> pd.DataFrame:
    """Area under each deletion curve of ``table`` (``deletion.csv``), the score normalised to 1
    on the clean input (fraction 0) and 0 with every voxel removed (fraction 1).

    Both orders share these two inputs, hence one normalisation. Where the two scores differ by
    less than ``flat_tol`` the area is NaN. Columns: :data:`DELETION_AUC_COLUMNS`.
    """
    rows = []
    for (cid, target, method), g in table.groupby(["case_id", "target", "method"], sort=False):
        ends = g[g["order"] == "salient"].set_index("fraction")["logit"]
        if 0.0 not in ends.index or 1.0 not in ends.index:
            raise ValueError(f"deletion table: case_id {cid!r} ({target}, {method}) lacks fraction 0 or 1")
        clean, empty = float(ends.loc[0.0]), float(ends.loc[1.0])
        row: dict[str, Any] = {"case_id": cid, "target": target, "method": method}
        for order in ORDERS:
            curve = g[g["order"] == order].sort_values("fraction")
            y = (curve["logit"].to_numpy(float) - empty) / (clean - empty) if abs(clean - empty) > flat_tol else None
            row[f"auc_{order}"] = float("nan") if y is None else float(trapezoid(y, curve["fraction"].to_numpy(float)))
        row["auc_gap"] = row["auc_random"] - row["auc_salient"]
        rows.append(row)
    return pd.DataFrame(rows, columns=list(DELETION_AUC_COLUMNS))


def load_saliency(run_folder: Path | str, settings: SaliencyConfig) -> dict[str, Any] | None:
    """A run's finished results for ``settings``, or None when they are not done.

    Returns:
        ``{"settings": settings.json, "saliency", "sanity", "deletion", "deletion_auc":
        DataFrames, "maps": the arrays of saliency_maps.npz, "evidence": evidence.csv or None}``.
    """
    out = saliency_dir(run_folder, settings)
    if not runs.is_done(out):
        return None
    with np.load(out / MAPS, allow_pickle=False) as data:
        maps = {k: data[k] for k in data.files}
    deletion = pd.read_csv(out / DELETION, dtype=_ID_TYPES)
    return {
        "settings": json.loads((out / SETTINGS).read_text()),
        "saliency": pd.read_csv(out / TABLE, dtype=_ID_TYPES),
        "sanity": pd.read_csv(out / SANITY, dtype=_ID_TYPES),
        "deletion": deletion,
        "deletion_auc": deletion_auc(deletion),
        "maps": maps,
        "evidence": pd.read_csv(out / EVIDENCE, dtype=_ID_TYPES) if (out / EVIDENCE).is_file() else None,
    }
