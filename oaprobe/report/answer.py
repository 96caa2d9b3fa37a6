"""The book's answer, generated from the runs: does dual supervision beat single-task training?

Two primary questions per backbone, each against the clean grade (on the synthetic cohort; the
observed labels beside it): the **coarse** one (OA ROC-AUC, dual vs single-OA) and the **fine** one
(KL QWK, dual vs single-KL). Each is answered by the book's one decision rule
(:mod:`oaprobe.analysis.decision`) over the paired seeds: helps, hurts, equivalent or inconclusive,
with the number of seeds an inconclusive question would need, and with and without the seeds
whose runs carry a convergence flag.

Example:
    >>> rule_sentences()[0]
    'A comparison is **equivalent** when the 90% interval of the mean paired difference lies inside ±δ (two one-sided t-tests at 5%, TOST), checked first.'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from oaprobe.analysis.convergence import GRADE_SHARE, LOSS_RATIO
from oaprobe.analysis.decision import ALPHA, DELTAS, POWER
from oaprobe.analysis.paired import REFERENCE_BASELINE
from oaprobe.config import get_preset
from oaprobe.facts import backbone_title
from oaprobe.io import write_atomic
from oaprobe.report.claims import CLAIMS, family_size
from oaprobe.report.display import MODE_NAMES, readable_name
from oaprobe.report.sentences import TRUTHS, plural, rule_sentence, signed
from oaprobe.report.stated import mark, stat_key
from oaprobe.report.study import SEED_LEVEL_METRICS, Study, mean_sd

#: question -> (metric, single-task baseline, what it asks)
QUESTIONS: dict[str, tuple[str, str, str]] = {
    "coarse": ("oa_roc_auc", "single_oa", "the coarse label (OA yes/no, ROC-AUC)"),
    "fine": ("kl_qwk", "single_kl", "the fine label (KL grade, quadratic weighted kappa)"),
}


def secondary_metrics() -> tuple[str, ...]:
    """The seed-level metrics beside the primary questions' (every page compares them as one family)."""
    primary = {mt for mt, _, _ in QUESTIONS.values()}
    return tuple(mt for mt in SEED_LEVEL_METRICS if mt not in primary)


def main_family(metric: str, baseline: str, preset: str, n_backbones: int = 0) -> int | None:
    """Bonferroni's ``m`` of dual vs ``baseline`` in ``metric``, the same on every page that states it
    (one family definition per comparison): a primary question is tested alone
    (:func:`oaprobe.report.claims.family_size`); a secondary metric against its own single-task
    baseline belongs to the secondary family (its metrics x the preset's backbones). None: not one of
    the main grid's comparisons (a chapter's own family decides it)."""
    if (metric, baseline) in {(mt, b) for mt, b, _ in QUESTIONS.values()}:
        return family_size("metrics", "primary", 1)
    if metric in secondary_metrics() and baseline == REFERENCE_BASELINE["OA" if metric.startswith("oa_") else "KL"]:
        return len(secondary_metrics()) * max(len(get_preset(preset).backbones), n_backbones)
    return None


def main_rule_table(study: Study, truth: str, metrics: Sequence[str]) -> pd.DataFrame:
    """Dual vs its single-task baseline in ``metrics`` under the rule, each metric in its
    :func:`main_family`, with a ``truth`` column: the one source of these rows for every page."""
    frames = []
    for metric in metrics:
        base = REFERENCE_BASELINE["OA" if metric.startswith("oa_") else "KL"]
        m = main_family(metric, base, study.preset, len(study.backbones))
        frames.append(study.seed_level(truth=truth, metrics=[metric], m=m))
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True).assign(truth=truth) if frames else pd.DataFrame()


def secondary_table(study: Study, truth: str) -> pd.DataFrame:
    """Dual vs single on the :func:`secondary_metrics` under the rule, Bonferroni over the whole
    secondary family of the preset (its metrics x the preset's backbones), so a backbone's chapter
    and the results page give one comparison the same verdict."""
    return main_rule_table(study, truth, secondary_metrics())


