"""``oaprobe compare``: any training procedure against a baseline, under the book's decision rule.

Why: the chapters answer the book's questions (dual vs single-task); a researcher's own question
(does EMA help dual? does the stacked head beat the parallel one?) is a comparison of two
configurations on paired seeds. Seed ``s`` of the baseline and of the variant share the encoder's
initialisation and the batch order, so the per-seed differences ``variant - baseline`` go through
:func:`oaprobe.analysis.decision.decide_with_flags` exactly as the book's comparisons do: helps,
hurts, equivalent or inconclusive, with the 90% and 95% intervals, delta, the flagged-run rule
(:mod:`oaprobe.analysis.convergence`) and the seeds a verdict needs.

Metrics: the primary ones (OA ROC-AUC, KL QWK) are each tested at alpha, as in the book; other
metrics asked for share alpha (Bonferroni over their number). A metric one side does not predict
(KL metrics of a single-OA model) is left out.

Sequential mode (``until_decided``): the looks are declared before any result is seen, at
``first, first + step, ..., max_seeds`` paired seeds, and each look tests at ``alpha / looks``
(Bonferroni over the planned looks). Stopping at the first look that decides every metric then
cannot push the chance of any false verdict (helps or hurts when nothing differs, equivalent
when the difference is delta or more) above alpha: it is at most the sum over the looks of
``alpha / looks``. Conservative (each look is a stricter test), and simple to state.

Example:
    >>> planned_looks(first=4, max_seeds=10, step=2)
    [4, 6, 8, 10]
    >>> planned_looks(first=4, max_seeds=9, step=2)
    [4, 6, 8, 9]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from oaprobe.analysis.convergence import run_diagnostics
from oaprobe.analysis.decision import ALPHA, DELTAS, LOWER_IS_BETTER, decide_with_flags
from oaprobe.analysis.metrics import prediction_metrics
from oaprobe.config import RunConfig
from oaprobe.data.manifest import read_manifest
from oaprobe.errors import ConfigError
from oaprobe.report.display import readable_name
from oaprobe.report.guards import finding_limit
from oaprobe.training.runs import is_done, load_run, run_dir

#: the book's primary metrics (the coarse and the fine question), each tested at alpha on its own
PRIMARY: tuple[str, ...] = ("oa_roc_auc", "kl_qwk")
#: the metrics a comparison can ask for (the book's seed-level ones)
METRICS: tuple[str, ...] = ("oa_roc_auc", "oa_accuracy", "oa_f1", "kl_auc_macro", "kl_accuracy", "kl_f1_macro",
                            "kl_qwk", "kl_mae")
#: the table :func:`paired_rows` returns
ROW_COLUMNS = ("seed", "metric", "variant", "baseline", "diff", "flagged")


def planned_looks(first: int, max_seeds: int, step: int = 1) -> list[int]:
    """Paired seeds at each look: ``first``, then ``step`` more each time, ``max_seeds`` last."""
    if first < 2 or max_seeds < first or step < 1:
        raise ConfigError(f"looks: first = {first}, max_seeds = {max_seeds}, step = {step}; expected "
                          "2 <= first <= max_seeds and step >= 1")
    looks = list(range(first, max_seeds + 1, step))
    return looks if looks[-1] == max_seeds else [*looks, max_seeds]


def family_sizes(metrics: Sequence[str]) -> dict[str, int]:
    """Bonferroni family of each metric: 1 for a primary metric, the number of others for the others."""
    others = [m for m in metrics if m not in PRIMARY]
    return {m: 1 if m in PRIMARY else len(others) for m in metrics}


def usable_metrics(metrics: Sequence[str], baseline: RunConfig, variant: RunConfig) -> list[str]:
    """``metrics`` both sides predict (a single-OA model has no KL head)."""
    no_kl = "single_oa" in (baseline.mode, variant.mode)
    return [m for m in metrics if not (no_kl and m.startswith("kl_"))]


def _plain(d: np.ndarray, level: float) -> tuple[float, float]:
    """The uncorrected ``level`` t-interval of the mean difference, for the reader (the rule's own,
    corrected for the family and the looks, are ``ci_*`` and ``eq_*``)."""
    if d.size < 2 or not np.ptp(d) > 0:
        return math.nan, math.nan
    lo, hi = stats.t.interval(level, d.size - 1, loc=d.mean(), scale=d.std(ddof=1) / math.sqrt(d.size))
    return float(lo), float(hi)


def decide_metrics(rows: pd.DataFrame, metrics: Sequence[str], looks: int = 1, limit: str | None = None,
                   alpha: float = ALPHA) -> pd.DataFrame:
    """The decision rule on each metric's paired differences (``rows``: :data:`ROW_COLUMNS`), its family
    Bonferroni-corrected and divided again by the planned ``looks``. One row per metric: ``metric``,
    ``variant`` and ``baseline`` means, the keys of :func:`decide_with_flags`, ``ci90_low/high``."""
    sizes = family_sizes(metrics)
    out = []
    for metric in metrics:
        g = rows[rows["metric"] == metric].sort_values("seed")
        d = g["diff"].to_numpy(float)
        res = decide_with_flags(d, g["flagged"].to_numpy(bool), DELTAS[metric], alpha, sizes[metric] * looks,
                                metric in LOWER_IS_BETTER, limit)
        lo90, hi90 = _plain(d, 0.90)
        out.append({"metric": metric, "variant": float(g["variant"].mean()), "baseline": float(g["baseline"].mean()),
                    **res, "ci90_low": float(lo90), "ci90_high": float(hi90), "ci95": _plain(d, 0.95)})
    return pd.DataFrame(out)


def paired_rows(baseline: RunConfig, variant: RunConfig, seeds: Sequence[int], runs_root: str | Path,
                metrics: Sequence[str], truth: str) -> pd.DataFrame:
    """Per seed and metric: the variant's and the baseline's test value (against ``truth``), the
    difference and whether either run failed to train, flagged as the book flags it (against the observed
    labels the models were trained on, :meth:`oaprobe.report.study.Study.convergence`). Every run must be finished."""
    rows = []
    for seed in seeds:
        runs = [load_run(run_dir(c.replace(seed=seed), runs_root)) for c in (variant, baseline)]
        values = [prediction_metrics(r.predictions, split="test", truth=truth) for r in runs]
        flagged = any(run_diagnostics(r.history, r.predictions)["flagged"] for r in runs)
        for metric in metrics:
            a, b = float(values[0].get(metric, math.nan)), float(values[1].get(metric, math.nan))
            rows.append({"seed": int(seed), "metric": metric, "variant": a, "baseline": b, "diff": a - b,
                         "flagged": flagged})
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS))


@dataclass(frozen=True)
class Comparison:
    """A variant against a baseline on one manifest (their ``seed`` fields are ignored)."""

    baseline: RunConfig
    variant: RunConfig
    metrics: tuple[str, ...] = PRIMARY

    def __post_init__(self) -> None:
        if self.baseline.replace(seed=0) == self.variant.replace(seed=0):
            raise ConfigError("compare: the variant equals the baseline; expected at least one RunConfig flag "
                              "that differs (e.g. --ema-decay 0.99)")
        if self.baseline.manifest != self.variant.manifest:
            raise ConfigError("compare: baseline and variant must share one manifest (paired seeds see the same knees)")
        bad = [m for m in self.metrics if m not in METRICS]
        if bad or not self.metrics:
            raise ConfigError(f"compare: metric {', '.join(bad) or '(none)'}; expected any of {', '.join(METRICS)}")

    def grid(self, seeds: Sequence[int]) -> list[RunConfig]:
        """Both sides' runs at ``seeds``."""
        return [c.replace(seed=s) for s in seeds for c in (self.variant, self.baseline)]

    def differing(self) -> dict[str, tuple[object, object]]:
        """Field -> (variant, baseline) for each RunConfig field the two differ in (seed aside)."""
        a, b = self.variant.to_dict(), self.baseline.to_dict()
        return {k: (a[k], b[k]) for k in a if k != "seed" and a[k] != b[k]}


