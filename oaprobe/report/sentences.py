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

from oaprobe.analysis.decision import MAX_SEEDS, VERDICTS
from oaprobe.facts import backbone_title
from oaprobe.report.display import COLUMN_NAMES, MODE_NAMES, readable_name, signed
from oaprobe.report.guards import interval_text
from oaprobe.report.stated import mark, stat_key

#: Metrics where lower is better (the sign of "better" flips).
LOWER_IS_BETTER = frozenset({"kl_mae"})


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


#: The truths a metric is scored against, as the sentences name them.
TRUTHS: dict[str, str] = {"kl_clean": "clean grade", "kl": "observed labels"}


def truth_words(truth: str) -> str:
    """``kl_clean`` -> "clean grade" (empty for a quantity that has no truth, e.g. saliency)."""
    return TRUTHS.get(str(truth), "")


def _test_interval(row: Mapping[str, Any]) -> tuple[float, float]:
    """The rule's test interval of a row (``ci_low``/``ci_high``, or a claim row's ``test_low``/``test_high``)."""
    lo, hi = (row["test_low"], row["test_high"]) if "test_low" in row else (row["ci_low"], row["ci_high"])
    return float(lo), float(hi)


def rule_intervals(row: Mapping[str, Any]) -> str:
    """The interval that decides a row of a decision table (the equivalence interval for
    "equivalent", else the test interval), with its level, or why there is none."""
    lo, hi = _test_interval(row)
    if not np.isfinite([lo, hi]).all():
        return "no interval" if int(row.get("n_seeds", row.get("n", 0))) < 2 else "no spread, so no interval"
    alpha = float(row.get("alpha", 0.05))
    if row.get("verdict") == "equivalent":
        return f"{100 * (1 - 2 * alpha):.3g}% CI {signed(float(row['eq_low']))} to {signed(float(row['eq_high']))}"
    return f"{100 * (1 - alpha):.3g}% CI {signed(lo)} to {signed(hi)}"


def needed_clause(row: Mapping[str, Any]) -> str:
    """How many seeds an inconclusive row of a decision table would need (empty when it is decided)."""
    if row["verdict"] != "inconclusive":
        return ""
    n, sd = row.get("seeds_needed"), float(row.get("sd", float("nan")))
    if int(row.get("n_seeds", row.get("n", 2))) < 2:
        return ""  # "over 1 seed (no interval" says it
    if n is None or n != n:
        if not sd > 0:
            return "; with no spread to plan from, the seeds a verdict needs are unknown"
        return f"; more than {MAX_SEEDS} seeds would be needed at this spread"
    return f"; about {int(n)} seeds would decide it"


def verdict_words(row: Mapping[str, Any]) -> str:
    """The rule's verdict as a reader must read it: "equivalent" whose test interval excludes 0 says the
    difference is real but smaller than δ; "inconclusive" says what would decide it."""
    verdict = str(row["verdict"])
    if verdict == "inconclusive" and row.get("reason"):
        return f"inconclusive: {row['reason']}"
    lo, hi = _test_interval(row)
    if verdict == "equivalent" and (lo > 0 or hi < 0):
        return f"equivalent (a real difference of {signed(float(row['mean']))}, but smaller than δ ±{float(row['delta']):g})"
    return verdict + needed_clause(row)


def family_words(row: Mapping[str, Any]) -> str:
    """", Bonferroni over m" for a row of a family of m > 1 comparisons, else ", tested alone"."""
    m = int(row.get("m", 1))
    return f", Bonferroni over {m}" if m > 1 else ", tested alone"


def rule_clause(row: Mapping[str, Any], key: str | None = None) -> tuple[str, str]:
    """How a row of the decision rule reads (mean over seeds, the deciding interval, δ, family,
    verdict) and its status: ``clear`` when decided (helps, hurts or equivalent), ``open`` when
    inconclusive. ``key`` (:func:`oaprobe.report.stated.stat_key`): the quantity it states, marked."""
    n, mean, delta = int(row.get("n_seeds", row.get("n", 0))), float(row["mean"]), float(row["delta"])
    band = f"δ ±{delta:g}" if delta == delta else "no δ"
    text = (f"{signed(mean)} over {plural(n, 'seed')} ({rule_intervals(row)}; {band}{family_words(row)}): "
            f"{verdict_words(row)}")
    if key:
        text += mark(key + " | mean", signed(mean)) + mark(key + " | verdict", f"{row['verdict']}{family_words(row)}")
    return text, "open" if row["verdict"] == "inconclusive" else "clear"


def rule_sentence(row: Mapping[str, Any], who: str, a: str, b: str, metric: str, truth: str,
                  key_subject: str | None = None, bold: bool = False) -> str:
    """One verdict sentence of under 40 words naming what it compares, the metric, the truth and the
    seeds: "ResNet3D, KL QWK, dual vs single-KL, clean grade: +0.012 over 3 seeds (...): helps."
    ``who``: the subject as shown; ``key_subject``: as keyed (default ``who``)."""
    n = int(row.get("n_seeds", row.get("n", 0)))
    key = stat_key(key_subject or who, a, b, metric, truth, n)
    clause, _ = rule_clause(row, key)
    if bold:
        clause = clause.replace(f": {row['verdict']}", f": **{row['verdict']}**", 1)
    names = f"{variant_title(a)} vs {variant_title(b)}"
    against = f", {truth_words(truth)}" if truth_words(truth) else ""
    return f"{who}, {readable_name(metric)}, {names}{against}: {clause}."


def variant_title(variant: str) -> str:
    """A mode or variant's readable name: ``single_kl + smoothing`` -> ``single-KL + smoothing``."""

    mode, _, rest = str(variant).partition(" ")
    return " ".join(x for x in (MODE_NAMES.get(mode, mode), rest) if x)


