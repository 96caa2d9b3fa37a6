"""Which saliency maps may decide claim 3 (saliency alignment with cartilage), and its per-run data.

Why: a map that barely changes when the model's weights are replaced by random ones shows the
input, not what the model learned (Adebayo et al. 2018), and a map whose most salient voxels do
not move the score when removed does not say what drives it; neither is a finding about the
model. The saliency stage runs both checks on every run; :func:`saliency_run_table` gives, per
run, target, method and region, the enrichment over the run's fixed knees and whether the run's
maps pass (``trusted``); :func:`claim3_methods` says which methods pass in most runs and so may
decide claim 3's verdicts (paired by seed on the answer page, under the book's one decision
rule), and :func:`claim3_statement` says so, or that the claim is not testable with trustworthy
maps, with the counts.

Example:
    >>> import pandas as pd
    >>> s = pd.DataFrame({"backbone": "r", "mode": "dual", "method": ["smoothgrad"] * 2 + ["gradcam"] * 2,
    ...                   "step": [0, 3, 0, 3], "layer": "x", "spearman": [1.0, 0.5, 1.0, 0.1], "sd": 0.0, "n": 2})
    >>> randomisation_verdicts(s)[["method", "passes"]].values.tolist()
    [['smoothgrad', False], ['gradcam', True]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import binomtest

from oaprobe.config import get_preset
from oaprobe.facts import ALL_MODES, CARTILAGE_LABELS, MODE_NAMES, MODES
from oaprobe.report.display import METHOD_NAMES
from oaprobe.report.study import Study

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
    """Per backbone, mode and method (rows of :func:`sanity_summary`): the rank correlation at
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


def _mode_order(mode: str) -> int:
    """A mode's place in the book's order of modes (unknown modes last)."""
    return ALL_MODES.index(mode) if mode in ALL_MODES else len(ALL_MODES)


# --------------------------------------------------------------------------- claim 3: per-run table
#: the regions claim 3 reads: the reference's ROI (cartilage, labels 2 + 4) and the phantom's ground truth
CLAIM3_REGIONS: tuple[str, ...] = ("cartilage", "evidence")
RUN_TABLE_COLUMNS: tuple[str, ...] = (
    "run_id", "backbone", "mode", "seed", "target", "method", "region", "enrichment", "n_knees",
    "randomisation_passed", "deletion_passed", "trusted",
)  # fmt: skip
_RUN_KEYS = ["run_id", "backbone", "mode", "seed"]


def run_checks(sanity: pd.DataFrame, auc: pd.DataFrame, max_rho: float = RANDOMISATION_MAX_RHO,
               alpha: float = DELETION_ALPHA) -> pd.DataFrame:  # fmt: skip
    """Both checks per run and method, over the run's checked knees and its targets.

    ``sanity`` (``Study.saliency_sanity``) and ``auc`` (``Study.saliency_deletion``) carry the run
    columns. Randomisation: the mean rank correlation between the trained and the fully randomised
    model's maps (the last step) must be below ``max_rho`` in size (a constant map, NaN, fails).
    Deletion: the one-sided sign test of salient-first against random deletion at ``alpha``; NaN
    (no verdict) with fewer than :func:`min_deletion_cases` knee-targets or no deletion curves.
    Columns: run keys, ``method``, ``rho_randomised``, ``randomisation_passed``, ``n_deletion``,
    ``faster``, ``p_sign``, ``deletion_passed`` (object: True, False or NaN).
    """
    keys = [*_RUN_KEYS, "method"]
    if sanity.empty:
        return pd.DataFrame(columns=[*keys, "rho_randomised", "randomisation_passed", "n_deletion", "faster",
                                     "p_sign", "deletion_passed"])  # fmt: skip
    last = sanity[sanity["step"] == sanity.groupby(keys)["step"].transform("max")]
    out = last.groupby(keys, sort=False)["spearman"].mean().rename("rho_randomised").reset_index()
    out["randomisation_passed"] = out["rho_randomised"].abs() < max_rho  # NaN compares False
    rows = []
    done = auc.dropna(subset=["auc_gap"]) if len(auc) else pd.DataFrame(columns=[*keys, "auc_gap"])
    for key, g in done.groupby(keys, sort=False):
        n, k = len(g), int((g["auc_gap"] > 0).sum())
        p = float(binomtest(k, n, 0.5, alternative="greater").pvalue)
        rows.append((*key, n, k, p, (p < alpha) if n >= min_deletion_cases(alpha) else float("nan")))
    deletion = pd.DataFrame(rows, columns=[*keys, "n_deletion", "faster", "p_sign", "deletion_passed"])
    out = out.merge(deletion, on=keys, how="left")
    out["n_deletion"] = out["n_deletion"].fillna(0).astype(int)
    out["deletion_passed"] = out["deletion_passed"].astype(object).where(out["deletion_passed"].notna(), float("nan"))
    return out


