"""Is the reference study's dual-head gain a property of its recipe?

The first backbone trained with the reference study's optimisation (constant lr 1e-4, batch 2, the
final epoch, no clipping or warm-up: :data:`oaprobe.config.REFERENCE_RECIPE`) at the book's sizes,
on the main grid's first seeds, and compared with the book's recipe under the book's decision rule:
does dual help when single-task training is optimised the reference's way, and does its gain change
with the recipe (per seed: the reference recipe's paired gain minus the book recipe's)?
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from oaprobe.analysis.decision import decide_table
from oaprobe.facts import backbone_title
from oaprobe.report.answer import QUESTIONS, level_text
from oaprobe.report.sentences import rule_sentence
from oaprobe.report.study import Study
from oaprobe.sweep import recipe_grid

#: the comparisons of the recipe section, in its order
RECIPE_COMPARISONS = ("dual vs single-task, reference recipe", "change of the gain, reference minus book recipe")


def load_recipe_study(study: Study, runs_root: str | Path) -> Study | None:
    """The first backbone's runs with the reference study's recipe (:func:`oaprobe.sweep.recipe_grid`)
    on ``study``'s cohort, or None where the preset has none or a manifest of one's own replaced the
    preset's cohort and those runs were not trained."""
    grid = recipe_grid(study.manifest, study.preset)
    return Study.from_grid(study.preset, study.manifest, grid, runs_root) if grid else None


def recipe_table(study: Study, recipe: Study, truth: str) -> pd.DataFrame:
    """Is dual's gain a property of the recipe? Per question, on the recipe study's backbone and seeds:
    dual vs its single-task baseline under the reference recipe, and the per-seed change of the paired
    gain from the book's recipe to the reference one; the rule with Bonferroni over the comparisons."""
    metrics = [mt for mt, _, _ in QUESTIONS.values()]
    ref = recipe.paired_seeds(truth, metrics)
    book = study.paired_seeds(truth, metrics)
    book = book[book["backbone"].isin(ref["backbone"]) & book["seed"].isin(ref["seed"])]
    both = ref.merge(book, on=["backbone", "metric", "baseline", "seed"], suffixes=("", "_book"))
    change = both.assign(diff=both["diff"] - both["diff_book"], flagged=both["flagged"] | both["flagged_book"])
    frames = [ref.assign(comparison=RECIPE_COMPARISONS[0]), change.assign(comparison=RECIPE_COMPARISONS[1])]
    diffs = pd.concat(frames, ignore_index=True)
    table = decide_table(diffs, by=("comparison", "backbone", "metric"))
    levels = pd.concat([ref.assign(recipe="reference"), book.assign(recipe="book")])
    means = levels.groupby(["recipe", "metric"])[["a", "b"]].mean().unstack("recipe")
    means.columns = [f"{'dual' if k == 'a' else 'single'}_{r}" for k, r in means.columns]
    question = {mt: q for q, (mt, _, _) in QUESTIONS.items()}
    return table.join(means, on="metric").assign(question=lambda t: t["metric"].map(question), truth=truth)


def describe_recipe(row: pd.Series, truth: str = "") -> str:
    """One row of :func:`recipe_table`: the verdict sentence, then (for dual vs single under the
    reference recipe) both recipes' mean levels over the same seeds, each named and marked."""
    metric, base, _ = QUESTIONS[row["question"]]
    bb, n = str(row["backbone"]), int(row["n_seeds"])
    truth = truth or str(row.get("truth", ""))
    if row["comparison"] == RECIPE_COMPARISONS[0]:
        text = rule_sentence(row, f"{backbone_title(bb)} under the reference recipe", "dual", base, metric, truth,
                             key_subject=f"{bb} (reference recipe)", bold=True)
        ref = level_text(f"{bb} (reference recipe)", "dual", metric, truth, n, row["dual_reference"])
        ref_single = level_text(f"{bb} (reference recipe)", base, metric, truth, n, row["single_reference"])
        book = level_text(bb, "dual", metric, truth, n, row["dual_book"])
        book_single = level_text(bb, base, metric, truth, n, row["single_book"])
        return (f"{text} Means over {'this seed' if n == 1 else f'these {n} seeds'}: reference recipe {ref}, {ref_single}; "
                f"the book's recipe {book}, {book_single}.")
    return rule_sentence(row, f"{backbone_title(bb)}, reference-recipe change in the gain", "dual",
                         base, metric, truth, key_subject=f"{bb} (recipe change)", bold=True)