def describe_verdicts(table: pd.DataFrame, what: str) -> str:
    """One sentence counting the verdicts of a decision table (``what``: the comparisons it holds)."""
    if table.empty:
        return f"No {what}: too few runs."
    counts = table["verdict"].value_counts()
    family = int(table["m"].max())
    parts = ", ".join(f"{int(counts[v])} {v}" for v in VERDICTS if v in counts)
    return (f"Of {plural(len(table), 'comparison')} in {what} ({plural(table['n_seeds'].max(), 'seed')}, Bonferroni over "
            f"{family}): {parts}.")


def describe_seed_level(row: Mapping[str, Any], truth: str | None = None) -> str:
    """One sentence for a row of ``Study.seed_level`` (the book's decision rule over paired seeds);
    ``truth``: what it was scored against (else the row's ``truth`` column)."""
    truth = truth if truth is not None else str(row.get("truth", ""))
    bb = str(row["backbone"])
    return rule_sentence(row, backbone_title(bb), "dual", str(row["baseline"]), str(row["metric"]), truth, key_subject=bb)


def findings_box(bullets: list[str], title: str = "What this chapter finds") -> str:
    """A chapter's opening box (MyST admonition) of generated bullet points."""
    body = "\n".join(f"- {b}" for b in bullets) if bullets else "- Nothing to report: no runs were found."
    return f":::{{admonition}} {title}\n:class: tip\n{body}\n:::"


def describe_convergence(conv: pd.DataFrame) -> str:
    """One sentence on a table of :meth:`Study.convergence`: how many runs are flagged as failed
    training (``flagged``, set by the failure flags only) and why, and, apart, how many are degenerate
    (a frequent grade never predicted: an outcome of the mode, measured, never set aside)."""
    failures = {"unstable": "kept weights far from their best validation loss",
                "below_majority": "below the OA majority rate"}
    n, n_deg = int(conv["flagged"].sum()), int(conv["degenerate"].sum()) if "degenerate" in conv else 0
    if not n and not n_deg:
        return (f"All {len(conv)} runs converged without a flag (kept epoch within 1.2x of the best validation "
                "loss, above the majority rate, every frequent grade predicted).")
    parts = [f"{int(conv[k].sum())} {text}" for k, text in failures.items() if conv[k].any()]
    head = (f"{n} of {len(conv)} runs are flagged as failed training: " + "; ".join(parts) if n
            else f"None of the {len(conv)} runs failed to train")
    degenerate = (f"; {n_deg} never predict a frequent grade (degenerate: measured as an outcome, not set aside)"
                  if n_deg else "; every run predicts every frequent grade")
    return head + degenerate + "."


def describe_targets(targets: pd.DataFrame, truth: str) -> str:
    """One sentence on a table of :meth:`Study.quality_targets`: how many targets are met, which are not."""
    missed = targets[~targets["met"].astype(bool)]
    against = "the clean grade" if truth == "kl_clean" else "the observed grade"
    head = f"The models meet {len(targets) - len(missed)} of the {len(targets)} convergence targets (scored against {against})"
    if missed.empty:
        return head + "."
    if len(missed) > 1:  # more than one makes the sentence too long: the methods page's table gives each target, value and run
        return f"{head}; {len(missed)} are not met (the methods page gives each, with its value and runs)."

    def one(r: pd.Series) -> str:
        value = f"{r['value']:.3g}" if np.isfinite(float(r["value"])) else "not measurable (fewer than 2 seeds)"
        short = r["failing"] and "nan" not in str(r["failing"]) and str(r["failing"]).count(",") < 2
        return f"{r['target']}: {value}, needed {r['limit']}" + (f" ({r['failing']})" if short else "")

    return head + "; not met: " + "; ".join(one(r) for _, r in missed.iterrows()) + " (the methods page lists every run)."


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


#: What one unit of the label-noise strength is (the trend sentences' slope is per unit).
NOISE_UNIT = "per noise unit (1 = the cohort's default noise"


def describe_trend(row: Mapping[str, Any]) -> str:
    """One sentence (under 40 words) for a row of ``NoiseStudy.trend``: the slope of the per-seed
    dual-minus-single gain on noise strength, its family-wide interval, and the verdict."""
    metric, base = str(row["metric"]), str(row.get("baseline", ""))
    head = f"{readable_name(metric)} gain of dual over {MODE_NAMES.get(base, base)}, clean grade"
    slope, lo, hi = (float(row[k]) for k in ("slope", "ci_low", "ci_high"))
    if not np.isfinite(slope):
        return f"{head}: too few noise strengths or seeds for a trend: inconclusive."
    key = stat_key(str(row.get("backbone", "first backbone")), "dual", base, metric + " gain slope on noise", "kl_clean",
                   int(row.get("n_seeds", 0)))
    m = int(row.get("m", 1))
    level = 100 * (1 - float(row.get("alpha", 0.05)))
    interval = f"{level:.3g}% CI {signed(lo)} to {signed(hi)}" if np.isfinite([lo, hi]).all() else "no interval"
    words = {"grows": "the gain grows", "shrinks": "the gain shrinks"}
    verdict = str(row.get("verdict", "inconclusive"))
    return (f"{head}, {plural(row.get('n_seeds', 0), 'seed')} at {plural(row.get('n_levels', 0), 'strength')}: "
            f"slope {signed(slope)} {NOISE_UNIT}; {interval}, Bonferroni over {m}): {words.get(verdict, verdict)}"
            + mark(key + " | slope", signed(slope)) + mark(key + " | verdict", f"{verdict}, Bonferroni over {m}") + ".")
