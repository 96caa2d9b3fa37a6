"""Plotly figure builders shared by the notebooks; each takes tidy tables or arrays, never runs.

Example:
    >>> import pandas as pd
    >>> fig = forest(pd.DataFrame({"label": ["a"], "diff": [0.1], "ci_low": [0.0], "ci_high": [0.2],
    ...                            "significant": [True]}))
    >>> len(fig.data)
    1
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import MimetypeRenderer
from plotly.subplots import make_subplots

from oaprobe.facts import ALL_MODES, KL_GRADES

BOOK_RENDERER = "oaprobe_book"
BOOK_RENDERER_ENV = "OAPROBE_BOOK_RENDERER"


class BookRenderer(MimetypeRenderer):
    """Figures as an HTML div + script, with no plotly.js and no MathJax inside.

    The book loads plotly.js once per page from its own ``_static`` folder, so pages work
    offline and stay small; plotly's own HTML renderers would add CDN script tags.
    """

    def to_mimebundle(self, fig_dict: dict) -> dict[str, str]:
        html = pio.to_html(fig_dict, include_plotlyjs=False, include_mathjax=False, full_html=False,
                           validate=False, config={"responsive": True, "displaylogo": False})
        return {"text/html": html}


pio.renderers[BOOK_RENDERER] = BookRenderer()
if os.environ.get(BOOK_RENDERER_ENV):  # set by `oaprobe book` while papermill executes chapters
    pio.renderers.default = BOOK_RENDERER

GRADE_COLORS = px.colors.sequential.Viridis[::2][:5]
#: one colour per mode across the whole book
MODE_COLORS = {"single_oa": "#1f77b4", "single_kl": "#ff7f0e", "dual": "#2ca02c", "ordinal": "#9467bd"}
TEMPLATE = "plotly_white"


def _mode_names() -> dict[str, str]:
    """The readable mode names (``oaprobe.report.display.MODE_NAMES``), imported when a figure needs them."""
    from oaprobe.report.display import MODE_NAMES

    return MODE_NAMES


def _mode_style(table: pd.DataFrame, *columns: str | None) -> tuple[pd.DataFrame, dict]:
    """The table with its ``mode`` column readable, and the plotly express arguments that give each
    mode its book colour and its place in the book's order, when one of ``columns`` is ``mode``."""
    if "mode" not in columns or "mode" not in table:
        return table, {}
    names = _mode_names()
    present = list(dict.fromkeys(table["mode"]))
    order = [m for m in ALL_MODES if m in present] + [m for m in present if m not in ALL_MODES]
    colors = {names.get(m, m): c for m, c in MODE_COLORS.items()}
    shown = table.assign(mode=table["mode"].map(lambda m: names.get(m, m)))
    return shown, dict(color_discrete_map=colors, category_orders={"mode": [names.get(m, m) for m in order]})


def _layout(fig: go.Figure, title: str | None = None, height: int | None = None) -> go.Figure:
    # a title sits on its own line above subplot titles, left of the mode bar (top right, on hover)
    fig.update_layout(template=TEMPLATE, title=dict(text=title, x=0.01, xanchor="left", y=0.98, yanchor="top"),
                      height=height, margin=dict(l=40, r=20, t=80 if title else 50, b=40))
    return fig


LABEL_NAMES = {"kl_clean": "clean grade", "kl": "observed grade"}


def grade_distribution(table: pd.DataFrame, columns: Sequence[str] = ("kl_clean", "kl")) -> go.Figure:
    """Grouped bars of knee counts per KL grade for each label column (clean vs observed)."""
    rows = []
    for col in columns:
        if col in table and table[col].notna().any():
            counts = table[col].astype(int).value_counts().reindex(list(KL_GRADES), fill_value=0)
            rows += [{"grade": f"KL{g}", "knees": int(n), "label": LABEL_NAMES.get(col, col)} for g, n in counts.items()]
    fig = px.bar(pd.DataFrame(rows), x="grade", y="knees", color="label", barmode="group")
    return _layout(fig, "Knees per KL grade")


