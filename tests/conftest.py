"""Shared fixtures: one tiny synthetic cohort per test session, and RunConfigs on it.

The smoke cohort (24 subjects, 24^3 voxels) is built once per session with the smoke preset's
recipe; a session-wide volume cache lets every training test skip the NIfTI reads.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from oaprobe.config import RunConfig, get_preset


@pytest.fixture(autouse=True)
def _fixed_global_rng() -> None:
    """Every test starts from the same global RNG state, whatever ran before it (tests are
    shuffled by pytest-randomly): a test that draws from torch/numpy/random unseeded sees the
    same numbers alone and in the suite."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def smoke_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Manifest path of the smoke-preset synthetic cohort (built once per session)."""
    from oaprobe.data.cohort import build_cohort

    root = tmp_path_factory.mktemp("smoke_cohort")
    return Path(build_cohort(get_preset("smoke").cohort, root, progress=False))


@pytest.fixture(scope="session")
def volume_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A disk cache of resized volumes shared by the whole session."""
    return tmp_path_factory.mktemp("volume_cache")


@pytest.fixture()
def smoke_config(smoke_manifest: Path) -> Callable[..., RunConfig]:
    """Factory: a smoke-preset RunConfig (1 epoch) with fields overridden by kwargs."""

    def make(**overrides: Any) -> RunConfig:
        values = {
            "manifest": str(smoke_manifest),
            **get_preset("smoke").run,
            "epochs": 1,
            "warmup_epochs": 0,
        }
        values.update(overrides)
        return RunConfig.from_dict(values)

    return make
