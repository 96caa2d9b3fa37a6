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
    assert [t.marker.pattern.shape for t in fig.data] == ["", "/"]  # told apart by hatching, not colour alone
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
    assert [(tr.name, tr.marker.symbol, list(tr.y)) for tr in fig.data] == [
        ("survives the correction", "circle", ["a"]), ("does not survive it", "circle-open", ["b"])]
    np.testing.assert_allclose(np.concatenate([tr.error_x.array for tr in fig.data]), [0.1, 0.07])
    assert {tr.marker.color for tr in fig.data} == {figures.NEUTRAL} and "xaxis2" not in fig.layout  # short: one axis


def test_a_long_forest_repeats_its_axis_at_the_top_and_keeps_the_row_order():
    n = figures.FOREST_TOP_AXIS_ROWS + 1
    t = pd.DataFrame({"label": [f"row {i}" for i in range(n)], "diff": 0.0, "ci_low": -0.1, "ci_high": np.linspace(0.1, 0.3, n),
                      "significant": [i % 2 == 0 for i in range(n)]})
    fig = figures.forest(t)
    assert fig.layout.xaxis2.side == "top" and fig.layout.xaxis2.matches == "x" and fig.layout.xaxis2.overlaying == "x"
    assert [tr for tr in fig.data if tr.xaxis == "x2"], "no trace draws the top axis"
    assert list(fig.layout.yaxis.categoryarray) == [f"row {i}" for i in range(n)]  # not regrouped by significance
    assert "xaxis2" not in figures.forest(t.head(n - 1)).layout


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
    assert [a.text for a in fig.layout.annotations] == ["single-OA", "single-KL", "dual"]


def test_answer_figure_lists_each_mode_once_in_its_legend():
    levels = pd.DataFrame({"question": ["coarse", "coarse", "fine", "fine"], "backbone": "resnet3d",
                           "mode": ["single_oa", "dual", "single_kl", "dual"], "mean": 0.8, "sd": 0.01})
    fig = figures.answer_figure(levels, pd.DataFrame(columns=["ceiling"]), {"coarse": "oa_roc_auc", "fine": "kl_qwk"})
    legend = [t.name for t in fig.data if t.showlegend]
    assert sorted(legend) == ["dual", "single-KL", "single-OA"]
    assert [a.text for a in fig.layout.annotations][:2] == ["coarse label:<br>OA area under the ROC curve (ROC-AUC)",
                                                          "fine label:<br>KL quadratic weighted kappa (QWK)"]
    ranks = {t.name: t.legendrank for t in fig.data if t.showlegend}
    assert sorted(ranks, key=ranks.get) == ["single-OA", "single-KL", "dual"]  # the book's order, whatever the panels


# ---------------------------------------------------------------- colour vision
#: Machado, Oliveira & Fernandes (2009), severity 1.0: linear-RGB matrices of full protanopia,
#: deuteranopia and tritanopia (the paper's table, as colorspacious 1.1.2 also ships it).
MACHADO_2009 = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
}
_SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
_D65 = np.array([95.047, 100.0, 108.883])


def _lab(hex_colour: str, vision: str = "normal") -> np.ndarray:
    """CIELAB (D65) of an sRGB colour as a reader with ``vision`` sees it (Machado et al. 2009)."""
    srgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    if vision != "normal":
        linear = np.asarray(MACHADO_2009[vision]) @ linear
    xyz = 100 * _SRGB_TO_XYZ @ linear / _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


#: colorspacious 1.1.2 (an independent implementation; not a dependency), CIELab of #0072B2 and
#: #D55E00: cspace_convert(rgb, {"name": "sRGB1+CVD", "cvd_type": t, "severity": 100}, "CIELab").
COLORSPACIOUS_LAB = {
    ("#0072B2", "normal"): [45.97, -2.74, -41.37], ("#D55E00", "normal"): [54.19, 43.28, 63.28],
    ("#0072B2", "protanopia"): [49.22, 6.88, -37.65], ("#D55E00", "protanopia"): [47.42, -4.59, 60.13],
    ("#CC79A7", "deuteranopia"): [63.06, 1.1, -6.97], ("#56B4E9", "deuteranopia"): [67.68, 7.07, -37.46],
    ("#0072B2", "tritanopia"): [46.65, -44.89, -16.68], ("#D55E00", "tritanopia"): [53.9, 65.15, 30.67],
}


@pytest.mark.parametrize(("colour", "vision"), list(COLORSPACIOUS_LAB))
def test_simulation_matches_colorspacious(colour, vision):
    np.testing.assert_allclose(_lab(colour, vision), COLORSPACIOUS_LAB[(colour, vision)], atol=0.06)


