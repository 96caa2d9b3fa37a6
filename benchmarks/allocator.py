"""Training-step time with glibc's default allocator policy against ``oaprobe.device.hold_freed_memory``.

The policy is process-wide and cannot be undone, so each measurement is a fresh process; the
two policies alternate (``--rounds`` times per backbone) so a shared host's drift falls on both.
Each process times ``--steps`` training steps of a paper backbone at the book's input size
(``backbone_speed.Step``: batch 8, width 0.25, one thread) after 3 warm-up steps and prints
ms/step, minor page faults/step and system ms/step; printed are the medians and the speed-up.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/allocator.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from backbone_speed import PAPER_BACKBONES, Step, book_shape  # this folder's: run as a script

from oaprobe.device import hold_freed_memory
from oaprobe.models.backbones import build_backbone


def one_process(backbone: str, hold: bool, steps: int) -> dict[str, float]:
    """Time ``steps`` training steps of ``backbone`` in this (fresh) process."""
    if hold:
        hold_freed_memory()
    torch.manual_seed(0)
    shape = book_shape(backbone)
    step = Step(build_backbone(backbone, shape, width=0.25), shape, 8, bf16=False)
    for _ in range(3):
        step()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    return {"ms": 1e3 * (t1 - t0) / steps, "faults": (r1.ru_minflt - r0.ru_minflt) / steps,
            "sys_ms": 1e3 * (r1.ru_stime - r0.ru_stime) / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default=",".join(PAPER_BACKBONES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("BACKBONE", "POLICY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_process(args.child[0], args.child[1] == "held", args.steps)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print(f"{env['OMP_NUM_THREADS']} thread(s); {args.rounds} fresh processes per policy, alternating; medians")
    for name in args.backbones.split(","):
        got: dict[str, list[dict[str, float]]] = {"default": [], "held": []}
        for _ in range(args.rounds):
            for policy in got:
                out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--child", name, policy],
                                     capture_output=True, text=True, check=True, env=env)
                got[policy].append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = {p: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for p, rows in got.items()}
        d, h = med["default"], med["held"]
        print(f"{name:9s} default {d['ms']:6.1f} ms/step ({d['faults']:6.0f} faults, {d['sys_ms']:4.1f} ms system)"
              f" | held {h['ms']:6.1f} ms/step ({h['faults']:6.0f} faults, {h['sys_ms']:4.1f} ms system)"
              f" | speed-up x{d['ms'] / h['ms']:.2f}", flush=True)


if __name__ == "__main__":
    main()
