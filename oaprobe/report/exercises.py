"""Teaching exercises whose answers are computed from runs of the same build.

Each exercise changes one parameter (a RunConfig field, a preset field or the truth a model is
scored against) and is answered from runs the book already trains: the main grid, the
stacked-dual runs, the "beyond the dual head" runs, the label-noise runs, the saliency stage and
the training histories. An answer is an :class:`Answer`: generated text with its numbers, and
whether this build decides the question under the book's decision rule (``clear``: helps, hurts or
equivalent), leaves it inconclusive (``open``, with the seeds that would decide it), or lacks the
runs it needs (``absent``, said in one sentence instead of failing). The comparisons of one
exercise share a Bonferroni correction.

Example:
    >>> interval_clause({"n_seeds": 16, "mean": 1.8, "ci_low": 1.2, "ci_high": 2.4}, null=1.0, unit="knee")
    ('mean +1.800 over 16 knees (95% CI +1.200 to +2.400): the interval lies above 1', 'clear')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import Markdown

from oaprobe.analysis.decision import DELTAS, LOWER_IS_BETTER, decide, seeds_needed
from oaprobe.config import DEFAULT_COHORTS, DEFAULT_RUNS, get_preset
from oaprobe.data.labels import noise_matrix
from oaprobe.facts import MODES, backbone_title
from oaprobe.report.answer import TRUTHS, main_rule_table
from oaprobe.report.beyond import BeyondStudy, describe_comparison
from oaprobe.report.display import MODE_NAMES, readable_name
from oaprobe.report.noise import NoiseStudy
from oaprobe.report.saliency import (
    NOT_TRUSTWORTHY,
    RANDOMISATION_MAX_RHO,
    randomisation_verdicts,
    saliency_enrichment,
    sanity_summary,
)
from oaprobe.report.sentences import describe_trend, plural, rule_sentence, signed, variant_title
from oaprobe.report.study import Study
from oaprobe.sweep import stacked_grid
from oaprobe.training.runs import Run

#: The exercises in the chapter's order: glue key -> title (the notebook's headings read "## n. title").
EXERCISES: dict[str, str] = {
    "ex_stacked": "Stacked or parallel?",
    "ex_boundary": "Which grade boundary is hardest?",
    "ex_seeds": "How many seeds would you need?",
    "ex_noise0": "Noise-free labels",
    "ex_lambda": "The weight of the OA loss",
    "ex_ordinal": "One ordinal head instead of two heads",
    "ex_smoothing": "Label smoothing",
    "ex_noise_strong": "Stronger label noise",
    "ex_backbone": "Another backbone",
    "ex_truth": "Observed or clean grade as the truth",
    "ex_region": "Where does saliency look?",
    "ex_epochs": "How many epochs did the runs need?",
}
#: What each status of an answer means in the chapter's findings box.
STATUS_WORDS = {"clear": "Decided by this build's runs under the book's rule (helps, hurts or equivalent)",
                "open": "Inconclusive in this build (each answer says how many seeds would decide it)",
                "absent": "Not answerable in this build, which lacks the runs they need"}


@dataclass(frozen=True)
class Answer:
    """A computed answer: its text, and ``clear`` / ``open`` / ``absent`` (see :data:`STATUS_WORDS`)."""

    text: str
    status: str = "clear"


def adjacent_confusions(y: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    """For each adjacent grade pair, how often knees of the two grades are predicted as each other."""
    rows = []
    for g in range(4):
        pair = np.isin(y, (g, g + 1))
        swapped = ((y == g) & (pred == g + 1)) | ((y == g + 1) & (pred == g))
        rows.append({"boundary": f"{g}/{g + 1}", "knees": int(pair.sum()), "swapped": int(swapped.sum()),
                     "rate": float(swapped.sum() / max(pair.sum(), 1))})
    return pd.DataFrame(rows)


def interval_clause(row: Mapping[str, Any], null: float = 0.0, unit: str = "seed",
                    fmt: Callable[[float], str] = signed) -> tuple[str, str]:
    """How a mean over knees or seeds with its 95% t-interval (``n_seeds, mean, ci_low, ci_high``) reads
    against ``null`` (a level, not a comparison of two procedures: those use :func:`oaprobe.report.sentences.rule_clause`)."""
    n, mean, lo, hi = int(row["n_seeds"]), float(row["mean"]), float(row["ci_low"]), float(row["ci_high"])
    if n < 2:
        return f"{fmt(mean)} from a single {unit}, which gives no interval", "open"
    if not (np.isfinite(lo) and np.isfinite(hi)):  # every value equal: no spread, no t-interval
        return f"{fmt(mean)} in each of the {n} {unit}s", "open" if mean == null else "clear"
    text = f"mean {fmt(mean)} over {n} {unit}s (95% CI {fmt(lo)} to {fmt(hi)})"
    if lo <= null <= hi:
        return f"{text}: the interval covers {null:g}", "open"
    return f"{text}: the interval lies {'above' if lo > null else 'below'} {null:g}", "clear"


def gap(wide: pd.DataFrame, a: Any, b: Any, metric: str, m: int = 1) -> dict[str, object]:
    """Column ``a`` minus column ``b`` of a seeds x variants table of ``metric``, under the decision rule
    over the seeds both have, in a family of ``m`` comparisons."""
    return decide((wide[a] - wide[b]).dropna().to_numpy(float), DELTAS.get(metric, float("nan")), m=m,
                  lower_is_better=metric in LOWER_IS_BETTER)


def best_and_rival(wide: pd.DataFrame, reference: Any) -> tuple[Any, Any]:
    """The column with the highest mean, and what to compare it with: ``reference``, or the
    runner-up when the best is the reference itself."""
    order = wide.mean().sort_values(ascending=False, kind="stable").index.tolist()
    best = order[0]
    return best, (reference if best != reference else order[1])


def largest_gain(seed_level: pd.DataFrame, metric: str) -> pd.Series:
    """The row of ``Study.seed_level`` with the largest mean dual-minus-single gain in ``metric``."""
    t = seed_level[seed_level["metric"] == metric]
    return t.loc[t["mean"].idxmax()]


def top_region(enrichment: pd.DataFrame) -> pd.Series:
    """The row of :func:`oaprobe.report.saliency.saliency_enrichment` with the highest mean enrichment over chance."""
    return enrichment.loc[enrichment["enrichment"].idxmax()]


def epoch_summary(convergence: pd.DataFrame) -> dict[str, int | float]:
    """Of the runs of ``Study.convergence``: how many, their epochs, the median epoch of the lowest
    validation loss, and how many reached it in their last epoch (still improving at the end)."""
    last = convergence["best_epoch"] == convergence["epochs"]
    return {"runs": len(convergence), "epochs": int(convergence["epochs"].max()),
            "median_best": float(convergence["best_epoch"].median()), "best_at_last": int(last.sum())}


def trend_clause(row: Mapping[str, Any]) -> tuple[str, str]:
    """How a slope of the gain on noise strength (a row of ``NoiseStudy.trend``) reads, and its status:
    the chapter's own sentence (:func:`oaprobe.report.sentences.describe_trend`, its family)."""
    return describe_trend(row), "open" if row.get("verdict", "inconclusive") == "inconclusive" else "clear"


