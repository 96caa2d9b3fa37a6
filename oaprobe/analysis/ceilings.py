"""Reference ceilings for the models' test metrics, computed from the cohort alone (no training).

Three yardsticks put a 3D model's numbers in context, each scored with the same functions
(:func:`oaprobe.analysis.metrics.prediction_metrics`) and metric names as a run:

- ``oracle`` (synthetic cohorts only): a multinomial logistic regression on the phantom's
  *planted* pathology amounts per knee (joint space, gap, flattening, depression, sclerosis,
  osteophytes, defects), re-drawn exactly as the cohort builder drew them. It shows what a
  model that measured the pathology perfectly could reach with the observed training labels.
- ``linear_probe``: the same classifier on the input volumes as the models see them,
  block-averaged to a small grid, standardised and reduced by PCA (fit on train). A model
  that does not beat it has learnt little beyond global intensity layout.
- ``noise_ceiling`` (where ``kl_clean`` exists): a perfect clean-grade predictor scored
  against the observed labels; no model can be expected to beat it on an observed-label
  metric at that label noise.

Classifiers are fit on the ``train`` split with the observed ``kl`` (as the models are) and
scored on ``split`` against ``truth="kl"`` and, where the clean grade exists, ``"kl_clean"``.

Example:
    >>> import numpy as np
    >>> x = np.repeat(np.arange(5.0), 4)[:, None]
    >>> p = fit_predict_kl(x, np.repeat(np.arange(5), 4), np.array([[0.0], [4.0]]), C=100.0)
    >>> p.shape, p.argmax(axis=1).tolist()
    ((2, 5), [0, 4])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from oaprobe.analysis.metrics import METRICS, P_KL_COLUMNS, prediction_metrics
from oaprobe.data.cohort import SIDE_CODE
from oaprobe.data.dataset import load_volumes
from oaprobe.data.manifest import read_manifest
from oaprobe.data.phantom import PHANTOM_VERSION, KneeParams, sample_knee_params
from oaprobe.errors import OaprobeError
from oaprobe.facts import N_KL, OA_THRESHOLD

CEILINGS: tuple[str, ...] = ("oracle", "linear_probe", "noise_ceiling")
#: Planted per-knee amounts the oracle sees (medial/lateral where the phantom has both).
ORACLE_FEATURES: tuple[str, ...] = (
    "js_med_mm", "js_lat_mm", "gap_med_mm", "gap_lat_mm", "flattening_med", "flattening_lat",
    "depression_med_mm", "depression_lat_mm", "sclerosis_mm", "sclerosis_strength",
    "n_osteophytes", "osteophyte_radius_sum_mm", "n_defects", "defect_radius_sum_mm",
)
#: Columns of every ceiling table: the ceiling, the truth it is scored against, counts, metrics.
COLUMNS: tuple[str, ...] = ("ceiling", "truth", "n", "n_subjects", *METRICS)
PROBE_GRID, PROBE_COMPONENTS, PROBE_C = 8, 32, 1.0
ORACLE_C = 1.0


# ---------------------------------------------------------------------------------------------
# the classifier and the scoring shared by the oracle and the probe
# ---------------------------------------------------------------------------------------------
def fit_predict_kl(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *,
    n_components: int | None = None, C: float = 1.0, seed: int = 0,
) -> np.ndarray:
    """KL probabilities ``(N_test, 5)`` of a standardised (optionally PCA-reduced) multinomial
    logistic regression fit on ``(x_train, y_train)``; grades absent from training get 0."""
    y = np.asarray(y_train).astype(int)
    if np.unique(y).size < 2:
        raise OaprobeError(f"ceiling classifier: the train split holds KL grade(s) {np.unique(y).tolist()}; "
                           "expected at least two grades")
    steps: list = [StandardScaler()]
    if n_components is not None:
        k = int(min(n_components, x_train.shape[0] - 1, x_train.shape[1]))
        steps.append(PCA(n_components=k, svd_solver="full", random_state=seed))
    steps.append(LogisticRegression(C=C, max_iter=5000, random_state=seed))
    model = make_pipeline(*steps).fit(np.asarray(x_train, float), y)
    p = np.zeros((len(x_test), N_KL))
    p[:, model.classes_] = model.predict_proba(np.asarray(x_test, float))
    return p


def prediction_table(rows: pd.DataFrame, p_kl: np.ndarray) -> pd.DataFrame:
    """A predictions.csv-like table for ``rows``: ids, labels, ``p_oa = sum p(KL >= 2)``, p_kl."""
    p = np.asarray(p_kl, dtype=float)
    out = rows[["case_id", "subject_id", "split", "kl", "oa"]].reset_index(drop=True).copy()
    if _has_clean(rows):
        out["kl_clean"] = rows["kl_clean"].astype(int).to_numpy()
    out["p_oa"] = np.clip(p[:, OA_THRESHOLD:].sum(axis=1), 0.0, 1.0)
    for k, column in enumerate(P_KL_COLUMNS):
        out[column] = p[:, k]
    return out


def _has_clean(rows: pd.DataFrame) -> bool:
    return "kl_clean" in rows.columns and bool(rows["kl_clean"].notna().all())


def score_predictions(pred: pd.DataFrame, ceiling: str, split: str = "test") -> pd.DataFrame:
    """One row per truth (``kl``, and ``kl_clean`` where present) with the run metric columns."""
    truths = ("kl", "kl_clean") if _has_clean(pred) else ("kl",)
    rows = []
    for truth in truths:
        m = prediction_metrics(pred, split=split, truth=truth)
        rows.append({"ceiling": ceiling, "truth": truth, **{c: m[c] for c in COLUMNS[2:]}})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _split_rows(table: pd.DataFrame, split: str) -> pd.DataFrame:
    rows = table[table["split"] == split]
    if rows.empty:
        raise OaprobeError(f"ceilings: the manifest has no knees with split == {split!r}")
    return rows


# ---------------------------------------------------------------------------------------------
# (a) the planted-parameter oracle
# ---------------------------------------------------------------------------------------------
def cohort_seed(manifest: str | Path) -> int:
    """The synthetic cohort's seed from ``cohort.json`` next to the manifest (current phantom)."""
    summary = Path(manifest).resolve().parent / "cohort.json"
    if not summary.is_file():
        raise OaprobeError(f"oracle ceiling: {str(summary)!r} not found; expected a synthetic cohort "
                           "built by `oaprobe cohort` (real data has no planted parameters)")
    info = json.loads(summary.read_text())
    if info.get("phantom_version") != PHANTOM_VERSION:
        raise OaprobeError(f"oracle ceiling: {str(summary)!r} has phantom_version "
                           f"{info.get('phantom_version')!r}; expected {PHANTOM_VERSION!r} (rebuild the cohort)")
    return int(info["config"]["seed"])


