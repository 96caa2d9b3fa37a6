"""How long training the missing runs will take, from the finished runs' own timings on this machine.

Each finished run's ``history.csv`` records the seconds of every epoch. Dividing a run's total by
its :func:`oaprobe.sweep.cost_hint` (backbone cost x epochs x voxels) gives seconds per unit of
cost; the median over finished runs of the same backbone (else of any backbone) times the missing
runs' summed cost, over the workers, is the estimate. No finished run: no estimate (None), never
a guess from another machine.

Example:
    >>> describe_estimate(None, 1)
    'no finished run here to estimate the time from'
    >>> describe_estimate(5400.0, 2)
    'about 1.5 h with --jobs 2'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from oaprobe.config import RunConfig
from oaprobe.sweep import cost_hint
from oaprobe.training.runs import HISTORY, is_done, load_config

#: at most this many finished runs are read for the rate (they are small files, but a book has hundreds)
SAMPLE = 40


def _rates(runs_root: Path, backbone: str | None) -> list[float]:
    """Seconds per unit of cost of finished runs under ``runs_root`` (of ``backbone`` when given)."""
    rates = []
    folders = sorted(p for p in Path(runs_root).iterdir() if p.is_dir()) if Path(runs_root).is_dir() else []
    for folder in folders:
        if len(rates) >= SAMPLE:
            break
        if not is_done(folder):
            continue
        try:
            cfg = load_config(folder)
            seconds = float(pd.read_csv(folder / HISTORY)["seconds"].sum())
        except Exception:  # noqa: BLE001 (a damaged or older run folder just does not count)
            continue
        if (backbone is None or cfg.backbone == backbone) and seconds > 0:
            rates.append(seconds / cost_hint(cfg))
    return rates


def estimate_seconds(missing: Sequence[RunConfig], runs_root: str | Path, jobs: int = 1) -> float | None:
    """Wall seconds to train ``missing`` with ``jobs`` workers, from the finished runs in ``runs_root``;
    None when no run there is finished."""
    if not missing:
        return 0.0
    total = 0.0
    for backbone in dict.fromkeys(c.backbone for c in missing):
        rates = _rates(Path(runs_root), backbone) or _rates(Path(runs_root), None)
        if not rates:
            return None
        total += float(np.median(rates)) * sum(cost_hint(c) for c in missing if c.backbone == backbone)
    return total / max(1, min(jobs, len(missing)))


def suggested_jobs(n_runs: int) -> int:
    """Worker processes for ``n_runs``: one per CPU core (each worker uses one thread), at most one per run."""
    return max(1, min(n_runs, os.cpu_count() or 1))


def describe_estimate(seconds: float | None, jobs: int) -> str:
    """The estimate as a reader wants it: ``about 12 min with --jobs 2``."""
    if seconds is None:
        return "no finished run here to estimate the time from"
    if seconds < 90:
        amount = f"{seconds:.0f} s"
    elif seconds < 5400:
        amount = f"{seconds / 60:.0f} min"
    else:
        amount = f"{seconds / 3600:.1f} h"
    return f"about {amount} with --jobs {jobs}"
