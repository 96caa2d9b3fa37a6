"""Input saliency (SmoothGrad x input, Grad-CAM) and its overlap with cartilage and other regions.

Why: the reference study asks whether hierarchical supervision moves a model's attention onto
the cartilage. A saliency map S (values in [0, 1]) is compared with a region mask M by
``mass = sum(S*M) / sum(S)``, the fraction of the top-k% voxels inside M, the Dice of that
top-k mask with M, and ``enrichment = mass / roi_fraction`` (1 = chance).

Conventions (the reference protocol, with the choices it leaves open made explicit):

- SmoothGrad x input: ``n_samples`` copies ``x + N(0, noise_std^2)`` of the z-scored input;
  the signed ``grad * x_noisy`` is averaged over the copies, then ``|.|`` is taken and the map
  min-max scaled to [0, 1]. As in the reference release, the gradient is multiplied by the
  NOISY copy it was computed at, and the absolute value is taken after averaging.
- Targets of a :class:`~oaprobe.models.probe.HierarchicalProbe` output ``{"oa", "kl", ...}``:
  ``"kl"`` = the logit of the KL grade predicted on the clean input (fixed across the noisy
  copies); ``"oa"`` = the OA log-odds: single_oa the one logit; dual ``z1 - z0`` of the two OA
  logits (the log-odds of its softmax p_oa; the reference used ``z1`` alone); single_kl
  ``log p(KL>=2) - log p(KL<2)`` from the KL logits (the reference computed no OA map there).
- Grad-CAM: MONAI's ``GradCAM`` on a deep copy of the model wrapped to return the one target
  score; the map is upsampled to the input grid and min-max scaled to [0, 1] (MONAI's default
  normaliser flips the scale, so it is replaced).

Example:
    >>> import numpy as np, torch
    >>> w = torch.linspace(0, 1, 8 ** 3).reshape(1, 1, 8, 8, 8)
    >>> s = smoothgrad_x_input(lambda x: (w * x).sum(dim=(1, 2, 3, 4)), torch.ones(1, 1, 8, 8, 8), noise_std=0.0)
    >>> s.shape, float(s.max()), float(s.min())
    ((1, 8, 8, 8), 1.0, 0.0)
    >>> roi = np.zeros((8, 8, 8), bool); roi[:2] = True
    >>> m = overlap_metrics(roi.astype(float), roi)
    >>> m["roi_fraction"], m["mass"], m["top10"], m["enrichment"]
    (0.25, 1.0, 1.0, 4.0)
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from scipy.stats import wilcoxon
from torch import nn
from tqdm.auto import tqdm

MODES: tuple[str, ...] = ("single_oa", "single_kl", "dual")
TARGETS: tuple[str, ...] = ("oa", "kl")
METHODS: tuple[str, ...] = ("smoothgrad", "gradcam")
REGIONS: tuple[str, ...] = ("cartilage", "femoral_cartilage", "tibial_cartilage", "bone_margin", "lesion")
TABLE_KS: tuple[int, ...] = (1, 5, 10)
TABLE_COLUMNS: tuple[str, ...] = (
    "case_id", "target", "method", "region", "roi_fraction", "mass",
    "top1", "top5", "top10", "dice1", "dice5", "dice10", "enrichment",
)  # fmt: skip


# --------------------------------------------------------------------------- targets
def targets_for_mode(mode: str) -> tuple[str, ...]:
    """Saliency targets computed for a training mode (single_kl also gets its OA log-odds)."""
    if mode == "single_oa":
        return ("oa",)
    if mode in ("single_kl", "dual"):
        return ("kl", "oa")
    raise ValueError(f"mode = {mode!r}; expected one of {list(MODES)}")


def target_logit(out: dict[str, Any], target: str, kl_class: torch.Tensor | None = None) -> torch.Tensor:
    """The scalar score (B,) whose gradient a saliency map explains.

    Args:
        out: a probe's forward output ``{"oa": logits or None, "kl": logits or None, ...}``.
        target: ``"kl"`` (the logit of ``kl_class``, default the argmax) or ``"oa"`` (the OA
            log-odds: one OA logit as is; two OA logits ``z1 - z0``; no OA head
            ``logsumexp(z_kl[2:]) - logsumexp(z_kl[:2])``).
        kl_class: (B,) class indices for the KL target.
    """
    if not isinstance(out, dict):
        raise TypeError(f"target_logit: expected the probe's output dict, got {type(out).__name__}")
    kl, oa = out.get("kl"), out.get("oa")
    if target == "kl":
        if kl is None:
            raise ValueError("target 'kl': the model has no KL head (mode single_oa)")
        idx = kl.argmax(dim=1) if kl_class is None else kl_class.to(kl.device)
        return kl.gather(1, idx.view(-1, 1).long()).squeeze(1)
    if target == "oa":
        if oa is not None:
            if oa.ndim == 1:
                return oa
            if oa.shape[1] == 1:
                return oa[:, 0]
            if oa.shape[1] == 2:
                return oa[:, 1] - oa[:, 0]
            raise ValueError(f"target 'oa': expected 1 or 2 OA logits, got shape {tuple(oa.shape)}")
        if kl is None:
            raise ValueError("target 'oa': the model output has neither an OA nor a KL head")
        return torch.logsumexp(kl[:, 2:], dim=1) - torch.logsumexp(kl[:, :2], dim=1)
    raise ValueError(f"target = {target!r}; expected one of {list(TARGETS)}")


# --------------------------------------------------------------------------- maps
def _minmax(sal: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max scaling of (B, ...) to [0, 1]; a flat map becomes all zeros."""
    flat = sal.reshape(sal.shape[0], -1)
    lo = flat.min(dim=1).values.view(-1, *[1] * (sal.ndim - 1))
    hi = flat.max(dim=1).values.view(-1, *[1] * (sal.ndim - 1))
    span = hi - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (sal - lo) / safe, torch.zeros_like(sal))


