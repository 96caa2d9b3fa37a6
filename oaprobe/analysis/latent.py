"""Latent severity-axis geometry of a run's penultimate embeddings.

The reference protocol (train-fit, test-evaluate): a ``StandardScaler`` and ``PCA(2)`` are
fitted on the TRAIN embeddings only; the test embeddings are projected with them, and on the
test knees we report |Spearman(PC1, KL)|, |Spearman(PC1, OA)|, the explained-variance ratio of
PC1 and the test AUROC of a one-dimensional logistic OA probe on PC1 fitted on train. Column
names follow the reference's ``severity_axis_trainfit_summary.csv``.

Beyond it: the same correlations against the clean grade (synthetic cohorts), the ordering of
the grade centroids along the axis (Kendall tau, strict monotonicity), the separation of
adjacent grades (AUROC and standardized mean difference), a supervised axis (shrinkage LDA
fitted on train KL; the SVD solver where the shrunk covariance is still singular, as on a few
knees of a small build) evaluated the same way, and a UMAP fitted on train for plots.

The axis sign is arbitrary for PCA; it is oriented on the TRAIN knees so that larger values
mean higher KL (no test information is used), which makes the ordering statistics signed.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> kl_tr, kl_te = rng.integers(0, 5, 200), rng.integers(0, 5, 80)
    >>> emb = lambda kl: np.outer(kl, np.ones(8)) + 0.1 * rng.normal(size=(len(kl), 8))
    >>> res = severity_axis(emb(kl_tr), kl_tr, emb(kl_te), kl_te)
    >>> round(res["abs_spearman_PC1_KL"], 2), bool(res["centroid_monotone"])
    (0.98, True)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from oaprobe.facts import KL_GRADES, OA_THRESHOLD

Method = Literal["pca", "lda"]
METHODS: tuple[str, ...] = ("pca", "lda")


# --------------------------------------------------------------------------- input checks
def _as_embedding(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D array (knees x features), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise ValueError(f"{name}: non-finite value in row {bad}")
    return arr


def _as_grades(y: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} grades (one per embedding row), got shape {arr.shape}")
    try:
        as_float = arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: grades must be integers 0-4") from err
    if not np.all(np.isfinite(as_float)):
        bad = int(np.argwhere(~np.isfinite(as_float))[0, 0])
        raise ValueError(f"{name}: missing grade in row {bad}; expected an integer 0-4")
    ints = as_float.astype(np.int64)
    if np.any(ints != as_float) or np.any((ints < 0) | (ints > 4)):
        bad = int(np.argwhere((ints != as_float) | (ints < 0) | (ints > 4))[0, 0])
        raise ValueError(f"{name}: row {bad} has grade {arr[bad]!r}; expected an integer 0-4")
    return ints


# --------------------------------------------------------------------------- the fitted axis
@dataclass
class SeverityAxis:
    """A 2-D projection fitted on train embeddings; axis 1 is the severity axis.

    Attributes:
        method: ``"pca"`` (unsupervised, the reference) or ``"lda"`` (shrinkage LDA on train KL).
        scaler: StandardScaler fitted on the train embeddings.
        model: the fitted PCA or LDA.
        sign: +1 or -1, chosen on train so that axis 1 increases with train KL.
        evr1: explained-variance ratio of axis 1 (PCA: of the scaled embedding variance;
            LDA: of the between-class variance).
    """

    method: str
    scaler: StandardScaler
    model: PCA | LinearDiscriminantAnalysis
    sign: float
    evr1: float

    @classmethod
    def fit(cls, train_emb: Any, train_kl: Any, method: Method = "pca", seed: int = 0) -> SeverityAxis:
        """Fit scaler + projection on the train knees only.

        Args:
            train_emb: (N, D) train embeddings.
            train_kl: (N,) train KL grades; used by LDA and to orient the axis.
            method: ``"pca"`` or ``"lda"``.
            seed: random_state for PCA (matters only for its randomized solver).
        """
        if method not in METHODS:
            raise ValueError(f"method = {method!r}; expected one of {list(METHODS)}")
        x = _as_embedding(train_emb, "train_emb")
        y = _as_grades(train_kl, x.shape[0], "train_kl")
        scaler = StandardScaler().fit(x)
        z = scaler.transform(x)
        if method == "pca":
            n_comp = min(2, x.shape[1], x.shape[0])
            model: PCA | LinearDiscriminantAnalysis = PCA(n_components=n_comp, random_state=seed).fit(z)
        else:
            model = _fit_lda(z, y)
        evr1 = float(model.explained_variance_ratio_[0])
        axis = model.transform(z)[:, 0]
        rho = _spearman(axis, y)
        sign = -1.0 if np.isfinite(rho) and rho < 0 else 1.0
        return cls(method=method, scaler=scaler, model=model, sign=sign, evr1=evr1)

    @property
    def solver(self) -> str:
        """How the axis was fitted: ``pca``, ``shrinkage lda`` or the ``svd lda`` fallback."""
        if self.method == "pca":
            return "pca"
        return "shrinkage lda" if self.model.solver == "eigen" else "svd lda"

    def transform(self, emb: Any, name: str = "emb") -> np.ndarray:
        """Project embeddings to (N, 2): column 0 the oriented severity axis, column 1 the next axis.

        A one-component projection (1-D embeddings, or LDA with two grades) gets a zero column 1.
        """
        x = _as_embedding(emb, name)
        if x.shape[1] != self.scaler.n_features_in_:
            raise ValueError(
                f"{name}: {x.shape[1]} features, but the axis was fitted on {self.scaler.n_features_in_}"
            )
        proj = self.model.transform(self.scaler.transform(x))
        proj[:, 0] *= self.sign
        if proj.shape[1] == 1:
            proj = np.column_stack([proj[:, 0], np.zeros(proj.shape[0])])
        return proj


class AxisUnavailable(ValueError):
    """A severity axis cannot be fitted on these train knees; the message says why."""


def _fit_lda(z: np.ndarray, y: np.ndarray) -> LinearDiscriminantAnalysis:
    """Shrinkage LDA; where the within-grade covariance is singular even shrunk (e.g. fewer knees
    than dimensions with dead features), the SVD solver, which drops the null directions.

    Raises:
        AxisUnavailable: fewer than two grades, no more knees than grades, or no spread inside a grade.
    """
    n_classes = len(np.unique(y))
    if n_classes < 2:
        raise AxisUnavailable("LDA needs at least two KL grades among the train knees")
    if len(y) <= n_classes:
        raise AxisUnavailable(f"LDA needs more train knees than grades ({len(y)} knees, {n_classes} grades)")
    within = sum(float(((z[y == g] - z[y == g].mean(axis=0)) ** 2).sum()) for g in np.unique(y))
    if within <= 1e-12 * max(float((z ** 2).sum()), 1e-300):
        raise AxisUnavailable("LDA needs spread inside a grade; every train knee of a grade has the same embedding")
    n_comp = min(2, n_classes - 1, z.shape[1])
    try:
        return LinearDiscriminantAnalysis(n_components=n_comp, solver="eigen", shrinkage="auto").fit(z, y)
    except np.linalg.LinAlgError:
        return LinearDiscriminantAnalysis(n_components=n_comp, solver="svd").fit(z, y)


def project(
    train_emb: Any, train_kl: Any, test_emb: Any, method: Method = "pca", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-knee 2-D coordinates for plots, fitted on train only.

    Returns:
        ``(train_2d, test_2d)``, each (N, 2): axis 1 (oriented so it increases with train KL), axis 2.
    """
    axis = SeverityAxis.fit(train_emb, train_kl, method=method, seed=seed)
    return axis.transform(train_emb, "train_emb"), axis.transform(test_emb, "test_emb")


