"""Saliency maps scored against the phantom's ground-truth evidence and its distractors.

Why: the cartilage mask says where a radiologist might look, not what decided a knee's grade.
The phantom knows the latter: its evidence map (:func:`oaprobe.data.phantom.render_knee`)
marks the voxels whose planted change (osteophytes, joint-space narrowing, cartilage loss,
sclerosis) differs from the same knee's healthy geometry, and the distractors (effusion,
bone-marrow lesions, menisci) that vary with severity without being part of the KL definition.
As in CLEVR-XAI and FunnyBirds, a map is scored by its ``mass`` inside a region, the share of
its top-5% voxels inside (``top5``), and the pointing game (``pointing``: is the map's maximum
inside the region), with the region's ``roi_fraction`` as chance level
(:func:`oaprobe.analysis.regions.region_overlap`).

Example:
    >>> import numpy as np
    >>> ev = np.zeros((4, 4, 4), np.uint8); ev[0] = 1; ev[3] = 5
    >>> sal = np.zeros((4, 4, 4)); sal[0, 0, 0] = 1.0
    >>> m = evidence_overlap(sal, ev)
    >>> m["evidence"]["mass"], m["evidence"]["pointing"], m["effusion"]["pointing"]
    (1.0, 1.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from oaprobe.analysis.regions import region_overlap
from oaprobe.data.phantom import (
    DISTRACTOR_BML,
    DISTRACTOR_EFFUSION,
    DISTRACTOR_MENISCUS,
    EVIDENCE_CARTILAGE,
    EVIDENCE_JSN,
    EVIDENCE_OSTEOPHYTE,
    EVIDENCE_SCLEROSIS,
)

#: region name -> evidence-map codes; "evidence" is every grade-deciding change together.
FINDINGS: dict[str, tuple[int, ...]] = {
    "evidence": (EVIDENCE_OSTEOPHYTE, EVIDENCE_JSN, EVIDENCE_CARTILAGE, EVIDENCE_SCLEROSIS),
    "osteophyte": (EVIDENCE_OSTEOPHYTE,),
    "jsn": (EVIDENCE_JSN,),
    "cartilage_loss": (EVIDENCE_CARTILAGE,),
    "sclerosis": (EVIDENCE_SCLEROSIS,),
}
DISTRACTORS: dict[str, tuple[int, ...]] = {
    "effusion": (DISTRACTOR_EFFUSION,),
    "bml": (DISTRACTOR_BML,),
    "meniscus": (DISTRACTOR_MENISCUS,),
}
EVIDENCE_COLUMNS: tuple[str, ...] = (
    "case_id", "target", "method", "region", "roi_fraction", "mass", "top5", "pointing", "enrichment",
)


def evidence_regions(evidence: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of every finding and distractor of one evidence map (codes as in the phantom)."""
    ev = np.asarray(evidence)
    return {name: np.isin(ev, codes) for name, codes in {**FINDINGS, **DISTRACTORS}.items()}


def pointing_game(saliency: np.ndarray, roi: np.ndarray) -> float:
    """1.0 if the map's largest value lies inside ``roi``, else 0.0 (ties: any maximal voxel
    inside counts); NaN for an empty region or an all-zero map (undefined, not a miss)."""
    s = np.maximum(np.asarray(saliency, dtype=np.float64), 0.0)
    m = np.asarray(roi, dtype=bool)
    top = s.max(initial=0.0)
    if not m.any() or top <= 0:
        return float("nan")
    return float(bool((s[m] == top).any()))


def evidence_overlap(saliency: np.ndarray, evidence: np.ndarray) -> dict[str, dict[str, float]]:
    """``roi_fraction``, ``mass``, ``top5``, ``pointing`` and ``enrichment`` of one map per region."""
    regions = evidence_regions(evidence)
    scores = region_overlap(saliency, regions, ks=(5,))
    for name, roi in regions.items():
        scores[name] = {key: scores[name][key] for key in ("roi_fraction", "mass", "top5", "enrichment")}
        scores[name]["pointing"] = pointing_game(saliency, roi)
    return scores


def evidence_scorer(evidence: np.ndarray, case_ids: list[str]) -> tuple[Callable, Callable[[], pd.DataFrame]]:
    """A ``(score, table)`` pair for the saliency stage: ``score(i, target, method, map)`` scores
    knee ``i``'s map against ``evidence[i]``; ``table()`` returns the rows so far
    (:data:`EVIDENCE_COLUMNS`), as ``evidence.csv`` holds them."""
    rows: list[dict] = []

    def score(i: int, target: str, method: str, saliency: np.ndarray) -> None:
        for region, metrics in evidence_overlap(saliency, evidence[i]).items():
            rows.append({"case_id": str(case_ids[i]), "target": target, "method": method, "region": region, **metrics})

    return score, lambda: pd.DataFrame(rows, columns=list(EVIDENCE_COLUMNS))


def evidence_summary(table: pd.DataFrame, by: tuple[str, ...] = ("mode", "method", "target")) -> pd.DataFrame:
    """Which method and mode find the evidence: per group and region, the scored maps with a
    non-empty region (``n``: one per knee and run, times the targets when ``by`` leaves
    ``target`` out), mean ``mass``, ``top5`` and pointing rate, the mean ``roi_fraction`` (chance)
    and ``enrichment`` = mean mass / mean roi_fraction. ``by`` columns missing from ``table``
    are left out of the grouping."""
    keys = [c for c in by if c in table.columns] + ["region"]
    defined = table[table["mass"].notna()]
    out = defined.groupby(keys, sort=False).agg(
        n=("case_id", "size"), mass=("mass", "mean"), top5=("top5", "mean"), pointing=("pointing", "mean"),
        roi_fraction=("roi_fraction", "mean"),
    ).reset_index()
    out["enrichment"] = out["mass"] / out["roi_fraction"]
    return out


def distractor_reliance(table: pd.DataFrame, by: tuple[str, ...] = ("mode", "method", "target"),
                        threshold: float = 1.5) -> pd.DataFrame:
    """Whether a model leans on a distractor: per group and distractor, the mean mass against the
    mean volume share (``enrichment``), the share of knees whose mass exceeds their region's
    volume share (``knees_above_chance``), and ``relies`` = enrichment above ``threshold`` with
    more than half the knees above chance (a heuristic flag; the numbers are the result).

    Caveat: SmoothGrad x input multiplies by the image, so it favours the brightest tissue
    (fluid): its effusion mass measures the method as much as the model. Compare a mode with
    another under the same method, or use Grad-CAM, before calling it the model's reliance."""
    summary = evidence_summary(table[table["region"].isin(DISTRACTORS)], by)
    defined = table[table["region"].isin(DISTRACTORS) & table["mass"].notna()].copy()
    defined["above"] = defined["mass"] > defined["roi_fraction"]
    keys = [c for c in by if c in table.columns] + ["region"]
    above = defined.groupby(keys, sort=False)["above"].mean().rename("knees_above_chance").reset_index()
    out = summary.merge(above, on=keys, how="left")
    out["relies"] = (out["enrichment"] > threshold) & (out["knees_above_chance"] > 0.5)
    return out
