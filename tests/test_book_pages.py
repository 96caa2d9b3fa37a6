"""The hand-written pages state facts that live in code: each such fact is checked against its source."""

from __future__ import annotations

import re
import xml.dom.minidom
from pathlib import Path

from scipy import stats

from oaprobe.config import get_preset
from oaprobe.report.saliency import RANDOMISATION_MAX_RHO

BOOK = Path(__file__).resolve().parent.parent / "book"


def test_teach_page_states_the_course_builds_seeds_and_degrees_of_freedom():
    text = " ".join((BOOK / "teach.md").read_text().split())
    seeds = len(get_preset("course").seeds)
    assert f"trains {seeds} seeds per configuration" in text
    assert f"rests on {seeds - 1} degree{'s' if seeds != 2 else ''} of freedom" in text
    assert f"is {stats.t.ppf(0.975, seeds - 1):.1f}" in text and f"it is {stats.t.ppf(0.975, 4):.1f}" in text
    assert not re.search(r"\d+\.\d min", text), "build times live in the README's timing table only"


def test_teach_page_times_every_exercise_once():
    from oaprobe.report.exercises import EXERCISES

    text = (BOOK / "teach.md").read_text()
    rows = re.findall(r"^\| (\d+)\. (.+?) \| (\d+) \|$", text, flags=re.M)
    assert [(int(n), title) for n, title, _ in rows] == list(enumerate(EXERCISES.values(), start=1))


def _exercise_minutes(text: str) -> dict[int, int]:
    return {int(n): int(m) for n, _, m in re.findall(r"^\| (\d+)\. (.+?) \| (\d+) \|$", text, flags=re.M)}


def test_teach_page_timings_add_up():
    text = (BOOK / "teach.md").read_text()
    length = int(re.search(r"^## A (\d+)-minute session$", text, flags=re.M).group(1))
    spans = [(int(a), int(b)) for a, b in re.findall(r"^\| (\d+)–(\d+) \|", text, flags=re.M)]
    assert spans[0][0] == 0 and spans[-1][1] == length, spans
    assert all(b > a for a, b in spans) and all(b == c for (_, b), (c, _) in zip(spans, spans[1:])), spans
    block = re.search(r"For a single (\d+)-minute block, in pairs: (.+?)\.\s", " ".join(text.split()))
    chosen = [int(n) for n in re.findall(r"\*\*(\d+)\*\*", block.group(2))]
    assert int(block.group(1)) == sum(_exercise_minutes(text)[n] for n in chosen), (block.group(1), chosen)


def test_teach_page_teaches_all_three_claims_and_opens_on_the_model():
    text = (BOOK / "teach.md").read_text()
    for label in ("teach-concept", "teach-latent", "teach-saliency"):
        assert f"({label})=" in text and f"<{label}>`" in text  # a block, and a row of the session that sends to it
    concept = text[text.index("(teach-concept)="):text.index("(teach-latent)=")]
    assert "_static/model.svg" in concept and "(10 minutes)" in concept
    assert "either way" not in text and "no evidence" not in text


def test_glossary_states_the_randomisation_threshold_the_code_uses():
    assert f"below {RANDOMISATION_MAX_RHO:g}" in (BOOK / "glossary.md").read_text()


def test_model_diagram_is_valid_svg_with_a_text_alternative():
    svg = xml.dom.minidom.parse(str(BOOK / "_static" / "model.svg"))
    root = svg.documentElement
    assert root.tagName == "svg" and root.getAttribute("role") == "img"
    desc = svg.getElementsByTagName("desc")[0].firstChild.data
    assert "parallel" in desc and "stacked" in desc


def test_licences_are_the_ones_the_pages_and_the_citation_file_name():
    import tomllib

    import yaml

    root = BOOK.parent
    cff = yaml.safe_load((root / "CITATION.cff").read_text(encoding="utf-8"))
    assert (root / "LICENSE").read_text().startswith("MIT License")
    assert "Creative Commons Attribution 4.0 International" in (root / "LICENSE-text").read_text()
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["license"] == "MIT"
    assert set(cff["license"]) == {"MIT", "CC-BY-4.0"}
    for page in (BOOK / "intro.md", root / "README.md"):
        text = " ".join(page.read_text().split())
        assert "MIT" in text and "CC BY 4.0" in text and "cite" in text, page.name
