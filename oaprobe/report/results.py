"""The results chapter's tables: per-run metrics with their intervals, the paired family laid out
like the reference study's table, and the KL confusion pooled over seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from oaprobe.facts import ALL_MODES, KL_GRADES
from oaprobe.report.display import signed
from oaprobe.report.study import Study


def metric_pivot(metrics: pd.DataFrame) -> pd.DataFrame:
    """``estimate [ci_low, ci_high]`` strings, rows (backbone, mode, seed), one column per metric."""
    t = metrics.assign(value=[f"{e:.3f} [{lo:.3f}, {hi:.3f}]" for e, lo, hi in
                              zip(metrics["estimate"], metrics["ci_low"], metrics["ci_high"])])
    return t.pivot_table(index=["backbone", "mode", "seed"], columns="metric", values="value", aggfunc="first")


def family_table(family: pd.DataFrame) -> pd.DataFrame:
    """A paired family laid out like the reference study's table."""
    t = pd.DataFrame({
        "seed": family["seed"],
        "backbone": family["backbone"],
        "comparison": family["mode_a"] + " vs " + family["mode_b"],
        "metric": family["reference_name"],
        "test": family["test"],
        "dual": family["estimate_a"],
        "single": family["estimate_b"],
        "diff": family["diff"],
        "95% CI": [f"[{signed(lo)}, {signed(hi)}]" for lo, hi in zip(family["ci_low"], family["ci_high"])],
        "p": family["p"],
        "q (BH)": family["q_bh"],
        "q < 0.05": family["significant"].map({True: "yes", False: ""}),
    })
    return t.reset_index(drop=True)


def kl_confusion(study: Study, truth: str = "kl_clean", split: str = "test") -> pd.DataFrame:
    """Predicted vs ``truth`` KL grade per backbone and mode, pooled over seeds (each cell's counts
    summed over its runs), for the runs with a KL head (``pred_kl`` present; single-OA has none).

    One row per backbone, mode, true grade and predicted grade: ``count``, ``share`` (of the
    knees of that true grade in that backbone and mode, 0 for an empty row) and ``n_runs``.
    """
    cells: dict[tuple[str, str], list[np.ndarray]] = {}
    for r in study.runs:
        p = r.predictions[r.predictions["split"] == split]
        if truth not in p:
            raise ValueError(f"kl_confusion(truth={truth!r}): run {r.run_id}'s predictions have no {truth!r} "
                             "column (the clean grade exists on synthetic cohorts only); use truth='kl'")
        p = p.dropna(subset=["pred_kl", truth])
        if len(p):
            m = confusion_matrix(p[truth].astype(int), p["pred_kl"].astype(int), labels=list(KL_GRADES))
            cells.setdefault((r.config.backbone, r.config.mode), []).append(m)
    rows = []
    order = [(b, m) for b in study.backbones for m in ALL_MODES if (b, m) in cells]
    for bb, mode in order:
        total = np.sum(cells[(bb, mode)], axis=0)
        share = total / np.maximum(total.sum(axis=1, keepdims=True), 1)
        rows += [{"backbone": bb, "mode": mode, "truth": t, "predicted": q, "count": int(total[t, q]),
                  "share": float(share[t, q]), "n_runs": len(cells[(bb, mode)])}
                 for t in KL_GRADES for q in KL_GRADES]
    return pd.DataFrame(rows, columns=["backbone", "mode", "truth", "predicted", "count", "share", "n_runs"])
