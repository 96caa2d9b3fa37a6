"""Which attribution methods pass their checks per run, and what the saliency stage costs.

Claim 3 (saliency alignment with cartilage) is decided only from maps that pass the randomisation
and deletion checks in most runs (oaprobe.report.saliency.claim3_methods). This script runs the
saliency stage with the given settings over every finished run under ``--runs`` (timed, side by
side for every method in one stage), then prints per method and backbone how many runs pass each
check, each method's claim-3 status and the stage's wall time, extrapolated to ``--extrapolate``
runs at the same jobs:

    python benchmarks/saliency_methods.py --runs runs-course --preset course --jobs 2 \\
        --methods smoothgrad,gradcam,gradient,ig,occlusion --knees 6 --sanity-knees 6 --samples 4

The choice of methods reads the checks only, never the enrichment.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--preset", default="course", help="whose saliency settings the flags below override")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--methods", default=None)
    parser.add_argument("--knees", type=int, default=None)
    parser.add_argument("--sanity-knees", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--deletion-steps", type=int, default=None)
    parser.add_argument("--extrapolate", type=int, default=108, help="runs to extrapolate the stage's time to")
    args = parser.parse_args()

    import pandas as pd

    from oaprobe.analysis.saliency_results import load_saliency
    from oaprobe.config import get_preset
    from oaprobe.report.saliency import build_run_table, claim3_methods
    from oaprobe.sweep import saliency_missing_runs

    flags = {"methods": tuple(args.methods.split(",")) if args.methods else None, "knees": args.knees,
             "sanity_knees": args.sanity_knees, "samples": args.samples, "deletion_steps": args.deletion_steps}
    settings = get_preset(args.preset).saliency.replace(**{k: v for k, v in flags.items() if v is not None})
    folders = sorted(p for p in args.runs.iterdir() if (p / "DONE").is_file())
    tic = time.perf_counter()
    saliency_missing_runs(folders, settings, jobs=args.jobs, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - tic
    frames: dict[str, list[pd.DataFrame]] = {"saliency": [], "evidence": [], "sanity": [], "deletion_auc": []}
    for folder in folders:
        res = load_saliency(folder, settings)
        cfg = json.loads((folder / "config.json").read_text())["config"]
        cols = {"run_id": folder.name, "backbone": cfg["backbone"], "mode": cfg["mode"], "seed": cfg["seed"]}
        for key in frames:
            if res.get(key) is not None and len(res[key]):
                frames[key].append(res[key].assign(**cols))
    sal, ev, sanity, auc = (pd.concat(f, ignore_index=True) if f else pd.DataFrame() for f in frames.values())
    table = build_run_table(sal, ev if len(ev) else None, sanity, auc)
    per_run = table.drop_duplicates(["run_id", "method"])
    pd.set_option("display.width", 200)
    print(f"settings {settings.to_dict()} (id {settings.settings_id()})")
    print(per_run.groupby(["method", "backbone"]).agg(
        runs=("run_id", "size"), randomisation_passed=("randomisation_passed", "sum"),
        deletion_passed=("deletion_passed", lambda d: int((d == True).sum())),  # noqa: E712
        deletion_failed=("deletion_passed", lambda d: int((d == False).sum())),  # noqa: E712
        trusted=("trusted", "sum")).to_string())  # fmt: skip
    for method, status in claim3_methods(table).items():
        print(f"{method}: {status}")
    print(f"stage: {len(folders)} runs in {seconds:.0f} s at {args.jobs} jobs ({seconds / max(1, len(folders)):.1f} s a run); "
          f"{args.extrapolate} runs: about {seconds / max(1, len(folders)) * args.extrapolate / 60:.1f} min")


if __name__ == "__main__":
    main()