def test_simulation_tells_red_from_green_apart_only_with_normal_vision():
    red, green = "#FF0000", "#00A000"  # a known failure: red vs green is the classic protan/deutan confusion
    normal = np.linalg.norm(_lab(red) - _lab(green))
    assert normal > 80
    for vision in ("protanopia", "deuteranopia"):
        assert np.linalg.norm(_lab(red, vision) - _lab(green, vision)) < normal / 3


#: The smallest CIELAB distance (delta-E 1976) every pair of mode colours keeps, with normal vision and
#: each simulated dichromacy; measured 20.7 (protanopia, dual vs ordinal). The old tab10 colours: 5.7.
MIN_DELTA_E = 20.0


@pytest.mark.parametrize("vision", ["normal", "protanopia", "deuteranopia", "tritanopia"])
def test_mode_colours_stay_apart_under_colour_blindness(vision):
    import itertools

    pairs = {(a, b): float(np.linalg.norm(_lab(figures.MODE_COLORS[a], vision) - _lab(figures.MODE_COLORS[b], vision)))
             for a, b in itertools.combinations(figures.MODE_COLORS, 2)}
    worst = min(pairs, key=pairs.get)
    assert pairs[worst] >= MIN_DELTA_E, (vision, worst, round(pairs[worst], 1))


def test_each_mode_has_its_own_marker_and_dash():
    from oaprobe.facts import ALL_MODES

    for marks in (figures.MODE_COLORS, figures.MODE_SYMBOLS, figures.MODE_DASHES):
        assert set(marks) == set(ALL_MODES) and len(set(marks.values())) == len(ALL_MODES)


@pytest.mark.parametrize("make", [
    lambda t: figures.strip(t, x="w", y="v", color="mode"),
    lambda t: figures.curves(t, x="w", y="v", color="mode"),
    lambda t: figures.answer_figure(t.assign(question="coarse", backbone="resnet3d", mean=t["v"], sd=0.1),
                                    pd.DataFrame(columns=["ceiling"]), {"coarse": "oa_roc_auc"}),
], ids=["strip", "curves", "answer_figure"])
def test_modes_differ_by_marker_and_dash_not_colour_alone(make):
    fig = make(_MODES)
    seen = {t.name: t for t in fig.data if t.name}
    assert seen["dual"].marker.symbol == "diamond" and seen["single-KL"].marker.symbol == "square"
    if seen["dual"].type == "scatter" and "lines" in (seen["dual"].mode or ""):
        assert seen["dual"].line.dash == "dot" and seen["single-OA"].line.dash == "solid"


# ---------------------------------------------------------------- words, hovers, layout
def test_axes_legends_and_facets_use_display_names():
    t = pd.DataFrame({"label_noise": [0.0, 1.0, 0.0, 1.0], "mean": [0.7, 0.6, 0.8, 0.7], "mode": ["dual", "dual", "single_kl", "single_kl"],
                      "metric": ["kl_qwk", "kl_qwk", "oa_accuracy", "oa_accuracy"]})
    fig = figures.curves(t, x="label_noise", y="mean", color="mode", facet_col="metric")
    assert fig.layout.xaxis.title.text == "label-noise strength" and fig.layout.legend.title.text == "mode"
    assert sorted(a.text for a in fig.layout.annotations) == ["KL QWK", "OA accuracy"]
    history = _MODES.assign(seed=0)
    assert figures.training_curves(history).layout.yaxis.title.text == "training loss"
    gains = t.assign(comparison="dual − single_kl: kl_qwk")
    assert figures.curves(gains, x="label_noise", y="mean", color="comparison").data[0].name == "dual − single-KL: KL QWK"


def test_hovers_show_seed_and_rounded_values_and_no_run_hash():
    t = _MODES.assign(seed=[0, 1, 0, 1], v=[0.123456789, 2.0, 3.0, 4.0], run_id="0123456789ab")
    fig = figures.metric_points(t, x="w", y="v", color="mode")
    template = fig.data[0].hovertemplate
    assert "seed=" in template and "0123456789ab" not in template and "run_id" not in template
    assert fig.data[0].yhoverformat == ".3~g" and ":.3f" in template  # the CI ends in customdata: 3 decimals


def test_log_axis_with_three_values_ticks_only_them():
    t = pd.DataFrame({"lambda": [0.1, 1.0, 10.0], "mean": [0.5, 0.6, 0.7], "metric": ["kl_qwk"] * 3})
    fig = figures.curves(t, x="lambda", y="mean", color="metric", log_x=True)
    assert list(fig.layout.xaxis.tickvals) == [0.1, 1.0, 10.0] and list(fig.layout.xaxis.ticktext) == ["0.1", "1", "10"]


