"""Stated quantities: each number or verdict the book states about a comparison carries a hidden key.

Why: the same comparison (same runs, metric, truth and seeds) is stated on several pages (the
answer, a backbone chapter, the exercises, "beyond the dual head"). A sentence that states one
appends an invisible ``<span hidden data-key=... data-value=...>``; :func:`contradictions` reads
them back from the built pages, so one test finds the same quantity stated with two values or two
verdicts anywhere in the book (``tests/test_book_consistency.py``).

Example:
    >>> text = "dual +0.010: helps" + mark(stat_key("resnet3d", "dual", "single_kl", "kl_qwk", "kl_clean", 3),
    ...                                   "+0.010 helps")
    >>> collect(text)
    [('resnet3d: dual - single_kl | kl_qwk | kl_clean | 3 seeds', '+0.010 helps')]
    >>> strip_marks(text)
    'dual +0.010: helps'
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

_MARK = re.compile(r'<span class="oaprobe-stat" hidden data-key="([^"]*)" data-value="([^"]*)"></span>')


def stat_key(subject: str, a: str, b: str, metric: str, truth: str, n: int | float) -> str:
    """The key of one quantity: ``a`` minus ``b`` (or ``a`` alone when ``b`` is empty) on ``subject``
    (a backbone, with a cohort qualifier where it is not the main one), ``metric``, ``truth``, seeds."""
    what = f"{a} - {b}" if b else str(a)
    return f"{subject}: {what} | {metric} | {truth or 'none'} | {int(n)} seeds"


def mark(key: str, value: str) -> str:
    """The invisible span that states ``value`` (a number, a verdict or both) for ``key``."""
    return (f'<span class="oaprobe-stat" hidden data-key="{html.escape(key, quote=True)}" '
            f'data-value="{html.escape(value, quote=True)}"></span>')


def collect(text: str) -> list[tuple[str, str]]:
    """Every (key, value) stated in ``text`` (a page's HTML or a generated sentence), in order."""
    return [(html.unescape(k), html.unescape(v)) for k, v in _MARK.findall(text)]


def strip_marks(text: str) -> str:
    """``text`` without its marks (what a reader sees)."""
    return _MARK.sub("", text)


def split_marks(text: str) -> tuple[str, str]:
    """``text`` without its marks, and the marks (to re-append after escaping the visible text)."""
    return strip_marks(text), "".join(m.group(0) for m in _MARK.finditer(text))


def contradictions(statements: Iterable[tuple[str, str, str]]) -> dict[str, dict[str, list[str]]]:
    """Of (page, key, value) statements, the keys stated with more than one value: key -> value ->
    the pages that state it."""
    seen: dict[str, dict[str, list[str]]] = {}
    for page, key, value in statements:
        pages = seen.setdefault(key, {}).setdefault(value, [])
        if page not in pages:
            pages.append(page)
    return {k: v for k, v in seen.items() if len(v) > 1}
