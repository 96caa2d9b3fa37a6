"""Sentences that state results, generated from result tables: no finding is typed by hand.

Example:
    >>> row = {"backbone": "resnet3d", "metric": "kl_qwk", "diff": 0.05, "ci_low": 0.01,
    ...        "ci_high": 0.09, "q_bh": 0.01, "significant": True}
    >>> describe_paired(row)
    'ResNet3D, KL QWK: dual minus single = +0.050 (95% CI +0.010 to +0.090, q = 0.010): dual is better, and the difference survives the FDR correction.'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from oaprobe.report.guards import interval_text
from oaprobe.facts import backbone_title
from oaprobe.report.display import readable_name
from oaprobe.analysis.decision import MAX_SEEDS
from oaprobe.analysis.decision import VERDICTS
from oaprobe.report.display import MODE_NAMES
from oaprobe.report.display import COLUMN_NAMES
from oaprobe.report.display import readable_text

#: Metrics where lower is better (the sign of "better" flips).
LOWER_IS_BETTER = frozenset({"kl_mae"})


def signed(x: float) -> str:
    """A difference with its sign, three decimals."""
    return f"{x:+.3f}"


def dual_is_better(metric: str, diff: float) -> bool:
    """Whether a dual-minus-single difference favours dual for ``metric``."""
    return diff < 0 if metric in LOWER_IS_BETTER else diff > 0


def describe_paired(row: Mapping[str, Any], limit: str | None = None) -> str:
    """One sentence for one paired test (a row of a reference family), from its numbers; ``limit``
    (:func:`oaprobe.report.guards.finding_limit`) names why the test set carries no verdict."""
    diff, lo, hi = float(row["diff"]), float(row["ci_low"]), float(row["ci_high"])
    if limit:
        verdict = f"no verdict on this test set: {limit}."
    elif bool(row.get("significant", False)):
        better = dual_is_better(str(row["metric"]), diff)
        verdict = f"dual is {'better' if better else 'worse'}, and the difference survives the FDR correction."
    else:
        verdict = "the difference does not survive the FDR correction (no evidence that dual-head changes it)."
    seed = f" (seed {row['seed']})" if "seed" in row and pd.notna(row.get("seed")) else ""
    return (
        f"{backbone_title(str(row['backbone']))}{seed}, {readable_name(row['metric'])}: dual minus single = {signed(diff)} "
        f"(95% CI {interval_text(lo, hi)}, q = {float(row['q_bh']):.3f}): {verdict}"
    )


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """``n`` and ``word``, in the plural unless ``n`` is 1 ("1 seed", "3 seeds", "2 analyses")."""
    n = int(n)
    return f"{n} {word if n == 1 else (many or word + 's')}"


def rule_intervals(row: Mapping[str, Any]) -> str:
    """The rule's two intervals of a row of a decision table, or why there are none."""
    lo, hi = float(row["ci_low"]), float(row["ci_high"])
    if not np.isfinite([lo, hi]).all():
        return "no interval: fewer than 2 seeds or no spread"
    conf = 100 * (1 - float(row.get("alpha", 0.05)))
    eq = 100 * (1 - 2 * float(row.get("alpha", 0.05)))
    return (f"{eq:.3g}% CI {signed(float(row['eq_low']))} to {signed(float(row['eq_high']))}, "
            f"{conf:.3g}% CI {signed(lo)} to {signed(hi)}")


def needed_clause(row: Mapping[str, Any]) -> str:
    """How many seeds an inconclusive row of a decision table would need (empty when it is decided)."""
    if row["verdict"] != "inconclusive":
        return ""
    n, sd = row.get("seeds_needed"), float(row.get("sd", float("nan")))
    if int(row.get("n_seeds", 2)) < 2:
        return "; one seed gives no interval"
    if n is None or n != n:
        if not sd > 0:
            return "; with no spread to plan from, the seeds a verdict needs are unknown"
        return f"; more than {MAX_SEEDS} seeds would be needed at this spread and mean"
    return f"; about {int(n)} seeds would decide it at this spread"


def rule_clause(row: Mapping[str, Any]) -> tuple[str, str]:
    """How a row of the decision rule reads in an answer, and its status: ``clear`` when decided
    (helps, hurts or equivalent), ``open`` when inconclusive."""
    n, mean, delta = int(row["n_seeds"]), float(row["mean"]), float(row["delta"])
    band = f"δ = ±{delta:g}" if delta == delta else "no δ declared"
    family = f", Bonferroni over {plural(row['m'], 'comparison')}" if int(row.get("m", 1)) > 1 else ""
    text = (f"mean {signed(mean)} over {plural(n, 'seed')} ({rule_intervals(row)}; {band}{family}): "
            f"{row['verdict']}{needed_clause(row)}")
    return text, "open" if row["verdict"] == "inconclusive" else "clear"


def describe_verdicts(table: pd.DataFrame, what: str) -> str:
    """One sentence counting the verdicts of a decision table (``what``: the comparisons it holds)."""
    if table.empty:
        return f"No {what}: too few runs."
    counts = table["verdict"].value_counts()
    family = int(table["m"].max())
    parts = ", ".join(f"{int(counts[v])} {v}" for v in VERDICTS if v in counts)
    return (f"Of {plural(len(table), 'comparison')} in {what} ({plural(table['n_seeds'].max(), 'seed')}, Bonferroni over "
            f"{family}): {parts}.")


