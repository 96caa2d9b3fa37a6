"""Sphinx extension: load plotly.js (4.8 MB) only on the pages that draw a plotly figure.

Figures are rendered without plotly.js inside (``oaprobe.figures.BookRenderer``), so a page needs
the library once, in its head, before the figures' inline ``Plotly.newPlot`` calls run; a page
without any (the introduction, the glossary, teach.md) loads none. ``oaprobe book`` copies the file
from the installed plotly package to ``book/_static``.
"""

from __future__ import annotations

from typing import Any

PLOTLY_JS = "plotly.min.js"
#: what every figure's inline script calls (plotly.io.to_html without plotly.js)
FIGURE_CALL = "Plotly.newPlot"


def needs_plotly(body: str) -> bool:
    """Whether a page's rendered body draws a plotly figure."""
    return FIGURE_CALL in body


def _add_plotly(app, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    if needs_plotly(context.get("body") or ""):
        app.add_js_file(PLOTLY_JS, priority=800)  # Sphinx: a file added on this event goes to this page only


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", _add_plotly)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
