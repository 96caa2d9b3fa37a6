"""Speed and peak memory of the knee phantom at the presets' grids (one process, one thread).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/phantom.py [--knees N]``

Prints, per grid: knees rendered per second (sampling + rendering), the share of time spent
writing the four gzipped NIfTI files the cohort builder stores (image, mask, lesion and
evidence maps), and the peak memory of one
render (tracemalloc, which sees numpy's buffers). Timings on a shared machine vary; compare
the rows of one run, not numbers across machines.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from oaprobe.config import get_preset
from oaprobe.data.cohort import _GZIP_LEVEL, FOLDERS, _nifti_bytes
from oaprobe.data.phantom import render_knee, sample_knee_params, size_factor


def measure(shape, spacing, n: int) -> dict:
    rng = np.random.default_rng(0)
    severities = rng.uniform(0, 5, n)
    t0 = time.perf_counter()
    factor = size_factor(spacing)
    knees = [render_knee(sample_knee_params(rng, s, "R" if i % 2 else "L", factor), shape, spacing)
             for i, s in enumerate(severities)]  # fmt: skip
    render_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in knees:
        for key in FOLDERS:
            _nifti_bytes(getattr(k, key), spacing, _GZIP_LEVEL[key])
    write_s = time.perf_counter() - t0
    params = sample_knee_params(np.random.default_rng(1), 4.5, "R", factor)
    tracemalloc.start()
    render_knee(params, shape, spacing)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return dict(knees_per_s=n / render_s, ms=1000 * render_s / n, write_ms=1000 * write_s / n, peak_mb=peak / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--knees", type=int, default=40, help="knees per grid (the paper grid uses 1)")
    args = parser.parse_args()
    grids = [
        ("course", get_preset("course").cohort, args.knees),
        ("default", get_preset("default").cohort, args.knees),
        ("paper", get_preset("paper").cohort, 1),
    ]
    rows = []
    for name, cohort, n in grids:
        r = measure(tuple(cohort.shape), tuple(cohort.spacing), n)
        rows.append((name, cohort.shape, cohort.spacing, n, r))
    ref = rows[1][4]["ms"]
    print(f"{'preset':8} {'shape':>14} {'spacing (mm)':>18} {'knees':>5} {'knees/s':>8} {'ms/knee':>8} "
          f"{'x default':>9} {'write ms':>9} {'peak MB':>8}")
    for name, shape, spacing, n, r in rows:
        print(f"{name:8} {'x'.join(map(str, shape)):>14} {'x'.join(f'{s:g}' for s in spacing):>18} {n:5d} "
              f"{r['knees_per_s']:8.1f} {r['ms']:8.1f} {r['ms'] / ref:9.2f} {r['write_ms']:9.1f} {r['peak_mb']:8.1f}")


if __name__ == "__main__":
    main()
