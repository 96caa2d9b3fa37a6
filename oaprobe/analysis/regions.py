"""Region masks of a knee, the overlap of a saliency map with them, and its paired comparison.

Why: the reference study asks whether hierarchical supervision moves a model's attention onto
the cartilage. A saliency map S (values in [0, 1]) is compared with a region mask M by
``mass = sum(S*M) / sum(S)``, the fraction of the top-k% voxels inside M, the Dice of that
top-k mask with M, and ``enrichment = mass / roi_fraction`` (1 = chance).

Example:
    >>> import numpy as np
    >>> roi = np.zeros((8, 8, 8), bool); roi[:2] = True
    >>> m = overlap_metrics(roi.astype(float), roi)
    >>> m["roi_fraction"], m["mass"], m["top10"], m["enrichment"]
    (0.25, 1.0, 1.0, 4.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.stats import wilcoxon

from oaprobe.analysis.metrics import group_weights, resample_groups
from oaprobe.facts import BONE_LABELS, CARTILAGE_LABELS

REGIONS: tuple[str, ...] = ("cartilage", "femoral_cartilage", "tibial_cartilage", "bone_margin", "lesion")
TABLE_KS: tuple[int, ...] = (1, 5, 10)


def region_masks(label_map: np.ndarray, lesion: np.ndarray | None = None, margin: int = 1) -> dict[str, np.ndarray]:
    """Boolean region masks from an OAI-ZIB label map (and an optional lesion mask).

    ``bone_margin`` is the shell of bone (labels 1, 3) voxels within ``margin`` voxels
    (6-connectivity) of non-bone; bone cut by the volume border is not a surface.
    """
    lab = np.asarray(label_map)
    if lab.ndim != 3:
        raise ValueError(f"label_map: expected a 3-D (D, H, W) array, got shape {lab.shape}")
    bone = np.isin(lab, BONE_LABELS)
    core = ndimage.binary_erosion(
        bone, structure=ndimage.generate_binary_structure(3, 1), iterations=margin, border_value=1
    )
    femoral, tibial = CARTILAGE_LABELS
    out = {
        "cartilage": np.isin(lab, CARTILAGE_LABELS),
        "femoral_cartilage": lab == femoral,
        "tibial_cartilage": lab == tibial,
        "bone_margin": bone & ~core,
    }
    if lesion is not None:
        les = np.asarray(lesion)
        if les.shape != lab.shape:
            raise ValueError(f"lesion: shape {les.shape} differs from the label map's {lab.shape}")
        out["lesion"] = les > 0
    return out


def _k_name(k: float) -> str:
    return str(int(k)) if float(k).is_integer() else str(k)


def overlap_metrics(saliency: Any, roi_mask: Any, ks: Sequence[float] = TABLE_KS) -> dict[str, float]:
    """Overlap of a saliency map with a region.

    Args:
        saliency: map of non-negative values (negative values count as 0, as in the reference).
        roi_mask: boolean region mask of the same shape.
        ks: top-k percentages (k% of all voxels, ``ceil``, at least one voxel; ties broken by position).

    Returns:
        ``roi_fraction`` (chance level), ``mass``, ``top{k}`` (fraction of the top-k% voxels in
        the ROI), ``dice{k}`` (Dice of the top-k% mask with the ROI) and ``enrichment``
        (mass / roi_fraction). With an empty ROI or an all-zero map every metric except
        ``roi_fraction`` is NaN (undefined, not zero).
    """
    roi = np.asarray(roi_mask)
    return region_overlap(saliency, {"roi": roi}, ks)["roi"]


def top_voxels(flat: np.ndarray, ks: Sequence[float]) -> dict[float, np.ndarray]:
    """Indices of the top-k% entries of ``flat`` for each k (``ceil``, >= 1; one partition for the largest k)."""
    n = flat.size
    tops: dict[float, np.ndarray] = {}
    order = None
    for k in sorted(ks, reverse=True):
        nk = max(1, math.ceil(k / 100.0 * n))
        if order is None:
            order = np.argpartition(flat, n - nk)[n - nk :]
            tops[k] = order
        else:
            sub = flat[order]
            tops[k] = order[np.argpartition(sub, len(sub) - nk)[len(sub) - nk :]]
    return tops


def region_overlap(
    saliency: Any, regions: dict[str, np.ndarray], ks: Sequence[float] = TABLE_KS
) -> dict[str, dict[str, float]]:
    """:func:`overlap_metrics` of one map against several regions (the top-k voxels are found once)."""
    s = np.asarray(saliency, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError("saliency: contains non-finite values")
    for k in ks:
        if not 0 < k <= 100:
            raise ValueError(f"ks: {k} is not a percentage in (0, 100]")
    flat = np.maximum(s, 0.0).ravel()
    n, total = flat.size, float(flat.sum())
    tops = top_voxels(flat, ks) if total > 0 else {}
    result: dict[str, dict[str, float]] = {}
    for name, roi_mask in regions.items():
        m = np.asarray(roi_mask).astype(bool)
        if m.shape != s.shape:
            raise ValueError(f"saliency shape {s.shape} differs from {name} mask shape {m.shape}")
        m = m.ravel()
        roi_n = int(m.sum())
        out: dict[str, float] = {"roi_fraction": roi_n / n}
        undefined = roi_n == 0 or total <= 0
        out["mass"] = float("nan") if undefined else float(flat[m].sum() / total)
        for k in ks:
            key = _k_name(k)
            if undefined:
                out[f"top{key}"] = out[f"dice{key}"] = float("nan")
                continue
            nk = len(tops[k])
            inter = int(m[tops[k]].sum())
            out[f"top{key}"] = inter / nk
            out[f"dice{key}"] = 2.0 * inter / (nk + roi_n)
        out["enrichment"] = float("nan") if undefined else out["mass"] / out["roi_fraction"]
        result[name] = out
    return result


# --------------------------------------------------------------------------- paired comparison
def _pick(table: pd.DataFrame, name: str, metric: str, region: str, target: str, method: str) -> pd.DataFrame:
    """One metric per knee (index case_id) with its subject_id when the table has one."""
    for col in ("case_id", "region", "target", "method", metric):
        if col not in table.columns:
            raise ValueError(f"{name}: missing column {col!r}")
    sel = table[(table["region"] == region) & (table["target"] == target) & (table["method"] == method)]
    if sel.empty:
        raise ValueError(f"{name}: no rows with region={region!r}, target={target!r}, method={method!r}")
    if sel["case_id"].duplicated().any():
        dup = sel.loc[sel["case_id"].duplicated(), "case_id"].iloc[0]
        raise ValueError(f"{name}: case_id {dup!r} appears twice for region={region!r}, target={target!r}")
    out = pd.DataFrame({"value": sel[metric].astype(float).to_numpy()}, index=sel["case_id"].astype(str).to_numpy())
    if "subject_id" in sel.columns:
        out["subject_id"] = sel["subject_id"].astype(str).to_numpy()
    return out


def _subjects_of(both: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame,
                 subjects: Mapping[str, str] | pd.Series | None) -> np.ndarray:
    """The subject of every matched knee: from ``subjects`` if given, else the tables' subject_id."""
    if subjects is not None:
        lookup = {str(k): str(v) for k, v in dict(subjects).items()}
        missing = [c for c in both.index if c not in lookup]
        if missing:
            raise ValueError(f"subjects: no subject for case_id {missing[0]!r}")
        return np.array([lookup[c] for c in both.index], dtype=str)
    for name, t in (("table_a", a), ("table_b", b)):
        if "subject_id" not in t.columns:
            raise ValueError(f"{name}: no 'subject_id' column; pass subjects= (case_id -> subject_id) "
                             "so that both knees of a subject are resampled together")
    sa, sb = a.loc[both.index, "subject_id"], b.loc[both.index, "subject_id"]
    if not (sa == sb).all():
        bad = both.index[(sa != sb).to_numpy()][0]
        raise ValueError(f"table_a and table_b disagree on the subject of case_id {bad!r}")
    return sa.to_numpy(dtype=str)


