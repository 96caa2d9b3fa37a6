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

from pathlib import Path

import pandas as pd

from oaprobe.analysis.decision import ALPHA, DELTAS, POWER
from oaprobe.io import write_atomic
from oaprobe.facts import backbone_title
from oaprobe.report.claims import CLAIMS
from oaprobe.report.display import MODE_NAMES, readable_name
from oaprobe.report.sentences import needed_clause, plural, signed
from oaprobe.report.study import Study, mean_sd
from oaprobe.report.study import SEED_LEVEL_METRICS
from oaprobe.config import get_preset
from oaprobe.analysis.convergence import GRADE_SHARE, LOSS_RATIO

#: question -> (metric, single-task baseline, what it asks)
QUESTIONS: dict[str, tuple[str, str, str]] = {
    "coarse": ("oa_roc_auc", "single_oa", "the coarse label (OA yes/no, ROC-AUC)"),
    "fine": ("kl_qwk", "single_kl", "the fine label (KL grade, quadratic weighted kappa)"),
}
TRUTHS = {"kl_clean": "clean grade", "kl": "observed labels"}


def secondary_metrics() -> tuple[str, ...]:
    """The seed-level metrics beside the primary questions' (every page compares them as one family)."""
    primary = {mt for mt, _, _ in QUESTIONS.values()}
    return tuple(mt for mt in SEED_LEVEL_METRICS if mt not in primary)


def secondary_table(study: Study, truth: str) -> pd.DataFrame:
    """Dual vs single on the :func:`secondary_metrics` under the rule, Bonferroni over the whole
    secondary family of the preset (its metrics x the preset's backbones), so a backbone's chapter
    and the results page give one comparison the same verdict."""
    family = len(secondary_metrics()) * max(len(get_preset(study.preset).backbones), len(study.backbones))
    return study.seed_level(truth=truth, metrics=secondary_metrics(), m=family)


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
        f"{pct(ALPHA)}; a chapter's secondary comparisons divide {pct(ALPHA)} by their number (Bonferroni).",
        "Seeds are paired: dual and its single-task baseline of one seed share the encoder's initialisation and the "
        "batch order. A verdict stands only if it is the same with and without the seeds where either run carries a "
        "convergence flag (else it is inconclusive: one flagged run would decide it).",
    ]


def answer_table(study: Study, m: int = 1) -> pd.DataFrame:
    """One row per backbone x question x truth: mean dual and single levels over seeds and the rule's
    columns (:func:`oaprobe.analysis.decision.decide_with_flags`) in a family of ``m``."""
    metrics = [mt for mt, _, _ in QUESTIONS.values()]
    question_of = {mt: q for q, (mt, _, _) in QUESTIONS.items()}
    frames = []
    for truth in [t for t in TRUTHS if t == "kl" or study.has_clean]:
        tests = study.seed_level(truth=truth, metrics=metrics, m=m)
        levels = study.paired_seeds(truth=truth, metrics=metrics).groupby(["backbone", "metric"])[["a", "b"]].mean()
        tests = tests.join(levels.rename(columns={"a": "dual", "b": "single"}), on=["backbone", "metric"])
        frames.append(tests.assign(truth=truth, question=tests["metric"].map(question_of)))
    out = pd.concat(frames, ignore_index=True)
    order = ["backbone", "question", "truth", "metric", "single", "dual", "n_seeds", "mean", "ci_low", "ci_high",
             "eq_low", "eq_high", "delta", "verdict", "verdict_all", "verdict_unflagged", "n_flagged", "mean_unflagged",
             "seeds_needed", "reason", "loo_stable", "sd", "p_diff", "p_equiv", "m"]
    return out[order]


