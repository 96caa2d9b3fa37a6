"""Paired comparisons of two runs on the same test knees, and multiple-testing control.

The reference protocol (``reference_family``): per backbone, dual vs single-OA on OA metrics
and dual vs single-KL on KL metrics; OA accuracy by McNemar on per-knee correctness (exact
binomial when the discordant pairs are < 25, else chi-square with continuity correction), every
other metric by a paired bootstrap of the difference (subjects resampled with replacement,
the same resamples for both runs; percentile CI; two-sided
``p = min(1, 2 min((#{d<=0}+1)/(B+1), (#{d>=0}+1)/(B+1)))``), Benjamini-Hochberg over the family.
Beyond it: DeLong's test for correlated AUCs. Comparisons over seeds use the book's decision rule
(:mod:`oaprobe.analysis.decision`).

Example:
    >>> import numpy as np
    >>> bh(np.array([0.01, 0.03, 0.02, 0.20])).round(3).tolist()
    [0.04, 0.04, 0.04, 0.2]
    >>> r = mcnemar_test(np.array([1, 1, 1, 0, 1]), np.array([1, 0, 0, 0, 1]))
    >>> r["test"], r["discordant"], r["p"]
    ('mcnemar_exact', 2, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from oaprobe.analysis.metrics import (
    P_KL_COLUMNS,
    MetricsError,
    PredArrays,
    bootstrap_distribution,
    check_metric,
    metric_on_rows,
    pred_arrays,
)

#: The six metrics of the reference family per backbone, by task, with the reference's names.
REFERENCE_METRICS: dict[str, tuple[str, ...]] = {
    "OA": ("oa_roc_auc", "oa_accuracy", "oa_f1"),
    "KL": ("kl_auc_macro", "kl_accuracy", "kl_f1_macro"),
}
REFERENCE_NAMES = {
    "oa_roc_auc": "AUC", "oa_accuracy": "Acc", "oa_f1": "F1",
    "kl_auc_macro": "M-AUC", "kl_accuracy": "Acc", "kl_f1_macro": "M-F1",
}
#: Single-label baseline each task is compared against in the reference family.
REFERENCE_BASELINE = {"OA": "single_oa", "KL": "single_kl"}
#: Backbone order of the reference's family table (its bootstrap stream runs in this order).
REFERENCE_BACKBONES = ("resnet3d", "m3t", "mamba")
REFERENCE_SEED = 42
EXACT_BELOW = 25  # McNemar: exact binomial when discordant pairs < 25
ZERO_TOL = 1e-12  # bootstrap differences within this of 0 count as ties (both signs)


# ---------------------------------------------------------------------------------------------
# multiple testing
# ---------------------------------------------------------------------------------------------
def _adjust(p: Sequence[float] | np.ndarray, method: str) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method=method)[1]
    return out


def bh(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (statsmodels ``fdr_bh``); NaN p-values stay NaN, uncounted."""
    return _adjust(p, "fdr_bh")


