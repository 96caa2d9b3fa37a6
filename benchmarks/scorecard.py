"""Scorecard of a built book: what issue 9's closing notes report, printed from the run folders.

Per (backbone, mode) of the main grid: mean +- sd over seeds of the test QWK and OA AUC against the
book's truth (the clean grade on a synthetic cohort); the three ceilings; the convergence targets
(:meth:`oaprobe.report.Study.quality_targets`); and the flagged runs of the main grid and of the
label-noise chapter. It reads finished runs only and never trains.

    python benchmarks/scorecard.py --preset default --runs runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from oaprobe.analysis.convergence import seed_spread
from oaprobe.config import DEFAULT_COHORTS
from oaprobe.report import NoiseStudy, Study


def cell_table(study: Study) -> pd.DataFrame:
    """Mean, sd and seed count of QWK and OA AUC per (backbone, mode), against the book's truth."""
    metrics = study.point_metrics(truth=study.main_truth)
    cells = [seed_spread(metrics, m).rename(columns=lambda c, m=m: c if c in ("backbone", "mode") else f"{m}_{c}")
             for m in ("kl_qwk", "oa_roc_auc")]
    return cells[1].merge(cells[0], on=["backbone", "mode"], how="left")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--cohorts", type=Path, default=DEFAULT_COHORTS)
    args = parser.parse_args()
    study = Study.load(args.preset, runs_root=args.runs, cohorts_root=args.cohorts)
    pd.set_option("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 80)
    print(f"main grid, truth {study.main_truth}, test split, seeds {study.seeds}:")
    print(cell_table(study).round(4).to_string(index=False))
    print("\nceilings:")
    print(study.ceilings().round(4).to_string(index=False))
    print("\nconvergence targets:")
    print(study.quality_targets().to_string(index=False))
    grids = [study.convergence().assign(grid="main")]
    if study.has_clean:
        grids.append(NoiseStudy.load(args.preset, runs_root=args.runs, cohorts_root=args.cohorts).convergence()
                     .assign(grid="label noise"))
    conv = pd.concat(grids, ignore_index=True)
    flagged = conv[conv["flagged"].astype(bool)]
    print(f"\nflagged runs ({len(flagged)}):")
    print(flagged.to_string(index=False) if len(flagged) else "none")


if __name__ == "__main__":
    main()
