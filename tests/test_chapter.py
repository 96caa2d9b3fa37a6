"""`oaprobe chapter`: parameters checked, glue filled, a standalone page from a really executed notebook."""

from __future__ import annotations

import json

import nbformat
import pytest

from oaprobe import chapter
from oaprobe.chapter import ChapterCommandError, fill_glue, glue_values, parse_parameters, render_html
from oaprobe.parameters import ParameterError


def _notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('preset = "default"\nn = 2', metadata={"tags": ["parameters"]})
    code = nbformat.v4.new_code_cell("from myst_nb import glue\nglue('total', n * 21, display=False)\nglue('who', 'dual', display=False)\n"
                                     "print('shown')")
    text = nbformat.v4.new_markdown_cell("# Title\n\n{glue:text}`total` knees under {glue:md}`who`, "
                                         "{glue:text}`total:.1f`; {glue:text}`missing`.")
    nb.cells = [params, code, text]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_parameters_are_json_or_text_and_must_be_the_chapters_own():
    known = {"preset": '"default"', "run": "{}"}
    assert parse_parameters([["preset", "course"], ["run", '{"width": 0.5}']], known, "results") == \
        {"preset": "course", "run": {"width": 0.5}}
    with pytest.raises(ParameterError, match="chapter results: no parameter 'presets'; expected one of preset, run"):
        parse_parameters([["presets", "x"]], known, "results")


def test_unknown_chapter_is_one_line_exit_2(capsys):
    from oaprobe.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["chapter", "resluts"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "chapter 'resluts': expected one of answer, cohort" in err


def test_every_chapter_notebook_exists_and_has_parameters():
    from oaprobe.book import NOTEBOOKS

    for name in chapter.CHAPTERS:
        assert "preset" in chapter.notebook_parameters(name, NOTEBOOKS), name


def test_executed_chapter_renders_with_its_glue_filled(tmp_path, monkeypatch):
    import oaprobe.book

    (tmp_path / "nb").mkdir()
    nbformat.write(_notebook(), tmp_path / "nb" / "answer.ipynb")
    monkeypatch.setattr(oaprobe.book, "NOTEBOOKS", tmp_path / "nb")
    monkeypatch.setattr("oaprobe.chapter.NOTEBOOKS", tmp_path / "nb")  # the name chapter.py imported
    page = chapter.run_chapter("answer", [["n", "5"]], tmp_path / "out")
    assert page == tmp_path / "out" / "answer.html"
    text = page.read_text()
    assert "<p>105 knees under dual, 105.0; [missing: not glued].</p>" in text
    assert "<pre>shown\n</pre>" in text and "glue(" not in text and "{glue" not in text
    assert "Plotly" in text and text.startswith("<!DOCTYPE html>")  # plotly.js inline: opens offline
    values = glue_values(nbformat.read(tmp_path / "out" / "answer.ipynb", as_version=4))
    assert values["total"]["text/plain"] == "105"


def test_fill_glue_leaves_other_text_alone():
    assert fill_glue("no roles, `code` and {math}`x`", {}) == "no roles, `code` and {math}`x`"
    html = render_html(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("| a |\n|---|\n| 1 |")]), "t", {})
    assert "<table>" in html and "<title>t</title>" in html


def test_rerun_page_lists_every_chapter_with_exactly_its_parameters():
    import re

    from oaprobe.book import NOTEBOOKS, ROOT

    text = (ROOT / "book" / "rerun.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (`.*)\|$", text, flags=re.M))
    for name in chapter.CHAPTERS:
        listed = re.findall(r"`(\w+)`", rows.get(name, ""))
        assert listed == list(chapter.notebook_parameters(name, NOTEBOOKS)), name


def test_findings_box_renders_as_a_box():
    from markdown_it import MarkdownIt

    from oaprobe.chapter import render_markdown

    text = "Intro.\n\n:::{admonition} What this chapter finds\n:class: tip\n- one *finding*\n- two\n:::\n\nAfter."
    out = render_markdown(text, MarkdownIt("commonmark"))
    assert '<div class="admonition tip"><p class="admonition-title">What this chapter finds</p><ul>' in out
    assert "<em>finding</em>" in out and ":::" not in out and out.endswith("<p>After.</p>\n")


def test_a_dropdown_answer_is_folded_as_in_the_book():
    from markdown_it import MarkdownIt

    from oaprobe.chapter import render_markdown

    text = "## 1. A question\n\n:::{admonition} Answer (computed)\n:class: dropdown\nThe **answer**.\n:::\n"
    out = render_markdown(text, MarkdownIt("commonmark"))
    assert '<details class="admonition dropdown"><summary class="admonition-title">Answer (computed)</summary>' in out
    assert "<strong>answer</strong>" in out and " open" not in out and out.count("<details") == 1


def test_a_failing_chapter_is_one_line_and_writes_no_page(tmp_path, monkeypatch):
    import oaprobe.book

    nb = _notebook()
    nb.cells[1] = nbformat.v4.new_code_cell("raise ValueError('runs missing: train them with oaprobe sweep')")
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, tmp_path / "nb" / "answer.ipynb")
    monkeypatch.setattr(oaprobe.book, "NOTEBOOKS", tmp_path / "nb")
    monkeypatch.setattr("oaprobe.chapter.NOTEBOOKS", tmp_path / "nb")  # the name chapter.py imported
    with pytest.raises(ChapterCommandError, match=r"chapter answer failed .*: ValueError: runs missing: train them") as err:
        chapter.run_chapter("answer", None, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out" / "answer.html").exists() and not (tmp_path / "out" / "answer.ipynb").exists()


@pytest.mark.slow
def test_every_chapter_runs_with_every_documented_parameter_changed(tmp_path, capsys):
    """Each chapter once with every parameter it has at a value other than the book's, on smoke runs
    trained by exactly the commands its missing-runs errors print; each page names what changed."""
    import re
    import shlex

    from oaprobe.book import NOTEBOOKS
    from oaprobe.cli import main
    from oaprobe.sweep import preset_manifest

    runs, cohorts = tmp_path / "runs", tmp_path / "cohorts"
    values = {"preset": "smoke", "runs_root": str(runs), "cohorts_root": str(cohorts),
              "manifest": str(preset_manifest("smoke", cohorts, progress=False)), "run": {"ema_decay": 0.5},
              "backbone": "nnmamba", "modes": ["dual", "single_kl", "single_oa"], "seeds": [0, 1],
              "bootstrap_B": 200, "umap_seed": 1}
    for name in chapter.CHAPTERS:
        known = chapter.notebook_parameters(name, NOTEBOOKS)
        assert set(known) <= set(values), f"{name}: give the new parameter a test value"
        pairs = [[k, v if isinstance(v, str) else json.dumps(v)] for k, v in values.items() if k in known]
        for _ in range(6):
            try:
                page = chapter.run_chapter(name, pairs, tmp_path / "pages")
                break
            except ChapterCommandError as err:
                found = re.search(r"`(oaprobe (?:sweep|saliency) [^`]*)`", str(err))
                assert found, f"{name}: {err}"
                for line in found.group(1).split(" && "):
                    assert main([*shlex.split(line)[1:], "--no-progress"]) == 0
        else:
            pytest.fail(f"{name}: still missing runs after 6 commands")
        text = page.read_text()
        title = re.search(r"<title>(.*?)</title>", text).group(1)
        assert all(k in title for k in known if k != "cohorts_root" or values[k] != "data/cohorts"), (name, title)
        assert "A rerun, not the book&#x27;s page" in text or "A rerun, not the book's page" in text
    capsys.readouterr()
