"""``oaprobe chapter NAME -p key value ...``: rerun one chapter with new parameters and open it.

Why: a reader who changes a parameter wants to see the chapter, not an executed notebook whose
sentences read ``{glue:text}`n_runs```. The chapter is executed by the book's own
:func:`oaprobe.book.execute_chapter` (papermill, the book's figure renderer) on the runs already
built, and rendered to one standalone HTML page: glued numbers filled in, setup code left out,
plotly.js and the book's stylesheet inline, so the page opens offline from disk.

Example:
    >>> fill_glue("{glue:text}`n` runs, AUC {glue:text}`auc:.2f`", {"n": {"text/plain": "27"},
    ...                                                             "auc": {"text/plain": "0.8712"}})
    '27 runs, AUC 0.87'
"""

from __future__ import annotations

import ast
import html
import json
import re
import uuid
from pathlib import Path
from typing import Any

import nbformat
import papermill
from markdown_it import MarkdownIt
from plotly.offline import get_plotlyjs

from oaprobe.book import NOTEBOOKS, ROOT, STATIC, Chapter, execute_chapter
from oaprobe.errors import OaprobeError
from oaprobe.io import write_atomic
from oaprobe.parameters import check_parameters

#: The chapters one can rerun: notebook stems in notebooks/.
CHAPTERS: tuple[str, ...] = ("answer", "cohort", "backbone", "results", "latent", "saliency", "label_noise",
                             "methods", "exercises", "beyond")
GLUE_PREFIX = "application/papermill.record/"
_GLUE_ROLE = re.compile(r"\{glue(?::(text|md|any))?\}`([^`:]+)(?::([^`]*))?`")
#: a link to another page of the book: a standalone page has no other pages, so only its text is kept
_RELATIVE_LINK = re.compile(r'<a href="(?![a-z]+:|#)[^"]*">(.*?)</a>', re.S)
#: A MyST admonition fence (the chapters' findings boxes): title, options, body.
_ADMONITION = re.compile(r"^:::\{admonition\}[ \t]*([^\n]*)\n((?::\w+:[^\n]*\n)*)(.*?)^:::[ \t]*$", re.M | re.S)


class ChapterCommandError(OaprobeError):
    """A chapter name or parameter the command cannot use, or a chapter that failed to execute."""


def parse_parameters(pairs: list[list[str]] | None, known: dict[str, Any], chapter: str) -> dict[str, Any]:
    """``-p key value`` pairs as papermill parameters: values read as JSON when they parse
    (``3``, ``true``, ``{"width": 0.5}``), else as text; every key must be the chapter's own and
    every value one it accepts (:mod:`oaprobe.parameters`)."""
    out: dict[str, Any] = {}
    for key, text in pairs or []:
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return check_parameters(chapter, out, known)


def notebook_parameters(name: str, notebooks: Path) -> dict[str, Any]:
    """The parameters cell of chapter ``name`` (papermill reads it; nothing is executed)."""
    if name not in CHAPTERS:
        raise ChapterCommandError(f"chapter {name!r}: expected one of {', '.join(CHAPTERS)}")
    return {k: v.get("default") for k, v in papermill.inspect_notebook(str(notebooks / f"{name}.ipynb")).items()}


def glue_values(nb: Any) -> dict[str, dict[str, str]]:
    """Name -> mime bundle of every value the notebook glued (``myst_nb.glue``), prefixes stripped."""
    found: dict[str, dict[str, str]] = {}
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if meta and "name" in meta:
                prefix = meta.get("mime_prefix", "")
                found[meta["name"]] = {k[len(prefix):]: v for k, v in output.get("data", {}).items()}
    return found


def _glued_text(bundle: dict[str, str], kind: str, spec: str | None) -> str:
    text = str(bundle.get("text/markdown") if kind == "md" and "text/markdown" in bundle else bundle.get("text/plain", ""))
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    if spec:
        try:
            return format(float(text), spec)
        except ValueError:
            return text
    return text


def fill_glue(markdown: str, values: dict[str, dict[str, str]]) -> str:
    """Markdown with each ``{glue:text}`name``` (and ``{glue:md}``, ``name:.2f`` formats) replaced by its value."""
    def one(match: re.Match) -> str:
        kind, name, spec = match.group(1) or "any", match.group(2), match.group(3)
        if name not in values:
            return f"[{name}: not glued]"
        return _glued_text(values[name], kind, spec)

    return _GLUE_ROLE.sub(one, markdown)


def render_markdown(text: str, md: Any) -> str:
    """Markdown as HTML, MyST admonition fences as the book's boxes (title, then the body's markdown);
    a ``dropdown`` one folded in ``<details>`` (the exercises' computed answers)."""
    out, at = [], 0
    for m in _ADMONITION.finditer(text):
        css = re.search(r":class:\s*(\S+)", m.group(2))
        title, body = html.escape(m.group(1).strip()), md.render(m.group(3))
        if css and css.group(1) == "dropdown":  # folded, as the book folds it: the reader opens it
            box = f'<details class="admonition dropdown"><summary class="admonition-title">{title}</summary>{body}</details>'
        else:
            box = (f'<div class="admonition {css.group(1) if css else "note"}"><p class="admonition-title">'
                   f"{title}</p>{body}</div>")
        out += [md.render(text[at:m.start()]), box]
        at = m.end()
    return "".join(out + [md.render(text[at:])])


