"""Which saliency maps the book may state findings from: the randomisation and deletion verdicts.

Why: a map that barely changes when the model's weights are replaced by random ones shows the
input, not what the model learned (Adebayo et al. 2018), so its overlap with the cartilage is
no finding about the model. The chapter shows such a method's overlap numbers marked "not
trustworthy" and states findings only from methods that pass.

Example:
    >>> import pandas as pd
    >>> s = pd.DataFrame({"backbone": "r", "mode": "dual", "method": ["smoothgrad"] * 2 + ["gradcam"] * 2,
    ...                   "step": [0, 3, 0, 3], "layer": "x", "spearman": [1.0, 0.5, 1.0, 0.1], "sd": 0.0, "n": 2})
    >>> randomisation_verdicts(s)[["method", "passes"]].values.tolist()
    [['smoothgrad', False], ['gradcam', True]]
"""

from __future__ import annotations

import math

import pandas as pd
from scipy.stats import binomtest

from oaprobe.facts import ALL_MODES

#: A method passes the randomisation check when the mean rank correlation (Spearman, over knees and
#: targets) between the trained model's map and the fully randomised model's map is below this.
#: Why 0.3: below it the two maps share under 9% of their rank variance (rho^2), the usual bound of
#: a "weak" correlation; a gradient x input map that mostly shows the input stays well above it.
RANDOMISATION_MAX_RHO: float = 0.3
#: The deletion check's one-sided sign test (salient-first deletion lowers the score faster than
#: random deletion in more knee-targets than chance) at this level.
DELETION_ALPHA: float = 0.05
NOT_TRUSTWORTHY = "not trustworthy"


def min_deletion_cases(alpha: float = DELETION_ALPHA) -> int:
    """The fewest knee-targets with which the sign test can reach ``alpha`` at all (every one
    faster: p = 0.5^n), 5 at 0.05; with fewer the deletion check has no verdict."""
    return math.ceil(math.log2(1 / alpha))


def randomisation_verdicts(summary: pd.DataFrame, max_rho: float = RANDOMISATION_MAX_RHO) -> pd.DataFrame:
    """Per backbone, mode and method (rows of :meth:`Study.sanity_summary`): the rank correlation at
    the last (fully randomised) step (``spearman_randomised``), whether its size is below ``max_rho``
    (``passes``; a constant map has no correlation and does not pass), a ``verdict`` and its ``reason``."""
    columns = ["backbone", "mode", "method", "spearman_randomised", "verdict", "passes", "reason"]
    if summary.empty:
        return pd.DataFrame(columns=columns)
    keys = ["backbone", "mode", "method"]
    last = summary[summary["step"] == summary.groupby(keys)["step"].transform("max")]
    out = last[keys].reset_index(drop=True).assign(spearman_randomised=last["spearman"].to_numpy(float))
    out["passes"] = out["spearman_randomised"].abs() < max_rho  # NaN compares False
    out["verdict"] = ["passes" if ok else "fails" for ok in out["passes"]]
    out["reason"] = [f"rank correlation with the fully randomised model {r:+.2f}, "
                     f"{'below' if ok else 'not below'} {max_rho:g}" if pd.notna(r) else
                     "no rank correlation (a constant map)" for r, ok in zip(out["spearman_randomised"], out["passes"])]
    return out[columns]


def deletion_verdicts(auc: pd.DataFrame, alpha: float = DELETION_ALPHA) -> pd.DataFrame:
    """Per backbone, mode and method (rows of :meth:`Study.saliency_deletion`): knee-targets, how
    many deleted salient-first fall faster, the sign test's p and a verdict ("faithful", "not
    shown faithful", or "too few knees" below :func:`min_deletion_cases`)."""
    rows = []
    for (bb, mode, method), g in auc.dropna(subset=["auc_gap"]).groupby(["backbone", "mode", "method"], sort=False):
        n, k = len(g), int((g["auc_gap"] > 0).sum())
        p = float(binomtest(k, n, 0.5, alternative="greater").pvalue)
        verdict = "too few knees" if n < min_deletion_cases(alpha) else ("faithful" if p < alpha else "not shown faithful")
        rows.append({"backbone": bb, "mode": mode, "method": method, "n": n, "faster": k, "p_sign": p, "verdict": verdict})
    return pd.DataFrame(rows, columns=["backbone", "mode", "method", "n", "faster", "p_sign", "verdict"])


