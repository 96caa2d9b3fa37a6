"""A synthetic 3D DESS-like knee whose pathology follows a continuous latent OA severity.

The phantom is rendered directly on a ``(D, H, W)`` grid (``D`` sagittal slice axis =
medial-lateral, ``H`` superior -> inferior, ``W`` anterior -> posterior; see
``book/architecture.md``) from implicit surfaces (approximate signed distances in mm) of:
the distal femur (shaft plus medial and lateral condyles, with the intercondylar notch between
them), the proximal tibia (plateau with intercondylar eminence), femoral (condylar and
trochlear) and tibial cartilage plates, the patella with its cartilage across the
patellofemoral gap, medial and lateral menisci (dark wedges on each plate's rim), the fibular
head, the cruciate ligaments (low-signal bands), joint fluid (capsule and suprapatellar
pouch) and the soft tissue of the leg. The femur and patella are posed per knee (varus/valgus,
flexion). Edges are partial-volume weighted so that downsampling behaves like a real scan.
Contrast imitates water-excitation DESS: fluid brightest, cartilage bright, marrow
intermediate, cortical bone dark; then a smooth multiplicative bias field and Rician noise.
Mask labels: 1 femur, 2 femoral cartilage, 3 tibia, 4 tibial cartilage (osteophytes are bone).

A knee's latent severity ``s`` lies in ``[0, 5)`` and its clean KL grade is ``floor(s)``
(:func:`kl_from_severity`); :func:`severity_from_uniform` maps uniform numbers to severities
so that any KL prior is reached exactly, with severity spread uniformly inside each grade.
The pathology grows continuously with ``s`` following the KL definitions: KL1 doubtful medial
narrowing and possible small osteophytic lipping; KL2 definite (few) osteophytes and possible
narrowing; KL3 multiple osteophytes, definite medial joint-space narrowing (JSN) with
cartilage thinning and focal defects, subchondral sclerosis; KL4 large osteophytes, marked
JSN, severe sclerosis and flattening/depression of the medial bone ends (deformity). Every
amount is drawn around its severity-dependent mean, so grades overlap like real ones.

Thin sizes are real at fine spacing and EXAGGERATED on coarse grids by one factor,
:func:`size_factor` of the voxel spacing (1 at 1 mm or finer, 2 at 2 mm or coarser, where the
book's models see 3 mm voxels): the sampler multiplies the cartilage (real 2.25 mm femoral,
2.0 mm tibial, 2.8 mm patellar), the fluid gap (0.75 mm; medial JSW 5 mm), the subchondral
cortex (1.25 mm), osteophyte radii (1.25 mm at KL1 to 4.25 mm at KL4), defects and sclerosis
bands by it. Bones, menisci, ligaments, effusion and bone-marrow lesions keep their real
sizes. The field of view is the cube around the joint given by ``shape * spacing`` (96 mm in
the presets; the knee sits ``KNEE_Z_OFFSET_MM`` posterior of its centre so the patella fits).

Distractors vary between knees without being part of the KL definition: effusion and a
bone-marrow-lesion-like blob (partly correlated with severity), meniscal extrusion and
degeneration (correlated), an age-like cartilage signal, the coil bias field and a motion
ghost (independent); see :func:`_sample_pose_and_distractors`. The evidence map marks the
voxels whose planted change decides the grade (against the same knee's healthy geometry) and
the distractors' voxels, for scoring saliency maps (:mod:`oaprobe.analysis.evidence`).

Random sampling (:func:`sample_knee_params`) is separate from the deterministic renderer
(:func:`render_knee`); the renderer's only randomness (texture, noise) comes from
``params.noise_seed``. A left knee is the exact mirror image (along ``D``) of the right knee
with the same parameters.

Example:
    >>> import numpy as np
    >>> params = sample_knee_params(np.random.default_rng(0), severity=3.5, side="R")
    >>> knee = render_knee(params, shape=(24, 24, 24), spacing=(4.0, 4.0, 4.0))
    >>> knee.image.shape, knee.image.dtype.name, knee.mask.dtype.name
    ((24, 24, 24), 'float32', 'uint8')
    >>> sorted(np.unique(knee.mask).tolist())
    [0, 1, 2, 3, 4]
    >>> kl_from_severity(np.array([0.2, 1.99, 4.7])).tolist()
    [0, 1, 4]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

#: Bumped whenever the renderer or the sampler changes what a given seed produces.
#: "2": the bone tapers stop at ``DIAPHYSIS_MIN_MM``; this changes only fields of view reaching
#: past about 110 mm from the joint (the presets' volumes are byte-identical to "1").
#: "3": patella and patellofemoral joint, menisci, fibular head, cruciate ligaments, femoral pose
#: (varus/valgus, flexion), distractors (effusion, bone-marrow lesions, cartilage signal, motion
#: ghost), real sizes at fine spacing (:func:`size_factor`) and the evidence map.
PHANTOM_VERSION = "3"

MAX_SEVERITY = 5.0

# Lesion codes in the lesion mask (0 = none).
LESION_OSTEOPHYTE = 1
LESION_DEFECT = 2
LESION_SCLEROSIS = 3

# Codes of the evidence map (0 = none): 1-4 the planted changes that decide the grade, 5-7 the
# distractors (varying between knees, partly with severity, but not part of the KL definition).
EVIDENCE_OSTEOPHYTE, EVIDENCE_JSN, EVIDENCE_CARTILAGE, EVIDENCE_SCLEROSIS = 1, 2, 3, 4
DISTRACTOR_EFFUSION, DISTRACTOR_BML, DISTRACTOR_MENISCUS = 5, 6, 7
EVIDENCE_NAMES: dict[int, str] = {
    EVIDENCE_OSTEOPHYTE: "osteophyte", EVIDENCE_JSN: "joint-space narrowing",
    EVIDENCE_CARTILAGE: "cartilage loss", EVIDENCE_SCLEROSIS: "sclerosis",
    DISTRACTOR_EFFUSION: "effusion", DISTRACTOR_BML: "bone-marrow lesion", DISTRACTOR_MENISCUS: "meniscus",
}
#: Codes of :attr:`Knee.anatomy` (in memory only; the mask keeps the OAI-ZIB labels 0-4).
ANATOMY_PATELLA, ANATOMY_PATELLAR_CARTILAGE, ANATOMY_MENISCUS, ANATOMY_FIBULA, ANATOMY_LIGAMENT = 1, 2, 3, 4, 5

# --- canonical anatomy of a right knee (mm; x medial(-) -> lateral(+), y inferior(-) ->
# superior(+), z anterior(-) -> posterior(+); origin near the centre of the joint) ---
X_MED, X_LAT = -18.0, 18.0  # compartment centres
TIB_AX, TIB_AZ, TIB_Z = 34.0, 24.0, 0.0  # plateau cross-section (ellipse semi-axes, centre z)
TIB_TAPER = (0.28, 0.12)  # semi-axis loss (mm per mm below the plateau) for x and z
Y_PLATEAU = -5.0  # healthy tibial plateau (bone) height
EMINENCE = (5.0, 5.0, 10.0)  # height, x and z widths of the intercondylar eminence
FEM_AX, FEM_AY, FEM_AZ, FEM_Z = 14.0, 22.0, 24.0, 4.0  # condyle ellipsoid semi-axes, centre z
SHAFT_AX, SHAFT_AZ, SHAFT_Z, SHAFT_TAPER = 33.0, 22.0, 0.0, 0.3
# The tapers above stop at the diaphysis: no semi-axis of the tibial column or femoral shaft
# drops below this. Without it they reach zero about 110-120 mm from the joint (division by
# zero in the signed distance) and then re-widen; the presets' 96-112 mm fields of view stay
# at 13.6 mm or more, so this floor only changes larger fields of view.
DIAPHYSIS_MIN_MM = 10.0
CART_AX, CART_AZ = 13.0, 19.0  # tibial cartilage plate (ellipse) per compartment
LEG_AX, LEG_AZ, LEG_Z, FAT_MM = 58.0, 54.0, 4.0, 6.0
CAPSULE = (36.0, 28.0, 2.0)  # joint capsule (fluid) x and z semi-axes, centre z

# Published (real) thin sizes in mm; the sampler multiplies each by the exaggeration factor
# (:func:`size_factor`, 1 at fine spacing, 2 at the coarse presets).
REAL_FEM_CART_MM, REAL_TIB_CART_MM, REAL_GAP_MM = 2.25, 2.0, 0.75  # medial JSW 5 mm
REAL_PAT_CART_MM = 2.8  # the patella's cartilage, the thickest in the body
REAL_CORTEX_MM = 1.25
MAX_EXAGGERATION = 2.0
# The sizes at the coarse presets (exaggeration 2), kept as names for the tests and the oracle.
FEM_CART_MM, TIB_CART_MM, GAP_MM, CORTEX_MM = (
    MAX_EXAGGERATION * v for v in (REAL_FEM_CART_MM, REAL_TIB_CART_MM, REAL_GAP_MM, REAL_CORTEX_MM)
)
# Patella (ellipsoid semi-axes, mm; its centre sits above the condyles' centre), fibular head,
# menisci (outer rim around each tibial cartilage plate, wedge width) and cruciate ligaments.
PATELLA = (21.0, 18.0, 8.0)
PATELLA_ABOVE_MM = 9.0
FIBULA = (29.0, -22.0, 15.0, 8.0, 6.0)  # head centre x, y, z, head radius, shaft radius
MENISCUS_RIM, MENISCUS_WIDTH_MM = (15.0, 21.0), 10.0
LIGAMENT_MM = 3.5
#: Canonical origin sits this far posterior of the field-of-view centre, so the patella fits.
KNEE_Z_OFFSET_MM = 6.0


def size_factor(spacing: Sequence[float]) -> float:
    """Exaggeration of the thin structures (cartilage, joint gap, cortex, osteophytes, sclerosis,
    defects) for a grid of voxel ``spacing`` (mm): the geometric-mean voxel size in mm, clipped to
    [1, 2]. Real sizes at 1 mm or finer; doubled at 2 mm or coarser, where the book's models see
    3 mm voxels and a 2 mm plate would vanish. Per preset (shape, spacing -> factor):

    ======== ================= ===================== ======
    preset   shape             spacing (mm)          factor
    ======== ================= ===================== ======
    smoke    24^3              4.0                   2.0
    course   32^3              3.0                   2.0
    default  48^3              2.0                   2.0
    gpu      64^3              1.5                   1.5
    paper    80 x 128 x 128    1.4 x 0.73 x 0.73     1.0
    ======== ================= ===================== ======
    """
    h = float(np.prod([float(v) for v in spacing]) ** (1.0 / 3.0))
    return float(np.clip(h, 1.0, MAX_EXAGGERATION))


def _interp(s: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    return float(np.interp(s, xs, ys))


@dataclass(frozen=True)
class Osteophyte:
    """A spherical bony outgrowth: centre (canonical mm), radius (mm), bone label (1 or 3)."""

    center: tuple[float, float, float]
    radius: float
    bone: int


@dataclass(frozen=True)
class Defect:
    """A focal cartilage defect: a sphere (canonical mm) where cartilage is replaced by fluid."""

    center: tuple[float, float, float]
    radius: float


@dataclass(frozen=True)
class KneeParams:
    """Everything that determines one rendered knee (all lengths in canonical mm).

    Attributes:
        side: ``"R"`` or ``"L"`` (a left knee is the mirror image along D).
        severity: latent OA severity in [0, 5); the clean KL grade is ``floor(severity)``.
        scale: isotropic size factor of the whole knee.
        rotation_deg: small rotation about the D, H, W axes (degrees).
        shift_mm: translation of the knee in the field of view (mm, D/H/W order).
        fem_cart_mm, tib_cart_mm, gap_mm: (medial, lateral) femoral cartilage, tibial
            cartilage and fluid-gap thickness; their sum is the bone-to-bone joint space.
        flattening: (medial, lateral) relative flattening of the condyle's distal curvature.
        depression_mm: (medial, lateral) depression of the tibial plateau (bone attrition).
        sclerosis_mm: thickness of the sclerotic band under the medial subchondral cortex.
        sclerosis_strength: 0..1 darkening of marrow inside the sclerotic band.
        effusion_mm: half-height of the fluid-filled joint capsule.
        osteophytes, defects: the planted focal lesions.
        intensities: (air, fat, muscle, fluid, cartilage, marrow, cortex) signal levels.
        bias: 9 coefficients of the log bias field (linear and quadratic terms).
        noise_sigma: standard deviation of the Rician noise (fluid signal is about 1).
        noise_seed: seed of the renderer's texture and noise.
        exaggeration: the :func:`size_factor` the thin sizes were drawn with (1 = real sizes).
        jsn_loss: (medial, lateral) fraction of the healthy joint space lost; the healthy
            thicknesses are the drawn ones divided by ``1 - jsn_loss`` (the evidence map's reference).
        cortex_mm: subchondral cortex thickness.
        varus_deg: femur rotation about the anterior-posterior axis (varus > 0, valgus < 0).
        flexion_deg: femur (and patella) rotation about the medial-lateral axis.
        meniscus_extrusion_mm: medial meniscus displaced medially (grows with severity).
        meniscus_signal: 0..1 intrasubstance degeneration (dark -> intermediate signal).
        bml: bone-marrow-lesion-like blobs (centre, semi-axes, strength 0..1 towards fluid).
        cartilage_signal: age-like multiplicative cartilage signal (severity-independent).
        ghost: (amplitude, shift mm along W) of a motion ghost (severity-independent).
    """

    side: Literal["R", "L"]
    severity: float
    scale: float = 1.0
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fem_cart_mm: tuple[float, float] = (FEM_CART_MM, FEM_CART_MM)
    tib_cart_mm: tuple[float, float] = (TIB_CART_MM, TIB_CART_MM)
    gap_mm: tuple[float, float] = (GAP_MM, GAP_MM)
    flattening: tuple[float, float] = (0.0, 0.0)
    depression_mm: tuple[float, float] = (0.0, 0.0)
    sclerosis_mm: float = 0.0
    sclerosis_strength: float = 0.0
    effusion_mm: float = 7.0
    osteophytes: tuple[Osteophyte, ...] = ()
    defects: tuple[Defect, ...] = ()
    intensities: tuple[float, ...] = (0.02, 0.12, 0.28, 1.0, 0.72, 0.42, 0.06)
    bias: tuple[float, ...] = (0.0,) * 9
    noise_sigma: float = 0.03
    noise_seed: int = 0
    texture: float = 0.05
    exaggeration: float = MAX_EXAGGERATION
    jsn_loss: tuple[float, float] = (0.0, 0.0)
    cortex_mm: float = CORTEX_MM
    varus_deg: float = 0.0
    flexion_deg: float = 0.0
    meniscus_extrusion_mm: float = 0.0
    meniscus_signal: float = 0.0
    bml: tuple[tuple[tuple[float, float, float], tuple[float, float, float], float], ...] = ()
    cartilage_signal: float = 1.0
    ghost: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if self.side not in ("R", "L"):
            raise ValueError(f"KneeParams.side = {self.side!r}; expected 'R' or 'L'")
        if not 0 <= self.severity < MAX_SEVERITY:
            raise ValueError(f"KneeParams.severity = {self.severity!r}; expected a value in [0, 5)")


@dataclass
class Knee:
    """A rendered knee: image (float32), mask (uint8 labels 0-4), lesion map, evidence map
    (``EVIDENCE_*`` / ``DISTRACTOR_*`` codes) and the extra anatomy (``ANATOMY_*`` codes)."""

    image: np.ndarray
    mask: np.ndarray
    lesion: np.ndarray
    params: KneeParams = field(repr=False)
    evidence: np.ndarray | None = field(default=None, repr=False)
    anatomy: np.ndarray | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------- severity


def kl_from_severity(severity: float | np.ndarray) -> np.ndarray:
    """Clean KL grade of a latent severity: ``floor(s)`` clipped to 0-4."""
    s = np.asarray(severity, dtype=float)
    return np.clip(np.floor(s), 0, 4).astype(np.int64)


def severity_from_uniform(u: float | np.ndarray, prior: Sequence[float] | np.ndarray) -> np.ndarray:
    """Map uniform numbers in [0, 1) to severities whose clean-KL distribution is ``prior``.

    Grade ``k`` receives the probability mass ``prior[k]``, spread uniformly over ``[k, k+1)``
    (the inverse of a piecewise-linear CDF), so the map is monotone: correlated uniforms give
    correlated severities (used for the two knees of one subject).
    """
    p = np.asarray(prior, dtype=float)
    if p.shape != (5,) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"prior must be 5 non-negative numbers with a positive sum, got {p.tolist()}")
    p = p / p.sum()
    edges = np.concatenate([[0.0], np.cumsum(p)])
    edges[-1] = 1.0
    uu = np.clip(np.asarray(u, dtype=float), 0.0, np.nextafter(1.0, 0.0))
    k = np.clip(np.searchsorted(edges, uu, side="right") - 1, 0, 4)
    width = np.where(p[k] > 0, p[k], 1.0)
    s = k + (uu - edges[k]) / width
    return np.clip(s, 0.0, MAX_SEVERITY - 1e-6)


# ----------------------------------------------------------------------------- sampling


def _rim_sites(params_pre: dict) -> list[tuple[np.ndarray, np.ndarray, int, bool]]:
    """Candidate osteophyte anchors: (point, outward normal, bone label, medial?)."""
    sites = []
    top_m = Y_PLATEAU - params_pre["depression_mm"][0]
    top_l = Y_PLATEAU - params_pre["depression_mm"][1]
    # Tibial margins: medial and lateral rims, plus the anterior/posterior rim per compartment.
    sites.append((np.array([-TIB_AX, top_m - 1.5, TIB_Z]), np.array([-1.0, 0.35, 0.0]), 3, True))
    sites.append((np.array([TIB_AX, top_l - 1.5, TIB_Z]), np.array([1.0, 0.35, 0.0]), 3, False))
    for xc, top, med in ((X_MED, top_m, True), (X_LAT, top_l, False)):
        zr = TIB_AZ * np.sqrt(max(1 - (xc / TIB_AX) ** 2, 0.05))
        sites.append((np.array([xc, top - 1.5, TIB_Z + zr]), np.array([0.0, 0.3, 1.0]), 3, med))
        sites.append((np.array([xc, top - 1.5, TIB_Z - zr]), np.array([0.0, 0.3, -1.0]), 3, med))
    # Femoral margins: outer edge of each condyle and its posterior pole.
    for c, (xc, sign) in enumerate(((X_MED, -1.0), (X_LAT, 1.0))):
        yc = params_pre["condyle_center_y"][c]
        ay = params_pre["condyle_ay"][c]
        sites.append((np.array([xc + sign * FEM_AX, yc - 0.45 * ay, FEM_Z]), np.array([sign, -0.4, 0.0]), 1, c == 0))
        sites.append((np.array([xc, yc - 0.1 * ay, FEM_Z + FEM_AZ]), np.array([0.0, -0.2, 1.0]), 1, c == 0))
    return sites


def _condyle_geometry(fem, tib, gap, flattening, depression) -> tuple[list[float], list[float]]:
    """Centre height and vertical semi-axis of each condyle so that it rests on its plate."""
    centers, ays = [], []
    for c in range(2):
        ay = FEM_AY * (1.0 - flattening[c])
        bottom = Y_PLATEAU - depression[c] + tib[c] + gap[c] + fem[c]
        centers.append(bottom + ay)
        ays.append(ay)
    return centers, ays


def _check_knee_args(severity: float, side: str, exaggeration: float) -> None:
    """A ValueError naming the argument unless severity, side and exaggeration are in range."""
    if not 0 <= float(severity) < MAX_SEVERITY:
        raise ValueError(f"severity = {severity!r}; expected a value in [0, 5)")
    if side not in ("R", "L"):
        raise ValueError(f"side = {side!r}; expected 'R' or 'L'")
    if not 1.0 <= exaggeration <= MAX_EXAGGERATION:
        raise ValueError(f"exaggeration = {exaggeration!r}; expected a value in [1, {MAX_EXAGGERATION}]")


def sample_knee_params(
    rng: np.random.Generator, severity: float, side: Literal["R", "L"], exaggeration: float = MAX_EXAGGERATION
) -> KneeParams:
    """Draw the anatomy, pose, contrast, distractors and severity-driven pathology of one knee.

    Args:
        rng: the only source of randomness (same state -> same parameters).
        severity: latent severity in [0, 5); see :func:`severity_from_uniform`.
        side: ``"R"`` or ``"L"``.
        exaggeration: multiplier of the thin sizes, :func:`size_factor` of the grid to render on
            (it does not change which random numbers are drawn).
    """
    _check_knee_args(severity, side, exaggeration)
    s, f = float(severity), float(exaggeration)

    # Healthy anatomy and pose.
    scale = float(np.clip(rng.normal(1.0, 0.05), 0.88, 1.12))
    rotation = tuple(float(v) for v in np.clip(rng.normal(0.0, 3.0, 3), -6, 6))
    shift = tuple(float(v) for v in np.clip(rng.normal(0.0, 2.0, 3), -4, 4))
    thick = float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.2))

    loss, fem, tib, gap = _sample_joint_space(rng, s, f, thick)

    # Deformity at the top grades: medial bone-end flattening and plateau depression.
    deform = _interp(s, [0, 3.5, 5], [0.0, 0.0, 1.0]) * float(rng.uniform(0.7, 1.3))
    flattening = (0.3 * deform, 0.05 * deform)
    depression = (2.5 * deform, 0.5 * deform)
    centers, ays = _condyle_geometry(fem, tib, gap, flattening, depression)

    # Subchondral sclerosis (medial), from late KL2 on.
    sclerosis_mm = f * _interp(s, [0, 2.5, 3, 4, 5], [0.0, 0.0, 1.25, 2.25, 3.0]) * float(rng.uniform(0.8, 1.2))
    sclerosis_strength = _interp(s, [2.5, 5], [0.4, 0.75]) if sclerosis_mm > 0 else 0.0
    osteophytes = _sample_osteophytes(rng, s, f, depression, centers, ays)
    defects = _sample_defects(rng, s, f, depression, centers, ays, fem, tib)
    effusion_noise = float(rng.normal(0, 1.0))
    return KneeParams(
        side=side,
        severity=s,
        scale=scale,
        rotation_deg=rotation,
        shift_mm=shift,
        fem_cart_mm=fem,
        tib_cart_mm=tib,
        gap_mm=gap,
        flattening=flattening,
        depression_mm=depression,
        sclerosis_mm=sclerosis_mm,
        sclerosis_strength=sclerosis_strength,
        effusion_mm=float(np.clip(4.0 + 1.2 * s + 2.0 * effusion_noise, 3.0, 16.0)),
        osteophytes=osteophytes,
        defects=defects,
        exaggeration=f,
        jsn_loss=loss,
        cortex_mm=f * REAL_CORTEX_MM,
        **_sample_contrast(rng),
        **_sample_pose_and_distractors(rng, s),
    )


def _sample_joint_space(rng: np.random.Generator, s: float, f: float, thick: float):
    """Joint-space narrowing, mostly medial (doubtful at KL1, definite at KL3, marked at KL4):
    the (medial, lateral) lost fraction and the femoral cartilage, tibial cartilage and gap left."""
    loss_med = _interp(s, [0, 1, 2, 3, 4, 5], [0.0, 0.03, 0.12, 0.38, 0.66, 0.85])
    loss_med = float(np.clip(loss_med + rng.normal(0, 0.05), 0.0, 0.92))
    loss_lat = _interp(s, [0, 3, 5], [0.0, 0.04, 0.25])
    loss_lat = float(np.clip(loss_lat + rng.normal(0, 0.03), 0.0, 0.6))
    fem = tuple(f * REAL_FEM_CART_MM * thick * (1 - loss) for loss in (loss_med, loss_lat))
    tib = tuple(f * REAL_TIB_CART_MM * thick * (1 - loss) for loss in (loss_med, loss_lat))
    gap = tuple(f * REAL_GAP_MM * float(np.clip(rng.normal(1.0, 0.15), 0.6, 1.4)) * (1 - loss) for loss in (loss_med, loss_lat))
    return (loss_med, loss_lat), fem, tib, gap


def _sample_osteophytes(rng: np.random.Generator, s: float, f: float, depression, centers, ays) -> tuple[Osteophyte, ...]:
    """Marginal osteophytes: number and size grow with severity; medial sites preferred
    (KL1 possible lipping, KL2 definite, KL3 multiple)."""
    lam = _interp(s, [0, 1, 2, 3, 4, 5], [0.0, 0.0, 1.5, 3.0, 4.5, 6.0])
    n_ost = int(rng.poisson(lam))
    n_ost = max(n_ost, 1 if s >= 2 else 0, 2 if s >= 3 else 0)  # KL2 definite, KL3 multiple
    if 1 <= s < 2 and rng.random() < 0.5 * (s - 1):
        n_ost = max(n_ost, 1)  # KL1: possible osteophytic lipping
    sites = _rim_sites({"depression_mm": depression, "condyle_center_y": centers, "condyle_ay": ays})
    weights = np.array([2.0 if med else 1.0 for *_, med in sites])
    n_ost = min(n_ost, len(sites))
    chosen = rng.choice(len(sites), size=n_ost, replace=False, p=weights / weights.sum()) if n_ost else []
    mean_r = f * _interp(s, [1, 2, 3, 4, 5], [1.25, 1.75, 2.25, 3.25, 4.25])
    osteophytes = []
    for i in sorted(int(c) for c in chosen):
        point, normal, bone, _ = sites[i]
        r = mean_r * float(rng.uniform(0.8, 1.2))
        jitter = rng.normal(0.0, 2.0, 3) * (normal == 0)  # slide along the rim
        n = normal / np.linalg.norm(normal)
        center = point + jitter + n * 0.35 * r
        osteophytes.append(Osteophyte(tuple(float(v) for v in center), float(r), bone))
    return tuple(osteophytes)


def _sample_defects(rng: np.random.Generator, s: float, f: float, depression, centers, ays, fem, tib) -> tuple[Defect, ...]:
    """Focal cartilage defects on the weight-bearing surfaces (mostly medial), from late KL1 on."""
    n_def = int(rng.poisson(_interp(s, [0, 1.5, 3, 5], [0.0, 0.15, 1.0, 2.0])))
    defects = []
    for _ in range(n_def):
        c = 0 if rng.random() < 0.75 else 1
        xc = (X_MED, X_LAT)[c] + float(rng.uniform(-7, 7))
        z = FEM_Z + float(rng.uniform(-10, 10))
        if rng.random() < 0.5:  # femoral plate: at the condyle's distal surface
            y = centers[c] - ays[c] - 0.5 * fem[c]
        else:  # tibial plate: at the cartilage surface
            y = Y_PLATEAU - depression[c] + 0.5 * tib[c]
        defects.append(Defect((xc, y, z), f * float(rng.uniform(1.5, 2.5))))
    return tuple(defects)


def _sample_contrast(rng: np.random.Generator) -> dict:
    """Tissue levels, gain, the smooth bias field, noise and texture (severity-independent)."""
    base = np.array([0.02, 0.12, 0.28, 1.0, 0.72, 0.42, 0.06])
    levels = base * rng.normal(1.0, 0.05, base.size) * float(rng.lognormal(0.0, 0.15))
    bias = np.concatenate([rng.normal(0, 0.15, 3), rng.normal(0, 0.08, 6)])
    return dict(
        intensities=tuple(float(v) for v in levels),
        bias=tuple(float(v) for v in bias),
        noise_sigma=float(rng.uniform(0.02, 0.05)),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
        texture=float(rng.uniform(0.03, 0.07)),
    )


def _sample_pose_and_distractors(rng: np.random.Generator, s: float) -> dict:
    """Femoral pose, meniscal change and the distractors (drawn after everything else, so the
    pathology of a seed is what it was before they existed).

    Planted severity links (the tests measure them): effusion height 4 + 1.2 s + N(0, 2) mm;
    a bone-marrow lesion with probability 0.08 + 0.16 s; medial meniscus extrusion
    0.3-3 mm + N(0, 0.8) and degeneration growing from KL2 on. Measured Spearman correlations
    with severity (uniform severities, 3000 knees): effusion 0.66, bone-marrow lesion present 0.44,
    extrusion 0.71 (``tests/data/test_phantom.py``). The cartilage signal, the bias field (drawn above), the
    motion ghost, varus/valgus and flexion do not depend on ``s``.
    """
    varus = float(np.clip(rng.normal(0.0, 1.5), -3.0, 3.0))
    flexion = float(rng.uniform(0.0, 12.0))
    extrusion = float(np.clip(_interp(s, [0, 2, 5], [0.3, 0.8, 3.0]) + rng.normal(0, 0.8), 0.0, 5.0))
    degeneration = float(np.clip(_interp(s, [0, 2, 5], [0.0, 0.1, 0.5]) + rng.normal(0, 0.05), 0.0, 0.7))
    bml = []
    if rng.random() < min(0.08 + 0.16 * s, 0.9):
        medial = rng.random() < min(0.5 + 0.08 * s, 0.9)
        femoral = rng.random() < 0.5
        xc = (X_MED if medial else X_LAT) + float(rng.uniform(-5, 5))
        y = Y_PLATEAU + (12.0 if femoral else -9.0) + float(rng.uniform(-2, 2))
        radii = (float(rng.uniform(4, 9)), float(rng.uniform(3, 6)), float(rng.uniform(4, 9)))
        bml.append(((xc, y, FEM_Z + float(rng.uniform(-8, 8))), radii, float(rng.uniform(0.3, 0.6))))
    cartilage_signal = float(np.clip(rng.normal(1.0, 0.1), 0.75, 1.25))
    ghost = (float(rng.uniform(0.04, 0.15)), float(rng.uniform(8, 24))) if rng.random() < 0.35 else (0.0, 0.0)
    return dict(
        varus_deg=varus, flexion_deg=flexion, meniscus_extrusion_mm=extrusion, meniscus_signal=degeneration,
        bml=tuple(bml), cartilage_signal=cartilage_signal, ghost=ghost,
    )


# ----------------------------------------------------------------------------- rendering


def _rotation_matrix(deg: Sequence[float]) -> np.ndarray:
    a, b, c = np.deg2rad(deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _ellipse_sdf(u: np.ndarray, v: np.ndarray, au, av) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipse (or elliptic cylinder).

    The semi-axes ``au`` and ``av`` (scalars or arrays broadcasting with ``u``) must be positive.
    """
    k0 = np.sqrt((u / au) ** 2 + (v / av) ** 2)
    k1 = np.sqrt((u / (au * au)) ** 2 + (v / (av * av)) ** 2) + 1e-6
    return k0 * (k0 - 1.0) / k1


def _ellipsoid_sdf(u, v, w, au, av, aw) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipsoid."""
    k0 = np.sqrt((u / au) ** 2 + (v / av) ** 2 + (w / aw) ** 2)
    k1 = np.sqrt((u / (au * au)) ** 2 + (v / (av * av)) ** 2 + (w / (aw * aw)) ** 2) + 1e-6
    return k0 * (k0 - 1.0) / k1


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two signed distances (blend radius ``k`` mm)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _coverage(d: np.ndarray, h: float) -> np.ndarray:
    """Partial-volume fraction of a voxel of size ``h`` inside a surface at signed distance d."""
    return np.clip(0.5 - d / h, 0.0, 1.0)


def _linear_weights(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix of linear interpolation from n_in control points onto n_out voxels."""
    pos = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - lo
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), lo] = 1.0 - frac
    w[np.arange(n_out), lo + 1] = frac
    return w


