"""Beyond the dual head: does dual supervision beat the simplest ways of telling a model that KL
grades are ordered (an ordinal CORN head, whose "KL >= 2" threshold is the OA label) and that the
labels are noisy (label smoothing)? And how does the OA-loss weight lambda shape the result?

All on the preset's first backbone and its first ``beyond_seeds`` seeds; every comparison is
paired by seed (same seed, same initialisation stream and batch order) and read with the book's
decision rule (:mod:`oaprobe.analysis.decision`), Bonferroni over the chapter's comparisons.

Example:
    >>> variant_name("dual", 0.0, 1.0), variant_name("ordinal", 0.1, 1.0), variant_name("dual", 0.0, 4.0)
    ('dual', 'ordinal + smoothing', 'dual (lambda 4)')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from oaprobe.analysis.decision import decide_table
from oaprobe.config import DEFAULT_COHORTS, DEFAULT_RUNS, get_preset
from oaprobe.facts import backbone_title
from oaprobe.report.answer import main_family
from oaprobe.report.display import readable_name
from oaprobe.report.guards import finding_limit
from oaprobe.report.sentences import plural, rule_sentence
from oaprobe.report.study import Study, mean_sd
from oaprobe.sweep import beyond_grid, preset_manifest, study_grid

#: (variant a, variant b): each compared over seeds as a minus b
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("dual", "ordinal"), ("dual", "single_kl"), ("ordinal", "single_kl"),
    ("single_kl + smoothing", "single_kl"), ("dual + smoothing", "dual"),
)
METRICS = ("kl_qwk", "kl_mae", "oa_roc_auc")
#: (comparison, metric) pairs the chapter's opening box states: the fine label against the
#: ordinal head, single-KL and plain smoothing, and the coarse one against the ordinal head
#: (whose KL >= 2 threshold is the OA label)
KEY_FINDINGS: tuple[tuple[str, str], ...] = (
    ("dual vs ordinal", "kl_qwk"), ("dual vs single_kl", "kl_qwk"),
    ("single_kl + smoothing vs single_kl", "kl_qwk"), ("dual vs ordinal", "oa_roc_auc"),
)


def variant_name(mode: str, label_smoothing: float, oa_weight: float) -> str:
    """A run's variant: its mode, with smoothing and a lambda other than 1 spelled out."""
    name = mode + (" + smoothing" if label_smoothing > 0 else "")
    return name + (f" (lambda {oa_weight:g})" if mode == "dual" and oa_weight != 1.0 else "")


@dataclass
class BeyondStudy:
    """The chapter's runs as one Study (main-grid single-KL and dual, plus :func:`beyond_grid`)."""

    preset: str
    study: Study

    @classmethod
    def load(cls, preset: str = "default", runs_root: str | Path = DEFAULT_RUNS,
             cohorts_root: str | Path = DEFAULT_COHORTS, manifest: str | Path | None = None) -> BeyondStudy:
        """Read the chapter's finished runs (never trains)."""
        p = get_preset(preset)
        manifest = manifest or preset_manifest(preset, Path(cohorts_root), progress=False)
        grid = study_grid(manifest, preset, backbones=p.backbones[:1], modes=["single_kl", "dual"],
                          seeds=p.seeds[: p.beyond_seeds]) + beyond_grid(manifest, preset)
        return cls(preset, Study.from_grid(preset, manifest, grid, runs_root))

    @property
    def truth(self) -> str:
        """The grade the chapter scores against (none without runs)."""
        return self.study.main_truth if self.study is not None else ""

    def metrics(self) -> pd.DataFrame:
        """Per run and metric (:data:`METRICS`): variant, lambda, seed, value."""
        pm = self.study.point_metrics(truth=self.truth)
        runs = {r.run_id: r.config for r in self.study.runs}
        pm = pm[pm["metric"].isin(METRICS)].copy()
        pm["variant"] = [variant_name(runs[i].mode, runs[i].label_smoothing, runs[i].oa_weight) for i in pm["run_id"]]
        pm["lambda"] = [runs[i].oa_weight if runs[i].mode == "dual" and runs[i].label_smoothing == 0 else None
                        for i in pm["run_id"]]
        flagged = self.study.convergence().set_index("run_id")["flagged"]
        pm["flagged"] = pm["run_id"].map(flagged).fillna(False).astype(bool)
        return pm

    def summary(self) -> pd.DataFrame:
        """Mean and sd over seeds per variant and metric (rows: variants; columns: metric x mean/sd)."""
        m = self.metrics()
        return m.pivot_table(index="variant", columns="metric", values="value", aggfunc=["mean", "std"], sort=False)

    def summary_table(self) -> pd.DataFrame:
        """``mean ± sd`` over seeds per variant (rows, in run order) and metric (columns, :data:`METRICS` order)."""
        m = self.metrics()
        agg = m.groupby(["variant", "metric"], sort=False)["value"].agg(["mean", "std"]).reset_index()
        agg["value"] = [mean_sd(a, b) for a, b in zip(agg["mean"], agg["std"])]
        wide = agg.pivot(index="variant", columns="metric", values="value")
        wide = wide.loc[list(dict.fromkeys(agg["variant"])), [c for c in METRICS if c in wide.columns]]
        wide.columns.name = None
        return wide

    def comparisons(self) -> pd.DataFrame:
        """Each pair of :data:`COMPARISONS` (a minus b per seed) per metric under the decision rule
        (:func:`decide_families`: a main-grid comparison in its own family, the rest Bonferroni over
        the chapter's other comparisons; ``m`` column)."""
        m = self.metrics()
        m = m if "flagged" in m else m.assign(flagged=False)
        wide = m.pivot_table(index=["seed", "metric"], columns="variant", values="value").reset_index()
        flags = m.pivot_table(index=["seed", "metric"], columns="variant", values="flagged", aggfunc="max")
        rows = []
        for a, b in COMPARISONS:
            if a in wide and b in wide:
                for _, r in wide.dropna(subset=[a, b]).iterrows():
                    f = flags.loc[(r["seed"], r["metric"])]
                    rows.append({"comparison": f"{a} vs {b}", "metric": r["metric"], "seed": r["seed"],
                                 "diff": r[a] - r[b], "flagged": bool(f.get(a, False) or f.get(b, False))})
        diffs = pd.DataFrame(rows, columns=["comparison", "metric", "seed", "diff", "flagged"])
        limit = finding_limit(self.study.table, truth=self.truth) if self.study is not None else None
        if diffs.empty:
            return pd.DataFrame()
        backbone = get_preset(self.preset).backbones[0]
        return decide_families(diffs, self.preset, limit).assign(truth=self.truth, backbone=backbone)

    def lambda_curve(self) -> pd.DataFrame:
        """Dual without smoothing at every lambda: mean and sd over seeds per metric (the figure's bands)."""
        m = self.metrics().dropna(subset=["lambda"])
        out = m.groupby(["lambda", "metric"])["value"].agg(mean="mean", sd="std", n="count").reset_index()
        return out.sort_values(["metric", "lambda"])


