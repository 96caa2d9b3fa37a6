"""The chapters' one setup call: named third-party warnings silenced, every other one shown."""

from __future__ import annotations

import warnings

import pytest

from oaprobe.notebook import setup
from oaprobe.parameters import ParameterError


def test_setup_silences_only_the_named_warnings():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        setup("answer", {"preset": "smoke"})
        warnings.warn("IProgress not found. Please update jupyter and ipywidgets.", Warning, stacklevel=1)
        warnings.warn("Only one sample available. You may want to reshape your data array", UserWarning, stacklevel=1)
        warnings.warn("something of our own", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something of our own"]


def test_setup_checks_the_chapters_parameters():
    with warnings.catch_warnings(), pytest.raises(ParameterError, match="preset = 'no-such-preset'"):
        setup("answer", {"preset": "no-such-preset"})
