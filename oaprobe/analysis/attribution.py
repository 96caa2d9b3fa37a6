"""Attribution maps of a probe's targets, in [0, 1]: SmoothGrad (with and without the input
product), integrated gradients, occlusion sensitivity and Grad-CAM (MONAI).

Why: the saliency stage explains the scores a probe's predictions come from, and its sanity
checks recompute the same maps on perturbed models and inputs; both use this module.

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
- Ordinal (CORN) probes output four chain logits as ``"kl"`` and no OA head. ``"oa"`` is again
  ``log P(KL>=2) - log P(KL<2)``, from the chain. ``"kl"`` is the log-odds of the predicted
  grade ``k``, ``log p_k - log(1 - p_k)``: no single chain logit is a grade's score (``p_k``
  needs ``l_0..l_k``: the steps passed and the one stopped at), and the log-odds, unlike
  ``log p_k``, does not flatten when the model is sure. The predicted grade is the argmax of
  ``p_kl``, as ``pred_kl`` in the run folder. Both are computed in log space from the chain.
- SmoothGrad without the input product (``"gradient"``): ``|mean_i grad f(x_i)|``, the same
  noisy copies, no multiplication by the image (so a map cannot show the image by construction).
- Integrated gradients (``"ig"``): ``x * mean_a grad f(a x)`` over ``n_samples`` midpoints ``a``
  of the straight path from the all-zero (the z-scored mean) baseline; these sum to about
  ``f(x) - f(0)``, so the map keeps the part that moves the score from its baseline value
  towards the knee's: ``max(0, sign(f(x) - f(0)) * attribution)``.
- Occlusion sensitivity (``"occlusion"``): each non-overlapping cube of ``OCCLUSION_PATCH``
  voxels is set to 0 (the z-scored mean) in turn; the drop ``f(x) - f(x occluded)`` is painted
  on the cube, oriented as integrated gradients' (``max(0, sign(f(x) - f(0)) * drop)``: the
  cubes whose removal moves the score towards its baseline value). Forward passes only.
- Grad-CAM: MONAI's ``GradCAM`` on a deep copy of the model wrapped to return the one target
  score; the map is upsampled to the input grid and min-max scaled to [0, 1] (MONAI's default
  normaliser flips the scale, so it is replaced).

Example:
    >>> import torch
    >>> w = torch.linspace(0, 1, 8 ** 3).reshape(1, 1, 8, 8, 8)
    >>> s = smoothgrad_x_input(lambda x: (w * x).sum(dim=(1, 2, 3, 4)), torch.ones(1, 1, 8, 8, 8), noise_std=0.0)
    >>> s.shape, float(s.max()), float(s.min())
    ((1, 8, 8, 8), 1.0, 0.0)
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from oaprobe.config import SALIENCY_METHODS
from oaprobe.facts import ALL_MODES, N_KL, OA_THRESHOLD
from oaprobe.models.probe import corn_log_proba

TARGETS: tuple[str, ...] = ("oa", "kl")
METHODS: tuple[str, ...] = SALIENCY_METHODS
#: occlusion cube edge in voxels (8 at a 32^3 input: 64 occluded copies a knee and target)
OCCLUSION_PATCH: int = 8


# --------------------------------------------------------------------------- targets
def targets_for_mode(mode: str) -> tuple[str, ...]:
    """Saliency targets computed for a training mode (single_kl and ordinal also get their OA log-odds)."""
    if mode == "single_oa":
        return ("oa",)
    if mode in ("single_kl", "dual", "ordinal"):
        return ("kl", "oa")
    raise ValueError(f"mode = {mode!r}; expected one of {list(ALL_MODES)}")


def is_corn_chain(kl: torch.Tensor | None) -> bool:
    """Whether KL outputs are an ordinal probe's CORN chain (N_KL - 1 logits) rather than N_KL class logits."""
    return kl is not None and kl.ndim == 2 and kl.shape[1] == N_KL - 1


def target_logit(out: dict[str, Any], target: str, kl_class: torch.Tensor | None = None) -> torch.Tensor:
    """The scalar score (B,) whose gradient a saliency map explains.

    Args:
        out: a probe's forward output ``{"oa": logits or None, "kl": logits or None, ...}``.
        target: ``"kl"`` (the logit of ``kl_class``, default the argmax) or ``"oa"`` (the OA
            log-odds: one OA logit as is; two OA logits ``z1 - z0``; no OA head
            ``logsumexp(z_kl[2:]) - logsumexp(z_kl[:2])``). Four KL logits are a CORN chain:
            see :func:`_chain_target`.
        kl_class: (B,) class indices for the KL target.
    """
    if not isinstance(out, dict):
        raise TypeError(f"target_logit: expected the probe's output dict, got {type(out).__name__}")
    kl, oa = out.get("kl"), out.get("oa")
    if oa is None and is_corn_chain(kl):
        return _chain_target(kl, target, kl_class)
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
        return torch.logsumexp(kl[:, OA_THRESHOLD:], dim=1) - torch.logsumexp(kl[:, :OA_THRESHOLD], dim=1)
    raise ValueError(f"target = {target!r}; expected one of {list(TARGETS)}")


