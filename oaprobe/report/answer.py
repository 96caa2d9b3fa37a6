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
from oaprobe.report.display import MODE_NAMES, readable_name
from oaprobe.report.sentences import signed
from oaprobe.report.study import Study, mean_sd

#: question -> (metric, single-task baseline, what it asks)
QUESTIONS: dict[str, tuple[str, str, str]] = {
    "coarse": ("oa_roc_auc", "single_oa", "the coarse label (OA yes/no, ROC-AUC)"),
    "fine": ("kl_qwk", "single_kl", "the fine label (KL grade, QWK)"),
}
TRUTHS = {"kl": "observed labels", "kl_clean": "clean grade"}
#: what :func:`verdict` can say, in the order the findings count them
VERDICTS = ("dual helps", "dual hurts", "no evidence either way", "too few seeds for a verdict")


def verdict(ci_low: float, ci_high: float) -> str:
    """What a 95% interval of dual minus single says (higher is better for both metrics)."""
    if not (ci_low == ci_low and ci_high == ci_high):  # NaN: one seed, or no spread
        return VERDICTS[3]
    if ci_low > 0:
        return VERDICTS[0]
    if ci_high < 0:
        return VERDICTS[1]
    return VERDICTS[2]


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


def describe_answer(row: pd.Series, bold: bool = True) -> str:
    """One sentence per row of :func:`answer_table` (``bold``: the verdict in Markdown bold; plain
    for an HTML fold, which shows Markdown as typed)."""
    metric, base, what = QUESTIONS[row["question"]]
    interval = (f"95% CI {signed(row['ci_low'])} to {signed(row['ci_high'])}" if row["ci_low"] == row["ci_low"]
                else "no interval")
    mark = "**" if bold else ""
    return (
        f"{backbone_title(row['backbone'])}, {what} against the {TRUTHS[row['truth']]}: dual {row['dual']:.3f} vs "
        f"{MODE_NAMES[base]} {row['single']:.3f}; mean difference over {row['n_seeds']} seed(s) "
        f"{signed(row['diff'])} ({interval}): {mark}{row['verdict']}{mark}."
    )


def answer_findings(answer: pd.DataFrame, truth: str) -> list[str]:
    """One bullet per question against ``truth``: how the backbones' verdicts fall, and each
    backbone's mean difference (the answer page's opening box; the per-backbone sentences fold)."""
    rows = answer[answer["truth"] == truth]
    out = []
    for question, (_, base, what) in QUESTIONS.items():
        q = rows[rows["question"] == question]
        if q.empty:
            continue
        counts = q["verdict"].value_counts()
        verdicts = ", ".join(f"{v}: {counts[v]}" for v in VERDICTS if v in counts)
        seeds = "/".join(str(n) for n in sorted(set(q["n_seeds"])))
        diffs = ", ".join(f"{backbone_title(b)} {signed(d)}" for b, d in zip(q["backbone"], q["diff"]))
        out.append(f"Dual vs {MODE_NAMES[base]} on {what} against the {TRUTHS[truth]}, over {len(q)} backbone(s) "
                   f"and {seeds} seed(s): {verdicts}; mean differences {diffs}.")
    return out


def describe_ceilings(levels: pd.DataFrame, ceilings: pd.DataFrame, truth: str) -> str | None:
    """The best dual level per question (from :func:`levels_for_figure`) beside the linear probe and
    the oracle against ``truth``: how far the models are from what the cohort allows."""
    dual = levels[levels["mode"] == "dual"]
    ceil = ceilings[ceilings["truth"] == truth].set_index("ceiling")
    parts = []
    for question, (metric, _, _) in QUESTIONS.items():
        q = dual[dual["question"] == question]
        if q.empty:
            continue
        best = q.loc[q["mean"].idxmax()]
        refs = [f"{name} {ceil.loc[key, metric]:.3f}" for key, name in (("linear_probe", "linear probe"), ("oracle", "oracle"))
                if key in ceil.index and metric in ceil.columns]
        parts.append(f"{readable_name(metric)} {best['mean']:.3f} ({best['backbone']})"
                     + (f" against {' and '.join(refs)}" if refs else ""))
    return f"Best dual model against the {TRUTHS[truth]}: " + "; ".join(parts) + "." if parts else None


def describe_best_mode(pm: pd.DataFrame, ceilings: pd.DataFrame, truth: str, metric: str = "kl_qwk") -> str | None:
    """Which mode reaches the highest mean ``metric`` over seeds (one backbone's rows of
    :meth:`Study.point_metrics` against ``truth``), beside the linear probe's level on the input volumes."""
    sel = pm[pm["metric"] == metric]
    if sel.empty:
        return None
    agg = sel.groupby("mode")["value"].agg(["mean", "std"])
    top = agg["mean"].idxmax()
    seeds = sel.loc[sel["mode"] == top, "seed"].nunique()
    text = (f"Best {readable_name(metric)} against the {TRUTHS[truth]}: {MODE_NAMES.get(top, top)} "
            f"{mean_sd(agg.loc[top, 'mean'], agg.loc[top, 'std'])} over {seeds} seed(s)")
    probe = ceilings[(ceilings["ceiling"] == "linear_probe") & (ceilings["truth"] == truth)]
    if len(probe) and metric in probe.columns:
        text += f"; the linear probe on the input volumes reaches {float(probe[metric].iloc[0]):.3f}"
    return text + "."


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
