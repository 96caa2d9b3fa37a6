"""What each chapter parameter accepts, checked in one place before a chapter's work starts.

Two callers share it: ``oaprobe chapter`` checks the ``-p`` values before papermill starts a
kernel, and every chapter notebook's first cell after its parameters calls
:func:`check_notebook_parameters`, so ``papermill -p`` (which accepts any name with only a
warning) refuses an unknown parameter or a bad value the same way: one line naming the
parameter, what was given and what is expected.

Example:
    >>> check_value("backbone", "seeds", [0, 1])
    [0, 1]
    >>> check_value("backbone", "seeds", "abc")
    Traceback (most recent call last):
    ...
    oaprobe.parameters.ParameterError: chapter backbone: parameter seeds = 'abc'; expected null (the preset's seeds) or a JSON list of at least 2 distinct integers >= 0, e.g. [0, 1, 2]
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from typing import Any

from oaprobe.config import PRESETS, RunConfig, get_preset
from oaprobe.errors import ConfigError, OaprobeError
from oaprobe.facts import BACKBONES, MODES


class ParameterError(OaprobeError):
    """A chapter parameter the chapter does not have, or a value it cannot use."""


def _int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _preset(v: Any) -> bool:
    return v in PRESETS


def _backbone(v: Any) -> bool:
    return v in BACKBONES


def _seeds(v: Any) -> bool:
    return v is None or (isinstance(v, list) and len(v) >= 2 and all(_int(s, 0) for s in v) and len(set(v)) == len(v))


def _modes(v: Any) -> bool:
    return isinstance(v, list) and len(v) == len(MODES) and set(v) == set(MODES)


#: parameter -> (accepts the value?, what is expected); the run dict is checked by RunConfig too
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "preset": (_preset, "one of smoke, course, default, gpu, paper"),
    "runs_root": (_text, "a folder of run folders (text)"),
    "cohorts_root": (_text, "a folder of cohorts (text)"),
    "manifest": (_text, "\"\" (the preset's synthetic cohort) or a manifest path (text)"),
    "backbone": (_backbone, "a backbone name (oaprobe train --help lists them)"),
    "modes": (_modes, f"all of {', '.join(MODES)} in any order (the chapter compares dual with both single-task "
                      "baselines; to compare two procedures of your choice use oaprobe compare)"),
    "seeds": (_seeds, "null (the preset's seeds) or a JSON list of at least 2 distinct integers >= 0, e.g. [0, 1, 2]"),
    "bootstrap_B": (lambda v: _int(v, 100), "an integer >= 100 (bootstrap resamples)"),
    "umap_seed": (lambda v: _int(v, 0), "an integer >= 0"),
    "downloads": (_text, "\"\" (no file) or a folder for the page's downloadable files (text)"),
    "run": (lambda v: isinstance(v, dict), 'a JSON object of RunConfig fields, e.g. {"ema_decay": 0.99}'),
}
#: RunConfig fields a chapter sets itself: ``run`` cannot hold them
CHAPTER_FIELDS = ("manifest", "backbone", "mode", "seed")


def check_value(chapter: str, name: str, value: Any, preset: str = "default") -> Any:
    """``value`` when parameter ``name`` of ``chapter`` accepts it, else a one-line ParameterError."""
    accepts, expected = RULES.get(name, (lambda v: True, ""))
    if not accepts(value):
        raise ParameterError(f"chapter {chapter}: parameter {name} = {value!r}; expected {expected}")
    if name == "run":
        _check_run(chapter, value, preset)
    return value


def _check_run(chapter: str, run: dict[str, Any], preset: str) -> None:
    """Every key a RunConfig field the chapter does not set, every value one RunConfig takes."""
    fields = [f.name for f in dataclasses.fields(RunConfig) if f.name not in CHAPTER_FIELDS]
    for key in run:
        if key not in fields:
            raise ParameterError(f"chapter {chapter}: parameter run has key {key!r}; expected RunConfig fields "
                                 f"({', '.join(fields)})")
    try:
        get_preset(preset if _preset(preset) else "default").run_config("", **run)
    except (ConfigError, TypeError, ValueError) as err:
        raise ParameterError(f"chapter {chapter}: parameter run = {run!r}: {err}") from None


def check_parameters(chapter: str, given: dict[str, Any], known: list[str] | dict[str, Any]) -> dict[str, Any]:
    """``given`` when every name is one of ``known`` (the chapter's parameters) and every value is
    accepted; the first problem as a one-line ParameterError."""
    for name in given:
        if name not in known:
            raise ParameterError(f"chapter {chapter}: no parameter {name!r}; expected one of {', '.join(known)}")
    preset = given.get("preset", "default")
    for name, value in given.items():
        check_value(chapter, name, value, preset)
    return given


def _assigned(source: str) -> list[str]:
    """Names a cell assigns at top level, in order (a parameters cell, or papermill's injected one)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return []
    return [t.id for s in body if isinstance(s, ast.Assign) for t in s.targets if isinstance(t, ast.Name)]


#: the first line of the cell papermill injects after a notebook's parameters cell
INJECTED_HEADER = "# Parameters"


def check_notebook_parameters(chapter: str, namespace: dict[str, Any]) -> None:
    """In a chapter notebook, right after its parameters: refuse a parameter papermill injected that the
    chapter does not have (papermill only warns), and any value the chapter cannot use.

    ``namespace`` is the notebook's ``globals()``; its input history ``In`` holds the parameters
    cell and papermill's injected cell (absent when the notebook runs with its defaults).
    """
    cells = [c for c in namespace.get("In", []) if isinstance(c, str)]
    injected = next((i for i, c in enumerate(cells) if c.lstrip().startswith(INJECTED_HEADER)), None)
    if injected is not None and injected > 0:
        known = _assigned(cells[injected - 1])
        check_parameters(chapter, {n: namespace[n] for n in _assigned(cells[injected])}, known)
    present = {n: namespace[n] for n in RULES if n in namespace}
    check_parameters(chapter, present, list(present))
