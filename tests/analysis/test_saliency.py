"""Known-answer tests for oaprobe.analysis.saliency (tiny volumes, tiny nets)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import wilcoxon
from torch import nn

from oaprobe.analysis.saliency import (
    TABLE_COLUMNS,
    compute_run_saliency,
    gradcam,
    overlap_metrics,
    paired_overlap,
    region_masks,
    region_overlap,
    smoothgrad_x_input,
    target_logit,
)

torch.set_num_threads(1)
S = 8  # edge of the tiny test volumes


# --------------------------------------------------------------------------- tiny models
class TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 6, 3, stride=2, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.out_dim = 6
        self.gradcam_layer = "features.2"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


class TinyProbe(nn.Module):
    """Stand-in for HierarchicalProbe with the same output contract."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mode = mode
        self.encoder = TinyEncoder()
        self.kl_head = nn.Linear(6, 5) if mode != "single_oa" else None
        self.oa_head = nn.Linear(6, 1 if mode == "single_oa" else 2) if mode != "single_kl" else None

    def forward(self, x: torch.Tensor) -> dict:
        e = self.encoder(x)
        return {
            "oa": None if self.oa_head is None else self.oa_head(e),
            "kl": None if self.kl_head is None else self.kl_head(e),
            "embedding": e,
        }


def label_map() -> np.ndarray:
    """Femur (1) on top, femoral cartilage (2), tibial cartilage (4), tibia (3) below."""
    lab = np.zeros((S, S, S), np.uint8)
    lab[:, 1:3] = 1
    lab[:, 3] = 2
    lab[:, 4] = 4
    lab[:, 5:7] = 3
    return lab


# --------------------------------------------------------------------------- overlap metrics
def test_map_equal_to_mask_is_fully_inside():
    roi = label_map() == 2
    m = overlap_metrics(roi.astype(float), roi)
    assert m["roi_fraction"] == pytest.approx(1 / 8)
    assert m["mass"] == pytest.approx(1.0)
    assert m["enrichment"] == pytest.approx(8.0)
    for k in (1, 5, 10):  # all k% <= the 12.5% ROI fraction
        assert m[f"top{k}"] == pytest.approx(1.0)


def test_dice_known_answer():
    roi = np.zeros((10, 10, 10), bool)
    roi.flat[:100] = True  # ROI = 10% of voxels
    m = overlap_metrics(roi.astype(float), roi)
    assert m["dice10"] == pytest.approx(1.0)
    assert m["dice5"] == pytest.approx(2 * 50 / (50 + 100))
    assert m["top1"] == pytest.approx(1.0)


def test_uniform_noise_is_at_chance():
    rng = np.random.default_rng(0)
    roi = np.zeros((32, 32, 32), bool)
    roi[:, :8] = True
    m = overlap_metrics(rng.uniform(size=roi.shape), roi)
    assert m["mass"] == pytest.approx(0.25, abs=0.01)
    assert m["enrichment"] == pytest.approx(1.0, abs=0.04)
    assert m["top10"] == pytest.approx(0.25, abs=0.03)


def test_region_overlap_matches_a_full_sort():
    rng = np.random.default_rng(3)
    sal = rng.uniform(size=(10, 10, 10))  # distinct values: the top-k sets are unique
    regions = {"a": rng.uniform(size=sal.shape) < 0.2, "b": rng.uniform(size=sal.shape) < 0.05}
    got = region_overlap(sal, regions, ks=(1, 10, 5))
    order = np.argsort(sal.ravel())[::-1]
    for name, roi in regions.items():
        for k in (1, 5, 10):
            top = order[: int(np.ceil(k / 100 * sal.size))]
            inside = roi.ravel()[top].sum()
            assert got[name][f"top{k}"] == pytest.approx(inside / len(top))
            assert got[name][f"dice{k}"] == pytest.approx(2 * inside / (len(top) + roi.sum()))
        assert got[name] == overlap_metrics(sal, roi, ks=(1, 10, 5))


def test_empty_roi_and_flat_map_are_undefined():
    sal = np.random.default_rng(0).uniform(size=(S, S, S))
    empty = overlap_metrics(sal, np.zeros((S, S, S), bool))
    assert empty["roi_fraction"] == 0 and np.isnan(empty["mass"]) and np.isnan(empty["top5"])
    flat = overlap_metrics(np.zeros((S, S, S)), label_map() == 2)
    assert np.isnan(flat["mass"]) and np.isnan(flat["enrichment"])


def test_overlap_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        overlap_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 5), bool))


def test_regions_from_label_map():
    lab = label_map()
    regions = region_masks(lab, lesion=(lab == 4).astype(np.uint8))
    assert set(regions) == {"cartilage", "femoral_cartilage", "tibial_cartilage", "bone_margin", "lesion"}
    np.testing.assert_array_equal(regions["cartilage"], np.isin(lab, (2, 4)))
    # the shell: bone rows touching cartilage/background (rows 1, 2 of the femur are both on a
    # surface: row 1 touches background at row 0, row 2 touches cartilage at row 3)
    margin = regions["bone_margin"]
    assert margin[:, 1].all() and margin[:, 2].all() and margin[:, 5].all() and margin[:, 6].all()
    assert not margin[:, 0].any() and not margin[:, 3].any()
    thick = np.zeros((S, S, S), np.uint8)
    thick[:, 1:7] = 1
    inner = region_masks(thick)["bone_margin"]
    assert inner[:, 1].all() and inner[:, 6].all() and not inner[:, 2:6].any()