def rule_sentences() -> list[str]:
    """The decision rule as the methods and answer pages declare it, from the constants that apply it."""
    pct = lambda a: f"{100 * a:g}%"  # noqa: E731
    deltas = "; ".join(f"{readable_name(m)} ±{DELTAS[m]:g}" for m, _, _ in QUESTIONS.values())
    return [
        f"A comparison is **equivalent** when the {pct(1 - 2 * ALPHA)} interval of the mean paired difference lies "
        f"inside ±δ (two one-sided t-tests at {pct(ALPHA)}, TOST), checked first.",
        f"Otherwise dual **helps** (or **hurts**) when the {pct(1 - ALPHA)} interval lies wholly on the better "
        f"(or worse) side of 0 (a paired t-test at {pct(ALPHA)}); else the comparison is **inconclusive**, and the "
        f"page says how many seeds would decide it with {pct(POWER)} probability at the measured spread.",
        f"The smallest effects of interest δ of the primary questions: {deltas} (their reasons are in "
        "`oaprobe.analysis.decision.DELTAS`: a smaller difference is one no test set of the reference's size could see).",
        "Each primary question (per backbone: coarse and fine, against the clean grade) is tested on its own at "
        f"{pct(ALPHA)}. Every other comparison belongs to one family, the same on every page that states it (the "
        "other metrics of dual vs single-task: their number × the backbones; a chapter's own comparisons: their number), "
        f"and is tested at {pct(ALPHA)} divided by its family's size (Bonferroni).",
        "Seeds are paired: dual and its single-task baseline of one seed share the encoder's initialisation and the "
        "batch order. A verdict stands only if it is the same with and without the seeds where either run carries a "
        "convergence flag (else it is inconclusive: one flagged run would decide it).",
    ]


def answer_table(study: Study, m: int | None = None) -> pd.DataFrame:
    """One row per backbone x question x truth: mean dual and single levels over seeds and the rule's
    columns (:func:`oaprobe.analysis.decision.decide_with_flags`), each question in its
    :func:`main_family` (``m``: another family size, for a test)."""
    metrics = [mt for mt, _, _ in QUESTIONS.values()]
    question_of = {mt: q for q, (mt, _, _) in QUESTIONS.items()}
    frames = []
    for truth in [t for t in TRUTHS if t == "kl" or study.has_clean]:
        tests = main_rule_table(study, truth, metrics) if m is None else study.seed_level(truth=truth, metrics=metrics, m=m)
        levels = study.paired_seeds(truth=truth, metrics=metrics).groupby(["backbone", "metric"])[["a", "b"]].mean()
        tests = tests.join(levels.rename(columns={"a": "dual", "b": "single"}), on=["backbone", "metric"])
        frames.append(tests.assign(truth=truth, question=tests["metric"].map(question_of)))
    out = pd.concat(frames, ignore_index=True)
    order = ["backbone", "question", "truth", "metric", "single", "dual", "n_seeds", "mean", "ci_low", "ci_high",
             "eq_low", "eq_high", "delta", "verdict", "verdict_all", "verdict_unflagged", "n_flagged", "mean_unflagged",
             "seeds_needed", "reason", "loo_stable", "sd", "p_diff", "p_equiv", "m", "alpha"]
    return out[order]


def level_text(backbone: str, mode: str, metric: str, truth: str, n: int, value: float) -> str:
    """A mode's mean level over ``n`` seeds ("dual 0.805"), marked as the quantity it is."""
    key = stat_key(backbone, mode, "", metric, truth, n)
    return f"{MODE_NAMES.get(mode, mode)} {value:.3f}" + mark(key, f"{value:.3f}")


