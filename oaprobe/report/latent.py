"""The latent chapter's findings: claim 2 decided by the rule, then each mode's level on the axes.

The verdicts are :func:`oaprobe.report.claims.latent_verdicts` (the answer page's, from the same
function): per backbone, dual against each single-task baseline over the paired seeds. The levels
(means over backbones and seeds) describe; they decide nothing.
"""

from __future__ import annotations

import pandas as pd

from oaprobe.report.answer import describe_verdict
from oaprobe.report.claims import latent_verdicts
from oaprobe.report.display import MODE_NAMES


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
