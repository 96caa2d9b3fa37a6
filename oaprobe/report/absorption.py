"""Why dual's "degenerate" runs never predict an extreme grade: a failed run, or dual supervision
compressing the fine grades inside each coarse class?

A run is degenerate when a frequent KL grade is never predicted. In dual runs the missing grade was
an extreme one (KL 0 or KL 4) taken by its neighbour inside the same coarse class. If that is an
effect of dual supervision it shows in EVERY dual run, flagged or not, as a shift of
:func:`oaprobe.report.claims.extreme_absorption` (the degenerate runs are its tail), grows with the
OA-loss weight lambda, and appears on the latent axis as extreme grades lying closer to their
neighbour. This module gathers that evidence per run; the test itself is the rule's verdict on
extreme absorption, dual vs single-KL (claim 2's secondary questions).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from oaprobe.facts import backbone_title
from oaprobe.report.answer import seeds_words, verdict_list
from oaprobe.report.claims import extreme_absorption
from oaprobe.report.sentences import TRUTHS

#: latent columns of the extreme grades' separation from their neighbour (AUROC along the PCA axis)
_SEPARATION = {"kl0_vs_kl1_on_axis": "adj_auc_0_1", "kl3_vs_kl4_on_axis": "adj_auc_3_4"}


def absorption_runs(runs, convergence: pd.DataFrame, latent: pd.DataFrame | None, truth: str) -> pd.DataFrame:
    """One row per run with a KL head: backbone, mode, seed, oa_weight, run_id, ``extreme_absorption``,
    ``kl0_as_kl1`` and ``kl4_as_kl3`` (shares of those test knees), ``degenerate``, and where
    ``latent`` (PCA rows of :meth:`Study.latent`) is given the extreme grades' separation on the axis."""
    suffix = "_clean" if truth == "kl_clean" else ""
    axis = latent[latent["method"] == "pca"].set_index("run_id") if latent is not None and len(latent) else None
    degenerate = convergence.set_index("run_id")["degenerate"]
    rows = []
    for r in runs:
        p = r.predictions[r.predictions["split"] == "test"]
        if "pred_kl" not in p or not p["pred_kl"].notna().all() or truth not in p:
            continue
        true, pred = p[truth].to_numpy(int), p["pred_kl"].to_numpy(int)
        row = {"backbone": r.config.backbone, "mode": r.config.mode, "seed": r.config.seed,
               "oa_weight": r.config.oa_weight if r.config.mode == "dual" else 0.0, "run_id": r.run_id,
               "extreme_absorption": extreme_absorption(true, pred),
               "kl0_as_kl1": float(np.mean(pred[true == 0] == 1)) if np.any(true == 0) else np.nan,
               "kl4_as_kl3": float(np.mean(pred[true == 4] == 3)) if np.any(true == 4) else np.nan,
               "degenerate": bool(degenerate.get(r.run_id, False)), "label_smoothing": r.config.label_smoothing}
        if axis is not None and r.run_id in axis.index:
            row.update({k: float(axis.loc[r.run_id, c + suffix]) for k, c in _SEPARATION.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def absorption_summary(table: pd.DataFrame, by: tuple[str, ...] = ("backbone", "mode")) -> pd.DataFrame:
    """Per group: runs, degenerate runs, and the mean of every measured column over seeds."""
    if table.empty:
        return pd.DataFrame()
    measured = [c for c in ("extreme_absorption", "kl0_as_kl1", "kl4_as_kl3", *_SEPARATION) if c in table]
    g = table.groupby(list(by), sort=False)
    out = g[measured].mean()
    out.insert(0, "degenerate", g["degenerate"].sum().astype(int))
    out.insert(0, "runs", g.size())
    return out.reset_index()


def degenerate_vs_rest(table: pd.DataFrame) -> dict[str, float]:
    """Mean extreme absorption of dual's degenerate runs, of its other runs and of single-KL's: a
    degenerate run that is the tail of a shifted dual distribution sits above both others, and the
    other dual runs above single-KL."""
    dual, single = table[table["mode"] == "dual"], table[table["mode"] == "single_kl"]
    return {"dual_degenerate": float(dual.loc[dual["degenerate"], "extreme_absorption"].mean()),
            "dual_other": float(dual.loc[~dual["degenerate"], "extreme_absorption"].mean()),
            "single_kl": float(single["extreme_absorption"].mean()),
            "n_dual_degenerate": int(dual["degenerate"].sum()), "n_dual": len(dual)}


def _lambda_clause(by_lambda: pd.DataFrame | None) -> str:
    if by_lambda is None or by_lambda.empty:
        return ""
    parts = ", ".join(f"λ {r['oa_weight']:g} {r['extreme_absorption']:.2f} ({int(r['degenerate'])} of {int(r['runs'])} "
                      "degenerate)" for _, r in by_lambda.sort_values("oa_weight").iterrows())
    return f" Across the OA-loss weight on the first backbone (λ 0 is single-KL): {parts}."


def describe_absorption(table: pd.DataFrame, verdicts: pd.DataFrame, by_lambda: pd.DataFrame | None = None) -> str:
    """The evidence on dual's degenerate runs in a few sentences: absorption of the degenerate dual
    runs, the other dual runs and single-KL; the rule's verdict per backbone (dual vs single-KL; "hurts"
    means dual absorbs more); the trend over lambda; and what follows from the verdicts."""
    if table.empty:
        return "No run with a KL head: nothing to explain."
    split = degenerate_vs_rest(table)
    share = lambda x: f"{x:.2f}" if x == x else "none (no such runs)"  # noqa: E731
    text = (f"{split['n_dual_degenerate']} of {split['n_dual']} dual runs are degenerate. Share of KL 0 and KL 4 test "
            f"knees predicted as their neighbour: degenerate dual runs {share(split['dual_degenerate'])}, other dual runs "
            f"{share(split['dual_other'])}, single-KL {share(split['single_kl'])}.")
    rows = verdicts[(verdicts["metric"] == "extreme_absorption") & (verdicts["baseline"] == "single_kl")]
    if len(rows):

        truth = TRUTHS.get(str(rows["truth"].iloc[0]), "") if "truth" in rows else ""
        text += (f" Extreme-grade absorption, dual vs single-KL{', ' + truth if truth else ''}, {seeds_words(rows)}: "
                 f"{verdict_list(rows, bold=False)}.")
        more = rows["verdict"].eq("hurts")
        if more.all():
            text += (" Dual absorbs the extreme grades on every backbone: the degenerate runs are the tail of an effect "
                     "of dual supervision, not failed runs, so the rule measures them instead of setting them aside.")
        elif more.any():
            text += (" Dual absorbs more on " + ", ".join(backbone_title(b) for b in rows.loc[more, "backbone"])
                     + " only: there the degenerate runs are the tail of dual's effect.")
        else:
            text += " On no backbone does the rule find more absorption in dual than in single-KL."
    return text + _lambda_clause(by_lambda)


def absorption_by_lambda(table: pd.DataFrame) -> pd.DataFrame:
    """Absorption per OA-loss weight (λ 0: single-KL) over the runs without label smoothing."""
    plain = table[(table["label_smoothing"] == 0) & table["mode"].isin(["single_kl", "dual"])]
    return absorption_summary(plain, by=("oa_weight",))
