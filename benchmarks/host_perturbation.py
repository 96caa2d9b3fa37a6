"""Does the book's answer survive another host's rounding? The main grid retrained with another thread count.

Hosts give different floating-point results (AVX-512 or not, another BLAS blocking): the same
commit's runs are byte-identical per host, not across hosts. A different CPU thread count changes
the summation order of the convolutions' reductions the same way (a smoke M3T run's OA
probabilities differ in the third decimal after two epochs at 1 vs 2 threads), so it stands in for
another host here. This script trains the preset's main grid at ``--threads`` threads, one run at
a time, into its own runs folder, and prints beside the book's runs (``--book-runs``, trained at 1
thread a run): the convergence flags per mode and, for every question of the three claims
(:func:`oaprobe.report.claims.study_verdicts`; claim 3 where both runs folders have the saliency
stage's results), the verdict on both and whether it is the same. The perturbed verdicts are written
to ``<book runs>/verdicts-perturbed.csv`` (with the package's source digest), where the answer page
reads them and marks the verdicts the perturbation flips.

    python benchmarks/host_perturbation.py --preset default --threads 2 --runs runs-threads2

It trains the cheapest backbone's runs first and compares the backbones whose runs are all finished
(``--compare-only`` compares without training): stopped part-way (the M3T runs alone are about
half of the compute), it still answers for the backbones it finished, and it resumes where it stopped.

Run ids do not include the thread count, hence the separate folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", default=None, help="comma-separated (default: the preset's)")
    parser.add_argument("--runs", type=Path, default=Path("runs-threads2"))
    parser.add_argument("--book-runs", type=Path, default=Path("runs"))
    parser.add_argument("--compare-only", action="store_true", help="compare the finished backbones; train nothing")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by oaprobe.device.cpu_threads
    # Threads that sleep rather than spin at OpenMP barriers: the numbers are the same, but on cores
    # shared with other work spinning threads ran a ResNet3D run 15-25x slower (230-400 s, not 15 s).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import pandas as pd

    from oaprobe.config import get_preset
    from oaprobe.report.answer import flag_rates
    from oaprobe.report.claims import compare_verdicts, decisive_method, study_verdicts, write_perturbed
    from oaprobe.report.saliency import saliency_run_table
    from oaprobe.report.study import Study
    from oaprobe.sweep import cost_hint, preset_manifest, run_missing, saliency_missing_runs, study_grid
    from oaprobe.training.runs import is_done, run_dir, run_id

    p = get_preset(args.preset)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(p.seeds)
    manifest = preset_manifest(args.preset, progress=False)
    grid = study_grid(manifest, args.preset, seeds=seeds)
    by_backbone = {b: [c for c in grid if c.backbone == b] for b in dict.fromkeys(c.backbone for c in grid)}
    if not args.compare_only:
        for backbone, configs in sorted(by_backbone.items(), key=lambda kv: cost_hint(kv[1][0])):
            tic = time.perf_counter()
            run_missing(configs, args.runs, jobs=1, progress=sys.stderr.isatty())
            print(f"{backbone} at {args.threads} threads: {len(configs)} runs ready in {time.perf_counter() - tic:.0f} s",
                  flush=True)
    finished = [b for b, configs in by_backbone.items() if all(is_done(run_dir(c, args.runs)) for c in configs)]
    if not finished:
        sys.exit(f"host_perturbation: no backbone has all its runs finished in {args.runs}")
    print(f"compared: {', '.join(finished)} (all runs finished); not yet: "
          f"{', '.join(b for b in by_backbone if b not in finished) or 'none'}", flush=True)
    subset = [c for c in grid if c.backbone in finished]
    tic = time.perf_counter()
    saliency_missing_runs([run_dir(c, args.runs) for c in subset], p.saliency, jobs=1, progress=sys.stderr.isatty())
    print(f"their saliency stage: {time.perf_counter() - tic:.0f} s", flush=True)
    pd.set_option("display.width", 220)
    tables = {}
    for name, root in (("book (1 thread)", args.book_runs), (f"{args.threads} threads", args.runs)):
        study = Study.from_grid(args.preset, manifest, subset, root)
        print(f"\n{name}: convergence flags per mode\n{flag_rates(study).to_string(index=False)}")
        saliency = saliency_run_table(study)
        tables[name], _ = study_verdicts(study, saliency, decisive_method(saliency), family_backbones=len(by_backbone))
    book, other = tables.values()
    both = compare_verdicts(book, other)
    primary = both[both["role"] == "primary"]
    print(f"\nverdicts, book vs {args.threads} threads (primary questions: {int(primary['same'].sum())} of "
          f"{len(primary)} the same)\n{both.round(4).to_string(index=False)}")
    write_perturbed(other, args.book_runs, [run_id(c) for c in grid])


if __name__ == "__main__":
    main()
