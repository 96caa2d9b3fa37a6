"""Tests of the synthetic knee phantom: determinism, labels, KL-driven pathology, mirroring."""

import dataclasses

import numpy as np
import pytest
from scipy.stats import spearmanr

from oaprobe.config import PRESETS, get_preset
from oaprobe.data import phantom
from oaprobe.data.labels import KL_PRIOR_OAI, KL_PRIOR_OAIZIB
from oaprobe.data.phantom import (
    LESION_OSTEOPHYTE,
    X_MED,
    KneeParams,
    kl_from_severity,
    render_knee,
    sample_knee_params,
    severity_from_uniform,
)

SHAPE, SPACING = (48, 48, 48), (2.0, 2.0, 2.0)
SEVERITIES = [0.5, 1.5, 2.5, 3.5, 4.5]
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def graded_knees():
    """(kl, params, knee) for 3 right knees per clean KL grade, at the default preset's grid."""
    out = []
    for s in SEVERITIES:
        for seed in SEEDS:
            params = sample_knee_params(np.random.default_rng(seed), s, "R")
            out.append((int(kl_from_severity(s)), params, render_knee(params, SHAPE, SPACING)))
    return out


def _medial_columns(mask: np.ndarray) -> tuple[slice, slice]:
    """D and W index ranges of the central medial compartment of a right knee (+-6 mm)."""
    d0 = int(round((mask.shape[0] - 1) / 2 + X_MED / SPACING[0]))
    w0 = (mask.shape[2] - 1) // 2
    r = int(6 / SPACING[0])
    return slice(d0 - r, d0 + r + 1), slice(w0 - r, w0 + r + 1)


def medial_jsw_mm(mask: np.ndarray) -> float:
    """Mean bone-to-bone gap (mm) between femur (1) and tibia (3) in the medial columns."""
    ds, ws = _medial_columns(mask)
    widths = []
    for d in range(mask.shape[0])[ds]:
        for w in range(mask.shape[2])[ws]:
            col = mask[d, :, w]
            fem, tib = np.flatnonzero(col == 1), np.flatnonzero(col == 3)
            if fem.size and tib.size and tib.min() > fem.max():
                widths.append((tib.min() - fem.max() - 1) * SPACING[1])
    return float(np.mean(widths))


def medial_cartilage_mm3(mask: np.ndarray) -> float:
    ds, ws = _medial_columns(mask)
    sub = mask[ds, :, ws]
    return float(np.isin(sub, (2, 4)).sum() * np.prod(SPACING))


def test_sampling_and_rendering_are_deterministic():
    a = sample_knee_params(np.random.default_rng(3), 3.2, "L")
    b = sample_knee_params(np.random.default_rng(3), 3.2, "L")
    assert a == b
    ka, kb = render_knee(a, (24, 24, 24), (4.0, 4.0, 4.0)), render_knee(b, (24, 24, 24), (4.0, 4.0, 4.0))
    assert np.array_equal(ka.image, kb.image)
    assert np.array_equal(ka.mask, kb.mask)
    assert np.array_equal(ka.lesion, kb.lesion)


@pytest.mark.parametrize("shape,spacing", [((24, 24, 24), (4.0,) * 3), ((32, 32, 32), (3.0,) * 3), (SHAPE, SPACING)])
@pytest.mark.parametrize("severity", [0.0, 4.99])
def test_mask_has_exactly_the_five_labels(shape, spacing, severity):
    params = sample_knee_params(np.random.default_rng(5), severity, "R")
    knee = render_knee(params, shape, spacing)
    assert knee.mask.dtype == np.uint8 and knee.lesion.dtype == np.uint8
    assert knee.image.dtype == np.float32 and knee.image.shape == tuple(shape)
    assert set(np.unique(knee.mask).tolist()) == {0, 1, 2, 3, 4}
    assert np.isfinite(knee.image).all() and knee.image.min() >= 0


def test_left_knee_is_the_mirror_image_of_the_right():
    right = sample_knee_params(np.random.default_rng(9), 3.7, "R")
    left = dataclasses.replace(right, side="L")
    kr, kl = render_knee(right, SHAPE, SPACING), render_knee(left, SHAPE, SPACING)
    assert np.array_equal(kl.image, kr.image[::-1])
    assert np.array_equal(kl.mask, kr.mask[::-1])
    assert np.array_equal(kl.lesion, kr.lesion[::-1])


def test_medial_joint_space_narrows_with_kl(graded_knees):
    kl = [k for k, _, _ in graded_knees]
    jsw = [medial_jsw_mm(knee.mask) for _, _, knee in graded_knees]
    assert spearmanr(kl, jsw).statistic < -0.8
    by_grade = [np.mean([j for k, j in zip(kl, jsw) if k == g]) for g in range(5)]
    assert by_grade[0] >= 8.0  # exaggerated healthy JSW, about 10 mm
    assert by_grade[4] <= 0.5 * by_grade[0]  # marked JSN
    assert all(a > b for a, b in zip(by_grade[1:], by_grade[2:]))


