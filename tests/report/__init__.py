"""Tests of oaprobe.report; :func:`smoke_study_runs` trains the few real runs these tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oaprobe.config import RunConfig, get_preset
from oaprobe.sweep import run_missing, saliency_missing_runs, study_grid
from oaprobe.training.runs import run_dir

#: resnet3d x 3 modes x 2 seeds, 1 epoch; the saliency stage at the smoke preset's settings on every run.
SMOKE_STUDY = dict(backbones=["resnet3d"], seeds=[0, 1], epochs=1)


def smoke_study_runs(tmp_path_factory: pytest.TempPathFactory, manifest: Path, cache: Path,
                     **grid: Any) -> tuple[Path, list[RunConfig]]:
    """Train (once per test session: a shared runs root) the grid ``SMOKE_STUDY`` updated by ``grid``,
    and run the saliency stage on it."""
    root = tmp_path_factory.getbasetemp() / "report_runs"
    configs = study_grid(manifest, "smoke", **{**SMOKE_STUDY, **grid})
    run_missing(configs, root, jobs=1, cache_dir=cache, progress=False)
    folders = [run_dir(c, root) for c in configs]
    saliency_missing_runs(folders, get_preset("smoke").saliency, cache_dir=cache, progress=False)
    return root, configs
