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
from oaprobe.data.manifest import read_manifest
from oaprobe.data.phantom import LESION_DEFECT, LESION_OSTEOPHYTE, LESION_SCLEROSIS
from oaprobe.data.splits import read_split_note
from oaprobe.facts import CARTILAGE_LABELS, KL_GRADES, OA_THRESHOLD, SPLITS
from oaprobe.sweep import preset_manifest

#: Readable names of the phantom's lesion codes (the lesion masks' values).
LESION_NAMES: dict[int, str] = {LESION_OSTEOPHYTE: "osteophyte", LESION_DEFECT: "cartilage defect",
                                LESION_SCLEROSIS: "sclerosis"}
#: Mask labels of the two bones (femur, tibia) that bound the tibiofemoral joint.
FEMUR, TIBIA = 1, 3

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
                f"{s['flip_rate']:.1%} of the knees (the OA label for {s['oa_flip_rate']:.1%}). Their agreement, "
                f"Cohen's κ = {s['kappa']:.2f}, is {s['kappa_verdict']}.")

    def intro(self) -> str:
        """The chapter's opening paragraph: how this cohort's grades came about, in its own terms."""
        if self.has_clean:
            return ("Every chapter of this book is computed from the cohort built here. Each knee has a continuous "
                    "latent severity; its **clean** KL grade is a threshold of that severity, and its **observed** KL "
                    "grade — the one the models are trained on — passes through a label-noise model of mostly "
                    "one-grade confusions, strongest at the 1/2 boundary. OA is observed KL ≥ 2, so the noise reaches "
                    "the coarse label too, exactly where human readers disagree most.")
        text = (f"Every chapter of this book is computed from this cohort: the {len(self.table)} knees of manifest "
                f"`{self.manifest.name}`. Their KL grade (from the cohort's metadata) is both what the models are "
                f"trained on and what they are scored against; OA is KL ≥ {OA_THRESHOLD}. There is no clean grade, "
                "so how noisy the grades are is unknown.")
        return " ".join([text, self.split_origin()]).strip()

    def split_origin(self) -> str:
        """Where the validation split came from when the book made it (its note next to the manifest)."""
        note = read_split_note(self.manifest)
        if not note:
            return ""
        return (f"The imported manifest (`{Path(note['source']).name}`) had no validation knees, which the training "
                f"recipe selects its epoch on, so the book moved {note['val_subjects']} of its training subjects "
                f"({note['val_knees']} knees, {note['fraction_of_train_subjects']:.0%}, drawn per subject, stratified "
                f"by the subject's largest KL grade, seed {note['seed']}) to a validation split; the test knees are "
                "untouched.")

    def slices_intro(self) -> str:
        """The paragraph above the example slices, true of this cohort."""
        if self.has_lesions:
            return ("The first knee of each clean grade, in the coronal slice that shows most of its planted medial "
                    "lesions (osteophytes and cartilage defects; the middle slice when it has none), with the "
                    "cartilage outlined in red and each lesion type in its own colour. Beside each slice, a zoom on "
                    "the medial tibiofemoral compartment (the dashed box, found from the knee's own bone and "
                    "cartilage masks), where the phantom plants joint-space narrowing, most defects and the preferred "
                    "osteophyte sites; the planted lesions are what a model with good saliency should look at.")
        return ("The first knee of each KL grade, in its middle coronal slice, with the cartilage outlined in red. "
                "Beside each slice, a zoom on the medial tibiofemoral compartment (the dashed box, found from the "
                "knee's own bone and cartilage masks), where osteoarthritis narrows the joint space first.")

    def slices_title(self) -> str:
        grade = "clean KL grade" if self.has_clean else "KL grade"
        return f"One knee per {grade}: coronal slice and its medial compartment"

    @property
    def has_lesions(self) -> bool:
        return "lesion_path" in self.table and self.table["lesion_path"].notna().all()

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

    def findings(self) -> list[str]:
        """The chapter's opening bullets: size and splits, OA share, grades, label agreement."""
        t = self.table
        per_subject = t.groupby("subject_id").size()
        splits = ", ".join(f"{s} {int((t['split'] == s).sum())}" for s in SPLITS)
        oa = f"{t['oa'].mean():.1%} of the knees have observed OA (KL ≥ {OA_THRESHOLD})"
        if self.has_clean:
            oa += f"; by the clean grade {(t['kl_clean'].astype(int) >= OA_THRESHOLD).mean():.1%}"
        col, name = ("kl_clean", "Clean") if self.has_clean else ("kl", "Observed")
        counts = t[col].astype(int).value_counts().reindex(list(KL_GRADES), fill_value=0)
        return [
            f"{len(t)} knees from {len(per_subject)} subjects ({int((per_subject > 1).sum())} with both knees); "
            f"knees per split: {splits} (a subject's knees share a split).",
            oa + ".",
            f"{name} grades KL0–KL4: {', '.join(str(int(n)) for n in counts)} knees.",
            self.label_sentence(),
        ]

    def noise_confusion(self) -> np.ndarray:
        """5x5 counts, rows clean grade, columns observed grade."""
        return confusion_matrix(self.table["kl_clean"].astype(int), self.table["kl"].astype(int), labels=list(KL_GRADES))


def load_cohort(preset: str, cohorts_root: str | Path, manifest: str | Path | None = None) -> CohortView:
    """The preset's synthetic cohort (built or reused), or a given manifest."""
    noise = None
    if manifest is None:
        manifest, noise = preset_manifest(preset, Path(cohorts_root), progress=False), get_preset(preset).cohort.label_noise
    return CohortView(Path(manifest), read_manifest(manifest, check_volumes=False), noise)


