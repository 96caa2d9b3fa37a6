"""Training batches: index gathers from one preloaded tensor per split, and light augmentation.

Example:
    >>> x = torch.zeros(2, 1, 8, 8, 8)
    >>> augment_batch(x, torch.Generator().manual_seed(0)).shape
    torch.Size([2, 1, 8, 8, 8])
"""

from __future__ import annotations

import numpy as np
import torch


class Volumes:
    """Batches from the preloaded volume tensor, moved to the device.

    On CUDA the whole tensor is moved to the GPU once when it takes under a quarter of the free
    memory; otherwise every batch is gathered into pinned memory and copied asynchronously.
    Conv nets on CUDA get channels-last 3D inputs (cuDNN's fast layout).
    """

    def __init__(self, images: torch.Tensor, device: torch.device, channels_last: bool) -> None:
        self.device = device
        self.channels_last = channels_last
        self.images = images
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if images.numel() * images.element_size() < free // 4:
                self.images = images.to(device)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        if self.images.device == self.device:
            x = self.images[index.to(self.device)]
        else:
            x = self.images[index].pin_memory().to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x


def augment_batch(x: torch.Tensor, generator: torch.Generator, max_shift: int | None = None) -> torch.Tensor:
    """Light 3D augmentation of a batch ``(B, 1, D, H, W)``, parameters drawn from ``generator``.

    Per knee: an anterior-posterior flip (W axis) with probability 1/2, a circular shift of up to
    ``max_shift`` voxels (default 1/16 of each side) along each axis, and an intensity scale in
    [0.9, 1.1] plus offset in [-0.1, 0.1] (inputs are z-scored). The medial-lateral axis (D) is
    never flipped: that would swap the medial and lateral compartments.
    """
    b = x.shape[0]
    sides = x.shape[2:]
    flip = torch.rand(b, generator=generator) < 0.5
    limits = [max_shift if max_shift is not None else max(1, s // 16) for s in sides]
    shifts = [torch.randint(-m, m + 1, (b,), generator=generator) for m in limits]
    scale = 0.9 + 0.2 * torch.rand(b, generator=generator)
    offset = -0.1 + 0.2 * torch.rand(b, generator=generator)
    out = []
    for i in range(b):
        v = x[i]
        if flip[i]:
            v = v.flip(-1)
        v = torch.roll(v, shifts=[int(s[i]) for s in shifts], dims=(1, 2, 3))
        out.append(v * float(scale[i]) + float(offset[i]))
    return torch.stack(out)


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``n / (K * n_c)`` of integer ``labels``, K = classes present.

    The same as scikit-learn's ``compute_class_weight("balanced")``; absent classes get 0.
    """
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
    present = max(1, int((counts > 0).sum()))
    weights = np.where(counts > 0, counts.sum() / (present * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)
