"""Tests of oaprobe.figures: outlines, trace counts and data of each builder, mode colours, the offline renderer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from oaprobe import figures
from oaprobe.figures import BOOK_RENDERER, BookRenderer


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
    assert len(scatter) == 3 and len(scatter[0].x) == 16 * 3  # the 16 unit edges around a 4 x 4 square


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


def test_edges_of_one_pixel_are_its_four_sides():
    mask = np.zeros((4, 5), bool)
    mask[1, 2] = True
    xs, ys = figures._edges(mask)
    segments = {((xs[k], ys[k]), (xs[k + 1], ys[k + 1])) for k in range(0, len(xs), 3)}
    assert segments == {((1.5, 0.5), (2.5, 0.5)), ((1.5, 1.5), (2.5, 1.5)),
                        ((1.5, 0.5), (1.5, 1.5)), ((2.5, 0.5), (2.5, 1.5))}
    xs, ys = figures._edges(np.ones((2, 1), bool), row0=10, col0=20)  # a 2 x 1 block: 6 unit edges, offset
    assert len(xs) == 18 and min(x for x in xs if x is not None) == 19.5 and max(y for y in ys if y is not None) == 11.5


def test_knee_zoom_crops_the_box_and_outlines_each_lesion_type():
    img = np.arange(100.0).reshape(10, 10)
    cart = np.zeros((10, 10), bool)
    cart[5, 1:9] = True
    lesion = np.zeros((10, 10), np.uint8)
    lesion[4, 2] = 1  # inside the box
    lesion[0, 9] = 2  # outside it: not drawn in the zoom
    fig = figures.knee_zoom([img, img], ["a", "b"], [(2, 7, 1, 6)] * 2, [cart, cart], [lesion, lesion],
                            {1: "osteophyte", 2: "cartilage defect"})
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 4 and np.asarray(heat[1].z).shape == (5, 5)
    np.testing.assert_array_equal(np.asarray(heat[1].z), img[2:7, 1:6])
    assert list(heat[1].x) == [1, 2, 3, 4, 5] and list(heat[1].y) == [2, 3, 4, 5, 6]
    names = [t.name for t in fig.data if t.type == "scatter"]
    assert names == ["cartilage", "cartilage", "osteophyte", "osteophyte", "cartilage defect"] * 2  # the defect: full only
    legend = [t.name for t in fig.data if t.type == "scatter" and t.showlegend]
    assert legend == ["cartilage", "osteophyte", "cartilage defect"]  # one legend entry per outline type
    rect = fig.layout.shapes[0]
    assert (rect.x0, rect.x1, rect.y0, rect.y1) == (0.5, 5.5, 1.5, 6.5)
    assert fig.layout.yaxis2.scaleanchor == "x2"  # square pixels in the zoom too


def test_confusion_facets_one_panel_per_backbone_and_mode():
    rows = []
    for bb in ("resnet3d", "nnmamba"):
        for mode in ("dual", "single_kl"):
            for t in range(5):
                for p in range(5):
                    rows.append({"backbone": bb, "mode": mode, "truth": t, "predicted": p,
                                 "count": 3 if (t == p == 0) else (1 if (t, p) == (0, 1) else 0)})
    fig = figures.confusion_facets(pd.DataFrame(rows))
    assert len(fig.data) == 4
    assert [a.text for a in fig.layout.annotations] == ["resnet3d · single-KL", "resnet3d · dual",
                                                        "nnmamba · single-KL", "nnmamba · dual"]
    assert fig.layout.annotations[1].font.color == figures.MODE_COLORS["dual"]
    z = np.asarray(fig.data[0].z)
    np.testing.assert_allclose(z[0, :2], [0.75, 0.25])
    np.testing.assert_allclose(z[1:], 0.0)
    assert "(3)" in fig.data[0].text[0][0]


_MODES = pd.DataFrame({"mode": ["single_oa", "dual", "single_kl", "dual"], "v": [1.0, 2.0, 3.0, 4.0],
                       "w": [0.0, 1.0, 0.0, 1.0], "ci_low": [0.5, 1.5, 2.5, 3.5], "ci_high": [1.5, 2.5, 3.5, 4.5],
                       "epoch": [1, 2, 1, 2], "train_loss": [1.0, 0.5, 1.0, 0.5], "run_id": ["a", "b", "c", "b"]})


@pytest.mark.parametrize(
    "make",
    [
        lambda t: figures.strip(t, x="w", y="v", color="mode"),
        lambda t: figures.metric_points(t, x="w", y="v", color="mode"),
        lambda t: figures.curves(t, x="w", y="v", color="mode"),
        lambda t: figures.noise_curve(t, x="w", y="v", color="mode"),
        lambda t: figures.training_curves(t),
        lambda t: figures.answer_figure(t.assign(question="coarse", backbone="resnet3d", mean=t["v"], sd=0.1),
                                        pd.DataFrame({"ceiling": ["oracle"], "oa_roc_auc": [0.9]}),
                                        {"coarse": "oa_roc_auc"}),
    ],
    ids=["strip", "metric_points", "curves", "noise_curve", "training_curves", "answer_figure"],
)
def test_figures_coloured_by_mode_use_the_book_colours_and_order(make):
    fig = make(_MODES)
    by_name = {}
    for t in fig.data:
        if t.name:
            by_name.setdefault(t.name, t)
    assert list(by_name) == ["single-OA", "single-KL", "dual"]  # readable names, in the book's order
    for mode, name in (("dual", "dual"), ("single_oa", "single-OA"), ("single_kl", "single-KL")):
        trace = by_name[name]
        color = trace.marker.color if trace.type == "box" or trace.mode == "markers" else trace.line.color
        assert color == figures.MODE_COLORS[mode], (name, color)


def test_scatter_2d_facets_modes_in_the_book_order():
    t = pd.DataFrame({"x": [0.0, 1, 2, 3], "y": [0.0, 1, 2, 3], "kl": [0, 1, 2, 3],
                      "mode": ["dual", "single_oa", "dual", "single_kl"]})
    fig = figures.scatter_2d(t, "x", "y", color="kl", facet_col="mode")
    assert [a.text for a in fig.layout.annotations] == ["mode=single-OA", "mode=single-KL", "mode=dual"]


def test_answer_figure_lists_each_mode_once_in_its_legend():
    levels = pd.DataFrame({"question": ["coarse", "coarse", "fine", "fine"], "backbone": "resnet3d",
                           "mode": ["single_oa", "dual", "single_kl", "dual"], "mean": 0.8, "sd": 0.01})
    fig = figures.answer_figure(levels, pd.DataFrame(columns=["ceiling"]), {"coarse": "oa_roc_auc", "fine": "kl_qwk"})
    legend = [t.name for t in fig.data if t.showlegend]
    assert sorted(legend) == ["dual", "single-KL", "single-OA"]
    assert [a.text for a in fig.layout.annotations][:2] == ["coarse: OA AUC", "fine: KL QWK"]


def test_seed_differences_shows_every_seed_both_intervals_and_the_delta_band():
    seeds = pd.DataFrame({"question": "fine", "backbone": ["ResNet3D"] * 3 + ["M3T"] * 3, "seed": [0, 1, 2] * 2,
                          "diff": [0.01, 0.02, 0.0, -0.05, 0.01, -0.02], "flagged": [False] * 5 + [True]})
    summary = pd.DataFrame({"question": "fine", "backbone": ["ResNet3D", "M3T"], "mean": [0.01, -0.02],
                            "ci_low": [-0.01, -0.1], "ci_high": [0.03, 0.06], "eq_low": [0.0, -0.08],
                            "eq_high": [0.02, 0.04], "delta": 0.03, "verdict": ["equivalent", "inconclusive"]})
    fig = figures.seed_differences(seeds, summary, {"fine": "fine label: KL QWK"})
    points = [t for t in fig.data if t.name in ("one seed", "one seed, a run flagged")]
    assert sum(len(t.y) for t in points) == 6 and [len(t.y) for t in points] == [5, 1]  # the flagged seed is a cross
    bars = [t for t in fig.data if t.mode == "lines"]
    assert len(bars) == 4 and {t.line.width for t in bars} == {2, 6}  # 95% thin, 90% thick, per backbone
    band = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(band) == 1 and (band[0].y0, band[0].y1) == (-0.03, 0.03)
    assert fig.layout.xaxis.ticktext == ("ResNet3D<br><b>equivalent</b>", "M3T<br><b>inconclusive</b>")