# --------------------------------------------------------------------------- statistics
def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _auroc(y: np.ndarray, score: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, score))


def _smd(lo: np.ndarray, hi: np.ndarray) -> float:
    """Standardized mean difference (hi - lo) / pooled SD; NaN without enough knees."""
    n1, n2 = len(lo), len(hi)
    if n1 == 0 or n2 == 0 or n1 + n2 < 3:
        return float("nan")
    v1 = float(np.var(lo, ddof=1)) if n1 > 1 else 0.0
    v2 = float(np.var(hi, ddof=1)) if n2 > 1 else 0.0
    pooled = np.sqrt(((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2))
    if pooled == 0:
        return float("nan")
    return float((hi.mean() - lo.mean()) / pooled)


def grade_ordering(axis: np.ndarray, grades: np.ndarray, suffix: str = "") -> dict[str, float | bool]:
    """Ordering of grade centroids along an (oriented) axis, and adjacent-grade separation.

    Args:
        axis: (N,) positions along the severity axis (larger = more severe by orientation).
        grades: (N,) integer grades 0-4.
        suffix: appended to every key (e.g. ``"_clean"``).

    Returns:
        ``centroid_kendall_tau``: Kendall tau between the grades present and their centroid
        positions (+1 = perfectly ordered, -1 = reversed); ``centroid_monotone``: centroids
        strictly increasing with grade; ``n_grades``: grades present; for each adjacent pair
        ``adj_auc_g_h`` (AUROC of the axis for grade h vs g, 0.5 = no separation) and
        ``adj_smd_g_h`` (standardized mean difference); ``adj_auc_mean`` over the pairs present.
    """
    present = [g for g in KL_GRADES if np.any(grades == g)]
    centroids = np.array([axis[grades == g].mean() for g in present])
    out: dict[str, float | bool] = {"n_grades" + suffix: len(present)}
    if len(present) >= 2:
        tau = float(kendalltau(present, centroids).statistic)
        monotone = bool(np.all(np.diff(centroids) > 0))
    else:
        tau, monotone = float("nan"), False
    out["centroid_kendall_tau" + suffix] = tau
    out["centroid_monotone" + suffix] = monotone
    aucs = []
    for g in KL_GRADES[:-1]:
        lo, hi = axis[grades == g], axis[grades == g + 1]
        if len(lo) and len(hi):
            auc = _auroc(np.r_[np.zeros(len(lo)), np.ones(len(hi))], np.r_[lo, hi])
            aucs.append(auc)
        else:
            auc = float("nan")
        out[f"adj_auc_{g}_{g + 1}{suffix}"] = auc
        out[f"adj_smd_{g}_{g + 1}{suffix}"] = _smd(lo, hi)
    out["adj_auc_mean" + suffix] = float(np.mean(aucs)) if aucs else float("nan")
    return out


def severity_axis(
    train_emb: Any,
    train_kl: Any,
    test_emb: Any,
    test_kl: Any,
    test_kl_clean: Any | None = None,
    method: Method = "pca",
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the severity axis on train and evaluate it on test.

    Args:
        train_emb, test_emb: (N, D) embeddings.
        train_kl, test_kl: observed KL grades (OA = KL >= 2).
        test_kl_clean: optional clean grades of the test knees (synthetic cohorts).
        method: ``"pca"`` (the reference) or ``"lda"`` (supervised second view). For LDA the
            "PC1" columns refer to the first discriminant axis.
        seed: PCA random_state.

    Returns:
        The reference columns ``n_train, n_test, D, EVR_PC1, spearman_PC1_KL_signed,
        abs_spearman_PC1_KL, spearman_PC1_OA_signed, abs_spearman_PC1_OA, OA_probe_AUROC_test,
        OA_probe_AUROC_train`` plus ``method``, the ordering statistics of
        :func:`grade_ordering`, and with ``test_kl_clean`` the same against the clean grade
        (``*_KLclean*``, ``*_OAclean*``, suffix ``_clean``). Signed correlations use the
        train-oriented axis (larger = higher train KL).
    """
    x_tr = _as_embedding(train_emb, "train_emb")
    x_te = _as_embedding(test_emb, "test_emb")
    y_tr = _as_grades(train_kl, x_tr.shape[0], "train_kl")
    y_te = _as_grades(test_kl, x_te.shape[0], "test_kl")
    axis = SeverityAxis.fit(x_tr, y_tr, method=method, seed=seed)
    pc1_tr = axis.transform(x_tr, "train_emb")[:, 0]
    pc1_te = axis.transform(x_te, "test_emb")[:, 0]
    oa_tr = (y_tr >= OA_THRESHOLD).astype(int)
    probe = _oa_probe(pc1_tr, oa_tr)
    out: dict[str, Any] = {
        "method": method,
        "solver": axis.solver,
        "n_train": int(x_tr.shape[0]),
        "n_test": int(x_te.shape[0]),
        "D": int(x_tr.shape[1]),
        "EVR_PC1": axis.evr1,
        **_axis_columns(pc1_te, y_te, probe),
        "OA_probe_AUROC_train": _probe_auroc(probe, pc1_tr, oa_tr),
    }
    out.update(grade_ordering(pc1_te, y_te))
    if test_kl_clean is not None:
        y_cl = _as_grades(test_kl_clean, x_te.shape[0], "test_kl_clean")
        out.update(_axis_columns(pc1_te, y_cl, probe, grade="KLclean", label="OAclean", suffix="_clean"))
        out.update(grade_ordering(pc1_te, y_cl, suffix="_clean"))
    return out


def _oa_probe(pc1: np.ndarray, oa: np.ndarray) -> LogisticRegression | None:
    """A logistic OA probe on the axis coordinate, or None (with a warning) if ``oa`` has one class."""
    if len(np.unique(oa)) == 2:
        return LogisticRegression(max_iter=2000).fit(pc1.reshape(-1, 1), oa)
    warnings.warn("train_kl: only one OA class among the train knees; OA probe AUROC is NaN", stacklevel=3)
    return None


def _probe_auroc(probe: LogisticRegression | None, pc1: np.ndarray, oa: np.ndarray) -> float:
    """The OA probe's AUROC on ``(pc1, oa)``; NaN without a probe."""
    return float("nan") if probe is None else _auroc(oa, probe.predict_proba(pc1.reshape(-1, 1))[:, 1])


def _axis_columns(pc1: np.ndarray, kl: np.ndarray, probe: LogisticRegression | None, grade: str = "KL",
                  label: str = "OA", suffix: str = "") -> dict[str, float]:
    """Spearman of the axis with the grade and the OA label (signed and absolute), and the probe's
    test AUROC, under the reference's column names (``grade``/``label``/``suffix`` name the truth)."""
    oa = (kl >= OA_THRESHOLD).astype(int)
    rho_kl, rho_oa = _spearman(pc1, kl), _spearman(pc1, oa)
    return {
        f"spearman_PC1_{grade}_signed": rho_kl,
        f"abs_spearman_PC1_{grade}": abs(rho_kl),
        f"spearman_PC1_{label}_signed": rho_oa,
        f"abs_spearman_PC1_{label}": abs(rho_oa),
        f"OA_probe_AUROC_test{suffix}": _probe_auroc(probe, pc1, oa),
        f"within_class_spearman_{grade}": within_class_order(pc1, kl),
    }


def within_class_order(axis: np.ndarray, grades: np.ndarray) -> float:
    """How well the fine grades are ordered INSIDE each coarse class along an oriented axis: the mean
    of the signed Spearman correlations of the axis with the grade among the no-OA knees (KL 0-1) and
    among the OA knees (KL 2-4), each class counted once (NaN where neither class has two grades).

    A coarse-to-fine organisation keeps this high: an axis that only separates OA from no-OA (grades
    collapsed inside each class) scores about 0 here however high its overall |Spearman| is, and an
    order reversed inside a class scores below 0 (the axis is oriented on the train knees).

    Example:
        >>> kl = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
        >>> within_class_order(kl + 0.0, kl)
        1.0
        >>> round(within_class_order((kl >= 2) + 0.0, kl), 3)  # coarse only: nan inside each class
        nan
    """
    rhos = [_spearman(axis[inside], grades[inside]) for inside in (grades < OA_THRESHOLD, grades >= OA_THRESHOLD)]
    rhos = [r for r in rhos if np.isfinite(r)]
    return float(np.mean(rhos)) if rhos else float("nan")


# --------------------------------------------------------------------------- run folders
@dataclass
class EmbeddingSet:
    """Embeddings of one run joined with the knees' labels.

    Attributes:
        case_id: (N,) knee ids.
        split: (N,) ``train`` / ``val`` / ``test``.
        embedding: (N, D) penultimate features.
        kl: (N,) observed KL grades.
        kl_clean: (N,) clean grades, or None on real data.
    """

    case_id: np.ndarray
    split: np.ndarray
    embedding: np.ndarray
    kl: np.ndarray
    kl_clean: np.ndarray | None = None

    def subset(self, split: str) -> EmbeddingSet:
        """The knees of one split."""
        keep = self.split == split
        return EmbeddingSet(
            self.case_id[keep],
            self.split[keep],
            self.embedding[keep],
            self.kl[keep],
            None if self.kl_clean is None else self.kl_clean[keep],
        )


def embedding_set(embeddings: Mapping[str, np.ndarray], labels: pd.DataFrame, source: str = "embeddings") -> EmbeddingSet:
    """Join a run's embeddings (``case_id``, ``split``, ``embedding``) with KL labels by ``case_id``.

    Args:
        embeddings: the arrays of ``embeddings.npz`` (e.g. ``Run.embeddings``).
        labels: a table with ``case_id``, ``kl`` and optionally ``kl_clean`` (the manifest:
            train knees are not in ``predictions.csv``).
        source: named in error messages.

    Raises:
        ValueError: missing keys/columns, inconsistent lengths, or a knee without a label (named).
    """
    missing = {"case_id", "split", "embedding"} - set(embeddings)
    if missing:
        raise ValueError(f"{source}: missing key(s) {sorted(missing)}; expected case_id, split, embedding")
    case_id = np.asarray(embeddings["case_id"]).astype(str)
    split = np.asarray(embeddings["split"]).astype(str)
    emb = np.asarray(embeddings["embedding"], dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(case_id) or len(split) != len(case_id):
        raise ValueError(
            f"{source}: embedding shape {emb.shape}, {len(case_id)} case ids, {len(split)} splits; expected N x D and N"
        )
    for col in ("case_id", "kl"):
        if col not in labels.columns:
            raise ValueError(f"labels: missing column {col!r}; expected case_id, kl (and optionally kl_clean)")
    table = labels.assign(case_id=labels["case_id"].astype(str)).drop_duplicates("case_id").set_index("case_id")
    unknown = [c for c in case_id if c not in table.index]
    if unknown:
        raise ValueError(f"{source}: case_id {unknown[0]!r} (and {len(unknown) - 1} more) not in the labels table")
    kl = _as_grades(table.loc[case_id, "kl"].to_numpy(), len(case_id), f"labels.kl ({source})")
    kl_clean = None
    if "kl_clean" in table.columns and table.loc[case_id, "kl_clean"].notna().all():
        kl_clean = _as_grades(table.loc[case_id, "kl_clean"].to_numpy(), len(case_id), f"labels.kl_clean ({source})")
    return EmbeddingSet(case_id, split, emb, kl, kl_clean)


def latent_table(
    runs: Sequence[tuple[dict[str, Any], EmbeddingSet]],
    methods: Sequence[str] = ("pca",),
    train_split: str = "train",
    test_split: str = "test",
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (run, method): the run's identifying labels plus :func:`severity_axis`.

    A method that cannot be fitted on a run's train knees (:class:`AxisUnavailable`, e.g. LDA on a
    few knees) gives no row; ``table.attrs["notes"]`` says which and why, once per reason.

    Args:
        runs: pairs of (labels such as ``{"backbone": ..., "mode": ..., "seed": ...}``, embeddings).
        methods: axes to evaluate (``"pca"``, ``"lda"``).
        train_split, test_split: which splits fit and evaluate the axis.
    """
    rows, skipped = [], {}
    for labels, emb in runs:
        tr, te = emb.subset(train_split), emb.subset(test_split)
        if len(tr.case_id) == 0 or len(te.case_id) == 0:
            raise ValueError(f"run {labels}: no {train_split!r} or no {test_split!r} knees in the embeddings")
        for method in methods:
            try:
                res = severity_axis(tr.embedding, tr.kl, te.embedding, te.kl, te.kl_clean, method=method, seed=seed)
            except AxisUnavailable as why:
                skipped.setdefault((method, str(why)), []).append(labels)
                continue
            rows.append({**labels, **res})
    table = pd.DataFrame(rows)
    table.attrs["notes"] = [f"No {method.upper()} axis for {len(who)} of {len(runs)} runs: {why}."
                            for (method, why), who in skipped.items()]
    return table


# --------------------------------------------------------------------------- UMAP (plots only)
def umap_embedding(
    train: Any, test: Any, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """UMAP fitted on standardized train embeddings, applied to test; for plots only.

    The first import of umap-learn and the first fit of a process are slow (numba JIT).

    Returns:
        ``(train_2d, test_2d)``.
    """
    import umap  # deferred: slow import

    x_tr = _as_embedding(train, "train")
    x_te = _as_embedding(test, "test")
    scaler = StandardScaler().fit(x_tr)
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(n_neighbors, x_tr.shape[0] - 1),
        min_dist=min_dist,
        random_state=seed,
        n_jobs=1,
    )
    train_2d = reducer.fit_transform(scaler.transform(x_tr))
    test_2d = reducer.transform(scaler.transform(x_te))
    return np.asarray(train_2d), np.asarray(test_2d)