def comparison_family(comparison: str, metric: str, preset: str) -> int | None:
    """The family size of a comparison that is also one of the main grid's (dual vs its single-task
    baseline: :func:`oaprobe.report.answer.main_family`), else None (the chapter's own family)."""
    a, _, b = comparison.partition(" vs ")
    return main_family(metric, b, preset) if a == "dual" else None


def decide_families(diffs: pd.DataFrame, preset: str, limit: str | None = None) -> pd.DataFrame:
    """The rule on the chapter's per-seed differences, each comparison in one family definition: those
    the main grid also makes keep its family (the same verdict on every page), the others are
    Bonferroni over their number."""
    groups = diffs[["comparison", "metric"]].drop_duplicates()
    fam = {(c, mt): comparison_family(c, mt, preset) for c, mt in zip(groups["comparison"], groups["metric"])}
    own = sum(1 for m in fam.values() if m is None)
    frames = []
    for (c, mt), g in diffs.groupby(["comparison", "metric"], sort=False):
        frames.append(decide_table(g, by=("comparison", "metric"), m=fam[(c, mt)] or own, limit=limit))
    return pd.concat(frames, ignore_index=True)


def describe_comparison(row: pd.Series, truth: str = "", backbone: str = "") -> str:
    """One sentence for a row of :meth:`BeyondStudy.comparisons` (lower is better for kl_mae);
    ``backbone``: the chapter's (its runs are the first backbone's)."""
    a, _, b = str(row["comparison"]).partition(" vs ")
    backbone = backbone or str(row.get("backbone", ""))
    who = backbone_title(backbone) if backbone else "First backbone"
    return rule_sentence(row, who, a, b, str(row["metric"]), truth or str(row.get("truth", "")),
                         key_subject=backbone or "first backbone")


def describe_lambda(curve: pd.DataFrame, metric: str = "kl_qwk") -> str | None:
    """One sentence on :meth:`BeyondStudy.lambda_curve`: the lambda at which dual's ``metric`` peaks
    (lowest for kl_mae)."""
    c = curve[curve["metric"] == metric]
    if c.empty:
        return None
    top = c.loc[c["mean"].idxmin() if metric == "kl_mae" else c["mean"].idxmax()]
    word = "is lowest" if metric == "kl_mae" else "peaks"
    return (f"Over λ {', '.join(f'{x:g}' for x in c['lambda'])}, dual's {readable_name(metric)} {word} at λ "
            f"{top['lambda']:g} ({mean_sd(top['mean'], top['sd'])} over {plural(top['n'], 'seed')}).")


def beyond_findings(tests: pd.DataFrame, curve: pd.DataFrame, truth: str = "", backbone: str = "") -> list[str]:
    """The chapter's opening bullets: the :data:`KEY_FINDINGS` comparisons and the lambda peak."""
    out = []
    if len(tests):
        for comparison, metric in KEY_FINDINGS:
            hit = tests[(tests["comparison"] == comparison) & (tests["metric"] == metric)]
            out += [describe_comparison(r, truth, backbone) for _, r in hit.iterrows()]
    peak = describe_lambda(curve) if len(curve) else None
    return out + ([peak] if peak else [])