def describe_answer(row: pd.Series, bold: bool = True) -> str:
    """One row of :func:`answer_table`: the verdict sentence (under 40 words), the two modes' mean
    levels over the same seeds, and what the flagged seeds and leaving one seed out do to it."""
    metric, base, _ = QUESTIONS[row["question"]]
    bb, truth, n = str(row["backbone"]), str(row["truth"]), int(row["n_seeds"])
    text = rule_sentence(row, backbone_title(bb), "dual", base, metric, truth, key_subject=bb, bold=bold)
    text += (f" Means over the same {'seed' if n == 1 else plural(n, 'seed')}: "
             f"{level_text(bb, 'dual', metric, truth, n, row['dual'])}, "
             f"{level_text(bb, base, metric, truth, n, row['single'])}.")
    if row["n_flagged"]:
        text += (f" {plural(row['n_flagged'], 'seed')} with a flagged run: {row['verdict_all']} with "
                 f"{'it' if row['n_flagged'] == 1 else 'them'}, {row['verdict_unflagged']} without.")
    if row["verdict"] != "inconclusive":
        text += " It stands without any one seed." if row["loo_stable"] else " Leaving out one seed would change it."
    return text


def verdict_list(rows: pd.DataFrame, who: str = "backbone", bold: bool = True) -> str:
    """The verdicts of one question's rows, each backbone (or ``who`` column) with its mean, marked:
    "ResNet3D **helps** (+0.012); nnMamba **inconclusive** (-0.003)"."""
    mark_ = "**" if bold else ""
    parts = []
    for _, r in rows.iterrows():
        n = int(r.get("n_seeds", r.get("n", 0)))
        subject = str(r["backbone"]) + (f" ({r['method']} maps)" if r.get("method") else "")
        key = stat_key(subject, "dual", str(r["baseline"]), str(r["metric"]), str(r.get("truth", "")), n)
        family = f", Bonferroni over {int(r['m'])}" if int(r.get("m", 1)) > 1 else ", tested alone"
        parts.append(f"{backbone_title(r['backbone'])} {mark_}{r['verdict']}{mark_} ({signed(r['mean'])})"
                     + mark(key + " | mean", signed(r["mean"])) + mark(key + " | verdict", f"{r['verdict']}{family}"))
    return "; ".join(parts)


def seeds_words(rows: pd.DataFrame) -> str:
    """"12 seeds", or "3–12 seeds" where the rows rest on different numbers of seeds."""
    n = rows["n_seeds"] if "n_seeds" in rows else rows["n"]
    lo, hi = int(n.min()), int(n.max())
    return plural(hi, "seed") if lo == hi else f"{lo}–{hi} seeds"


def answer_findings(answer: pd.DataFrame, truth: str) -> list[str]:
    """One bullet per question against ``truth``: each backbone's verdict and mean difference."""
    rows = answer[answer["truth"] == truth]
    out = []
    for question, (metric, base, _) in QUESTIONS.items():
        q = rows[rows["question"] == question].assign(baseline=base)
        if q.empty:
            continue
        out.append(f"The {question} label ({readable_name(metric)}), dual vs {MODE_NAMES[base]}, {TRUTHS[truth]}, {seeds_words(q)}: "
                   f"{verdict_list(q)}.")
    return out


def decided_count(answer: pd.DataFrame, truth: str) -> tuple[int, int]:
    """(decided, all) primary questions against ``truth``: decided = helps, hurts or equivalent."""
    rows = answer[answer["truth"] == truth]
    return int((rows["verdict"] != "inconclusive").sum()), len(rows)


def flag_rates(study: Study) -> pd.DataFrame:
    """Per mode: runs, runs with a convergence flag, their share, and each flag's count: a result about
    training stability (does dual destabilise training?), not a reason to drop runs."""
    conv = study.convergence()
    out = conv.groupby("mode", sort=False).agg(
        runs=("flagged", "size"), flagged=("flagged", "sum"), unstable=("unstable", "sum"),
        degenerate=("degenerate", "sum"), below_majority=("below_majority", "sum"))
    out["share"] = out["flagged"] / out["runs"]
    return out.reset_index()


def flag_definition() -> str:
    """When a run carries a convergence flag, from the thresholds that set it."""
    return (f"A run failed to train when the validation loss of its kept weights is above {LOSS_RATIO:g}x its "
            "best epoch's (diverged) or its OA accuracy is below the majority rate; a seed with such a run cannot "
            f"decide a verdict alone. A run that never predicts a grade holding at least {GRADE_SHARE:.0%} of the test "
            "knees is degenerate: an outcome the compared mode may cause, so it is measured, not set aside.")