def paired_overlap(
    table_a: pd.DataFrame,
    table_b: pd.DataFrame,
    metric: str,
    region: str,
    target: str,
    method: str,
    n_boot: int = 10_000,
    seed: int = 0,
    ci: float = 0.95,
    subjects: Mapping[str, str] | pd.Series | None = None,
) -> pd.DataFrame:
    """Paired comparison of one overlap metric over the same knees (e.g. dual vs single): the
    reference study's knee-level protocol, kept to reproduce it. It is not a comparison under the
    book's decision rule (knees inside one model pair are not independent replications of the
    training); claim 3 pairs run-level enrichment by seed
    (:func:`oaprobe.report.saliency.saliency_run_table`).

    Knees are matched by ``case_id``; knees with a NaN in either table are dropped. The
    difference ``a - b`` is averaged over knees. Its percentile bootstrap CI resamples
    SUBJECTS with replacement (both knees of a subject together, as every paired test of
    :mod:`oaprobe.analysis.paired` does; :func:`~oaprobe.analysis.metrics.resample_groups`),
    because a subject's two knees share anatomy and are not independent. For the same reason
    the Wilcoxon signed-rank test (scipy, two-sided) runs over the subjects' mean differences,
    one value per subject (with one knee per subject this is the test over knees).

    Args:
        table_a, table_b: saliency tables (``case_id, region, target, method, <metric>``, and
            ``subject_id`` unless ``subjects`` is given).
        metric, region, target, method: the rows and column compared.
        n_boot, seed, ci: bootstrap resamples, their seed and the CI level.
        subjects: case_id -> subject_id; overrides the tables' ``subject_id`` columns.

    Returns:
        One row: ``metric, region, target, method, n, n_subjects, mean_a, mean_b, mean_diff,
        ci_low, ci_high, wilcoxon_stat, p_value``.
    """
    a, b = (_pick(t, name, metric, region, target, method) for t, name in ((table_a, "table_a"), (table_b, "table_b")))
    both = pd.concat([a["value"].rename("a"), b["value"].rename("b")], axis=1, join="inner").dropna()
    groups = _subjects_of(both, a, b, subjects)
    codes, uniq = pd.factorize(groups, sort=True)
    diff = (both["a"] - both["b"]).to_numpy()
    n, n_sub = len(diff), len(uniq)
    row: dict[str, Any] = {"metric": metric, "region": region, "target": target, "method": method,
                           "n": n, "n_subjects": n_sub}
    row["mean_a"] = float(both["a"].mean()) if n else float("nan")
    row["mean_b"] = float(both["b"].mean()) if n else float("nan")
    row["mean_diff"] = float(diff.mean()) if n else float("nan")
    row["ci_low"] = row["ci_high"] = row["wilcoxon_stat"] = row["p_value"] = float("nan")
    if n_sub >= 2:
        draws = np.concatenate(list(resample_groups(n_sub, n_boot, seed)))
        weights = group_weights(draws, codes, n_sub)
        boots = (weights @ diff) / weights.sum(axis=1)
        alpha = (1.0 - ci) / 2.0
        row["ci_low"], row["ci_high"] = (float(q) for q in np.quantile(boots, [alpha, 1.0 - alpha]))
        per_subject = np.bincount(codes, weights=diff) / np.bincount(codes)
        if np.all(per_subject == 0):
            row["wilcoxon_stat"], row["p_value"] = 0.0, 1.0
        else:
            res = wilcoxon(per_subject)
            row["wilcoxon_stat"], row["p_value"] = float(res.statistic), float(res.pvalue)
    return pd.DataFrame([row])