def _smooth_field(low: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Trilinear (separable) upsampling of a coarse random field onto the grid: a smooth texture."""
    wa, wb, wc = (_linear_weights(n, m) for n, m in zip(shape, low.shape))
    return np.einsum("ai,bj,ck,ijk->abc", wa, wb, wc, low, optimize=True).astype(np.float32)


def _grid(shape: Sequence[int], spacing: Sequence[float], params: KneeParams):
    """Canonical (knee-frame) coordinates x, y, z in mm of every voxel centre."""
    axes = [(np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * sp for n, sp in zip(shape, spacing)]
    world = [axes[0], -axes[1], axes[2]]  # D -> x (ML), H -> -y (H runs downwards), W -> z
    R = _rotation_matrix(params.rotation_deg)
    t = params.shift_mm
    shp = tuple(shape)
    rel = [
        (world[0] - t[0])[:, None, None],
        (world[1] + t[1])[None, :, None],  # shift along H moves the knee inferiorly
        (world[2] - t[2] - KNEE_Z_OFFSET_MM)[None, None, :],
    ]
    out = []
    for i in range(3):  # p_canon = R^T (p_world - t) / scale
        c = (R[0, i] * rel[0] + R[1, i] * rel[1] + R[2, i] * rel[2]) / params.scale
        out.append(np.broadcast_to(c, shp).astype(np.float32))
    return out


def _femur_frame(x, y, z, p: KneeParams, y_pivot: float):
    """Femur-attached coordinates: undo the femur's varus/valgus (about the anterior-posterior
    axis) and flexion (about the medial-lateral axis) around the condyles' centre. The femur is
    lifted so that the lower condyle still rests on its plate; the other compartment opens."""
    a, phi = np.deg2rad(p.varus_deg), np.deg2rad(p.flexion_deg)
    lift = X_LAT * abs(np.sin(a))
    u, v, w = x, y - np.float32(y_pivot + lift), z - np.float32(FEM_Z)
    ca, sa, cf, sf = (np.float32(t) for t in (np.cos(a), np.sin(a), np.cos(phi), np.sin(phi)))
    u1, v1 = ca * u + sa * v, ca * v - sa * u
    v2, w2 = cf * v1 + sf * w, cf * w - sf * v1
    return u1, v2 + np.float32(y_pivot), w2 + np.float32(FEM_Z)


def _to_tibial_frame(point, p: KneeParams, y_pivot: float) -> np.ndarray:
    """A femur-frame point (mm) in the tibial (canonical) frame: the inverse of :func:`_femur_frame`."""
    a, phi = np.deg2rad(p.varus_deg), np.deg2rad(p.flexion_deg)
    u, v, w = point[0], point[1] - y_pivot, point[2] - FEM_Z
    v1, w1 = np.cos(phi) * v - np.sin(phi) * w, np.sin(phi) * v + np.cos(phi) * w
    u2, v2 = np.cos(a) * u - np.sin(a) * v1, np.sin(a) * u + np.cos(a) * v1
    return np.array([u2, v2 + y_pivot + X_LAT * abs(np.sin(a)), w1 + FEM_Z])


def _segment_sdf(x, y, z, a: np.ndarray, b: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (mm) to a capsule of radius ``r`` around the segment a-b (a ligament)."""
    ab = b - a
    t = ((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / float(ab @ ab)
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2) - r


def _sphere_sdf(x, y, z, c, r) -> np.ndarray:
    return np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) - r


