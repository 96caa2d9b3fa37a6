"""Tests of oaprobe.report; :func:`smoke_study_runs` trains the few real runs these tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oaprobe.config import RunConfig
from oaprobe.sweep import run_missing, study_grid

#: resnet3d x 3 modes x 2 seeds, 1 epoch, saliency on 1 test knee (2 SmoothGrad samples).
SMOKE_STUDY = dict(backbones=["resnet3d"], seeds=[0, 1], epochs=1, saliency_knees=1, saliency_samples=2)


def smoke_study_runs(tmp_path_factory: pytest.TempPathFactory, manifest: Path, cache: Path,
                     **grid: Any) -> tuple[Path, list[RunConfig]]:
    """Train (once per test session: a shared runs root) the grid ``SMOKE_STUDY`` updated by ``grid``."""
    root = tmp_path_factory.getbasetemp() / "report_runs"
    configs = study_grid(manifest, "smoke", **{**SMOKE_STUDY, **grid})
    run_missing(configs, root, jobs=1, cache_dir=cache, progress=False)
    return root, configs
