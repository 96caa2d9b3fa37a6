"""The package's layers: what a module may import (book/architecture.md, "Imports follow the table")."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import oaprobe

PACKAGE = Path(oaprobe.__file__).parent


def _modules(folder: str) -> list[str]:
    return sorted(f"oaprobe.{folder}.{p.stem}" for p in (PACKAGE / folder).glob("*.py") if p.stem != "__init__")


def _imported(path: Path) -> set[str]:
    """Every ``oaprobe`` module a file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {n for n in names if n.startswith("oaprobe")}


def test_the_report_layer_loads_no_torch():
    """Importing every report module (and the grids and facts they read) leaves torch unloaded, so
    none of them loads it alone; the planted control shows the check sees torch when it is loaded."""
    light = ["oaprobe.report", *_modules("report"), "oaprobe.sweep", "oaprobe.config", "oaprobe.facts"]
    code = ("import importlib, sys\n"
            "for name in sys.argv[2:]: importlib.import_module(name)\n"
            "print(sorted(m for m in ('torch', 'monai', 'umap', 'ray') if m in sys.modules))")
    for control, expected in ((["oaprobe.models.backbones"], "['torch']"), (light, "[]")):
        out = subprocess.run([sys.executable, "-c", code, "-", *control], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected, (control, out.stdout)


def test_lower_layers_import_nothing_above_them():
    for path in (PACKAGE / "analysis").glob("*.py"):
        assert not {n for n in _imported(path) if n.startswith("oaprobe.report")}, path.name
    assert _imported(PACKAGE / "config.py") <= {"oaprobe.errors", "oaprobe.facts"}
    assert _imported(PACKAGE / "facts.py") == set() and _imported(PACKAGE / "errors.py") == set()
    assert "oaprobe.config" not in _imported(PACKAGE / "device.py")