def _healthy(p: KneeParams) -> tuple[tuple, tuple, tuple]:
    """The knee's healthy femoral cartilage, tibial cartilage and gap (before its JSN)."""
    keep = [1.0 - loss for loss in p.jsn_loss]
    return tuple(tuple(v / k for v, k in zip(pair, keep)) for pair in (p.fem_cart_mm, p.tib_cart_mm, p.gap_mm))


def render_knee(
    params: KneeParams, shape: Sequence[int] = (48, 48, 48), spacing: Sequence[float] = (2.0, 2.0, 2.0)
) -> Knee:
    """Render a knee deterministically on a ``shape`` grid with voxel ``spacing`` (mm).

    Returns:
        :class:`Knee` with ``image`` float32, ``mask`` uint8 (0 background, 1 femur, 2 femoral
        cartilage, 3 tibia, 4 tibial cartilage; patella, fibula, menisci and ligaments are 0 as
        in OAI-ZIB), ``lesion`` uint8 (1 osteophyte, 2 cartilage defect, 3 subchondral
        sclerosis), ``evidence`` uint8 (``EVIDENCE_*``: the voxels whose planted change decides
        the grade, compared with the same knee's healthy geometry; ``DISTRACTOR_*``: effusion,
        bone-marrow lesion, meniscus) and ``anatomy`` uint8 (``ANATOMY_*``).
    """
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(v) for v in spacing)
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"shape = {shape}; expected 3 sizes >= 2")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing = {spacing}; expected 3 positive voxel sizes in mm")
    s = _surfaces(params, shape, spacing)
    image = _contrast(s, params, shape, spacing)
    mask, lesion, anatomy = _label_maps(s, shape)
    evidence = _evidence_map(s, params, lesion, shape)
    if params.side == "L":  # the mirror image along the medial-lateral (D) axis
        image, mask, lesion, evidence, anatomy = (
            np.ascontiguousarray(a[::-1]) for a in (image, mask, lesion, evidence, anatomy)
        )
    return Knee(image=image, mask=mask, lesion=lesion, params=params, evidence=evidence, anatomy=anatomy)