def holm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (statsmodels ``holm``); NaN stays NaN."""
    return _adjust(p, "holm")


# ---------------------------------------------------------------------------------------------
# single tests
# ---------------------------------------------------------------------------------------------
def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, object]:
    """McNemar on paired per-knee correctness (statsmodels).

    Exact binomial when discordant pairs < 25, else chi-square with continuity correction.
    ``table`` is ``[[both, a only], [b only, neither]]`` (rows: a correct / wrong; columns:
    b correct / wrong), the reference's layout with a = dual.
    """
    ca, cb = np.asarray(correct_a).astype(bool), np.asarray(correct_b).astype(bool)
    if ca.shape != cb.shape:
        raise MetricsError(f"mcnemar_test: shapes differ {ca.shape} vs {cb.shape}")
    table = [[int((ca & cb).sum()), int((ca & ~cb).sum())],
             [int((~ca & cb).sum()), int((~ca & ~cb).sum())]]
    discordant = table[0][1] + table[1][0]
    exact = discordant < EXACT_BELOW
    res = mcnemar(np.array(table), exact=exact, correction=True)
    return {
        "test": "mcnemar_exact" if exact else "mcnemar_chi2_cc",
        "statistic": float(res.statistic), "p": float(res.pvalue), "table": table,
        "discordant": discordant, "a_only": table[0][1], "b_only": table[1][0],
    }


def bootstrap_p(d: np.ndarray) -> float:
    """Two-sided bootstrap p of a difference distribution (the reference's definition, capped
    at 1): ``2 min((#{d<=0}+1)/(B+1), (#{d>=0}+1)/(B+1))``; |d| <= 1e-12 counts as 0."""
    d = np.asarray(d, dtype=float)
    d = d[np.isfinite(d)]
    b = d.size
    if b == 0:
        return float("nan")
    le = int((d <= ZERO_TOL).sum())
    ge = int((d >= -ZERO_TOL).sum())
    return float(min(1.0, 2 * min((le + 1) / (b + 1), (ge + 1) / (b + 1))))


def align(
    pred_a: pd.DataFrame, pred_b: pd.DataFrame, split: str | None = "test", truth: str = "kl"
) -> tuple[PredArrays, PredArrays]:
    """Both tables' arrays on the same knees in the same order (b reordered to a's case_id).

    Raises if the knee sets or their labels/subjects differ: a paired test needs the same knees.
    """
    a = pred_arrays(pred_a, split, truth)
    b = pred_arrays(pred_b, split, truth)
    if set(a.case_id) != set(b.case_id):
        only_a = sorted(set(a.case_id) - set(b.case_id))[:3]
        only_b = sorted(set(b.case_id) - set(a.case_id))[:3]
        raise MetricsError(
            f"paired comparison needs the same knees: only in a {only_a}, only in b {only_b}"
        )
    pos = {c: i for i, c in enumerate(b.case_id)}
    order = np.array([pos[c] for c in a.case_id], dtype=int)
    same_subject = pd.factorize(b.subject[order], sort=False)[0]
    b = PredArrays(
        case_id=b.case_id[order], subject=a.subject, y_oa=b.y_oa[order], p_oa=b.p_oa[order],
        y_kl=b.y_kl[order], p_kl=None if b.p_kl is None else b.p_kl[order],
    )
    if not (np.array_equal(a.y_kl, b.y_kl) and np.array_equal(same_subject, a.subject)):
        bad = a.case_id[int(np.flatnonzero((a.y_kl != b.y_kl) | (same_subject != a.subject))[0])]
        raise MetricsError(f"paired tables disagree on the label or subject of case_id {bad!r}")
    return a, b


def compare_pair(
    pred_dual: pd.DataFrame,
    pred_single: pd.DataFrame,
    metrics: Sequence[str],
    B: int = 10_000,
    seed: int | np.random.Generator = 0,
    *,
    mcnemar_metrics: Sequence[str] = ("oa_accuracy",),
    split: str | None = "test",
    truth: str = "kl",
    groups: str = "subject_id",
    level: float = 0.95,
    threshold: float = 0.5,
    method: str = "vectorised",
    progress: bool = False,
) -> pd.DataFrame:
    """Paired comparison a = ``pred_dual`` vs b = ``pred_single`` on each metric.

    Every metric gets the paired-bootstrap difference CI (subjects resampled, both runs on the
    same resamples; each metric in turn draws its own ``B`` resamples from one generator
    seeded by ``seed``, as the reference did). ``p`` is McNemar's for ``mcnemar_metrics``
    (per-knee correctness: OA by ``p_oa >= threshold``, KL by argmax), else the bootstrap p.
    ``groups="case_id"`` resamples knees instead of subjects (the same when each subject has
    one knee, as in the reference data). ``diff`` is a - b. Columns: ``metric, task, test, estimate_a, estimate_b, diff, ci_low,
    ci_high, p, p_bootstrap, statistic, discordant, a_only, b_only, mcnemar_table, n,
    n_subjects, B, n_valid, level``.
    """
    a, b = _aligned_by(pred_dual, pred_single, split, truth, groups)
    metrics = list(metrics)
    for m in metrics:
        check_metric(m)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    q = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
    rows = []
    all_rows = np.arange(a.y_oa.size)
    for m in metrics:
        est_a, est_b = metric_on_rows(m, a, all_rows, threshold), metric_on_rows(m, b, all_rows, threshold)
        dist = bootstrap_distribution([a, b], [m], B, rng, threshold=threshold, method=method,
                                      progress=progress)[m]
        d = dist[:, 0] - dist[:, 1]
        d = d[np.isfinite(d)]
        lo, hi = np.percentile(d, q) if d.size else (np.nan, np.nan)
        p_boot = bootstrap_p(d)
        row = {
            "metric": m, "task": m.split("_", 1)[0].upper(), "test": "paired_bootstrap",
            "estimate_a": est_a, "estimate_b": est_b, "diff": est_a - est_b,
            "ci_low": float(lo), "ci_high": float(hi), "p": p_boot, "p_bootstrap": p_boot,
            "statistic": np.nan, "discordant": np.nan, "a_only": np.nan, "b_only": np.nan,
            "mcnemar_table": "", "n": int(a.y_oa.size), "n_subjects": a.n_subjects, "B": B,
            "n_valid": int(d.size), "level": level,
        }
        if m in mcnemar_metrics:
            row.update(_mcnemar_row(m, a, b, threshold))
        rows.append(row)
    return pd.DataFrame(rows)


def _aligned_by(pred_dual: pd.DataFrame, pred_single: pd.DataFrame, split: str | None, truth: str,
                groups: str) -> tuple[PredArrays, PredArrays]:
    """The two runs' knees aligned (:func:`align`), resampling units taken from column ``groups``."""
    for name, df in (("pred_dual", pred_dual), ("pred_single", pred_single)):
        if groups not in df.columns:
            raise MetricsError(f"compare_pair: groups column {groups!r} not in {name}")
    if groups != "subject_id":
        pred_dual = pred_dual.assign(subject_id=pred_dual[groups])
        pred_single = pred_single.assign(subject_id=pred_single[groups])
    return align(pred_dual, pred_single, split, truth)


def _correct(metric: str, x: PredArrays, threshold: float) -> np.ndarray:
    if metric == "oa_accuracy":
        return (x.p_oa >= threshold).astype(int) == x.y_oa
    if metric == "kl_accuracy":
        if x.p_kl is None:
            raise MetricsError("McNemar on kl_accuracy needs p_kl0..p_kl4")
        return x.p_kl.argmax(axis=1) == x.y_kl
    raise MetricsError(f"McNemar applies to accuracy metrics only, not {metric!r}")


def _mcnemar_row(metric: str, a: PredArrays, b: PredArrays, threshold: float) -> dict:
    r = mcnemar_test(_correct(metric, a, threshold), _correct(metric, b, threshold))
    return {
        "test": r["test"], "p": r["p"], "statistic": r["statistic"],
        "discordant": r["discordant"], "a_only": r["a_only"], "b_only": r["b_only"],
        "mcnemar_table": str(r["table"]),
    }


def reference_family(
    preds: Mapping[tuple[str, str], pd.DataFrame],
    B: int = 10_000,
    seed: int = 0,
    *,
    metrics: Mapping[str, Sequence[str]] = REFERENCE_METRICS,
    alpha: float = 0.05,
    split: str | None = "test",
    truth: str = "kl",
    groups: str = "subject_id",
    progress: bool = False,
) -> pd.DataFrame:
    """The reference study's family: per backbone, dual vs single-OA on the OA metrics and dual
    vs single-KL on the KL metrics, BH over all rows.

    ``preds`` maps ``(backbone, mode)`` to a prediction table; backbones lacking a needed mode
    raise. One generator, ``default_rng(seed)``, feeds every test in order (backbones in the
    mapping's order; OA then KL; metrics as listed): with the reference's order and seed 42
    this reproduces its bootstrap draws exactly. Columns:
    ``backbone, mode_a, mode_b, reference_name`` + :func:`compare_pair`'s + ``q_bh, significant``.
    """
    backbones = list(dict.fromkeys(k[0] for k in preds))
    rng = np.random.default_rng(seed)
    frames = []
    for bb in backbones:
        for task, names in metrics.items():
            base = REFERENCE_BASELINE[task]
            for mode in ("dual", base):
                if (bb, mode) not in preds:
                    raise MetricsError(f"reference_family: no predictions for ({bb!r}, {mode!r})")
            t = compare_pair(preds[(bb, "dual")], preds[(bb, base)], names, B=B, seed=rng,
                             split=split, truth=truth, groups=groups, progress=progress)
            t.insert(0, "reference_name", [REFERENCE_NAMES.get(m, m) for m in t["metric"]])
            t.insert(0, "mode_b", base)
            t.insert(0, "mode_a", "dual")
            t.insert(0, "backbone", bb)
            frames.append(t)
    fam = pd.concat(frames, ignore_index=True)
    fam["q_bh"] = bh(fam["p"].to_numpy())
    fam["significant"] = fam["q_bh"] < alpha
    return fam


# ---------------------------------------------------------------------------------------------
# beyond the reference
# ---------------------------------------------------------------------------------------------
def delong_test(
    y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, level: float = 0.95
) -> pd.DataFrame:
    """DeLong test for two correlated ROC-AUCs on the same cases (midrank algorithm).

    Returns one row: ``auc_a, auc_b, diff, se, z, p, ci_low, ci_high, level, n_pos, n_neg``
    (CI is the normal interval of the difference).
    """
    y = np.asarray(y).astype(int)
    scores = np.vstack([np.asarray(p_a, float), np.asarray(p_b, float)])
    if scores.shape[1] != y.size:
        raise MetricsError(f"delong_test: y has {y.size} cases, scores {scores.shape[1]}")
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    if m < 2 or n < 2 or m + n != y.size:
        raise MetricsError(f"delong_test needs binary y with >= 2 of each class; got {m}/{n}")
    aucs, v10, v01 = [], [], []
    for s in scores:
        x, z = s[pos], s[neg]
        r_all = stats.rankdata(np.r_[x, z])
        r_x, r_z = stats.rankdata(x), stats.rankdata(z)
        aucs.append((r_all[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((r_all[:m] - r_x) / n)
        v01.append(1.0 - (r_all[m:] - r_z) / m)
    cov = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = aucs[0] - aucs[1]
    se = float(np.sqrt(max(var, 0.0)))
    if se > 0:
        z_stat = diff / se
        p = float(2 * stats.norm.sf(abs(z_stat)))
    else:
        z_stat, p = (0.0, 1.0) if diff == 0 else (np.inf * np.sign(diff), 0.0)
    half = stats.norm.ppf((1 + level) / 2) * se
    return pd.DataFrame([{
        "auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "diff": float(diff), "se": se,
        "z": float(z_stat), "p": p, "ci_low": float(diff - half), "ci_high": float(diff + half),
        "level": level, "n_pos": m, "n_neg": n,
    }])


# ---------------------------------------------------------------------------------------------
# the reference release's tables
# ---------------------------------------------------------------------------------------------
def from_reference_table(ref: pd.DataFrame) -> pd.DataFrame:
    """Convert a reference ``*_preds.csv`` (CMT_ID, label_kl, label_oa, prob_oa, prob_kl_k...)
    to oaprobe's predictions.csv columns. One knee per subject; every row is ``test``; the
    dual OA probability is the OA head's ``prob_oa`` (the reference's protocol)."""
    need = ("CMT_ID", "label_kl", "label_oa", "prob_oa")
    missing = [c for c in need if c not in ref.columns]
    if missing:
        raise MetricsError(f"reference table lacks {missing}; has {list(ref.columns)}")
    ids = "CMT" + ref["CMT_ID"].astype(str)
    out = pd.DataFrame({
        "case_id": ids, "subject_id": ids, "split": "test",
        "kl": ref["label_kl"].astype(int), "oa": ref["label_oa"].astype(int),
        "kl_clean": np.nan, "p_oa": ref["prob_oa"].astype(float),
    })
    has_kl = all(f"prob_kl_{k}" in ref.columns for k in range(5))
    for k, col in enumerate(P_KL_COLUMNS):
        out[col] = ref[f"prob_kl_{k}"].astype(float) if has_kl else np.nan
    out["pred_oa"] = (out["p_oa"] >= 0.5).astype(int)
    out["pred_kl"] = (
        out[list(P_KL_COLUMNS)].to_numpy().argmax(axis=1) if has_kl else pd.NA
    )
    return out


def load_reference(folder: str | Path) -> dict[tuple[str, str], pd.DataFrame]:
    """Read every ``<backbone>_<mode>_preds.csv`` in ``folder`` as oaprobe prediction tables,
    keyed ``(backbone, mode)`` with mode in single_oa / single_kl / dual; the reference's
    backbones come first, in its order (resnet3d, m3t, mamba)."""
    out = {}
    rank = {b: i for i, b in enumerate(REFERENCE_BACKBONES)}
    paths = sorted(Path(folder).glob("*_preds.csv"))
    paths.sort(key=lambda p: rank.get(p.name.split("_")[0], len(rank)))
    for path in paths:
        stem = path.name[: -len("_preds.csv")]
        for mode in ("single_oa", "single_kl", "dual"):
            if stem.endswith("_" + mode):
                out[(stem[: -len(mode) - 1], mode)] = from_reference_table(pd.read_csv(path))
    if not out:
        raise MetricsError(f"no <backbone>_<mode>_preds.csv files in {folder}")
    return out