def describe_seed_level(row: Mapping[str, Any]) -> str:
    """One sentence for a row of ``Study.seed_level`` (the book's decision rule over paired seeds)."""
    delta = float(row["delta"])
    band = f"δ = ±{delta:g}" if delta == delta else "no δ declared, so no equivalence"
    family = f", Bonferroni over {plural(row['m'], 'comparison')}" if int(row.get("m", 1)) > 1 else ""
    return (
        f"{backbone_title(str(row['backbone']))}, {readable_name(row['metric'])}, dual vs "
        f"{MODE_NAMES.get(str(row['baseline']), row['baseline'])}: mean paired difference over "
        f"{plural(row['n_seeds'], 'seed')} {signed(float(row['mean']))} ({rule_intervals(row)}; {band}{family}): "
        f"{row['verdict']}{needed_clause(row)}."
    )


def findings_box(bullets: list[str], title: str = "What this chapter finds") -> str:
    """A chapter's opening box (MyST admonition) of generated bullet points."""
    body = "\n".join(f"- {b}" for b in bullets) if bullets else "- Nothing to report: no runs were found."
    return f":::{{admonition}} {title}\n:class: tip\n{body}\n:::"


def describe_convergence(conv: pd.DataFrame) -> str:
    """One sentence on a table of :meth:`Study.convergence`: how many runs are flagged, and why."""
    flags = {"unstable": "kept weights far from their best validation loss", "below_majority": "below the OA majority rate",
             "degenerate": "a frequent grade never predicted"}
    parts = [f"{int(conv[k].sum())} {text}" for k, text in flags.items() if conv[k].any()]
    n = int(conv[list(flags)].any(axis=1).sum())
    if not n:
        return f"All {len(conv)} runs converged without a flag (kept epoch within 1.2x of the best validation loss, above the majority rate, every frequent grade predicted)."
    return f"{n} of {len(conv)} runs are flagged: " + "; ".join(parts) + "."


def describe_targets(targets: pd.DataFrame, truth: str) -> str:
    """One sentence on a table of :meth:`Study.quality_targets`: how many targets are met, which are not."""
    missed = targets[~targets["met"].astype(bool)]
    against = "the clean grade" if truth == "kl_clean" else "the observed grade"
    head = f"The models meet {len(targets) - len(missed)} of the {len(targets)} convergence targets (scored against {against})"
    if missed.empty:
        return head + "."
    parts = [f"{r['target']}: {r['value']:.3g}, needed {r['limit']}" + (f" ({r['failing']})" if r["failing"] else "")
             for _, r in missed.iterrows()]
    return head + "; not met: " + "; ".join(parts) + "."


def _span(values: pd.Series) -> str:
    low, high = float(values.min()), float(values.max())
    return f"{low:.3f}" if f"{low:.3f}" == f"{high:.3f}" else f"{low:.3f}–{high:.3f}"


def describe_detectable(table: pd.DataFrame, metrics: tuple[str, ...] = ("oa_roc_auc", "kl_accuracy")) -> str:
    """One sentence on :func:`oaprobe.analysis.power.detectable_table`: for the reference's headline
    metrics, the range over backbones of the smallest difference detected with 80% power."""
    rows = table[table["metric"].isin(metrics)]
    if rows.empty:
        return "No paired comparisons, so nothing to say about what this build can detect."
    names = [m for m in metrics if m in set(rows["metric"])]
    knee = ", ".join(f"{COLUMN_NAMES[m]} {_span(rows.loc[rows['metric'] == m, 'knee_level'])}" for m in names)
    head = (f"With {int(rows['n_knees'].median())} test knees, a knee-level paired test detects a dual-minus-single "
            f"difference of {knee} with 80% power at α = 0.05 (range over backbones)")
    seeds = rows.dropna(subset=["over_seeds"])
    if seeds.empty:
        return head + "; one seed allows no test across seeds."
    over = ", ".join(f"{COLUMN_NAMES[m]} {_span(seeds.loc[seeds['metric'] == m, 'over_seeds'])}"
                     for m in names if m in set(seeds["metric"]))
    return head + f"; over {int(seeds['n_seeds'].max())} seeds, a paired t-test detects {over}."


def tally(family: pd.DataFrame) -> dict[str, int]:
    """Counts of a paired family: tests, significant, significant in favour of dual, against."""
    sig = family[family["significant"].astype(bool)]
    favour = int(sum(dual_is_better(m, d) for m, d in zip(sig["metric"], sig["diff"])))
    return {"tests": int(len(family)), "significant": int(len(sig)), "dual_better": favour,
            "dual_worse": int(len(sig)) - favour}


def describe_trend(row: Mapping[str, Any], alpha: float = 0.05) -> str:
    """One sentence for a trend of the dual-minus-single gain against label-noise strength."""
    slope, lo, hi, p = (float(row[k]) for k in ("slope", "ci_low", "ci_high", "p"))
    if not np.isfinite(p):
        verdict = "too few noise levels for a trend"
    elif p < alpha:
        grows = dual_is_better(str(row["metric"]), slope)
        verdict = f"the dual-head gain {'grows' if grows else 'shrinks'} as the labels get noisier (p = {p:.3f})"
    else:
        verdict = f"no evidence that the gain changes with the noise (p = {p:.3f})"
    if not np.isfinite(slope):
        return f"{readable_text(row['comparison'])} against the clean grade: {verdict}."
    interval = f" (95% CI {signed(lo)} to {signed(hi)})" if np.isfinite([lo, hi]).all() else ""
    return (
        f"{readable_text(row['comparison'])} against the clean grade: slope of the per-seed gain on noise "
        f"strength {signed(slope)} per unit{interval}; {verdict}."
    )