@dataclass
class _Surfaces:
    """Signed distances (mm, < 0 inside) of one knee's structures on the grid, and the frames
    and helper fields the contrast, label and evidence stages share."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    femur_frame: tuple[np.ndarray, np.ndarray, np.ndarray]
    h: float  # voxel size in canonical mm
    y_pivot: float
    eminence: np.ndarray
    d_side: np.ndarray  # the tibial column's side wall
    foot: np.ndarray  # each tibial cartilage plate's footprint
    d_fem_plain: np.ndarray  # the femur before its osteophytes
    d_fem: np.ndarray
    d_tib: np.ndarray
    d_fc: np.ndarray
    d_tc: np.ndarray
    d_pat: np.ndarray
    d_pc: np.ndarray
    # set by the later stages (lesions, sclerosis, extra anatomy, distractors, contrast)
    d_ost: np.ndarray | None = None
    d_def: np.ndarray | None = None
    bone0: np.ndarray | None = None  # bone before the osteophytes
    cart0: np.ndarray | None = None  # cartilage before the defects
    sclerosis: np.ndarray | None = None
    d_fib: np.ndarray | None = None
    d_men: np.ndarray | None = None
    d_lig: np.ndarray | None = None
    bml_w: np.ndarray | None = None
    d_fluid: np.ndarray | None = None

    @property
    def d_bone(self) -> np.ndarray:
        return np.minimum(self.d_fem, self.d_tib)

    @property
    def d_cart(self) -> np.ndarray:
        return np.minimum(self.d_fc, self.d_tc)

    @property
    def d_all_bone(self) -> np.ndarray:
        return np.minimum.reduce([self.d_bone, self.d_pat, self.d_fib])


def _pick(pair, medial: np.ndarray) -> np.ndarray:
    """The medial value of ``pair`` where ``medial``, else the lateral one (float32)."""
    return np.where(medial, np.float32(pair[0]), np.float32(pair[1]))


def _surfaces(p: KneeParams, shape: tuple[int, ...], spacing: tuple[float, ...]) -> _Surfaces:
    """Every structure's signed distance: bones and cartilage posed, then the planted lesions,
    the structures outside the OAI-ZIB labels and the distractors."""
    x, y, z = _grid(shape, spacing, p)
    h = float(np.prod(spacing) ** (1 / 3)) / p.scale
    centers, ays = _condyle_geometry(p.fem_cart_mm, p.tib_cart_mm, p.gap_mm, p.flattening, p.depression_mm)
    y_pivot = float(np.mean(centers))
    xf, yf, zf = _femur_frame(x, y, z, p, y_pivot)
    med, medf = x < 0, xf < 0
    tib_t, fem_t = _pick(p.tib_cart_mm, med), _pick(p.fem_cart_mm, medf)
    xc, xcf = _pick((X_MED, X_LAT), med), _pick((X_MED, X_LAT), medf)

    # Tibia: tapered elliptic column cut by the plateau surface (with eminence).
    eminence = EMINENCE[0] * np.exp(-((x / EMINENCE[1]) ** 2) - ((z / EMINENCE[2]) ** 2))
    top = _pick((Y_PLATEAU - p.depression_mm[0], Y_PLATEAU - p.depression_mm[1]), med) + eminence
    below = np.maximum(Y_PLATEAU - 4.0 - y, 0.0)
    tib_ax = np.maximum(TIB_AX - TIB_TAPER[0] * below, DIAPHYSIS_MIN_MM)
    tib_az = np.maximum(TIB_AZ - TIB_TAPER[1] * below, DIAPHYSIS_MIN_MM)
    d_side = _ellipse_sdf(x, z - TIB_Z, tib_ax, tib_az)
    d_tib = np.maximum(d_side, y - top)

    # Femur (femur frame): two condyle ellipsoids resting on their plates, joined to the shaft.
    yc, ay = _pick(centers, medf), _pick(ays, medf)
    d_cond = _ellipsoid_sdf(xf - xcf, yf - yc, zf - FEM_Z, FEM_AX, ay, FEM_AZ)
    d_fem = _smin(d_cond, _shaft_sdf(xf, yf, zf, min(centers)), 4.0)

    # Cartilage: a shell under each condyle, the trochlea, a plate on each tibial compartment.
    foot = _ellipse_sdf(x - xc, z - TIB_Z, CART_AX, CART_AZ)
    d_fc = np.maximum(np.maximum(-d_cond, d_cond - fem_t), yf - yc)
    troch_t = np.float32(p.fem_cart_mm[1])
    d_troch = np.maximum.reduce([-d_fem, d_fem - troch_t, zf - (FEM_Z - 12.0), np.abs(xf) - 22.0,
                                 min(centers) - 4.0 - yf, yf - (y_pivot + 30.0)])
    d_fc = np.minimum(d_fc, d_troch)
    d_tc = np.maximum(np.maximum(top - y, y - top - tib_t), foot)
    d_pat, d_pc = _patella_sdfs(xf, yf, zf, p, y_pivot)
    s = _Surfaces(
        x=x, y=y, z=z, femur_frame=(xf, yf, zf), h=h, y_pivot=y_pivot, eminence=eminence, d_side=d_side, foot=foot,
        d_fem_plain=d_fem, d_fem=d_fem, d_tib=d_tib, d_fc=d_fc, d_tc=d_tc, d_pat=d_pat, d_pc=d_pc,
    )
    _add_lesions(s, p, shape)
    s.sclerosis = _sclerosis(s, p, top, d_cond, yc, ay, shape)
    # The structures outside the OAI-ZIB labels: fibula, menisci, cruciate ligaments.
    s.d_fib = np.maximum(_fibula_sdf(x, y, z), -(s.d_tib + 1.0))
    s.d_men = np.maximum.reduce([_meniscus_sdf(x, y, z, p, top, tib_t, xc), -s.d_fem, -s.d_fc])
    s.d_lig = _ligaments_sdf(x, y, z, p, y_pivot)
    s.bml_w = _bml_weight(s, p, shape)
    return s


def _add_lesions(s: _Surfaces, p: KneeParams, shape: tuple[int, ...]) -> None:
    """Osteophytes join the bone they grow from; defects carve cartilage (femoral ones, above the
    plateau, move with the femur). Keeps the bone and cartilage from before them."""
    xf, yf, zf = s.femur_frame
    s.bone0 = np.minimum(s.d_fem, s.d_tib)
    s.d_ost = np.full(shape, np.inf, dtype=np.float32)
    for o in p.osteophytes:
        if o.bone == 1:  # femoral osteophytes move with the femur
            d = _sphere_sdf(xf, yf, zf, o.center, o.radius)
            s.d_fem = _smin(s.d_fem, d, 2.0)
        else:
            d = _sphere_sdf(s.x, s.y, s.z, o.center, o.radius)
            s.d_tib = _smin(s.d_tib, d, 2.0)
        s.d_ost = np.minimum(s.d_ost, d)
    s.d_def = np.full(shape, np.inf, dtype=np.float32)
    for df in p.defects:
        frame = s.femur_frame if df.center[1] > Y_PLATEAU + 0.5 * p.tib_cart_mm[0] + 0.5 else (s.x, s.y, s.z)
        s.d_def = np.minimum(s.d_def, _sphere_sdf(*frame, df.center, df.radius))
    s.cart0 = np.minimum(s.d_fc, s.d_tc)
    s.d_fc = np.maximum(s.d_fc, -s.d_def)
    s.d_tc = np.maximum(s.d_tc, -s.d_def)


def _sclerosis(s: _Surfaces, p: KneeParams, top, d_cond, yc, ay, shape) -> np.ndarray:
    """A band under the medial subchondral cortex of both bones (empty before late KL2)."""
    if p.sclerosis_mm <= 0:
        return np.zeros(shape, dtype=bool)
    xf, yf, _ = s.femur_frame
    band = p.cortex_mm + p.sclerosis_mm
    depth_t, depth_f = top - s.y, -d_cond
    scl_t = (depth_t > 0) & (depth_t < band) & (s.d_tib < 0) & (np.abs(s.x - X_MED) < FEM_AX)
    scl_f = (depth_f > 0) & (depth_f < band) & (yf < yc - 0.3 * ay) & (np.abs(xf - X_MED) < FEM_AX)
    return (scl_t | scl_f) & (s.bone0 < -p.cortex_mm)


def _bml_weight(s: _Surfaces, p: KneeParams, shape: tuple[int, ...]) -> np.ndarray:
    """0..strength: how far each marrow voxel's signal moves towards fluid in a bone-marrow lesion."""
    d_bml = np.full(shape, np.inf, dtype=np.float32)
    for c, radii, _ in p.bml:
        d_bml = np.minimum(d_bml, _ellipsoid_sdf(s.x - c[0], s.y - c[1], s.z - c[2], *radii))
    return _coverage(d_bml, s.h) * np.float32(p.bml[0][2] if p.bml else 0.0) * (s.d_bone < -p.cortex_mm)


