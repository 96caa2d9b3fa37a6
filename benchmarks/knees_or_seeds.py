"""Would more test knees decide the study's questions for less than more seeds? (issue 32, item 4)

For each primary question of claims 1 and 2 (dual against a single-task baseline of the same seed,
per backbone), the seed-to-seed variance of the paired difference has a model part, which only
more seeds shrink, and a knee part, the finite test set's sampling noise, which more test knees
shrink. The knee part is estimated from split halves
(:func:`oaprobe.analysis.knee_sampling.split_half_knee_variance`): the test knees are cut at random
into two halves, the same cut in every run; each half's paired differences come from the book's
own code (``oaprobe.report.claims.metric_pairs`` / ``latent_pairs``, against the book's main
truth); ``--cuts`` cuts are averaged.

Printed per question: the knee share of the variance; what scoring every run on twice the test
knees is worth in seeds (:func:`oaprobe.analysis.knee_sampling.seed_equivalent_of_more_knees`);
and what each costs, from the run folders (``report.methods.run_costs``): twice the test knees
add their inference to every run (the final pass's seconds per knee x the test knees), the same
gain from seeds adds that many more runs. A ratio above 1: knees buy the gain for less.

Usage:
    python benchmarks/knees_or_seeds.py --runs runs --cuts 5
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pandas as pd

from oaprobe.analysis.knee_sampling import seed_equivalent_of_more_knees, split_half_knee_variance
from oaprobe.report import Study
from oaprobe.report.claims import latent_pairs, metric_pairs
from oaprobe.report.methods import run_costs

KEY = ["backbone", "metric", "baseline"]


def primary_pairs(study: Study, truth: str) -> pd.DataFrame:
    """Claims 1 and 2's primary per-seed pairs (OA ROC-AUC, KL QWK, latent order) against ``truth``."""
    latent = latent_pairs(study, truth)
    return pd.concat([metric_pairs(study, truth), latent[latent["metric"] == "latent_order"]], ignore_index=True)


def with_test_knees(study: Study, keep: set[str]) -> Study:
    """``study`` with every run's test knees cut to ``keep`` (train and validation knees stay)."""
    def rows(split: np.ndarray, case_id: np.ndarray) -> np.ndarray:
        return (split != "test") | np.isin(case_id.astype(str), list(keep))

    runs = []
    for r in study.runs:
        p = r.predictions
        e = r.embeddings
        kept = rows(np.asarray(e["split"]).astype(str), np.asarray(e["case_id"]))
        runs.append(dataclasses.replace(
            r, predictions=p[rows(p["split"].to_numpy().astype(str), p["case_id"].to_numpy())].reset_index(drop=True),
            embeddings={k: np.asarray(v)[kept] for k, v in e.items()}))
    return dataclasses.replace(study, runs=runs, _point_metrics={}, _ceilings={}, _saliency=None)


def knee_variance(study: Study, truth: str, cuts: int, seed: int = 0) -> pd.DataFrame:
    """Per question: the knee variance of the whole test set's paired difference, from ``cuts`` split halves."""
    test = study.table.loc[study.table["split"] == "test", "case_id"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    halves = []
    for _ in range(cuts):
        order = rng.permutation(test)
        a, b = (primary_pairs(with_test_knees(study, set(h)), truth) for h in (order[: len(order) // 2], order[len(order) // 2:]))
        halves.append(a.merge(b, on=[*KEY, "seed"], suffixes=("_a", "_b")))
    both = pd.concat(halves, ignore_index=True)
    return (both.groupby(KEY)[["diff_a", "diff_b"]]
            .apply(lambda g: split_half_knee_variance(g["diff_a"].to_numpy(), g["diff_b"].to_numpy()))
            .rename("knee_var").reset_index())


def knee_costs(runs_root: str, study: Study) -> pd.DataFrame:
    """Per backbone: a main-grid run's seconds and the seconds twice the test knees would add to it."""
    ids = {r.run_id for r in study.runs}
    costs = run_costs(runs_root)
    costs = costs[costs["folder"].isin(ids)]
    knees = len(study.table)
    test = int((study.table["split"] == "test").sum())
    table = costs.groupby("backbone")[["seconds", "final"]].mean()
    table["extra_s"] = table["final"] / knees * test  # the final pass predicts every knee of the cohort
    return table.reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="a built default book's runs folder")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--cuts", type=int, default=5, help="random split halves to average")
    args = parser.parse_args()
    study = Study.load(args.preset, args.runs)
    truth = study.main_truth
    full = primary_pairs(study, truth)
    total = full.groupby(KEY)["diff"].agg(total_var=lambda d: float(d.var(ddof=1)), seeds="size").reset_index()
    table = total.merge(knee_variance(study, truth, args.cuts), on=KEY).merge(knee_costs(args.runs, study), on="backbone")
    table["knee_share"] = (table["knee_var"] / table["total_var"]).clip(upper=1.0)
    table["seeds_worth"] = table["knee_share"].map(seed_equivalent_of_more_knees)
    table["knees_cost"] = table["extra_s"] / table["seconds"]  # per run, relative
    table["seeds_cost"] = table["seeds_worth"] - 1.0  # more runs, relative
    table["knees_cheaper_x"] = table["seeds_cost"] / table["knees_cost"]
    print(f"truth {truth}; {len(study.table[study.table['split'] == 'test'])} test knees; {args.cuts} split halves")
    print(table[[*KEY, "seeds", "knee_share", "seeds_worth", "knees_cost", "seeds_cost", "knees_cheaper_x"]]
          .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("seeds_worth: twice the test knees equal this many times today's seeds; knees_cost / seeds_cost: the extra"
          " compute of each route, relative to today's runs; knees_cheaper_x > 1: the knees buy it for less")


if __name__ == "__main__":
    main()
