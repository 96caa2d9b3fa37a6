"""Facts shared across the package, declared once: KL grades, the OA rule, modes, splits, labels,
and what the book and the sweep know of each backbone (torch-free, so a report never loads a model).

Example:
    >>> KL_GRADES, N_KL, OA_THRESHOLD
    ((0, 1, 2, 3, 4), 5, 2)
    >>> CARTILAGE_LABELS
    (2, 4)
    >>> backbone_title("nnmamba"), backbone_cost("resnet3d"), backbone_cost("unknown")
    ('nnMamba', 1.0, 2.0)
"""

from __future__ import annotations

from typing import NamedTuple

#: Kellgren-Lawrence grades, in order.
KL_GRADES: tuple[int, ...] = (0, 1, 2, 3, 4)
N_KL: int = len(KL_GRADES)
#: OA = 1 when KL >= this grade.
OA_THRESHOLD: int = 2
#: Training modes: one OA logit (BCE), five KL logits (CE), or both heads on one encoder.
MODES: tuple[str, ...] = ("single_oa", "single_kl", "dual")
#: The ordinal baseline: one CORN head (rank-consistent conditional binary tasks) on the KL label
#: alone, OA read as P(KL >= 2). Not a study mode: the book's grids iterate MODES.
ORDINAL: str = "ordinal"
#: Every mode a run may have.
ALL_MODES: tuple[str, ...] = MODES + (ORDINAL,)
#: Each mode as the book names it.
MODE_NAMES: dict[str, str] = {"single_oa": "single-OA", "single_kl": "single-KL", "dual": "dual", "ordinal": "ordinal"}
#: Where the dual model's OA head reads: the embedding ("parallel") or the KL logits ("stacked").
DUAL_VARIANTS: tuple[str, ...] = ("parallel", "stacked")
SPLITS: tuple[str, ...] = ("train", "val", "test")
SIDES: tuple[str, ...] = ("L", "R")
#: OAI-ZIB label map: 0 background, 1 femur, 2 femoral cartilage, 3 tibia, 4 tibial cartilage.
MASK_LABELS: dict[int, str] = {0: "background", 1: "femur", 2: "femoral cartilage", 3: "tibia", 4: "tibial cartilage"}
CARTILAGE_LABELS: tuple[int, ...] = (2, 4)
BONE_LABELS: tuple[int, ...] = (1, 3)
#: Kept weights whose validation loss is above this multiple of the run's best are not a converged
#: result: the convergence flag ``unstable`` uses it, and ``select="final_near_best"`` keeps the
#: final weights only within it (issue 9).
NEAR_BEST_LOSS: float = 1.2


class Backbone(NamedTuple):
    """What the package knows of a backbone without building it (the factories are in
    :mod:`oaprobe.models.backbones`, keyed alike).

    Attributes:
        title: human-readable name (book chapter titles).
        min_side: smallest accepted size of every spatial side of the input.
        cost: relative training cost per input voxel of a knee (resnet3d = 1) at width 0.25 on one
            CPU core: paper backbones from ``benchmarks/backbone_speed.py`` (ms per step at the
            book's input sizes over their voxels), MONAI nets from ENV-NOTES; the sweep and the
            saliency stage start the longest work first.
        description: one line for listings and error messages.
    """

    title: str
    min_side: int
    cost: float
    description: str


#: The backbone registry's names, in order, with their facts.
BACKBONES: dict[str, Backbone] = {
    "resnet3d": Backbone("ResNet3D", 8, 1.0, "MedicalNet-style 3D ResNet-18 (dilated layer3/4)"),
    "m3t": Backbone("M3T", 8, 7.4, "M3T: 3D stem + 2D ResNet-18 on all slices + transformer"),
    "nnmamba": Backbone("nnMamba", 8, 1.15, "nnMamba encoder: residual 3D CNN + Mamba layer"),
    "densenet121": Backbone("DenseNet121", 29, 1.5, "MONAI DenseNet121"),
    "efficientnet-b0": Backbone("EfficientNet-B0", 8, 2.5, "MONAI EfficientNet-B0"),
    "monai-resnet18": Backbone("MONAI ResNet-18", 8, 0.7, "MONAI ResNet-18"),
}
#: Cost hint of a backbone that is not in the registry (the middle of the measured range).
DEFAULT_COST: float = 2.0


def backbone_title(name: str) -> str:
    """Human-readable title of backbone ``name``; an unknown name is its own title."""
    return BACKBONES[name].title if name in BACKBONES else name


def backbone_cost(name: str) -> float:
    """Relative cost hint of backbone ``name`` (``resnet3d`` = 1); :data:`DEFAULT_COST` when unknown."""
    return BACKBONES[name].cost if name in BACKBONES else DEFAULT_COST
