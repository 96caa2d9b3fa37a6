"""The recipe comparison on real smoke runs: the reference recipe's paired gains and their change from the book's."""

from __future__ import annotations

import pandas as pd
import pytest

from oaprobe.analysis.decision import DELTAS, decide
from oaprobe.config import REFERENCE_RECIPE
from oaprobe.report.recipe import RECIPE_COMPARISONS, describe_recipe, recipe_table
from oaprobe.report.stated import strip_marks
from oaprobe.report.study import Study
from tests.report import smoke_study_runs


@pytest.fixture(scope="module")
def studies(tmp_path_factory, smoke_manifest, volume_cache) -> tuple[Study, Study]:
    root, grid = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache)
    _, reference = smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache, **REFERENCE_RECIPE)
    return (Study.from_grid("smoke", smoke_manifest, grid, root), Study.from_grid("smoke", smoke_manifest, reference, root))


def test_recipe_table_is_the_rule_on_both_comparisons(studies):
    book, reference = studies
    table = recipe_table(book, reference, "kl_clean").set_index(["comparison", "metric"])
    assert set(table.index) == {(c, m) for c in RECIPE_COMPARISONS for m in ("kl_qwk", "oa_roc_auc")}
    assert (table["m"] == 4).all()  # Bonferroni over the section's four comparisons
    ref = reference.paired_seeds("kl_clean", ["kl_qwk"]).set_index("seed")["diff"]
    own = book.paired_seeds("kl_clean", ["kl_qwk"]).set_index("seed")["diff"]
    change = table.loc[(RECIPE_COMPARISONS[1], "kl_qwk")]
    expected = decide((ref - own).to_numpy(), DELTAS["kl_qwk"], m=4)
    assert change["mean"] == pytest.approx(expected["mean"]) and change["verdict_all"] == expected["verdict"]
    gain = table.loc[(RECIPE_COMPARISONS[0], "kl_qwk")]
    assert gain["mean"] == pytest.approx(ref.mean()) and gain["n_seeds"] == 2


def test_describe_recipe_states_levels_under_both_recipes(studies):
    book, reference = studies
    table = recipe_table(book, reference, "kl_clean")
    first = describe_recipe(table[table["comparison"] == RECIPE_COMPARISONS[0]].iloc[0])
    shown = strip_marks(first)
    assert shown.startswith("ResNet3D under the reference recipe, ") and "the book's recipe dual " in shown
    assert "Means over these 2 seeds: reference recipe dual " in shown  # both recipes' levels, named, on the same seeds
    change = strip_marks(describe_recipe(table[table["comparison"] == RECIPE_COMPARISONS[1]].iloc[0]))
    assert "reference-recipe change in the gain" in change and "Bonferroni over 4" in change


def test_the_book_levels_are_the_recipe_backbones_own(studies, monkeypatch):
    book, reference = studies
    own = book.paired_seeds("kl_clean", ["kl_qwk", "oa_roc_auc"])
    other = own.assign(backbone="m3t", a=own["a"] - 0.5, b=own["b"] + 0.3)  # another backbone's runs: left out
    monkeypatch.setattr(book, "paired_seeds", lambda truth, metrics: pd.concat([own, other], ignore_index=True))
    table = recipe_table(book, reference, "kl_clean").set_index(["comparison", "metric"])
    row = table.loc[(RECIPE_COMPARISONS[0], "kl_qwk")]
    qwk = own[own["metric"] == "kl_qwk"]
    assert row["dual_book"] == pytest.approx(qwk["a"].mean()) and row["single_book"] == pytest.approx(qwk["b"].mean())