def _chain_target(chain: torch.Tensor, target: str, kl_class: torch.Tensor | None) -> torch.Tensor:
    """Targets of an ordinal probe from its chain logits (B, 4): log-odds of an event of its KL law.

    ``"oa"``: ``log P(KL>=2) - log P(KL<2)``; ``"kl"``: ``log p_k - log(1 - p_k)`` of grade
    ``kl_class`` (default the most probable grade).
    """
    log_p = corn_log_proba(chain)
    if target == "oa":
        return torch.logsumexp(log_p[:, OA_THRESHOLD:], dim=1) - torch.logsumexp(log_p[:, :OA_THRESHOLD], dim=1)
    if target != "kl":
        raise ValueError(f"target = {target!r}; expected one of {list(TARGETS)}")
    idx = (log_p.argmax(dim=1) if kl_class is None else kl_class.to(chain.device)).view(-1, 1).long()
    others = log_p.scatter(1, idx, float("-inf"))
    return log_p.gather(1, idx).squeeze(1) - torch.logsumexp(others, dim=1)


def knee_seed(seed: int, case_id: str) -> int:
    """Noise seed per knee: the same knee gets the same noise in every run of the same seed."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(case_id).encode())) % (2**31 - 1)


# --------------------------------------------------------------------------- SmoothGrad
def _minmax(sal: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max scaling of (B, ...) to [0, 1]; a flat map becomes all zeros."""
    flat = sal.reshape(sal.shape[0], -1)
    lo = flat.min(dim=1).values.view(-1, *[1] * (sal.ndim - 1))
    hi = flat.max(dim=1).values.view(-1, *[1] * (sal.ndim - 1))
    span = hi - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (sal - lo) / safe, torch.zeros_like(sal))


