"""Convergence diagnostics of finished runs: which epoch was kept and whether the run is a result.

A model is a result only when it has converged. Per run this reads ``history.csv`` (validation
loss per epoch, the ``kept`` epoch) and the test predictions, and flags what makes a run
untrustworthy, so a bad run is visible in the book instead of averaged in:

- ``unstable``: the kept weights' validation loss is above ``loss_ratio`` x the run's best
  (the weights kept are not the ones that generalised best);
- ``below_majority``: test OA accuracy below the majority-class rate of the test split;
- ``degenerate``: a KL grade holding at least ``grade_share`` of the test knees is never predicted.

``flagged`` (a seed with such a run cannot decide a verdict alone) is set by the training failures
only (:data:`FAILURE_FLAGS`). ``degenerate`` is reported, not set aside: which grades a model
predicts is an outcome that the training mode under comparison may cause (dual supervision can
absorb an extreme grade into its neighbour inside the same coarse class), and setting runs aside
by an outcome of the treatment biases the comparison; the answer page measures it instead
(extreme-grade absorption, :mod:`oaprobe.report.claims`).

Example:
    >>> history = pd.DataFrame({"epoch": [1, 2, 3], "val_loss": [1.0, 0.8, 2.0], "kept": [0, 0, 1]})
    >>> history_diagnostics(history)["kept_over_best"]
    2.5
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from oaprobe.facts import KL_GRADES, MODE_NAMES, NEAR_BEST_LOSS, OA_THRESHOLD, backbone_title

#: a run whose kept validation loss exceeds this multiple of its best is flagged unstable (issue 9)
LOSS_RATIO = NEAR_BEST_LOSS
#: a never-predicted grade holding at least this share of the test knees makes a run degenerate
GRADE_SHARE = 0.10
#: the flags that make a run a training failure (they set ``flagged``)
FAILURE_FLAGS = ("unstable", "below_majority")
COLUMNS = ("kept_epoch", "epochs", "best_epoch", "best_val_loss", "kept_val_loss", "final_val_loss",
           "kept_over_best", "test_oa_accuracy", "majority_rate", "missing_grades",
           "unstable", "below_majority", "degenerate", "flagged")


def history_diagnostics(history: pd.DataFrame, loss_ratio: float = LOSS_RATIO) -> dict[str, float]:
    """Kept, best and final epochs of one run's history, with their validation losses."""
    loss = history["val_loss"].to_numpy(dtype=float)
    epochs = history["epoch"].to_numpy(dtype=int)
    kept_rows = np.flatnonzero(history.get("kept", pd.Series(0, index=history.index)).to_numpy() == 1)
    kept = int(kept_rows[-1]) if kept_rows.size else len(history) - 1  # older runs: the last epoch
    best = int(np.nanargmin(loss)) if np.isfinite(loss).any() else kept
    ratio = float(loss[kept] / loss[best]) if np.isfinite(loss[[kept, best]]).all() and loss[best] > 0 else np.nan
    return {"kept_epoch": int(epochs[kept]), "epochs": int(epochs[-1]), "best_epoch": int(epochs[best]),
            "best_val_loss": float(loss[best]), "kept_val_loss": float(loss[kept]),
            "final_val_loss": float(loss[-1]), "kept_over_best": ratio, "unstable": bool(ratio > loss_ratio)}


def prediction_diagnostics(test: pd.DataFrame, truth: str = "kl", grade_share: float = GRADE_SHARE) -> dict[str, object]:
    """OA accuracy against the majority rate, and the frequent grades never predicted, on test rows."""
    grades = test[truth].astype(int).to_numpy()
    oa = grades >= OA_THRESHOLD
    accuracy = float(((test["p_oa"].to_numpy() >= 0.5) == oa).mean())
    majority = float(max(oa.mean(), 1 - oa.mean()))
    missing: tuple[int, ...] = ()
    if test["pred_kl"].notna().all():
        predicted = set(test["pred_kl"].astype(int))
        missing = tuple(g for g in KL_GRADES if g not in predicted and (grades == g).mean() >= grade_share)
    return {"test_oa_accuracy": accuracy, "majority_rate": majority, "missing_grades": missing,
            "below_majority": accuracy < majority, "degenerate": bool(missing)}


def run_diagnostics(history: pd.DataFrame, predictions: pd.DataFrame, truth: str = "kl") -> dict[str, object]:
    """Every diagnostic of one run (see the module docstring); ``flagged`` if a failure flag is set."""
    row = {**history_diagnostics(history), **prediction_diagnostics(predictions[predictions["split"] == "test"], truth)}
    row["flagged"] = any(bool(row[f]) for f in FAILURE_FLAGS)
    return {k: row[k] for k in COLUMNS}


#: issue 9's targets for a build's models: seed spread per (backbone, mode), the margin of the KL
#: models over the linear probe and the best backbone's QWK (against the clean grade where known)
QWK_SD_MAX, AUC_SD_MAX, PROBE_MARGIN, BEST_QWK = 0.05, 0.02, 0.05, 0.85
TARGET_COLUMNS = ("target", "value", "limit", "met", "failing")