def _confusion_trace(matrix: np.ndarray, normalise: bool = True, rows: str = "row", cols: str = "column") -> go.Heatmap:
    """One grade confusion heatmap: row shares (or counts) as colour, share and count as text and hover
    (``rows`` and ``cols`` name the axes there)."""
    m = np.asarray(matrix, dtype=float)
    shown = m / np.maximum(m.sum(axis=1, keepdims=True), 1) if normalise else m
    labels = [f"KL{g}" for g in range(m.shape[0])]
    text = [[f"{shown[i, j]:.2f}<br>({int(m[i, j])})" if m[i, j] else "" for j in range(m.shape[1])]
            for i in range(m.shape[0])]  # empty cells stay blank: the few filled ones stand out
    return go.Heatmap(z=shown, x=labels, y=labels, text=text, texttemplate="%{text}", colorscale="Blues",
                      showscale=False, zmin=0, zmax=1 if normalise else None, customdata=m.astype(int),
                      hovertemplate=f"{rows} %{{y}}, {cols} %{{x}}: %{{z:.2f}} (%{{customdata}} knees)<extra></extra>")


def confusion_heatmap(matrix: np.ndarray, x_title: str, y_title: str, title: str, normalise: bool = True) -> go.Figure:
    """Heatmap of a 5x5 grade confusion matrix (rows: ``y_title``), with counts or row shares."""
    fig = go.Figure(_confusion_trace(matrix, normalise, y_title, x_title))
    fig.update_yaxes(title=y_title, autorange="reversed")
    fig.update_xaxes(title=x_title)
    return _layout(fig, title, height=420)


def confusion_facets(table: pd.DataFrame, x_title: str = "predicted KL", y_title: str = "true KL",
                     title: str = "") -> go.Figure:
    """Row-normalised grade confusion heatmaps, one row of panels per backbone and one column per mode
    (in the book's order; panel titles in the mode's colour), counts in the text and hover.

    ``table``: the tidy rows of :meth:`oaprobe.report.study.Study.kl_confusion` (``backbone, mode,
    truth, predicted, count``).
    """
    names = _mode_names()
    backbones = list(dict.fromkeys(table["backbone"]))
    modes = [m for m in ALL_MODES if m in set(table["mode"])]
    fig = make_subplots(rows=len(backbones), cols=len(modes), horizontal_spacing=0.06, vertical_spacing=0.14,
                        subplot_titles=[f"{bb} · {names.get(m, m)}" for bb in backbones for m in modes])
    for r, bb in enumerate(backbones, start=1):
        for c, mode in enumerate(modes, start=1):
            cell = table[(table["backbone"] == bb) & (table["mode"] == mode)]
            m = np.zeros((len(KL_GRADES), len(KL_GRADES)), dtype=int)
            np.add.at(m, (cell["truth"].astype(int).to_numpy(), cell["predicted"].astype(int).to_numpy()),
                      cell["count"].astype(int).to_numpy())
            fig.add_trace(_confusion_trace(m, True, y_title, x_title).update(name=f"{bb} {mode}"), r, c)
            fig.update_xaxes(title=x_title if r == len(backbones) else None, row=r, col=c)
            fig.update_yaxes(title=y_title if c == 1 else None, autorange="reversed", row=r, col=c)
    for ann, (bb, mode) in zip(fig.layout.annotations, [(bb, m) for bb in backbones for m in modes]):
        ann.font = dict(color=MODE_COLORS.get(mode, "#444"), size=13)
    return _layout(fig, title, height=330 * len(backbones) + 90)