def _contrast(s: _Surfaces, p: KneeParams, shape, spacing) -> np.ndarray:
    """DESS-like signal, painted back to front (leg, fat, fluid, ligaments, menisci, cartilage,
    bone), then the bias field, the motion ghost and Rician noise. Sets ``s.d_fluid``."""
    x, y, z, h = s.x, s.y, s.z, s.h
    xf, yf, zf = s.femur_frame
    air, fat, muscle, fluid, cart, marrow, cortex = p.intensities
    rng = np.random.default_rng(p.noise_seed)
    low = rng.normal(0.0, 1.0, (2, 6, 6, 6))
    tex = [_smooth_field(f, shape) for f in low]
    leg = _ellipse_sdf(x, z - LEG_Z, LEG_AX, LEG_AZ)
    img = air + (muscle * (1 + p.texture * tex[0]) - air) * _coverage(leg, h)
    img = img + (fat - img) * _coverage(-(leg + FAT_MM), h) * _coverage(leg, h)
    d_caps = _ellipsoid_sdf(x, y, z - CAPSULE[2], CAPSULE[0], p.effusion_mm, CAPSULE[1])
    d_pouch = _ellipsoid_sdf(xf, yf - (s.y_pivot + 30.0), zf - (SHAFT_Z - SHAFT_AZ - 3.0), 22.0,
                             1.2 * p.effusion_mm, 2.0 + 0.25 * p.effusion_mm)
    s.d_fluid = np.minimum(d_caps, d_pouch)
    img = img + (fluid - img) * np.maximum(_coverage(s.d_fluid, h), _coverage(s.d_def, h))
    img = img + (cortex - img) * _coverage(s.d_lig, h)
    men_signal = cortex + (0.5 * fluid - cortex) * p.meniscus_signal
    img = img + (men_signal - img) * _coverage(s.d_men, h)
    img = img + (cart * p.cartilage_signal - img) * _coverage(np.minimum(s.d_cart, s.d_pc), h)
    d_all_bone = s.d_all_bone
    bone_signal = marrow * (1 + p.texture * tex[1])
    if p.sclerosis_mm > 0:
        bone_signal = np.where(s.sclerosis, bone_signal + (cortex - bone_signal) * p.sclerosis_strength, bone_signal)
    bone_signal = bone_signal + (fluid - bone_signal) * s.bml_w
    bone_signal = bone_signal + (cortex - bone_signal) * _coverage(-(d_all_bone + p.cortex_mm), h)
    img = img + (bone_signal - img) * _coverage(d_all_bone, h)
    img = _bias_and_ghost(img, p, shape, spacing)
    n1 = rng.normal(0.0, p.noise_sigma, shape)
    n2 = rng.normal(0.0, p.noise_sigma, shape)
    return np.sqrt((img + n1) ** 2 + n2**2).astype(np.float32)


