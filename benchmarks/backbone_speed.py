"""Training-step speed of the paper backbones against the core's matmul rate, fp32 and bf16 autocast.

For every paper backbone at the book's input size (the ``default`` preset: resnet3d and nnmamba
at 32^3, m3t at 24^3; width 0.25, batch 8) one training step is forward + loss + backward +
the engine's (fused) AdamW. Printed side by side, all measured in this one process:

* ms/step (median of ``--repeats`` timed steps after warm-up), and beside it the same step with
  every kernel tap run (plain torch convolutions instead of :mod:`oaprobe.models.layers`'s, which
  skip the taps that only read zero padding) and the speed-up of skipping them;
* the step's FLOPs (``torch.utils.flop_counter.FlopCounterMode`` over forward and backward; the
  skipped taps are not counted) and the achieved GFLOP/s;
* the fp32 matmul rate of this process (``--matmul`` square, median) and the ratio to it
  (issue 9's target: >= 0.5);
* bf16 autocast (``torch.autocast("cpu", dtype=torch.bfloat16)``): speed-up over fp32, whether
  two identical seeded steps give bit-identical weights, and the drift from fp32 of the loss
  and of the gradient (relative L2 over all parameters, and cosine), beside the fp32 gradient's
  own drift from float64 as the yardstick.

With ``--before REV`` it instead times this tree's backbones against git revision ``REV``'s
(issue 32: before/after in one run): ``REV``'s ``oaprobe`` is extracted with ``git archive``
as a package ``oaprobe_before`` and loaded beside this one; the before step, the after step
and the matmul alternate (so a shared host's load falls on all alike); printed are ms/step,
each step's ratio to the matmul rate (both with the model's FLOPs as ``REV`` counts them) and
the speed-up.

Usage (one thread; the machine is shared, so medians of several repetitions):
    OMP_NUM_THREADS=1 python benchmarks/backbone_speed.py --repeats 7
    OMP_NUM_THREADS=1 python benchmarks/backbone_speed.py --before 9f9e634 --repeats 9
"""

from __future__ import annotations

import argparse
import copy
import importlib
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from oaprobe.config import get_preset
from oaprobe.models.backbones import build_backbone
from oaprobe.models.layers import Conv2d, Conv3d
from oaprobe.training.loop import make_optimizer

PAPER_BACKBONES = ("resnet3d", "m3t", "nnmamba")


def book_shape(backbone: str, preset: str = "default") -> tuple[int, int, int]:
    """The input shape the ``preset`` trains ``backbone`` at (its override, else the run's)."""
    p = get_preset(preset)
    return tuple(p.backbone_overrides.get(backbone, {}).get("input_shape", p.run["input_shape"]))


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def matmul_gflops(n: int, repeats: int) -> float:
    """Achieved fp32 GFLOP/s of an ``n x n`` matmul in this process."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    return 2 * n**3 / median_seconds(lambda: a @ b, repeats) / 1e9


class Step:
    """One seeded training step of ``net`` on a fixed batch: loss = MSE of the embedding to a fixed target."""

    def __init__(self, net: nn.Module, shape: tuple[int, int, int], batch: int, bf16: bool) -> None:
        g = torch.Generator().manual_seed(1)
        self.net, self.bf16 = net, bf16
        self.x = torch.randn(batch, 1, *shape, generator=g)
        self.target = torch.randn(batch, net.out_dim, generator=g)
        self.opt = make_optimizer(net, 1e-3, 1e-2, torch.device("cpu"))  # the engine's optimiser

    def loss_and_grad(self) -> torch.Tensor:
        """Forward and backward (dropout seeded, so every call draws the same masks); returns the loss."""
        torch.manual_seed(2)
        self.net.train()
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with amp:
            out = self.net(self.x)
        loss = (out.float() - self.target).square().mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach()

    def __call__(self) -> None:
        self.loss_and_grad()
        self.opt.step()


def step_flops(step: Step) -> int:
    """FLOPs of one forward + backward as counted by torch's flop counter."""
    counter = FlopCounterMode(display=False)
    with counter:
        step.loss_and_grad()
    return counter.get_total_flops()


def _flat_grad(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1).double() for p in net.parameters() if p.grad is not None])


