"""Checks of a RunConfig against its backbone and manifest, made before any work or folder."""

from __future__ import annotations

import pandas as pd

from oaprobe.config import ConfigError, RunConfig


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
    from oaprobe.data.manifest import read_manifest
    from oaprobe.models.backbones import check_input_shape

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