def _names(frame: pd.DataFrame, value: str | None = None) -> str:
    """``resnet3d single_oa seed 0, ...`` (or ``m3t dual 0.052, ...`` with a value column) for failing rows."""
    parts = []
    for _, r in frame.iterrows():
        named = {"backbone": backbone_title(str(r["backbone"])) if "backbone" in r else "",
                 "mode": MODE_NAMES.get(str(r["mode"]), str(r["mode"])) if "mode" in r else ""}
        label = " ".join(named[k] for k in ("backbone", "mode") if k in r)
        label += f" seed {r['seed']}" if "seed" in r and value is None else ""
        shown = "" if value is None else (f" {r[value]:.3f}" if pd.notna(r[value]) else " (fewer than 2 seeds)")
        parts.append(label + shown)
    return ", ".join(parts)


def seed_spread(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, sd and seed count of ``metric`` per (backbone, mode) from long-form point metrics."""
    m = metrics[metrics["metric"] == metric]
    return m.groupby(["backbone", "mode"], sort=False)["value"].agg(mean="mean", sd="std", n="count").reset_index()


def quality_targets(conv: pd.DataFrame, metrics: pd.DataFrame, probe_qwk: float) -> pd.DataFrame:
    """Which of the convergence targets a build's models meet, one row per target (:data:`TARGET_COLUMNS`):
    the measured value, the limit, ``met``, and the runs or (backbone, mode) cells that miss it.

    ``conv`` is one row per run (:func:`run_diagnostics` with backbone, mode, seed); ``metrics`` the
    runs' point metrics in long form (backbone, mode, seed, metric, value) against one truth, and
    ``probe_qwk`` the linear probe's QWK against the same truth. A spread needs two seeds or more.
    """
    def flag_row(target: str, column: str) -> dict:
        bad = conv[conv[column].astype(bool)]
        return {"target": target, "value": len(bad), "limit": "0", "met": bad.empty, "failing": _names(bad)}

    rows = [flag_row("runs below the OA majority rate", "below_majority"),
            flag_row(f"runs never predicting a grade that holds ≥ {GRADE_SHARE:.0%} of the test knees", "degenerate"),
            {"target": "kept validation loss over the run's best", "value": float(conv["kept_over_best"].max()),
             "limit": f"≤ {LOSS_RATIO}", "met": not conv["unstable"].astype(bool).any(),
             "failing": _names(conv[conv["unstable"].astype(bool)])}]
    for metric, name, limit in (("kl_qwk", "QWK", QWK_SD_MAX), ("oa_roc_auc", "OA AUC", AUC_SD_MAX)):
        cells = seed_spread(metrics, metric)
        bad = cells[~(cells["sd"] <= limit)]
        rows.append({"target": f"seed sd of the {name} per backbone and mode", "value": float(cells["sd"].max()),
                     "limit": f"≤ {limit}", "met": bool(len(cells)) and bad.empty, "failing": _names(bad, "sd")})
    kl = seed_spread(metrics[metrics["mode"] != "single_oa"], "kl_qwk")
    margin = kl.assign(margin=kl["mean"] - probe_qwk)
    bad = margin[~(margin["margin"] >= PROBE_MARGIN)]
    rows.append({"target": "mean QWK of every KL model over the linear probe's", "value": float(margin["margin"].min()),
                 "limit": f"≥ +{PROBE_MARGIN}", "met": bool(len(kl)) and bad.empty, "failing": _names(bad, "margin")})
    best = kl.sort_values("mean", ascending=False).head(1)
    met = bool(len(best)) and float(best["mean"].iloc[0]) >= BEST_QWK
    rows.append({"target": "mean QWK of the best backbone and mode", "value": float(best["mean"].max()),
                 "limit": f"≥ {BEST_QWK}", "met": met, "failing": "" if met else _names(best, "mean")})
    table = pd.DataFrame(rows, columns=list(TARGET_COLUMNS))
    table["value"] = pd.Series([r["value"] for r in rows], dtype=object)  # counts stay integers
    return table


def time_to_quality(history: pd.DataFrame, metrics: tuple[str, ...] = ("val_kl_qwk", "val_oa_auc")) -> pd.DataFrame:
    """Validation quality against training time: per (backbone, mode, epoch), the mean cumulative
    seconds and the mean, sd and count over seeds of each metric (long format, one row per metric).

    ``history`` is :meth:`Study.history`'s table (one row per run and epoch, with ``seconds`` the
    epoch's wall time). The curve shows what more epochs would buy and what each backbone costs.
    """
    h = history.sort_values(["run_id", "epoch"], kind="stable").copy()
    h["elapsed"] = h.groupby("run_id")["seconds"].cumsum()
    keys = ["backbone", "mode", "epoch"]
    present = [m for m in metrics if m in h.columns]
    long = h.melt(id_vars=[*keys, "elapsed"], value_vars=present, var_name="metric", value_name="value")
    out = long.groupby([*keys, "metric"], sort=False).agg(
        seconds=("elapsed", "mean"), mean=("value", "mean"), sd=("value", "std"), n=("value", "count")).reset_index()
    return out.sort_values(["backbone", "mode", "metric", "epoch"], kind="stable").reset_index(drop=True)
