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
import re
from collections.abc import Sequence
from html import escape

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import display
from plotly.io._base_renderers import MimetypeRenderer
from plotly.subplots import make_subplots

from oaprobe.facts import ALL_MODES, BACKBONES, KL_GRADES, backbone_title
from oaprobe.report.display import MODE_NAMES, provenance_note, readable_name, readable_text, signed, spelled_out

BOOK_RENDERER = "oaprobe_book"
BOOK_RENDERER_ENV = "OAPROBE_BOOK_RENDERER"


class BookRenderer(MimetypeRenderer):
    """Figures as an HTML div + script, with no plotly.js and no MathJax inside, labelled for screen readers.

    The book loads plotly.js once per page from its own ``_static`` folder, so pages work
    offline and stay small; plotly's own HTML renderers would add CDN script tags. The div is
    ``role="img"`` with the figure's one-sentence summary (:func:`summary`) as its ``aria-label``.
    """

    def to_mimebundle(self, fig_dict: dict) -> dict[str, str]:
        html = pio.to_html(fig_dict, include_plotlyjs=False, include_mathjax=False, full_html=False,
                           validate=False, config={"responsive": True, "displaylogo": False})
        label = escape(summary(go.Figure(fig_dict, skip_invalid=True)), quote=True)
        return {"text/html": f'<div class="oaprobe-figure" role="img" aria-label="{label}">{html}</div>'}


pio.renderers[BOOK_RENDERER] = BookRenderer()
if os.environ.get(BOOK_RENDERER_ENV):  # set by `oaprobe book` while papermill executes chapters
    pio.renderers.default = BOOK_RENDERER

GRADE_COLORS = px.colors.sequential.Viridis[::2][:5]
#: One colour per mode across the whole book, from Okabe & Ito's colour-blind-safe palette (blue,
#: vermillion, reddish purple, sky blue): the four whose smallest pairwise CIELAB distance under
#: simulated protanopia, deuteranopia and tritanopia is largest (tests/test_figures.py measures it).
MODE_COLORS = {"single_oa": "#0072B2", "single_kl": "#D55E00", "dual": "#CC79A7", "ordinal": "#56B4E9"}
#: A marker and a line dash per mode, so that no figure tells the modes apart by colour alone.
MODE_SYMBOLS = {"single_oa": "circle", "single_kl": "square", "dual": "diamond", "ordinal": "triangle-up"}
MODE_DASHES = {"single_oa": "solid", "single_kl": "dash", "dual": "dot", "ordinal": "dashdot"}
TEMPLATE = "plotly_white"
#: The one colour of marks that carry no colour meaning (per-seed points, forest rows, the answer's
#: intervals): a page's colours then mean one thing each, explained by the figure's legend.
NEUTRAL = "#333333"
#: The saliency overlay's scale: of plotly's sequential scales, the one whose every colour stays furthest
#: (CIELAB) from the cartilage and lesion outline colours, with normal vision and each simulated
#: dichromacy (tests/test_figures.py measures it; "Hot" hid the red cartilage outline).
SALIENCY_SCALE = "Blugrn"
#: Longest title line (characters) that fits a figure in an 800 px window; longer titles wrap.
TITLE_CHARS = 60
#: Columns a hover never shows (run hashes belong in the provenance fold).
HIDDEN_IN_HOVER = ("run_id", "run", "path", "config_hash")


def _mode_of(trace_name: object) -> str | None:
    """The mode a trace stands for, from its (readable or raw) name."""
    names = MODE_NAMES
    by_name = {v: k for k, v in names.items()} | {k: k for k in names}
    return by_name.get(str(trace_name)) if trace_name is not None else None


