"""HierarchicalProbe: one shared 3D encoder with an OA head, a KL head, or both.

Modes:
    * ``single_oa``: one OA logit, binary cross-entropy.
    * ``single_kl``: five KL logits, cross-entropy; ``p_oa = p(KL2) + p(KL3) + p(KL4)``.
    * ``dual``: KL head (5 logits) and OA head (2 logits), loss ``CE(KL) + oa_weight * CE(OA)``.
      Variant ``parallel`` puts both heads on the embedding (the paper's abstract); variant
      ``stacked`` feeds the KL logits to a ``Linear(5 -> 2)`` OA head (the released code).
    * ``ordinal``: a CORN head (Shi, Cao & Raschka 2021) on the KL label alone: four chain
      logits ``l_k``, ``sigmoid(l_k) = P(KL > k | KL > k - 1)``, so ``P(KL > k) = prod_{j<=k}
      sigmoid(l_j)`` is non-increasing in ``k`` (rank consistency); ``p_kl`` are the differences
      and ``p_oa = P(KL >= 2)``. There is no OA head: ``forward`` returns ``"oa": None`` and the
      chain logits as ``"kl"`` (shape (B, 4)). Loss: :func:`corn_loss`.

The KL loss's targets may be smoothed (``label_smoothing``, see :func:`corn_loss` for ordinal);
the OA loss never is.

Heads follow timm's classifier convention (``forward(x, pre_logits=False)``, ``reset(n)``).

Example:
    >>> import torch
    >>> from oaprobe.models.backbones import build_backbone
    >>> probe = HierarchicalProbe(build_backbone("resnet3d", (16, 16, 16), 0.25), "dual", "stacked")
    >>> out = probe(torch.zeros(2, 1, 16, 16, 16))
    >>> out["oa"].shape, out["kl"].shape, out["embedding"].shape
    (torch.Size([2, 2]), torch.Size([2, 5]), torch.Size([2, 128]))
    >>> p_oa, p_kl = probe.predict_proba(out)
    >>> p_oa.shape, p_kl.shape
    (torch.Size([2]), torch.Size([2, 5]))
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from oaprobe.config import RunConfig
from oaprobe.errors import ConfigError
from oaprobe.facts import ALL_MODES, DUAL_VARIANTS, N_KL, OA_THRESHOLD
from oaprobe.models.backbones import build_backbone


class LinearHead(nn.Module):
    """Linear classifier head with timm's interface.

    Args:
        in_features: input width.
        num_classes: logits; 0 makes the head an identity (features pass through).
        drop_rate: dropout before the linear layer.
    """

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        self.drop = nn.Dropout(drop_rate)
        self.fc: nn.Module = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int) -> None:
        """Replace the linear layer by a fresh one with ``num_classes`` outputs."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


