"""Calibration of refresh verdicts: seeds x scenarios -> status and the reason named first.

Usage::

    python benchmarks/drift_calibration.py [--seeds 20] [--planted-seeds 5]

Unchanged behaviour (a steady log: a cohort every 30 days, each like the last) must
give OK in >= 95 % of refreshes; every planted change (a segment's users vanish,
spend halves, a new behaviour group joins, a key event stops being logged) must give
DRIFT with the right reason first. Prints the table and the rates.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from segmentkit.drift.scenarios import PLANTED, calibration_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds of the unchanged scenario")
    parser.add_argument("--planted-seeds", type=int, default=5, help="seeds of planted changes")
    args = parser.parse_args()
    start = time.perf_counter()
    planted = calibration_table(range(args.planted_seeds))
    unchanged = calibration_table(range(args.planted_seeds, args.seeds), ["unchanged"])
    table = pd.concat([planted, unchanged], ignore_index=True)
    pd.set_option("display.width", 200)
    grid = table.pivot(index="seed", columns="scenario", values="status")
    print(grid[[c for c in ["unchanged", *PLANTED] if c in grid.columns]].fillna("").to_string())
    print()
    print(
        table[table["scenario"] != "unchanged"][
            ["seed", "scenario", "status", "kind", "subject"]
        ].to_string(index=False)
    )
    print()
    rates = table.groupby("scenario")["correct"].agg(["mean", "size"])
    print(rates.to_string())
    print(f"\n{len(table)} refreshes in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
