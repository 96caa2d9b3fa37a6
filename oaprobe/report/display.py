"""How the book shows a table, a list of sentences and a provenance note: folded, readable, downloadable.

A chapter opens with its findings and figures; the detail behind them (long tables, per-test
sentences, which runs made a figure) sits in ``<details>`` folds that a reader opens with one
click. Every folded table carries its own CSV (a ``data:`` link, so the rendered book needs no
extra files and a download is exactly the table the page shows, unrounded).
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence

import pandas as pd
from IPython.display import HTML

from oaprobe.facts import BACKBONES, MODE_NAMES
from oaprobe.report.stated import split_marks

#: Readable names of the metric and table columns the chapters show (one place for the whole book).
COLUMN_NAMES: dict[str, str] = {
    # the decision rule's columns (oaprobe.analysis.decision)
    "eq_low": "equivalence CI low", "eq_high": "equivalence CI high", "delta": "δ", "verdict": "verdict",
    "verdict_all": "verdict, all seeds", "verdict_unflagged": "verdict, unflagged seeds",
    "n_flagged": "seeds with a flagged run", "mean_unflagged": "mean, unflagged seeds",
    "seeds_needed": "seeds a verdict needs", "loo_stable": "stands without any one seed", "p_diff": "p (difference)",
    "p_equiv": "p (equivalence, TOST)", "m": "comparisons in the family", "alpha": "α per comparison",
    "oa_accuracy": "OA accuracy", "oa_roc_auc": "OA AUC", "oa_f1": "OA F1",
    "kl_accuracy": "KL accuracy", "kl_f1_macro": "KL macro-F1", "kl_auc_macro": "KL macro-AUC",
    "kl_qwk": "KL QWK", "kl_mae": "KL MAE",
    "backbone": "backbone", "mode": "mode", "seed": "seed", "metric": "metric", "baseline": "baseline",
    "diff": "difference", "ci_low": "CI low", "ci_high": "CI high", "p_value": "p", "q_value": "q", "q_bh": "q (BH)",
    "p_t": "p (t)", "p_wilcoxon": "p (Wilcoxon)", "n_seeds": "seeds", "sd": "sd", "mean": "mean",
    "significant": "significant", "test": "test", "truth": "truth",
    "n_knees": "test knees", "knee_level": "detectable, knee level", "over_seeds": "detectable, over seeds",
    "abs_spearman_PC1_KL": "|ρ| PC1–KL", "abs_spearman_PC1_OA": "|ρ| PC1–OA", "EVR_PC1": "PC1 variance share",
    "OA_probe_AUROC_test": "OA probe AUC", "centroid_kendall_tau": "centroid order τ",
    "abs_spearman_PC1_KLclean": "|ρ| PC1–clean KL", "abs_spearman_PC1_OAclean": "|ρ| PC1–clean OA",
    "OA_probe_AUROC_test_clean": "OA probe AUC (clean)", "centroid_kendall_tau_clean": "centroid order τ (clean)",
    # figure axes, legends and facets
    "train_loss": "training loss", "val_loss": "validation loss", "epoch": "epoch", "estimate": "estimate",
    "value": "value", "label_noise": "label-noise strength", "kl": "KL grade", "kl_clean": "clean KL grade",
    "oa": "OA", "axis1": "axis 1", "axis2": "axis 2", "umap1": "UMAP 1", "umap2": "UMAP 2",
    "step": "randomisation step", "spearman": "rank correlation with the trained map", "method": "method",
    "region": "region", "enrichment": "enrichment over chance", "comparison": "comparison", "gain": "gain",
    "label": "label", "seconds": "seconds", "variant": "variant", "lambda": "λ", "target": "target",
    "roi_fraction": "chance share", "mass": "mass", "top5": "top-5% share", "dice5": "top-5% Dice",
    "auc_salient": "deletion area, salient first", "auc_random": "deletion area, random",
    "salient_faster": "salient faster", "pointing": "pointing game", "n": "knees", "mean_diff": "mean difference", "case_id": "knee",
    "p_sign": "p (sign test)", "faster": "salient faster", "passes": "passes", "reason": "reason",
    "trust": "trust", "spearman_randomised": "rank correlation, fully randomised",
    # the claims' questions and verdict table (oaprobe.report.claims)
    "latent_order": "latent order |ρ(PC1, grade)|", "within_class_order": "order inside each coarse class",
    "extreme_absorption": "extreme-grade absorption", "enrichment_cartilage": "saliency enrichment on cartilage",
    "enrichment_evidence": "saliency enrichment on the planted evidence", "claim": "claim", "role": "role",
    "ci90_low": "90% CI low", "ci90_high": "90% CI high", "ci95_low": "95% CI low", "ci95_high": "95% CI high",
    "test_low": "rule's CI low", "test_high": "rule's CI high", "verdict_without_flagged": "verdict without flagged seeds",
    "reference_diff": "reference study's difference", "reference_in_ci95": "reference inside our 95% CI",
    "kl0_as_kl1": "KL0 predicted KL1", "kl4_as_kl3": "KL4 predicted KL3", "kl0_vs_kl1_on_axis": "KL0 vs KL1 on the axis (AUC)",
    "kl3_vs_kl4_on_axis": "KL3 vs KL4 on the axis (AUC)", "oa_weight": "λ", "degenerate": "degenerate", "runs": "runs",
    # tests
    "paired_bootstrap": "paired bootstrap", "mcnemar_exact": "exact McNemar", "delong": "DeLong",
    "mcnemar_chi2_cc": "McNemar χ² (continuity-corrected)",
    # the label-noise trend (oaprobe.report.noise)
    "slope": "slope per unit of noise strength", "p_adjusted": "p (Bonferroni)", "n_levels": "noise strengths",
    "n_gains": "per-seed gains",
}
#: Readable names of the study's modes (the same order and marks everywhere: figures.mode_marks).
#: Readable names of the attribution methods.
METHOD_NAMES: dict[str, str] = {"smoothgrad": "SmoothGrad × input", "gradcam": "Grad-CAM", "gradient": "SmoothGrad",
                                "ig": "integrated gradients", "occlusion": "occlusion"}
#: Readable names of the evidence map's regions whose keys are abbreviations (oaprobe.analysis.evidence).
REGION_NAMES: dict[str, str] = {"jsn": "joint-space narrowing", "bml": "bone-marrow lesion", "meniscus": "menisci"}
#: Metric names spelled out, for a page's first use of them (the glossary page defines each).
SPELLED_OUT: dict[str, str] = {
    "kl_qwk": "KL quadratic weighted kappa (QWK)", "oa_roc_auc": "OA area under the ROC curve (ROC-AUC)",
    "kl_mae": "KL mean absolute error (MAE)", "kl_f1_macro": "KL macro-averaged F1",
}
#: Table columns whose values are identifiers (backbones, modes, metrics, methods) that a table shows named.
NAMED_VALUES: tuple[str, ...] = ("backbone", "mode", "mode_a", "mode_b", "baseline", "metric", "method", "comparison",
                                 "target", "region", "ceiling", "variant", "truth", "test", "setting", "field")
#: Columns a shown table leaves out (its CSV keeps them): run hashes belong in the provenance folds, a stated
#: quantity's key subject (:mod:`oaprobe.report.stated`) in the page's hidden marks.
HIDDEN_COLUMNS: tuple[str, ...] = ("run_id", "subject")
_TOKENS = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+|\b(?:smoothgrad|gradcam)\b")


def signed(x: float) -> str:
    """A difference with its sign, three decimals; one that rounds to zero gets a fourth decimal, and
    a zero one reads 0.000 (never "-0.000"). "–" where there is no number."""
    x = float(x)
    if not math.isfinite(x):
        return "–"
    text = f"{x:+.3f}"
    if float(text) == 0:
        text = f"{x:+.4f}"
        return "0.000" if float(text) == 0 else text
    return text



def readable_name(column: object) -> str:
    """A column's readable name: the book's name if it has one, else underscores as spaces."""
    text = str(column)
    return COLUMN_NAMES.get(text, text.replace("_", " "))


def spelled_out(metric: str) -> str:
    """A metric's name spelled out (``kl_qwk`` -> "KL quadratic weighted kappa (QWK)"), else its readable name."""
    return SPELLED_OUT.get(metric, readable_name(metric))