@dataclass
class Result:
    """What a comparison found: the verdict table at the last look, the rows it used and the plan."""

    comparison: Comparison
    table: pd.DataFrame
    rows: pd.DataFrame
    seeds: list[int]
    looks: list[int]
    truth: str
    limit: str | None


def run_comparison(comparison: Comparison, seeds: Sequence[int], runs_root: str | Path,
                   train: Callable[[list[RunConfig]], None], max_seeds: int | None = None, step: int = 1,
                   on_look: Callable[[int, pd.DataFrame], None] | None = None) -> Result:
    """Train what is missing (``train`` gets the unfinished configs) and apply the rule at ``seeds``;
    with ``max_seeds``, add ``step`` paired seeds per look until every metric is decided (or
    ``max_seeds``), each look at ``alpha / looks`` (see the module doc). ``on_look(n, table)``
    reports each look."""
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if len(seeds) < 2:
        raise ConfigError(f"compare: paired seeds {seeds}; expected at least 2 (a t-interval needs two), e.g. --seeds 0,1")
    looks = planned_looks(len(seeds), max_seeds, step) if max_seeds is not None else [len(seeds)]
    extra = (s for s in range(max(seeds) + 1, 10**9))
    plan = seeds + [next(extra) for _ in range(looks[-1] - len(seeds))]
    table_ = read_manifest(comparison.baseline.manifest, check_volumes=False)
    truth = "kl_clean" if "kl_clean" in table_ and table_["kl_clean"].notna().any() else "kl"
    limit = finding_limit(table_, truth=truth)
    metrics = usable_metrics(comparison.metrics, comparison.baseline, comparison.variant)
    if not metrics:
        raise ConfigError(f"compare: none of {', '.join(comparison.metrics)} is predicted by both sides "
                          "(a single-OA model has no KL head)")
    def rows_at(n: int) -> pd.DataFrame:
        todo = [c for c in comparison.grid(plan[:n]) if not is_done(run_dir(c, runs_root))]
        if todo:
            train(todo)
        return paired_rows(comparison.baseline, comparison.variant, plan[:n], runs_root, metrics, truth)

    n, rows, table = sequential(looks, rows_at, metrics, limit, on_look)
    return Result(comparison, table, rows, plan[:n], looks, truth, limit)


