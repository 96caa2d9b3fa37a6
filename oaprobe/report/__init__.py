"""What the book's chapters call: studies over run folders, their tables, and generated sentences.

Nothing is imported until a name is asked for (``from oaprobe.report import Study`` loads
:mod:`oaprobe.report.study` only), so importing one report module never loads the others.
"""

from __future__ import annotations

import importlib

#: public name -> the module that defines it
_HOMES = {
    "CohortView": "cohort", "example_slices": "cohort", "load_cohort": "cohort",
    "Exercises": "exercises", "methods_tables": "methods", "NoiseStudy": "noise", "Study": "study",
    "describe_paired": "sentences", "describe_seed_level": "sentences", "tally": "sentences",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'oaprobe.report' has no attribute {name!r}")
    return getattr(importlib.import_module(f"oaprobe.report.{_HOMES[name]}"), name)