def mode_marks(fig: go.Figure) -> go.Figure:
    """Give every trace that stands for a mode its book colour, marker symbol and line dash (the one
    place figures get them): a reader who cannot tell the colours apart still tells the modes apart."""
    for trace in fig.data:
        mode = _mode_of(trace.name) or _mode_of(trace.legendgroup) if trace.type in ("scatter", "box") else None
        if mode is None:
            continue
        trace.update(marker=dict(color=MODE_COLORS[mode], symbol=MODE_SYMBOLS[mode]))
        if trace.type == "scatter":
            trace.update(line=dict(color=MODE_COLORS[mode], dash=MODE_DASHES[mode]))
        else:
            trace.update(line=dict(color=MODE_COLORS[mode]))
    return fig


def _readable_values(table: pd.DataFrame, columns: Sequence[str | None]) -> pd.DataFrame:
    """The table with the text values of ``columns`` (legend entries, facets, categories) named."""
    out = table.copy()
    for col in dict.fromkeys(c for c in columns if c and c in out):
        if not (pd.api.types.is_numeric_dtype(out[col]) or pd.api.types.is_bool_dtype(out[col])):
            out[col] = out[col].map(lambda v: v if pd.isna(v) else readable_text(v))
    return out


def _px_style(table: pd.DataFrame, *columns: str | None) -> tuple[pd.DataFrame, dict]:
    """The table with the text values of ``columns`` readable, and the plotly express arguments that
    name every axis and legend, keep modes in the book's order, and hover seed and values (3 digits)."""
    names = MODE_NAMES
    t = _readable_values(table, columns)
    args: dict = {"labels": {c: readable_name(c) for c in t.columns}}
    if "mode" in columns and "mode" in t:
        present = list(dict.fromkeys(table["mode"]))
        order = [m for m in ALL_MODES if m in present] + [m for m in present if m not in ALL_MODES]
        args["category_orders"] = {"mode": [names.get(m, m) for m in order]}
    args["hover_data"] = {c: (":.3f" if pd.api.types.is_float_dtype(t[c]) else True) for c in t.columns
                          if c not in HIDDEN_IN_HOVER and c not in columns
                          and (c == "seed" or pd.api.types.is_numeric_dtype(t[c]))}
    args["hover_data"].update({c: False for c in HIDDEN_IN_HOVER if c in t})
    return t, args


def _round_hovers(fig: go.Figure) -> None:
    """Hovered x and y values to 3 significant digits (plotly would print 7-9)."""
    fig.update_traces(xhoverformat=".3~g", yhoverformat=".3~g", selector=lambda tr: tr.type in ("scatter", "box"))


def _facet_titles(fig: go.Figure) -> None:
    """Facet titles as their value only (``metric=oa_accuracy`` -> ``OA accuracy``)."""
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]) if a.text and "=" in a.text else None)


def summary(fig: go.Figure) -> str:
    """One generated sentence saying what a figure shows, for its accessible label: its title (or
    ``fig.layout.meta["summary"]`` when a chapter set one), its axes and its series."""
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    if meta.get("summary"):
        return str(meta["summary"])
    text = " (".join(t for t in (fig.layout.title.text or "Figure", fig.layout.title.subtitle.text) if t)
    text += ")" if fig.layout.title.subtitle.text else ""
    title = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip().rstrip(".")
    x, y = fig.layout.xaxis.title.text, fig.layout.yaxis.title.text
    axes = f"; {y} against {x}" if x and y else ""
    series = list(dict.fromkeys(t.name for t in fig.data if t.name and t.showlegend is not False))
    panels = sum(1 for k in fig.layout if k.startswith("xaxis"))
    listed = f"; series: {', '.join(series[:8])}" if series else ""
    return f"{title}{axes}{listed}" + (f"; {panels} panels" if panels > 1 else "") + "."