def describe_answer(row: pd.Series, bold: bool = True) -> str:
    """One sentence per row of :func:`answer_table` (``bold``: the verdict in Markdown bold)."""
    _, base, what = QUESTIONS[row["question"]]
    mark = "**" if bold else ""
    if row["ci_low"] == row["ci_low"]:
        interval = (f"90% CI {signed(row['eq_low'])} to {signed(row['eq_high'])}, "
                    f"95% CI {signed(row['ci_low'])} to {signed(row['ci_high'])}")
    else:
        interval = "no interval"
    flagged = ""
    if row["n_flagged"]:
        flagged = (f"; {plural(row['n_flagged'], 'seed')} with a flagged run: {row['verdict_all']} with "
                   f"{'it' if row['n_flagged'] == 1 else 'them'}, {row['verdict_unflagged']} without")
    robust = ""
    if row["verdict"] != "inconclusive":
        robust = ("; it stands without any one seed" if row["loo_stable"]
                  else "; leaving out one of the seeds would change it")
    return (
        f"{backbone_title(row['backbone'])}, {what} against the {TRUTHS[row['truth']]}: dual {row['dual']:.3f} vs "
        f"{MODE_NAMES[base]} {row['single']:.3f}; mean paired difference over {plural(row['n_seeds'], 'seed')} "
        f"{signed(row['mean'])} ({interval}; δ = ±{row['delta']:g}): {mark}{row['verdict']}{mark}"
        f"{flagged}{robust}{needed_clause(row)}."
    )


def answer_findings(answer: pd.DataFrame, truth: str) -> list[str]:
    """One bullet per question against ``truth``: each backbone's verdict and mean difference."""
    rows = answer[answer["truth"] == truth]
    out = []
    for question, (_, base, what) in QUESTIONS.items():
        q = rows[rows["question"] == question]
        if q.empty:
            continue
        parts = [f"{backbone_title(r['backbone'])} **{r['verdict']}** ({signed(r['mean'])} over "
                 f"{plural(r['n_seeds'], 'seed')}{needed_clause(r).replace('; about', ', about')})" for _, r in q.iterrows()]
        out.append(f"Dual vs {MODE_NAMES[base]} on {what}, against the {TRUTHS[truth]}: " + "; ".join(parts) + ".")
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
    text = (f"Best {readable_name(metric)} against the {TRUTHS[truth]}: {MODE_NAMES.get(top, top)} "
            f"{mean_sd(agg.loc[top, 'mean'], agg.loc[top, 'std'])} over {plural(seeds, 'seed')}")
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
def _verdict_words(row: pd.Series) -> str:
    """The verdict, saying when "equivalent" rests on a real difference smaller than delta."""
    verdict = str(row["verdict"])
    if verdict == "equivalent" and (row["test_low"] > 0 or row["test_high"] < 0):
        return "equivalent (a real difference, smaller than δ)"
    needed = row.get("seeds_needed")
    if verdict == "inconclusive" and not row.get("reason") and needed == needed and needed is not None:
        return f"inconclusive (about {int(needed)} seeds would decide it)"
    return verdict


def describe_verdict(row: pd.Series) -> str:
    """One row of :func:`oaprobe.report.claims.decide_claim` in one sentence of under 40 words."""
    truth = f", {TRUTHS[row['truth']]}" if row["truth"] in TRUTHS else ""
    flip = ""
    if row.get("same_under_perturbation") is False or row.get("same_under_perturbation") == 0:
        flip = f" Under the host perturbation: {row['verdict_perturbed']}."
    return (f"{backbone_title(row['backbone'])}, {readable_name(row['metric'])} vs {MODE_NAMES[row['baseline']]}"
            f"{truth}, {plural(row['n'], 'seed')}: {signed(row['mean'])} (90% CI {signed(row['ci90_low'])} to "
            f"{signed(row['ci90_high'])}; δ ±{row['delta']:g}): {_verdict_words(row)}.{flip}")


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
                                           f"{MODE_NAMES[r['baseline']]} ({r['verdict']} → {r['verdict_perturbed']})"
                                           for _, r in flips.iterrows()))
    return text + "."


