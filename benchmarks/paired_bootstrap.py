"""Speed of the 18-test paired-bootstrap family: vectorised vs a scikit-learn loop.

Both methods consume the same resample stream; the script prints the time of each (the loop
on a small B, extrapolated linearly to the full B), the ratio, and the largest absolute
difference between the two methods' bootstrap values on the same resamples.

Run from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paired_bootstrap.py --b-loop 100
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from oaprobe.analysis.metrics import bootstrap_distribution
from oaprobe.analysis.paired import (
    REFERENCE_BASELINE,
    REFERENCE_METRICS,
    align,
    load_reference,
    reference_family,
)

DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / "tests/analysis/fixtures/reference"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER,
                        help="folder of <backbone>_<mode>_preds.csv (reference layout)")
    parser.add_argument("--b", type=int, default=10_000, help="resamples of the real family")
    parser.add_argument("--b-loop", type=int, default=100, help="resamples for the loop timing")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    preds = load_reference(args.folder)
    backbones = list(dict.fromkeys(k[0] for k in preds))
    tests = [(bb, REFERENCE_BASELINE[task], m)
             for bb in backbones for task, ms in REFERENCE_METRICS.items() for m in ms]

    t0 = time.perf_counter()
    fam = reference_family(preds, B=args.b, seed=args.seed)
    t_family = time.perf_counter() - t0

    t_vec = t_loop = 0.0
    worst = 0.0
    for bb, base, metric in tests:
        a, b = align(preds[(bb, "dual")], preds[(bb, base)])
        t0 = time.perf_counter()
        vec = bootstrap_distribution([a, b], [metric], args.b_loop, args.seed)[metric]
        t_vec += time.perf_counter() - t0
        t0 = time.perf_counter()
        loop = bootstrap_distribution([a, b], [metric], args.b_loop, args.seed,
                                      method="loop")[metric]
        t_loop += time.perf_counter() - t0
        both = np.isfinite(vec) & np.isfinite(loop)
        assert (np.isfinite(vec) == np.isfinite(loop)).all(), f"NaN pattern differs: {metric}"
        worst = max(worst, float(np.abs(vec[both] - loop[both]).max()))

    scale = args.b / args.b_loop
    print(f"tests in family: {len(tests)} ({len(fam)} rows), knees per test: {fam['n'].iloc[0]}")
    print(f"vectorised family, B={args.b}: {t_family:.2f} s (full reference_family, incl. McNemar)")
    print(f"loop (scikit-learn per resample), B={args.b_loop}: {t_loop:.2f} s "
          f"-> extrapolated to B={args.b}: {t_loop * scale:.0f} s ({t_loop * scale / 60:.1f} min)")
    print(f"vectorised on the same B={args.b_loop} resamples: {t_vec:.3f} s; "
          f"speed-up at equal B: {t_loop / t_vec:.0f}x")
    print(f"largest |vectorised - loop| over all bootstrap values: {worst:.2e}")


if __name__ == "__main__":
    main()
