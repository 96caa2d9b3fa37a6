"""Tests of the realism report: real sizes at the paper grid, doubled ones at coarse grids."""

import pytest

from oaprobe.data.realism import PUBLISHED, montage_png, realism_table


@pytest.fixture(scope="module")
def table():
    return realism_table(("default", "paper"), n_knees=1).set_index(["preset", "quantity"])["phantom"]


def test_paper_grid_has_the_published_sizes(table):
    for quantity in ("femoral cartilage thickness (mm)", "tibial cartilage thickness (mm)",
                     "patellar cartilage thickness (mm)", "medial joint-space width (mm)"):
        low, high = PUBLISHED[quantity]
        assert low - 0.8 <= table[("paper", quantity)] <= high + 0.8, quantity


def test_coarse_grid_doubles_the_joint_space(table):
    ratio = table[("default", "medial joint-space width (mm)")] / table[("paper", "medial joint-space width (mm)")]
    assert 1.6 < ratio < 2.6
    assert table[("paper", "meniscus / cartilage intensity")] < 0.5  # menisci are dark


def test_montage_is_a_png():
    assert montage_png("smoke", severities=(0.5,)).startswith(b"\x89PNG\r\n\x1a\n")