def wrap_title(text: str, width: int = TITLE_CHARS) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken between words (plotly never wraps a
    title: a long one runs off a narrow figure)."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _backbone_order(fig: go.Figure) -> None:
    """Backbones on a category axis in the book's one order (the registry's: ResNet3D, M3T, nnMamba,
    ...), whatever order the table gave; other category axes are left as they are."""
    book = [n for b in list(BACKBONES) for n in (backbone_title(b), b)]
    for axis in ("x", "y"):
        found: dict[str, list] = {}
        for trace in fig.data:
            values = getattr(trace, axis, None)
            if trace.type in ("scatter", "box", "bar") and values is not None:
                found.setdefault(getattr(trace, f"{axis}axis") or axis, []).extend(values)
        for ref, values in found.items():
            present = set(values) - {None}
            if present and present <= set(book):
                name = ref.replace("x", "xaxis").replace("y", "yaxis")
                fig.layout[name].update(categoryorder="array", categoryarray=[b for b in book if b in present])


def _layout(fig: go.Figure, title: str | None = None, height: int | None = None) -> go.Figure:
    """The book's look: modes marked, hovers rounded, facet titles readable, backbones in the book's
    order, and the title (wrapped to fit an 800 px window) on its own lines above the plot area (a top
    margin that keeps it clear of plotly's toolbar at any width)."""
    mode_marks(fig)
    _round_hovers(fig)
    _facet_titles(fig)
    _backbone_order(fig)
    head, _, rest = (title or "").partition("<br>")  # a second line is a subtitle: plotly keeps it in the margin
    lines = wrap_title(head)
    fig.update_layout(template=TEMPLATE, title=dict(text="<br>".join(lines) or None, x=0.01, xanchor="left", y=1.0,
                                                    yanchor="top", yref="container", pad=dict(t=46 if len(lines) > 1 else 34),
                                                    subtitle=dict(text=rest.replace("<br>", " ") or None)),
                      height=height, margin=dict(l=40, r=20, b=40, t=((130 if rest else 110) + 22 * max(0, len(lines) - 1)
                                                                      if title else 60)))
    # invisible outside ticks hold the tick labels a few pixels off the axes, so an x label at the left
    # edge and a y label at the bottom edge never meet in the corner (the browser test checks it)
    clear = dict(ticks="outside", ticklen=6, tickcolor="rgba(0,0,0,0)")
    fig.update_xaxes(**clear)
    fig.update_yaxes(**clear)
    return fig


LABEL_NAMES = {"kl_clean": "clean grade", "kl": "observed grade"}


def grade_distribution(table: pd.DataFrame, columns: Sequence[str] = ("kl_clean", "kl")) -> go.Figure:
    """Grouped bars of knee counts per KL grade for each label column (clean vs observed)."""
    rows = []
    for col in columns:
        if col in table and table[col].notna().any():
            counts = table[col].astype(int).value_counts().reindex(list(KL_GRADES), fill_value=0)
            rows += [{"grade": f"KL{g}", "knees": int(n), "label": LABEL_NAMES.get(col, col)} for g, n in counts.items()]
    fig = px.bar(pd.DataFrame(rows), x="grade", y="knees", color="label", barmode="group", pattern_shape="label",
                 pattern_shape_sequence=["", "/"], color_discrete_sequence=[MODE_COLORS["single_oa"], MODE_COLORS["single_kl"]],
                 labels={"grade": "KL grade", "knees": "knees", "label": "grade"})  # hatched: not told by colour alone
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
    names = MODE_NAMES
    rank = {n: i for i, b in enumerate(list(BACKBONES)) for n in (b, backbone_title(b))}
    backbones = sorted(dict.fromkeys(table["backbone"]), key=lambda b: rank.get(b, len(rank)))
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
    for ann, mode in zip(fig.layout.annotations, [m for _ in backbones for m in modes]):
        ann.font = dict(color=MODE_COLORS.get(mode, "#444"), size=13)
    return _layout(fig, title, height=330 * len(backbones) + 90)


