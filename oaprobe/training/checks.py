"""Checks of a RunConfig against its backbone and manifest, made before any work or folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from oaprobe.config import RunConfig, check_input_shape
from oaprobe.data.manifest import read_manifest
from oaprobe.errors import ConfigError


def validate(cfg: RunConfig, check_volumes: bool = True) -> pd.DataFrame:
    """Check ``cfg`` against its backbone and manifest before any work; return the manifest table.

    ``check_volumes=False`` checks the table and that its files exist, not their headers and voxels:
    for callers that validated the manifest's volumes already (a sweep, once per manifest), since
    reading every mask again costs seconds per run.

    Raises:
        ConfigError: unknown backbone (listing valid names), an input shape the backbone cannot
            take, a batch size larger than the training split, or ``select`` needing a missing
            validation split.
        ManifestError: the manifest is invalid (message names the file and row).
    """
    if not isinstance(cfg, RunConfig):
        raise ConfigError(f"fit() needs a RunConfig, got {type(cfg).__name__}")
    check_input_shape(cfg.backbone, cfg.input_shape)
    table = read_manifest(cfg.manifest, check_volumes=check_volumes)
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
    return table


def check_folder(path: Path | str, name: str, holds: str) -> None:
    """A ConfigError naming ``path`` unless it is a folder or could be created as one.

    ``name`` is the parameter (``runs_root``), ``holds`` what the folder is for. Checked before
    any work, so a file given where a folder is expected is one line, not a traceback from
    ``mkdir`` halfway through.
    """
    path = Path(path)
    for where in (path, *path.parents):
        if where.exists():
            if not where.is_dir():
                what = "is a file" if where == path else f"lies under {str(where)!r}, a file"
                raise ConfigError(f"{name} {str(path)!r} {what}; expected a folder for {holds} (created when missing)")
            return
