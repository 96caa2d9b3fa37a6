"""Sphinx extension: drop repeated inline <script> bodies from each page.

sphinx-thebe 0.3.1 registers its `const THEBE_JS_URL = ...` snippet on every
`env-before-read-docs`, and Jupyter Book fires that event more than once per build, so pages
declared the constant twice ("Identifier 'THEBE_JS_URL' has already been declared"); its filename is
None on one registration and "" on the other, so scripts are compared by (filename or "", body).
"""

from __future__ import annotations

from typing import Any


def _dedupe(app, pagename, templatename, context: dict[str, Any], doctree) -> None:
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in context.get("script_files", []):
        key = (str(getattr(script, "filename", script) or ""), str(getattr(script, "attributes", {}).get("body", "")))
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    context["script_files"] = unique


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