def test_medial_cartilage_thins_with_kl(graded_knees):
    kl = [k for k, _, _ in graded_knees]
    vol = [medial_cartilage_mm3(knee.mask) for _, _, knee in graded_knees]
    assert spearmanr(kl, vol).statistic < -0.8


def test_lesions_grow_with_kl(graded_knees):
    kl = [k for k, _, _ in graded_knees]
    ost = [int((knee.lesion == LESION_OSTEOPHYTE).sum()) for _, _, knee in graded_knees]
    total = [int((knee.lesion > 0).sum()) for _, _, knee in graded_knees]
    assert spearmanr(kl, ost).statistic > 0.8
    assert spearmanr(kl, total).statistic > 0.8
    assert sum(t for k, t in zip(kl, total) if k == 0) == 0
    assert all(o > 0 for k, o in zip(kl, ost) if k >= 2)  # KL2: definite osteophytes


def test_osteophytes_count_and_size_grow_with_severity():
    rng = np.random.default_rng(0)
    n = {g: [] for g in range(5)}
    r = {g: [] for g in range(5)}
    for _ in range(40):
        for g in range(5):
            p = sample_knee_params(rng, g + 0.5, "R")
            n[g].append(len(p.osteophytes))
            r[g] += [o.radius for o in p.osteophytes]
    means = [np.mean(n[g]) for g in range(5)]
    assert means[0] == 0 and all(a < b for a, b in zip(means, means[1:]))
    assert min(n[3]) >= 2  # KL3: multiple
    assert np.mean(r[4]) > np.mean(r[2]) + 2.0  # KL4: large


@pytest.mark.parametrize("prior", [KL_PRIOR_OAI, KL_PRIOR_OAIZIB])
def test_severity_reaches_the_prior(prior):
    u = (np.arange(100_000) + 0.5) / 100_000
    s = severity_from_uniform(u, prior)
    assert (np.diff(s) >= 0).all() and s.min() >= 0 and s.max() < 5
    freq = np.bincount(kl_from_severity(s), minlength=5) / s.size
    assert np.allclose(freq, prior, atol=1e-3)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="severity"):
        sample_knee_params(np.random.default_rng(0), 5.0, "R")
    with pytest.raises(ValueError, match="side"):
        KneeParams(side="X", severity=1.0)
    with pytest.raises(ValueError, match="spacing"):
        render_knee(KneeParams(side="R", severity=1.0), (16, 16, 16), (0.0, 1.0, 1.0))


# Grids: three whose field of view reaches past the tapering bone ends (the bug report's cohort
# grid first) and the default preset's. Knees: before the diaphysis floor each put one voxel
# exactly where a tapered semi-axis was zero (a NaN): seed 7 on the first grid, 44 and 134 on
# the second.
LARGE_FOV_GRIDS = [
    ((80, 128, 128), (3.0, 3.0, 3.0)),
    ((20, 64, 64), (12.0, 6.0, 6.0)),
    ((40, 200, 40), (3.0, 2.0, 3.0)),
    (SHAPE, SPACING),
]
NAN_KNEES = [(7, 0.3, "R"), (44, 1.28, "L"), (134, 4.58, "L")]


@pytest.mark.parametrize("shape,spacing", LARGE_FOV_GRIDS)
@pytest.mark.parametrize("seed,severity,side", NAN_KNEES)
def test_image_is_finite_for_any_field_of_view(shape, spacing, seed, severity, side):
    knee = render_knee(sample_knee_params(np.random.default_rng(seed), severity, side), shape, spacing)
    assert np.isfinite(knee.image).all()


def test_bone_shafts_taper_but_never_vanish_or_widen_again():
    """Far from the joint the tibia and femur keep a constant cross-section (no hourglass)."""
    knee = render_knee(KneeParams(side="R", severity=0.0), (16, 64, 16), (8.0, 6.0, 8.0))
    area = {label: (knee.mask == label).sum(axis=(0, 2)) for label in (1, 3)}
    fem_rows = np.flatnonzero(area[1])
    tib_rows = np.flatnonzero(area[3])
    # Both bones reach the edge of the 384 mm field of view (H runs superior -> inferior).
    assert fem_rows[0] == 0 and tib_rows[-1] == knee.mask.shape[1] - 1
    # Going away from the joint, the cross-section never grows.
    shaft = area[1][: fem_rows[0] + 20]
    assert (np.diff(shaft) >= 0).all(), shaft.tolist()
    column = area[3][tib_rows[-1] - 20 :]
    assert (np.diff(column) <= 0).all(), column.tolist()