def slice_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    outlines: Sequence[np.ndarray] | None = None,
    overlays: Sequence[np.ndarray] | None = None,
    cols: int = 5,
    title: str | None = None,
    lesions: Sequence[np.ndarray | None] | None = None,
    lesion_names: dict[int, str] | None = None,
    overlay_title: str = "saliency<br>(share of max)",
    panel_height: int = 260,
) -> go.Figure:
    """2D slices in a grid (grey), optional cartilage outlines and lesion outlines (codes of ``lesions``
    named by ``lesion_names``, each type in its colour, one legend entry each) and heat overlays (e.g.
    saliency on 0-1, with one colour bar titled ``overlay_title``)."""
    n = len(images)
    rows = int(np.ceil(n / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), horizontal_spacing=0.03,
                        vertical_spacing=min(0.12, 0.5 / rows))
    fig.update_annotations(font_size=11)
    shown: set[str] = set()
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        fig.add_trace(go.Heatmap(z=img, colorscale="gray", showscale=False, hoverinfo="skip"), r + 1, c + 1)
        if overlays is not None:
            ov = np.where(overlays[i] > 0.05, overlays[i], np.nan)
            bar = dict(title=dict(text=overlay_title, side="right"), len=min(1.0, 400 / (panel_height * rows)), y=1,
                       yanchor="top", thickness=12)
            fig.add_trace(go.Heatmap(z=ov, colorscale=SALIENCY_SCALE, zmin=0, zmax=1, opacity=0.55, showscale=i == 0,
                                     colorbar=bar, hoverinfo="skip"), r + 1, c + 1)
        layers = [("cartilage", outlines[i])] if outlines is not None else []
        if lesions is not None and lesions[i] is not None:
            layers += [(name, lesions[i] == code) for code, name in (lesion_names or {}).items()]
        for name, mask in layers:
            if np.asarray(mask).any():
                fig.add_trace(_outline_trace(mask, name, name not in shown, 1.5), r + 1, c + 1)
                shown.add(name)
    _square_pixels(fig, rows, cols)
    fig = _layout(fig, title, height=panel_height * rows + 150)
    fig.update_layout(margin=dict(t=120, b=60),  # room for the figure title above two-line subplot titles
                      legend=dict(orientation="h", y=-0.01, yanchor="top", x=0.5, xanchor="center"))
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
    t, style = _px_style(history, color)
    fig = px.line(t, x="epoch", y=y, color=color, line_group=line_group, markers=True, **style)
    return _layout(fig, f"{readable_name(y).capitalize()} per epoch")


#: Facet panels per row, and the gaps that keep their tick labels apart at a 620 px column.
FACET_WRAP = 4
FACET_SPACING = dict(facet_col_spacing=0.07, facet_row_spacing=0.16)


def _facets(fig: go.Figure, t: pd.DataFrame, x: str, facet_col: str | None) -> int | None:
    """Independent y axes per facet, slanted category ticks where panels are narrow; the figure height."""
    if not facet_col:
        return None
    fig.update_yaxes(matches=None, showticklabels=True)
    if not pd.api.types.is_numeric_dtype(t[x]):  # upright names run into each other in 4 narrow panels
        fig.update_xaxes(tickangle=-90)
    rows = int(np.ceil(t[facet_col].nunique() / FACET_WRAP))
    return 340 * rows + 130


def metric_points(table: pd.DataFrame, x: str, y: str, color: str, lo: str = "ci_low", hi: str = "ci_high",
                  facet_col: str | None = None, title: str = "") -> go.Figure:
    """Point estimates with error bars (confidence intervals), grouped by ``color``, optionally faceted."""
    color = _colour_column(color)
    t, style = _px_style(table.reset_index(drop=True), color, x, facet_col)
    fig = px.scatter(t, x=x, y=y, color=color, facet_col=facet_col, facet_col_wrap=FACET_WRAP if facet_col else 0,
                     error_y=t[hi] - t[y], error_y_minus=t[y] - t[lo], **(FACET_SPACING if facet_col else {}), **style)
    fig.update_traces(marker=dict(size=9))
    return _layout(_neutral_unless(fig, color), title, height=_facets(fig, t, x, facet_col))


def _colour_column(color: str | None) -> str | None:
    """The column that colours a figure's points: none for ``seed``, whose values are no category a
    reader compares (12 seeds got 12 colours, repeating); the seed is in every point's hover instead."""
    return None if color == "seed" else color