# --------------------------------------------------------------------------- SmoothGrad
def test_linear_model_noise_free_is_normalised_abs_w_x():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(1, 1, S, S, S, generator=gen)
    x = torch.randn(2, 1, S, S, S, generator=gen)
    sal = smoothgrad_x_input(lambda t: (w * t).sum(dim=(1, 2, 3, 4)), x, n_samples=4, noise_std=0.0)
    expected = (w * x).abs()[:, 0].numpy()
    lo = expected.reshape(2, -1).min(1)[:, None, None, None]
    hi = expected.reshape(2, -1).max(1)[:, None, None, None]
    np.testing.assert_allclose(sal, (expected - lo) / (hi - lo), atol=1e-6)


def test_linear_model_with_noise_uses_noisy_input():
    # grad = w everywhere, so the mean of w * x_noisy = w * (x + mean noise): same seed, same map
    w = torch.ones(1, 1, S, S, S)
    x = torch.zeros(1, 1, S, S, S)
    fn = lambda t: (w * t).sum(dim=(1, 2, 3, 4))  # noqa: E731
    a = smoothgrad_x_input(fn, x, n_samples=3, noise_std=0.05, seed=7)
    b = smoothgrad_x_input(fn, x, n_samples=3, noise_std=0.05, seed=7)
    c = smoothgrad_x_input(fn, x, n_samples=3, noise_std=0.05, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() == 0.0 and a.max() == 1.0  # non-zero although x == 0: x_noisy is used


def test_smoothgrad_checks_score_shape():
    with pytest.raises(ValueError, match="scores of shape"):
        smoothgrad_x_input(lambda t: t.sum(dim=(2, 3, 4)), torch.ones(1, 1, S, S, S), noise_std=0.0)


# --------------------------------------------------------------------------- targets
def test_oa_targets_are_log_odds():
    kl = torch.tensor([[0.1, 0.2, 0.3, -1.0, 2.0]])
    single_kl = target_logit({"oa": None, "kl": kl}, "oa")
    p = torch.softmax(kl, 1)[0]
    assert single_kl.item() == pytest.approx(torch.log(p[2:].sum() / p[:2].sum()).item(), rel=1e-5)
    dual = target_logit({"oa": torch.tensor([[0.5, 2.0]]), "kl": kl}, "oa")
    assert dual.item() == pytest.approx(1.5)
    assert target_logit({"oa": torch.tensor([[0.7]]), "kl": None}, "oa").item() == pytest.approx(0.7)
    assert target_logit({"oa": None, "kl": kl}, "kl").item() == pytest.approx(2.0)  # argmax logit
    with pytest.raises(ValueError, match="no KL head"):
        target_logit({"oa": torch.tensor([[0.7]]), "kl": None}, "kl")


# --------------------------------------------------------------------------- Grad-CAM
def test_gradcam_shape_range_and_no_hooks_left():
    net = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv3d(3, 4, 3, stride=2, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2))  # fmt: skip
    x = torch.randn(2, 1, S, S, S, generator=torch.Generator().manual_seed(0))
    cam = gradcam(net, x, target=1, layer="2")
    assert cam.shape == (2, S, S, S)
    assert cam.min() >= 0.0 and cam.max() <= 1.0
    assert not net[2]._forward_hooks and not net[2]._backward_hooks


def test_gradcam_peaks_on_the_bright_region():
    # conv with a positive kernel, ReLU, mean pool, weight 1: the CAM follows the activation,
    # so it must be high where the input is bright (catches a flipped normaliser)
    conv = nn.Conv3d(1, 1, 3, padding=1, bias=False)
    nn.init.constant_(conv.weight, 1.0 / 27)
    head = nn.Linear(1, 1, bias=False)
    nn.init.constant_(head.weight, 1.0)
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), head)
    x = torch.zeros(1, 1, 12, 12, 12)
    x[:, :, :4, :4, :4] = 1.0
    cam = gradcam(net, x, target=0, layer="0")[0]
    assert cam[:3, :3, :3].mean() > 0.5 > cam[8:, 8:, 8:].mean()


def test_gradcam_bad_layer_is_named():
    with pytest.raises(ValueError, match="'nope'"):
        gradcam(TinyProbe("dual"), torch.zeros(1, 1, S, S, S), "oa", "nope")


# --------------------------------------------------------------------------- whole run
def _inputs(n: int = 2):
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 1, S, S, S, generator=gen)
    masks = np.stack([label_map()] * n)
    lesions = np.stack([(label_map() == 4).astype(np.uint8)] * n)
    return images, masks, lesions, [f"k{i}" for i in range(n)]