def mark_trust(table: pd.DataFrame, verdicts: pd.DataFrame, method: str | None = None) -> pd.DataFrame:
    """``table`` with a ``trust`` column: "not trustworthy" on rows whose backbone, mode and method
    (``method`` when the table has none) fail the randomisation check or were never checked. A
    dual-vs-``baseline`` row (no ``mode`` column, as :meth:`Study.saliency_pairs`) needs both models to pass."""
    if table.empty:
        return table.assign(trust=pd.Series(dtype=object))
    t = table if "method" in table else table.assign(method=method)
    passed = {tuple(r) for r in verdicts.loc[verdicts["passes"], ["backbone", "mode", "method"]].itertuples(index=False)}
    models = ([[m] for m in t["mode"]] if "mode" in t else [["dual", b] for b in t["baseline"]])
    trust = [("passes the randomisation check" if all((bb, m, me) in passed for m in ms) else NOT_TRUSTWORTHY)
             for bb, ms, me in zip(t["backbone"], models, t["method"])]
    return table.assign(trust=trust)


def trusted(table: pd.DataFrame, verdicts: pd.DataFrame, method: str | None = None) -> pd.DataFrame:
    """The rows of ``table`` the chapter may state findings from (see :func:`mark_trust`)."""
    marked = mark_trust(table, verdicts, method)
    return table[(marked["trust"] != NOT_TRUSTWORTHY).to_numpy()] if len(table) else table


def gate_sentences(verdicts: pd.DataFrame) -> list[str]:
    """One sentence per method that fails the randomisation check in some model: its numbers are no finding."""
    from oaprobe.report.display import METHOD_NAMES, readable_text

    out = []
    for method, g in verdicts.groupby("method", sort=False):
        failed = g[~g["passes"]]
        if failed.empty:
            continue
        which = "every model" if len(failed) == len(g) else f"{len(failed)} of {len(g)} models"
        rho = failed["spearman_randomised"].dropna()
        span = ("" if rho.empty else f"{rho.min():+.2f}" if rho.min() == rho.max() else f"{rho.min():+.2f} to {rho.max():+.2f}")
        why = f"rank correlation with the fully randomised model {span}, not below {RANDOMISATION_MAX_RHO:g}" if span \
            else "no rank correlation: constant maps"
        out.append(f"{METHOD_NAMES.get(method, readable_text(method))} fails the randomisation check in {which} "
                   f"({why}): its overlap numbers there are shown as {NOT_TRUSTWORTHY} and are not findings about "
                   f"the models.")
    return out


def deletion_sentence(verdicts: pd.DataFrame) -> list[str]:
    """The deletion check's verdicts in one sentence, saying when there were too few knees for one."""
    if verdicts.empty:
        return []
    counts = verdicts["verdict"].value_counts()
    parts = [f"{n} {v}" for v, n in counts.items()]
    few = verdicts[verdicts["verdict"] == "too few knees"]
    note = (f"; a verdict needs at least {min_deletion_cases()} knee-targets per model and these had "
            f"{few['n'].min()}–{few['n'].max()}" if len(few) else "")
    return [f"Deletion check over {len(verdicts)} models and methods: {', '.join(parts)}{note}."]


