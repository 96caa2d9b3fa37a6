"""oaprobe.estimate against the finished runs' own recorded seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from oaprobe.estimate import estimate_seconds
from oaprobe.training.runs import HISTORY, load_config
from tests.report import smoke_study_runs


def test_the_estimate_is_the_median_run_time_scaled_by_cost_and_workers(tmp_path_factory, smoke_manifest, volume_cache):
    root, grid = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and load_config(p).backbone == "resnet3d")
    seconds = [float(pd.read_csv(f / HISTORY)["seconds"].sum()) for f in folders]
    same_cost = [c for c in grid if c.input_shape == grid[0].input_shape and c.epochs == grid[0].epochs]
    one = estimate_seconds(same_cost[:1], root, jobs=1)
    assert np.isclose(one, np.median(seconds))  # every run there has the same cost
    assert np.isclose(estimate_seconds(same_cost[:2], root, jobs=2), one)  # two runs on two workers
    assert np.isclose(estimate_seconds([grid[0].replace(epochs=2 * grid[0].epochs)], root), 2 * one)
    assert estimate_seconds(grid[:1], tmp_path_factory.mktemp("nothing_here")) is None
    assert estimate_seconds([], root) == 0.0