def slice_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    outlines: Sequence[np.ndarray] | None = None,
    overlays: Sequence[np.ndarray] | None = None,
    cols: int = 5,
    title: str | None = None,
) -> go.Figure:
    """2D slices in a grid (grey), optional mask outlines (red pixel edges) and heat overlays (e.g. saliency)."""
    n = len(images)
    rows = int(np.ceil(n / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), horizontal_spacing=0.02, vertical_spacing=0.12)
    fig.update_annotations(font_size=11)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        fig.add_trace(go.Heatmap(z=img, colorscale="gray", showscale=False, hoverinfo="skip"), r + 1, c + 1)
        if overlays is not None:
            ov = np.where(overlays[i] > 0.05, overlays[i], np.nan)
            fig.add_trace(
                go.Heatmap(z=ov, colorscale="Hot", zmin=0, zmax=1, opacity=0.55, showscale=False, hoverinfo="skip"),
                r + 1,
                c + 1,
            )
        if outlines is not None:
            fig.add_trace(_outline_trace(outlines[i], "cartilage", False, 1.5), r + 1, c + 1)
    _square_pixels(fig, rows, cols)
    fig = _layout(fig, title, height=260 * rows + 120)
    fig.update_layout(margin=dict(t=110))  # room for the figure title above two-line subplot titles
    return fig


def _edges(mask2d: np.ndarray, row0: int = 0, col0: int = 0) -> tuple[list, list]:
    """Pixel-edge segments around a binary mask (x, y lists with None between segments), offset by
    ``(row0, col0)``: an outline that stays sharp at any zoom, unlike marker dots on pixel centres."""
    m = np.pad(np.asarray(mask2d).astype(bool), 1)
    xs: list = []
    ys: list = []
    for i, j in zip(*np.nonzero(m[1:, 1:-1] != m[:-1, 1:-1])):  # horizontal edges above row i
        xs += [col0 + j - 0.5, col0 + j + 0.5, None]
        ys += [row0 + i - 0.5, row0 + i - 0.5, None]
    for i, j in zip(*np.nonzero(m[1:-1, 1:] != m[1:-1, :-1])):  # vertical edges left of column j
        xs += [col0 + j - 0.5, col0 + j - 0.5, None]
        ys += [row0 + i - 0.5, row0 + i + 0.5, None]
    return xs, ys


def _square_pixels(fig: go.Figure, rows: int, cols: int) -> None:
    """Square pixels in every panel (each y axis scaled to its own x axis), image rows downwards."""
    fig.update_xaxes(visible=False)
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            k = (r - 1) * cols + c
            fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x" if k == 1 else f"x{k}",
                             row=r, col=c)


#: Outline colours of the cartilage and of the phantom's lesion types (by their readable names).
OUTLINE_COLORS = {"cartilage": "#ff2a2a", "osteophyte": "#00e5ff", "cartilage defect": "#ffe600", "sclerosis": "#ff66cc"}


def _outline_trace(mask2d: np.ndarray, name: str, first: bool, width: float, row0: int = 0, col0: int = 0) -> go.Scatter:
    xs, ys = _edges(mask2d, row0, col0)
    return go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=OUTLINE_COLORS.get(name, "#ff2a2a"), width=width),
                      name=name, legendgroup=name, showlegend=first, hoverinfo="skip")