def test_titles_sit_above_the_plot_clear_of_the_toolbar():
    fig = figures.strip(_MODES, x="w", y="v", color="mode", title="Per-seed test metrics")
    assert fig.layout.title.yref == "container" and fig.layout.margin.t >= 100
    two = figures.strip(_MODES, x="w", y="v", color="mode", title="Enrichment<br>not trustworthy: fails the check")
    assert two.layout.title.text == "Enrichment" and two.layout.title.subtitle.text == "not trustworthy: fails the check"
    assert two.layout.margin.t > fig.layout.margin.t


def test_facets_wrap_with_room_between_panels():
    t = pd.concat([_MODES.assign(metric=f"m{i}") for i in range(8)])
    fig = figures.strip(t, x="mode", y="v", color="mode", facet_col="metric")
    domains = sorted({tuple(fig.layout[k].domain) for k in fig.layout if k.startswith("xaxis")})
    assert len(domains) == 4  # 8 panels in 2 rows of 4, not 8 in one row
    assert all(b[0] - a[1] >= 0.06 for a, b in zip(domains, domains[1:]))
    assert fig.layout.xaxis.tickangle == -90


def test_book_renderer_labels_each_figure_with_its_summary():
    fig = figures.curves(_MODES, x="w", y="v", color="mode", title="KL QWK against <b>noise</b>")
    html = BookRenderer().to_mimebundle(fig.to_dict())["text/html"]
    label = html[html.index('aria-label="') + 12:html.index('">')]
    assert html.startswith('<div class="oaprobe-figure" role="img"')
    assert label == "KL QWK against noise; v against w; series: single-OA, single-KL, dual."
    fig.update_layout(meta={"summary": "Dual is above single in 3 of 3 seeds."})
    assert 'aria-label="Dual is above single in 3 of 3 seeds."' in BookRenderer().to_mimebundle(fig.to_dict())["text/html"]


def test_slice_grid_outlines_lesions_and_shows_one_colour_bar():
    img = np.random.default_rng(0).random((8, 8))
    cart = np.zeros((8, 8), bool)
    cart[2, 1:7] = True
    lesion = np.zeros((8, 8), np.uint8)
    lesion[5, 5] = 2
    fig = figures.slice_grid([img, img], ["a", "b"], outlines=[cart, cart], overlays=[img, img], cols=2,
                             lesions=[lesion, None], lesion_names={1: "osteophyte", 2: "cartilage defect"})
    overlays = [t for t in fig.data if t.type == "heatmap" and t.colorscale[0][1] != "rgb(0, 0, 0)" and t.zmax == 1]
    assert [t.showscale for t in overlays] == [True, False] and "saliency" in overlays[0].colorbar.title.text
    outlines = [(t.name, t.showlegend) for t in fig.data if t.type == "scatter"]
    assert outlines == [("cartilage", True), ("cartilage defect", True), ("cartilage", False)]


def test_show_sets_the_summary_a_screen_reader_gives(monkeypatch):
    shown = []
    monkeypatch.setattr("oaprobe.figures.display", lambda obj: shown.append(obj))
    fig = figures.strip(_MODES, x="w", y="v", color="mode", title="t")
    figures.show(fig, "runs a, b", "Dual is above single-OA in both seeds.")
    assert shown[0] is fig and figures.summary(fig) == "Dual is above single-OA in both seeds."
    assert "runs a, b" in shown[1].data


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


# ---------------------------------------------------------------- one colour meaning, one backbone order
def test_per_seed_points_share_one_colour_and_hover_their_seed():
    t = pd.DataFrame({"mode": ["dual", "single_kl"] * 6, "estimate": np.linspace(0.5, 0.8, 12), "ci_low": 0.4,
                      "ci_high": 0.9, "seed": [str(s) for s in range(12)], "metric": ["a", "b"] * 6})
    for fig in (figures.metric_points(t, x="mode", y="estimate", color="seed", facet_col="metric"),
                figures.strip(t, x="mode", y="estimate", color="seed", facet_col="metric")):
        assert {tr.marker.color for tr in fig.data} == {figures.NEUTRAL}  # was: 12 seeds in 10 repeating colours
        assert not any(tr.showlegend for tr in fig.data)
        assert all("seed" in tr.hovertemplate for tr in fig.data)
    coloured = figures.metric_points(t, x="mode", y="estimate", color="mode")
    assert {tr.marker.color for tr in coloured.data} == {figures.MODE_COLORS["dual"], figures.MODE_COLORS["single_kl"]}


