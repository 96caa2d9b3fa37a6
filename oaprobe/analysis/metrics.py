"""OA and KL test metrics from a prediction table, and subject-level bootstrap CIs.

Point metrics call scikit-learn. Bootstrap distributions are computed *vectorised over
resamples*: a resample is a vector of multiplicities (how often each knee was drawn), so every
metric becomes a weighted count (confusion counts by matrix products, ROC-AUC by a weighted
Mann-Whitney sum over tied-score groups). This gives the same numbers as calling scikit-learn
on each materialised resample (``method="loop"``, kept for checking) hundreds of times faster.

Metric names used across the package (``METRICS``): ``oa_accuracy, oa_roc_auc,
oa_average_precision, oa_precision, oa_recall, oa_specificity, oa_f1, oa_balanced_accuracy,
kl_accuracy, kl_balanced_accuracy, kl_precision_macro, kl_recall_macro, kl_f1_macro,
kl_auc_macro, kl_qwk, kl_mae``.

Example:
    >>> import numpy as np
    >>> m = oa_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]))
    >>> round(m["roc_auc"], 2), m["accuracy"]
    (0.75, 0.5)
    >>> k = kl_metrics(np.array([0, 1, 2]), np.eye(5)[[0, 1, 1]])
    >>> k["never_predicted"], round(k["mae"], 3)
    ((2, 3, 4), 0.333)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from tqdm.auto import tqdm

from oaprobe.facts import KL_GRADES

P_KL_COLUMNS = tuple(f"p_kl{k}" for k in KL_GRADES)
OA_KEYS = (
    "accuracy", "roc_auc", "average_precision", "precision", "recall", "specificity", "f1",
    "balanced_accuracy",
)
KL_KEYS = (
    "accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "auc_macro",
    "qwk", "mae",
)
METRICS = tuple(f"oa_{k}" for k in OA_KEYS) + tuple(f"kl_{k}" for k in KL_KEYS)
REQUIRED_COLUMNS = ("case_id", "subject_id", "split", "kl", "oa", "p_oa")


class MetricsError(ValueError):
    """A prediction table or a metric request is invalid; the message says what was expected."""


# ---------------------------------------------------------------------------------------------
# point metrics (scikit-learn)
# ---------------------------------------------------------------------------------------------
def _two_classes(y: np.ndarray) -> bool:
    return np.unique(y).size == 2


_OA_FUNCS = {
    "accuracy": lambda y, p, pred: accuracy_score(y, pred),
    "roc_auc": lambda y, p, pred: roc_auc_score(y, p) if _two_classes(y) else np.nan,
    "average_precision": (
        lambda y, p, pred: average_precision_score(y, p) if _two_classes(y) else np.nan
    ),
    "precision": lambda y, p, pred: precision_score(y, pred, zero_division=0),
    "recall": lambda y, p, pred: recall_score(y, pred, zero_division=0),
    "specificity": lambda y, p, pred: recall_score(y, pred, pos_label=0, zero_division=0),
    "f1": lambda y, p, pred: f1_score(y, pred, zero_division=0),
    "balanced_accuracy": lambda y, p, pred: balanced_accuracy_score(y, pred),
}


def _macro_ovr_auc(y: np.ndarray, p_kl: np.ndarray) -> float:
    """Macro one-vs-rest AUC: scikit-learn's when every grade occurs in ``y``; otherwise the
    mean over the grades that occur (scikit-learn would return NaN)."""
    present = np.unique(y)
    if present.size == len(KL_GRADES):
        return float(roc_auc_score(y, p_kl, multi_class="ovr", average="macro", labels=KL_GRADES))
    aucs = [roc_auc_score(y == k, p_kl[:, k]) for k in present if 0 < (y == k).sum() < y.size]
    return float(np.mean(aucs)) if aucs else float("nan")


_KL_FUNCS = {
    "accuracy": lambda y, p, pred: accuracy_score(y, pred),
    "balanced_accuracy": lambda y, p, pred: balanced_accuracy_score(y, pred),
    "precision_macro": lambda y, p, pred: precision_score(y, pred, average="macro",
                                                           zero_division=0),
    "recall_macro": lambda y, p, pred: recall_score(y, pred, average="macro", zero_division=0),
    "f1_macro": lambda y, p, pred: f1_score(y, pred, average="macro", zero_division=0),
    "auc_macro": lambda y, p, pred: _macro_ovr_auc(y, p),
    "qwk": lambda y, p, pred: cohen_kappa_score(y, pred, labels=KL_GRADES, weights="quadratic"),
    "mae": lambda y, p, pred: np.mean(np.abs(y - pred)),
}


def _call(func, y: np.ndarray, p: np.ndarray, pred: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(func(y, p, pred))


def oa_metrics(y: np.ndarray, p_oa: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Binary OA metrics; the predicted label is ``p_oa >= threshold``.

    ROC-AUC and average precision are NaN when ``y`` holds one class only; precision, recall,
    specificity and F1 are 0 when undefined (scikit-learn ``zero_division=0``).
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p_oa, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise MetricsError(f"oa_metrics: y {y.shape} and p_oa {p.shape} must be equal 1-D shapes")
    pred = (p >= threshold).astype(int)
    return {k: _call(f, y, p, pred) for k, f in _OA_FUNCS.items()}


def kl_metrics(y: np.ndarray, p_kl: np.ndarray) -> dict[str, object]:
    """KL-grade metrics; the predicted grade is ``argmax p_kl``.

    Macro precision/recall/F1 average over the grades present in ``y`` or the prediction
    (scikit-learn's default, as in the reference study); macro one-vs-rest AUC over the grades
    present in ``y``; QWK uses all grades 0-4. ``never_predicted`` lists the grades the model
    never outputs: a flag for degenerate outputs.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p_kl, dtype=float)
    if y.ndim != 1 or p.shape != (y.size, len(KL_GRADES)):
        raise MetricsError(f"kl_metrics: expected y (N,) and p_kl (N, 5); got {y.shape}, {p.shape}")
    pred = p.argmax(axis=1)
    out: dict[str, object] = {k: _call(f, y, p, pred) for k, f in _KL_FUNCS.items()}
    out["never_predicted"] = tuple(int(k) for k in KL_GRADES if k not in set(pred.tolist()))
    return out


