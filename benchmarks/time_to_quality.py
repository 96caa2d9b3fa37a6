"""Time to quality: clean-grade QWK and OA AUC against training time, per backbone and recipe.

The MLPerf idea on this project's scale: train each (backbone, mode, seed) under two recipes,
today's preset recipe and the reference-style one it replaced (constant lr, final-epoch weights,
5 epochs), at several epoch budgets, and print quality (mean and sd over seeds, against the
clean grade) beside the seconds a run took, with the new/old ratios measured in the same run.

What decides the book's verdicts is the seed-to-seed sd of the *paired* difference (dual minus
single-KL of one seed): the second table prints it per recipe, with the seeds the decision rule
needs at that sd (:func:`oaprobe.analysis.decision.seeds_needed`, at the measured mean and at a
true difference of 0) and the training seconds those seeds cost, so a recipe that buys a lower
sd with more compute per run is compared in the unit that matters: seconds to a verdict.

    OMP_NUM_THREADS=1 python benchmarks/time_to_quality.py --preset default --backbones m3t \
        --modes single_kl,dual --seeds 0,1,2,3,4,5 --no-old --new ema_decay=0.9 --jobs 2

Runs land in ``--runs`` (default ``runs-ttq``) and are reused when asked again (the book's own
``runs`` folder works too: its finished runs are not retrained).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from oaprobe.analysis.convergence import run_diagnostics
from oaprobe.analysis.decision import DELTAS, seeds_needed
from oaprobe.config import get_preset
from oaprobe.sweep import preset_manifest, run_missing
from oaprobe.training.runs import load_run

#: the recipe of the default book before convergence work (issue 9): constant lr, last epoch kept
OLD_RECIPE = dict(epochs=5, lr=1e-3, schedule="constant", select="final", warmup_epochs=0, ema_decay=0.0)


def score(folder: Path) -> dict[str, float]:
    """Clean-grade test QWK and OA AUC of a finished run, and its training seconds."""
    run = load_run(folder)
    test = run.predictions[run.predictions["split"] == "test"]
    clean = test["kl_clean"].astype(int).to_numpy()
    row = {"seconds": float(run.history["seconds"].sum()),
           "oa_auc_clean": float(roc_auc_score(clean >= 2, test["p_oa"]))}
    flags = run_diagnostics(run.history, run.predictions)
    row.update(oa_acc=flags["test_oa_accuracy"], flagged=float(flags["flagged"]), kept_epoch=flags["kept_epoch"])
    if test["pred_kl"].notna().all():
        row["qwk_clean"] = float(cohen_kappa_score(clean, test["pred_kl"].astype(int), weights="quadratic"))
    return row


def paired_cost(table: pd.DataFrame, metric: str = "qwk_clean", base: str = "single_kl") -> pd.DataFrame:
    """Per backbone and recipe: the mean and sd over seeds of dual minus ``base`` in ``metric``, the seeds
    the decision rule needs (at the measured mean, and at 0: equivalence) and the training seconds of
    the runs those seeds take (two runs a seed, at the recipe's mean seconds per run)."""
    delta = DELTAS["kl_qwk" if metric.startswith("qwk") else "oa_roc_auc"]
    wide = table.pivot_table(index=["backbone", "recipe", "seed"], columns="mode", values=[metric, "seconds"])
    rows = []
    for (backbone, recipe), g in wide.groupby(level=[0, 1], sort=False):
        d = (g[(metric, "dual")] - g[(metric, base)]).dropna()
        sd, mean = float(d.std(ddof=1)), float(d.mean())
        per_seed = float(g[("seconds", "dual")].mean() + g[("seconds", base)].mean())
        need_mean, need_zero = seeds_needed(mean, sd, delta), seeds_needed(0.0, sd, delta)
        rows.append({"backbone": backbone, "recipe": recipe, "seeds": len(d), "diff_mean": mean, "diff_sd": sd,
                     "seeds_needed": need_mean, "seeds_if_0": need_zero, "seconds_per_seed": per_seed,
                     "seconds_to_verdict_if_0": per_seed * need_zero if need_zero else np.nan})
    return pd.DataFrame(rows)


def _fields(text: str) -> dict[str, object]:
    """``"lr=5e-4,input_shape=[20,20,20]"`` -> ``{"lr": 0.0005, "input_shape": [20, 20, 20]}`` (values
    parsed as JSON; only a comma followed by ``NAME=`` starts a new field, so lists keep theirs)."""
    import json
    import re

    return {k: json.loads(v) for k, v in (part.split("=", 1) for part in re.split(r",(?=\s*\w+=)", text))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--backbones", default=None, help="comma-separated (default: the preset's)")
    parser.add_argument("--modes", default="single_kl,dual")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", default=None, help="comma-separated epoch budgets of the new recipe (default: the preset's)")
    parser.add_argument("--new", action="append", default=[], metavar="FIELD=VALUE,...",
                        help="a variant of the new recipe (RunConfig fields as JSON values), e.g. ema_decay=0.99,lr=5e-4; repeatable")
    parser.add_argument("--no-old", action="store_true", help="skip the old recipe (no ratios printed)")
    parser.add_argument("--runs", type=Path, default=Path("runs-ttq"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/volumes"))
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at a time (single-threaded worker processes)")
    args = parser.parse_args()
    p = get_preset(args.preset)
    manifest = preset_manifest(args.preset, progress=False)
    backbones = args.backbones.split(",") if args.backbones else list(p.backbones)
    budgets = [int(e) for e in args.epochs.split(",")] if args.epochs else [p.run["epochs"]]
    plan = []
    for backbone in backbones:
        variants = [("", {})] + [(f"+{v}", _fields(v)) for v in args.new]
        recipes = [] if args.no_old else [("old", OLD_RECIPE)]
        recipes += [(f"new-{e}ep{tag}", {"epochs": e, **extra}) for e in budgets for tag, extra in variants]
        plan += [({"backbone": backbone, "recipe": name, "mode": mode, "seed": seed},
                  p.run_config(manifest, backbone=backbone, mode=mode, seed=seed, **recipe))
                 for name, recipe in recipes for mode in args.modes.split(",") for seed in (int(s) for s in args.seeds.split(","))]
    tic = time.perf_counter()
    folders = run_missing([cfg for _, cfg in plan], args.runs, jobs=args.jobs, cache_dir=args.cache, progress=False)
    print(f"trained what was missing in {time.perf_counter() - tic:.0f} s wall ({args.jobs} job(s))", flush=True)
    rows = [{**keys, **score(folder)} for (keys, _), folder in zip(plan, folders)]
    table = pd.DataFrame(rows)
    summary = table.groupby(["backbone", "recipe", "mode"], sort=False).agg(
        qwk_mean=("qwk_clean", "mean"), qwk_sd=("qwk_clean", "std"),
        auc_mean=("oa_auc_clean", "mean"), auc_sd=("oa_auc_clean", "std"), oa_acc=("oa_acc", "mean"),
        flagged=("flagged", "sum"), seconds=("seconds", "mean"))
    pd.set_option("display.width", 160)
    print(summary.round(3).to_string())
    print("\nPaired dual minus single-KL per seed (clean QWK): its seed sd and the seeds the decision rule needs\n"
          + paired_cost(table).round(4).to_string())
    if args.no_old:
        return
    old = summary.xs("old", level="recipe")
    for name in summary.index.get_level_values("recipe").unique():
        if name == "old":
            continue
        new = summary.xs(name, level="recipe")
        ratio = pd.DataFrame({"time_ratio": new["seconds"] / old["seconds"],
                              "qwk_gain": new["qwk_mean"] - old["qwk_mean"],
                              "qwk_sd_ratio": new["qwk_sd"] / old["qwk_sd"],
                              "auc_sd_ratio": new["auc_sd"] / old["auc_sd"]})
        print(f"\n{name} vs old recipe (same run):\n{ratio.round(3).to_string()}")
    if np.isfinite(table["seconds"]).all():
        print(f"\ntotal training seconds: {table['seconds'].sum():.0f}")


if __name__ == "__main__":
    main()
