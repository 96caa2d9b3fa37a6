"""Known-answer tests for oaprobe.analysis.latent (planted embeddings, sklearn/scipy as reference)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from oaprobe.analysis.latent import (
    AxisUnavailable,
    EmbeddingSet,
    SeverityAxis,
    embedding_set,
    grade_ordering,
    latent_table,
    project,
    severity_axis,
    umap_embedding,
)

DIM = 6


def planted(grades: np.ndarray, rng: np.random.Generator, noise: float = 0.0, direction=None) -> np.ndarray:
    """Embeddings whose dominant direction is the grade: e = 3 * grade * u + isotropic noise.

    With ``noise=0`` every knee of a grade sits on the same point: the axis ties exactly where
    the grade ties, so Spearman is exactly 1.
    """
    u = np.ones(DIM) / np.sqrt(DIM) if direction is None else direction
    return np.outer(grades * 3.0, u) + noise * rng.normal(size=(len(grades), DIM))


@pytest.fixture
def cohort():
    rng = np.random.default_rng(0)
    kl_tr = np.repeat(np.arange(5), 20)
    kl_te = np.repeat(np.arange(5), 8)
    return rng, kl_tr, kl_te


def test_noiseless_ordering_gives_rho_one(cohort):
    rng, kl_tr, kl_te = cohort
    res = severity_axis(planted(kl_tr, rng), kl_tr, planted(kl_te, rng), kl_te)
    assert res["abs_spearman_PC1_KL"] == pytest.approx(1.0)
    assert res["spearman_PC1_KL_signed"] == pytest.approx(1.0)  # oriented on train KL
    assert res["OA_probe_AUROC_test"] == pytest.approx(1.0)
    assert res["EVR_PC1"] > 0.99


def test_reference_columns_present(cohort):
    rng, kl_tr, kl_te = cohort
    res = severity_axis(planted(kl_tr, rng, 1.0), kl_tr, planted(kl_te, rng, 1.0), kl_te)
    # the columns of the reference's severity_axis_trainfit_summary.csv (less backbone, setting)
    expected = ["n_train", "n_test", "D", "EVR_PC1", "spearman_PC1_KL_signed", "abs_spearman_PC1_KL",
                "spearman_PC1_OA_signed", "abs_spearman_PC1_OA", "OA_probe_AUROC_test", "OA_probe_AUROC_train"]
    assert set(expected) <= set(res)


def test_matches_independent_sklearn_pipeline(cohort):
    rng, kl_tr, kl_te = cohort
    x_tr, x_te = planted(kl_tr, rng, 2.0), planted(kl_te, rng, 2.0)
    res = severity_axis(x_tr, kl_tr, x_te, kl_te)
    sc = StandardScaler().fit(x_tr)
    pca = PCA(2, random_state=0).fit(sc.transform(x_tr))
    p_tr, p_te = pca.transform(sc.transform(x_tr))[:, 0], pca.transform(sc.transform(x_te))[:, 0]
    lr = LogisticRegression(max_iter=2000).fit(p_tr.reshape(-1, 1), (kl_tr >= 2).astype(int))
    auc = roc_auc_score(kl_te >= 2, lr.predict_proba(p_te.reshape(-1, 1))[:, 1])
    assert res["abs_spearman_PC1_KL"] == pytest.approx(abs(spearmanr(p_te, kl_te).statistic))
    assert res["abs_spearman_PC1_OA"] == pytest.approx(abs(spearmanr(p_te, kl_te >= 2).statistic))
    assert res["EVR_PC1"] == pytest.approx(pca.explained_variance_ratio_[0])
    assert res["OA_probe_AUROC_test"] == pytest.approx(auc)


def test_axis_fitted_on_train_only(cohort):
    rng, kl_tr, kl_te = cohort
    x_tr, x_te = planted(kl_tr, rng, 0.5), planted(kl_te, rng, 0.5)
    orth = np.zeros(DIM)
    orth[0], orth[1] = 1.0, -1.0  # orthogonal to the grade direction
    far = x_te + 1e4 * orth
    a = severity_axis(x_tr, kl_tr, x_te, kl_te)
    b = severity_axis(x_tr, kl_tr, far, kl_te)
    assert b["abs_spearman_PC1_KL"] == pytest.approx(a["abs_spearman_PC1_KL"])
    assert b["EVR_PC1"] == pytest.approx(a["EVR_PC1"])
    tr_a, _ = project(x_tr, kl_tr, x_te)
    tr_b, _ = project(x_tr, kl_tr, far)
    np.testing.assert_allclose(tr_a, tr_b)


def test_clean_grade_columns(cohort):
    rng, kl_tr, kl_te = cohort
    clean = kl_te.copy()
    noisy = kl_te.copy()
    noisy[::3] = np.clip(noisy[::3] + 1, 0, 4)  # observed grades shifted: clean stays perfectly ordered
    res = severity_axis(planted(kl_tr, rng), kl_tr, planted(clean, rng), noisy, test_kl_clean=clean)
    assert res["abs_spearman_PC1_KLclean"] == pytest.approx(1.0)
    assert res["abs_spearman_PC1_KL"] < 1.0
    assert res["centroid_monotone_clean"] is True


def test_monotone_true_on_ordered_centroids():
    grades = np.repeat(np.arange(5), 4)
    axis = grades + np.tile([-0.1, 0.0, 0.05, 0.1], 5)
    out = grade_ordering(axis, grades)
    assert out["centroid_monotone"] is True
    assert out["centroid_kendall_tau"] == pytest.approx(1.0)
    assert out["adj_auc_0_1"] == pytest.approx(1.0)


def test_monotone_false_when_two_grades_swap():
    grades = np.repeat(np.arange(5), 4)
    pos = np.array([0.0, 1.0, 3.0, 2.0, 4.0])  # grade 2 sits beyond grade 3
    axis = pos[grades] + np.tile([-0.1, 0.0, 0.05, 0.1], 5)
    out = grade_ordering(axis, grades)
    assert out["centroid_monotone"] is False
    assert out["centroid_kendall_tau"] == pytest.approx(0.8)  # one discordant pair of 10
    assert out["adj_auc_2_3"] == pytest.approx(0.0)


def test_adjacent_smd_known_answer():
    grades = np.array([0, 0, 0, 1, 1, 1])
    axis = np.array([0.0, 1.0, 2.0, 2.0, 3.0, 4.0])  # means 1 and 3, pooled SD 1
    out = grade_ordering(axis, grades)
    assert out["adj_smd_0_1"] == pytest.approx(2.0)
    assert np.isnan(out["adj_smd_1_2"]) and np.isnan(out["adj_auc_1_2"])
    assert out["n_grades"] == 2


def test_lda_axis_finds_grade_direction_pca_misses(cohort):
    rng, kl_tr, kl_te = cohort
    # a large nuisance direction dominates variance; the grade lives in a small one
    grade_dir = np.zeros(DIM)
    grade_dir[0] = 1.0

    def emb(kl):
        x = np.outer(kl * 0.3, grade_dir) + 0.05 * rng.normal(size=(len(kl), DIM))
        x[:, 1] = 10 * rng.normal(size=len(kl))
        x[:, 2] = x[:, 1] + 0.1 * rng.normal(size=len(kl))  # correlated nuisance pair -> PC1
        return x

    x_tr, x_te = emb(kl_tr), emb(kl_te)
    pca = severity_axis(x_tr, kl_tr, x_te, kl_te, method="pca")
    lda = severity_axis(x_tr, kl_tr, x_te, kl_te, method="lda")
    assert lda["abs_spearman_PC1_KL"] > 0.9
    assert pca["abs_spearman_PC1_KL"] < 0.5
    assert lda["method"] == "lda"


def test_lda_on_degenerate_embeddings_is_named_unavailable(cohort):
    """Every knee of a grade on one point: no within-grade spread, so no discriminant to fit."""
    rng, kl_tr, kl_te = cohort
    with pytest.raises(AxisUnavailable, match="spread inside a grade"):
        severity_axis(planted(kl_tr, rng), kl_tr, planted(kl_te, rng), kl_te, method="lda")
    with pytest.raises(AxisUnavailable, match="more train knees than grades"):
        SeverityAxis.fit(np.random.default_rng(0).normal(size=(3, 8)), [0, 1, 2], method="lda")


def test_lda_falls_back_to_svd_where_shrinkage_is_singular():
    """Six train knees, 16 dimensions of which 12 are dead (a small real-data build): shrinkage LDA's
    within-grade covariance is singular; the SVD solver still finds the planted grade direction."""
    rng = np.random.default_rng(0)
    kl_tr, kl_te = np.array([0, 1, 2, 0, 1, 2]), np.array([0, 1, 2, 2, 1, 0, 2])

    def emb(kl):
        x = np.zeros((len(kl), 16))
        x[:, 12] = kl + 0.05 * rng.normal(size=len(kl))
        x[:, 13:] = rng.normal(size=(len(kl), 3))
        return x

    x_tr = emb(kl_tr)
    with pytest.raises(np.linalg.LinAlgError):
        LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(StandardScaler().fit_transform(x_tr), kl_tr)
    axis = SeverityAxis.fit(x_tr, kl_tr, method="lda")
    assert axis.solver == "svd lda"
    res = severity_axis(x_tr, kl_tr, emb(kl_te), kl_te, method="lda")
    assert res["solver"] == "svd lda" and res["spearman_PC1_KL_signed"] > 0.9


def test_latent_table_notes_a_method_it_could_not_fit(cohort):
    rng, kl_tr, kl_te = cohort
    kl = np.r_[kl_tr, kl_te]
    split = np.array(["train"] * len(kl_tr) + ["test"] * len(kl_te))
    flat = EmbeddingSet(np.arange(len(kl)).astype(str), split, planted(kl, rng), kl)
    table = latent_table([({"seed": 0}, flat)], methods=("pca", "lda"))
    assert list(table["method"]) == ["pca"]
    assert table.attrs["notes"] == ["No LDA axis for 1 of 1 runs: LDA needs spread inside a grade; every train knee "
                                    "of a grade has the same embedding."]


def test_bad_grades_are_named():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="train_kl: row 2"):
        SeverityAxis.fit(x, [0, 1, 7])
    with pytest.raises(ValueError, match="test_emb"):
        severity_axis(np.eye(4), [0, 1, 2, 3], np.ones((2, 3)), [0, 1])


def test_latent_table_from_embedding_arrays(tmp_path, cohort):
    rng, kl_tr, kl_te = cohort
    kl = np.r_[kl_tr, kl_te]
    ids = np.array([f"k{i:03d}" for i in range(len(kl))])
    split = np.array(["train"] * len(kl_tr) + ["test"] * len(kl_te))
    np.savez(tmp_path / "embeddings.npz", case_id=ids, split=split, embedding=planted(kl, rng, 0.5).astype(np.float32))
    labels = pd.DataFrame({"case_id": ids, "kl": kl, "kl_clean": kl})
    emb = embedding_set(dict(np.load(tmp_path / "embeddings.npz")), labels)
    assert isinstance(emb, EmbeddingSet) and emb.kl_clean is not None
    table = latent_table([({"backbone": "toy", "mode": "dual"}, emb)], methods=("pca", "lda"))
    assert list(table["method"]) == ["pca", "lda"]
    assert (table["backbone"] == "toy").all()
    direct = severity_axis(emb.embedding[: len(kl_tr)], kl_tr, emb.embedding[len(kl_tr) :], kl_te, kl_te)
    assert table["abs_spearman_PC1_KL"].iloc[0] == pytest.approx(direct["abs_spearman_PC1_KL"])
    with pytest.raises(ValueError, match="k000"):
        embedding_set(dict(np.load(tmp_path / "embeddings.npz")), labels.iloc[1:])
    same = embedding_set(dict(np.load(tmp_path / "embeddings.npz")), labels.drop(columns="kl_clean"))
    assert same.kl_clean is None and (same.kl == emb.kl).all()


@pytest.mark.slow
def test_umap_shapes_and_determinism(cohort):
    rng, kl_tr, kl_te = cohort
    x_tr, x_te = planted(kl_tr, rng, 0.5), planted(kl_te, rng, 0.5)
    a_tr, a_te = umap_embedding(x_tr, x_te, seed=0)
    b_tr, b_te = umap_embedding(x_tr, x_te, seed=0)
    assert a_tr.shape == (len(kl_tr), 2) and a_te.shape == (len(kl_te), 2)
    np.testing.assert_allclose(a_te, b_te)