def describe_flag_rates(rates: pd.DataFrame) -> str:
    """One sentence: how many runs of each mode carry a convergence flag."""
    failed = ", ".join(f"{MODE_NAMES.get(r['mode'], r['mode'])} {int(r['flagged'])} of {int(r['runs'])}"
                       for _, r in rates.iterrows())
    degenerate = ", ".join(f"{MODE_NAMES.get(r['mode'], r['mode'])} {int(r['degenerate'])}" for _, r in rates.iterrows())
    total = int(rates["flagged"].sum())
    lead = "No run failed to train" if total == 0 else f"{plural(total, 'run')} failed to train"
    return f"{lead} (diverged or below the OA majority rate): {failed}. Degenerate runs: {degenerate}."


def ceilings_text(has_clean: bool) -> str:
    """What the figure's lines are: the cohort's ceilings it has (the oracle and the noise ceiling need
    the phantom's planted truth, so a cohort without a clean grade shows the linear probe alone)."""
    probe = ("a **linear probe** on the input volumes: a model far below it has not learned what the volumes "
             "plainly hold")
    if not has_clean:
        return f"The line is what the cohort allows without a deep model, computed from the cohort alone: {probe}."
    return ("The lines are what the cohort allows, computed from the cohort alone: the **oracle** (a classifier on the "
            f"phantom's planted pathology), {probe}, and the **noise ceiling** (a perfect clean-grade predictor scored "
            "against the observed labels; against the clean grade it is 1).")


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
    key = stat_key(str(sel["backbone"].iloc[0]), str(top), "", metric, truth, seeds) if "backbone" in sel else ""
    text = (f"Best {readable_name(metric)} against the {TRUTHS[truth]}: {MODE_NAMES.get(top, top)} "
            f"{mean_sd(agg.loc[top, 'mean'], agg.loc[top, 'std'])} over {plural(seeds, 'seed')}"
            + (mark(key, f"{agg.loc[top, 'mean']:.3f}") if key else ""))
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