def knee_zoom(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    boxes: Sequence[tuple[int, int, int, int]],
    cartilage: Sequence[np.ndarray],
    lesions: Sequence[np.ndarray] | None = None,
    lesion_names: dict[int, str] | None = None,
    title: str | None = None,
    zoom_title: str = "zoom on the dashed box",
) -> go.Figure:
    """One knee per row: its whole coronal slice with the zoom's box dashed and, beside it, the zoom on
    the box (``(r0, r1, c0, c1)``, e.g. the medial compartment); in both the cartilage and each lesion
    type (codes of ``lesions`` named by ``lesion_names``) are outlined in their own colour."""
    n = len(images)
    fig = make_subplots(rows=n, cols=2, horizontal_spacing=0.04, vertical_spacing=0.25 / n,
                        subplot_titles=[t for knee in titles for t in (knee, zoom_title)])
    fig.update_annotations(font_size=11)
    shown: set[str] = set()
    for i, (img, (r0, r1, c0, c1)) in enumerate(zip(images, boxes)):
        lo, hi = np.percentile(img, [1, 99.5])
        grey = dict(colorscale="gray", showscale=False, hoverinfo="skip", zmin=float(lo), zmax=float(hi))
        fig.add_trace(go.Heatmap(z=img, **grey), i + 1, 1)
        fig.add_trace(go.Heatmap(z=img[r0:r1, c0:c1], x=np.arange(c0, c1), y=np.arange(r0, r1), **grey), i + 1, 2)
        fig.add_shape(type="rect", x0=c0 - 0.5, x1=c1 - 0.5, y0=r0 - 0.5, y1=r1 - 0.5,
                      line=dict(color="white", width=1.5, dash="dash"), row=i + 1, col=1)
        layers = [("cartilage", cartilage[i])]
        if lesions is not None:
            layers += [(name, lesions[i] == code) for code, name in (lesion_names or {}).items()]
        for name, mask in layers:
            if not mask.any():
                continue
            fig.add_trace(_outline_trace(mask, name, name not in shown, 1.0), i + 1, 1)
            shown.add(name)
            crop = mask[r0:r1, c0:c1]
            if crop.any():
                fig.add_trace(_outline_trace(crop, name, False, 2.5, r0, c0), i + 1, 2)
    _square_pixels(fig, n, 2)
    fig = _layout(fig, title, height=320 * n + 120)
    fig.update_layout(margin=dict(t=110, b=60),  # the outline legend under the last row, clear of the titles
                      legend=dict(orientation="h", y=-0.01, yanchor="top", x=0.5, xanchor="center"))
    return fig


def training_curves(history: pd.DataFrame, y: str = "train_loss", color: str = "mode", line_group: str = "run_id") -> go.Figure:
    """Per-epoch curves, one line per run, coloured by ``color``."""
    t, style = _mode_style(history, color)
    fig = px.line(t, x="epoch", y=y, color=color, line_group=line_group, markers=True, **style)
    return _layout(fig, f"{y} per epoch")


def metric_points(table: pd.DataFrame, x: str, y: str, color: str, lo: str = "ci_low", hi: str = "ci_high",
                  facet_col: str | None = None, title: str = "") -> go.Figure:
    """Point estimates with error bars (confidence intervals), grouped by ``color``, optionally faceted."""
    t, style = _mode_style(table.reset_index(drop=True), color, x, facet_col)
    fig = px.scatter(
        t,
        x=x,
        y=y,
        color=color,
        facet_col=facet_col,
        facet_col_wrap=4 if facet_col else 0,
        error_y=t[hi] - t[y],
        error_y_minus=t[y] - t[lo],
        hover_data=[c for c in t.columns if t[c].dtype != object or c in (x, color)],
        **style,
    )
    fig.update_traces(marker=dict(size=9))
    if facet_col:
        fig.update_yaxes(matches=None, showticklabels=True)
        fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    return _layout(fig, title, height=(320 * int(np.ceil(t[facet_col].nunique() / 4)) + 80) if facet_col else None)


def forest(table: pd.DataFrame, label: str = "label", diff: str = "diff", lo: str = "ci_low", hi: str = "ci_high",
           significant: str = "significant", title: str = "Dual minus single (95% CI)") -> go.Figure:
    """Forest plot of paired differences; filled markers survive the multiple-testing correction."""
    t = table.reset_index(drop=True)
    sig = t[significant].astype(bool) if significant in t else pd.Series(False, index=t.index)
    fig = go.Figure(
        go.Scatter(
            x=t[diff],
            y=t[label],
            mode="markers",
            error_x=dict(type="data", symmetric=False, array=t[hi] - t[diff], arrayminus=t[diff] - t[lo]),
            marker=dict(size=9, symbol=np.where(sig, "circle", "circle-open"), color=np.where(sig, "#d62728", "#444")),
            hovertext=[f"{a}: {d:+.3f} [{l:+.3f}, {h:+.3f}]" for a, d, l, h in zip(t[label], t[diff], t[lo], t[hi])],
            hoverinfo="text",
        )
    )
    fig.add_vline(x=0, line_dash="dash", line_color="grey")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, height=max(300, 28 * len(t) + 120))