def run_enrichment(saliency: pd.DataFrame, evidence: pd.DataFrame | None) -> pd.DataFrame:
    """Mean enrichment over a run's knees per target, method and claim-3 region (cartilage from
    ``saliency``, the planted evidence from ``evidence``; knees with an empty region or an
    all-zero map are left out), with ``n_knees`` the knees averaged."""
    keys = [*_RUN_KEYS, "target", "method", "region"]
    parts = [t[t["region"] == r] for t, r in ((saliency, "cartilage"), (evidence, "evidence"))
             if t is not None and len(t)]  # fmt: skip
    if not parts:
        return pd.DataFrame(columns=[*keys, "enrichment", "n_knees"])
    both = pd.concat(parts, ignore_index=True).dropna(subset=["enrichment"])
    return both.groupby(keys, sort=False)["enrichment"].agg(enrichment="mean", n_knees="count").reset_index()


def build_run_table(saliency: pd.DataFrame, evidence: pd.DataFrame | None, sanity: pd.DataFrame,
                    auc: pd.DataFrame) -> pd.DataFrame:  # fmt: skip
    """:func:`saliency_run_table` from the study's frames (see there); split out to test on planted frames."""
    levels = run_enrichment(saliency, evidence)
    checks = run_checks(sanity, auc)[[*_RUN_KEYS, "method", "randomisation_passed", "deletion_passed"]]
    out = levels.merge(checks, on=[*_RUN_KEYS, "method"], how="left")
    out["randomisation_passed"] = out["randomisation_passed"].astype("boolean").fillna(False).astype(bool)
    out["deletion_passed"] = out["deletion_passed"].astype(object).where(out["deletion_passed"].notna(), float("nan"))
    out["trusted"] = out["randomisation_passed"] & (out["deletion_passed"] != False)  # noqa: E712 (NaN: no verdict)
    order = {m: i for i, m in enumerate(ALL_MODES)}
    out = out.sort_values(["backbone", "mode", "seed", "method", "target", "region"],
                          key=lambda c: c.map(order) if c.name == "mode" else c, kind="stable")  # fmt: skip
    return out[list(RUN_TABLE_COLUMNS)].reset_index(drop=True)


def saliency_run_table(study) -> pd.DataFrame:
    """Claim 3's data: one row per run, target, method and region (cartilage, the planted evidence).

    Columns :data:`RUN_TABLE_COLUMNS`: ``enrichment`` is the mean over the run's fixed knees
    (the same knees in every run, so runs pair by seed) of mass share / volume share;
    ``randomisation_passed`` and ``deletion_passed`` are the run's checks for that method
    (:func:`run_checks`; ``deletion_passed`` NaN where the run had too few knee-targets for a
    verdict); ``trusted`` = the randomisation check passed and the deletion check did not fail.
    A run whose map is not trusted is flagged for that method: it cannot decide a verdict alone.
    Empty (with the columns) when no run has saliency results.
    """
    sal = study.saliency()
    if sal.empty:
        return pd.DataFrame(columns=list(RUN_TABLE_COLUMNS))
    return build_run_table(sal, study.saliency_evidence(), study.saliency_sanity(), study.saliency_deletion())


