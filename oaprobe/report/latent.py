"""The latent chapter's findings: claim 2 decided by the rule, then each mode's level on the axes.

The verdicts are :func:`oaprobe.report.claims.latent_verdicts` (the answer page's, from the same
function): per backbone, dual against each single-task baseline over the paired seeds. The levels
(means over backbones and seeds) describe; they decide nothing.
"""

from __future__ import annotations

import pandas as pd

from oaprobe.analysis.latent import embedding_set, project, umap_embedding
from oaprobe.report.answer import describe_verdict
from oaprobe.report.claims import latent_verdicts
from oaprobe.report.display import MODE_NAMES
from oaprobe.report.study import Study, mean_sd
from oaprobe.training.runs import Run

LATENT_COLUMNS = (
    "abs_spearman_PC1_KL", "abs_spearman_PC1_OA", "EVR_PC1", "OA_probe_AUROC_test", "centroid_kendall_tau",
    "abs_spearman_PC1_KLclean", "abs_spearman_PC1_OAclean", "OA_probe_AUROC_test_clean", "centroid_kendall_tau_clean",
)


def _by_mode(t: pd.DataFrame, col: str) -> str:
    means = t.groupby("mode", sort=False)[col].mean()
    return ", ".join(f"{MODE_NAMES.get(m, m)} {v:.3f}" for m, v in means.items())


def latent_findings(study, lat: pd.DataFrame) -> list[str]:
    """The chapter's opening bullets: claim 2's primary verdicts against the main truth, then the
    levels against the clean grade (PCA) and on the supervised LDA axis."""
    if not len(lat):
        return []
    truth = study.main_truth
    verdicts = latent_verdicts(study, truth, lat[lat["method"] == "pca"])
    findings = [describe_verdict(r) for _, r in verdicts[verdicts["role"] == "primary"].iterrows()]
    pca, lda = (lat[lat["method"] == m] for m in ("pca", "lda"))
    if len(pca) and "abs_spearman_PC1_KLclean" in pca:
        findings.append("Levels, not verdicts: the mean |Spearman(PC1, clean KL)| over backbones and seeds is "
                        f"{_by_mode(pca, 'abs_spearman_PC1_KLclean')}.")
    if len(lda):
        findings.append("On the supervised LDA axis (fitted on the train grades), the mean |Spearman(axis 1, KL)| "
                        f"over backbones and seeds is {_by_mode(lda, 'abs_spearman_PC1_KL')}.")
    return findings


def latent_summary(lat: pd.DataFrame, method: str = "pca") -> pd.DataFrame:
    """The reference's latent columns (and clean-grade ones) as ``mean ± sd`` over seeds."""
    # An explained-variance share is a PCA notion; LDA's first axis has none comparable.
    cols = [c for c in LATENT_COLUMNS if c in lat.columns and not (method != "pca" and c == "EVR_PC1")]
    t = lat[lat["method"] == method]
    g = t.groupby(["backbone", "mode"], sort=False)[cols]
    mean, sd = g.mean(), g.std()
    return pd.DataFrame({c: [mean_sd(m, s) for m, s in zip(mean[c], sd[c])] for c in cols}, index=mean.index)


def _embedding_splits(study: Study, run: Run):
    labels = study.table[["case_id", "kl", "oa"] + (["kl_clean"] if study.has_clean else [])]
    emb = embedding_set(run.embeddings, labels)
    return emb.subset("train"), emb.subset("test")


def projections(study: Study, seed: int, method: str = "pca") -> pd.DataFrame:
    """Test knees on the train-fitted 2-D axes, per run of ``seed``: backbone, mode, axis1, axis2, kl."""
    frames = []
    for r in study.select(seed=seed):
        tr, te = _embedding_splits(study, r)
        _, xy = project(tr.embedding, tr.kl, te.embedding, method=method)
        frames.append(pd.DataFrame({"backbone": r.config.backbone, "mode": r.config.mode, "case_id": te.case_id,
                                    "axis1": xy[:, 0], "axis2": xy[:, 1], "kl": te.kl}))
    return pd.concat(frames, ignore_index=True)


def umap_projections(study: Study, seed: int, umap_seed: int = 0) -> pd.DataFrame:
    """UMAP fitted on train embeddings and applied to test, per run of ``seed`` (plots only)."""
    frames = []
    for r in study.select(seed=seed):
        tr, te = _embedding_splits(study, r)
        _, xy = umap_embedding(tr.embedding, te.embedding, seed=umap_seed)
        frames.append(pd.DataFrame({"backbone": r.config.backbone, "mode": r.config.mode, "case_id": te.case_id,
                                    "umap1": xy[:, 0], "umap2": xy[:, 1], "kl": te.kl}))
    return pd.concat(frames, ignore_index=True)
