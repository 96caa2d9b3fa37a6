"""How real the phantom is: its anatomy measured per preset against published knee values.

Why: every chapter is computed on the phantom, so the book should say how far its knee is from
a real one at each preset's grid. :func:`realism_table` renders healthy right knees in a
neutral pose (no rotation, shift, varus or flexion) at each preset's cohort grid and measures,
in the central medial columns, the femoral and tibial cartilage thickness and the medial
bone-to-bone joint-space width, the patellar cartilage thickness along the anterior-posterior
axis, the volumes of the main structures and the tissue intensity ratios. The published values
are those of the project's reference notes (``PAPER.md``, "Field facts"); where it gives none the table says so
(``published`` empty) instead of inventing one. :func:`realism_montage` draws coronal,
sagittal (medial, midline) and axial slices of a KL0, KL2 and KL4 knee at a preset's grid into a PNG.

Example:
    >>> table = realism_table(("smoke",), n_knees=1)
    >>> table["quantity"].iloc[0], table["published"].iloc[0]
    ('femoral cartilage thickness (mm)', '1.6-2.4')
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from oaprobe.config import get_preset
from oaprobe.data.phantom import (
    ANATOMY_MENISCUS,
    ANATOMY_PATELLA,
    ANATOMY_PATELLAR_CARTILAGE,
    FEM_Z,
    KNEE_Z_OFFSET_MM,
    X_MED,
    Knee,
    render_knee,
    sample_knee_params,
    size_factor,
)
from oaprobe.io import write_atomic

#: Published healthy values (PAPER.md "Field facts"): (low, high) in the table's unit.
PUBLISHED: dict[str, tuple[float, float]] = {
    "femoral cartilage thickness (mm)": (1.6, 2.4),
    "tibial cartilage thickness (mm)": (1.6, 2.4),
    "patellar cartilage thickness (mm)": (2.8, 2.8),
    "medial joint-space width (mm)": (5.0, 5.0),
}
REALISM_COLUMNS: tuple[str, ...] = ("preset", "spacing_mm", "size_factor", "quantity", "phantom", "published")
COLUMN_HALF_WIDTH_MM = 3.0


def neutral_knee(seed: int, severity: float, shape: Sequence[int], spacing: Sequence[float]) -> Knee:
    """A right knee drawn as the cohort draws it at this grid, rendered in the neutral pose."""
    p = sample_knee_params(np.random.default_rng(seed), severity, "R", size_factor(spacing))
    p = dataclasses.replace(p, rotation_deg=(0.0, 0.0, 0.0), shift_mm=(0.0, 0.0, 0.0), varus_deg=0.0,
                            flexion_deg=0.0, ghost=(0.0, 0.0))
    return render_knee(p, shape, spacing)


def _index(coordinate_mm: float, n: int, step: float) -> int:
    return int(round((n - 1) / 2 + coordinate_mm / step))


def _runs(column: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a 1-D boolean array."""
    padded = np.concatenate([[0], column.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return (edges[1::2] - edges[::2]).tolist()


def _medial_columns(knee: Knee, spacing: Sequence[float]) -> list[np.ndarray]:
    """The superior-inferior label columns within 3 mm of the medial compartment's centre."""
    n_d, _, n_w = knee.mask.shape
    d0 = _index(X_MED, n_d, spacing[0])
    w0 = _index(FEM_Z + KNEE_Z_OFFSET_MM, n_w, spacing[2])
    rd, rw = (max(0, int(COLUMN_HALF_WIDTH_MM / spacing[i])) for i in (0, 2))
    return [knee.mask[d, :, w] for d in range(d0 - rd, d0 + rd + 1) for w in range(w0 - rw, w0 + rw + 1)]


def knee_measures(knee: Knee, spacing: Sequence[float]) -> dict[str, float]:
    """Thicknesses, joint space (mm), volumes (mL) and intensity ratios of one neutral knee."""
    sp = [float(v) for v in spacing]
    cols = _medial_columns(knee, sp)
    out = {}
    for label, name in ((2, "femoral"), (4, "tibial")):
        runs = [max(_runs(c == label), default=0) for c in cols]
        out[f"{name} cartilage thickness (mm)"] = float(np.mean(runs)) * sp[1]
    gaps = []
    for c in cols:
        fem, tib = np.flatnonzero(c == 1), np.flatnonzero(c == 3)
        if fem.size and tib.size and tib.min() > fem.max():
            gaps.append((tib.min() - fem.max() - 1) * sp[1])
    out["medial joint-space width (mm)"] = float(np.mean(gaps)) if gaps else float("nan")
    n_d, n_h, _ = knee.mask.shape
    pat = knee.anatomy[_index(0.0, n_d, sp[0]), :, :] == ANATOMY_PATELLAR_CARTILAGE
    runs = [r for row in pat for r in _runs(row)]
    out["patellar cartilage thickness (mm)"] = float(np.median(runs)) * sp[2] if runs else float("nan")
    ml = float(np.prod(sp)) / 1000.0
    for name, voxels in (("femoral cartilage", knee.mask == 2), ("tibial cartilage", knee.mask == 4),
                         ("patellar cartilage", knee.anatomy == ANATOMY_PATELLAR_CARTILAGE),
                         ("menisci", knee.anatomy == ANATOMY_MENISCUS),
                         ("patella", knee.anatomy == ANATOMY_PATELLA)):
        out[f"{name} volume (mL)"] = float(voxels.sum()) * ml
    cart = float(np.median(knee.image[np.isin(knee.mask, (2, 4))]))
    marrow = float(np.median(knee.image[knee.mask == 1]))
    men = knee.image[knee.anatomy == ANATOMY_MENISCUS]
    out["cartilage / marrow intensity"] = cart / marrow
    out["meniscus / cartilage intensity"] = float(np.median(men)) / cart if men.size else float("nan")
    return out


def realism_table(presets: Sequence[str] = ("smoke", "course", "default", "gpu", "paper"), n_knees: int = 3,
                  severity: float = 0.0) -> pd.DataFrame:
    """Mean of :func:`knee_measures` over ``n_knees`` healthy knees per preset, beside the published values.

    Columns :data:`REALISM_COLUMNS`; ``published`` is ``"low-high"`` (or one value), empty where
    PAPER.md gives no value.
    """
    rows = []
    for preset in presets:
        cohort = get_preset(preset).cohort
        shape, spacing = tuple(cohort.shape), tuple(float(v) for v in cohort.spacing)
        measures = pd.DataFrame([knee_measures(neutral_knee(seed, severity, shape, spacing), spacing)
                                 for seed in range(n_knees)]).mean()
        for quantity, value in measures.items():
            low_high = PUBLISHED.get(str(quantity))
            published = "" if low_high is None else "-".join(f"{v:g}" for v in sorted(set(low_high)))
            rows.append({"preset": preset, "spacing_mm": " x ".join(f"{v:g}" for v in spacing),
                         "size_factor": size_factor(spacing), "quantity": quantity, "phantom": round(float(value), 2),
                         "published": published})
    return pd.DataFrame(rows, columns=list(REALISM_COLUMNS))


def realism_montage(path: str | Path, preset: str = "paper", severities: Sequence[float] = (0.5, 2.5, 4.5),
                    seed: int = 3) -> Path:
    """:func:`montage_png` written atomically to ``path``; returns ``path``."""
    write_atomic(Path(path), montage_png(preset, severities, seed))
    return Path(path)


def montage_png(preset: str = "paper", severities: Sequence[float] = (0.5, 2.5, 4.5), seed: int = 3) -> bytes:
    """PNG bytes of coronal, medial and midline sagittal and axial (plateau) slices of one
    neutral knee per severity at ``preset``'s cohort grid."""
    from matplotlib.figure import Figure  # deferred: matplotlib is no dependency of the package, only of this figure

    cohort = get_preset(preset).cohort
    shape, spacing = tuple(cohort.shape), tuple(float(v) for v in cohort.spacing)
    fig = Figure(figsize=(14, 3.8 * len(severities)))  # no pyplot: no global state, no GUI backend
    axes = fig.subplots(len(severities), 4)
    for row, severity in zip(np.atleast_2d(axes), severities):
        knee = neutral_knee(seed, severity, shape, spacing)
        img, (n_d, _, n_w) = knee.image, knee.image.shape
        w = _index(FEM_Z + KNEE_Z_OFFSET_MM, n_w, spacing[2])
        d = _index(X_MED, n_d, spacing[0])
        h = int(np.median(np.flatnonzero((knee.mask == 4).any(axis=(0, 2)))))
        mid = _index(0.0, n_d, spacing[0])
        views = (("coronal", img[:, :, w].T, spacing[1] / spacing[0]), ("sagittal (medial)", img[d], spacing[1] / spacing[2]),
                 ("sagittal (patellofemoral)", img[mid], spacing[1] / spacing[2]),
                 ("axial (tibial plateau)", img[:, h, :], spacing[0] / spacing[2]))
        for ax, (title, view, aspect) in zip(row, views):
            ax.imshow(view, cmap="gray", aspect=aspect, vmin=0, vmax=float(np.percentile(img, 99.5)))
            ax.set_title(f"KL{int(severity)} (s={severity:g}) {title}", fontsize=9)
            ax.axis("off")
    fig.suptitle(f"phantom at the {preset} grid {shape} x {spacing} mm (size factor {size_factor(spacing):g})")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return buffer.getvalue()