def sequential(looks: Sequence[int], rows_at: Callable[[int], pd.DataFrame], metrics: Sequence[str],
               limit: str | None = None, on_look: Callable[[int, pd.DataFrame], None] | None = None,
               alpha: float = ALPHA) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    """Look at ``looks[0]``, ``looks[1]``, ... paired seeds (``rows_at(n)``: their rows) until every metric
    is decided, each look at ``alpha / len(looks)``; return the last look's n, rows and verdict table."""
    for n in looks:
        rows = rows_at(n)
        table = decide_metrics(rows, metrics, len(looks), limit, alpha)
        if on_look is not None:
            on_look(n, table)
        if (table["verdict"] != "inconclusive").all():
            break
    return n, rows, table


def _pct(a: float) -> str:
    return f"{100 * a:.3g}%"


def _signed(x: float) -> str:
    return f"{x:+.4f}" if x == x else "n/a"


def _interval_text(lo: float, hi: float) -> str:
    return f"[{_signed(lo)}, {_signed(hi)}]" if lo == lo else "n/a"


def describe(result: Result) -> list[str]:
    """The verdict as lines of text: what was compared, then one block per metric."""
    c, t = result.comparison, result.table
    changed = ", ".join(f"{k} = {a} (baseline {b})" for k, (a, b) in c.differing().items())
    lines = [f"variant: {changed}",
             f"on {c.baseline.manifest}, backbone {c.variant.backbone}; paired seeds {','.join(map(str, result.seeds))} "
             f"(n = {len(result.seeds)}); scored against the {'clean grade' if result.truth == 'kl_clean' else 'observed KL grade'}"]
    if len(result.looks) > 1:
        lines.append(f"sequential: looks planned at {', '.join(map(str, result.looks))} seeds, each at alpha / "
                     f"{len(result.looks)} (Bonferroni over the looks); stopped at {len(result.seeds)}")
    if result.limit:
        lines.append(f"no verdict can be reached here: {result.limit}")
    for _, r in t.iterrows():
        better = "lower" if r["metric"] in LOWER_IS_BETTER else "higher"
        lines.append(f"{readable_name(r['metric'])} ({better} is better): {r['verdict'].upper()}")
        lines.append(f"  variant {r['variant']:.4f}, baseline {r['baseline']:.4f}, mean difference {_signed(r['mean'])} "
                     f"(variant - baseline; sd {r['sd']:.4f}); delta ±{r['delta']:g}")
        lines.append(f"  {_pct(1 - r['alpha'])} interval {_interval_text(r['ci_low'], r['ci_high'])} (difference test), "
                     f"{_pct(1 - 2 * r['alpha'])} {_interval_text(r['eq_low'], r['eq_high'])} (equivalence), alpha "
                     f"{r['alpha']:.4g}; plain 90% {_interval_text(r['ci90_low'], r['ci90_high'])}, 95% "
                     f"{_interval_text(*r['ci95'])}" + ("" if r["ci_low"] == r["ci_low"] else
                                                         " (n/a: fewer than 2 paired seeds, or no spread)"))
        lines.append(f"  flagged-run rule: {r['n_flagged']} seed(s) with a flagged run; verdict on all seeds "
                     f"{r['verdict_all']}, without them {r['verdict_unflagged']} (a verdict stands only if both agree)")
        if r["verdict"] == "inconclusive":
            need = r["seeds_needed"]
            lines.append("  paired seeds a verdict needs at this spread (80% power): " + (
                str(int(need)) if need is not None and need == need else
                "more than 200" if r["sd"] == r["sd"] and r["sd"] > 0 else "no estimate (fewer than 2 seeds, or no spread)"))
    return lines
