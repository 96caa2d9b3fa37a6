"""Where and how a model computes: device choice, CPU threads, seeds, deterministic settings, eval mode.

Example:
    >>> epoch_seed(0, 3) == epoch_seed(0, 3) != epoch_seed(0, 4)
    True
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

from oaprobe.errors import ConfigError


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {device!r} but CUDA is not available on this machine")
    return dev


def cpu_threads() -> int:
    """Threads for CPU training: ``OMP_NUM_THREADS`` when set, else ``min(2, cores)``.

    More threads than free cores is catastrophic on a shared machine (ENV-NOTES), hence the cap.
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(2, os.cpu_count() or 1))


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run seeded ``seed`` (a pure function: resume is exact)."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a fresh CPU generator with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _deterministic(mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms`` without its import of ``torch._inductor`` (dynamo and
    sympy: 3.8 s per process on this 2-core host, paid by every sweep worker and chapter kernel) to
    set a compiler flag oaprobe never reads, since nothing here is ``torch.compile``d. Falls back
    to the public call where the private setter is missing (another torch)."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


@contextlib.contextmanager
def compute_settings(device: torch.device) -> Iterator[None]:
    """Deterministic CPU compute / autotuned cuDNN on GPU (the caller's settings are restored)."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_benchmark = torch.backends.cudnn.benchmark
    try:
        if device.type == "cpu":
            torch.set_num_threads(cpu_threads())
            _deterministic(True, warn_only=True)
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: autotuned kernels pay off
        yield
    finally:
        torch.set_num_threads(old_threads)
        _deterministic(old_det, warn_only=old_warn)
        torch.backends.cudnn.benchmark = old_benchmark


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode inside the block, back in the mode it had after (even on error)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA devices that support it; a no-op elsewhere (CPU runs in float32)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
