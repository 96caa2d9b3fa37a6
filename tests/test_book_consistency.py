"""The built book never contradicts itself: one quantity, one value and one verdict on every page.

Every sentence that states a rule verdict, a mean difference or a mode's level carries a hidden key
(:mod:`oaprobe.report.stated`: comparison, metric, truth, seeds). The book checks read every built
page, collect the keys and fail when one quantity is stated with two values or two verdicts (or one
verdict under two Bonferroni families); they also fail on "-0.000", on a "nan" in visible text and
on a verdict sentence of 40 words or more. Run after a smoke build (``make test-browser`` does)::

    oaprobe book --preset smoke --runs runs-smoke --site _build/smoke-site
    OAPROBE_BOOK_HTML=_build/smoke-site/_build/html pytest -m browser tests/test_book_consistency.py

The unit tests at the top (planted statements) run with the fast tests.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pytest

from oaprobe.analysis.decision import decide
from oaprobe.report.display import folded_sentences
from oaprobe.report.sentences import describe_seed_level, findings_box
from oaprobe.report.stated import collect, contradictions, mark, stat_key, strip_marks

ROOT = Path(__file__).resolve().parent.parent
HTML = Path(os.environ.get("OAPROBE_BOOK_HTML", ROOT / "_build" / "smoke-site" / "_build" / "html"))
#: a sentence that states a verdict of the rule (a mean over seeds, then the verdict)
_IN_SENTENCE = r"(?:[^.!?\n]|\.(?=\d))*"  # a decimal point does not end a sentence; a block (line) does
VERDICT_SENTENCE = re.compile(_IN_SENTENCE + r"\bover \d+ seeds?\b" + _IN_SENTENCE + r"\b(?:helps|hurts|equivalent|inconclusive)\b"
                              + _IN_SENTENCE)


def _row(diffs, m=1, **extra):
    return {"backbone": "resnet3d", "metric": "kl_qwk", "baseline": "single_kl", **decide(diffs, 0.03, m=m), **extra}


# ---------------------------------------------------------------------------------- known answers
def test_contradictions_find_one_quantity_stated_twice_with_two_values():
    key = stat_key("resnet3d", "dual", "ordinal", "kl_qwk", "kl_clean", 3)
    same = [("a.html", key, "inconclusive, Bonferroni over 15"), ("b.html", key, "inconclusive, Bonferroni over 15")]
    assert contradictions(same) == {}
    clash = same + [("c.html", key, "equivalent, Bonferroni over 2")]
    assert contradictions(clash) == {key: {"inconclusive, Bonferroni over 15": ["a.html", "b.html"],
                                           "equivalent, Bonferroni over 2": ["c.html"]}}
    other_seeds = stat_key("resnet3d", "dual", "ordinal", "kl_qwk", "kl_clean", 12)  # another quantity
    assert contradictions(same + [("c.html", other_seeds, "helps, tested alone")]) == {}


def test_two_families_of_one_comparison_are_caught_even_with_one_verdict():
    diffs = [0.01, -0.03, 0.05]
    pages = {"exercises": describe_seed_level(_row(diffs, m=2), "kl_clean"),
             "beyond": describe_seed_level(_row(diffs, m=15), "kl_clean")}
    found = contradictions((p, k, v) for p, text in pages.items() for k, v in collect(text))
    assert list(found) == ["resnet3d: dual - single_kl | kl_qwk | kl_clean | 3 seeds | verdict"]


def test_marks_survive_the_folds_and_boxes_unseen():
    sentence = describe_seed_level(_row([0.03, 0.05, 0.04, 0.06]), "kl_clean")
    for shown in (folded_sentences([sentence], "every test").data, findings_box([sentence])):
        assert collect(shown) == collect(sentence) and len(collect(shown)) == 2
    assert "oaprobe-stat" not in strip_marks(sentence) and "data-key" not in html.unescape(strip_marks(sentence))
    assert collect("x" + mark("k <&> \"q\"", "+0.010")) == [('k <&> "q"', "+0.010")]


def test_verdict_sentences_are_short_and_name_metric_truth_and_seeds():
    text = strip_marks(describe_seed_level(_row([0.03, 0.05, 0.04, 0.06]), "kl_clean"))
    sentence = VERDICT_SENTENCE.search(text).group(0)
    assert len(sentence.split()) < 40 and "KL QWK" in sentence and "clean grade" in sentence and "4 seeds" in sentence


# ---------------------------------------------------------------------------------- the built book
def _pages() -> list[Path]:
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no built book at {HTML}: run `oaprobe book --preset smoke --runs runs-smoke --site _build/smoke-site`")
    return sorted(p for p in HTML.rglob("*.html") if "_static" not in p.parts and p.name not in {"genindex.html", "search.html"})


_BLOCK = re.compile(r"<br\s*/?>|</(?:p|li|dd|dt|td|th|tr|summary|h\d|div|pre|table|caption|figcaption)>", re.I)


def visible_text(page: Path, code: bool = True) -> str:
    """A page's text as a reader sees it: no scripts, styles, hidden marks or tags; one line per block
    (paragraph, list item, table cell, fold title), so a sentence never runs from one into the next.
    ``code=False`` drops inline code too (identifiers such as ``facts.BACKBONES`` are not prose)."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S)
    if not code:
        text = re.sub(r"<code\b.*?</code>", " ", text, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", _BLOCK.sub("\n", strip_marks(text)))
    return re.sub(r"\s*\n\s*", "\n", re.sub(r"[ \t\r\f\v]+", " ", html.unescape(text)))


@pytest.mark.browser
def test_the_book_states_each_quantity_with_one_value_and_one_verdict():
    statements = [(p.name, k, v) for p in _pages() for k, v in collect(p.read_text(encoding="utf-8"))]
    assert statements, "no stated quantity found: the sentences lost their marks"
    pages = {p for p, _, _ in statements}
    assert len(pages) >= 3, f"quantities stated on {sorted(pages)} only"
    found = contradictions(statements)
    assert not found, "one quantity, two values: " + "; ".join(
        f"{k}: " + ", ".join(f"{v} ({', '.join(ps)})" for v, ps in vs.items()) for k, vs in found.items())


@pytest.mark.browser
def test_no_page_prints_negative_zero_or_nan():
    bad = {}
    for page in _pages():
        text = visible_text(page)
        hits = re.findall(r".{0,40}(?:-0\.0+\b(?!\d)|\bnan\b).{0,20}", text)
        if hits:
            bad[page.name] = hits[:3]
    assert not bad, bad


@pytest.mark.browser
def test_every_verdict_sentence_is_under_40_words():
    long = {}
    for page in _pages():
        for match in VERDICT_SENTENCE.finditer(visible_text(page)):
            words = match.group(0).split()
            if len(words) >= 40:
                long.setdefault(page.name, []).append(" ".join(words[:12]) + " ...")
    assert not long, long


def findings_sentences(page_html: str) -> list[str]:
    """The sentences of a page's findings boxes (the tip admonitions' list items)."""
    out = []
    for box in re.findall(r'<div class="(?:tip admonition|admonition tip)">(.*?)</div>', strip_marks(page_html), re.S):
        for item in re.findall(r"<li>(.*?)</li>", box, re.S):
            text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", item)).split())
            out += re.split(r"(?<=[.;])\s+(?=[A-Z0-9])", text)
    return out


@pytest.mark.browser
def test_every_findings_sentence_is_under_40_words():
    long = {p.name: [f"{len(x.split())} words: {x[:80]} ..." for x in findings_sentences(p.read_text(encoding="utf-8"))
                     if len(x.split()) >= 40] for p in _pages()}
    long = {k: v for k, v in long.items() if v}
    assert not long, long


def test_findings_sentences_on_a_planted_box():
    box = ('<div class="tip admonition"><p>What this chapter finds</p><ul><li>One. Two words; '
           + " ".join(["Word"] * 41) + ".</li></ul></div>")
    sentences = findings_sentences(box)
    assert sentences[:2] == ["One.", "Two words;"] and len(sentences[2].split()) == 41


def test_visible_text_leaves_out_the_marks(tmp_path):
    page = tmp_path / "p.html"
    page.write_text(f"<p>dual +0.010{mark('k', '+0.010')}</p><script>var nan = 1;</script>", encoding="utf-8")
    assert visible_text(page).strip() == "dual +0.010"
    page.write_text("<li>ResNet3D: +0.010 over 3 seeds</li><li>helps</li>", encoding="utf-8")
    assert not VERDICT_SENTENCE.search(visible_text(page))  # two list items are two sentences