def claim_findings(verdicts: pd.DataFrame) -> list[str]:
    """One bullet per claim and truth: how many primary questions are decided, and each verdict."""
    out = []
    prim = verdicts[verdicts["role"] == "primary"]
    for (claim, truth), g in prim.groupby(["claim", "truth"], sort=False):
        decided = int((g["verdict"] != "inconclusive").sum())
        parts = "; ".join(f"{backbone_title(r['backbone'])} vs {MODE_NAMES[r['baseline']]} **{r['verdict']}** "
                          f"({signed(r['mean'])})" for _, r in g.iterrows())
        against = f" against the {TRUTHS[truth]}" if truth in TRUTHS else ""
        out.append(f"{CLAIMS[claim]}{against}: {decided} of {len(g)} decided. {parts}.")
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


# --------------------------------------------------------------------------- the answer page
from dataclasses import dataclass  # noqa: E402  (here, not at the top: this section is appended to the module)


@dataclass
class AnswerPage:
    """Everything the answer page shows, computed once from its runs (:func:`answer_page`); the notebook
    only displays it."""

    study: Study
    truth: str
    answer: pd.DataFrame  # :func:`answer_table`
    verdicts: pd.DataFrame  # every claim's verdicts, marked with the host-perturbation ones
    claim_pairs: dict  # (claim, truth) -> per-seed pairs, for :func:`claim_figure_inputs`
    saliency_table: pd.DataFrame
    levels: pd.DataFrame  # :func:`levels_for_figure`
    ceilings: pd.DataFrame  # the main truth's ceilings
    rates: pd.DataFrame  # :func:`flag_rates`
    recipe_rows: pd.DataFrame | None  # :func:`oaprobe.report.recipe.recipe_table`, None without recipe runs
    absorption: pd.DataFrame
    by_lambda: pd.DataFrame | None
    verdicts_link: str  # the download link of verdicts.csv ("" without a downloads folder)
    headline: list[str]  # the findings box: one bullet per claim (or why claim 3 is not testable)
    details: list[str]  # folded under the box: stability, perturbation, recipe, ceilings, convergence targets


@dataclass
class AnswerRuns:
    """The runs the answer page reads (:func:`load_answer_runs`): the main grid, the reference-recipe
    runs and the lambda runs (None where the preset has none or the run fields were changed)."""

    study: Study
    recipe: Study | None
    beyond: Study | None
    runs_root: str
    changed: bool  # the chapter ran with changed run fields: no recipe, perturbation or lambda runs


def load_answer_runs(preset: str, runs_root: str, cohorts_root: str, manifest: str = "",
                     run: dict | None = None) -> AnswerRuns:
    """Every run the answer page of ``preset``'s book reads (the notebook's parameters; ``run``: changed
    run fields)."""
    from oaprobe.config import get_preset
    from oaprobe.report.beyond import BeyondStudy
    from oaprobe.report.recipe import load_recipe_study

    run = run or {}
    study = Study.load(preset, runs_root, cohorts_root, manifest=manifest or None, **run)
    recipe = load_recipe_study(study, runs_root) if not run else None
    beyond = (BeyondStudy.load(preset, runs_root, cohorts_root, manifest or None).study
              if get_preset(preset).lambdas and not run else None)
    return AnswerRuns(study, recipe, beyond, runs_root, bool(run))


def answer_page(runs: AnswerRuns, downloads: str = "") -> AnswerPage:
    """The answer page from its runs: the claims' verdicts (written to ``downloads``/verdicts.csv), the
    figures' inputs and the findings, the verdicts first and the rest as detail."""
    from oaprobe.report.absorption import absorption_by_lambda, absorption_runs
    from oaprobe.report.claims import decisive_method, mark_perturbed, read_perturbed, study_verdicts
    from oaprobe.report.recipe import recipe_table
    from oaprobe.report.saliency import saliency_run_table

    study, beyond = runs.study, runs.beyond
    truth = study.main_truth
    saliency_table = saliency_run_table(study)
    method = decisive_method(saliency_table)
    verdicts, claim_pairs = study_verdicts(study, saliency_table, method)
    perturbed, note = (read_perturbed(runs.runs_root, [r.run_id for r in study.runs]) if not runs.changed
                       else (None, "the chapter ran with changed run fields"))
    verdicts = mark_perturbed(verdicts, perturbed)
    page = AnswerPage(
        study=study, truth=truth, answer=answer_table(study), verdicts=verdicts, claim_pairs=claim_pairs,
        saliency_table=saliency_table, levels=levels_for_figure(study, truth), ceilings=study.ceilings(),
        rates=flag_rates(study), recipe_rows=recipe_table(study, runs.recipe, truth) if runs.recipe is not None else None,
        absorption=absorption_runs(study.runs, study.convergence(), study.latent(methods=("pca",)), truth),
        by_lambda=absorption_by_lambda(absorption_runs(beyond.runs, beyond.convergence(), None, truth)) if beyond else None,
        verdicts_link=write_verdicts(verdicts, downloads), headline=[], details=[])
    page.headline, page.details = _answer_findings(page, method, note)
    return page