def _neutral_unless(fig: go.Figure, color: str | None) -> go.Figure:
    """Points of a figure coloured by nothing in the book's neutral colour (plotly's first colour, blue,
    is single-OA's on other figures)."""
    if color is None:
        fig.update_traces(marker=dict(color=NEUTRAL, opacity=0.8))
        fig.update_traces(error_y=dict(color=NEUTRAL), selector=dict(type="scatter"))
    return fig


#: Rows of a forest plot above which its x axis is repeated at the top (a 72-row plot is ~1,900 px tall).
FOREST_TOP_AXIS_ROWS = 20
#: How a forest plot marks a row that survives the multiple-testing correction, and one that does not.
FOREST_MARKS = {True: ("circle", "survives the correction"), False: ("circle-open", "does not survive it")}


def forest(table: pd.DataFrame, label: str = "label", diff: str = "diff", lo: str = "ci_low", hi: str = "ci_high",
           significant: str = "significant", title: str = "Dual minus single (95% CI)") -> go.Figure:
    """Forest plot of paired differences; filled markers survive the multiple-testing correction (one
    neutral colour: the fill, in the legend, is the only mark). A long plot repeats its x axis at the top."""
    t = table.reset_index(drop=True)
    t["_label"] = t[label].map(readable_text)
    t["_sig"] = t[significant].astype(bool) if significant in t else False
    fig = go.Figure()
    for sig, (symbol, name) in FOREST_MARKS.items():
        g = t[t["_sig"] == sig]
        if g.empty:
            continue
        fig.add_trace(go.Scatter(
            x=g[diff], y=g["_label"], mode="markers", name=name, showlegend=True,
            error_x=dict(type="data", symmetric=False, array=g[hi] - g[diff], arrayminus=g[diff] - g[lo], color=NEUTRAL),
            marker=dict(size=9, symbol=symbol, color=NEUTRAL),
            hovertext=[f"{a}: {signed(d)} [{signed(low)}, {signed(h)}]" for a, d, low, h in zip(g["_label"], g[diff], g[lo], g[hi])],
            hoverinfo="text"))
    fig.add_vline(x=0, line_dash="dash", line_color="grey")
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=list(dict.fromkeys(t["_label"])))
    fig.update_xaxes(title="difference (95% CI)")
    fig = _layout(fig, title, height=max(300, 28 * len(t) + 190))
    fig.update_layout(legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left"),
                      margin=dict(b=85))  # the legend under the axis title
    if len(t) > FOREST_TOP_AXIS_ROWS:  # the same axis at the top: a reader need not scroll to read a row's value
        fig.add_trace(go.Scatter(x=[t[lo].min(), t[hi].max()], y=[t["_label"].iloc[0]] * 2, xaxis="x2", mode="markers",
                                 marker=dict(opacity=0, color=NEUTRAL), showlegend=False, hoverinfo="skip"))
        fig.update_layout(xaxis2=dict(overlaying="x", side="top", matches="x", showgrid=False, ticks="outside",
                                      ticklen=6, tickcolor="rgba(0,0,0,0)"))
    return fig


def strip(table: pd.DataFrame, x: str, y: str, color: str, facet_col: str | None = None, title: str = "") -> go.Figure:
    """One point per seed: the seed-to-seed spread that a single run hides."""
    color = _colour_column(color)
    t, style = _px_style(table, color, x, facet_col)
    fig = px.strip(t, x=x, y=y, color=color, facet_col=facet_col, facet_col_wrap=FACET_WRAP if facet_col else 0,
                   **(FACET_SPACING if facet_col else {}), **style)
    return _layout(_neutral_unless(fig, color), title, height=_facets(fig, t, x, facet_col))