def lesion_slice(lesion: np.ndarray, side: str) -> int:
    """The coronal slice (W index, middle third of W: through both condyles and the plateau) that
    shows most of the medial focal lesions.

    Osteophyte and defect voxels of the medial half of D are counted per slice, each type weighted
    by one over its medial volume, so that a small defect counts as much as a large osteophyte; a
    knee without medial focal lesions gets its middle slice.
    """
    d, _, w = lesion.shape
    medial = np.arange(d) < d / 2 if side == "R" else np.arange(d) >= d / 2
    part = lesion[medial]
    score = np.zeros(w)
    for code in (LESION_OSTEOPHYTE, LESION_DEFECT):
        per_slice = (part == code).sum(axis=(0, 1))
        if per_slice.sum():
            score += per_slice / per_slice.sum()
    lo, hi = w // 3, w - w // 3
    return lo + int(np.argmax(score[lo:hi])) if score[lo:hi].any() else w // 2


def medial_box(mask: np.ndarray, side: str, margin: float = 0.15) -> tuple[int, int, int, int]:
    """Rows and columns ``(r0, r1, c0, c1)`` (half-open) of a square around the medial tibiofemoral
    compartment in a coronal slice (H x D, superior up) of a label mask.

    Read from the mask, so it follows any cohort shape: the midline is the middle of the tibia's
    columns; medial is the low-D half of a right knee and the high-D half of a left one (the
    phantom's convention: a left knee mirrors a right one); the joint line is the median, over
    medial columns, of the middle between the femur's lowest and the tibia's highest pixel. The
    square spans from the midline to the medial bone edge plus ``margin`` of that width (room for
    osteophytes and soft tissue), centred on the joint line. Without both bones: the whole slice.
    """
    h, d = mask.shape
    femur, tibia = mask == FEMUR, mask == TIBIA
    if not femur.any() or not tibia.any():
        return 0, h, 0, d
    cols = np.nonzero(tibia.any(axis=0))[0]
    mid = (cols.min() + cols.max()) / 2
    medial = np.arange(d) < mid if side == "R" else np.arange(d) > mid
    both = medial & femur.any(axis=0) & tibia.any(axis=0)
    if not both.any():
        return 0, h, 0, d
    rows = np.arange(h)[:, None]
    femur_low, tibia_high = np.where(femur, rows, -1).max(axis=0), np.where(tibia, rows, h).min(axis=0)
    joint = float(np.median((femur_low[both] + tibia_high[both]) / 2))
    bone_cols = np.nonzero(medial & (femur | tibia).any(axis=0))[0]
    edge = bone_cols.min() if side == "R" else bone_cols.max()
    size = abs(mid - edge) * (1 + margin)
    lo, hi = (mid - size, mid) if side == "R" else (mid, mid + size)
    c0, c1 = max(int(np.ceil(lo)), 0), min(int(np.floor(hi)), d - 1) + 1
    r0, r1 = max(int(np.ceil(joint - size / 2)), 0), min(int(np.floor(joint + size / 2)), h - 1) + 1
    return r0, r1, c0, c1


def example_slices(table: pd.DataFrame, per_grade: int = 1, at: str = "lesions") -> dict[str, Any]:
    """Coronal slices of the first knees of each grade, with the box of their medial compartment.

    ``at="lesions"`` takes each knee's slice showing most of its medial lesions
    (:func:`lesion_slice`; the middle slice on real data, which has no lesion masks),
    ``at="middle"`` the slice through the middle of the volume. Returns images (H x D, superior
    up), titles, cartilage masks (labels 2 + 4), lesion code maps (None on real data), medial
    boxes (:func:`medial_box`) and slice indices, ready for :func:`oaprobe.figures.knee_zoom`.
    """
    from oaprobe.data.dataset import read_volume  # deferred: torch (only the example slices read volumes)

    if at not in ("lesions", "middle"):
        raise ValueError(f"at = {at!r}; expected 'lesions' or 'middle'")
    grade_col = "kl_clean" if "kl_clean" in table and table["kl_clean"].notna().all() else "kl"
    out: dict[str, Any] = {"images": [], "titles": [], "cartilage": [], "lesion": [], "boxes": [], "slices": []}
    has_lesion = "lesion_path" in table and table["lesion_path"].notna().all()
    for grade in KL_GRADES:
        rows = table[table[grade_col].astype(int) == grade].head(per_grade)
        for _, row in rows.iterrows():
            image, mask = read_volume(row["image_path"]), read_volume(row["mask_path"])
            lesion = read_volume(row["lesion_path"]) if has_lesion else None
            w = lesion_slice(lesion, row["side"]) if lesion is not None and at == "lesions" else image.shape[-1] // 2
            out["images"].append(image[..., w].T)
            out["cartilage"].append(np.isin(mask[..., w], CARTILAGE_LABELS).T)
            out["boxes"].append(medial_box(mask[..., w].T, row["side"]))
            out["slices"].append(int(w))
            if lesion is not None:
                out["lesion"].append(np.asarray(lesion[..., w]).T.astype(np.uint8))
            label = "clean KL" if grade_col == "kl_clean" else "KL"
            out["titles"].append(f"{label}{grade}<br>{row['case_id']} ({row['side']}), observed KL{int(row['kl'])}, "
                                 f"coronal slice {w + 1}/{image.shape[-1]}")
    if not has_lesion:
        out["lesion"] = None
    return out
