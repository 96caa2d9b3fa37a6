"""A synthetic 3D DESS-like knee whose pathology follows a continuous latent OA severity.

The phantom is rendered directly on a ``(D, H, W)`` grid (``D`` sagittal slice axis =
medial-lateral, ``H`` superior -> inferior, ``W`` anterior -> posterior; see
``book/architecture.md``) from implicit surfaces (approximate signed distances in mm) of:
the distal femur (shaft plus medial and lateral condyles, with the intercondylar notch between
them), the proximal tibia (plateau with intercondylar eminence), femoral and tibial cartilage
plates in both compartments, joint fluid between and around them, and the soft tissue of the
leg. Edges are partial-volume weighted so that downsampling behaves like a real scan.
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

Sizes are deliberately EXAGGERATED so that the findings survive the book's model input
(default: 48^3 at 2 mm, resized to 32^3, i.e. 3 mm voxels): healthy cartilage is 4-4.5 mm
thick (real 1.6-2.4 mm), the healthy medial bone-to-bone joint space is about 10 mm (real
about 5 mm), osteophyte radii grow from about 2.5 mm (KL1) to about 8.5 mm (KL4) (real: 1-5
mm), the subchondral cortex is 2.5 mm, and sclerosis bands reach 6 mm. The field of view is
the cube around the joint given by ``shape * spacing`` (96 mm in the presets); anatomy is
described in mm, so any shape/spacing renders the same knee.

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

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

#: Bumped whenever the renderer or the sampler changes what a given seed produces.
#: "2": the bone tapers stop at ``DIAPHYSIS_MIN_MM``; this changes only fields of view reaching
#: past about 110 mm from the joint (the presets' volumes are byte-identical to "1").
PHANTOM_VERSION = "2"

MAX_SEVERITY = 5.0

# Lesion codes in the lesion mask (0 = none).
LESION_OSTEOPHYTE = 1
LESION_DEFECT = 2
LESION_SCLEROSIS = 3

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
CORTEX_MM = 2.5
LEG_AX, LEG_AZ, LEG_Z, FAT_MM = 58.0, 54.0, 4.0, 6.0
CAPSULE = (36.0, 28.0, 2.0)  # joint capsule (fluid) x and z semi-axes, centre z

# Healthy sizes (mm), exaggerated about 2x; see the module docstring.
FEM_CART_MM, TIB_CART_MM, GAP_MM = 4.5, 4.0, 1.5


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

    def __post_init__(self) -> None:
        if self.side not in ("R", "L"):
            raise ValueError(f"KneeParams.side = {self.side!r}; expected 'R' or 'L'")
        if not 0 <= self.severity < MAX_SEVERITY:
            raise ValueError(f"KneeParams.severity = {self.severity!r}; expected a value in [0, 5)")


@dataclass
class Knee:
    """A rendered knee: image (float32), mask (uint8 labels 0-4) and lesion map (uint8 codes)."""

    image: np.ndarray
    mask: np.ndarray
    lesion: np.ndarray
    params: KneeParams = field(repr=False)


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


def sample_knee_params(rng: np.random.Generator, severity: float, side: Literal["R", "L"]) -> KneeParams:
    """Draw the anatomy, pose, contrast and severity-driven pathology of one knee.

    Args:
        rng: the only source of randomness (same state -> same parameters).
        severity: latent severity in [0, 5); see :func:`severity_from_uniform`.
        side: ``"R"`` or ``"L"``.
    """
    s = float(severity)
    if not 0 <= s < MAX_SEVERITY:
        raise ValueError(f"severity = {severity!r}; expected a value in [0, 5)")
    if side not in ("R", "L"):
        raise ValueError(f"side = {side!r}; expected 'R' or 'L'")

    # Healthy anatomy and pose.
    scale = float(np.clip(rng.normal(1.0, 0.05), 0.88, 1.12))
    rotation = tuple(float(v) for v in np.clip(rng.normal(0.0, 3.0, 3), -6, 6))
    shift = tuple(float(v) for v in np.clip(rng.normal(0.0, 2.0, 3), -4, 4))
    thick = float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.2))

    # Joint-space narrowing: mostly medial; doubtful at KL1, definite at KL3, marked at KL4.
    loss_med = _interp(s, [0, 1, 2, 3, 4, 5], [0.0, 0.03, 0.12, 0.38, 0.66, 0.85])
    loss_med = float(np.clip(loss_med + rng.normal(0, 0.05), 0.0, 0.92))
    loss_lat = _interp(s, [0, 3, 5], [0.0, 0.04, 0.25])
    loss_lat = float(np.clip(loss_lat + rng.normal(0, 0.03), 0.0, 0.6))
    fem = tuple(FEM_CART_MM * thick * (1 - l) for l in (loss_med, loss_lat))
    tib = tuple(TIB_CART_MM * thick * (1 - l) for l in (loss_med, loss_lat))
    gap = tuple(GAP_MM * float(np.clip(rng.normal(1.0, 0.15), 0.6, 1.4)) * (1 - l) for l in (loss_med, loss_lat))

    # Deformity at the top grades: medial bone-end flattening and plateau depression.
    deform = _interp(s, [0, 3.5, 5], [0.0, 0.0, 1.0]) * float(rng.uniform(0.7, 1.3))
    flattening = (0.3 * deform, 0.05 * deform)
    depression = (2.5 * deform, 0.5 * deform)
    centers, ays = _condyle_geometry(fem, tib, gap, flattening, depression)

    # Subchondral sclerosis (medial), from late KL2 on.
    sclerosis_mm = _interp(s, [0, 2.5, 3, 4, 5], [0.0, 0.0, 2.5, 4.5, 6.0]) * float(rng.uniform(0.8, 1.2))
    sclerosis_strength = _interp(s, [2.5, 5], [0.4, 0.75]) if sclerosis_mm > 0 else 0.0

    # Marginal osteophytes: number and size grow with severity; medial sites preferred.
    lam = _interp(s, [0, 1, 2, 3, 4, 5], [0.0, 0.0, 1.5, 3.0, 4.5, 6.0])
    n_ost = int(rng.poisson(lam))
    n_ost = max(n_ost, 1 if s >= 2 else 0, 2 if s >= 3 else 0)  # KL2 definite, KL3 multiple
    if 1 <= s < 2 and rng.random() < 0.5 * (s - 1):
        n_ost = max(n_ost, 1)  # KL1: possible osteophytic lipping
    sites = _rim_sites({"depression_mm": depression, "condyle_center_y": centers, "condyle_ay": ays})
    weights = np.array([2.0 if med else 1.0 for *_, med in sites])
    n_ost = min(n_ost, len(sites))
    chosen = rng.choice(len(sites), size=n_ost, replace=False, p=weights / weights.sum()) if n_ost else []
    mean_r = _interp(s, [1, 2, 3, 4, 5], [2.5, 3.5, 4.5, 6.5, 8.5])
    osteophytes = []
    for i in sorted(int(c) for c in chosen):
        point, normal, bone, _ = sites[i]
        r = mean_r * float(rng.uniform(0.8, 1.2))
        jitter = rng.normal(0.0, 2.0, 3) * (normal == 0)  # slide along the rim
        n = normal / np.linalg.norm(normal)
        center = point + jitter + n * 0.35 * r
        osteophytes.append(Osteophyte(tuple(float(v) for v in center), float(r), bone))

    # Focal cartilage defects on the weight-bearing surfaces (mostly medial).
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
        defects.append(Defect((xc, y, z), float(rng.uniform(3.0, 5.0))))

    effusion = float(np.clip(6.0 + 0.8 * s + rng.normal(0, 1.0), 4.0, 14.0))

    # Contrast: tissue levels, gain, smooth bias field and noise.
    base = np.array([0.02, 0.12, 0.28, 1.0, 0.72, 0.42, 0.06])
    levels = base * rng.normal(1.0, 0.05, base.size) * float(rng.lognormal(0.0, 0.15))
    bias = np.concatenate([rng.normal(0, 0.15, 3), rng.normal(0, 0.08, 6)])
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
        effusion_mm=effusion,
        osteophytes=tuple(osteophytes),
        defects=tuple(defects),
        intensities=tuple(float(v) for v in levels),
        bias=tuple(float(v) for v in bias),
        noise_sigma=float(rng.uniform(0.02, 0.05)),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
        texture=float(rng.uniform(0.03, 0.07)),
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
        (world[2] - t[2])[None, None, :],
    ]
    out = []
    for i in range(3):  # p_canon = R^T (p_world - t) / scale
        c = (R[0, i] * rel[0] + R[1, i] * rel[1] + R[2, i] * rel[2]) / params.scale
        out.append(np.broadcast_to(c, shp).astype(np.float32))
    return out


def render_knee(
    params: KneeParams, shape: Sequence[int] = (48, 48, 48), spacing: Sequence[float] = (2.0, 2.0, 2.0)
) -> Knee:
    """Render a knee deterministically on a ``shape`` grid with voxel ``spacing`` (mm).

    Returns:
        :class:`Knee` with ``image`` float32, ``mask`` uint8 (0 background, 1 femur, 2 femoral
        cartilage, 3 tibia, 4 tibial cartilage) and ``lesion`` uint8 (1 osteophyte, 2
        cartilage defect, 3 subchondral sclerosis).
    """
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(v) for v in spacing)
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"shape = {shape}; expected 3 sizes >= 2")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing = {spacing}; expected 3 positive voxel sizes in mm")
    p = params
    x, y, z = _grid(shape, spacing, p)
    h = float(np.prod(spacing) ** (1 / 3)) / p.scale  # voxel size in canonical mm
    med = x < 0
    pick = lambda pair: np.where(med, np.float32(pair[0]), np.float32(pair[1]))  # noqa: E731

    fem_t, tib_t = pick(p.fem_cart_mm), pick(p.tib_cart_mm)
    centers, ays = _condyle_geometry(p.fem_cart_mm, p.tib_cart_mm, p.gap_mm, p.flattening, p.depression_mm)
    xc = np.where(med, np.float32(X_MED), np.float32(X_LAT))

    # Tibia: tapered elliptic column cut by the plateau surface (with eminence).
    top = pick((Y_PLATEAU - p.depression_mm[0], Y_PLATEAU - p.depression_mm[1]))
    top = top + EMINENCE[0] * np.exp(-((x / EMINENCE[1]) ** 2) - ((z / EMINENCE[2]) ** 2))
    below = np.maximum(Y_PLATEAU - 4.0 - y, 0.0)
    tib_ax = np.maximum(TIB_AX - TIB_TAPER[0] * below, DIAPHYSIS_MIN_MM)
    tib_az = np.maximum(TIB_AZ - TIB_TAPER[1] * below, DIAPHYSIS_MIN_MM)
    d_side = _ellipse_sdf(x, z - TIB_Z, tib_ax, tib_az)
    d_tib = np.maximum(d_side, y - top)

    # Femur: two condyle ellipsoids resting on their plates, smoothly joined to the shaft.
    yc, ay = pick(centers), pick(ays)
    d_cond = _ellipsoid_sdf(x - xc, y - yc, z - FEM_Z, FEM_AX, ay, FEM_AZ)
    y_shaft = min(centers)  # the shaft reaches the lower condyle, so none detaches
    above = np.maximum(y - y_shaft, 0.0)
    shaft_ax = np.maximum(SHAFT_AX - SHAFT_TAPER * above, DIAPHYSIS_MIN_MM)
    shaft_az = np.maximum(SHAFT_AZ - 0.1 * above, DIAPHYSIS_MIN_MM)
    d_shaft = np.maximum(_ellipse_sdf(x, z - SHAFT_Z, shaft_ax, shaft_az), y_shaft - y)
    d_fem = _smin(d_cond, d_shaft, 4.0)

    # Cartilage: a shell under each condyle and a plate on each tibial compartment.
    d_fc = np.maximum(np.maximum(-d_cond, d_cond - fem_t), y - yc)
    d_tc = np.maximum(np.maximum(top - y, y - top - tib_t), _ellipse_sdf(x - xc, z - TIB_Z, CART_AX, CART_AZ))

    # Lesions: osteophytes join the bone they grow from; defects carve cartilage.
    bone0 = np.minimum(d_fem, d_tib)
    d_ost = np.full(shape, np.inf, dtype=np.float32)
    for o in p.osteophytes:
        c = o.center
        d = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) - o.radius
        d_ost = np.minimum(d_ost, d)
        if o.bone == 1:
            d_fem = _smin(d_fem, d, 2.0)
        else:
            d_tib = _smin(d_tib, d, 2.0)
    d_def = np.full(shape, np.inf, dtype=np.float32)
    for df in p.defects:
        c = df.center
        d_def = np.minimum(d_def, np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) - df.radius)
    cart0 = np.minimum(d_fc, d_tc)
    d_fc = np.maximum(d_fc, -d_def)
    d_tc = np.maximum(d_tc, -d_def)
    d_bone = np.minimum(d_fem, d_tib)
    d_cart = np.minimum(d_fc, d_tc)

    # Sclerosis: a band under the medial subchondral cortex of both bones.
    if p.sclerosis_mm > 0:
        depth_t = top - y
        depth_f = -d_cond
        band = CORTEX_MM + p.sclerosis_mm
        in_med = np.abs(x - X_MED) < FEM_AX
        scl_t = (depth_t > 0) & (depth_t < band) & (d_tib < 0) & in_med
        scl_f = (depth_f > 0) & (depth_f < band) & (y < yc - 0.3 * ay) & in_med
        sclerosis = (scl_t | scl_f) & (bone0 < -CORTEX_MM)
    else:
        sclerosis = np.zeros(shape, dtype=bool)

    # Contrast.
    air, fat, muscle, fluid, cart, marrow, cortex = p.intensities
    rng = np.random.default_rng(p.noise_seed)
    low = rng.normal(0.0, 1.0, (2, 6, 6, 6))
    tex = [_smooth_field(f, shape) for f in low]
    leg = _ellipse_sdf(x, z - LEG_Z, LEG_AX, LEG_AZ)
    img = air + (muscle * (1 + p.texture * tex[0]) - air) * _coverage(leg, h)
    img = img + (fat - img) * _coverage(-(leg + FAT_MM), h) * _coverage(leg, h)
    d_caps = _ellipsoid_sdf(x, y, z - CAPSULE[2], CAPSULE[0], p.effusion_mm, CAPSULE[1])
    img = img + (fluid - img) * np.maximum(_coverage(d_caps, h), _coverage(d_def, h))
    img = img + (cart - img) * _coverage(d_cart, h)
    bone_signal = marrow * (1 + p.texture * tex[1])
    if p.sclerosis_mm > 0:
        bone_signal = np.where(sclerosis, bone_signal + (cortex - bone_signal) * p.sclerosis_strength, bone_signal)
    bone_signal = bone_signal + (cortex - bone_signal) * _coverage(-(d_bone + CORTEX_MM), h)
    img = img + (bone_signal - img) * _coverage(d_bone, h)

    # Smooth multiplicative bias field over normalised coordinates, then Rician noise.
    u = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    U = [u[0][:, None, None], u[1][None, :, None], u[2][None, None, :]]
    b = p.bias
    log_bias = b[0] * U[0] + b[1] * U[1] + b[2] * U[2] + b[3] * U[0] ** 2 + b[4] * U[1] ** 2 + b[5] * U[2] ** 2
    log_bias = log_bias + b[6] * U[0] * U[1] + b[7] * U[1] * U[2] + b[8] * U[0] * U[2]
    img = img * np.exp(log_bias)
    n1 = rng.normal(0.0, p.noise_sigma, shape)
    n2 = rng.normal(0.0, p.noise_sigma, shape)
    image = np.sqrt((img + n1) ** 2 + n2**2).astype(np.float32)

    mask = np.zeros(shape, dtype=np.uint8)
    mask[d_tc < 0] = 4
    mask[d_fc < 0] = 2
    mask[d_tib < 0] = 3
    mask[d_fem < 0] = 1
    lesion = np.zeros(shape, dtype=np.uint8)
    lesion[sclerosis] = LESION_SCLEROSIS
    lesion[(d_def < 0) & (cart0 < 0) & (d_bone >= 0)] = LESION_DEFECT
    lesion[(d_ost < 0) & (bone0 >= 0) & (d_bone < 0)] = LESION_OSTEOPHYTE

    if p.side == "L":  # the mirror image along the medial-lateral (D) axis
        image, mask, lesion = (np.ascontiguousarray(a[::-1]) for a in (image, mask, lesion))
    return Knee(image=image, mask=mask, lesion=lesion, params=p)
