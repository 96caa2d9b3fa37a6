"""Sanity and faithfulness checks of saliency maps: cascading randomisation and deletion curves.

Why: a map that looks anatomical may not depend on what the model learned (Adebayo et al.
2018, "Sanity checks for saliency maps") or on what the score depends on. Two checks, as in
the Quantus toolkit (``MPRT``, ``PixelFlipping``), written here in torch because Quantus
brings OpenCV and scikit-image, perturbs 2-D images, wants a model that returns one logit
tensor (a probe returns a dict, and the OA target is a derived log-odds) and randomises
every parametrised module one by one (hundreds of SmoothGrad passes for a ResNet):

- Cascading model-parameter randomisation: the trained model's blocks are re-initialised
  from the output end (the heads, then the encoder's top-level children in reverse order),
  cumulatively, each block by its modules' ``reset_parameters()`` under a fixed seed
  (parameters no such method covers are permuted). After each step the map is recomputed with
  the same noise and compared with the trained map: Spearman rank correlation over voxels and
  the share of the trained top-10% voxels still in the top 10%, beside the map's correlation
  with ``|input|``. A map that explains the model drops towards 0; an edge detector stays
  high; a gradient x input map falls only to its correlation with the input (Adebayo et al.).
- Deletion curve: the most salient voxels are set to 0 (the z-scored mean) in equal steps of
  the fraction of voxels removed, from 0 to 1, and the target score is tracked, against the
  same removal in a seeded random order. :func:`oaprobe.analysis.saliency_results.deletion_auc` summarises each curve by the
  area under the score normalised to 1 on the clean input and 0 with every voxel removed (a
  score that moves past its clean value gives an area above 1); a faithful map has a smaller
  area than random (``auc_gap = random - salient > 0``).

Example:
    >>> import torch
    >>> w = torch.arange(1.0, 9.0).reshape(1, 1, 2, 2, 2)
    >>> curve = deletion_curve(lambda x: (w * x).sum(dim=(1, 2, 3, 4)), torch.ones(1, 1, 2, 2, 2),
    ...                        w[0, 0].numpy(), deletion_fractions(2), seed=0)
    >>> curve["salient"].tolist()  # 36 in all; the top half (5..8) removed leaves 1+2+3+4
    [36.0, 10.0, 0.0]
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import nn
from tqdm.auto import tqdm

from oaprobe.analysis.attribution import ProbeAttributor, knee_seed, predicted_kl, target_logit, targets_for_mode
from oaprobe.analysis.regions import top_voxels
from oaprobe.device import eval_mode

SANITY_COLUMNS: tuple[str, ...] = (
    "case_id", "target", "method", "step", "layer", "spearman", "top10_overlap", "input_spearman",
)
DELETION_COLUMNS: tuple[str, ...] = ("case_id", "target", "method", "order", "fraction", "logit")


# --------------------------------------------------------------------------- randomisation
def randomisation_steps(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The cascade's blocks, output end first: ``("heads", [heads])``, then ``encoder.<child>``
    for each top-level encoder child with parameters, last child first.

    A wrapper with one such child (a MONAI net inside the encoder) is looked through, so its
    own children are the steps. A model without an ``encoder`` cascades over its own children.
    """
    heads = [h for h in (getattr(model, "oa_head", None), getattr(model, "kl_head", None)) if isinstance(h, nn.Module)]
    encoder = getattr(model, "encoder", None)
    body, prefix = (encoder, "encoder.") if isinstance(encoder, nn.Module) else (model, "")

    def blocks(module: nn.Module) -> list[tuple[str, nn.Module]]:
        return [(n, c) for n, c in module.named_children()
                if not any(c is h for h in heads) and next(c.parameters(), None) is not None]

    children = blocks(body)
    while len(children) == 1 and blocks(children[0][1]):
        body, prefix = children[0][1], f"{prefix}{children[0][0]}."
        children = blocks(body)
    steps: list[tuple[str, list[nn.Module]]] = [("heads", heads)] if heads else []
    return steps + [(prefix + name, [child]) for name, child in reversed(children)]


def reinitialise_(modules: Sequence[nn.Module], seed: int) -> None:
    """Re-initialise ``modules`` in place, reproducibly, leaving the global RNG as it was.

    Every submodule with ``reset_parameters`` (or ``_reset_parameters``, as attention has) is
    reset; a parameter no such method owns is randomly permuted (its values kept, their
    positions not). Randomness is seeded by ``seed`` on the CPU and the modules' CUDA device.
    """
    devices = sorted({p.device.index or 0 for m in modules for p in m.parameters() if p.device.type == "cuda"})
    covered: set[int] = set()
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(int(seed))
        for module in modules:
            for sub in module.modules():
                reset = getattr(sub, "reset_parameters", None) or getattr(sub, "_reset_parameters", None)
                if callable(reset):
                    reset()
                    covered.update(id(p) for p in sub.parameters(recurse=False))
        gen = torch.Generator().manual_seed(int(seed))
        for module in modules:
            for p in module.parameters():
                if id(p) not in covered:
                    covered.add(id(p))
                    perm = torch.randperm(p.numel(), generator=gen).to(p.device)
                    p.copy_(p.reshape(-1)[perm].reshape(p.shape))


