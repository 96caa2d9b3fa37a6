"""Where and how a model computes: device choice, CPU threads, seeds, deterministic settings, eval mode.

Example:
    >>> epoch_seed(0, 3) == epoch_seed(0, 3) != epoch_seed(0, 4)
    True
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
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


#: glibc ``mallopt`` parameters: M_TRIM_THRESHOLD and M_MMAP_THRESHOLD (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: the largest mmap threshold glibc accepts on 64-bit hosts (half its 64 MiB heap limit)
_MMAP_THRESHOLD_MAX = 32 * 2**20


@functools.cache
def hold_freed_memory() -> bool:
    """Keep freed memory in this process's heap (glibc only; process-wide, never undone).

    glibc hands large blocks back to the kernel when they are freed, so every training step
    faults its activation memory in again (about 3,000-6,700 page faults a step for M3T and
    nnMamba at the book's sizes, 5-15 ms of system time). Blocks up to 32 MiB now come from the
    heap and the heap is never trimmed: the arithmetic is unchanged, the process keeps its peak
    memory (benchmarks/README.md, "allocator"). Returns whether glibc took both settings.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl without mallopt)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


@contextlib.contextmanager
def compute_settings(device: torch.device) -> Iterator[None]:
    """Deterministic CPU compute / autotuned cuDNN on GPU (the caller's settings are restored; the
    allocator policy of :func:`hold_freed_memory`, set for CPU work, is process-wide and stays)."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_benchmark = torch.backends.cudnn.benchmark
    try:
        if device.type == "cpu":
            hold_freed_memory()
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
