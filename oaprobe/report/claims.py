"""The study's three claims, each decided by the book's one rule over paired seeds.

The reference study claims that dual (coarse + fine) supervision (1) improves KL-related metrics
for some backbones, (2) gives a more ordered coarse-to-fine latent organisation and (3) aligns
saliency more strongly with cartilage. Each claim is asked here as questions declared before any
result (:data:`QUESTIONS`): per backbone, dual against a single-task baseline of the same seed,
one metric with its smallest effect of interest ``delta``, decided by
:func:`oaprobe.analysis.decision.decide_with_flags` with Bonferroni over the claim's primary
questions. :func:`verdict_table` gives every verdict as one table (the answer page's
``verdicts.csv``).

Example:
    >>> [q.metric for q in QUESTIONS if q.claim == "latent"]
    ['latent_order', 'within_class_order', 'extreme_absorption', 'latent_order', 'within_class_order', 'extreme_absorption']
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from oaprobe.analysis.decision import MAX_SEEDS, decide, decide_with_flags
from oaprobe.analysis.knee_sampling import knee_share, seeds_needed_with_knees
from oaprobe.facts import KL_GRADES
from oaprobe.io import write_atomic
from oaprobe.report.guards import finding_limit
from oaprobe.report.saliency import trusted_counts

#: claim -> what the reference study claims (the answer page's headings)
CLAIMS: dict[str, str] = {
    "metrics": "Dual supervision improves the coarse and fine metrics",
    "latent": "Dual supervision orders the latent space from coarse to fine",
    "saliency": "Dual supervision aligns saliency with cartilage",
}
#: columns of :func:`verdict_table` (and of ``verdicts.csv``), in order
VERDICT_COLUMNS = (
    "claim", "role", "backbone", "metric", "baseline", "truth", "method", "n", "mean", "sd",
    "ci90_low", "ci90_high", "ci95_low", "ci95_high", "delta", "m", "alpha", "test_low", "test_high",
    "eq_low", "eq_high", "verdict", "verdict_all", "verdict_without_flagged", "n_flagged", "seeds_needed",
    "loo_stable", "reason", "reference_diff", "reference_in_ci95",
)


@dataclass(frozen=True)
class Question:
    """One comparison of a claim: ``metric`` of dual minus ``baseline`` per seed, per backbone.

    ``role``: ``primary`` questions decide the claim (Bonferroni over the claim's primary ones);
    ``secondary`` ones explain it (Bonferroni over their own family). ``delta``: the smallest
    effect of interest, in the metric's units, with ``why``.
    """

    claim: str
    metric: str
    baseline: str
    role: str
    delta: float
    why: str


_RHO_WHY = ("a rank correlation 0.03 apart is under the smallest dual-minus-single difference the reference "
            "reported (0.04) and about the sampling error of one model's Spearman on 643 test knees")
_SAL_WHY = ("a tenth of the chance level: a map that puts 10% more (relative to chance) of its mass on the region; "
            "the spread of one model's enrichment over 8 knees is several times larger")
_ABSORB_WHY = "three knees in a hundred of the extreme grades moved to their neighbour"

QUESTIONS: tuple[Question, ...] = (
    Question("metrics", "oa_roc_auc", "single_oa", "primary", 0.015,
             "see oaprobe.analysis.decision.DELTAS (a difference under 0.015 no test set of the reference's size sees)"),
    Question("metrics", "kl_qwk", "single_kl", "primary", 0.03, "see oaprobe.analysis.decision.DELTAS"),
    *(q for base in ("single_kl", "single_oa") for q in (
        Question("latent", "latent_order", base, "primary", 0.03, _RHO_WHY),
        Question("latent", "within_class_order", base, "secondary", 0.03, _RHO_WHY),
        Question("latent", "extreme_absorption", base, "secondary", 0.03, _ABSORB_WHY),
    )),
    *(q for base in ("single_kl", "single_oa") for q in (
        Question("saliency", "enrichment_cartilage", base, "primary", 0.1, _SAL_WHY),
        Question("saliency", "enrichment_evidence", base, "secondary", 0.1, _SAL_WHY),
    )),
)
#: metrics where lower is better (dual "helps" when it lowers them)
LOWER_IS_BETTER = frozenset({"extreme_absorption"})

#: The reference study's own dual-minus-single differences on its 98 test knees (one run each;
#: observed labels): OA ROC-AUC from its metric rows, |Spearman(PC1, KL)| from its
#: severity-axis summary (Zhang 2026, arXiv:2605.00718, code release results/). It reports no
#: QWK, no within-class order and no saliency numbers.
REFERENCE_LEVELS: dict[tuple[str, str], dict[str, float]] = {
    ("resnet3d", "single_oa"): {"oa_roc_auc": 0.8807, "latent_order": 0.8016},
    ("resnet3d", "single_kl"): {"latent_order": 0.6665},
    ("resnet3d", "dual"): {"oa_roc_auc": 0.8657, "latent_order": 0.7526},
    ("m3t", "single_oa"): {"oa_roc_auc": 0.7922, "latent_order": 0.6474},
    ("m3t", "single_kl"): {"latent_order": 0.6833},
    ("m3t", "dual"): {"oa_roc_auc": 0.9170, "latent_order": 0.7220},
    ("nnmamba", "single_oa"): {"oa_roc_auc": 0.8500, "latent_order": 0.6277},
    ("nnmamba", "single_kl"): {"latent_order": 0.7813},
    ("nnmamba", "dual"): {"oa_roc_auc": 0.8190, "latent_order": 0.6893},
}


def reference_diff(backbone: str, metric: str, baseline: str) -> float:
    """The reference's dual-minus-``baseline`` difference in ``metric`` (NaN where it reports none)."""
    dual = REFERENCE_LEVELS.get((backbone, "dual"), {}).get(metric)
    single = REFERENCE_LEVELS.get((backbone, baseline), {}).get(metric)
    return float(dual - single) if dual is not None and single is not None else float("nan")


# --------------------------------------------------------------------------- per-run values
def extreme_absorption(true: np.ndarray, pred: np.ndarray) -> float:
    """Share of the extreme-grade knees (KL 0 and KL 4) predicted as their neighbour inside the same
    coarse class (KL 1, KL 3), averaged over the two grades present: how much a model compresses the
    fine grades inside each coarse class (the pattern of the runs flagged "degenerate").

    Example:
        >>> extreme_absorption(np.array([0, 0, 4, 4, 2]), np.array([1, 0, 3, 3, 2]))
        0.75
    """
    shares = [float(np.mean(pred[true == g] == n)) for g, n in ((KL_GRADES[0], KL_GRADES[1]),
                                                               (KL_GRADES[-1], KL_GRADES[-2])) if np.any(true == g)]
    return float(np.mean(shares)) if shares else float("nan")


def latent_values(latent: pd.DataFrame, predictions: dict[str, pd.DataFrame], truth: str) -> pd.DataFrame:
    """Claim 2's per-run values against ``truth`` (``kl`` or ``kl_clean``), long form: run_id,
    backbone, mode, seed, metric, value. ``latent``: :meth:`Study.latent` rows of the PCA axis;
    ``predictions``: run id -> test predictions (for :func:`extreme_absorption`)."""
    grade = "KLclean" if truth == "kl_clean" else "KL"
    pca = latent[latent["method"] == "pca"]
    columns = {"latent_order": f"abs_spearman_PC1_{grade}", "within_class_order": f"within_class_spearman_{grade}"}
    rows = []
    for _, r in pca.iterrows():
        keys = {k: r[k] for k in ("run_id", "backbone", "mode", "seed")}
        rows += [{**keys, "metric": m, "value": float(r[c])} for m, c in columns.items() if c in r]
        p = predictions[r["run_id"]]
        if "pred_kl" in p and p["pred_kl"].notna().all() and truth in p:
            value = extreme_absorption(p[truth].to_numpy(int), p["pred_kl"].to_numpy(int))
            rows.append({**keys, "metric": "extreme_absorption", "value": value})
    return pd.DataFrame(rows, columns=["run_id", "backbone", "mode", "seed", "metric", "value"])


def saliency_values(table: pd.DataFrame, method: str) -> pd.DataFrame:
    """Claim 3's per-run values from :func:`oaprobe.report.saliency.saliency_run_table` for one
    ``method``, long form with a ``target`` column and ``trusted`` (the map passed its checks):
    ``enrichment_<region>`` per run and target."""
    t = table[table["method"] == method]
    return pd.DataFrame({
        "run_id": t["run_id"], "backbone": t["backbone"], "mode": t["mode"], "seed": t["seed"],
        "target": t["target"], "metric": "enrichment_" + t["region"].astype(str), "value": t["enrichment"].astype(float),
        "trusted": t["trusted"].astype(bool),
    })


# --------------------------------------------------------------------------- pairing and the rule
def map_target(baseline: str) -> str:
    """The saliency target claim 3 compares against ``baseline``: the head that baseline has (OA for
    single-OA, KL for single-KL); dual's map for that target is compared with the baseline's."""
    return "oa" if baseline == "single_oa" else "kl"


def pair_seeds(values: pd.DataFrame, baseline: str, failed: pd.Series) -> pd.DataFrame:
    """Dual (``a``) and ``baseline`` (``b``) of each backbone, metric and seed: ``diff = a - b`` and
    ``flagged`` when either run failed (``failed``: run id -> bool) or either map is untrusted.

    Saliency values carry a ``target``: dual's map for the baseline's target (OA for single-OA,
    KL for single-KL) is compared with the baseline's map for the same target.
    """
    v = values
    if "target" in v:
        v = v[v["target"] == map_target(baseline)]
    bad = v["run_id"].map(failed).fillna(False).astype(bool)
    if "trusted" in v:
        bad |= ~v["trusted"].astype(bool)
    v = v.assign(bad=bad)
    keys = ["backbone", "metric", "seed"]
    a = v[v["mode"] == "dual"].set_index(keys)[["value", "bad"]]
    b = v[v["mode"] == baseline].set_index(keys)[["value", "bad"]]
    both = a.join(b, lsuffix="_a", rsuffix="_b", how="inner").dropna(subset=["value_a", "value_b"]).reset_index()
    return pd.DataFrame({
        "backbone": both["backbone"], "metric": both["metric"], "baseline": baseline, "seed": both["seed"].astype(int),
        "a": both["value_a"], "b": both["value_b"], "diff": both["value_a"] - both["value_b"],
        "flagged": both["bad_a"].astype(bool) | both["bad_b"].astype(bool),
    })


def _nominal(diffs: np.ndarray, delta: float) -> dict[str, float]:
    """The plain 90% and 95% t-intervals of the mean difference (no multiplicity correction)."""
    plain = decide(diffs, delta, plan=False)
    return {"ci90_low": plain["eq_low"], "ci90_high": plain["eq_high"],
            "ci95_low": plain["ci_low"], "ci95_high": plain["ci_high"]}


def family_size(claim: str, role: str, n_backbones: int) -> int:
    """Bonferroni's ``m`` of a question: claim 1's primary questions are each tested on their own
    (as the book declared them first); every other family is the role's questions x backbones."""
    if claim == "metrics" and role == "primary":
        return 1
    return sum(1 for q in QUESTIONS if q.claim == claim and q.role == role) * max(n_backbones, 1)


def decide_claim(pairs: pd.DataFrame, claim: str, truth: str = "", method: str = "",
                 limit: str | None = None, order: Sequence[str] = (), family_backbones: int | None = None) -> pd.DataFrame:
    """The rule on every question of ``claim`` found in ``pairs`` (rows of :func:`pair_seeds` for
    every baseline), Bonferroni within each role (:func:`family_size`); ``limit``: why the test set
    carries no finding (:func:`oaprobe.report.guards.finding_limit`), making every verdict inconclusive;
    ``order``: the backbones' order in the table (the book's; others follow as found);
    ``family_backbones``: the backbones the family counts when ``pairs`` holds only some of them
    (a part-finished comparison is then decided with the whole grid's ``m``)."""
    rows = []
    asked = [q for q in QUESTIONS if q.claim == claim]
    found = list(dict.fromkeys(pairs["backbone"])) if len(pairs) else []
    backbones = [b for b in order if b in found] + [b for b in found if b not in order]
    for q in asked:
        m = family_size(claim, q.role, family_backbones or len(backbones))
        for bb in backbones:
            g = pairs[(pairs["backbone"] == bb) & (pairs["metric"] == q.metric) & (pairs["baseline"] == q.baseline)]
            if g.empty:
                continue
            d = g["diff"].to_numpy(float)
            out = decide_with_flags(d, g["flagged"].to_numpy(bool), q.delta, m=m,
                                    lower_is_better=q.metric in LOWER_IS_BETTER, limit=limit)
            ref = reference_diff(bb, q.metric, q.baseline) if truth != "kl_clean" else float("nan")
            rows.append({
                "claim": claim, "role": q.role, "backbone": bb, "metric": q.metric, "baseline": q.baseline,
                "truth": truth, "method": method, "n": out["n_seeds"], **_nominal(d, q.delta),
                "test_low": out["ci_low"], "test_high": out["ci_high"],
                "verdict_without_flagged": out["verdict_unflagged"], "reference_diff": ref,
                **{k: out[k] for k in ("mean", "sd", "delta", "m", "alpha", "eq_low", "eq_high", "verdict",
                                       "verdict_all", "n_flagged", "seeds_needed", "loo_stable", "reason")},
            })
    out = pd.DataFrame(rows, columns=[c for c in VERDICT_COLUMNS if c != "reference_in_ci95"])
    inside = (out["ci95_low"] <= out["reference_diff"]) & (out["reference_diff"] <= out["ci95_high"])
    return out.assign(reference_in_ci95=inside.where(out["reference_diff"].notna()))


def stack_verdicts(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One table of every claim's verdicts, in :data:`VERDICT_COLUMNS` order."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(VERDICT_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(VERDICT_COLUMNS)]



# --------------------------------------------------------------------------- the study's verdicts
def failed_runs(convergence: pd.DataFrame) -> pd.Series:
    """Run id -> whether the run failed to train (diverged or below the OA majority rate): the flags
    that keep a seed from deciding a verdict alone (:func:`oaprobe.analysis.convergence.run_diagnostics`)."""
    return convergence.set_index("run_id")["flagged"].astype(bool)


def metric_pairs(study, truth: str) -> pd.DataFrame:
    """Claim 1's per-seed pairs against ``truth``: the answer page's primary metrics (OA ROC-AUC vs
    single-OA, KL QWK vs single-KL), flagged as the rest of the book flags them."""
    return study.paired_seeds(truth=truth, metrics=[q.metric for q in QUESTIONS if q.claim == "metrics"])


def latent_pairs(study, truth: str, latent: pd.DataFrame | None = None) -> pd.DataFrame:
    """Claim 2's per-seed pairs against ``truth`` on the train-fitted PCA axis (``latent``:
    :meth:`Study.latent` rows, computed when not given), for both baselines."""
    latent = study.latent(methods=("pca",)) if latent is None else latent
    preds = {r.run_id: r.predictions[r.predictions["split"] == "test"] for r in study.runs}
    values = latent_values(latent, preds, truth)
    failed = failed_runs(study.convergence())
    return pd.concat([pair_seeds(values, base, failed) for base in ("single_kl", "single_oa")], ignore_index=True)


def saliency_pairs(study, table: pd.DataFrame, method: str) -> pd.DataFrame:
    """Claim 3's per-seed pairs with ``method``'s maps (``table``:
    :func:`oaprobe.report.saliency.saliency_run_table`); a map that fails its checks is flagged."""
    values = saliency_values(table, method)
    if values.empty:
        return pd.DataFrame(columns=["backbone", "metric", "baseline", "seed", "a", "b", "diff", "flagged"])
    failed = failed_runs(study.convergence())
    return pd.concat([pair_seeds(values, base, failed) for base in ("single_kl", "single_oa")], ignore_index=True)


def metric_verdicts(study, truth: str) -> pd.DataFrame:
    """Claim 1 against ``truth``: one row per backbone and primary question (as :func:`study_verdicts`)."""
    return decide_claim(metric_pairs(study, truth), "metrics", truth, limit=finding_limit(study.table, truth=truth),
                        order=study.backbones)


def latent_verdicts(study, truth: str, latent: pd.DataFrame | None = None) -> pd.DataFrame:
    """Claim 2 against ``truth``: one row per backbone, question and baseline (as :func:`study_verdicts`)."""
    return decide_claim(latent_pairs(study, truth, latent), "latent", truth, limit=finding_limit(study.table, truth=truth),
                        order=study.backbones)


def saliency_verdicts(study, table: pd.DataFrame, method: str) -> pd.DataFrame:
    """Claim 3 with ``method``'s maps: one row per backbone, question and baseline (as :func:`study_verdicts`)."""
    return decide_claim(saliency_pairs(study, table, method), "saliency", method=method,
                        limit=finding_limit(study.table), order=study.backbones)


def study_verdicts(study, saliency_table: pd.DataFrame | None = None, method: str | None = None,
                   family_backbones: int | None = None) -> tuple[pd.DataFrame, dict[tuple[str, str], pd.DataFrame]]:
    """Every claim's verdicts on ``study`` (claims 1 and 2 against the main truth, then the observed
    labels where they differ; claim 3 with ``method``'s maps when given) and each claim's per-seed
    pairs, keyed by (claim, truth), for the figures. The same family, limit and order as the
    per-claim functions above, which the chapters call: one source per verdict. ``family_backbones``:
    see :func:`decide_claim`."""
    truths = list(dict.fromkeys([study.main_truth, "kl"]))
    latent = study.latent(methods=("pca",))
    frames, pairs = [], {}
    for truth in truths:
        limit = finding_limit(study.table, truth=truth)
        for claim, p in (("metrics", metric_pairs(study, truth)), ("latent", latent_pairs(study, truth, latent))):
            pairs[(claim, truth)] = p
            frames.append(decide_claim(p, claim, truth, limit=limit, order=study.backbones,
                                       family_backbones=family_backbones))
    if saliency_table is not None and method:
        p = saliency_pairs(study, saliency_table, method)
        pairs[("saliency", "")] = p
        frames.append(decide_claim(p, "saliency", method=method, limit=finding_limit(study.table), order=study.backbones,
                                   family_backbones=family_backbones))
    return stack_verdicts(frames), pairs


def decisive_method(table: pd.DataFrame) -> str | None:
    """The saliency method whose maps decide claim 3: the one trusted (passing its checks) in the most
    runs, if that is more than half of them (:func:`oaprobe.report.saliency.trusted_counts`); None when
    no method is (the claim is then not testable with trustworthy maps). Chosen by the checks, never
    by the answer."""
    if table is None or table.empty:
        return None
    counts = trusted_counts(table)
    share = (counts["trusted"] / counts["runs"]).sort_values(ascending=False, kind="stable")
    return str(share.index[0]) if share.iloc[0] > 0.5 else None


#: the columns that name one question of :func:`verdict_table`'s rows
QUESTION_KEYS = ("claim", "role", "backbone", "metric", "baseline", "truth", "method")


def compare_verdicts(book: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Each question's verdict in ``book`` beside ``other``'s (e.g. the main grid retrained under the
    host perturbation): ``mean``, ``verdict``, ``other_mean``, ``other_verdict`` and ``same`` (NaN
    where ``other`` did not ask the question)."""
    keys = list(QUESTION_KEYS)
    a = book[keys + ["n", "mean", "verdict"]]
    b = other[keys + ["n", "mean", "verdict"]].rename(columns={"n": "other_n", "mean": "other_mean",
                                                               "verdict": "other_verdict"})
    both = a.merge(b, on=keys, how="left")
    same = (both["verdict"] == both["other_verdict"]).where(both["other_verdict"].notna())
    return both.assign(same=same)


#: where the host-perturbation benchmark leaves its verdicts, inside the book's runs folder
PERTURBED_VERDICTS = "verdicts-perturbed.csv"


def grid_key(run_ids: Sequence[str]) -> str:
    """A short digest of the book grid's run ids: perturbed verdicts belong to the grid they were compared with."""
    return hashlib.sha256("\n".join(sorted(run_ids)).encode()).hexdigest()[:16]


def write_perturbed(verdicts: pd.DataFrame, runs_root: str | Path, run_ids: Sequence[str]) -> Path:
    """Write the perturbed grid's verdicts into ``runs_root``, keyed by the book grid's ``run_ids``."""
    out = Path(runs_root) / PERTURBED_VERDICTS
    write_atomic(out, verdicts.assign(grid=grid_key(run_ids)).to_csv(index=False).encode())
    return out


def read_perturbed(runs_root: str | Path, run_ids: Sequence[str]) -> tuple[pd.DataFrame | None, str]:
    """The host-perturbation verdicts of ``runs_root`` and a note on them: None with the reason when
    there are none, or when they were compared with another grid (other runs: another preset, seed
    list or run field). Keyed like the runs folder itself, by run ids, so a refactor that leaves the
    runs in place leaves the perturbed verdicts valid too."""
    path = Path(runs_root) / PERTURBED_VERDICTS
    if not path.is_file():
        return None, f"no host-perturbation verdicts ({path} is written by benchmarks/host_perturbation.py)"
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if "grid" not in table or set(table["grid"].astype(str)) != {grid_key(run_ids)}:
        return None, f"the host-perturbation verdicts in {path} were computed for another grid of runs"
    return table.drop(columns="grid").fillna({"truth": "", "method": ""}), f"host-perturbation verdicts: {path}"


def mark_perturbed(verdicts: pd.DataFrame, perturbed: pd.DataFrame | None) -> pd.DataFrame:
    """``verdicts`` with ``verdict_perturbed`` and ``same_under_perturbation`` (NaN without perturbed verdicts)."""
    if perturbed is None:
        return verdicts.assign(verdict_perturbed=np.nan, same_under_perturbation=np.nan)
    both = compare_verdicts(verdicts, perturbed)
    return verdicts.assign(verdict_perturbed=both["other_verdict"].to_numpy(), same_under_perturbation=both["same"].to_numpy())


# --------------------------------------------------------------------------- claim 3's knee sampling
#: more knees per run than today that the table prices (inf: every knee of the test set and beyond)
KNEE_FACTORS: tuple[float, ...] = (1.0, 4.0, float("inf"))


def knee_sampling(saliency: pd.DataFrame, method: str, backbones: Sequence[str]) -> pd.DataFrame:
    """Would more knees per run decide claim 3's primary questions? Per backbone and baseline: the
    share of the seed variance of dual-minus-single cartilage enrichment that the fixed knee sample
    explains (:func:`oaprobe.analysis.knee_sampling.knee_share`) and the seeds the rule would need
    with 1x, 4x and every-knee runs. ``saliency``: one row per knee (``Study.saliency()``)."""
    s = saliency[(saliency["method"] == method) & (saliency["region"] == "cartilage")]
    question = next(q for q in QUESTIONS if q.claim == "saliency" and q.role == "primary")
    m = family_size("saliency", "primary", len(backbones))
    rows = []
    for backbone in backbones:
        for baseline in ("single_kl", "single_oa"):
            runs = s[(s["backbone"] == backbone) & (s["target"] == map_target(baseline))]
            dual, single = (runs[runs["mode"] == mode].set_index(["seed", "case_id"])["enrichment"]
                            for mode in ("dual", baseline))
            diffs = (dual - single).dropna().unstack()
            if diffs.shape[0] < 2 or diffs.shape[1] < 2:
                continue
            rows.append({"backbone": backbone, "baseline": baseline, "knees": diffs.shape[1], "seeds": diffs.shape[0],
                         "knee_share": knee_share(diffs),
                         **{f"seeds_needed_x{f:g}": seeds_needed_with_knees(diffs, question.delta, m, f)
                            for f in KNEE_FACTORS}})
    return pd.DataFrame(rows)


def describe_knee_sampling(table: pd.DataFrame) -> str:
    """One sentence on :func:`knee_sampling`'s table: whether more knees per run would decide claim 3."""
    if table.empty:
        return "Claim 3's knee sampling: no paired saliency runs to split."
    every = table[f"seeds_needed_x{KNEE_FACTORS[-1]:g}"]
    beyond = int(every.isna().sum())
    needed = every.dropna().astype(int)
    rest = f"; the others {needed.min()}–{needed.max()} seeds" if len(needed) > 1 else (
        f"; the other {needed.iloc[0]} seeds" if len(needed) else "")
    return (f"Would more knees decide claim 3? The {int(table['knees'].iloc[0])} fixed knees explain "
            f"{table['knee_share'].min():.0%}–{table['knee_share'].max():.0%} of the seed-to-seed variance; "
            f"even with every knee, {beyond} of {len(table)} questions would need over {MAX_SEEDS} seeds{rest}.")
