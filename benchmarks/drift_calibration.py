"""Calibration of refresh verdicts: seeds x scenarios -> status and the reason named first.

Usage::

    python benchmarks/drift_calibration.py [--start 0] [--seeds 20] [--planted-seeds 5]

Seeds ``start .. start + planted_seeds - 1`` run every scenario; the following ones
up to ``start + seeds - 1`` run the unchanged scenario only. Tune on one range and
check on another (``--start``): the test ``tests/drift/test_calibration.py`` uses
seeds the thresholds were not chosen on.

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
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=20, help="seeds of the unchanged scenario")
    parser.add_argument("--planted-seeds", type=int, default=5, help="seeds of planted changes")
    args = parser.parse_args()
    start = time.perf_counter()
    first, last = args.start, args.start + args.seeds
    planted = calibration_table(range(first, first + args.planted_seeds))
    unchanged = calibration_table(range(first + args.planted_seeds, last), ["unchanged"])
    table = pd.concat([planted, unchanged], ignore_index=True)
    pd.set_option("display.width", 200)
    table["cell"] = table["status"] + table["kind"].map(lambda k: f" {k}" if k else "")
    grid = table.pivot(index="seed", columns="scenario", values="cell")
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