@pytest.mark.parametrize("preset", PRESETS)
def test_diaphysis_floor_leaves_the_preset_grids_unchanged(preset, monkeypatch):
    """In the presets' fields of view the floor changes nothing: their volumes (and the cohort
    cache) stay exactly what the renderer gave before the floor existed."""
    cohort = get_preset(preset).cohort
    base = sample_knee_params(np.random.default_rng(9), 4.99, "R")
    extreme = dict(  # smallest knee, most deformity, thinnest joint space: lowest femoral shaft
        scale=0.88, flattening=(0.39, 0.065), depression_mm=(3.25, 0.65),
        fem_cart_mm=(0.3, 0.3), tib_cart_mm=(0.26, 0.26), gap_mm=(0.07, 0.07),
    )
    poses = [  # the sampler's extreme rotations and shifts that bring each shaft furthest into view
        ((6.0, 6.0, -6.0), (4.0, -4.0, 4.0)),
        ((6.0, 6.0, -6.0), (-4.0, 4.0, -4.0)),
        ((-6.0, -6.0, -6.0), (4.0, -4.0, -4.0)),
        ((-6.0, -6.0, -6.0), (-4.0, 4.0, 4.0)),
    ]
    knees = [dataclasses.replace(base, rotation_deg=r, shift_mm=t, **extreme) for r, t in poses]
    floored = [render_knee(k, cohort.shape, cohort.spacing) for k in knees]
    monkeypatch.setattr(phantom, "DIAPHYSIS_MIN_MM", -np.inf)
    for k, a in zip(knees, floored):
        b = render_knee(k, cohort.shape, cohort.spacing)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)