@pytest.mark.parametrize("mode,targets", [("single_oa", {"oa"}), ("single_kl", {"kl", "oa"}), ("dual", {"kl", "oa"})])
def test_compute_run_saliency_table_and_maps(mode, targets):
    images, masks, lesions, ids = _inputs()
    probe = TinyProbe(mode).train()
    table, maps = compute_run_saliency(probe, images, masks, lesions, ids, mode, n_samples=2, keep_maps=1, progress=False)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert set(table["target"]) == targets and set(table["method"]) == {"smoothgrad", "gradcam"}
    assert len(table) == 2 * len(targets) * 2 * 5  # knees x targets x methods x regions
    assert probe.training  # mode restored
    assert not probe.encoder.features[2]._forward_hooks  # Grad-CAM hooks live on a copy
    k = len(targets) * 2
    assert maps["saliency"].shape == (k, S, S, S) and maps["saliency"].dtype == np.float16
    assert maps["image"].shape == maps["mask"].shape == (k, S, S, S)
    assert set(maps["case_id"]) == {"k0"}


def test_compute_run_saliency_is_deterministic_and_validates():
    images, masks, _, ids = _inputs()
    probe = TinyProbe("dual")
    a, _ = compute_run_saliency(probe, images, masks, None, ids, "dual", n_samples=2, methods=("smoothgrad",), progress=False)
    b, _ = compute_run_saliency(probe, images, masks, None, ids, "dual", n_samples=2, methods=("smoothgrad",), progress=False)
    pd.testing.assert_frame_equal(a, b)
    assert "lesion" not in set(a["region"])
    c, _ = compute_run_saliency(probe, images, masks, None, ids, "dual", n_samples=1, methods=("gradcam",),
                                gradcam_layer="encoder.features.2", progress=False)  # fmt: skip
    assert len(c) == 2 * 2 * 4  # a path already inside the probe is accepted
    with pytest.raises(ValueError, match="masks"):
        compute_run_saliency(probe, images, masks[:1], None, ids, "dual", progress=False)
    with pytest.raises(ValueError, match="mode"):
        compute_run_saliency(probe, images, masks, None, ids, "both", progress=False)


@pytest.mark.skipif(importlib.util.find_spec("oaprobe.models.probe") is None, reason="oaprobe.models.probe not written yet")
def test_with_the_real_probe():
    from oaprobe.models.backbones import build_backbone
    from oaprobe.models.probe import HierarchicalProbe

    images, masks, lesions, ids = _inputs(1)
    shape = (16, 16, 16)
    images = torch.nn.functional.interpolate(images, size=shape)
    masks = np.stack([np.kron(label_map(), np.ones((2, 2, 2), np.uint8))])
    lesions = (masks == 4).astype(np.uint8)
    enc = build_backbone("resnet3d", shape, 0.25)
    probe = HierarchicalProbe(enc, "dual", "parallel")
    table, _ = compute_run_saliency(probe, images, masks, lesions, ids, "dual", n_samples=1, keep_maps=0, progress=False)
    assert set(table["method"]) == {"smoothgrad", "gradcam"}
    assert table["roi_fraction"].notna().all()
    # SmoothGrad is always defined; Grad-CAM of an untrained net at a 1-2 voxel layer may be flat (NaN)
    assert table.loc[table["method"] == "smoothgrad", "mass"].notna().all()


# --------------------------------------------------------------------------- paired comparison
def _table(values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"case_id": [f"k{i}" for i in range(len(values))], "target": "oa",
                         "method": "smoothgrad", "region": "cartilage", "mass": values})  # fmt: skip


def test_paired_overlap_known_shift_and_scipy_reference():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.1, 0.3, 40)
    a = b + 0.05 + 0.01 * rng.normal(size=40)
    res = paired_overlap(_table(a), _table(b).iloc[::-1], "mass", "cartilage", "oa", "smoothgrad", n_boot=2000)
    row = res.iloc[0]
    assert row["n"] == 40
    assert row["mean_diff"] == pytest.approx(np.mean(a - b))
    assert row["ci_low"] < 0.05 < row["ci_high"] and row["ci_low"] > 0
    assert row["p_value"] == pytest.approx(wilcoxon(a, b).pvalue)


def test_paired_overlap_matches_pingouin():
    pg = pytest.importorskip("pingouin")
    rng = np.random.default_rng(1)
    a, b = rng.uniform(size=15), rng.uniform(size=15)
    res = paired_overlap(_table(a), _table(b), "mass", "cartilage", "oa", "smoothgrad", n_boot=500)
    ref = pg.wilcoxon(a, b)
    p_col = "p_val" if "p_val" in ref.columns else "p-val"
    assert res["p_value"].iloc[0] == pytest.approx(float(ref[p_col].iloc[0]))


def test_paired_overlap_drops_nan_and_names_missing_rows():
    a = _table(np.array([0.1, np.nan, 0.3]))
    b = _table(np.array([0.2, 0.2, 0.2]))
    assert paired_overlap(a, b, "mass", "cartilage", "oa", "smoothgrad", n_boot=100)["n"].iloc[0] == 2
    with pytest.raises(ValueError, match="region='lesion'"):
        paired_overlap(a, b, "mass", "lesion", "oa", "smoothgrad")