def map_similarity(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Spearman rank correlation over voxels and the share of ``reference``'s top-10% voxels
    in ``other``'s top 10%; NaN when either map is flat (a rank correlation is undefined)."""
    a, b = np.asarray(reference, dtype=np.float64).ravel(), np.asarray(other, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"map_similarity: shapes differ {np.shape(reference)} vs {np.shape(other)}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"spearman": float("nan"), "top10_overlap": float("nan")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = float(spearmanr(a, b).statistic)
    top_a, top_b = top_voxels(a, (10,))[10], top_voxels(b, (10,))[10]
    return {"spearman": rho, "top10_overlap": len(np.intersect1d(top_a, top_b)) / len(top_a)}


def step_seed(seed: int, step: int) -> int:
    """Seed of the re-initialisation at cascade ``step`` (a pure function of the two)."""
    return int(np.random.SeedSequence([int(seed), int(step)]).generate_state(1)[0])


def cascading_randomisation(
    model: nn.Module, x: torch.Tensor, case_id: str, targets: Sequence[str], methods: Sequence[str],
    n_samples: int = 8, noise_std: float = 0.05, seed: int = 0, gradcam_layer: str | None = None,
    last_only: bool = False, reference: dict[tuple[str, str], np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """Rows of ``sanity.csv`` for one knee ``x`` (1, 1, D, H, W): one per step, target and method.

    Step 0 (layer ``"none"``) is the trained map itself. ``input_spearman`` is each map's rank
    correlation with ``|x|``: the level a map that only shows the input reaches (gradient x
    input maps keep it after every step, which is why the randomised maps stay correlated).
    ``model`` (eval mode) is left unchanged: the cascade runs on a deep copy. The KL target keeps
    the class the trained model predicts; the SmoothGrad noise is the knee's own at every step.

    ``last_only``: maps are recomputed only once every step is applied (the fully randomised
    model, the step the randomisation verdict reads), at a fraction of the cost; rows for step 0
    and the last step (layer ``"all"``). ``reference``: the trained maps by (target, method),
    when the caller already has them (else they are computed here).
    """
    kl_class = predicted_kl(model, x)
    noise_seed = knee_seed(seed, case_id)
    magnitude = x[0, 0].abs().detach().cpu().numpy()
    if reference is None:
        trained = ProbeAttributor(model, targets, methods, n_samples, noise_std, gradcam_layer)
        reference = {(t, m): trained(x, t, m, kl_class, noise_seed) for t in targets for m in methods}

    def row(step: int, layer: str, target: str, method: str, sal: np.ndarray) -> dict[str, Any]:
        return {"case_id": case_id, "target": target, "method": method, "step": step, "layer": layer,
                **map_similarity(reference[target, method], sal),
                "input_spearman": map_similarity(magnitude, sal)["spearman"]}

    rows = [row(0, "none", t, m, sal) for (t, m), sal in reference.items()]
    net = copy.deepcopy(model).eval()
    steps = randomisation_steps(net)
    for step, (layer, modules) in enumerate(steps, start=1):
        reinitialise_(modules, step_seed(seed, step))
        if last_only and step < len(steps):
            continue
        attributor = ProbeAttributor(net, targets, methods, n_samples, noise_std, gradcam_layer)
        rows += [row(step, "all" if last_only else layer, t, m, attributor(x, t, m, kl_class, noise_seed))
                 for t, m in reference]
    return rows


# --------------------------------------------------------------------------- deletion
def deletion_fractions(steps: int) -> np.ndarray:
    """``steps + 1`` equally spaced fractions of voxels removed, 0 to 1 inclusive."""
    if steps < 1:
        raise ValueError(f"deletion steps = {steps}; expected >= 1")
    return np.linspace(0.0, 1.0, int(steps) + 1)


@torch.no_grad()
def deletion_curve(
    score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, saliency: np.ndarray,
    fractions: Sequence[float], seed: int, batch_size: int = 8,
) -> dict[str, np.ndarray]:
    """The score of ``x`` (1, 1, D, H, W) as its voxels are set to 0, most salient first and in
    random order.

    Args:
        score_fn: (B, 1, D, H, W) -> (B,) scores, knees independent (eval mode).
        x: one z-scored knee.
        saliency: its (D, H, W) map; ties are removed in voxel order.
        fractions: fractions of voxels removed (``round(f * n)`` voxels each).
        seed: seeds the random order (numpy ``default_rng``).
        batch_size: perturbed copies scored per forward pass.

    Returns:
        ``{"salient": scores, "random": scores}``, each of ``len(fractions)`` floats.
    """
    flat = np.asarray(saliency, dtype=np.float64).ravel()
    n = flat.size
    if x.numel() != n:
        raise ValueError(f"saliency: {n} voxels for an input of shape {tuple(x.shape)}")
    orders = {"salient": np.argsort(-flat, kind="stable"), "random": np.random.default_rng(seed).permutation(n)}
    counts = [int(round(float(f) * n)) for f in fractions]
    out = {}
    for name, order in orders.items():
        rank = torch.empty(n, dtype=torch.long)
        rank[torch.from_numpy(order)] = torch.arange(n)
        scores = []
        for start in range(0, len(counts), batch_size):
            kept = torch.stack([rank >= k for k in counts[start : start + batch_size]]).to(x.device)
            batch = (x.reshape(1, -1) * kept).reshape(-1, *x.shape[1:])
            scores.append(score_fn(batch).float().cpu())
        out[name] = torch.cat(scores).numpy().astype(np.float64)
    return out



def knee_deletion(
    attributor: ProbeAttributor, x: torch.Tensor, case_id: str, targets: Sequence[str], methods: Sequence[str],
    fractions: Sequence[float], seed: int = 0, maps: dict[tuple[str, str], np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """Rows of ``deletion.csv`` for one knee: each target and method, both orders, every fraction
    (the maps: ``maps[target, method]`` when given, else computed by ``attributor``)."""
    model = attributor.model
    kl_class = predicted_kl(model, x)
    noise_seed = knee_seed(seed, case_id)
    order_seed = int(np.random.SeedSequence([noise_seed, 1]).generate_state(1)[0])
    rows = []
    for target in targets:
        def score(xb: torch.Tensor, t: str = target) -> torch.Tensor:
            return target_logit(model(xb), t, None if kl_class is None else kl_class.expand(xb.shape[0]))

        for method in methods:
            sal = maps[target, method] if maps is not None else attributor(x, target, method, kl_class, noise_seed)
            for order, logits in deletion_curve(score, x, sal, fractions, order_seed).items():
                rows += [{"case_id": case_id, "target": target, "method": method, "order": order,
                          "fraction": float(f), "logit": float(v)} for f, v in zip(fractions, logits)]
    return rows


# --------------------------------------------------------------------------- both, for a run
def run_sanity_checks(
    model: nn.Module, images: torch.Tensor, case_ids: Sequence[str], mode: str, methods: Sequence[str],
    n_samples: int = 8, noise_std: float = 0.05, seed: int = 0, deletion_steps: int = 10,
    gradcam_layer: str | None = None, progress: bool = True, last_only: bool = False,
    maps: dict[tuple[int, str, str], np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(sanity.csv, deletion.csv)`` tables for the knees ``images`` (N, 1, D, H, W) of one run.

    ``model`` is used in eval mode on its parameters' device and left as it was (mode and
    weights). ``last_only``: see :func:`cascading_randomisation`. ``maps``: the trained maps
    by (knee index, target, method), reused instead of recomputed. Columns:
    :data:`SANITY_COLUMNS` and :data:`DELETION_COLUMNS`.
    """
    if len(case_ids) != images.shape[0]:
        raise ValueError(f"case_ids: {len(case_ids)} ids for {images.shape[0]} images")
    targets = targets_for_mode(mode)
    fractions = deletion_fractions(deletion_steps)
    device = next(model.parameters()).device
    sanity, deletion = [], []
    with eval_mode(model):
        attributor = ProbeAttributor(model, targets, methods, n_samples, noise_std, gradcam_layer)
        for i in tqdm(range(images.shape[0]), desc="saliency checks", disable=not progress):
            x, cid = images[i : i + 1].to(device), str(case_ids[i])
            known = None if maps is None else {(t, m): maps[i, t, m] for t in targets for m in methods}
            sanity += cascading_randomisation(model, x, cid, targets, methods, n_samples, noise_std, seed,
                                              gradcam_layer, last_only=last_only, reference=known)
            deletion += knee_deletion(attributor, x, cid, targets, methods, fractions, seed, maps=known)
    return pd.DataFrame(sanity, columns=list(SANITY_COLUMNS)), pd.DataFrame(deletion, columns=list(DELETION_COLUMNS))