def trusted_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per method of :func:`saliency_run_table`'s ``table``: ``runs`` it was computed on and ``trusted``
    runs (its maps passed their checks); a method may decide claim 3 when ``2 * trusted > runs``."""
    per_run = table.drop_duplicates(["run_id", "method"])
    g = per_run.groupby("method", sort=False)["trusted"]
    return pd.DataFrame({"runs": g.size(), "trusted": g.sum().astype(int)})


def claim3_methods(table: pd.DataFrame) -> dict[str, str]:
    """For each method of :func:`saliency_run_table`'s ``table``: whether its maps may decide claim 3's
    verdicts, with the counts: trusted in more than half of the runs it was computed on ("may decide
    verdicts: trusted in k of n runs"), else why not (how many runs fail each check)."""
    out = {}
    per_run = table.drop_duplicates(["run_id", "method"])
    for method, g in per_run.groupby("method", sort=False):
        n, k = len(g), int(g["trusted"].sum())
        rand_fail = int((~g["randomisation_passed"].astype(bool)).sum())
        del_fail = int((g["deletion_passed"] == False).sum())  # noqa: E712 (NaN: no verdict)
        no_del = int(g["deletion_passed"].isna().sum())
        if 2 * k > n:
            out[method] = f"may decide verdicts: trusted in {k} of {n} runs"
        else:
            out[method] = (f"no verdict: trusted in only {k} of {n} runs (randomisation check failed in {rand_fail}, "
                           f"deletion check failed in {del_fail}" + (f", no deletion verdict in {no_del}" if no_del else "")
                           + ")")  # fmt: skip
    return out


def claim3_statement(table: pd.DataFrame) -> str:
    """One sentence: which methods may decide claim 3, or that it is not testable with trustworthy
    maps, with :func:`claim3_methods`' counts as the evidence."""
    verdicts = claim3_methods(table)
    if not verdicts:
        return "No saliency results: claim 3 (saliency alignment with cartilage) was not computed."
    said = "; ".join(f"{METHOD_NAMES.get(m, m)}: {v}" for m, v in verdicts.items())
    said = said[:1].upper() + said[1:]
    if any(v.startswith("may decide") for v in verdicts.values()):
        return f"Claim 3 is decided from the methods whose maps pass their checks in most runs. {said}."
    return f"Claim 3 is not testable with trustworthy maps: no method passes its checks in most runs. {said}."


def check_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per method, backbone and mode of :func:`saliency_run_table`'s ``table``: runs, and how many pass
    the randomisation check, pass / fail the deletion check or have no deletion verdict, and are trusted."""
    per_run = table.drop_duplicates(["run_id", "method"])
    d = per_run["deletion_passed"]
    counted = per_run.assign(deletion_passed=d == True, deletion_failed=d == False, no_deletion_verdict=d.isna())  # noqa: E712
    out = counted.groupby(["method", "backbone", "mode"], sort=False).agg(
        runs=("run_id", "size"), randomisation_passed=("randomisation_passed", "sum"),
        deletion_passed=("deletion_passed", "sum"), deletion_failed=("deletion_failed", "sum"),
        no_deletion_verdict=("no_deletion_verdict", "sum"), trusted=("trusted", "sum"),
    ).reset_index()  # fmt: skip
    return out.sort_values(["method", "backbone", "mode"], key=lambda c: c.map(_mode_order) if c.name == "mode" else c,
                           kind="stable").reset_index(drop=True)  # fmt: skip


def enrichment_levels(table: pd.DataFrame) -> pd.DataFrame:
    """Levels, not comparisons: per backbone, mode, target, method and region the mean over runs (seeds)
    of the run-level enrichment, its 95% t-interval over runs, the runs and how many are trusted."""
    rows = []
    for key, g in table.groupby(["backbone", "mode", "target", "method", "region"], sort=False):
        x = g["enrichment"].dropna().to_numpy(float)
        half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.nan
        rows.append((*key, x.mean() if len(x) else np.nan, x.mean() - half, x.mean() + half, len(x), int(g["trusted"].sum())))
    return pd.DataFrame(rows, columns=["backbone", "mode", "target", "method", "region", "enrichment", "ci_low", "ci_high",
                                       "runs", "trusted_runs"])  # fmt: skip


def saliency_enrichment(sal: pd.DataFrame, method: str = "smoothgrad", target: str = "oa") -> pd.DataFrame:
    """Mean enrichment over chance with a 95% t-interval over knees, per backbone, mode and region."""
    t = sal[(sal["method"] == method) & (sal["target"] == target)].dropna(subset=["enrichment"])
    rows = []
    for (bb, mode, region), g in t.groupby(["backbone", "mode", "region"], sort=False):
        x = g["enrichment"].to_numpy(float)
        half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.nan
        rows.append({"backbone": bb, "mode": mode, "region": region, "enrichment": x.mean(),
                     "ci_low": x.mean() - half, "ci_high": x.mean() + half, "n": len(x)})
    return pd.DataFrame(rows)


def sanity_summary(sanity: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over knees and targets of the trained-vs-randomised rank correlation, per
    backbone, mode, method and randomisation step (step 0: the trained map itself)."""
    if sanity.empty:
        return pd.DataFrame()
    keys = ["backbone", "mode", "method", "step", "layer"]
    out = sanity.groupby(keys, sort=False)["spearman"].agg(spearman="mean", sd="std", n="count").reset_index()
    return out


def saliency_slices(study: Study, backbone: str, seed: int, methods: Sequence[str] | None = None,
                    max_knees: int = 1) -> dict[str, Any]:
    """Coronal slices of the saved maps through the middle of the first knees: per mode and target
    a row, per knee and method (default: the preset's) a column, with the cartilage, the
    synthetic cohort's lesion codes (None on real data) and each knee's grade in its title."""
    from oaprobe.data.dataset import load_masks  # deferred: torch: its module builds tensors

    methods = get_preset(study.preset).saliency.methods if methods is None else methods
    out: dict[str, Any] = {"images": [], "titles": [], "cartilage": [], "saliency": [], "lesion": [], "n_cols": 0}
    runs = {r.config.mode: r for r in study.select(backbone=backbone, seed=seed)}
    results = study.saliency_results()
    rows = study.table.set_index(study.table["case_id"].astype(str))
    grade_col = "kl_clean" if study.has_clean else "kl"
    lesion_cache: dict[str, np.ndarray | None] = {}
    knees: list[str] | None = None
    for mode in MODES:
        if mode not in runs or runs[mode].run_id not in results:
            continue
        maps = results[runs[mode].run_id]["maps"]
        knees = knees or list(dict.fromkeys(maps["case_id"].astype(str).tolist()))[:max_knees]
        for target in ("oa", "kl"):
            for case in knees:
                for method in methods:
                    hit = np.nonzero((maps["case_id"].astype(str) == case) & (maps["target"] == target)
                                     & (maps["method"] == method))[0]
                    if not hit.size:
                        continue
                    i, w = hit[0], maps["image"].shape[-1] // 2
                    if case not in lesion_cache:
                        has = "lesion_path" in rows and pd.notna(rows.loc[case].get("lesion_path"))
                        lesion_cache[case] = load_masks(rows.loc[[case]], maps["image"].shape[1:],
                                                        column="lesion_path")[0] if has else None
                    lesion = lesion_cache[case]
                    out["images"].append(maps["image"][i][..., w].astype(np.float32).T)
                    out["cartilage"].append(np.isin(maps["mask"][i][..., w], CARTILAGE_LABELS).T)
                    out["saliency"].append(maps["saliency"][i][..., w].astype(np.float32).T)
                    out["lesion"].append(None if lesion is None else lesion[..., w].T)
                    grade = f"{'clean ' if grade_col == 'kl_clean' else ''}KL{int(rows.loc[case, grade_col])}"
                    out["titles"].append(f"{MODE_NAMES[mode]} · {target.upper()} target · "
                                         f"{METHOD_NAMES.get(method, method)}<br>{case}, {grade}")
    out["n_cols"] = len(knees or []) * len(methods)
    return out