def readable_text(value: object, unknown: bool = True) -> str:
    """A label with every raw identifier in it named (``"dual − single_kl: kl_qwk"`` -> ``"dual −
    single-KL: KL QWK"``): modes, methods, tests and columns by their book names, a backbone given as
    the whole value by its title (``resnet3d`` -> ``ResNet3D``; inside a sentence it may be a flag's
    value), other snake_case words with spaces (``unknown=False`` leaves those as they are: sentences
    may quote a flag)."""
    names = {**COLUMN_NAMES, **MODE_NAMES, **METHOD_NAMES, **REGION_NAMES, **{b: f.title for b, f in BACKBONES.items()}}
    if str(value) in names:
        return names[str(value)]
    return _TOKENS.sub(lambda m: names.get(m.group(0), m.group(0).replace("_", " ") if unknown else m.group(0)),
                       str(value))


def _flat(table: pd.DataFrame) -> pd.DataFrame:
    """The table with a named index moved into columns (a plain range index is dropped)."""
    named = any(n is not None for n in table.index.names)
    return table.reset_index() if named else table.reset_index(drop=True)


def readable(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``table`` for reading: index levels as columns, floats rounded to ``digits``, columns and modes named."""
    out = _flat(table).drop(columns=[c for c in HIDDEN_COLUMNS if c in table.columns or c in table.index.names])
    floats = out.select_dtypes("float").columns
    out[floats] = out[floats].round(digits) + 0.0  # + 0.0: a value that rounds to -0 shows as 0, never "-0.000"
    for col in (c for c in NAMED_VALUES if c in out.columns):
        out[col] = out[col].map(lambda v: v if not isinstance(v, str) else readable_text(v))
    for col in out.select_dtypes("object").columns:  # a column of None alone would print "None"
        out[col] = out[col].map(lambda v: "–" if v is None else v)
    out.columns = [readable_name(c) for c in out.columns]
    return out


def _scrolling(table: pd.DataFrame) -> str:
    """The table's HTML in a box that scrolls sideways (styled by the book's ``oaprobe.css``)."""
    body = table.to_html(classes="dataframe oaprobe-table", border=0, index=False, na_rep="–")
    return f'<div class="oaprobe-scroll">{body}</div>'


def open_table(table: pd.DataFrame, digits: int = 3) -> HTML:
    """A short key table shown open: readable, rounded, without pandas' row numbers."""
    return HTML(_scrolling(readable(table, digits)))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "table"