def combine(statuses: Iterable[str]) -> str:
    """One status for an answer made of parts: clear if any part is, absent if all are, else open."""
    s = list(statuses)
    return "clear" if "clear" in s else ("absent" if s and all(x == "absent" for x in s) else "open")


@dataclass
class Exercises:
    """The runs the exercises read: the main grid (every backbone), the first backbone's
    stacked-dual runs, and where the build has them the "beyond" and label-noise runs."""

    preset: str
    study: Study
    stacked: Study
    beyond: BeyondStudy | None = None
    noise: NoiseStudy | None = None

    @classmethod
    def load(cls, preset: str = "default", runs_root: str | Path = DEFAULT_RUNS,
             cohorts_root: str | Path = DEFAULT_COHORTS, manifest: str | Path | None = None) -> Exercises:
        """The runs of the exercises; with ``manifest`` (real data) there are no label-noise runs."""
        p = get_preset(preset)
        study = Study.load(preset, runs_root, cohorts_root, manifest=manifest, modes=MODES)
        stacked = Study.from_grid(preset, study.manifest, stacked_grid(study.manifest, preset), runs_root)
        beyond = BeyondStudy.load(preset, runs_root, cohorts_root, manifest=manifest) if p.lambdas else None
        noise = NoiseStudy.load(preset, runs_root, cohorts_root) if manifest is None else None
        return cls(preset, study, stacked, beyond, noise)

    # ------------------------------------------------------------------ views
    @cached_property
    def first(self) -> Study:
        """The first backbone's runs of the main grid (the stacked, beyond and noise runs' backbone)."""
        s = self.study
        return Study(s.preset, s.manifest, s.table, s.select(backbone=s.backbones[0]))

    @property
    def first_backbone(self) -> str:
        """The preset's first backbone: the stacked, beyond and label-noise runs' one."""
        return get_preset(self.preset).backbones[0]

    @property
    def truth(self) -> str:
        """The grade answers are scored against: the clean one where the cohort knows it."""
        return self.study.main_truth

    @property
    def noise_free(self) -> Study | None:
        """The first backbone's runs on the noise-free relabelling, where the build has one."""
        return None if self.noise is None else self.noise.studies.get(0.0)

    @cached_property
    def _beyond_metrics(self) -> pd.DataFrame:
        return self.beyond.metrics() if self.beyond is not None else pd.DataFrame()

    def _variants(self, metric: str, column: str = "variant") -> pd.DataFrame:
        """Seeds x variants (or lambdas) of the beyond runs' ``metric``."""
        m = self._beyond_metrics
        m = m[m["metric"] == metric].dropna(subset=[column]) if len(m) else m
        return m.pivot_table(index="seed", columns=column, values="value") if len(m) else pd.DataFrame()

    def _sentence(self, row: Mapping[str, Any], a: str, b: str, metric: str, truth: str, backbone: str = "",
                  cohort: str = "") -> tuple[str, str]:
        """One comparison as the book states it everywhere (:func:`oaprobe.report.sentences.rule_sentence`),
        and its status; ``cohort``: another cohort than the main one (e.g. the noise-free relabelling)."""
        bb = backbone or self.first_backbone
        who = backbone_title(bb) + (f" on the {cohort}" if cohort else "")
        text = rule_sentence(row, who, a, b, metric, truth, key_subject=f"{bb} ({cohort})" if cohort else bb)
        return text, "open" if row["verdict"] == "inconclusive" else "clear"

    # ------------------------------------------------------------------ the original four
    def stacked_vs_parallel(self) -> Answer:
        """Exercise 1: stacked minus parallel dual per seed (OA AUC, KL QWK), under the rule."""
        if not self.stacked.runs:
            return Answer("This build has no stacked-dual runs.", "absent")
        metrics = ("oa_roc_auc", "kl_qwk")
        stacked = self.stacked.point_metrics(truth=self.truth).assign(variant="stacked")
        parallel = self.first.point_metrics(truth=self.truth)
        both = pd.concat([stacked, parallel[parallel["mode"] == "dual"].assign(variant="parallel")])
        parts, statuses = [], []
        for metric in metrics:
            wide = both[both["metric"] == metric].pivot_table(index="seed", columns="variant", values="value")
            row = gap(wide, "stacked", "parallel", metric, m=len(metrics))
            text, status = self._sentence(row, "stacked dual", "parallel dual", metric, self.truth)
            parts.append(text)
            statuses.append(status)
        return Answer(" ".join(parts), combine(statuses))

    def hardest_boundary(self) -> Answer:
        """Exercise 2: the adjacent-grade pair the dual model swaps most, beside the noise model's."""
        truth = self.truth
        frames = [r.predictions[r.predictions["split"] == "test"] for r in self.first.select(mode="dual")]
        test = pd.concat(frames)
        conf = adjacent_confusions(test[truth].astype(int).to_numpy(), test["pred_kl"].astype(int).to_numpy())
        worst = conf.sort_values("rate", ascending=False, kind="stable").iloc[0]
        text = (f"Against the {'clean' if truth == 'kl_clean' else 'observed'} grade, the dual model swaps the "
                f"{worst['boundary']} pair most often: {int(worst['swapped'])} of {int(worst['knees'])} knees "
                f"({worst['rate']:.1%}; all pairs: " + ", ".join(f"{b} {r:.1%}" for b, r in zip(conf["boundary"], conf["rate"])) + ").")
        cohort = get_preset(self.preset).cohort
        m = noise_matrix(cohort.label_noise)
        flips = [(m[g, g + 1] + m[g + 1, g], f"{g}/{g + 1}") for g in range(4)]
        text += f" The label-noise model (strength {cohort.label_noise}) confuses {max(flips)[1]} most."
        return Answer(text)

    def seeds_needed(self, metric: str = "kl_qwk") -> Answer:
        """Exercise 3: the seeds the decision rule needs for the first backbone's fine question, from
        the measured seed-to-seed spread of the paired difference (at its mean, and if the true
        difference were 0)."""
        sl = main_rule_table(self.first, self.truth, [metric])
        if sl.empty or not np.isfinite(sl["sd"].iloc[0]):
            return Answer("This build has too few seeds to estimate the seed-to-seed spread (at least two are needed).", "absent")
        row = sl.iloc[0]
        sd, mean, delta = float(row["sd"]), float(row["mean"]), float(row["delta"])
        at_mean, at_zero = seeds_needed(mean, sd, delta), seeds_needed(0.0, sd, delta)
        say = lambda n: f"{n} seeds" if n else "more than 200 seeds"  # noqa: E731
        single = MODE_NAMES[str(row["baseline"])]
        return Answer(
            f"The seed-to-seed sd of the dual-minus-{single} difference in {readable_name(metric)} against the "
            f"{TRUTHS[self.truth]} is {sd:.3f} over {plural(row['n_seeds'], 'seed')} (mean {signed(mean)}). With δ = ±{delta:g}, "
            f"the rule reaches a verdict with 80% probability after {say(at_mean)} if the true difference is the measured "
            f"one, and {say(at_zero)} to show equivalence if it is 0. This build's verdict: "
            f"{self._sentence(row, 'dual', str(row['baseline']), metric, self.truth)[0]} The reference study ran one "
            "seed, which allows no interval.")

    def noise_free_answer(self) -> Answer:
        """Exercise 4: dual minus single-KL on the noise-free relabelling, against the clean grade."""
        clean = self.noise_free
        if clean is None:
            return Answer("This build has no noise-free cohort (real data, or a preset without noise level 0).", "absent")
        sl = main_rule_table(clean, "kl_clean", ["kl_qwk", "kl_accuracy"])
        said = [self._sentence(r, "dual", str(r["baseline"]), str(r["metric"]), "kl_clean", cohort="noise-free cohort")
                for _, r in sl.iterrows()]
        return Answer(" ".join(t for t, _ in said), combine(st for _, st in said))

    # ------------------------------------------------------------------ one parameter each, from the beyond runs
    def lambda_answer(self, metric: str = "kl_qwk") -> Answer:
        """Exercise 5: the best OA-loss weight by mean ``metric``, and its per-seed lead over the rival."""
        wide = self._variants(metric, column="lambda")
        if wide.shape[1] < 2:
            return Answer("This build has no dual runs at another OA-loss weight (the preset's `lambdas` is empty).", "absent")
        best, rival = best_and_rival(wide, reference=1.0)
        row = gap(wide, best, rival, metric)
        text, status = self._sentence(row, f"dual (λ {best:g})", f"dual (λ {rival:g})", metric, self.beyond.truth)
        means = ", ".join(f"λ {lam:g}: {wide[lam].mean():.3f}" for lam in wide.columns)
        return Answer(f"Against the {TRUTHS[self.beyond.truth]}, the highest mean {readable_name(metric)} is at "
                      f"λ {best:g} ({means}). {text}", status)

    @cached_property
    def _beyond_tests(self) -> pd.DataFrame:
        """The "beyond the dual head" chapter's rule table (its families), read by exercises 6 and 7."""
        return self.beyond.comparisons() if self.beyond is not None else pd.DataFrame()

    def _variant_gaps(self, pairs: Sequence[tuple[str, str]], metrics: Sequence[str], lead: str = "") -> Answer:
        """Variant a minus variant b of the beyond runs, per seed, for each pair and metric: the rows of
        the chapter's own table (:meth:`BeyondStudy.comparisons`), so both pages state one verdict."""
        tests = self._beyond_tests
        parts, statuses = [], []
        for a, b in pairs:
            for metric in metrics:
                hit = tests[(tests["comparison"] == f"{a} vs {b}") & (tests["metric"] == metric)] if len(tests) else tests
                if hit.empty:
                    parts.append(f"{variant_title(a)} vs {variant_title(b)}, {readable_name(metric)}: no runs.")
                    statuses.append("absent")
                    continue
                row = hit.iloc[0]
                parts.append(describe_comparison(row))
                statuses.append("open" if row["verdict"] == "inconclusive" else "clear")
        return Answer(lead + " ".join(parts), combine(statuses))

    def ordinal_answer(self) -> Answer:
        """Exercise 6: dual minus the ordinal (CORN) head per seed."""
        if self.beyond is None:
            return Answer("This build has no ordinal-head runs (they come with the preset's `lambdas`, empty here).", "absent")
        return self._variant_gaps([("dual", "ordinal")], ["kl_qwk", "oa_roc_auc"])

    def smoothing_answer(self) -> Answer:
        """Exercise 7: smoothed minus plain KL targets per seed, for single-KL and dual."""
        if self.beyond is None:
            return Answer("This build has no label-smoothing runs (they come with the preset's `lambdas`, empty here).", "absent")
        lead = f"Label smoothing {get_preset(self.preset).smoothing:g} on the KL targets. "
        return self._variant_gaps([("single_kl + smoothing", "single_kl"), ("dual + smoothing", "dual")], ["kl_qwk"], lead)

    # ------------------------------------------------------------------ noise, backbone, truth
    def strong_noise_answer(self, metric: str = "kl_qwk") -> Answer:
        """Exercise 8: dual's gain at each noise strength, and whether it trends with the strength."""
        if self.noise is None or len(self.noise.studies) < 2:
            return Answer("This build has no label-noise runs at several strengths (real data, without a clean grade).", "absent")
        g = self.noise.gain()
        g = g[g["metric"] == metric]
        levels = ", ".join(f"noise {lvl:g}: {signed(m)}" + (f" ± {s:.3f}" if s == s else "")
                           for lvl, m, s in zip(g["label_noise"], g["mean"], g["sd"]))
        trend = self.noise.trend()
        clause, status = trend_clause(trend.set_index("metric").loc[metric].to_dict() | {"metric": metric})
        return Answer(f"Dual minus single-KL in {readable_name(metric)} against the clean grade (mean ± sd over seeds), "
                      f"{levels}. The trend over the strengths: {clause}", status)

    def backbone_answer(self) -> Answer:
        """Exercise 9: the backbone with the largest mean dual gain, with its interval over seeds."""
        if len(self.study.backbones) < 2:
            return Answer("This build trains one backbone, so there is no other to compare.", "absent")
        sl = main_rule_table(self.study, self.truth, ["kl_qwk", "oa_roc_auc"])
        parts, statuses = [], []
        for metric in ("kl_qwk", "oa_roc_auc"):
            row = largest_gain(sl, metric)
            text, status = self._sentence(row, "dual", str(row["baseline"]), metric, self.truth, backbone=row["backbone"])
            parts.append(f"Largest mean dual-minus-{MODE_NAMES[row['baseline']]} difference in {readable_name(metric)} of "
                         f"the {len(self.study.backbones)} backbones: {backbone_title(row['backbone'])}'s. {text}")
            statuses.append(status)
        return Answer(" ".join(parts), combine(statuses))

    def truth_answer(self, metric: str = "kl_qwk") -> Answer:
        """Exercise 10: the first backbone's dual gain against the observed and the clean grade."""
        if not self.study.has_clean:
            return Answer("This cohort has no clean grade (real data), so only the observed grade can be the truth.", "absent")
        parts, statuses = [], []
        for truth in ("kl", "kl_clean"):
            row = main_rule_table(self.first, truth, [metric]).iloc[0]
            text, status = self._sentence(row, "dual", str(row["baseline"]), metric, truth)
            parts.append(text)
            statuses.append(status)
        return Answer(" ".join(parts), combine(statuses))

    # ------------------------------------------------------------------ saliency and training length
    def region_answer(self, method: str = "ig") -> Answer:
        """Exercise 11: the region of highest saliency enrichment per head, against chance (1)."""
        sal = self.first.saliency()
        if sal.empty:
            return Answer("This build has no saliency results for the first backbone.", "absent")
        checks = randomisation_verdicts(sanity_summary(self.first.saliency_sanity()))
        mine = checks[(checks["method"] == method) & (checks["mode"] == "dual")]
        if mine.empty or not mine["passes"].all():
            why = "; ".join(mine["reason"]) if len(mine) else "no randomisation check was run"
            return Answer(f"The dual model's {method} maps fail the randomisation check ({why}; a map that reflects the "
                          f"training needs a size below {RANDOMISATION_MAX_RHO:g}), so their region enrichment is "
                          f"{NOT_TRUSTWORTHY} and answers nothing here: the maps would look much the same for a model "
                          "that learned nothing.", "open")
        parts, statuses = [], []
        for target, head in (("oa", "OA"), ("kl", "KL")):
            enr = saliency_enrichment(sal[sal["mode"] == "dual"], method=method, target=target)
            if enr.empty:
                continue
            row = top_region(enr)
            clause, status = interval_clause({**row.to_dict(), "n_seeds": row["n"], "mean": row["enrichment"]},
                                             null=1.0, unit="knee", fmt=lambda x: f"{x:.2f}")
            parts.append(f"For the {head} head, the dual model's {method} saliency is most enriched in the "
                         f"{str(row['region']).replace('_', ' ')}: {clause}.")
            statuses.append(status)
        if not parts:
            return Answer(f"This build has no {method} saliency for the dual model.", "absent")
        return Answer("Enrichment 1 is chance (the region's share of the saliency equals its share of the volume). "
                      + " ".join(parts), combine(statuses))

    def epochs_answer(self) -> Answer:
        """Exercise 12: how many runs were still improving in their last epoch."""
        e = epoch_summary(self.study.convergence(truth=self.truth))
        epochs = f"{e['epochs']} epoch" + ("s" if e["epochs"] != 1 else "")
        return Answer(f"{e['best_at_last']} of the {e['runs']} main-grid runs (up to {epochs}) had their lowest validation "
                      f"loss in the last epoch: still improving when training stopped, so more epochs may help them. "
                      f"Across the runs, the median epoch of the lowest validation loss is {e['median_best']:g}.")

    # ------------------------------------------------------------------ the chapter
    @cached_property
    def computed(self) -> dict[str, Answer]:
        """Every exercise's answer, keyed as :data:`EXERCISES` (computed once)."""
        methods = {"ex_stacked": self.stacked_vs_parallel, "ex_boundary": self.hardest_boundary, "ex_seeds": self.seeds_needed,
                   "ex_noise0": self.noise_free_answer, "ex_lambda": self.lambda_answer, "ex_ordinal": self.ordinal_answer,
                   "ex_smoothing": self.smoothing_answer, "ex_noise_strong": self.strong_noise_answer,
                   "ex_backbone": self.backbone_answer, "ex_truth": self.truth_answer, "ex_region": self.region_answer,
                   "ex_epochs": self.epochs_answer}
        return {key: methods[key]() for key in EXERCISES}

    def answers(self) -> dict[str, Markdown]:
        """Glue key -> the answer as Markdown (the chapter's dropdowns)."""
        return {key: Markdown(a.text) for key, a in self.computed.items()}

    def findings(self) -> list[str]:
        """The chapter's opening bullets: how many exercises, and which this build answers clearly."""
        runs = self.all_runs()
        out = [f"{len(EXERCISES)} exercises, each changing one parameter; every answer is computed from the {len(runs)} "
               f"runs this build already has (preset `{self.preset}`), none trained for the exercises."]
        for status, words in STATUS_WORDS.items():
            names = [str(i) for i, (k, a) in enumerate(self.computed.items(), 1) if a.status == status]
            if names:
                out.append(f"{words}: {'exercise' if len(names) == 1 else 'exercises'} " + ", ".join(names) + ".")
        return out

    def all_runs(self) -> list[Run]:
        """Every run an answer reads, each once."""
        studies = [self.study, self.stacked] + ([self.beyond.study] if self.beyond else [])
        studies += list(self.noise.studies.values()) if self.noise else []
        return list({r.run_id: r for s in studies for r in s.runs}.values())

    def provenance(self) -> str:
        """Which runs, package version and cohort the answers come from."""
        return self.study.provenance(self.all_runs())
