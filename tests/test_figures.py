"""Tests of oaprobe.figures: mask outlines, trace counts of each builder, the offline book renderer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from oaprobe import figures
from oaprobe.figures import BOOK_RENDERER, BookRenderer, _outline


def test_outline_of_a_filled_square_is_its_border():
    mask = np.zeros((7, 7), bool)
    mask[2:5, 1:6] = True  # 3 x 5 rectangle
    expected = mask.copy()
    expected[3, 2:5] = False  # the 3 interior pixels
    np.testing.assert_array_equal(_outline(mask), expected)
    assert _outline(mask).sum() == 12


def test_outline_of_single_pixel_and_empty_mask():
    mask = np.zeros((5, 5), int)
    mask[2, 2] = 1
    np.testing.assert_array_equal(_outline(mask), mask.astype(bool))
    assert not _outline(np.zeros((4, 4))).any()


def test_grade_distribution_one_bar_trace_per_label_column():
    table = pd.DataFrame({"kl_clean": [0, 1, 2, 2, 4], "kl": [0, 2, 2, 3, 4]})
    fig = figures.grade_distribution(table)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    by_name = {t.name: list(t.y) for t in fig.data}
    assert by_name["clean grade"] == [1, 1, 2, 0, 1] and by_name["observed grade"] == [1, 0, 2, 1, 1]
    assert len(figures.grade_distribution(table.assign(kl_clean=np.nan)).data) == 1


def test_confusion_heatmap_row_shares():
    m = np.diag([2, 4, 0, 1, 3])
    m[1, 0] = 4
    fig = figures.confusion_heatmap(m, "pred", "truth", "t")
    assert len(fig.data) == 1 and fig.data[0].type == "heatmap"
    z = np.asarray(fig.data[0].z)
    np.testing.assert_allclose(z[1, :2], [0.5, 0.5])
    np.testing.assert_allclose(z[2], 0.0)  # an empty row stays 0, no division by zero
    raw = figures.confusion_heatmap(m, "pred", "truth", "t", normalise=False)
    np.testing.assert_array_equal(np.asarray(raw.data[0].z), m)


def test_slice_grid_traces_per_image_outline_and_overlay():
    images = [np.random.default_rng(i).random((8, 8)) for i in range(3)]
    masks = [np.pad(np.ones((4, 4), bool), 2) for _ in range(3)]
    assert len(figures.slice_grid(images, ["a", "b", "c"], cols=2).data) == 3
    fig = figures.slice_grid(images, ["a", "b", "c"], outlines=masks, overlays=images, cols=2)
    assert len(fig.data) == 9
    scatter = [t for t in fig.data if t.type == "scatter"]
    assert len(scatter) == 3 and len(scatter[0].x) == 12  # the border of a 4 x 4 square


def test_training_curves_one_line_per_run():
    history = pd.DataFrame({"epoch": [1, 2] * 3, "train_loss": np.arange(6.0), "mode": ["dual"] * 4 + ["single_oa"] * 2,
                            "run_id": ["a", "a", "b", "b", "c", "c"]})
    fig = figures.training_curves(history)
    assert len(fig.data) == 3


def test_metric_points_error_bars():
    t = pd.DataFrame({"mode": ["single_oa", "single_kl", "dual"], "metric": ["m"] * 3, "estimate": [0.5, 0.6, 0.7],
                      "ci_low": [0.4, 0.5, 0.65], "ci_high": [0.55, 0.7, 0.9]})
    fig = figures.metric_points(t, x="mode", y="estimate", color="mode")
    assert len(fig.data) == 3
    dual = next(tr for tr in fig.data if tr.name == "dual")
    np.testing.assert_allclose(dual.error_y.array, [0.2])
    np.testing.assert_allclose(dual.error_y.arrayminus, [0.05])
    faceted = figures.metric_points(pd.concat([t, t.assign(metric="n")]), x="mode", y="estimate", color="mode",
                                    facet_col="metric")
    assert len(faceted.data) == 6


def test_forest_marks_significant_rows():
    t = pd.DataFrame({"label": ["a", "b"], "diff": [0.1, -0.02], "ci_low": [0.05, -0.1], "ci_high": [0.2, 0.05],
                      "significant": [True, False]})
    fig = figures.forest(t)
    assert len(fig.data) == 1
    assert list(fig.data[0].marker.symbol) == ["circle", "circle-open"]
    np.testing.assert_allclose(fig.data[0].error_x.array, [0.1, 0.07])


@pytest.mark.parametrize(
    ("builder", "kwargs", "n_traces"),
    [
        (figures.strip, dict(x="mode", y="v", color="mode"), 2),
        (figures.scatter_2d, dict(x="v", y="w", color="kl"), 3),
        (figures.noise_curve, dict(x="w", y="v", color="mode"), 2),
    ],
)
def test_builders_trace_counts(builder, kwargs, n_traces):
    t = pd.DataFrame({"mode": ["dual", "dual", "single_kl", "single_kl"], "v": [1.0, 2.0, 3.0, 4.0],
                      "w": [0.0, 1.0, 0.0, 1.0], "kl": [0, 1, 2, 2]})
    fig = builder(t, **kwargs)
    assert isinstance(fig, go.Figure) and len(fig.data) == n_traces


def test_book_renderer_is_offline_html():
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    fig.update_layout(title="$x^2$")
    bundle = BookRenderer().to_mimebundle(fig.to_dict())
    assert list(bundle) == ["text/html"]
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html
    assert "cdn.plot.ly" not in html and "mathjax" not in html.lower() and "<html" not in html
    assert pio.renderers[BOOK_RENDERER] is not None
