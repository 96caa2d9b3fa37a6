"""The answer page's citation line, read from CITATION.cff (planted and the repository's own)."""

from __future__ import annotations

import yaml

from oaprobe.report.answer_page import CITATION_FILE, how_to_cite

PLANTED = """cff-version: 1.2.0
message: cite it
title: A planted book
version: 9.9.9
authors:
  - family-names: Doe
    given-names: J.
  - name: The Team
license: [MIT, CC-BY-4.0]
references:
  - type: article
    authors: [{family-names: Roe, given-names: R.}]
    title: A planted study
    year: 2001
    url: https://example.org/study
    identifiers: [{type: other, value: "arXiv:0101.00001"}]
"""


def test_how_to_cite_names_the_book_the_study_and_the_licences(tmp_path):
    cff = tmp_path / "CITATION.cff"
    cff.write_text(PLANTED)
    line = how_to_cite(cff)
    assert line.startswith("**How to cite.** Cite Doe, J., The Team, *A planted book*, version 9.9.9")
    assert "Roe, R. (2001), *A planted study*, [arXiv:0101.00001](https://example.org/study)" in line
    assert line.endswith("Licences: the code (LICENSE): MIT; the text and figures (LICENSE-text): CC BY 4.0.")
    assert how_to_cite(tmp_path / "missing.cff") == ""


def test_the_repository_citation_file_cites_the_book_and_the_reference_study():
    cff = yaml.safe_load(CITATION_FILE.read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["message"] and cff["authors"] and cff["title"]
    assert set(cff["license"]) == {"MIT", "CC-BY-4.0"}
    study = cff["references"][0]
    assert study["authors"][0]["family-names"] == "Zhang" and "arxiv.org/abs/2605.00718" in study["url"]
    line = how_to_cite()
    assert cff["title"] in line and study["title"] in line
