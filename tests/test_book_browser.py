"""Open every page of the built book in headless Chromium (Debian's chromium + chromedriver).

Fails on JavaScript errors, broken internal links, or plotly figures that did not render, on raw
identifiers or run hashes in visible text, figures without a text alternative, titles under the
plotly toolbar or overlapping tick labels (800 and 1280 px); saves a screenshot of each page to
``screenshots/``. The HTML checks also run on ``oaprobe chapter`` pages (OAPROBE_BOOK_HTML=_build/chapters). Run after a book build:
``oaprobe book --preset smoke && pytest -m browser tests/test_book_browser.py``.
"""

from __future__ import annotations

import functools
import re
import http.server
import os
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
# `make test-browser` builds the smoke book in its own site folder and points OAPROBE_BOOK_HTML at it.
HTML = Path(os.environ.get("OAPROBE_BOOK_HTML", ROOT / "_build" / "html"))
SHOTS = Path(os.environ.get("OAPROBE_SCREENSHOTS", ROOT / "screenshots"))
SKIP_PAGES = {"genindex.html", "search.html"}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def _pages() -> list[Path]:
    return sorted(p for p in HTML.rglob("*.html") if p.name not in SKIP_PAGES and "_static" not in p.parts)


def _internal_targets(page: Path) -> list[tuple[str, Path]]:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    out = []
    for href in parser.hrefs:
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or href.startswith(("mailto:", "#", "javascript:")):
            continue
        target = (page.parent / unquote(parts.path)).resolve()
        out.append((href, target))
    return out


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no built book at {HTML}: run `oaprobe book --preset smoke --site _build/smoke-site` first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *a, **k: None  # type: ignore[assignment]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium")
    driver_bin = shutil.which("chromedriver")
    if not (chromium and driver_bin):
        pytest.fail("chromium and chromedriver are needed (Debian packages chromium, chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1600"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_book_has_every_chapter():
    names = {p.name for p in _pages()}
    assert "intro.html" in names or "index.html" in names
    for stem in ("00_answer", "01_cohort", "03_results", "04_latent", "05_saliency", "07_methods", "08_exercises", "teach"):
        assert f"{stem}.html" in names, f"chapter {stem} missing from the built book"
    cohort_page = next(p for p in _pages() if p.name == "01_cohort.html").read_text(encoding="utf-8")
    if "no clean grade (real data)" not in cohort_page:  # synthetic cohort: the label-noise chapter must be there
        assert "06_label_noise.html" in names, "chapter 06_label_noise missing from a synthetic-cohort book"
    assert any(n.startswith("backbone_") for n in names), "no backbone chapter in the built book"


def test_internal_links_resolve():
    broken = [
        f"{page.relative_to(HTML)} -> {href}"
        for page in _pages()
        for href, target in _internal_targets(page)
        if not target.exists()
    ]
    assert not broken, "broken internal links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", _pages() if HTML.is_dir() else [], ids=lambda p: p.name)