def _output_html(output: dict, md: Any) -> str:
    """One cell output as HTML (the glued values stay out: the text shows them)."""
    if output.get("output_type") == "stream":
        return "" if output.get("name") == "stderr" else f"<pre>{html.escape(output.get('text', ''))}</pre>"
    if output.get("output_type") == "error":
        return f"<pre class=\"error\">{html.escape(output.get('ename', ''))}: {html.escape(output.get('evalue', ''))}</pre>"
    data = output.get("data", {})
    if any(k.startswith(GLUE_PREFIX) for k in data):
        return ""
    if "text/html" in data:
        return str(data["text/html"])
    if "image/png" in data:
        return f'<img alt="figure" src="data:image/png;base64,{data["image/png"]}">'
    if "text/markdown" in data:
        return render_markdown(str(data["text/markdown"]), md)
    return f"<pre>{html.escape(str(data.get('text/plain', '')))}</pre>" if "text/plain" in data else ""


def render_html(nb: Any, title: str, assets: dict[str, str]) -> str:
    """A standalone page of an executed chapter: markdown with its glue filled, every output, no code,
    and links to other pages of the book reduced to their text (there are no other pages beside it).

    ``assets``: ``{"plotly": plotly.js source, "css": the book's stylesheet}``, both inlined.
    """
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    values = glue_values(nb)
    body = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            body.append(render_markdown(fill_glue(cell.source, values), md))
        elif cell.cell_type == "code" and "remove-output" not in cell.get("metadata", {}).get("tags", []):
            body += [_output_html(o, md) for o in cell.get("outputs", [])]
    main = _RELATIVE_LINK.sub(r"\1", "".join(body))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}</title>"
            f"<style>body{{max-width:60rem;margin:2rem auto;padding:0 1rem;font-family:sans-serif;line-height:1.5}}"
            f".admonition{{border-left:4px solid #009E73;padding:.2rem 1rem;margin:1rem 0;background:#f3faf7}}"
            f".admonition-title{{font-weight:600}}{assets.get('css', '')}</style><script>{assets.get('plotly', '')}</script></head>"
            f"<body><main>{main}</main></body></html>\n")


def _assets() -> dict[str, str]:
    css = ROOT / STATIC / "oaprobe.css"
    return {"plotly": get_plotlyjs(), "css": css.read_text(encoding="utf-8") if css.is_file() else ""}


def _literal(text: Any) -> Any:
    """A parameters-cell default (papermill gives its source text) as a value."""
    try:
        return ast.literal_eval(text) if isinstance(text, str) else text
    except (ValueError, SyntaxError):
        return text


def rerun_changes(params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The parameters whose value differs from the book's (the notebook's defaults)."""
    return {k: v for k, v in params.items() if v != _literal(defaults.get(k))}


def mark_rerun(nb: Any, changes: dict[str, Any]) -> str:
    """Say on the page what was rerun: the first heading gets the changed parameters, and a note below it
    lists them (a saved page is never mistaken for the book's); returns the new title."""
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    lines = first.source.splitlines()
    heading = lines[0].lstrip("#").strip() if lines and lines[0].startswith("#") else "Chapter"
    shown = ", ".join(f"{k} = {json.dumps(v)}" for k, v in changes.items())
    title = f"{heading} (rerun: {shown})" if changes else f"{heading} (rerun with the book's parameters)"
    note = ("**A rerun, not the book's page.** Parameters that differ from the book's: "
            + "; ".join(f"`{k}` = `{json.dumps(v)}`" for k, v in changes.items())
            + ". Every number below comes from these settings." if changes else
            "**A rerun with the book's parameters.**")
    first.source = "\n".join([f"# {title}", "", note, *lines[1:]])
    return title


def run_chapter(name: str, pairs: list[list[str]] | None, out_dir: Path, progress: bool = False) -> Path:
    """Execute chapter ``name`` with the ``-p`` parameters into ``out_dir/NAME.ipynb`` and render it to
    ``out_dir/NAME.html`` (both written whole or not at all); return the HTML page. The page's title
    and first lines name every parameter that differs from the book's; ``progress``: a bar of cells."""
    defaults = notebook_parameters(name, NOTEBOOKS)
    params = parse_parameters(pairs, defaults, name)
    out_dir = Path(out_dir).resolve()
    try:  # a fresh cache key: the command always executes
        execute_chapter(Chapter(f"{name}.ipynb", f"{name}.ipynb", params), uuid.uuid4().hex, out_dir, NOTEBOOKS,
                        progress)
    except Exception as err:  # papermill's errors: the failing cell's exception, as one line
        if isinstance(err, OaprobeError):
            raise
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ChapterCommandError(f"chapter {name} failed ({out_dir / (name + '.ipynb')} not updated): {first}") from None
    nb = nbformat.read(out_dir / f"{name}.ipynb", as_version=4)
    title = mark_rerun(nb, rerun_changes(params, defaults))
    write_atomic(out_dir / f"{name}.ipynb", nbformat.writes(nb).encode("utf-8"))
    page = out_dir / f"{name}.html"
    write_atomic(page, render_html(nb, f"oaprobe: {title}", _assets()).encode("utf-8"))
    return page