def strip(table: pd.DataFrame, x: str, y: str, color: str, facet_col: str | None = None, title: str = "") -> go.Figure:
    """One point per seed: the seed-to-seed spread that a single run hides."""
    t, style = _mode_style(table, color, x, facet_col)
    fig = px.strip(t, x=x, y=y, color=color, facet_col=facet_col, **style)
    if facet_col:  # facets are usually metrics on different scales (QWK, MAE)
        fig.update_yaxes(matches=None, showticklabels=True)
    return _layout(fig, title)


def scatter_2d(table: pd.DataFrame, x: str, y: str, color: str, facet_col: str | None = None,
               symbol: str | None = None, title: str = "") -> go.Figure:
    """Embedding scatter (PCA, UMAP) coloured by grade."""
    t, style = _mode_style(table.copy(), facet_col, symbol)
    t[color] = t[color].astype("Int64").astype(str)
    order = {**style.get("category_orders", {}), color: sorted(t[color].unique())}
    fig = px.scatter(t, x=x, y=y, color=color, facet_col=facet_col, symbol=symbol, category_orders=order,
                     color_discrete_sequence=GRADE_COLORS, opacity=0.75)
    fig.update_traces(marker=dict(size=5))
    return _layout(fig, title)


def curves(table: pd.DataFrame, x: str, y: str, color: str, error: str | None = None, facet_col: str | None = None,
           title: str = "", log_x: bool = False) -> go.Figure:
    """Lines of ``y`` against ``x``, one per ``color`` value (modes in their book colours), optional error
    bars; facets get their own y axis (they are usually different metrics)."""
    t, style = _mode_style(table, color, facet_col)
    fig = px.line(t, x=x, y=y, color=color, error_y=error, facet_col=facet_col, markers=True, log_x=log_x, **style)
    if facet_col:
        fig.update_yaxes(matches=None, showticklabels=True)
    return _layout(fig, title)


def noise_curve(table: pd.DataFrame, x: str, y: str, color: str, error: str | None = None, title: str = "") -> go.Figure:
    """A metric against label-noise strength, one line per mode, with the seed spread as error bars."""
    return curves(table, x, y, color, error=error, title=title)


CEILING_STYLES = {"oracle": "dash", "linear_probe": "dot", "noise_ceiling": "dashdot"}


def answer_figure(levels: pd.DataFrame, ceilings: pd.DataFrame, metrics: dict[str, str], title: str = "") -> go.Figure:
    """The answer at a glance: per question (a panel), single vs dual per backbone (mean +- sd over
    seeds), with the cohort's ceilings as horizontal lines.

    ``levels``: rows of ``question, backbone, mode, mean, sd``; ``ceilings``: rows of ``ceiling``
    plus metric columns; ``metrics``: question -> metric column (e.g. ``{"coarse": "oa_roc_auc"}``).
    """
    from oaprobe.report.display import readable_name

    questions = list(metrics)
    names = _mode_names()
    order = {m: i for i, m in enumerate(ALL_MODES)}
    fig = make_subplots(rows=1, cols=len(questions),
                        subplot_titles=[f"{q}: {readable_name(metrics[q])}" for q in questions])
    shown: set[str] = set()  # each mode once in the legend, from the first panel it appears in
    for col, question in enumerate(questions, start=1):
        part = levels[levels["question"] == question]
        groups = sorted(part.groupby("mode", sort=False), key=lambda kv: order.get(kv[0], len(order)))
        for mode, g in groups:
            fig.add_trace(go.Scatter(x=g["backbone"], y=g["mean"], error_y=dict(type="data", array=g["sd"]),
                                     mode="markers", name=names.get(mode, mode), legendgroup=mode, showlegend=mode not in shown,
                                     marker=dict(size=11, color=MODE_COLORS.get(mode))), row=1, col=col)
            shown.add(mode)
        for _, c in ceilings.iterrows():
            value = c.get(metrics[question])
            if pd.notna(value):
                fig.add_hline(y=float(value), line_dash=CEILING_STYLES.get(c["ceiling"], "dash"), line_color="grey",
                              annotation_text=c["ceiling"].replace("_", " "), annotation_position="top left",
                              row=1, col=col)
    return _layout(fig, title, height=420)


