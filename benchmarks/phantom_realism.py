"""The phantom's anatomy per preset against published knee values, and a slice montage.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/phantom_realism.py [--knees N] [--out DIR]``

Prints :func:`oaprobe.data.realism.realism_table` (healthy right knees in the neutral pose at
each preset's cohort grid: cartilage thickness, medial joint-space width, patellar cartilage,
structure volumes, intensity ratios; the published values from PAPER.md's "Field facts", empty
where it gives none) as one row per quantity and one column per preset, saves it as CSV and
writes the montage of a KL0, KL2 and KL4 knee at the ``paper`` grid as a PNG into ``--out``.
At the coarse presets the measured sizes are quantised to whole voxels and doubled on purpose
(:func:`oaprobe.data.phantom.size_factor`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from oaprobe.data.realism import realism_montage, realism_table
from oaprobe.io import write_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--knees", type=int, default=3, help="healthy knees measured per preset")
    parser.add_argument("--out", type=Path, default=Path("_build/phantom_realism"), help="folder of the CSV and PNG")
    parser.add_argument("--montage-preset", default="paper", help="the grid of the montage")
    args = parser.parse_args()
    table = realism_table(n_knees=args.knees)
    wide = table.pivot_table(index="quantity", columns="preset", values="phantom", sort=False)
    wide = wide[list(dict.fromkeys(table["preset"]))]
    wide["published"] = table.drop_duplicates("quantity").set_index("quantity")["published"]
    factors = table.drop_duplicates("preset").set_index("preset")["size_factor"]
    print("size factor: " + ", ".join(f"{p} {f:g}" for p, f in factors.items()))
    print(wide.to_string())
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "realism.csv", table.to_csv(index=False).encode())
    png = realism_montage(args.out / f"montage_{args.montage_preset}.png", preset=args.montage_preset)
    print(f"table: {args.out / 'realism.csv'}\nmontage: {png}")


if __name__ == "__main__":
    main()
