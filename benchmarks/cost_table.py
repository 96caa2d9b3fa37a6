"""Where a built book's time went: run core-minutes by backbone, chapter grid and phase (issue 32).

Reads the run folders (``DONE`` minus ``config.json`` modification times; the epochs' own seconds
from ``history.csv``, the rest being the final evaluation and embedding pass) and the saliency
stage's folders, via :func:`oaprobe.report.methods.cost_table`, the same table the methods page
shows. ``--epochs``/``--width`` keep one preset's runs where a runs folder holds several.

    python benchmarks/cost_table.py --runs runs --epochs 8
"""

from __future__ import annotations

import argparse
import sys

from oaprobe.report.methods import cost_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="the built book's runs folder")
    parser.add_argument("--epochs", type=int, default=None, help="keep only runs of this many epochs")
    parser.add_argument("--width", type=float, default=None, help="keep only runs of this width")
    args = parser.parse_args()
    try:
        table = cost_table(args.runs, epochs=args.epochs, width=args.width)
    except (ValueError, OSError) as err:
        sys.exit(f"cost_table: {err}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    runs = table[table["grid"] != "saliency"]
    epochs = (runs["epochs s / run"] * runs["runs"]).sum() / 60
    final = (runs["final s / run"] * runs["runs"]).sum() / 60
    total = table["core min"].sum()
    print(f"phases: epochs {epochs:.1f} core-min ({epochs / total:.0%}), final pass {final:.1f} ({final / total:.0%}),"
          f" saliency {total - epochs - final:.1f} ({(total - epochs - final) / total:.0%}); total {total:.1f}")


if __name__ == "__main__":
    main()