def scatter_2d(table: pd.DataFrame, x: str, y: str, color: str, facet_col: str | None = None,
               symbol: str | None = None, title: str = "") -> go.Figure:
    """Embedding scatter (PCA, UMAP) coloured by grade."""
    t, style = _px_style(table, facet_col, symbol)
    t[color] = t[color].astype("Int64").astype(str)
    style["category_orders"] = {**style.get("category_orders", {}), color: sorted(t[color].unique())}
    fig = px.scatter(t, x=x, y=y, color=color, facet_col=facet_col, symbol=symbol,
                     color_discrete_sequence=GRADE_COLORS, opacity=0.75, **style)
    fig.update_traces(marker=dict(size=5))
    return _layout(fig, title)


def _sparse_log_ticks(fig: go.Figure, values: pd.Series) -> None:
    """On a log axis with few values, ticks at exactly those values (plotly would label 2 3 4 ... 9)."""
    shown = sorted(pd.unique(values.dropna()))
    if len(shown) <= 6:
        fig.update_xaxes(tickmode="array", tickvals=shown, ticktext=[f"{v:g}" for v in shown], minor=dict(ticks=""))


def curves(table: pd.DataFrame, x: str, y: str, color: str, error: str | None = None, facet_col: str | None = None,
           title: str = "", log_x: bool = False) -> go.Figure:
    """Lines of ``y`` against ``x``, one per ``color`` value (modes in their book marks), optional error
    bars; facets get their own y axis (they are usually different metrics)."""
    t, style = _px_style(table, color, facet_col)
    fig = px.line(t, x=x, y=y, color=color, error_y=error, facet_col=facet_col, markers=True, log_x=log_x,
                  facet_col_wrap=FACET_WRAP if facet_col else 0, **(FACET_SPACING if facet_col else {}), **style)
    if log_x:
        _sparse_log_ticks(fig, t[x])
    return _layout(fig, title, height=_facets(fig, t, x, facet_col))


def noise_curve(table: pd.DataFrame, x: str, y: str, color: str, error: str | None = None, title: str = "") -> go.Figure:
    """A metric against label-noise strength, one line per mode, with the seed spread as error bars."""
    return curves(table, x, y, color, error=error, title=title)


CEILING_STYLES = {"oracle": "dash", "linear_probe": "dot", "noise_ceiling": "dashdot"}
#: Where each ceiling's name sits on its line: apart, since two ceilings often coincide (e.g. both at 1).
CEILING_LABELS = {"oracle": "top left", "noise_ceiling": "top right", "linear_probe": "bottom right"}


def answer_figure(levels: pd.DataFrame, ceilings: pd.DataFrame, metrics: dict[str, str], title: str = "") -> go.Figure:
    """The answer at a glance: per question (a panel), single vs dual per backbone (mean +- sd over
    seeds), with the cohort's ceilings as horizontal lines.

    ``levels``: rows of ``question, backbone, mode, mean, sd``; ``ceilings``: rows of ``ceiling``
    plus metric columns; ``metrics``: question -> metric column (e.g. ``{"coarse": "oa_roc_auc"}``).
    """
    questions = list(metrics)
    names = MODE_NAMES
    order = {m: i for i, m in enumerate(ALL_MODES)}
    fig = make_subplots(rows=1, cols=len(questions),
                        subplot_titles=[f"{q} label:<br>{spelled_out(metrics[q])}" for q in questions])
    fig.update_annotations(font_size=12)  # two short lines fit a 300 px panel
    shown: set[str] = set()  # each mode once in the legend, from the first panel it appears in
    for col, question in enumerate(questions, start=1):
        part = levels[levels["question"] == question]
        groups = sorted(part.groupby("mode", sort=False), key=lambda kv: order.get(kv[0], len(order)))
        for mode, g in groups:
            fig.add_trace(go.Scatter(x=g["backbone"], y=g["mean"], error_y=dict(type="data", array=g["sd"]),
                                     mode="markers", name=names.get(mode, mode), legendgroup=mode, showlegend=mode not in shown,
                                     legendrank=order.get(mode, len(order)),
                                     marker=dict(size=11)), row=1, col=col)
            shown.add(mode)
        for _, c in ceilings.iterrows():
            value = c.get(metrics[question])
            if pd.notna(value):
                fig.add_hline(y=float(value), line_dash=CEILING_STYLES.get(c["ceiling"], "dash"), line_color="grey",
                              annotation_text=c["ceiling"].replace("_", " "),
                              annotation_position=CEILING_LABELS.get(c["ceiling"], "top left"),
                              row=1, col=col)
    return _layout(fig, title, height=420)


