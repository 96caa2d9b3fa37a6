"""Time the whole book build from nothing, then again with nothing changed, side by side.

Each build runs in fresh folders (runs, cohorts, volume cache, site), so the first timing is a
true "from nothing after set-up" build and the second one shows what caching leaves to do.

    python benchmarks/book_build.py --preset course --jobs 2
    python benchmarks/book_build.py --preset default --jobs 2     # about 15 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from oaprobe.book import build_book


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="course")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="use (and keep) this folder instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oaprobe-bench-") as tmp:
        root = args.keep or Path(tmp)
        kw = dict(jobs=args.jobs, runs_root=root / "runs", cohorts_root=root / "cohorts", cache_dir=root / "cache",
                  site=root / "site")
        t0 = time.perf_counter()
        build_book(args.preset, **kw)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_book(args.preset, **kw)
        second = time.perf_counter() - t0
    print(f"preset {args.preset}, {args.jobs} jobs: first build {first:.0f} s ({first / 60:.1f} min), "
          f"second build with nothing changed {second:.1f} s ({first / second:.0f}x faster)")


if __name__ == "__main__":
    main()