def bf16_checks(net: nn.Module, shape: tuple[int, int, int], batch: int) -> dict[str, float | bool]:
    """Determinism of two identical bf16 steps and the loss/gradient drift of bf16 from fp32."""
    weights = []
    for _ in range(2):
        copy_ = copy.deepcopy(net)
        Step(copy_, shape, batch, bf16=True)()
        weights.append(torch.cat([p.detach().reshape(-1) for p in copy_.parameters()]))
    ref, low = copy.deepcopy(net), copy.deepcopy(net)
    loss32 = Step(ref, shape, batch, bf16=False).loss_and_grad()
    loss16 = Step(low, shape, batch, bf16=True).loss_and_grad()
    g32, g16 = _flat_grad(ref), _flat_grad(low)
    return {
        "deterministic": bool(torch.equal(weights[0], weights[1])),
        "loss_rel": float((loss16 - loss32).abs() / loss32.abs()),
        "grad_rel": float((g16 - g32).norm() / g32.norm()),
        "grad_cos": float(g16 @ g32 / (g16.norm() * g32.norm())),
    }


def fp32_grad_drift(net: nn.Module, shape: tuple[int, int, int], batch: int) -> float:
    """Relative L2 gradient difference of fp32 from float64: the yardstick for the bf16 drift."""
    ref, low = copy.deepcopy(net).double(), copy.deepcopy(net)
    step64 = Step(ref, shape, batch, bf16=False)
    step64.x, step64.target = step64.x.double(), step64.target.double()
    step64.loss_and_grad()
    Step(low, shape, batch, bf16=False).loss_and_grad()
    g64, g32 = _flat_grad(ref), _flat_grad(low)
    return float((g32 - g64).norm() / g64.norm())


def fp32_deterministic(net: nn.Module, shape: tuple[int, int, int], batch: int) -> bool:
    """Whether two identical fp32 steps give bit-identical weights (the baseline for the bf16 check)."""
    weights = []
    for _ in range(2):
        copy_ = copy.deepcopy(net)
        Step(copy_, shape, batch, bf16=False)()
        weights.append(torch.cat([p.detach().reshape(-1) for p in copy_.parameters()]))
    return bool(torch.equal(weights[0], weights[1]))