def _label_maps(s: _Surfaces, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The OAI-ZIB mask (labels 0-4), the lesion map and the extra anatomy (``ANATOMY_*``)."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[s.d_tc < 0] = 4
    mask[s.d_fc < 0] = 2
    mask[s.d_tib < 0] = 3
    mask[s.d_fem < 0] = 1
    lesion = np.zeros(shape, dtype=np.uint8)
    lesion[s.sclerosis] = LESION_SCLEROSIS
    lesion[(s.d_def < 0) & (s.cart0 < 0) & (s.d_bone >= 0)] = LESION_DEFECT
    lesion[(s.d_ost < 0) & (s.bone0 >= 0) & (s.d_bone < 0)] = LESION_OSTEOPHYTE
    anatomy = np.zeros(shape, dtype=np.uint8)
    anatomy[s.d_lig < 0] = ANATOMY_LIGAMENT
    anatomy[s.d_men < 0] = ANATOMY_MENISCUS
    anatomy[s.d_pc < 0] = ANATOMY_PATELLAR_CARTILAGE
    anatomy[s.d_pat < 0] = ANATOMY_PATELLA
    anatomy[s.d_fib < 0] = ANATOMY_FIBULA
    anatomy[(mask > 0) | (s.d_fc < 0)] = 0
    return mask, lesion, anatomy


def _evidence_map(s: _Surfaces, p: KneeParams, lesion: np.ndarray, shape) -> np.ndarray:
    """Distractor voxels first, then the grade-deciding findings over them (``EVIDENCE_*`` win)."""
    d_cart = s.d_cart
    evidence = np.zeros(shape, dtype=np.uint8)
    soft = (s.d_all_bone >= 0) & (d_cart >= 0) & (s.d_men >= 0) & (s.d_lig >= 0) & (s.d_pc >= 0)
    evidence[(s.d_fluid < 0) & soft] = DISTRACTOR_EFFUSION
    evidence[s.d_men < 0] = DISTRACTOR_MENISCUS
    evidence[s.bml_w > 0.5 * max(p.bml[0][2] if p.bml else 1.0, 1e-6)] = DISTRACTOR_BML
    jsn, cart_loss = _joint_space_evidence(p, s.h, *s.femur_frame, s.x, s.y, s.z, s.eminence, s.d_side, s.foot,
                                           s.d_fem_plain, s.d_tib, d_cart)
    evidence[cart_loss | (lesion == LESION_DEFECT)] = EVIDENCE_CARTILAGE
    evidence[jsn] = EVIDENCE_JSN
    evidence[s.sclerosis] = EVIDENCE_SCLEROSIS
    evidence[lesion == LESION_OSTEOPHYTE] = EVIDENCE_OSTEOPHYTE
    return evidence


def _shaft_sdf(xf, yf, zf, y_shaft: float) -> np.ndarray:
    """The femoral shaft above the lower condyle's centre (femur frame), tapering to the diaphysis."""
    above = np.maximum(yf - y_shaft, 0.0)
    shaft_ax = np.maximum(SHAFT_AX - SHAFT_TAPER * above, DIAPHYSIS_MIN_MM)
    shaft_az = np.maximum(SHAFT_AZ - 0.1 * above, DIAPHYSIS_MIN_MM)
    return np.maximum(_ellipse_sdf(xf, zf - SHAFT_Z, shaft_ax, shaft_az), y_shaft - yf)


def _patella_sdfs(xf, yf, zf, p: KneeParams, y_pivot: float) -> tuple[np.ndarray, np.ndarray]:
    """Patella and its cartilage (femur frame), anterior of the trochlea across the patellofemoral
    gap; in flexion the patella slides distally along the trochlea."""
    fem0 = _healthy(p)[0][1]
    thick = fem0 / (p.exaggeration * REAL_FEM_CART_MM)
    pat_t = p.exaggeration * REAL_PAT_CART_MM * thick
    gap = _healthy(p)[2][1]
    z_back = SHAFT_Z - SHAFT_AZ - p.fem_cart_mm[1] - gap - pat_t
    center = (0.0, y_pivot + PATELLA_ABOVE_MM - 0.4 * p.flexion_deg, z_back - PATELLA[2])
    d_pat = _ellipsoid_sdf(xf - center[0], yf - center[1], zf - center[2], *PATELLA)
    d_pc = np.maximum.reduce([-d_pat, d_pat - np.float32(pat_t), np.float32(center[2] + 0.3 * PATELLA[2]) - zf])
    return d_pat, d_pc


def _fibula_sdf(x, y, z) -> np.ndarray:
    """Fibular head (posterolateral, below the plateau) and the top of its shaft."""
    fx, fy, fz, r_head, r_shaft = FIBULA
    head = _sphere_sdf(x, y, z, (fx, fy, fz), r_head)
    shaft = np.maximum(np.sqrt((x - fx) ** 2 + (z - fz) ** 2) - r_shaft, y - fy)
    return _smin(head, shaft, 3.0)


def _meniscus_sdf(x, y, z, p: KneeParams, top, tib_t, xc) -> np.ndarray:
    """Medial and lateral menisci: wedges (height falling from the rim inwards) on each tibial
    plate's periphery; the medial one extrudes medially with ``meniscus_extrusion_mm``."""
    xm = xc - np.where(x < 0, np.float32(p.meniscus_extrusion_mm), np.float32(0.0))
    rim = _ellipse_sdf(x - xm, z - TIB_Z, *MENISCUS_RIM)  # < 0 inside the outer rim
    js = np.where(x < 0, np.float32(sum(pair[0] for pair in (p.fem_cart_mm, p.tib_cart_mm, p.gap_mm))),
                  np.float32(sum(pair[1] for pair in (p.fem_cart_mm, p.tib_cart_mm, p.gap_mm))))
    height = (js + 2.0) * np.clip(1.0 + rim / MENISCUS_WIDTH_MM, 0.0, 1.0)
    base = top + tib_t
    return np.maximum.reduce([rim, -MENISCUS_WIDTH_MM - rim, base - y, y - base - height])


def _ligaments_sdf(x, y, z, p: KneeParams, y_pivot: float) -> np.ndarray:
    """Anterior and posterior cruciate ligaments: low-signal bands across the notch, from the
    tibia to the inner walls of the lateral (ACL) and medial (PCL) condyles."""
    acl = (np.array([3.0, Y_PLATEAU + 2.0, TIB_Z - 8.0]), _to_tibial_frame((7.0, y_pivot - 4.0, FEM_Z + 14.0), p, y_pivot))
    pcl = (np.array([-1.0, Y_PLATEAU - 4.0, TIB_Z + 20.0]), _to_tibial_frame((-7.0, y_pivot - 6.0, FEM_Z - 4.0), p, y_pivot))
    return np.minimum(_segment_sdf(x, y, z, *acl, LIGAMENT_MM), _segment_sdf(x, y, z, *pcl, LIGAMENT_MM))


def _bias_and_ghost(img: np.ndarray, p: KneeParams, shape, spacing) -> np.ndarray:
    """Smooth multiplicative coil bias field over normalised coordinates, then a motion ghost
    (a shifted faint copy along W, the phase-encoding direction)."""
    u = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    U = [u[0][:, None, None], u[1][None, :, None], u[2][None, None, :]]
    b = p.bias
    log_bias = b[0] * U[0] + b[1] * U[1] + b[2] * U[2] + b[3] * U[0] ** 2 + b[4] * U[1] ** 2 + b[5] * U[2] ** 2
    log_bias = log_bias + b[6] * U[0] * U[1] + b[7] * U[1] * U[2] + b[8] * U[0] * U[2]
    img = img * np.exp(log_bias)
    amplitude, shift_mm = p.ghost
    if amplitude > 0:
        img = (1 - amplitude) * img + amplitude * np.roll(img, int(round(shift_mm / spacing[2])), axis=2)
    return img


def _joint_space_evidence(p: KneeParams, h: float, xf, yf, zf, x, y, z, eminence, d_side, foot, d_fem, d_tib, d_cart):
    """Voxels of planted joint-space narrowing (bone where the healthy knee had none, or none
    where it had bone: condyle descent, flattening, plateau depression) and of cartilage loss
    (healthy cartilage that is no longer cartilage), both against this knee's healthy geometry and
    only where the change moved more than half of a voxel's content (``h``: voxel size, mm)."""
    fem0, tib0, gap0 = _healthy(p)
    centers, ays = _condyle_geometry(p.fem_cart_mm, p.tib_cart_mm, p.gap_mm, p.flattening, p.depression_mm)
    centers0, ays0 = _condyle_geometry(fem0, tib0, gap0, (0.0, 0.0), (0.0, 0.0))
    medf = xf < 0
    pick = lambda pair, m: np.where(m, np.float32(pair[0]), np.float32(pair[1]))  # noqa: E731
    yc0, ay0 = pick(centers0, medf), pick(ays0, medf)
    xcf = pick((X_MED, X_LAT), medf)
    d_cond0 = _ellipsoid_sdf(xf - xcf, yf - yc0, zf - FEM_Z, FEM_AX, ay0, FEM_AZ)
    d_fem0 = _smin(d_cond0, _shaft_sdf(xf, yf, zf, min(centers0)), 4.0)
    top0 = Y_PLATEAU + eminence
    d_tib0 = np.maximum(d_side, y - top0)
    d_fc0 = np.maximum(np.maximum(-d_cond0, d_cond0 - pick(fem0, medf)), yf - yc0)
    d_tc0 = np.maximum(np.maximum(top0 - y, y - top0 - pick(tib0, x < 0)), foot)
    top_now = Y_PLATEAU - np.where(x < 0, np.float32(p.depression_mm[0]), np.float32(p.depression_mm[1]))
    near = (foot < 2.0) & (y > top_now + eminence - 3.0 * p.cortex_mm) & (yf < yc0 - 0.6 * ay0)  # the contact zone
    # A voxel counts when the change moved at least half of its content (partial volume).
    bone_change = _coverage(np.minimum(d_fem, d_tib), h) - _coverage(np.minimum(d_fem0, d_tib0), h)
    jsn = near & (np.abs(bone_change) > 0.5)
    cart_loss = near & (_coverage(np.minimum(d_fc0, d_tc0), h) - _coverage(d_cart, h) > 0.5) & ~jsn
    return jsn, cart_loss