def test_backbones_keep_the_book_order_whatever_the_table_order():
    t = pd.DataFrame({"backbone": ["nnMamba", "M3T", "ResNet3D", "nnMamba"], "mode": ["dual"] * 3 + ["single_kl"],
                      "value": [0.1, 0.2, 0.3, 0.4]})
    fig = figures.strip(t, x="backbone", y="value", color="mode")
    assert fig.layout.xaxis.categoryorder == "array"
    assert list(fig.layout.xaxis.categoryarray) == ["ResNet3D", "M3T", "nnMamba"]
    assert figures.strip(t.assign(backbone=["b", "a", "c", "b"]), x="backbone", y="value", color="mode").layout.xaxis.categoryarray is None
    rows = pd.DataFrame({"backbone": ["nnmamba", "resnet3d"], "mode": "dual", "truth": 0, "predicted": 0, "count": 1})
    titles = [a.text for a in figures.confusion_facets(rows).layout.annotations]
    assert titles[0].startswith("resnet3d") and titles[1].startswith("nnmamba")


def test_long_titles_wrap_to_fit_an_800_px_figure():
    title = "ResNet3D: maps of the trained models (first seed), one column per saliency method, outlines in colour"
    fig = figures.strip(_MODES, x="mode", y="v", color="mode", title=title)
    lines = fig.layout.title.text.split("<br>")
    assert len(lines) == 2 and all(len(line) <= figures.TITLE_CHARS for line in lines) and " ".join(lines) == title
    short = figures.strip(_MODES, x="mode", y="v", color="mode", title="Short")
    assert fig.layout.margin.t == short.layout.margin.t + 22  # room for the second line
    assert figures.wrap_title("a " * 3, 3) == ["a a", "a"]


def _hex(colour: str) -> str:
    import re

    r, g, b = (int(float(v)) for v in re.findall(r"[\d.]+", colour)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


#: The smallest CIELAB distance between the saliency overlay's colours and each outline colour, with normal vision
#: and each simulated dichromacy, over plotly's sequential scales: "Blugrn" keeps the most, 23.6 (deuteranopia,
#: sclerosis pink); "Hot" kept under 10 (red cartilage on red), Viridis under 5 (yellow defects on yellow).
MIN_OUTLINE_DELTA_E = 20.0


def _worst_outline_distance(scale: str) -> float:
    from plotly.colors import get_colorscale, sample_colorscale

    samples = [_hex(c) for c in sample_colorscale(get_colorscale(scale), list(np.linspace(0.05, 1, 40)))]
    return min(float(np.linalg.norm(_lab(s, v) - _lab(o, v))) for s in samples for o in figures.OUTLINE_COLORS.values()
               for v in ("normal", "protanopia", "deuteranopia", "tritanopia"))


def test_saliency_scale_lets_every_outline_stand_out():
    assert _worst_outline_distance(figures.SALIENCY_SCALE) >= MIN_OUTLINE_DELTA_E
    assert max(_worst_outline_distance(s) for s in ("Hot", "Viridis")) < 10  # the old scale fails the same measure
    img = np.zeros((4, 4))
    fig = figures.slice_grid([img], ["a"], overlays=[np.ones((4, 4))], cols=1)
    assert [tr.colorscale for tr in fig.data if tr.type == "heatmap"][1] == go.Heatmap(colorscale=figures.SALIENCY_SCALE).colorscale


def test_seed_differences_colour_nothing_and_name_every_mark():
    seeds = pd.DataFrame({"question": "fine", "backbone": ["M3T", "ResNet3D"], "seed": [0, 0], "diff": [0.01, 0.02],
                          "flagged": False})
    summary = pd.DataFrame({"question": "fine", "backbone": ["M3T", "ResNet3D"], "mean": [0.01, 0.02], "ci_low": -0.01,
                            "ci_high": 0.03, "eq_low": 0.0, "eq_high": 0.02, "delta": 0.03, "verdict": ["helps", "hurts"]})
    fig = figures.seed_differences(seeds, summary, {"fine": "fine"})
    colours = {tr.marker.color for tr in fig.data if tr.mode == "markers"} | {tr.line.color for tr in fig.data if tr.mode == "lines"}
    assert colours <= {figures.NEUTRAL, "#777", figures.BAND_FILL}  # the verdicts are written under the backbones
    assert [tr.name for tr in fig.data if tr.showlegend] == ["one seed", "mean; bars: 90% (thick), 95% (thin)",
                                                             "±δ: equivalence band"]
    assert list(fig.layout.xaxis.categoryarray) == ["ResNet3D", "M3T"]
