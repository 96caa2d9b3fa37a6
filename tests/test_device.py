"""Device, threads and seeds: the facts both training and the saliency stage compute with."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from oaprobe.device import compute_settings, cpu_threads, epoch_seed, eval_mode, resolve_device
from oaprobe.errors import ConfigError


def test_epoch_seed_is_a_pure_function():
    assert epoch_seed(0, 1) == epoch_seed(0, 1)
    assert len({epoch_seed(s, e) for s in range(3) for e in range(3)}) == 9


def test_cpu_threads_respects_omp(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= cpu_threads() <= 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_resolve_device_names_the_missing_cuda():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="'cuda'.*not available"):
        resolve_device("cuda")


def test_compute_settings_restores_the_callers_torch_settings():
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    with compute_settings(torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


def test_compute_settings_does_not_import_the_compiler():
    code = ("import sys, torch; from oaprobe.device import compute_settings\n"
            "with compute_settings(torch.device('cpu')):\n"
            "    assert torch.are_deterministic_algorithms_enabled()\n"
            "    assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
            "print('torch._inductor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


_CHURN = """
import resource, sys, torch
from oaprobe.device import hold_freed_memory
held = hold_freed_memory() if sys.argv[1] == "hold" else False
def churn():  # a training step's pattern: many activations, freed together
    blocks = [torch.ones(2**20) for _ in range(16)]  # 16 x 4 MiB, each touched
    del blocks
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    churn()
print(held, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator policy is glibc's")
def test_held_memory_is_not_faulted_in_again():
    runs = {}
    for mode in ("hold", "default"):
        out = subprocess.run([sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True)
        held, faults = out.stdout.split()
        runs[mode] = (held, int(faults))
    assert runs["hold"][0] == "True"
    # 5 rounds of 64 MiB are 81,920 pages; held, the heap reuses the first round's memory and faults
    # in less than one round's 16,384 (3,000-7,000 on the 2-core host, the default 17,000-82,000)
    assert runs["hold"][1] < 16_384
    assert runs["hold"][1] < runs["default"][1]


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_models_mode_even_on_error(training):
    model = torch.nn.Dropout().train(training)
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not model.training
        raise RuntimeError("inside the block")
    assert model.training is training