class HierarchicalProbe(nn.Module):
    """Encoder plus OA and/or KL heads; ``forward`` returns ``{"oa", "kl", "embedding"}``.

    Args:
        encoder: module ``(B, 1, D, H, W) -> (B, out_dim)`` with attribute ``out_dim``.
        mode: ``"single_oa"``, ``"single_kl"``, ``"dual"`` or ``"ordinal"``.
        dual_variant: ``"parallel"`` or ``"stacked"`` (only used in ``dual``).
        label_smoothing: default smoothing of the KL loss's targets in [0, 1) (unused in single_oa).
    """

    def __init__(self, encoder: nn.Module, mode: str, dual_variant: str = "parallel",
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        if mode not in ALL_MODES:
            raise ConfigError(f"HierarchicalProbe.mode = {mode!r}; expected one of {list(ALL_MODES)}")
        if dual_variant not in DUAL_VARIANTS:
            raise ConfigError(
                f"HierarchicalProbe.dual_variant = {dual_variant!r}; expected one of {list(DUAL_VARIANTS)}"
            )
        _check_smoothing(label_smoothing)
        self.encoder = encoder
        self.mode = mode
        self.dual_variant = dual_variant
        self.label_smoothing = float(label_smoothing)
        dim = int(encoder.out_dim)
        self.kl_head: LinearHead | None = None
        self.oa_head: LinearHead | None = None
        if mode == "single_oa":
            self.oa_head = LinearHead(dim, 1)
        elif mode == "single_kl":
            self.kl_head = LinearHead(dim, N_KL)
        elif mode == "ordinal":
            self.kl_head = LinearHead(dim, N_KL - 1)  # the CORN chain
        else:
            self.kl_head = LinearHead(dim, N_KL)
            self.oa_head = LinearHead(N_KL if dual_variant == "stacked" else dim, 2)

    @property
    def out_dim(self) -> int:
        """Embedding width (the encoder's ``out_dim``)."""
        return int(self.encoder.out_dim)

    @property
    def gradcam_layer(self) -> str:
        """The encoder's Grad-CAM layer as a path inside this probe."""
        return f"encoder.{self.encoder.gradcam_layer}"

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        embedding = self.encoder(x)
        kl = self.kl_head(embedding) if self.kl_head is not None else None
        oa = None
        if self.oa_head is not None:
            stacked = self.mode == "dual" and self.dual_variant == "stacked"
            oa = self.oa_head(kl if stacked else embedding)
        return {"oa": oa, "kl": kl, "embedding": embedding}

    def loss(
        self,
        out: dict[str, torch.Tensor | None],
        kl: torch.Tensor | None,
        oa: torch.Tensor | None,
        kl_weight: torch.Tensor | None = None,
        oa_weight_classes: torch.Tensor | None = None,
        oa_weight: float = 1.0,
        label_smoothing: float | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss of this mode and its parts (unweighted by ``oa_weight``).

        Args:
            out: the dict returned by ``forward``.
            kl: KL grades (B,) int in 0..4 (needed by single_kl, dual and ordinal).
            oa: OA labels (B,) int 0/1 (needed by single_oa and dual).
            kl_weight: optional class weights (5,) for the KL loss (ordinal: per knee, see
                :func:`corn_loss`).
            oa_weight_classes: optional class weights (2,) for the OA loss (for single_oa each
                knee's BCE term is weighted by its class weight, normalised like CE).
            oa_weight: lambda, the weight of the OA term in dual mode.
            label_smoothing: smoothing of the KL targets; None = the probe's ``label_smoothing``.

        Returns:
            ``(loss, {"kl": ..., "oa": ...})`` with only the parts this mode has.
        """
        smoothing = self.label_smoothing if label_smoothing is None else _check_smoothing(label_smoothing)
        parts: dict[str, torch.Tensor] = {}
        if out["kl"] is not None:
            target = _labels("kl", kl, N_KL)
            if self.mode == "ordinal":
                parts["kl"] = corn_loss(out["kl"], target, weight=kl_weight, label_smoothing=smoothing)
            else:
                parts["kl"] = F.cross_entropy(out["kl"], target, weight=kl_weight, label_smoothing=smoothing)
        if out["oa"] is not None:
            target = _labels("oa", oa, 2)
            if self.mode == "single_oa":
                per_knee = F.binary_cross_entropy_with_logits(out["oa"][:, 0], target.float(), reduction="none")
                if oa_weight_classes is None:
                    parts["oa"] = per_knee.mean()
                else:
                    w = oa_weight_classes.to(per_knee)[target]
                    parts["oa"] = (w * per_knee).sum() / w.sum()
            else:
                parts["oa"] = F.cross_entropy(out["oa"], target, weight=oa_weight_classes)
        if self.mode == "dual":
            total = parts["kl"] + oa_weight * parts["oa"]
        else:
            total = parts["oa"] if self.mode == "single_oa" else parts["kl"]
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def predict_proba(self, out: dict[str, torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(p_oa (B,), p_kl (B, 5) or None)`` from the forward output (see the module docstring)."""
        if self.mode == "ordinal":
            return corn_exceedance(out["kl"])[:, OA_THRESHOLD - 1], corn_proba(out["kl"])
        p_kl = torch.softmax(out["kl"], dim=1) if out["kl"] is not None else None
        if self.mode == "single_oa":
            p_oa = torch.sigmoid(out["oa"][:, 0])
        elif self.mode == "single_kl":
            p_oa = p_kl[:, OA_THRESHOLD:].sum(dim=1)
        else:
            p_oa = torch.softmax(out["oa"], dim=1)[:, 1]
        return p_oa, p_kl


def corn_exceedance(chain: torch.Tensor) -> torch.Tensor:
    """``P(KL > k)`` for k = 0..3, (B, 4), from CORN chain logits (B, 4): cumulative products of sigmoids."""
    return torch.cumprod(torch.sigmoid(chain), dim=1)


def corn_proba(chain: torch.Tensor) -> torch.Tensor:
    """KL probabilities (B, 5) from CORN chain logits: ``p_k = P(KL > k - 1) - P(KL > k)``.

    Each product of sigmoids is at most the one before it, so every difference is >= 0 and the
    five sum to 1 up to rounding.
    """
    above = corn_exceedance(chain)
    first, last = torch.ones_like(above[:, :1]), torch.zeros_like(above[:, :1])
    return torch.cat([first, above], 1) - torch.cat([above, last], 1)


def corn_log_proba(chain: torch.Tensor) -> torch.Tensor:
    """``log p_kl`` (B, 5) from CORN chain logits, in log space (finite where ``corn_proba`` underflows).

    ``log p_k = sum_{j<k} logsigmoid(l_j) + logsigmoid(-l_k)``; the last grade has no stop term.
    """
    passed = torch.cumsum(F.logsigmoid(chain), dim=1)
    reach = torch.cat([torch.zeros_like(passed[:, :1]), passed], 1)  # log P(KL > k - 1), k = 0..4
    stop = torch.cat([F.logsigmoid(-chain), torch.zeros_like(chain[:, :1])], 1)
    return reach + stop


def corn_loss(chain: torch.Tensor, kl: torch.Tensor, weight: torch.Tensor | None = None,
              label_smoothing: float = 0.0) -> torch.Tensor:
    """CORN loss: mean BCE of the conditional tasks "KL > k" over the knees with KL > k - 1.

    Task k sees only the knees that reached it (KL >= k), with target ``KL > k``; the loss is the
    mean over all (knee, task) pairs, as in ``coral_pytorch.losses.corn_loss``. Written here
    because that one (and dlordinal's) takes neither class weights nor soft targets.

    Args:
        chain: (B, 4) chain logits.
        kl: (B,) int grades 0..4.
        weight: optional class weights (5,): each knee's tasks are weighted by its grade's
            weight, normalised by the weighted count of pairs (CE's ``weight`` convention).
        label_smoothing: s in [0, 1): a binary target t becomes ``(1 - s) t + s / 2``, which is
            two-class cross-entropy's label smoothing.
    """
    tasks = torch.arange(chain.shape[1], device=chain.device)
    grade = kl.to(chain.device).view(-1, 1)
    target = (grade > tasks).float() * (1 - label_smoothing) + label_smoothing / 2
    pairs = (grade >= tasks).float()
    if weight is not None:
        pairs = pairs * weight.to(pairs)[grade.view(-1)].view(-1, 1)
    bce = F.binary_cross_entropy_with_logits(chain.float(), target, reduction="none")
    return (pairs * bce).sum() / pairs.sum()


def _check_smoothing(value: float) -> float:
    """``value`` if it is a label smoothing in [0, 1), else a ConfigError naming it."""
    if not 0 <= value < 1:
        raise ConfigError(f"label_smoothing = {value!r}; expected 0 (off) or a value in (0, 1)")
    return float(value)


def _labels(name: str, labels: torch.Tensor | None, n_classes: int) -> torch.Tensor:
    """Check a label vector for a loss term and return it as int64."""
    if labels is None:
        raise ValueError(f"loss needs {name!r} labels for this mode, got None")
    labels = torch.as_tensor(labels).long()
    if labels.ndim != 1:
        raise ValueError(f"{name!r} labels must be a vector (B,), got shape {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name!r} labels must lie in 0..{n_classes - 1}, got {labels.unique().tolist()}")
    return labels


def build_probe(cfg: RunConfig) -> HierarchicalProbe:
    """The probe a RunConfig describes, initialised from ``cfg.seed`` (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        encoder = build_backbone(cfg.backbone, tuple(cfg.input_shape), cfg.width)
        return HierarchicalProbe(encoder, cfg.mode, cfg.dual_variant, cfg.label_smoothing)


def encoder_fingerprint(cfg: RunConfig) -> str:
    """A hash of the initial encoder weights ``cfg`` builds: runs of one backbone and seed in different
    modes have the same fingerprint (their encoders start alike), which pairs them by seed."""
    h = hashlib.sha256()
    for name, tensor in build_probe(cfg).encoder.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