def _as_batch(x: Any) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 5 or t.shape[1] != 1:
        raise ValueError(f"x: expected a (B, 1, D, H, W) tensor, got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.float()
    return t


def smoothgrad_x_input(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    x: Any,
    n_samples: int = 8,
    noise_std: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """SmoothGrad x input: ``|mean_i grad f(x_i) * x_i|`` with ``x_i = x + noise``, min-max to [0, 1].

    Args:
        model_fn: maps (B, 1, D, H, W) to (B,) target scores; must treat knees independently
            (eval mode: BatchNorm must not mix the batch).
        x: (B, 1, D, H, W) z-scored input.
        n_samples: noisy copies (with ``noise_std == 0`` one pass is made: all copies are equal).
        noise_std: Gaussian noise SD in z-score units.
        seed: seeds the noise (a CPU generator, so the same on every device).

    Returns:
        (B, D, H, W) float32 maps in [0, 1].
    """
    if n_samples < 1:
        raise ValueError(f"n_samples = {n_samples}; expected >= 1")
    if noise_std < 0:
        raise ValueError(f"noise_std = {noise_std}; expected >= 0")
    x = _as_batch(x).detach()
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    passes = n_samples if noise_std > 0 else 1
    acc = torch.zeros_like(x)
    with torch.enable_grad():
        for _ in range(passes):
            noise = torch.randn(x.shape, generator=gen, dtype=x.dtype) * noise_std
            xi = (x + noise.to(x.device)).requires_grad_(True)
            score = model_fn(xi)
            if score.shape != (x.shape[0],):
                raise ValueError(f"model_fn: expected scores of shape ({x.shape[0]},), got {tuple(score.shape)}")
            (grad,) = torch.autograd.grad(score.sum(), xi)
            acc += (grad * xi).detach()
    sal = (acc / passes).abs()[:, 0]
    return _minmax(sal).cpu().numpy().astype(np.float32)


class _ScoreHead(nn.Module):
    """Wraps a model so that it returns one (B, 1) score tensor, as MONAI's CAMs require."""

    def __init__(self, net: nn.Module, target: str | int | None) -> None:
        super().__init__()
        self.net = net
        self.target = target
        self.kl_class: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if isinstance(out, dict):
            if not isinstance(self.target, str):
                raise ValueError(f"target = {self.target!r}; a probe output needs 'oa' or 'kl'")
            score = target_logit(out, self.target, self.kl_class)
        else:
            logits = out.reshape(out.shape[0], -1)
            idx = logits.argmax(dim=1) if self.target is None else torch.full_like(logits[:, 0], int(self.target)).long()
            score = logits.gather(1, idx.view(-1, 1)).squeeze(1)
        return score.unsqueeze(1)


def _resolve_layer(model: nn.Module, layer: str) -> None:
    try:
        model.get_submodule(layer)
    except AttributeError as err:
        names = [n for n, _ in model.named_modules() if n][:12]
        raise ValueError(f"gradcam layer {layer!r} not found in the model; some layers: {names}") from err


class GradCamRunner:
    """MONAI Grad-CAM on a private deep copy of ``model`` (its hooks never touch the original).

    Build once and call per knee; ``kl_class`` fixes the KL class (else the argmax).
    """

    def __init__(self, model: nn.Module, target: str | int | None, layer: str) -> None:
        from monai.visualize import GradCAM  # deferred: MONAI imports are slow

        _resolve_layer(model, layer)
        net = copy.deepcopy(model).eval()
        for p in net.parameters():
            p.requires_grad_(True)
        self.head = _ScoreHead(net, target)
        self.cam = GradCAM(nn_module=self.head, target_layers=f"net.{layer}", postprocessing=_minmax)

    def __call__(self, x: Any, kl_class: torch.Tensor | None = None) -> np.ndarray:
        # an input that requires grad keeps torch's full backward hook on the first layer quiet
        x = _as_batch(x).detach().clone().requires_grad_(True)
        self.head.kl_class = kl_class
        with torch.enable_grad():
            cam = self.cam(x, class_idx=0)
        return cam[:, 0].detach().cpu().numpy().astype(np.float32)


def gradcam(model: nn.Module, x: Any, target: str | int | None, layer: str) -> np.ndarray:
    """Grad-CAM of one target at ``layer``, upsampled to the input grid and scaled to [0, 1].

    Args:
        model: a probe (dict output; target ``"oa"``/``"kl"``) or a plain logits model
            (target = class index, None = argmax).
        x: (B, 1, D, H, W) input.
        target: see above.
        layer: dotted module path inside ``model`` (e.g. ``"encoder.layer4"``); a layer whose
            output is modified in place afterwards (e.g. a BN before a residual ``+=``) fails.

    Returns:
        (B, D, H, W) float32 maps in [0, 1].
    """
    return GradCamRunner(model, target, layer)(x)


# --------------------------------------------------------------------------- regions and overlap
def region_masks(label_map: np.ndarray, lesion: np.ndarray | None = None, margin: int = 1) -> dict[str, np.ndarray]:
    """Boolean region masks from an OAI-ZIB label map (and an optional lesion mask).

    ``bone_margin`` is the shell of bone (labels 1, 3) voxels within ``margin`` voxels
    (6-connectivity) of non-bone; bone cut by the volume border is not a surface.
    """
    lab = np.asarray(label_map)
    if lab.ndim != 3:
        raise ValueError(f"label_map: expected a 3-D (D, H, W) array, got shape {lab.shape}")
    bone = np.isin(lab, (1, 3))
    core = ndimage.binary_erosion(
        bone, structure=ndimage.generate_binary_structure(3, 1), iterations=margin, border_value=1
    )
    out = {
        "cartilage": np.isin(lab, (2, 4)),
        "femoral_cartilage": lab == 2,
        "tibial_cartilage": lab == 4,
        "bone_margin": bone & ~core,
    }
    if lesion is not None:
        les = np.asarray(lesion)
        if les.shape != lab.shape:
            raise ValueError(f"lesion: shape {les.shape} differs from the label map's {lab.shape}")
        out["lesion"] = les > 0
    return out


def _k_name(k: float) -> str:
    return str(int(k)) if float(k).is_integer() else str(k)


def overlap_metrics(saliency: Any, roi_mask: Any, ks: Sequence[float] = TABLE_KS) -> dict[str, float]:
    """Overlap of a saliency map with a region.

    Args:
        saliency: map of non-negative values (negative values count as 0, as in the reference).
        roi_mask: boolean region mask of the same shape.
        ks: top-k percentages (k% of all voxels, ``ceil``, at least one voxel; ties broken by position).

    Returns:
        ``roi_fraction`` (chance level), ``mass``, ``top{k}`` (fraction of the top-k% voxels in
        the ROI), ``dice{k}`` (Dice of the top-k% mask with the ROI) and ``enrichment``
        (mass / roi_fraction). With an empty ROI or an all-zero map every metric except
        ``roi_fraction`` is NaN (undefined, not zero).
    """
    roi = np.asarray(roi_mask)
    return region_overlap(saliency, {"roi": roi}, ks)["roi"]


def region_overlap(
    saliency: Any, regions: dict[str, np.ndarray], ks: Sequence[float] = TABLE_KS
) -> dict[str, dict[str, float]]:
    """:func:`overlap_metrics` of one map against several regions (the top-k voxels are found once)."""
    s = np.asarray(saliency, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError("saliency: contains non-finite values")
    for k in ks:
        if not 0 < k <= 100:
            raise ValueError(f"ks: {k} is not a percentage in (0, 100]")
    s = np.maximum(s, 0.0)
    flat = s.ravel()
    n, total = flat.size, float(flat.sum())
    tops: dict[float, np.ndarray] = {}
    if total > 0:
        order = None
        for k in sorted(ks, reverse=True):  # partition once for the largest k, then within it
            nk = max(1, math.ceil(k / 100.0 * n))
            if order is None:
                order = np.argpartition(flat, n - nk)[n - nk :]
                tops[k] = order
            else:
                sub = flat[order]
                tops[k] = order[np.argpartition(sub, len(sub) - nk)[len(sub) - nk :]]
    result: dict[str, dict[str, float]] = {}
    for name, roi_mask in regions.items():
        m = np.asarray(roi_mask).astype(bool)
        if m.shape != s.shape:
            raise ValueError(f"saliency shape {s.shape} differs from {name} mask shape {m.shape}")
        m = m.ravel()
        roi_n = int(m.sum())
        out: dict[str, float] = {"roi_fraction": roi_n / n}
        undefined = roi_n == 0 or total <= 0
        out["mass"] = float("nan") if undefined else float(flat[m].sum() / total)
        for k in ks:
            key = _k_name(k)
            if undefined:
                out[f"top{key}"] = out[f"dice{key}"] = float("nan")
                continue
            nk = len(tops[k])
            inter = int(m[tops[k]].sum())
            out[f"top{key}"] = inter / nk
            out[f"dice{key}"] = 2.0 * inter / (nk + roi_n)
        out["enrichment"] = float("nan") if undefined else out["mass"] / out["roi_fraction"]
        result[name] = out
    return result


# --------------------------------------------------------------------------- whole run
def _knee_seed(seed: int, case_id: str) -> int:
    """Noise seed per knee: the same knee gets the same noise in every run of the same seed."""
    return (int(seed) * 1_000_003 + zlib.crc32(case_id.encode())) % (2**31 - 1)


def compute_run_saliency(
    model: nn.Module,
    images: torch.Tensor,
    masks: np.ndarray,
    lesions: np.ndarray | None,
    case_ids: list[str],
    mode: str,
    n_samples: int = 8,
    noise_std: float = 0.05,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    gradcam_layer: str | None = None,
    keep_maps: int = 3,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Saliency maps and overlap metrics for the knees of one run.

    Args:
        model: a HierarchicalProbe (``forward(x) -> {"oa", "kl", "embedding"}``); the model is
            used in eval mode on the device of its parameters and its mode is restored after.
        images: (N, 1, D, H, W) model inputs.
        masks: (N, D, H, W) label maps on the input grid.
        lesions: (N, D, H, W) lesion masks (synthetic cohort) or None.
        case_ids: N knee ids.
        mode: ``single_oa`` / ``single_kl`` / ``dual`` (sets the targets, see :func:`targets_for_mode`).
        n_samples, noise_std, seed: SmoothGrad settings; each knee's noise is seeded from
            ``seed`` and its case id.
        methods: subset of ``("smoothgrad", "gradcam")``.
        gradcam_layer: dotted path inside ``model.encoder`` (default: ``model.encoder.gradcam_layer``).
        keep_maps: how many knees (the first ones) keep their maps for figures.
        progress: show a tqdm bar.

    Returns:
        ``(table, maps)``: the ``saliency.csv`` table (columns :data:`TABLE_COLUMNS`, one row
        per knee, target, method and region) and the arrays of ``saliency_maps.npz``:
        ``case_id``, ``target``, ``method`` (K,), ``saliency`` (K, D, H, W float16) and the
        matching ``image`` (float16) and ``mask`` (uint8), row-aligned with ``saliency``.
    """
    targets = targets_for_mode(mode)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"methods = {list(methods)}; expected a non-empty subset of {list(METHODS)}")
    images = _as_batch(images)
    n, spatial = images.shape[0], tuple(images.shape[2:])
    masks = np.asarray(masks)
    if masks.shape != (n, *spatial):
        raise ValueError(f"masks: expected shape {(n, *spatial)} (one label map per image), got {masks.shape}")
    if lesions is not None and np.asarray(lesions).shape != (n, *spatial):
        raise ValueError(f"lesions: expected shape {(n, *spatial)}, got {np.asarray(lesions).shape}")
    if len(case_ids) != n:
        raise ValueError(f"case_ids: {len(case_ids)} ids for {n} images")

    runners: dict[str, GradCamRunner] = {}
    if "gradcam" in methods:
        encoder = getattr(model, "encoder", None)
        layer = gradcam_layer if gradcam_layer is not None else getattr(encoder, "gradcam_layer", None)
        if layer is None:
            raise ValueError("gradcam_layer: not given and model.encoder.gradcam_layer is missing")
        full = layer
        if encoder is not None:  # a path inside the encoder; a path already inside the probe also works
            full = f"encoder.{layer}"
            try:
                model.get_submodule(full)
            except AttributeError:
                full = layer
        runners = {t: GradCamRunner(model, t, full) for t in targets}

    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    kept: dict[str, list[Any]] = {k: [] for k in ("case_id", "target", "method", "saliency", "image", "mask")}
    try:
        for i in tqdm(range(n), desc="saliency", disable=not progress):
            cid = str(case_ids[i])
            x = images[i : i + 1].to(device)
            with torch.no_grad():
                out = model(x)
            kl_class = out["kl"].argmax(dim=1) if out.get("kl") is not None else None
            regions = region_masks(masks[i], None if lesions is None else np.asarray(lesions)[i])
            for target in targets:
                for method in methods:
                    if method == "smoothgrad":
                        sal = smoothgrad_x_input(
                            lambda xb, t=target: target_logit(model(xb), t, kl_class),
                            x,
                            n_samples=n_samples,
                            noise_std=noise_std,
                            seed=_knee_seed(seed, cid),
                        )[0]
                    else:
                        sal = runners[target](x, kl_class)[0]
                    for region, metrics in region_overlap(sal, regions, TABLE_KS).items():
                        rows.append({"case_id": cid, "target": target, "method": method, "region": region, **metrics})
                    if i < keep_maps:
                        kept["case_id"].append(cid)
                        kept["target"].append(target)
                        kept["method"].append(method)
                        kept["saliency"].append(sal.astype(np.float16))
                        kept["image"].append(images[i, 0].detach().cpu().numpy().astype(np.float16))
                        kept["mask"].append(masks[i].astype(np.uint8))
    finally:
        model.train(was_training)

    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    maps = {
        "case_id": np.array(kept["case_id"], dtype=str),
        "target": np.array(kept["target"], dtype=str),
        "method": np.array(kept["method"], dtype=str),
    }
    for key, dtype in (("saliency", np.float16), ("image", np.float16), ("mask", np.uint8)):
        maps[key] = np.stack(kept[key]) if kept[key] else np.zeros((0, *spatial), dtype=dtype)
    return table, maps


# --------------------------------------------------------------------------- paired comparison
def paired_overlap(
    table_a: pd.DataFrame,
    table_b: pd.DataFrame,
    metric: str,
    region: str,
    target: str,
    method: str,
    n_boot: int = 10_000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Paired comparison of one overlap metric over the same knees (e.g. dual vs single).

    Knees are matched by ``case_id``; knees with a NaN in either table are dropped. Reports
    the Wilcoxon signed-rank test (scipy, two-sided), the mean difference ``a - b`` and its
    percentile bootstrap CI over knees.

    Returns:
        One row: ``metric, region, target, method, n, mean_a, mean_b, mean_diff, ci_low,
        ci_high, wilcoxon_stat, p_value``.
    """
    def pick(table: pd.DataFrame, name: str) -> pd.Series:
        for col in ("case_id", "region", "target", "method", metric):
            if col not in table.columns:
                raise ValueError(f"{name}: missing column {col!r}")
        sel = table[(table["region"] == region) & (table["target"] == target) & (table["method"] == method)]
        if sel.empty:
            raise ValueError(f"{name}: no rows with region={region!r}, target={target!r}, method={method!r}")
        if sel["case_id"].duplicated().any():
            dup = sel.loc[sel["case_id"].duplicated(), "case_id"].iloc[0]
            raise ValueError(f"{name}: case_id {dup!r} appears twice for region={region!r}, target={target!r}")
        return sel.set_index(sel["case_id"].astype(str))[metric].astype(float)

    a, b = pick(table_a, "table_a"), pick(table_b, "table_b")
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    diff = (both["a"] - both["b"]).to_numpy()
    n = len(diff)
    row: dict[str, Any] = {"metric": metric, "region": region, "target": target, "method": method, "n": n}
    row["mean_a"] = float(both["a"].mean()) if n else float("nan")
    row["mean_b"] = float(both["b"].mean()) if n else float("nan")
    row["mean_diff"] = float(diff.mean()) if n else float("nan")
    row["ci_low"] = row["ci_high"] = row["wilcoxon_stat"] = row["p_value"] = float("nan")
    if n >= 2:
        rng = np.random.default_rng(seed)
        boots = diff[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
        alpha = (1.0 - ci) / 2.0
        row["ci_low"], row["ci_high"] = (float(q) for q in np.quantile(boots, [alpha, 1.0 - alpha]))
        if np.all(diff == 0):
            row["wilcoxon_stat"], row["p_value"] = 0.0, 1.0
        else:
            res = wilcoxon(both["a"].to_numpy(), both["b"].to_numpy())
            row["wilcoxon_stat"], row["p_value"] = float(res.statistic), float(res.pvalue)
    return pd.DataFrame([row])
