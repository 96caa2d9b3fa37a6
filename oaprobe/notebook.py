"""What every chapter notebook runs first, in one call: its parameters checked, the named
third-party warnings a reader cannot act on silenced (every other warning shows), tables rounded.
Every notebook in ``notebooks/`` opens with ``setup("<chapter>", globals())``.
"""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd

from oaprobe.parameters import check_notebook_parameters

#: (category, message regex) of third-party warnings silenced in the chapters; why each is harmless is
#: on its line. Nothing of oaprobe's own is silenced.
QUIET_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # tqdm.auto in a kernel without ipywidgets: the bars fall back to text, which is what a build wants
    (Warning, "IProgress not found"),
    # scikit-learn's covariance of a grade with one knee (smoke-sized test sets): analysis.latent's LDA
    # falls back to its SVD solver there, and the chapter's finding limit says the test set is too small
    (UserWarning, "Only one sample available"),
)


def setup(chapter: str, namespace: dict[str, Any]) -> None:
    """Check ``chapter``'s parameters in ``namespace`` (the notebook's ``globals()``), silence
    :data:`QUIET_WARNINGS`, and show tables at 3 decimals."""
    check_notebook_parameters(chapter, namespace)
    for category, message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    pd.set_option("display.precision", 3)