def show(fig: go.Figure, note: str, summary_text: str | None = None) -> None:
    """Display a figure with its provenance folded under it: which runs, package version and cohort made it.

    ``summary_text``: the one sentence a screen reader gives for the figure (default: :func:`summary`
    from its title, axes and series)."""
    if summary_text:
        fig.update_layout(meta={**(fig.layout.meta if isinstance(fig.layout.meta, dict) else {}), "summary": summary_text})
    display(fig)
    display(provenance_note(note))


#: The answer figures' marks: one seed's difference, the mean with the rule's two intervals, and the ±delta band.
SEED_MARKS = {False: ("circle-open", "one seed"), True: ("x", "one seed, a run flagged")}
BAND_FILL = "rgba(120, 120, 120, 0.18)"


def seed_differences(seeds: pd.DataFrame, summary: pd.DataFrame, questions: dict[str, str], title: str = "") -> go.Figure:
    """What each verdict rests on: per question (a panel) and backbone, every seed's paired difference
    (dual minus single; flagged runs as crosses), the mean with its 90% (thick) and 95% (thin)
    interval, the ±delta band of equivalence and 0; the verdict under each backbone.

    Every mark is in the book's neutral colour and named in the legend: the verdict is written, not
    coloured, so the page's one colour meaning stays the modes' (the answer page's other figure).

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
        fig.add_hrect(y0=-delta, y1=delta, fillcolor=BAND_FILL, line_width=0, row=1, col=col, exclude_empty_subplots=False)
        fig.add_hline(y=0, line_color="#444", line_width=1, row=1, col=col, exclude_empty_subplots=False)
        for flagged, (symbol, label) in SEED_MARKS.items():
            g = s[s["flagged"] == flagged]
            fig.add_trace(go.Scatter(x=g["backbone"], y=g["diff"], mode="markers", name=label, legendgroup=label,
                                     showlegend=col == 1 and (not flagged or len(g) > 0),
                                     marker=dict(symbol=symbol, size=8, color="#777"), customdata=g["seed"],
                                     hovertemplate="seed %{customdata}: %{y:+.3f}<extra></extra>"), row=1, col=col)
        for i, (_, r) in enumerate(part.iterrows()):
            for lo, hi, width in ((r["ci_low"], r["ci_high"], 2), (r["eq_low"], r["eq_high"], 6)):
                if lo == lo:
                    fig.add_trace(go.Scatter(x=[r["backbone"]] * 2, y=[lo, hi], mode="lines", showlegend=False,
                                             line=dict(color=NEUTRAL, width=width), hoverinfo="skip"), row=1, col=col)
            fig.add_trace(go.Scatter(x=[r["backbone"]], y=[r["mean"]], mode="markers", name="mean; bars: 90% (thick), 95% (thin)",
                                     legendgroup="mean", showlegend=col == 1 and i == 0,
                                     marker=dict(symbol="diamond", size=12, color=NEUTRAL),
                                     hovertemplate=f"mean %{{y:+.3f}}: {r['verdict']}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(ticktext=[f"{b}<br><b>{v}</b>" for b, v in zip(part["backbone"], part["verdict"])],
                         tickvals=list(part["backbone"]), row=1, col=col)
        fig.update_yaxes(title="dual minus single" if col == 1 else None, zeroline=False, row=1, col=col)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="±δ: equivalence band", showlegend=True,
                             marker=dict(symbol="square", size=14, color=BAND_FILL), hoverinfo="skip"))
    fig.update_layout(legend=dict(orientation="h", y=-0.25))
    return _layout(fig, title, height=460)