def test_page_renders_without_errors(page: Path, server: str, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    rel = page.relative_to(HTML).as_posix()
    browser.get_log("browser")  # drop entries of earlier pages
    browser.get(f"{server}/{rel}")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    expected = page.read_text(encoding="utf-8").count("Plotly.newPlot")
    if expected:
        WebDriverWait(browser, 30).until(
            lambda d: d.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
        )
        rendered = browser.execute_script(
            "return Array.from(document.querySelectorAll('.js-plotly-plot')).filter(e => e.querySelector('.main-svg')).length"
        )
        assert rendered >= expected, f"{rel}: {rendered} of {expected} plotly figures rendered"
    SHOTS.mkdir(exist_ok=True)
    height = browser.execute_script("return Math.min(document.body.scrollHeight, 12000)")
    browser.set_window_size(1280, max(800, int(height)))
    browser.save_screenshot(str(SHOTS / (rel.replace("/", "__").removesuffix(".html") + ".png")))
    browser.set_window_size(1280, 1600)
    wide = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 1, f"{rel}: the page is {wide} px wider than the viewport (wide tables must scroll in place)"
    # The browser's own favicon request is not the page's doing.
    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE" and "/favicon.ico" not in e.get("message", "")]
    assert not errors, f"{rel}: browser errors: {errors}"


#: chapters that open with a generated "What this chapter finds" box
FINDINGS_CHAPTERS = ("00_answer", "01_cohort", "backbone_", "03_results", "04_latent", "05_saliency", "06_label_noise",
                     "07_methods", "08_exercises", "09_beyond")


def test_every_result_chapter_opens_with_its_findings():
    pages = [p for p in _pages() if p.name.startswith(FINDINGS_CHAPTERS)]
    assert pages, "no result chapter in the built book"
    for page in pages:
        html = page.read_text(encoding="utf-8")
        title = html.find('<article class="bd-article"')  # the chapter itself (navigation and print TOC come before)
        box = html.find("What this chapter finds", title)
        assert title > 0 and box > 0, f"{page.name}: no findings box"
        first_heading = html.find("<h2", title)
        assert first_heading < 0 or box < first_heading, f"{page.name}: the findings box is not before the first section"


def test_the_answer_page_renders_its_figure_and_sentences(server: str, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    page = next(p for p in _pages() if p.name == "00_answer.html")
    browser.get(f"{server}/{page.relative_to(HTML).as_posix()}")
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length > 0"))
    text = browser.find_element("tag name", "main").text
    assert "the coarse label" in text and "the fine label" in text and "seed" in text
    assert "convergence targets" in text  # how far the verdicts' models are results


def test_the_methods_page_scores_the_convergence_targets():
    from oaprobe.analysis.convergence import TARGET_COLUMNS

    html = next(p for p in _pages() if p.name == "07_methods.html").read_text(encoding="utf-8")
    table = html[html.find('id="convergence-targets"'):]
    assert 'id="convergence-targets"' in html and "<table" in table, "no convergence-targets section with its table"
    assert all(f">{c}<" in table[:table.find("</thead>")] for c in TARGET_COLUMNS)


def test_the_results_page_says_what_the_build_can_detect():
    html = next(p for p in _pages() if p.name == "03_results.html").read_text(encoding="utf-8")
    section = html[html.find('id="what-this-build-s-test-set-can-detect"'):]
    assert 'id="what-this-build-s-test-set-can-detect"' in html and "<table" in section, "no detectable-difference section with its table"
    assert ">detectable, knee level<" in section and "a knee-level paired test detects" in html


def test_folded_tables_open(server: str, browser):
    """A folded table opens on a click and carries its CSV; provenance notes start folded."""
    import base64

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = next(p for p in _pages() if p.name == "03_results.html")
    browser.get(f"{server}/{page.relative_to(HTML).as_posix()}")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    folds = browser.find_elements(By.CSS_SELECTOR, "details.oaprobe-fold")
    assert folds, "no folded table on the results page"
    fold = next((f for f in folds if f.find_elements(By.CSS_SELECTOR, "table")), None)
    assert fold is not None, "no fold on the results page holds a table"
    assert fold.get_attribute("open") is None
    browser.execute_script("arguments[0].scrollIntoView(); arguments[0].querySelector('summary').click();", fold)
    WebDriverWait(browser, 10).until(lambda d: fold.get_attribute("open") is not None)
    assert fold.find_element(By.CSS_SELECTOR, "table").is_displayed(), "the opened fold shows no table"
    link = fold.find_element(By.CSS_SELECTOR, "a.oaprobe-csv")
    header = base64.b64decode(link.get_attribute("href").split(",", 1)[1]).decode().splitlines()[0]
    assert link.get_attribute("download").endswith(".csv") and "," in header, "the fold's CSV link is not a CSV"
    notes = browser.find_elements(By.CSS_SELECTOR, "details.oaprobe-provenance")
    assert notes and all(n.get_attribute("open") is None for n in notes), "provenance notes are missing or open"


# ---------------------------------------------------------------- raw identifiers in visible text
#: Elements whose text a reader does not see as prose: code, scripts, cell sources, provenance folds.
HIDDEN_TAGS = {"script", "style", "code", "pre", "head", "svg", "kbd", "samp"}
HIDDEN_CLASSES = {"oaprobe-provenance", "cell_input", "highlight", "headerlink"}
VOID_TAGS = {"br", "img", "meta", "link", "input", "hr", "wbr", "source", "col", "area", "base", "embed", "param", "track"}
SNAKE = re.compile(r"(?<![\w./-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w/-])")
RUN_HASH = re.compile(r"(?<![0-9a-f])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{12}(?![0-9a-f])")


@functools.cache
def backbone_names() -> re.Pattern:
    """A backbone's registry name (``resnet3d``) where prose should carry its title (``ResNet3D``)."""
    from oaprobe.models.backbones import list_backbones

    return re.compile(r"(?<![\w./-])(?:" + "|".join(map(re.escape, list_backbones())) + r")(?![\w/-])")


class _VisibleText(HTMLParser):
    """The text of a page a reader sees as prose (see HIDDEN_TAGS and HIDDEN_CLASSES)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID_TAGS:
            return
        classes = set((dict(attrs).get("class") or "").split())
        self.stack.append(bool(self.stack and self.stack[-1]) or tag in HIDDEN_TAGS or bool(classes & HIDDEN_CLASSES))

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID_TAGS and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1]):
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _VisibleText()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_visible_text_scan_sees_prose_only():
    html = ('<p>KL QWK of <b>single_kl</b> 0123456789ab</p><pre>kl_qwk</pre><p><code>oa_weight</code> ok<br>x</p>'
            '<details class="oaprobe-provenance"><summary>Provenance</summary><p>Runs: abcdef123456.</p></details>')
    text = visible_text(html)
    assert SNAKE.findall(text) == ["single_kl"] and RUN_HASH.findall(text) == ["0123456789ab"]
    assert backbone_names().findall("M3T and m3t, --backbone resnet3d, runs/nnmamba-x") == ["m3t", "resnet3d"]
    assert "oa_weight" not in text and "abcdef123456" not in text and "ok x" in text


#: Identifiers still printed by sentences outside this test's reach, by page, each with the code that prints
#: it (issue 24; the smoke book of 2026-12-04), by a part of the page name. Anything else fails the test.
PENDING_IDENTIFIERS: dict[str, set[str]] = {}


def _pending(page: Path) -> set[str]:
    return set().union(*(v for k, v in PENDING_IDENTIFIERS.items() if k in page.stem))


def test_no_raw_identifiers_in_visible_text():
    """No snake_case field or metric name, no backbone registry name (its title instead) and no 12-hex
    run hash outside the provenance folds, in any page's visible text (code, cell sources and
    provenance notes excepted; see PENDING_IDENTIFIERS)."""
    found = []
    for page in _pages():
        text = visible_text(page.read_text(encoding="utf-8"))
        for kind, pattern in (("identifier", SNAKE), ("run hash", RUN_HASH), ("backbone name", backbone_names())):
            hits = sorted(set(pattern.findall(text)) - (_pending(page) if kind == "identifier" else set()))
            if hits:
                found.append(f"{page.relative_to(HTML)}: {kind}s {', '.join(hits[:12])}")
    assert not found, "raw identifiers a reader sees:\n" + "\n".join(found)


def test_every_figure_has_a_text_alternative():
    """Each plotly figure sits in a role="img" div whose aria-label is its one-sentence summary."""
    missing = []
    for page in _pages():
        html = page.read_text(encoding="utf-8")
        labels = re.findall(r'<div class="oaprobe-figure" role="img" aria-label="([^"]+)">', html)
        if html.count("Plotly.newPlot") != len(labels) or any(len(label) < 12 for label in labels):
            missing.append(f"{page.name}: {html.count('Plotly.newPlot')} figures, {len(labels)} labelled")
    assert not missing, "figures without a text alternative:\n" + "\n".join(missing)


def test_every_image_has_a_text_alternative():
    """Each <img> (the model diagram, the phantom montage) has an alt text that describes it, not a file name."""
    missing = []
    for page in _pages():
        for tag in re.findall(r"<img\b[^>]*>", page.read_text(encoding="utf-8")):
            alt = re.search(r'\balt="([^"]*)"', tag)
            if alt is None or len(alt.group(1)) < 12 or re.search(r"\.(png|svg|jpe?g|gif)$", alt.group(1)):
                missing.append(f"{page.name}: {tag[:120]}")
    assert not missing, "images without a text alternative:\n" + "\n".join(missing)


#: In the page: for every plotly figure, its title's box against the toolbar's, and every pair of tick labels
#: (of all its panels) that overlap; returns text lines, one per problem.
_LAYOUT_JS = """
const boxes = (root, sel) => Array.from(root.querySelectorAll(sel)).map(e => [e, e.getBoundingClientRect()])
  .filter(([e, r]) => r.width > 0 && r.height > 0);
const hit = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
const out = [];
document.querySelectorAll('.js-plotly-plot').forEach((fig, i) => {
  const title = boxes(fig, '.gtitle'), bar = boxes(fig, '.modebar');
  if (title.length && bar.length && hit(title[0][1], bar[0][1])) out.push(`figure ${i}: title under the toolbar`);
  const ticks = boxes(fig, '.xtick text, .ytick text');
  for (let a = 0; a < ticks.length; a++) for (let b = a + 1; b < ticks.length; b++)
    if (hit(ticks[a][1], ticks[b][1])) { out.push(`figure ${i}: ticks '${ticks[a][0].textContent}' and '${ticks[b][0].textContent}' overlap`); return; }
});
return out;
"""


@pytest.mark.parametrize("width", [800, 1280])
def test_figure_titles_and_ticks_stay_clear(width: int, server: str, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    problems = []
    browser.set_window_size(width, 1600)
    try:
        for page in (p for p in _pages() if "Plotly.newPlot" in p.read_text(encoding="utf-8")):
            browser.get(f"{server}/{page.relative_to(HTML).as_posix()}")
            WebDriverWait(browser, 30).until(
                lambda d: d.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length > 0"))
            browser.execute_script("window.dispatchEvent(new Event('resize'));")
            problems += [f"{page.name} at {width} px: {p}" for p in browser.execute_script(_LAYOUT_JS)]
    finally:
        browser.set_window_size(1280, 1600)
    assert not problems, "\n".join(problems)


def test_findings_come_before_any_code_fold():
    """No "Show code cell source" bar (a setup cell's fold) above a chapter's findings box."""
    late = []
    for page in (p for p in _pages() if p.name.startswith(FINDINGS_CHAPTERS)):
        html = page.read_text(encoding="utf-8")
        article = html.find('<article class="bd-article"')
        box = html.find("What this chapter finds", article)
        folds = html[article:box].count("hide-input") if box > 0 else 0
        if folds:
            late.append(f"{page.name}: {folds} code folds before its findings")
    assert not late, "\n".join(late)