def show(fig: go.Figure, note: str) -> None:
    """Display a figure with its provenance folded under it: which runs, package version and cohort made it."""
    from IPython.display import display

    from oaprobe.report.display import provenance_note

    display(fig)
    display(provenance_note(note))


VERDICT_COLORS = {"helps": "#009E73", "hurts": "#D55E00", "equivalent": "#0072B2", "inconclusive": "#7f7f7f"}


def seed_differences(seeds: pd.DataFrame, summary: pd.DataFrame, questions: dict[str, str], title: str = "") -> go.Figure:
    """What each verdict rests on: per question (a panel) and backbone, every seed's paired difference
    (dual minus single; flagged runs as crosses), the mean with its 90% (thick) and 95% (thin)
    interval, the ±delta band of equivalence and 0; the verdict under each backbone.

    ``seeds``: rows of ``question, backbone, seed, diff, flagged``; ``summary``: rows of ``question,
    backbone, mean, ci_low, ci_high, eq_low, eq_high, delta, verdict``; ``questions``: question -> panel title.
    """
    names = list(questions)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[questions[q] for q in names], horizontal_spacing=0.12)
    for col, q in enumerate(names, start=1):
        s, part = seeds[seeds["question"] == q], summary[summary["question"] == q]
        if part.empty:
            continue
        delta = float(part["delta"].iloc[0])
        # shapes on a subplot without traces are dropped by plotly, so the band and 0 come first with an explicit flag
        fig.add_hrect(y0=-delta, y1=delta, fillcolor="#0072B2", opacity=0.10, line_width=0, row=1, col=col,
                      exclude_empty_subplots=False)
        fig.add_hline(y=0, line_color="#444", line_width=1, row=1, col=col, exclude_empty_subplots=False)
        for flagged, symbol, label in ((False, "circle-open", "one seed"), (True, "x", "one seed, a run flagged")):
            g = s[s["flagged"] == flagged]
            fig.add_trace(go.Scatter(x=g["backbone"], y=g["diff"], mode="markers", name=label, legendgroup=label,
                                     showlegend=col == 1 and (not flagged or len(g) > 0),
                                     marker=dict(symbol=symbol, size=8, color="#555"), customdata=g["seed"],
                                     hovertemplate="seed %{customdata}: %{y:+.3f}<extra></extra>"), row=1, col=col)
        for _, r in part.iterrows():
            color = VERDICT_COLORS.get(r["verdict"], "#444")
            for lo, hi, width in ((r["ci_low"], r["ci_high"], 2), (r["eq_low"], r["eq_high"], 6)):
                if lo == lo:
                    fig.add_trace(go.Scatter(x=[r["backbone"]] * 2, y=[lo, hi], mode="lines", showlegend=False,
                                             line=dict(color=color, width=width), hoverinfo="skip"), row=1, col=col)
            fig.add_trace(go.Scatter(x=[r["backbone"]], y=[r["mean"]], mode="markers", showlegend=False,
                                     marker=dict(symbol="diamond", size=12, color=color),
                                     hovertemplate=f"mean %{{y:+.3f}}: {r['verdict']}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(ticktext=[f"{b}<br><b>{v}</b>" for b, v in zip(part["backbone"], part["verdict"])],
                         tickvals=list(part["backbone"]), row=1, col=col)
        fig.update_yaxes(title="dual minus single" if col == 1 else None, zeroline=False, row=1, col=col)
    fig.update_layout(legend=dict(orientation="h", y=-0.25))
    return _layout(fig, title, height=460)
