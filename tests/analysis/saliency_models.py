"""Tiny models and volumes shared by the saliency tests (8^3 voxels, a few channels)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

S = 8  # edge of the tiny test volumes


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
    """Stand-in for HierarchicalProbe with the same output contract (seeded: the same weights each time)."""

    def __init__(self, mode: str, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
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


class LinearProbe(nn.Module):
    """A planted single_oa probe: OA logit ``sum(w * x)`` (identity encoder, one linear head).

    SmoothGrad x input of it without noise is ``|w * x|`` min-max scaled, so its saliency, its
    deletion curve and the effect of re-initialising its head are known in closed form.
    """

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv3d(1, 1, 1, bias=False), nn.Flatten())
        nn.init.ones_(self.encoder[0].weight)
        self.encoder.out_dim = w.numel()
        self.oa_head = nn.Linear(w.numel(), 1, bias=False)
        with torch.no_grad():
            self.oa_head.weight.copy_(w.reshape(1, -1))

    def forward(self, x: torch.Tensor) -> dict:
        e = self.encoder(x)
        return {"oa": self.oa_head(e), "kl": None, "embedding": e}


def label_map() -> np.ndarray:
    """Femur (1) on top, femoral cartilage (2), tibial cartilage (4), tibia (3) below."""
    lab = np.zeros((S, S, S), np.uint8)
    lab[:, 1:3] = 1
    lab[:, 3] = 2
    lab[:, 4] = 4
    lab[:, 5:7] = 3
    return lab
