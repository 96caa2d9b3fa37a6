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

from oaprobe.facts import KL_GRADES

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


def _layout(fig: go.Figure, title: str | None = None, height: int | None = None) -> go.Figure:
    fig.update_layout(template=TEMPLATE, title=title, height=height, margin=dict(l=40, r=20, t=50, b=40))
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


def confusion_heatmap(matrix: np.ndarray, x_title: str, y_title: str, title: str, normalise: bool = True) -> go.Figure:
    """Heatmap of a 5x5 grade confusion matrix (rows: ``y_title``), with counts or row shares."""
    m = np.asarray(matrix, dtype=float)
    shown = m / np.maximum(m.sum(axis=1, keepdims=True), 1) if normalise else m
    labels = [f"KL{g}" for g in range(m.shape[0])]
    text = [[f"{shown[i, j]:.2f}<br>({int(m[i, j])})" for j in range(m.shape[1])] for i in range(m.shape[0])]
    fig = go.Figure(
        go.Heatmap(z=shown, x=labels, y=labels, text=text, texttemplate="%{text}", colorscale="Blues", showscale=False)
    )
    fig.update_yaxes(title=y_title, autorange="reversed")
    fig.update_xaxes(title=x_title)
    return _layout(fig, title, height=420)


def _outline(mask2d: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask (pixels of the mask with a 4-neighbour outside it)."""
    m = mask2d.astype(bool)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return m & ~inner


def slice_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    outlines: Sequence[np.ndarray] | None = None,
    overlays: Sequence[np.ndarray] | None = None,
    cols: int = 5,
    title: str | None = None,
) -> go.Figure:
    """2D slices in a grid (grey), optional mask outlines (red) and heat overlays (e.g. saliency)."""
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
            yy, xx = np.nonzero(_outline(outlines[i]))
            fig.add_trace(
                go.Scatter(x=xx, y=yy, mode="markers", marker=dict(size=2, color="red"), hoverinfo="skip", showlegend=False),
                r + 1,
                c + 1,
            )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig = _layout(fig, title, height=260 * rows + 120)
    fig.update_layout(margin=dict(t=110))  # room for the figure title above two-line subplot titles
    return fig


def training_curves(history: pd.DataFrame, y: str = "train_loss", color: str = "mode", line_group: str = "run_id") -> go.Figure:
    """Per-epoch curves, one line per run, coloured by ``color``."""
    fig = px.line(history, x="epoch", y=y, color=color, line_group=line_group, color_discrete_map=MODE_COLORS, markers=True)
    return _layout(fig, f"{y} per epoch")


def metric_points(table: pd.DataFrame, x: str, y: str, color: str, lo: str = "ci_low", hi: str = "ci_high",
                  facet_col: str | None = None, title: str = "") -> go.Figure:
    """Point estimates with error bars (confidence intervals), grouped by ``color``, optionally faceted."""
    t = table.reset_index(drop=True)
    fig = px.scatter(
        t,
        x=x,
        y=y,
        color=color,
        facet_col=facet_col,
        facet_col_wrap=4 if facet_col else 0,
        error_y=t[hi] - t[y],
        error_y_minus=t[y] - t[lo],
        color_discrete_map=MODE_COLORS,
        hover_data=[c for c in t.columns if t[c].dtype != object or c in (x, color)],
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
    fig = px.strip(table, x=x, y=y, color=color, facet_col=facet_col, color_discrete_map=MODE_COLORS)
    if facet_col:  # facets are usually metrics on different scales (QWK, MAE)
        fig.update_yaxes(matches=None, showticklabels=True)
    return _layout(fig, title)


def scatter_2d(table: pd.DataFrame, x: str, y: str, color: str, facet_col: str | None = None,
               symbol: str | None = None, title: str = "") -> go.Figure:
    """Embedding scatter (PCA, UMAP) coloured by grade."""
    t = table.copy()
    t[color] = t[color].astype("Int64").astype(str)
    order = {color: sorted(t[color].unique())}
    fig = px.scatter(t, x=x, y=y, color=color, facet_col=facet_col, symbol=symbol, category_orders=order,
                     color_discrete_sequence=GRADE_COLORS, opacity=0.75)
    fig.update_traces(marker=dict(size=5))
    return _layout(fig, title)


def curves(table: pd.DataFrame, x: str, y: str, color: str, error: str | None = None, facet_col: str | None = None,
           title: str = "", log_x: bool = False) -> go.Figure:
    """Lines of ``y`` against ``x``, one per ``color`` value (modes in their book colours), optional error
    bars; facets get their own y axis (they are usually different metrics)."""
    fig = px.line(table, x=x, y=y, color=color, error_y=error, facet_col=facet_col, markers=True, log_x=log_x,
                  color_discrete_map=MODE_COLORS)
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
    questions = list(metrics)
    fig = make_subplots(rows=1, cols=len(questions), subplot_titles=[f"{q}: {metrics[q]}" for q in questions])
    for col, question in enumerate(questions, start=1):
        part = levels[levels["question"] == question]
        for mode, g in part.groupby("mode", sort=False):
            fig.add_trace(go.Scatter(x=g["backbone"], y=g["mean"], error_y=dict(type="data", array=g["sd"]),
                                     mode="markers", name=mode, legendgroup=mode, showlegend=col == 1,
                                     marker=dict(size=11, color=MODE_COLORS.get(mode))), row=1, col=col)
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
