"""The book's answer, generated from the runs: does dual supervision beat single-task training?

Two questions per backbone, each against the observed and (on the synthetic cohort) the clean
grade: the **coarse** one (OA ROC-AUC, dual vs single-OA) and the **fine** one (KL QWK, dual vs
single-KL). The verdict comes from the 95% t-interval of the per-seed differences; the levels
sit beside the cohort's ceilings so a reader sees how far each model is from what is possible.

Example:
    >>> verdict(0.01, 0.05), verdict(-0.02, 0.03), verdict(-0.05, -0.01), verdict(float("nan"), float("nan"))
    ('dual helps', 'no evidence either way', 'dual hurts', 'too few seeds for a verdict')
"""

from __future__ import annotations

import pandas as pd

from oaprobe.models.backbones import backbone_title
from oaprobe.report.sentences import signed
from oaprobe.report.study import Study

#: question -> (metric, single-task baseline, what it asks)
QUESTIONS: dict[str, tuple[str, str, str]] = {
    "coarse": ("oa_roc_auc", "single_oa", "the coarse label (OA yes/no, ROC-AUC)"),
    "fine": ("kl_qwk", "single_kl", "the fine label (KL grade, QWK)"),
}
TRUTHS = {"kl": "observed labels", "kl_clean": "clean grade"}


def verdict(ci_low: float, ci_high: float) -> str:
    """What a 95% interval of dual minus single says (higher is better for both metrics)."""
    if not (ci_low == ci_low and ci_high == ci_high):  # NaN: one seed, or no spread
        return "too few seeds for a verdict"
    if ci_low > 0:
        return "dual helps"
    if ci_high < 0:
        return "dual hurts"
    return "no evidence either way"


def answer_table(study: Study) -> pd.DataFrame:
    """One row per backbone x question x truth: mean dual and single levels over seeds, the mean
    per-seed difference with its 95% t-interval, the number of seeds, and the verdict."""
    metrics = [m for m, _, _ in QUESTIONS.values()]
    truths = [t for t in TRUTHS if t == "kl" or study.has_clean]
    rows = []
    for truth in truths:
        levels = study.point_metrics(truth=truth)
        tests = study.seed_level(truth=truth, metrics=metrics)
        for question, (metric, base, _) in QUESTIONS.items():
            for _, t in tests[tests["metric"] == metric].iterrows():
                lv = levels[(levels["backbone"] == t["backbone"]) & (levels["metric"] == metric)]
                rows.append({
                    "backbone": t["backbone"], "question": question, "truth": truth, "metric": metric,
                    "single": lv.loc[lv["mode"] == base, "value"].mean(), "dual": lv.loc[lv["mode"] == "dual", "value"].mean(),
                    "diff": t["mean"], "ci_low": t["ci_low"], "ci_high": t["ci_high"], "n_seeds": int(t["n_seeds"]),
                    "verdict": verdict(t["ci_low"], t["ci_high"]),
                })
    return pd.DataFrame(rows)


def describe_answer(row: pd.Series) -> str:
    """One sentence per row of :func:`answer_table`."""
    metric, base, what = QUESTIONS[row["question"]]
    interval = (f"95% CI {signed(row['ci_low'])} to {signed(row['ci_high'])}" if row["ci_low"] == row["ci_low"]
                else "no interval")
    return (
        f"{backbone_title(row['backbone'])}, {what} against the {TRUTHS[row['truth']]}: dual {row['dual']:.3f} vs "
        f"{base.replace('_', '-')} {row['single']:.3f}; mean difference over {row['n_seeds']} seed(s) "
        f"{signed(row['diff'])} ({interval}): **{row['verdict']}**."
    )


def levels_for_figure(study: Study, truth: str) -> pd.DataFrame:
    """Mean and sd over seeds of each question's metric per backbone and mode (figure input)."""
    pm = study.point_metrics(truth=truth)
    rows = []
    for question, (metric, base, _) in QUESTIONS.items():
        sel = pm[(pm["metric"] == metric) & pm["mode"].isin([base, "dual"])]
        for (bb, mode), g in sel.groupby(["backbone", "mode"], sort=False):
            rows.append({"question": question, "backbone": backbone_title(bb), "mode": mode,
                         "mean": g["value"].mean(), "sd": g["value"].std(ddof=1), "n_seeds": len(g)})
    return pd.DataFrame(rows)
