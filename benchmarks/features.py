"""Benchmark the feature build against a bare DuckDB scan and a pandas implementation.

Usage::

    python benchmarks/features.py [--users 1000000] [--days 38] [--runs 3]

Generates (or reuses) a demo log of about 20M events in one Parquet file under
``benchmarks/.data/``, then times, each run in a fresh process so that peak RSS is
that run's own:

(a) segmentkit: ``load_events`` (validation, de-duplication) + ``build_features``;
(a') the feature SQL alone on an already validated log (reported, not in the ratio);
(b) bare DuckDB ``SELECT user_id, count(*) ... GROUP BY user_id`` over the file;
(c) pandas: read the file, then groupby with the same aggregates (count, distinct days,
    distinct events, revenue, first and last event).

Prints medians of ``--runs`` runs and the ratios a/b and c/a (same run, same machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"

CHILD = r"""
import json, resource, sys, time
kind, path, as_of = sys.argv[1], sys.argv[2], sys.argv[3]
# Imports happen before the clock starts: they are a process cost, not the build's.
import duckdb
import pandas as pd
if kind == "segmentkit":
    from segmentkit.io.events import load_events
    from segmentkit.features import build_features
start = time.perf_counter()
extra = {}
if kind == "segmentkit":
    log = load_events(path, as_of=as_of)
    mid = time.perf_counter()
    table = build_features(log, as_of)
    extra = {"validate_s": mid - start, "features_s": time.perf_counter() - mid}
    rows = len(table)
elif kind == "duckdb":
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    rows = len(con.execute(
        f"SELECT user_id, count(*) FROM read_parquet('{path}') GROUP BY user_id").fetchall())
elif kind == "pandas":
    df = pd.read_parquet(path)
    df = df[df["timestamp"] < pd.Timestamp(as_of)]
    df["day"] = df["timestamp"].dt.floor("D")
    out = df.groupby("user_id", observed=True).agg(
        events=("event", "size"), active_days=("day", "nunique"),
        distinct_events=("event", "nunique"), revenue=("revenue", "sum"),
        first=("timestamp", "min"), last=("timestamp", "max"))
    rows = len(out)
seconds = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_gb": peak_kb / 1024**2, "rows": rows, **extra}))
"""


def ensure_log(users: int, days: int, seed: int) -> tuple[Path, str]:
    from segmentkit.io.synth import DEFAULT_END, ensure_demo_log

    path = DATA / f"events_{users}u_{days}d.parquet"
    t0 = time.perf_counter()
    ensure_demo_log(users, days, seed, path)
    print(f"log: {path} (ready in {time.perf_counter() - t0:.1f} s)")
    return path, DEFAULT_END.isoformat()


def run_child(kind: str, path: Path, as_of: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(path), as_of],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=38)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-pandas", action="store_true")
    args = parser.parse_args()

    path, as_of = ensure_log(args.users, args.days, args.seed)
    import duckdb

    n_events = duckdb.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]
    print(f"{n_events:,} events, {args.users:,} users, as_of {as_of}")

    kinds = ["segmentkit", "duckdb"] + ([] if args.skip_pandas else ["pandas"])
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    for run in range(args.runs):
        for kind in kinds:  # interleaved so that machine noise hits every kind alike
            result = run_child(kind, path, as_of)
            results[kind].append(result)
            print(
                f"  run {run + 1} {kind:10s} {result['seconds']:6.2f} s  {result['peak_gb']:.2f} GB"
            )

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in results[kind])

    print("\nmedians")
    for kind in kinds:
        print(f"  {kind:10s} {med(kind, 'seconds'):6.2f} s  peak RSS {med(kind, 'peak_gb'):.2f} GB")
    print(
        f"  segmentkit split: validate {med('segmentkit', 'validate_s'):.2f} s, "
        f"features {med('segmentkit', 'features_s'):.2f} s"
    )
    a, b = med("segmentkit", "seconds"), med("duckdb", "seconds")
    print(f"ratio a/b (segmentkit / bare DuckDB count): {a / b:.2f}  (target <= 1.5)")
    print(
        f"ratio a'/b (feature SQL alone / bare DuckDB): {med('segmentkit', 'features_s') / b:.2f}"
    )
    if "pandas" in results:
        print(f"ratio c/a (pandas / segmentkit): {med('pandas', 'seconds') / a:.2f}")
    print(f"peak RSS segmentkit: {med('segmentkit', 'peak_gb'):.2f} GB (target <= 2 GB)")


if __name__ == "__main__":
    main()