def planted_params(subject_id: str, side: str, severity: float, seed: int) -> KneeParams:
    """The phantom parameters the cohort builder drew for one knee (same stream as its render)."""
    try:
        index = int(str(subject_id)[1:])
    except ValueError:
        raise OaprobeError(f"oracle ceiling: subject_id {subject_id!r}; expected a synthetic id like 'S0012'") from None
    rng = np.random.default_rng([seed, 1, index, SIDE_CODE[side]])
    return sample_knee_params(rng, float(severity), side)


def knee_features(params: KneeParams) -> dict[str, float]:
    """The planted pathology amounts of one knee, keyed by :data:`ORACLE_FEATURES`."""
    js = [f + t + g for f, t, g in zip(params.fem_cart_mm, params.tib_cart_mm, params.gap_mm)]
    values = (
        *js, *params.gap_mm, *params.flattening, *params.depression_mm, params.sclerosis_mm,
        params.sclerosis_strength, len(params.osteophytes), sum(o.radius for o in params.osteophytes),
        len(params.defects), sum(d.radius for d in params.defects),
    )
    return {name: float(v) for name, v in zip(ORACLE_FEATURES, values)}


def oracle_features(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Planted features of every knee of a synthetic manifest table, indexed by ``case_id``."""
    if "severity" not in table.columns or table["severity"].isna().any():
        raise OaprobeError("oracle ceiling: the manifest has no (complete) 'severity' column; "
                           "expected a synthetic cohort")
    feats = [
        knee_features(planted_params(r.subject_id, r.side, r.severity, seed))
        for r in table.itertuples(index=False)
    ]
    return pd.DataFrame(feats, index=pd.Index(table["case_id"], name="case_id"), columns=list(ORACLE_FEATURES))


def _oracle_predictions(table: pd.DataFrame, seed: int, split: str) -> pd.DataFrame:
    train, rows = _split_rows(table, "train"), _split_rows(table, split)
    x_train, x_test = oracle_features(train, seed).to_numpy(), oracle_features(rows, seed).to_numpy()
    return prediction_table(rows, fit_predict_kl(x_train, train["kl"].to_numpy(), x_test, C=ORACLE_C))


def oracle_predictions(manifest: str | Path, split: str = "test") -> pd.DataFrame:
    """Oracle predictions of ``split`` (fit on train, observed KL); OaprobeError on real data."""
    return _oracle_predictions(read_manifest(manifest), cohort_seed(manifest), split)


def oracle_ceiling(manifest: str | Path, split: str = "test") -> pd.DataFrame:
    """Metrics of the planted-parameter oracle (see the module docstring)."""
    return score_predictions(oracle_predictions(manifest, split), "oracle", split)


# ---------------------------------------------------------------------------------------------
# (b) the linear probe on the input volumes
# ---------------------------------------------------------------------------------------------
def probe_features(
    rows: pd.DataFrame, input_shape: Sequence[int], cache_dir: Path | None = None, grid: int = PROBE_GRID
) -> np.ndarray:
    """The volumes as the models see them, block-averaged to ``grid^3`` and flattened."""
    volumes = load_volumes(rows, input_shape, cache_dir=cache_dir, progress=False)
    with torch.no_grad():
        pooled = F.adaptive_avg_pool3d(volumes, grid)
    return pooled.reshape(len(rows), -1).numpy().astype(np.float64)


def _probe_predictions(
    table: pd.DataFrame, input_shape: Sequence[int], cache_dir: Path | None, split: str
) -> pd.DataFrame:
    train, rows = _split_rows(table, "train"), _split_rows(table, split)
    x_train = probe_features(train, input_shape, cache_dir)
    x_test = probe_features(rows, input_shape, cache_dir)
    p = fit_predict_kl(x_train, train["kl"].to_numpy(), x_test, n_components=PROBE_COMPONENTS, C=PROBE_C)
    return prediction_table(rows, p)


def linear_probe_predictions(
    manifest: str | Path, input_shape: Sequence[int], cache_dir: Path | None = None, split: str = "test"
) -> pd.DataFrame:
    """Linear-probe predictions of ``split`` (fit on train with the observed KL)."""
    return _probe_predictions(read_manifest(manifest), input_shape, cache_dir, split)


def linear_probe_ceiling(
    manifest: str | Path, input_shape: Sequence[int], cache_dir: Path | None = None, split: str = "test"
) -> pd.DataFrame:
    """Metrics of the linear probe on pooled input volumes (see the module docstring)."""
    return score_predictions(linear_probe_predictions(manifest, input_shape, cache_dir, split), "linear_probe", split)


# ---------------------------------------------------------------------------------------------
# (c) the noise ceiling
# ---------------------------------------------------------------------------------------------
def _noise_predictions(table: pd.DataFrame, split: str) -> pd.DataFrame:
    rows = _split_rows(table, split)
    if not _has_clean(rows):
        raise OaprobeError("noise ceiling: the manifest has no complete 'kl_clean' column; "
                           "expected a synthetic cohort (a clean grade per knee)")
    return prediction_table(rows, np.eye(N_KL)[rows["kl_clean"].astype(int).to_numpy()])


def noise_ceiling(manifest: str | Path, split: str = "test") -> pd.DataFrame:
    """Metrics of a perfect clean-grade predictor against the observed (and clean) labels."""
    return score_predictions(_noise_predictions(read_manifest(manifest), split), "noise_ceiling", split)


# ---------------------------------------------------------------------------------------------
# all three
# ---------------------------------------------------------------------------------------------
def ceilings_table(
    manifest: str | Path, input_shape: Sequence[int], cache_dir: Path | None = None, split: str = "test",
    check_volumes: bool = True,
) -> pd.DataFrame:
    """Every ceiling the manifest allows, one row per ``(ceiling, truth)`` (:data:`COLUMNS`).

    The oracle needs a synthetic cohort (``cohort.json`` and ``severity``) and the noise
    ceiling a clean grade; on real data only the linear probe is computed. ``check_volumes=False``
    skips opening every NIfTI header and mask to validate the manifest (5 s for the default
    cohort), for a caller whose manifest was validated already.
    """
    table = read_manifest(manifest, check_volumes=check_volumes)
    frames = []
    synthetic = (Path(manifest).resolve().parent / "cohort.json").is_file() and "severity" in table.columns
    if synthetic and table["severity"].notna().all():
        frames.append(score_predictions(_oracle_predictions(table, cohort_seed(manifest), split), "oracle", split))
    frames.append(score_predictions(_probe_predictions(table, input_shape, cache_dir, split), "linear_probe", split))
    if _has_clean(_split_rows(table, split)):
        frames.append(score_predictions(_noise_predictions(table, split), "noise_ceiling", split))
    return pd.concat(frames, ignore_index=True)
