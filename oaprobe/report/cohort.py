"""The cohort as the book shows it: its table, label agreement, split counts and example slices.

Example:
    >>> human_range_verdict(0.6)
    'inside the range reported between human KL readers (κ 0.46–0.85)'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from oaprobe import __version__
from oaprobe.config import get_preset
from oaprobe.facts import CARTILAGE_LABELS, KL_GRADES

#: Agreement between human KL readers reported in the literature (PAPER.md, field facts).
HUMAN_KAPPA_RANGE = (0.46, 0.85)


def human_range_verdict(kappa: float) -> str:
    """Where a clean-vs-observed kappa falls relative to human inter-reader agreement."""
    lo, hi = HUMAN_KAPPA_RANGE
    where = "inside" if lo <= kappa <= hi else ("above" if kappa > hi else "below")
    return f"{where} the range reported between human KL readers (κ {lo:.2f}–{hi:.2f})"


@dataclass
class CohortView:
    """A cohort's manifest table with the label statistics the cohort chapter reports."""

    manifest: Path
    table: pd.DataFrame
    label_noise: float | None
    version: str = __version__

    @property
    def has_clean(self) -> bool:
        return "kl_clean" in self.table and self.table["kl_clean"].notna().all()

    @property
    def summary(self) -> dict[str, Any]:
        """Label noise, clean-vs-observed kappa and flip rate (computed from the table)."""
        out: dict[str, Any] = {"label_noise": self.label_noise if self.label_noise is not None else float("nan")}
        if self.has_clean:
            clean, obs = self.table["kl_clean"].astype(int), self.table["kl"].astype(int)
            kappa = float(cohen_kappa_score(clean, obs))
            out.update(kappa=kappa, flip_rate=float((clean != obs).mean()), kappa_verdict=human_range_verdict(kappa),
                       oa_flip_rate=float(((clean >= 2) != (obs >= 2)).mean()))
        return out

    def label_sentence(self) -> str:
        """The cohort chapter's sentence on label noise, generated from the table."""
        if not self.has_clean:
            return ("This cohort has no clean grade (real data), so its label noise is unknown; the label-noise "
                    "chapter, which needs the clean grade, is left out of this book.")
        s = self.summary
        return (f"At label-noise strength {s['label_noise']:g}, the observed grade differs from the clean one for "
                f"{s['flip_rate']:.1%} of the knees (the OA label for {s['oa_flip_rate']:.1%}), and the agreement "
                f"between them is Cohen's κ = {s['kappa']:.2f}, which is {s['kappa_verdict']}.")

    def provenance(self) -> str:
        """Which cohort and package version a figure of this chapter comes from."""
        return f"Cohort {self.manifest.parent.name} ({len(self.table)} knees, manifest {self.manifest.name}); oaprobe {self.version}."

    def split_table(self) -> pd.DataFrame:
        """Knees per split and observed grade, with subject counts."""
        t = pd.crosstab(self.table["split"], self.table["kl"].map("KL{}".format), margins=True, margins_name="all")
        subjects = self.table.groupby("split")["subject_id"].nunique()
        subjects["all"] = self.table["subject_id"].nunique()
        t["subjects"] = subjects.reindex(t.index).astype(int)
        return t

    def noise_confusion(self) -> np.ndarray:
        """5x5 counts, rows clean grade, columns observed grade."""
        return confusion_matrix(self.table["kl_clean"].astype(int), self.table["kl"].astype(int), labels=list(KL_GRADES))


def load_cohort(preset: str, cohorts_root: str | Path, manifest: str | Path | None = None) -> CohortView:
    """The preset's synthetic cohort (built or reused), or a given manifest."""
    from oaprobe.data.manifest import read_manifest
    from oaprobe.sweep import preset_manifest

    noise = None
    if manifest is None:
        manifest, noise = preset_manifest(preset, Path(cohorts_root), progress=False), get_preset(preset).cohort.label_noise
    return CohortView(Path(manifest), read_manifest(manifest, check_volumes=False), noise)


def example_slices(table: pd.DataFrame, per_grade: int = 1) -> dict[str, Any]:
    """Coronal slices (through the middle of the joint) of the first knees of each grade.

    Returns images (H x D, superior up), titles, cartilage masks (labels 2 + 4) and lesion masks
    (None on real data), ready for :func:`oaprobe.figures.slice_grid`.
    """
    from oaprobe.data.dataset import read_volume

    grade_col = "kl_clean" if "kl_clean" in table and table["kl_clean"].notna().all() else "kl"
    out: dict[str, Any] = {"images": [], "titles": [], "cartilage": [], "lesion": []}
    has_lesion = "lesion_path" in table and table["lesion_path"].notna().all()
    for grade in KL_GRADES:
        rows = table[table[grade_col].astype(int) == grade].head(per_grade)
        for _, row in rows.iterrows():
            image, mask = read_volume(row["image_path"]), read_volume(row["mask_path"])
            w = image.shape[-1] // 2
            out["images"].append(image[..., w].T)
            out["cartilage"].append(np.isin(mask[..., w], CARTILAGE_LABELS).T)
            if has_lesion:
                out["lesion"].append((read_volume(row["lesion_path"])[..., w] > 0).T)
            label = "clean KL" if grade_col == "kl_clean" else "KL"
            out["titles"].append(f"{label}{grade}<br>{row['case_id']}, observed KL{int(row['kl'])}")
    if not has_lesion:
        out["lesion"] = None
    return out