def named_methods(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its ``method`` values as readers name them (SmoothGrad × input, Grad-CAM)."""
    from oaprobe.report.display import METHOD_NAMES

    return table.assign(method=table["method"].map(lambda m: METHOD_NAMES.get(m, m))) if "method" in table else table


def _mode_order(mode: str) -> int:
    """A mode's place in the book's order of modes (unknown modes last)."""
    return ALL_MODES.index(mode) if mode in ALL_MODES else len(ALL_MODES)


def evidence_figures(evidence: pd.DataFrame, verdicts: pd.DataFrame) -> list[tuple[str, int, pd.DataFrame]]:
    """What the chapter plots of the evidence maps: for each method that passes the randomisation check
    in at least one model, ``(method, models where it fails, enrichment table)``, the table per backbone,
    mode and region (the grade-deciding evidence and each distractor; OA target, every mode has it) as
    :meth:`Study.saliency_enrichment` gives it (mean and 95% t-interval over knees). Empty on real data."""
    from oaprobe.analysis.evidence import DISTRACTORS
    from oaprobe.report.study import Study

    if evidence.empty:
        return []
    regions = evidence[evidence["region"].isin(["evidence", *DISTRACTORS])]
    return [(method, int((~verdicts.loc[verdicts["method"] == method, "passes"]).sum()),
             Study.saliency_enrichment(regions, method=method, target="oa"))
            for method in verdicts.loc[verdicts["passes"], "method"].unique()]


def evidence_sentences(found: pd.DataFrame, reliance: pd.DataFrame, verdicts: pd.DataFrame) -> list[str]:
    """The evidence-map findings (phantom cohorts only), from methods that pass the randomisation check:
    per method, where its maps find the grade-deciding evidence best and least (enrichment over the
    region's volume share, pointing game), and which models lean on a distractor.

    ``found`` and ``reliance`` are :func:`oaprobe.analysis.evidence.evidence_summary` (region
    "evidence") and :func:`~oaprobe.analysis.evidence.distractor_reliance`, grouped by backbone, mode,
    method and target. These are levels of the first seed's maps, not comparisons under the decision rule.
    """
    from oaprobe.models.backbones import backbone_title
    from oaprobe.report.display import METHOD_NAMES, MODE_NAMES, REGION_NAMES

    def model(r) -> str:  # a row or a dict of backbone, mode and target
        return f"{backbone_title(r['backbone'])} {MODE_NAMES.get(r['mode'], r['mode'])} ({r['target'].upper()} target)"

    ok = trusted(found, verdicts)
    if found.empty:
        return []
    if ok.empty:
        return ["No saliency method passes the randomisation check in any model, so no finding is stated about "
                "whether the maps find the planted evidence."]
    out = []
    for method, g in ok.groupby("method", sort=False):
        best, least = g.loc[g["enrichment"].idxmax()], g.loc[g["enrichment"].idxmin()]
        above = int((g["enrichment"] > 1).sum())
        by_mode = g.groupby("mode")["enrichment"].mean()
        modes = ", ".join(f"{MODE_NAMES.get(m, m)} {by_mode[m]:.1f}x" for m in sorted(by_mode.index, key=_mode_order))
        out.append(f"{METHOD_NAMES.get(method, method)} (first seed, models that pass the randomisation check): "
                   f"in {above} of {len(g)} model-target pairs the maps put more of their mass on the grade-deciding "
                   f"evidence than its volume share; "
                   f"most in {model(best)}, {best['enrichment']:.1f}x chance with its maximum on the evidence in "
                   f"{best['pointing']:.0%} of knees; least in {model(least)}, {least['enrichment']:.1f}x; "
                   f"by training mode (mean over backbones and targets): {modes}.")
    keys = ["backbone", "mode", "target", "method"]
    checked = trusted(reliance, verdicts)
    evidence_level = ok.set_index(keys)["enrichment"]
    for method, g in checked.groupby("method", sort=False):
        leaning = g[g["relies"].astype(bool)]
        models = leaning.groupby(keys, sort=False)
        n_models = g.groupby(keys).ngroups
        if not len(leaning):
            out.append(f"{METHOD_NAMES.get(method, method)}: in none of the {n_models} model-target pairs that pass the "
                       "randomisation check do the maps lean on a distractor (effusion, bone-marrow lesion, menisci: over 1.5x chance in most knees).")
            continue
        named = "; ".join(model(dict(zip(keys, key))) + ": " + ", ".join(
            f"{REGION_NAMES.get(r['region'], r['region'])} {r['enrichment']:.1f}x" for _, r in rows.iterrows())
            for key, rows in models)
        above = sum(rows["enrichment"].max() > evidence_level.get(key, float("inf")) for key, rows in models)
        out.append(f"{METHOD_NAMES.get(method, method)} leans on a distractor (over 1.5x chance in most knees) in "
                   f"{models.ngroups} of the {n_models} model-target pairs that pass the randomisation check: {named}; in {above} of "
                   f"them a distractor draws more mass per voxel than the grade-deciding evidence.")
    return out