def confusion(y: np.ndarray, pred: np.ndarray, labels: Sequence[int] | None = None) -> pd.DataFrame:
    """Confusion matrix as a DataFrame: rows ``true`` label, columns ``pred`` label.

    ``labels`` defaults to the sorted union of both; pass ``KL_GRADES`` for a fixed 5x5 table.
    """
    y, pred = np.asarray(y).astype(int), np.asarray(pred).astype(int)
    labels = [int(v) for v in (np.union1d(y, pred) if labels is None else labels)]
    cm = confusion_matrix(y, pred, labels=labels)
    return pd.DataFrame(
        cm, index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="pred")
    )


# ---------------------------------------------------------------------------------------------
# prediction tables
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PredArrays:
    """The arrays one split of a prediction table contributes to the metrics."""

    case_id: np.ndarray
    subject: np.ndarray  # integer subject code per knee, 0..S-1
    y_oa: np.ndarray
    p_oa: np.ndarray
    y_kl: np.ndarray
    p_kl: np.ndarray | None  # (N, 5) or None for single_oa tables

    @property
    def n_subjects(self) -> int:
        return int(self.subject.max()) + 1 if self.subject.size else 0


def pred_arrays(pred_df: pd.DataFrame, split: str | None = "test", truth: str = "kl") -> PredArrays:
    """Validate a predictions.csv table and extract one split's arrays.

    ``truth="kl"`` uses the observed ``kl``/``oa`` columns; ``truth="kl_clean"`` the clean
    synthetic grade, with OA truth ``kl_clean >= 2``. ``split=None`` keeps every row.
    """
    if truth not in ("kl", "kl_clean"):
        raise MetricsError(f"truth = {truth!r}; expected 'kl' or 'kl_clean'")
    missing = [c for c in REQUIRED_COLUMNS if c not in pred_df.columns]
    if truth == "kl_clean" and "kl_clean" not in pred_df.columns:
        missing.append("kl_clean")
    if missing:
        raise MetricsError(f"prediction table lacks columns {missing}; has {list(pred_df.columns)}")
    df = pred_df if split is None else pred_df[pred_df["split"] == split]
    if df.empty:
        raise MetricsError(
            f"prediction table has no rows with split == {split!r} "
            f"(splits present: {sorted(pred_df['split'].astype(str).unique())})"
        )
    dup = df["case_id"][df["case_id"].duplicated()]
    if len(dup):
        raise MetricsError(f"prediction table: duplicate case_id {dup.iloc[0]!r}")
    kl = pd.to_numeric(df[truth], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isin(kl, KL_GRADES)
    if bad.any():
        row = df["case_id"].iloc[int(np.flatnonzero(bad)[0])]
        raise MetricsError(f"prediction table: case_id {row!r} has {truth} outside 0-4 / empty")
    kl = kl.astype(int)
    y_oa = (kl >= 2).astype(int) if truth == "kl_clean" else df["oa"].to_numpy().astype(int)
    if truth == "kl" and not np.array_equal(y_oa, (kl >= 2).astype(int)):
        row = df["case_id"].iloc[int(np.flatnonzero(y_oa != (kl >= 2))[0])]
        raise MetricsError(f"prediction table: case_id {row!r} has oa inconsistent with kl >= 2")
    p_oa = pd.to_numeric(df["p_oa"], errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(p_oa) & (p_oa >= 0) & (p_oa <= 1))
    if bad.any():
        row = df["case_id"].iloc[int(np.flatnonzero(bad)[0])]
        raise MetricsError(f"prediction table: case_id {row!r} has p_oa outside [0, 1]")
    p_kl = None
    if all(c in df.columns for c in P_KL_COLUMNS):
        block = df[list(P_KL_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        if np.isfinite(block).any():
            bad = np.abs(block.sum(axis=1) - 1.0) > 1e-4
            bad |= ~np.isfinite(block).all(axis=1)
            if bad.any():
                row = df["case_id"].iloc[int(np.flatnonzero(bad)[0])]
                raise MetricsError(
                    f"prediction table: case_id {row!r}: p_kl0..p_kl4 must be finite and sum to 1"
                )
            p_kl = block
    subject = pd.factorize(df["subject_id"].astype(str), sort=False)[0]
    return PredArrays(
        case_id=df["case_id"].astype(str).to_numpy(), subject=subject.astype(np.int64),
        y_oa=y_oa, p_oa=p_oa, y_kl=kl, p_kl=p_kl,
    )


def prediction_metrics(
    pred_df: pd.DataFrame, split: str | None = "test", truth: str = "kl", threshold: float = 0.5
) -> dict[str, object]:
    """All OA (``oa_*``) and KL (``kl_*``) metrics of one split, plus ``n`` and ``n_subjects``.

    KL metrics are skipped for tables without KL probabilities (single_oa runs).
    """
    a = pred_arrays(pred_df, split, truth)
    out: dict[str, object] = {"n": int(a.y_oa.size), "n_subjects": a.n_subjects}
    out.update({f"oa_{k}": v for k, v in oa_metrics(a.y_oa, a.p_oa, threshold).items()})
    if a.p_kl is not None:
        out.update({f"kl_{k}": v for k, v in kl_metrics(a.y_kl, a.p_kl).items()})
    return out


# ---------------------------------------------------------------------------------------------
# vectorised metrics over resamples (rows of a multiplicity matrix W, shape (B, N))
# ---------------------------------------------------------------------------------------------
def _div(num: np.ndarray, den: np.ndarray, fill: float = 0.0) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, fill, dtype=float)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _weights_per_score(y: np.ndarray, s: np.ndarray, w: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight of each distinct score, in ``order`` (one column per score).

    Tied scores are pooled with ``reduceat``; without ties (continuous probabilities, the usual
    case) each knee is its own score and the pooling, 40% of a paired bootstrap's time, is skipped.
    ``neg = w - pos`` is exact: each entry of ``pos`` is its weight or 0."""
    ss, yy = s[order], y[order].astype(bool)
    ws = w[:, order]
    pos = ws * yy
    neg = ws - pos
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    if starts.size == ss.size:
        return pos, neg
    return np.add.reduceat(pos, starts, axis=1), np.add.reduceat(neg, starts, axis=1)


def _weighted_auc(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC-AUC per row of ``w``: weighted Mann-Whitney with ties counted 1/2 (NaN if one class)."""
    pos, neg = _weights_per_score(y, s, w, np.argsort(s, kind="mergesort"))
    neg_below = np.cumsum(neg, axis=1) - neg
    num = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    return _div(num, pos.sum(axis=1) * neg.sum(axis=1), np.nan)


def _weighted_ap(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average precision per row of ``w`` (scikit-learn's step sum over distinct thresholds)."""
    pos, neg = _weights_per_score(y, s, w, np.argsort(-s, kind="mergesort"))
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    prec = _div(tp, tp + fp)
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    ap = _div((pos * prec).sum(axis=1), total_pos, np.nan)
    ap[(total_pos == 0) | (total_neg == 0)] = np.nan
    return ap


def _oa_resampled(name: str, a: PredArrays, w: np.ndarray, threshold: float) -> np.ndarray:
    if name == "roc_auc":
        return _weighted_auc(a.y_oa, a.p_oa, w)
    if name == "average_precision":
        return _weighted_ap(a.y_oa, a.p_oa, w)
    y = a.y_oa.astype(bool)
    pred = a.p_oa >= threshold
    tp, fp = w @ (y & pred), w @ (~y & pred)
    fn, tn = w @ (y & ~pred), w @ (~y & ~pred)
    recall, spec = _div(tp, tp + fn), _div(tn, tn + fp)
    if name == "accuracy":
        return _div(tp + tn, tp + tn + fp + fn, np.nan)
    if name == "precision":
        return _div(tp, tp + fp)
    if name == "recall":
        return recall
    if name == "specificity":
        return spec
    if name == "f1":
        return _div(2 * tp, 2 * tp + fp + fn)
    if name == "balanced_accuracy":
        has_pos, has_neg = (tp + fn) > 0, (tn + fp) > 0
        return _div(recall * has_pos + spec * has_neg, has_pos * 1.0 + has_neg, np.nan)
    raise MetricsError(f"unknown OA metric {name!r}; expected one of {OA_KEYS}")


def _kl_resampled(name: str, a: PredArrays, w: np.ndarray) -> np.ndarray:
    if a.p_kl is None:
        raise MetricsError(f"metric kl_{name} needs p_kl0..p_kl4, which this table lacks")
    if name == "auc_macro":
        aucs = np.stack(
            [_weighted_auc(a.y_kl == k, a.p_kl[:, k], w) for k in KL_GRADES], axis=1
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(aucs, axis=1)
    eye = np.eye(len(KL_GRADES))
    pred = a.p_kl.argmax(axis=1)
    oh_true, oh_pred = eye[a.y_kl], eye[pred]
    n = w.sum(axis=1)
    if name == "mae":
        return _div(w @ np.abs(a.y_kl - pred), n, np.nan)
    if name == "qwk":
        cm = np.einsum("bn,ni,nj->bij", w, oh_true, oh_pred)
        grades = np.arange(len(KL_GRADES))
        wq = (grades[:, None] - grades[None, :]) ** 2.0
        expected = np.einsum("bi,bj->bij", cm.sum(axis=2), cm.sum(axis=1)) / n[:, None, None]
        return 1.0 - _div((wq * cm).sum(axis=(1, 2)), (wq * expected).sum(axis=(1, 2)), np.nan)
    t, pr, tp = w @ oh_true, w @ oh_pred, w @ (oh_true * oh_pred)
    if name == "accuracy":
        return _div(tp.sum(axis=1), n, np.nan)
    if name == "balanced_accuracy":
        has = t > 0
        return _div((_div(tp, t) * has).sum(axis=1), has.sum(axis=1), np.nan)
    per_class = {
        "precision_macro": _div(tp, pr),
        "recall_macro": _div(tp, t),
        "f1_macro": _div(2 * tp, t + pr),
    }
    if name not in per_class:
        raise MetricsError(f"unknown KL metric {name!r}; expected one of {KL_KEYS}")
    present = (t + pr) > 0
    return _div((per_class[name] * present).sum(axis=1), present.sum(axis=1), np.nan)


def check_metric(metric: str) -> tuple[str, str]:
    """Split a known metric name into ``(task, name)``; unknown names raise MetricsError."""
    if metric not in METRICS:
        raise MetricsError(f"unknown metric {metric!r}; expected one of {list(METRICS)}")
    task, name = metric.split("_", 1)
    return task, name


def metric_on_weights(
    metric: str, a: PredArrays, w: np.ndarray, threshold: float = 0.5
) -> np.ndarray:
    """Vectorised ``metric`` for each row of the multiplicity matrix ``w`` (B, N)."""
    task, name = check_metric(metric)
    w = np.atleast_2d(np.asarray(w, dtype=float))
    if task == "oa":
        return _oa_resampled(name, a, w, threshold)
    return _kl_resampled(name, a, w)


def metric_on_rows(metric: str, a: PredArrays, rows: np.ndarray, threshold: float = 0.5) -> float:
    """``metric`` by scikit-learn on the knees ``rows`` (a materialised resample)."""
    task, name = check_metric(metric)
    if task == "oa":
        p = a.p_oa[rows]
        return _call(_OA_FUNCS[name], a.y_oa[rows], p, (p >= threshold).astype(int))
    if a.p_kl is None:
        raise MetricsError(f"metric {metric} needs p_kl0..p_kl4, which this table lacks")
    p = a.p_kl[rows]
    return _call(_KL_FUNCS[name], a.y_kl[rows], p, p.argmax(axis=1))


def resample_groups(
    n_groups: int, B: int, seed: int | np.random.Generator, chunk: int = 1000
) -> Iterator[np.ndarray]:
    """Yield bootstrap draws of group indices in chunks of shape (<= chunk, n_groups).

    Draws come from ``numpy.random.default_rng(seed)`` (or the Generator passed, which is
    advanced) as ``integers(0, n_groups, size=(m, n_groups))``; the chunk size does not change
    the stream, so every method consuming it sees exactly the same resamples.
    """
    if B < 1 or n_groups < 1:
        raise MetricsError(f"bootstrap needs B >= 1 and >= 1 group; got B={B}, groups={n_groups}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    done = 0
    while done < B:
        m = min(chunk, B - done)
        yield rng.integers(0, n_groups, size=(m, n_groups))
        done += m


def group_weights(draws: np.ndarray, group_of_row: np.ndarray, n_groups: int) -> np.ndarray:
    """Multiplicity of each row (knee) in each resample, from drawn group indices (B, G)."""
    b = draws.shape[0]
    flat = draws + np.arange(b)[:, None] * n_groups
    counts = np.bincount(flat.ravel(), minlength=b * n_groups).reshape(b, n_groups)
    return counts[:, group_of_row].astype(float)


def group_rows(draw: np.ndarray, group_of_row: np.ndarray) -> np.ndarray:
    """Materialise one resample: the row indices of every drawn group, in draw order."""
    members = [np.flatnonzero(group_of_row == g) for g in range(int(group_of_row.max()) + 1)]
    return np.concatenate([members[g] for g in draw])


def bootstrap_distribution(
    arrays: Sequence[PredArrays],
    metrics: Sequence[str],
    B: int,
    seed: int | np.random.Generator,
    *,
    threshold: float = 0.5,
    method: str = "vectorised",
    chunk: int = 1000,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Bootstrap values of each metric for each aligned table: ``{metric: (B, len(arrays))}``.

    All tables share the rows' order and ``subject`` codes (pass one table for a plain CI, two
    for a paired difference). Resamples draw subjects with replacement, both knees together.
    ``method="loop"`` recomputes with scikit-learn on each materialised resample (slow; for
    checking the vectorised path, which gives the same values to ~1e-12).
    """
    if method not in ("vectorised", "loop"):
        raise MetricsError(f"method = {method!r}; expected 'vectorised' or 'loop'")
    ref = arrays[0]
    for other in arrays[1:]:
        if not np.array_equal(other.subject, ref.subject):
            raise MetricsError("bootstrap_distribution: tables are not aligned on the same knees")
    for m in metrics:
        check_metric(m)
    n_groups = ref.n_subjects
    out = {m: np.empty((B, len(arrays))) for m in metrics}
    done = 0
    chunks = resample_groups(n_groups, B, seed, chunk)
    bar = tqdm(total=B, disable=not progress, desc=f"bootstrap ({method})", leave=False)
    for draws in chunks:
        m_rows = draws.shape[0]
        if method == "vectorised":
            w = group_weights(draws, ref.subject, n_groups)
            for m in metrics:
                for j, a in enumerate(arrays):
                    out[m][done:done + m_rows, j] = metric_on_weights(m, a, w, threshold)
        else:
            for i, draw in enumerate(draws):
                rows = group_rows(draw, ref.subject)
                for m in metrics:
                    for j, a in enumerate(arrays):
                        out[m][done + i, j] = metric_on_rows(m, a, rows, threshold)
        done += m_rows
        bar.update(m_rows)
    bar.close()
    return out


def _point(metric: str, a: PredArrays, threshold: float) -> float:
    return metric_on_rows(metric, a, np.arange(a.y_oa.size), threshold)


def _available(a: PredArrays, metrics: Sequence[str] | None) -> list[str]:
    if metrics is None:
        return [m for m in METRICS if m.startswith("oa_") or a.p_kl is not None]
    return list(metrics)


def bootstrap_ci(
    pred_df: pd.DataFrame,
    metric: str | Sequence[str],
    B: int = 2000,
    seed: int = 0,
    groups: str = "subject_id",
    level: float = 0.95,
    *,
    split: str | None = "test",
    truth: str = "kl",
    threshold: float = 0.5,
    progress: bool = False,
) -> pd.DataFrame:
    """Percentile bootstrap CI resampling ``groups`` (subjects: both knees together).

    Returns one row per metric: ``metric, estimate, ci_low, ci_high, level, B, n_valid, n,
    n_subjects``; resamples where the metric is undefined (e.g. one class) are dropped
    and counted out of ``n_valid``.
    """
    if not 0 < level < 1:
        raise MetricsError(f"level = {level}; expected a value in (0, 1)")
    if groups not in pred_df.columns:
        raise MetricsError(f"bootstrap_ci: groups column {groups!r} not in the prediction table")
    df = pred_df.assign(subject_id=pred_df[groups]) if groups != "subject_id" else pred_df
    a = pred_arrays(df, split, truth)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    dist = bootstrap_distribution([a], metrics, B, seed, threshold=threshold, progress=progress)
    q = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
    rows = []
    for m in metrics:
        d = dist[m][:, 0]
        d = d[np.isfinite(d)]
        lo, hi = np.percentile(d, q) if d.size else (np.nan, np.nan)
        rows.append({
            "metric": m, "estimate": _point(m, a, threshold), "ci_low": float(lo),
            "ci_high": float(hi), "level": level, "B": B, "n_valid": int(d.size),
            "n": int(a.y_oa.size), "n_subjects": a.n_subjects,
        })
    return pd.DataFrame(rows)


def metrics_table(
    preds: pd.DataFrame | Mapping[object, pd.DataFrame],
    *,
    key_names: Sequence[str] = ("run",),
    metrics: Sequence[str] | None = None,
    split: str | None = "test",
    truth: str = "kl",
    B: int = 2000,
    seed: int = 0,
    groups: str = "subject_id",
    level: float = 0.95,
    threshold: float = 0.5,
    progress: bool = False,
) -> pd.DataFrame:
    """Tidy table of point estimates and subject-bootstrap CIs for one or many runs.

    ``preds`` is one prediction table or a mapping ``key -> table`` (a tuple key is spread
    over ``key_names``). KL metrics are omitted for tables without KL probabilities.
    Columns: ``*key_names, task, metric, estimate, ci_low, ci_high, level, B, n_valid, n,
    n_subjects``.
    """
    items = {"all": preds}.items() if isinstance(preds, pd.DataFrame) else preds.items()
    frames = []
    for key, df in items:
        keys = key if isinstance(key, tuple) else (key,)
        if len(keys) != len(key_names):
            raise MetricsError(f"metrics_table: key {key!r} does not match key_names {key_names}")
        a = pred_arrays(df, split, truth)
        wanted = [m for m in _available(a, metrics) if m.startswith("oa_") or a.p_kl is not None]
        t = bootstrap_ci(
            df, wanted, B=B, seed=seed, groups=groups, level=level, split=split, truth=truth,
            threshold=threshold, progress=progress,
        )
        t.insert(0, "task", [m.split("_", 1)[0].upper() for m in t["metric"]])
        for name, value in reversed(list(zip(key_names, keys))):
            t.insert(0, name, value)
        frames.append(t)
    return pd.concat(frames, ignore_index=True)