def csv_link(table: pd.DataFrame, filename: str, label: str = "Download as CSV") -> str:
    """An HTML link that downloads ``table`` (unrounded, original column names) as ``filename``."""
    payload = base64.b64encode(_flat(table).to_csv(index=False).encode()).decode()
    return (f'<a class="oaprobe-csv" download="{html.escape(filename)}" '
            f'href="data:text/csv;base64,{payload}">{html.escape(label)}</a>')


def folded_table(table: pd.DataFrame, summary: str, digits: int = 3, open_: bool = False) -> HTML:
    """A table in a fold: ``summary`` (with the row count) opens it; inside, a CSV download and the
    readable table. Empty tables say so instead of folding nothing."""
    if table.empty:
        return HTML(f"<p><em>{html.escape(summary)}: no rows.</em></p>")
    rows = f"{len(table)} row{'s' if len(table) != 1 else ''}"
    body = _scrolling(readable(table, digits))
    link = csv_link(table, f"{_slug(summary)}.csv")
    return HTML(f'<details class="oaprobe-fold"{" open" if open_ else ""}><summary>{html.escape(summary)} '
                f"({rows})</summary><p>{link}</p>{body}</details>")


def folded_sentences(sentences: Sequence[str], summary: str) -> HTML:
    """A list of generated sentences in a fold (one per test or run), so a chapter reads as its findings;
    the metric, mode and method identifiers in them named as the book names them."""
    if not sentences:
        return HTML(f"<p><em>{html.escape(summary)}: none.</em></p>")

    parts = [split_marks(s) for s in sentences]  # the hidden marks stay markup; the visible text is escaped
    items = "".join(f"<li>{html.escape(readable_text(text, unknown=False))}{marks}</li>" for text, marks in parts)
    return HTML(f'<details class="oaprobe-fold"><summary>{html.escape(summary)} ({len(sentences)})</summary>'
                f"<ul>{items}</ul></details>")


def provenance_note(text: str) -> HTML:
    """Which runs, package version and cohort made a figure or table: a small folded note."""
    return HTML(f'<details class="oaprobe-provenance"><summary>Provenance</summary>'
                f"<p><small>{html.escape(text)}</small></p></details>")