def _answer_findings(page: AnswerPage, method: str | None, perturbed_note: str) -> tuple[list[str], list[str]]:
    """The answer page's findings: the claims' verdicts (the main truth first, then the other one) for
    the box, and the stability, perturbation, recipe, ceilings and convergence-target sentences to fold."""
    from oaprobe.report.claims import describe_knee_sampling, knee_sampling
    from oaprobe.report.recipe import describe_recipe
    from oaprobe.report.saliency import claim3_methods
    from oaprobe.report.sentences import describe_targets

    headline = claim_findings(page.verdicts[page.verdicts["truth"].isin([page.truth, ""])])
    if method is None:
        headline.append("Claim 3 is not testable with trustworthy maps: " + "; ".join(
            f"{m}: {why}" for m, why in claim3_methods(page.saliency_table).items()) + ".")
    details = [describe_perturbation(page.verdicts, perturbed_note), describe_flag_rates(page.rates)]
    if method is not None:  # would more knees decide claim 3?
        details.append(describe_knee_sampling(knee_sampling(page.study.saliency(), method, page.study.backbones)))
    if page.recipe_rows is not None:
        details += [describe_recipe(r) for _, r in page.recipe_rows.iterrows() if r["question"] == "fine"]
    details += [describe_ceilings(page.levels, page.ceilings, page.truth),
                describe_targets(page.study.quality_targets(), page.truth)]  # how far the models are results
    return [f for f in headline if f], [f for f in details if f]


#: The book's citation file (the repository root) and what each of its licences covers.
CITATION_FILE = Path(__file__).resolve().parents[2] / "CITATION.cff"
LICENCE_SCOPES = {"MIT": "the code (LICENSE)", "CC-BY-4.0": "the text and figures (LICENSE-text)"}


def _cff_authors(authors: list[dict]) -> str:
    """CFF authors as "Family, G." (persons) or their name (entities), joined by commas."""
    return ", ".join(a.get("name") or f"{a.get('family-names', '')}, {a.get('given-names', '')}".strip(", ")
                     for a in authors)


def how_to_cite(path: Path = CITATION_FILE) -> str:
    """The landing page's "how to cite" line (Markdown), read from ``CITATION.cff``: this book, the
    reference study of its ``references``, and the licences; "" when the file is missing (an installed
    package without the repository)."""
    import yaml

    if not Path(path).is_file():
        return ""
    cff = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    book = f"{_cff_authors(cff['authors'])}, *{cff['title']}*, version {cff['version']} (this book and its code)"
    refs = [f"{_cff_authors(r['authors'])} ({r['year']}), *{r['title']}*, "
            f"[{next((i['value'] for i in r.get('identifiers', [])), r['url'])}]({r['url']})" for r in cff.get("references", [])]
    licences = "; ".join(f"{LICENCE_SCOPES.get(lic, lic)}: {lic.replace('-', ' ') if lic.startswith('CC-') else lic}"
                         for lic in cff.get("license", []))
    text = f"**How to cite.** Cite {book}" + (f", and the study it reproduces: {'; '.join(refs)}" if refs else "")
    return text + " (`CITATION.cff`)." + (f" Licences: {licences}." if licences else "")
