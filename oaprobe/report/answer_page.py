"""The answer page, assembled: every run it reads (:func:`load_answer_runs`) and everything it shows
(:func:`answer_page`), so the notebook only displays; and the landing page's "how to cite" line.

It sits above the chapter modules it draws on (answer, claims, recipe, beyond, absorption,
saliency), which import nothing from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from oaprobe.config import get_preset
from oaprobe.report.absorption import absorption_by_lambda, absorption_runs
from oaprobe.report.answer import (
    answer_table,
    claim_findings,
    describe_ceilings,
    describe_flag_rates,
    describe_perturbation,
    flag_rates,
    levels_for_figure,
    write_verdicts,
)
from oaprobe.report.beyond import BeyondStudy
from oaprobe.report.claims import (
    decisive_method,
    describe_knee_sampling,
    knee_sampling,
    mark_perturbed,
    read_perturbed,
    study_verdicts,
)
from oaprobe.report.recipe import describe_recipe, load_recipe_study, recipe_table
from oaprobe.report.saliency import claim3_methods, saliency_run_table
from oaprobe.report.sentences import describe_targets
from oaprobe.report.study import Study


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

    run = run or {}
    study = Study.load(preset, runs_root, cohorts_root, manifest=manifest or None, **run)
    recipe = load_recipe_study(study, runs_root) if not run else None
    beyond = (BeyondStudy.load(preset, runs_root, cohorts_root, manifest or None).study
              if get_preset(preset).lambdas and not run else None)
    return AnswerRuns(study, recipe, beyond, runs_root, bool(run))


def answer_page(runs: AnswerRuns, downloads: str = "") -> AnswerPage:
    """The answer page from its runs: the claims' verdicts (written to ``downloads``/verdicts.csv), the
    figures' inputs and the findings, the verdicts first and the rest as detail."""

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