def every_tap(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose convolutions are plain torch ones (every kernel tap runs), same weights."""
    plain = copy.deepcopy(net)
    for m in plain.modules():
        if isinstance(m, (Conv2d, Conv3d)):
            m.__class__ = nn.Conv3d if isinstance(m, Conv3d) else nn.Conv2d
    return plain


def measure(backbone: str, width: float, batch: int, repeats: int, matmul_rate: float) -> dict[str, object]:
    """All numbers of one backbone's row."""
    shape = book_shape(backbone)
    torch.manual_seed(0)
    net = build_backbone(backbone, shape, width=width)
    flops = step_flops(Step(copy.deepcopy(net), shape, batch, bf16=False))
    ms32 = 1e3 * median_seconds(Step(copy.deepcopy(net), shape, batch, bf16=False), repeats)
    ms_all = 1e3 * median_seconds(Step(every_tap(net), shape, batch, bf16=False), repeats)
    ms16 = 1e3 * median_seconds(Step(copy.deepcopy(net), shape, batch, bf16=True), repeats)
    gflops = flops / ms32 / 1e6
    return {
        "backbone": backbone, "input": "x".join(map(str, shape)), "ms_step": ms32, "gflop_step": flops / 1e9,
        "every_tap_ms": ms_all, "skip_speedup": ms_all / ms32,
        "gflop_s": gflops, "matmul_gflop_s": matmul_rate, "ratio": gflops / matmul_rate,
        "fp32_det": fp32_deterministic(net, shape, batch), "fp32_grad_rel": fp32_grad_drift(net, shape, batch),
        "bf16_ms": ms16, "bf16_speedup": ms32 / ms16,
        **{f"bf16_{k}": v for k, v in bf16_checks(net, shape, batch).items()},
    }


def package_of(rev: str, into: Path) -> str:
    """Extract revision ``rev``'s ``oaprobe`` into ``into`` as the package ``oaprobe_before`` (its own
    imports renamed), so both versions load in this one process; returns the package name."""
    repo = Path(__file__).resolve().parents[1]
    archive = into / "before.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(repo), "archive", rev, "oaprobe"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    (into / "oaprobe").rename(into / "oaprobe_before")
    for source in (into / "oaprobe_before").rglob("*.py"):
        source.write_text(re.sub(r"\boaprobe(?=[.\s])", "oaprobe_before", source.read_text()))
    sys.path.insert(0, str(into))
    return "oaprobe_before"


def before_after(args: argparse.Namespace) -> None:
    """Print each backbone's step before (``args.before``) and after (this tree), timed alternately in this process."""
    with tempfile.TemporaryDirectory(prefix="oaprobe-before-") as tmp:
        old = importlib.import_module(package_of(args.before, Path(tmp)) + ".models.backbones")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); before = {args.before}, after = this"
              f" tree; the two steps alternate, {args.repeats} each, medians", flush=True)
        for name in args.backbones.split(","):
            shape = book_shape(name)
            steps, flops = {}, {}
            for label, build in (("before", old.build_backbone), ("after", build_backbone)):
                torch.manual_seed(0)
                net = build(name, shape, width=args.width)
                flops[label] = step_flops(Step(copy.deepcopy(net), shape, args.batch, bf16=False))
                steps[label] = Step(net, shape, args.batch, bf16=False)
            times: dict[str, list[float]] = {"before": [], "after": [], "matmul": []}
            side = args.matmul
            a = torch.randn(side, side, generator=torch.Generator().manual_seed(0))
            for label in ("before", "after"):  # warm-up
                steps[label]()
            for _ in range(args.repeats):
                for label, fn in (("before", steps["before"]), ("after", steps["after"]), ("matmul", lambda a=a: a @ a)):
                    tic = time.perf_counter()
                    fn()
                    times[label].append(time.perf_counter() - tic)
            med = {k: statistics.median(v) for k, v in times.items()}
            rate = 2 * side**3 / med["matmul"] / 1e9
            # both against the model's own arithmetic (the before's count): a faster formulation that
            # multiplies more terms (M3T's phase-split stem conv) must not look better by its extra FLOPs
            ratio = {k: flops["before"] / med[k] / 1e9 / rate for k in ("before", "after")}
            print(f"{name:9s} {'x'.join(map(str, shape)):8s} before {1e3 * med['before']:7.1f} ms/step (ratio"
                  f" {ratio['before']:.2f}) | after {1e3 * med['after']:7.1f} ms/step (ratio {ratio['after']:.2f})"
                  f" | speed-up x{med['before'] / med['after']:.2f} | model GFLOP/step {flops['before'] / 1e9:.2f}"
                  f" (after's formulation counts {flops['after'] / 1e9:.2f}), matmul {rate:.0f} GFLOP/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default=",".join(PAPER_BACKBONES))
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--matmul", type=int, default=2048, help="side of the square fp32 matmul")
    parser.add_argument("--before", default=None, help="git revision to time against, side by side")
    args = parser.parse_args()
    if args.before:
        before_after(args)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    rows = []
    for name in args.backbones.split(","):
        rate = matmul_gflops(args.matmul, args.repeats)  # re-measured per row: the machine is shared
        rows.append(measure(name, args.width, args.batch, args.repeats, rate))
        r = rows[-1]
        print(
            f"{r['backbone']:9s} {r['input']:9s} {r['ms_step']:7.1f} ms/step"
            f" (every tap {r['every_tap_ms']:.1f}: x{r['skip_speedup']:.2f}) {r['gflop_step']:6.2f} GFLOP"
            f" {r['gflop_s']:6.1f} GFLOP/s | matmul {r['matmul_gflop_s']:5.1f} GFLOP/s ratio {r['ratio']:.2f}"
            f" | fp32 det {r['fp32_det']} grad rel to fp64 {r['fp32_grad_rel']:.1e}"
            f" | bf16 {r['bf16_ms']:7.1f} ms x{r['bf16_speedup']:.2f} det {r['bf16_deterministic']}"
            f" loss drift {r['bf16_loss_rel']:.1e} grad rel {r['bf16_grad_rel']:.1e} cos {r['bf16_grad_cos']:.4f}",
            flush=True,
        )
    met = all(r["ratio"] >= 0.5 for r in rows)
    print(f"target (every backbone >= 0.5 of the matmul rate): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