def differences_for_figure(study: Study, answer: pd.DataFrame, truth: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The answer figure's inputs against ``truth``: the per-seed paired differences (with their flag)
    and the rule's summary per backbone and question (mean, both intervals, delta, verdict)."""
    metrics = {mt: q for q, (mt, _, _) in QUESTIONS.items()}
    seeds = study.paired_seeds(truth=truth, metrics=list(metrics))
    seeds = seeds.assign(question=seeds["metric"].map(metrics), backbone=seeds["backbone"].map(backbone_title))
    summary = answer[answer["truth"] == truth].assign(backbone=lambda t: t["backbone"].map(backbone_title))
    return seeds, summary


# --------------------------------------------------------------------------- the three claims
def describe_verdict(row: pd.Series) -> str:
    """One row of :func:`oaprobe.report.claims.decide_claim` in one sentence of under 40 words."""
    bb = str(row["backbone"])
    subject = bb + (f" ({row['method']} maps)" if row.get("method") else "")
    who = backbone_title(bb) + (f" ({row['method']} maps)" if row.get("method") else "")
    text = rule_sentence(row, who, "dual", str(row["baseline"]), str(row["metric"]), str(row["truth"]), key_subject=subject)
    if row.get("same_under_perturbation") is False or row.get("same_under_perturbation") == 0:
        text += f" Under the host perturbation: {row['verdict_perturbed']}."
    return text


def _against(row: pd.Series) -> str:
    """", clean grade" / ", observed labels" for a verdict row scored against a truth ("" for claim 3's maps)."""
    truth = str(row.get("truth", "") or "")
    return f", {TRUTHS[truth]}" if truth in TRUTHS else ""


def describe_perturbation(verdicts: pd.DataFrame, note: str) -> str:
    """How many primary verdicts are the same when the main grid is retrained under the host
    perturbation, and which flip (or why there is no comparison)."""
    prim = verdicts[(verdicts["role"] == "primary") & verdicts["same_under_perturbation"].notna()]
    if prim.empty:
        return f"Host perturbation: not compared on this build ({note})."
    flips = prim[~prim["same_under_perturbation"].astype(bool)]
    missing = [b for b in dict.fromkeys(verdicts["backbone"]) if b not in set(prim["backbone"])]
    text = (f"Retrained under the host perturbation, {len(prim) - len(flips)} of {len(prim)} primary verdicts are "
            "the same" + (f" ({', '.join(backbone_title(b) for b in missing)} not retrained yet)" if missing else ""))
    if len(flips):
        text += ("; flipped: " + "; ".join(f"{backbone_title(r['backbone'])} {readable_name(r['metric'])} vs "
                                           f"{MODE_NAMES[r['baseline']]}{_against(r)} ({r['verdict']} → {r['verdict_perturbed']})"
                                           for _, r in flips.iterrows()))
    return text + "."


def question_name(metric: str, baseline: str) -> str:
    """A question's name for a reader: "the coarse label (OA AUC)" for a primary question of claim 1,
    else the metric's readable name."""
    for question, (mt, base, _) in QUESTIONS.items():
        if (mt, base) == (metric, baseline):
            return f"the {question} label ({readable_name(metric)})"
    return readable_name(metric)


def claim_findings(verdicts: pd.DataFrame) -> list[str]:
    """One bullet per claim and truth: how many primary questions are decided, then one sentence per
    question (metric, baseline, truth, seeds) with each backbone's verdict and mean difference."""
    out = []
    prim = verdicts[verdicts["role"] == "primary"]
    for (claim, truth), g in prim.groupby(["claim", "truth"], sort=False):
        decided = int((g["verdict"] != "inconclusive").sum())
        against = f" ({TRUTHS[truth]})" if truth in TRUTHS else ""
        parts = []
        for (metric, base), q in g.groupby(["metric", "baseline"], sort=False):
            parts.append(f"Dual vs {MODE_NAMES[base]} on {question_name(metric, base)}, {seeds_words(q)}: {verdict_list(q)}.")
        reasons = sorted({str(r) for r in g.get("reason", pd.Series(dtype=str)).fillna("") if r})
        why = f" No verdict on this test set: {'; '.join(reasons)}." if reasons else ""
        out.append(f"{CLAIMS[claim]}{against}: {decided} of {len(g)} decided.{why} " + " ".join(parts))
    return out


def claim_figure_inputs(pairs: pd.DataFrame, verdicts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """:func:`oaprobe.figures.seed_differences`' inputs for one claim's primary questions: per-seed
    differences, the rule's summary (its own, Bonferroni-wide intervals) and the panel titles."""
    prim = verdicts[verdicts["role"] == "primary"]
    key = lambda t: t["metric"] + " vs " + t["baseline"]  # noqa: E731
    asked = set(key(prim))
    seeds = pairs.assign(question=key(pairs)).loc[lambda t: t["question"].isin(asked)]
    order = {b: i for i, b in enumerate(dict.fromkeys(prim["backbone"]))}  # the verdicts' (the book's) order
    seeds = seeds.sort_values("backbone", key=lambda b: b.map(order), kind="stable")
    seeds = seeds.assign(backbone=seeds["backbone"].map(backbone_title))
    summary = prim.assign(question=key(prim), backbone=prim["backbone"].map(backbone_title),
                          ci_low=prim["test_low"], ci_high=prim["test_high"])
    panels = {q: f"{readable_name(m)} vs {MODE_NAMES[b]}" for q, m, b in
              dict.fromkeys(zip(summary["question"], summary["metric"], summary["baseline"]))}
    return seeds, summary, panels


def write_verdicts(verdicts: pd.DataFrame, folder: str) -> str:
    """Write ``verdicts.csv`` (every verdict, unrounded) into ``folder`` atomically; return the MyST
    download link to it (the page sits in the same folder), or "" without a folder."""
    if not folder:
        return ""
    write_atomic(Path(folder) / "verdicts.csv", verdicts.to_csv(index=False).encode())
    return "{download}`Every verdict as verdicts.csv <verdicts.csv>`"
