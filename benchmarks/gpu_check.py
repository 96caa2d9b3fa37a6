"""GPU check: every registered backbone trains a few steps at the paper's input size.

At the reference protocol's size (160x256x256, M3T 128^3 as in the paper; width 1; batch 2)
each backbone runs forward + backward + AdamW steps under bf16 autocast with channels-last 3D
inputs (what :func:`oaprobe.training.engine.fit` does on CUDA), and prints knees/s and peak GPU
memory. On a machine without CUDA it prints a message and exits with status 0.

Usage:
    python benchmarks/gpu_check.py [--steps 5] [--batch 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

PAPER_SHAPE = (160, 256, 256)
SHAPE_OVERRIDES = {"m3t": (128, 128, 128)}  # the reference study resized M3T inputs to 128^3


def check_backbone(backbone: str, shape: tuple[int, int, int], batch: int, steps: int, manifest: str) -> str:
    from oaprobe.config import RunConfig
    from oaprobe.models.probe import build_probe

    device = torch.device("cuda")
    cfg = RunConfig.from_dict({"manifest": manifest, "backbone": backbone, "width": 1.0, "input_shape": shape,
                               "batch_size": batch, "mode": "dual"})
    torch.manual_seed(0)
    model = build_probe(cfg).to(device).to(memory_format=torch.channels_last_3d).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    x = torch.randn(batch, 1, *shape, device=device).contiguous(memory_format=torch.channels_last_3d)
    kl = torch.randint(0, 5, (batch,), device=device)
    oa = (kl >= 2).long()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def step() -> torch.Tensor:
        with torch.autocast("cuda", dtype=dtype):
            loss, _ = model.loss(model(x), kl, oa)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    torch.cuda.reset_peak_memory_stats(device)
    step()  # warm-up (cuDNN autotuning, allocator)
    torch.cuda.synchronize(device)
    tic = time.perf_counter()
    losses = [step() for _ in range(steps)]
    torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - tic) / steps
    finite = bool(torch.isfinite(torch.stack(losses)).all())
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    n_par = sum(p.numel() for p in model.parameters()) / 1e6
    return (f"{backbone:16s} {str(shape):16s} {n_par:7.2f}M params  {batch / seconds:7.2f} knees/s  "
            f"peak {peak:6.2f} GiB  loss finite: {finite}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine; nothing to check (exiting cleanly).")
        return 0
    from oaprobe.models.backbones import list_backbones

    torch.backends.cudnn.benchmark = True
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
    failures = 0
    with tempfile.NamedTemporaryFile(suffix=".csv") as manifest:
        for backbone in list_backbones():
            shape = SHAPE_OVERRIDES.get(backbone, PAPER_SHAPE)
            try:
                print(check_backbone(backbone, shape, args.batch, args.steps, manifest.name), flush=True)
            except Exception as err:  # report every backbone, then fail at the end
                failures += 1
                print(f"{backbone:16s} {str(shape):16s} FAILED: {type(err).__name__}: {err}", flush=True)
            torch.cuda.empty_cache()  # the backbone's model and optimiser went with check_backbone's frame
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