def as_batch(x: Any) -> torch.Tensor:
    """``x`` as a floating (B, 1, D, H, W) tensor, or a ValueError naming the shape."""
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
    times_input: bool = True,
) -> np.ndarray:
    """SmoothGrad x input: ``|mean_i grad f(x_i) * x_i|`` with ``x_i = x + noise``, min-max to [0, 1].

    ``times_input=False`` gives plain SmoothGrad, ``|mean_i grad f(x_i)|``.

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
    x = as_batch(x).detach()
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
            acc += (grad * xi).detach() if times_input else grad.detach()
    sal = (acc / passes).abs()[:, 0]
    return _minmax(sal).cpu().numpy().astype(np.float32)


def _towards_knee(model_fn: Callable[[torch.Tensor], torch.Tensor], xb: torch.Tensor, attribution: torch.Tensor,
                  clean: torch.Tensor | None = None) -> torch.Tensor:
    """``max(0, sign(f(x) - f(0)) * attribution)`` for one knee ``xb`` (1, D, H, W): the part of
    an additive attribution that moves the score from the all-zero input's towards the knee's."""
    with torch.no_grad():
        clean = model_fn(xb.unsqueeze(0))[0] if clean is None else clean
        sign = torch.sign(clean - model_fn(torch.zeros_like(xb).unsqueeze(0))[0])
    return torch.clamp(sign * attribution, min=0.0)


def integrated_gradients(model_fn: Callable[[torch.Tensor], torch.Tensor], x: Any, steps: int = 8) -> np.ndarray:
    """Integrated gradients from the all-zero baseline, ``x * mean_a grad f(a x)`` over the
    ``steps`` midpoints ``a = (j + 1/2) / steps`` (one batched pass a knee), oriented towards the
    knee's score (:func:`_towards_knee`), min-max to [0, 1].

    Returns (B, D, H, W) float32 maps; knees are attributed one at a time.
    """
    if steps < 1:
        raise ValueError(f"steps = {steps}; expected >= 1")
    x = as_batch(x).detach()
    alphas = ((torch.arange(steps, dtype=x.dtype) + 0.5) / steps).to(x.device).view(-1, 1, 1, 1, 1)
    maps = []
    with torch.enable_grad():
        for xb in x:
            path = (alphas * xb.unsqueeze(0)).requires_grad_(True)
            (grad,) = torch.autograd.grad(model_fn(path).sum(), path)
            maps.append(_towards_knee(model_fn, xb, (xb * grad.mean(dim=0)).detach())[0])
    return _minmax(torch.stack(maps)).detach().cpu().numpy().astype(np.float32)


@torch.no_grad()
def occlusion(model_fn: Callable[[torch.Tensor], torch.Tensor], x: Any, patch: int = OCCLUSION_PATCH,
              batch_size: int = 16) -> np.ndarray:
    """Occlusion sensitivity: ``f(x) - f(x with one cube set to 0)`` painted on the cube, for
    every non-overlapping cube of edge ``patch`` (the last cube of an axis may be smaller),
    oriented towards the knee's score (:func:`_towards_knee`), min-max to [0, 1].
    Returns (B, D, H, W) float32 maps."""
    if patch < 1:
        raise ValueError(f"patch = {patch}; expected >= 1")
    x = as_batch(x).detach()
    spatial = x.shape[2:]
    cubes = [tuple(slice(i * patch, (i + 1) * patch) for i in index)
             for index in np.ndindex(*[-(-n // patch) for n in spatial])]
    maps = []
    for xb in x:
        clean = model_fn(xb.unsqueeze(0))[0]
        sal = torch.zeros(spatial, dtype=x.dtype, device=x.device)
        for start in range(0, len(cubes), batch_size):
            chunk = cubes[start : start + batch_size]
            batch = xb.unsqueeze(0).repeat(len(chunk), 1, 1, 1, 1)
            for j, cube in enumerate(chunk):
                batch[(j, 0, *cube)] = 0.0
            drops = clean - model_fn(batch)
            for j, cube in enumerate(chunk):
                sal[cube] = drops[j]
        maps.append(_towards_knee(model_fn, xb, sal.unsqueeze(0), clean)[0])
    return _minmax(torch.stack(maps)).cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------- Grad-CAM
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


def probe_gradcam_layer(model: nn.Module, layer: str | None = None) -> str:
    """The Grad-CAM layer as a path inside ``model``.

    ``layer`` may be a path inside ``model.encoder`` or inside the model itself; None takes
    ``model.encoder.gradcam_layer``.
    """
    encoder = getattr(model, "encoder", None)
    layer = layer if layer is not None else getattr(encoder, "gradcam_layer", None)
    if layer is None:
        raise ValueError("gradcam_layer: not given and model.encoder.gradcam_layer is missing")
    if encoder is not None:
        try:
            model.get_submodule(f"encoder.{layer}")
            return f"encoder.{layer}"
        except AttributeError:
            pass
    return layer


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
        x = as_batch(x).detach().clone().requires_grad_(True)
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


# --------------------------------------------------------------------------- one probe
class ProbeAttributor:
    """The maps of one probe for given targets and methods, with fixed SmoothGrad settings.

    Grad-CAM copies of the model are made once here, so build one per model (the sanity checks
    build one per randomised model). ``model`` must already be in eval mode.

    Args:
        model: a HierarchicalProbe (dict output).
        targets: subset of :data:`TARGETS`.
        methods: non-empty subset of :data:`METHODS`.
        n_samples, noise_std: SmoothGrad settings.
        gradcam_layer: see :func:`probe_gradcam_layer`.
    """

    def __init__(self, model: nn.Module, targets: Sequence[str], methods: Sequence[str], n_samples: int = 8,
                 noise_std: float = 0.05, gradcam_layer: str | None = None) -> None:
        bad = [m for m in methods if m not in METHODS]
        if bad or not methods:
            raise ValueError(f"methods = {list(methods)}; expected a non-empty subset of {list(METHODS)}")
        self.model, self.n_samples, self.noise_std = model, n_samples, noise_std
        self.runners: dict[str, GradCamRunner] = {}
        if "gradcam" in methods:
            layer = probe_gradcam_layer(model, gradcam_layer)
            self.runners = {t: GradCamRunner(model, t, layer) for t in targets}

    def score_fn(self, target: str, kl_class: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x -> target score (B,)`` of the model, the KL class fixed to ``kl_class`` (one class
        for every copy of a knee in the batch: occlusion and integrated gradients batch copies)."""
        return lambda xb: target_logit(self.model(xb), target,
                                       None if kl_class is None else kl_class.expand(xb.shape[0]))

    def __call__(self, x: torch.Tensor, target: str, method: str, kl_class: torch.Tensor | None,
                 seed: int) -> np.ndarray:
        """(D, H, W) map of one knee ``x`` (1, 1, D, H, W) for ``target`` by ``method``."""
        fn = self.score_fn(target, kl_class)
        if method in ("smoothgrad", "gradient"):
            return smoothgrad_x_input(fn, x, n_samples=self.n_samples, noise_std=self.noise_std, seed=seed,
                                      times_input=method == "smoothgrad")[0]
        if method == "ig":
            return integrated_gradients(fn, x, steps=self.n_samples)[0]
        if method == "occlusion":
            return occlusion(fn, x)[0]
        if method != "gradcam" or target not in self.runners:
            raise ValueError(f"method = {method!r}, target = {target!r}: not among this attributor's")
        return self.runners[target](x, kl_class)[0]


def predicted_kl(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The KL class the model predicts for ``x`` (fixed as the KL target), or None without a KL head.

    An ordinal probe's grade is the argmax of its ``p_kl`` (the chain logits are not per grade).
    """
    with torch.no_grad():
        out = model(x)
    kl = out.get("kl")
    if kl is None:
        return None
    return (corn_log_proba(kl) if out.get("oa") is None and is_corn_chain(kl) else kl).argmax(dim=1)