@pytest.mark.slow
def test_clean_kl_is_learnable_but_not_trivially():
    """PCA + logistic regression on block-averaged 24^3 volumes: QWK well above 0, below 1."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import cohen_kappa_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    n = 240
    sev = severity_from_uniform(rng.random(n), KL_PRIOR_OAIZIB)
    X = []
    for i, s in enumerate(sev):
        side = "R" if rng.random() < 0.5 else "L"
        img = render_knee(sample_knee_params(np.random.default_rng(1000 + i), s, side), SHAPE, SPACING).image
        small = img.reshape(24, 2, 24, 2, 24, 2).mean(axis=(1, 3, 5))
        X.append(((small - small.mean()) / small.std()).ravel())
    y = kl_from_severity(sev)
    clf = make_pipeline(StandardScaler(), PCA(30, random_state=0), LogisticRegression(C=0.1, max_iter=5000))
    pred = cross_val_predict(clf, np.array(X), y, cv=5)
    qwk = cohen_kappa_score(y, pred, weights="quadratic")
    print(f"PCA(30)+logistic clean-KL QWK = {qwk:.3f}, accuracy = {np.mean(pred == y):.3f}")
    assert 0.4 < qwk < 0.95
    assert np.mean(pred == y) < 0.9


# ----------------------------------------------------------------------------- phantom v3
def test_size_factor_is_real_at_fine_spacing_and_doubled_at_the_coarse_presets():
    expected = {"smoke": 2.0, "course": 2.0, "default": 2.0, "gpu": 1.5, "paper": 1.0}
    for preset, factor in expected.items():
        assert phantom.size_factor(get_preset(preset).cohort.spacing) == pytest.approx(factor, abs=1e-9)


def test_thin_sizes_follow_the_exaggeration_and_nothing_else_does():
    real = sample_knee_params(np.random.default_rng(4), 3.5, "R", exaggeration=1.0)
    coarse = sample_knee_params(np.random.default_rng(4), 3.5, "R", exaggeration=2.0)
    for name in ("fem_cart_mm", "tib_cart_mm", "gap_mm"):
        assert np.allclose(np.array(getattr(coarse, name)), 2 * np.array(getattr(real, name)))
    assert coarse.sclerosis_mm == pytest.approx(2 * real.sclerosis_mm)
    assert [o.radius for o in coarse.osteophytes] == pytest.approx([2 * o.radius for o in real.osteophytes])
    assert coarse.effusion_mm == real.effusion_mm and coarse.bml == real.bml and coarse.varus_deg == real.varus_deg
    assert phantom.REAL_FEM_CART_MM + phantom.REAL_TIB_CART_MM + phantom.REAL_GAP_MM == 5.0  # medial JSW
    with pytest.raises(ValueError, match="exaggeration"):
        sample_knee_params(np.random.default_rng(0), 1.0, "R", exaggeration=3.0)


def test_extra_anatomy_is_rendered_but_stays_out_of_the_mask():
    knee = render_knee(sample_knee_params(np.random.default_rng(2), 1.2, "R"), SHAPE, SPACING)
    counts = np.bincount(knee.anatomy.ravel(), minlength=6)
    vox = np.prod(SPACING)
    assert counts[phantom.ANATOMY_PATELLA] * vox > 5_000  # a bone of several cm^3
    for code in (phantom.ANATOMY_PATELLAR_CARTILAGE, phantom.ANATOMY_MENISCUS, phantom.ANATOMY_FIBULA,
                 phantom.ANATOMY_LIGAMENT):
        assert counts[code] > 20, code
    assert not ((knee.anatomy > 0) & (knee.mask > 0)).any()
    assert set(np.unique(knee.mask).tolist()) == {0, 1, 2, 3, 4}
    men = knee.anatomy == phantom.ANATOMY_MENISCUS
    patellar_cart = knee.anatomy == phantom.ANATOMY_PATELLAR_CARTILAGE
    assert np.median(knee.image[men]) < 0.5 * np.median(knee.image[patellar_cart])  # dark wedges


def test_medial_meniscus_extrudes_with_severity():
    def medial_edge(severity, extrusion):
        p = dataclasses.replace(sample_knee_params(np.random.default_rng(6), severity, "R"),
                                meniscus_extrusion_mm=extrusion, rotation_deg=(0.0, 0.0, 0.0))
        men = render_knee(p, SHAPE, SPACING).anatomy == phantom.ANATOMY_MENISCUS
        return np.flatnonzero(men.any(axis=(1, 2)))[0]  # most medial D index (right knee: low D)

    assert medial_edge(4.9, 4.0) == medial_edge(4.9, 0.0) - 2  # 4 mm = 2 voxels further medial
    sampled = [sample_knee_params(np.random.default_rng(i), s, "R").meniscus_extrusion_mm
               for i in range(40) for s in (0.5, 4.5)]
    assert np.mean(sampled[1::2]) > np.mean(sampled[::2]) + 1.5


def test_evidence_is_empty_for_a_healthy_knee_and_grows_with_kl(graded_knees):
    healthy = render_knee(KneeParams(side="R", severity=0.0), SHAPE, SPACING)
    assert not np.isin(healthy.evidence, (1, 2, 3, 4)).any()
    kl = [k for k, _, _ in graded_knees]
    amount = [int(np.isin(knee.evidence, (1, 2, 3, 4)).sum()) for _, _, knee in graded_knees]
    assert spearmanr(kl, amount).statistic > 0.8
    for k, _, knee in graded_knees:
        if k == 4:
            assert all((knee.evidence == code).any() for code in (1, 2, 3, 4))
        osteo = knee.evidence == phantom.EVIDENCE_OSTEOPHYTE
        assert np.array_equal(osteo, knee.lesion == LESION_OSTEOPHYTE)


def test_evidence_and_anatomy_mirror_with_the_knee():
    right = sample_knee_params(np.random.default_rng(9), 3.7, "R")
    kr, kl = render_knee(right, SHAPE, SPACING), render_knee(dataclasses.replace(right, side="L"), SHAPE, SPACING)
    assert np.array_equal(kl.evidence, kr.evidence[::-1]) and np.array_equal(kl.anatomy, kr.anatomy[::-1])


#: The planted distractor-severity links (Spearman, 400 knees, severity uniform on [0, 5)).
PLANTED_CORRELATIONS = {"effusion_mm": (0.55, 0.75), "has_bml": (0.3, 0.55), "meniscus_extrusion_mm": (0.55, 0.85)}
INDEPENDENT = ("cartilage_signal", "ghost_amplitude", "varus_deg", "flexion_deg", "bias_linear")


def distractor_table(n: int = 400) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(11)
    severity = rng.uniform(0, 4.999, n)
    params = [sample_knee_params(np.random.default_rng([11, i]), s, "R") for i, s in enumerate(severity)]
    values = {
        "effusion_mm": [p.effusion_mm for p in params], "has_bml": [float(bool(p.bml)) for p in params],
        "meniscus_extrusion_mm": [p.meniscus_extrusion_mm for p in params],
        "cartilage_signal": [p.cartilage_signal for p in params], "ghost_amplitude": [p.ghost[0] for p in params],
        "varus_deg": [p.varus_deg for p in params], "flexion_deg": [p.flexion_deg for p in params],
        "bias_linear": [p.bias[0] for p in params],
    }
    return severity, {k: np.array(v) for k, v in values.items()}


def test_distractors_correlate_with_severity_as_planted_and_the_rest_do_not():
    severity, values = distractor_table()
    for name, (low, high) in PLANTED_CORRELATIONS.items():
        rho = spearmanr(severity, values[name]).statistic
        print(f"{name}: Spearman rho with severity = {rho:.2f}")
        assert low < rho < high, (name, rho)
    for name in INDEPENDENT:
        assert abs(spearmanr(severity, values[name]).statistic) < 0.15, name
