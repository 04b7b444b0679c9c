"""Benchmark validation + features against a bare DuckDB scan and a hand-written polars pipeline.

Usage::

    python benchmarks/features.py [--users 1000000] [--days 38] [--runs 3] [--pandas] [--floor]

Generates (or reuses) a demo log (29.2M events for the default 1M users / 38 days,
time-ordered like a real export) in one Parquet file under
``benchmarks/.data/``, then runs every method in its own fresh Python process
(``python benchmarks/features.py --child METHOD ...``), so that the peak RSS
printed is that method's own, not a high-water mark inherited from an earlier
method. Methods, interleaved run by run so that machine noise hits all alike:

``segmentkit``
    ``load_events`` (one validation scan: nulls, types, parse errors, cut-off,
    counts and event names; one narrow scan of row hashes for exact duplicates;
    the users are counted by the feature query) + ``build_features``, sessions
    from the log's session ids.
``segmentkit-gap``
    The same with the session id column not mapped: sessions cut at 30-minute gaps.
    The column still tells rows apart (an exact duplicate is equal in every column of
    the file): the 204 rows of the 1M-user log equal to another in user, time, event
    and revenue are in other sessions, and are kept, as polars keeps them.
``segmentkit-nodup``
    ``segmentkit`` with ``check_duplicates=False``: what the exact-duplicate check costs.
``polars``
    A hand-written lazy polars pipeline computing the same 22 features with the same
    gap sessions (sort by user and time, cut at gaps, one group-by), dropping null
    ids and exact duplicates as segmentkit does. Its table is checked against
    ``segmentkit-gap`` (counts exactly, floats to 1e-9) before anything is timed.
``segmentkit-loop`` and ``segmentkit-many`` (``--snapshots N [--snapshot-step DAYS]``)
    Training's case: ``load_events`` + the feature tables of N snapshots DAYS (7)
    apart, by ``build_features`` at each date (loop) or by one
    ``build_features_many`` (one pre-aggregation of the log into user-days); the
    ratio loop / many is printed.
``duckdb-count``
    The baseline: a bare ``SELECT user_id, count(*) ... GROUP BY user_id`` over the file,
    fetched as a pandas frame like segmentkit's tables.
``floor-*`` (``--floor``)
    Lower bounds of parts of the work, each a minimal DuckDB query over the file,
    its result streamed as Arrow batches: ``floor-sessions`` (sessions per user
    from session ids and nothing else), ``floor-gap-sessions`` (the same for
    30-minute gap sessions, as the engine cuts them), ``floor-sort`` (every row
    ordered by user and time: what "one ordered pass per user" costs before any
    computing) and ``floor-hash`` (the row hashes the duplicate check reads).
``pandas`` (``--pandas``)
    Read the file, then a groupby with the naive aggregates (count, distinct days,
    distinct events, revenue, first and last event).

Imports happen before the clock starts. Prints, per method, the median wall time,
CPU time (user + system, all threads) and peak RSS of ``--runs`` runs, the load
average, and the ratios of the issue: segmentkit / bare count (target <= 3) and
polars / segmentkit-gap (target >= 1.25, memory lower). On a shared machine the
CPU-time ratios are the steadier figure; both are printed. polars is a
benchmark-only dependency (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
DAY_US = 86_400_000_000
GAP_MINUTES = 30
WINDOWS = (30, 90)
KEY_EVENTS = ("purchase", "add_to_cart")


def polars_features(path: str, as_of: dt.datetime):
    """Return the 22 features with gap sessions, as a user would write them in polars."""
    import polars as pl

    user, ts, rev = pl.col("user_id"), pl.col("timestamp"), pl.col("revenue")
    lf = (
        pl.scan_parquet(path)
        .filter(user.is_not_null() & ts.is_not_null() & (ts < as_of))
        # An exact duplicate is equal in every column of the file, as segmentkit decides.
        .unique()
        .select("user_id", "timestamp", "event", "revenue")
        .with_columns(
            revenue=rev.fill_null(0.0),
            days_ago=((pl.lit(as_of) - ts).dt.total_microseconds() // DAY_US).cast(pl.Int32),
        )
        .sort("user_id", "timestamp")
        .with_columns(
            new_session=(user != user.shift(1)).fill_null(True)
            | ((ts - ts.shift(1)) > dt.timedelta(minutes=GAP_MINUTES)).fill_null(True)
        )
    )
    days, new = pl.col("days_ago"), pl.col("new_session")
    short = min(WINDOWS)
    aggs = [
        ts.min().alias("first_ts"),
        ts.max().alias("last_ts"),
        pl.len().alias("events_total"),
        new.sum().alias("sessions_total"),
        days.n_unique().alias("active_days_total"),
    ]
    for w in WINDOWS:
        aggs += [
            days.filter(days < w).n_unique().alias(f"active_days_{w}d"),
            (days < w).sum().alias(f"events_{w}d"),
            (new & (days < w)).sum().alias(f"sessions_{w}d"),
            rev.filter(days < w).sum().alias(f"revenue_{w}d"),
        ]
    aggs += [pl.col("event").n_unique().alias("distinct_events")]
    aggs += [(pl.col("event") == e).sum().alias(f"{e}_events") for e in KEY_EVENTS]
    aggs += [
        rev.sum().alias("revenue_total"),
        # Orders are purchase occasions: an order's lines share a time.
        ts.filter(rev > 0).n_unique().alias("orders"),
        rev.filter(rev > 0).sum().alias("order_revenue"),
        (days < short).sum().alias("events_short"),
        ((days >= short) & (days < 2 * short)).sum().alias("events_previous"),
        days.unique().sort().diff().median().alias("median_gap_days"),
    ]
    orders = pl.col("orders")
    return (
        lf.group_by("user_id")
        .agg(aggs)
        .with_columns(
            recency_days=(pl.lit(as_of) - pl.col("last_ts")).dt.total_microseconds() / DAY_US,
            tenure_days=(pl.lit(as_of) - pl.col("first_ts")).dt.total_microseconds() / DAY_US,
            events_per_session=pl.col("events_total") / pl.col("sessions_total"),
            avg_order_value=pl.when(orders > 0)
            .then(pl.col("order_revenue") / orders)
            .otherwise(0.0),
            activity_trend=((1 + pl.col("events_short")) / (1 + pl.col("events_previous"))).log(),
        )
        .with_columns(median_gap_days=pl.col("median_gap_days").fill_null(pl.col("tenure_days")))
        .drop("first_ts", "last_ts", "order_revenue", "events_short", "events_previous")
        .sort("user_id")
        .collect()
    )


def floor_query(method: str, path: str, as_of: dt.datetime) -> str:
    """Return the SQL of a ``floor-*`` method (see the module docstring)."""
    t, src = f"TIMESTAMP '{as_of.isoformat(sep=' ')}'", f"read_parquet('{path}')"
    gap_us = GAP_MINUTES * 60_000_000
    pieces = f"""
        SELECT user_id, min(us) AS last_us, max(us) AS first_us
        FROM (SELECT user_id, epoch_us({t}) - epoch_us(timestamp) AS us
              FROM {src} WHERE timestamp < {t})
        GROUP BY user_id, us // {gap_us}
        QUALIFY coalesce(
            lead(last_us) OVER (PARTITION BY user_id ORDER BY first_us) > first_us + {gap_us},
            true)"""
    return {
        "floor-sessions": f"""SELECT user_id, count(*) FROM (
            SELECT user_id FROM {src} WHERE timestamp < {t} GROUP BY user_id, session_id
            ) GROUP BY user_id""",
        "floor-gap-sessions": f"SELECT user_id, count(*) FROM ({pieces}) GROUP BY user_id",
        "floor-sort": f"SELECT user_id, timestamp FROM {src} WHERE timestamp < {t} "
        "ORDER BY user_id, timestamp",
        "floor-hash": f"SELECT hash(user_id, timestamp, event, revenue, session_id) FROM {src}",
    }[method]


def peak_rss_gib() -> float:
    """Peak resident memory of this process since it started, in GiB.

    Read from ``VmHWM``: ``ru_maxrss`` survives ``exec`` on Linux, so a child started
    by a large parent would report the parent's high-water mark instead of its own.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # not Linux


def snapshot_dates(as_of: dt.datetime) -> list[dt.datetime]:
    """Return the snapshots of ``--snapshots N --snapshot-step DAYS``, the latest at ``as_of``."""
    count, step = map(int, os.environ["SEGMENTKIT_BENCH_SNAPSHOTS"].split(","))
    return [as_of - dt.timedelta(days=step * i) for i in range(count)]


def child(method: str, path: str, as_of_text: str, out: str | None) -> None:
    """Run one method once in this (fresh) process and print one JSON line."""
    as_of = dt.datetime.fromisoformat(as_of_text)
    import duckdb
    import pandas as pd

    if method.startswith("segmentkit"):
        from segmentkit.config import ColumnMap
        from segmentkit.features import build_features, build_features_many
        from segmentkit.io.events import load_events
    if method == "polars":
        import polars  # noqa: F401

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    load = os.getloadavg()[0]
    cpu0, start = cpu(), time.perf_counter()
    extra: dict[str, float] = {}
    table = None
    if method in ("segmentkit-loop", "segmentkit-many"):
        log = load_events(path, as_of=as_of)
        mid, cpu_mid = time.perf_counter(), cpu()
        dates = snapshot_dates(as_of)
        if method == "segmentkit-many":
            tables = build_features_many(log, dates)
        else:
            tables = [build_features(log, date) for date in dates]
        extra = {
            "validate_s": mid - start,
            "features_s": time.perf_counter() - mid,
            "validate_cpu_s": cpu_mid - cpu0,
            "features_cpu_s": cpu() - cpu_mid,
        }
        rows = sum(len(t) for t in tables)
    elif method.startswith("segmentkit"):
        columns = ColumnMap(session_id=None) if method == "segmentkit-gap" else None
        log = load_events(path, columns, as_of=as_of, check_duplicates=method != "segmentkit-nodup")
        mid, cpu_mid = time.perf_counter(), cpu()
        table = build_features(log, as_of)
        extra = {
            "validate_s": mid - start,
            "features_s": time.perf_counter() - mid,
            "validate_cpu_s": cpu_mid - cpu0,
            "features_cpu_s": cpu() - cpu_mid,
        }
        rows = len(table)
    elif method == "polars":
        table = polars_features(path, as_of)
        rows = table.height
    elif method == "duckdb-count":
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        # A pandas frame, as segmentkit returns (not Python tuples, dearer per row).
        rows = len(
            con.execute(
                f"SELECT user_id, count(*) FROM read_parquet('{path}') GROUP BY user_id"
            ).df()
        )
    elif method.startswith("floor-"):
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        rows = 0
        for batch in con.sql(floor_query(method, path, as_of)).to_arrow_reader(1 << 20):
            rows += batch.num_rows
    elif method == "pandas":
        df = pd.read_parquet(path)
        df = df[df["timestamp"] < pd.Timestamp(as_of)]
        df["day"] = df["timestamp"].dt.floor("D")
        rows = len(
            df.groupby("user_id", observed=True).agg(
                events=("event", "size"),
                active_days=("day", "nunique"),
                distinct_events=("event", "nunique"),
                revenue=("revenue", "sum"),
                first=("timestamp", "min"),
                last=("timestamp", "max"),
            )
        )
    else:
        raise SystemExit(f"unknown method {method!r}")
    seconds, cpu_s = time.perf_counter() - start, cpu() - cpu0
    peak_gb = peak_rss_gib()
    if out is not None and table is not None:
        if method == "polars":
            table.write_parquet(out)
        else:
            table.to_parquet(out)
    result = {"seconds": seconds, "cpu_s": cpu_s, "peak_gb": peak_gb, "rows": rows}
    print(json.dumps({**result, "load": load, **extra}))


def run_child(method: str, path: Path, as_of: str, out: Path | None = None) -> dict:
    command = [sys.executable, __file__, "--child", method, str(path), as_of]
    if out is not None:
        command.append(str(out))
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_same_features(polars_out: Path, segmentkit_out: Path) -> None:
    """Fail unless the polars table equals segmentkit's (gap sessions) feature by feature."""
    import numpy as np
    import pandas as pd

    ours = pd.read_parquet(segmentkit_out).set_index("user_id")
    theirs = pd.read_parquet(polars_out).set_index("user_id")
    if sorted(ours.columns) != sorted(theirs.columns) or len(ours) != len(theirs):
        raise SystemExit(f"polars computes other columns or users: {sorted(theirs.columns)}")
    theirs = theirs.loc[ours.index]
    for name in ours.columns:
        a, b = ours[name].to_numpy(float), theirs[name].to_numpy(float)
        if not np.allclose(a, b, rtol=1e-12, atol=1e-9):
            raise SystemExit(f"polars and segmentkit disagree on {name}")
    print(f"polars and segmentkit-gap agree on all {len(ours.columns)} features")


def ensure_log(users: int, days: int, seed: int) -> tuple[Path, str]:
    from segmentkit.io.synth import DEFAULT_END, ensure_demo_log

    path = DATA / f"events_{users}u_{days}d.parquet"
    t0 = time.perf_counter()
    ensure_demo_log(users, days, seed, path)
    print(f"log: {path} (ready in {time.perf_counter() - t0:.1f} s)")
    return path, dt.datetime.combine(DEFAULT_END, dt.time()).isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=38)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pandas", action="store_true", help="also time the naive pandas code")
    parser.add_argument("--no-polars", action="store_true", help="skip the polars baseline")
    parser.add_argument(
        "--floor", action="store_true", help="also time the floor-* queries (lower bounds)"
    )
    parser.add_argument("--only", nargs="+", help="time only these methods")
    parser.add_argument(
        "--snapshots",
        type=int,
        default=0,
        help="also time N snapshots a week apart: a build_features loop vs build_features_many",
    )
    parser.add_argument("--snapshot-step", type=int, default=7, help="days between snapshots")
    parser.add_argument("--log", type=Path, help="time this Parquet log (as of the demo end)")
    args = parser.parse_args()
    # The children read the snapshots from the environment they inherit.
    os.environ["SEGMENTKIT_BENCH_SNAPSHOTS"] = f"{args.snapshots},{args.snapshot_step}"

    if args.log is not None:
        from segmentkit.io.synth import DEFAULT_END

        path, as_of = args.log, dt.datetime.combine(DEFAULT_END, dt.time()).isoformat()
    else:
        path, as_of = ensure_log(args.users, args.days, args.seed)
    import duckdb

    n_events = duckdb.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]
    print(f"{n_events:,} events, as_of {as_of}, {os.cpu_count()} cores")

    methods = ["segmentkit", "segmentkit-gap", "segmentkit-nodup", "duckdb-count"]
    methods += ["segmentkit-loop", "segmentkit-many"] if args.snapshots > 1 else []
    methods += [] if args.no_polars else ["polars"]
    methods += ["pandas"] if args.pandas else []
    floors = ["floor-sessions", "floor-gap-sessions", "floor-sort", "floor-hash"]
    methods += floors if args.floor else []
    methods = [m for m in methods if args.only is None or m in args.only]
    if "polars" in methods:
        with tempfile.TemporaryDirectory() as tmp:
            ours, theirs = Path(tmp) / "segmentkit.parquet", Path(tmp) / "polars.parquet"
            run_child("segmentkit-gap", path, as_of, ours)
            run_child("polars", path, as_of, theirs)
            check_same_features(theirs, ours)

    results: dict[str, list[dict]] = {m: [] for m in methods}
    for run in range(args.runs):
        for method in methods:  # interleaved so that machine noise hits every method alike
            r = run_child(method, path, as_of)
            results[method].append(r)
            print(
                f"  run {run + 1} {method:15s} {r['seconds']:7.2f} s  cpu {r['cpu_s']:7.2f} s  "
                f"{r['peak_gb']:.2f} GiB  load {r['load']:.1f}"
            )

    def med(method: str, key: str) -> float:
        return statistics.median(r[key] for r in results[method])

    loads = [r["load"] for rs in results.values() for r in rs]
    print(f"\nmedians of {args.runs} runs (1-min load average {min(loads):.1f}-{max(loads):.1f})")
    for m in methods:
        print(
            f"  {m:15s} {med(m, 'seconds'):7.2f} s  cpu {med(m, 'cpu_s'):7.2f} s  "
            f"peak RSS {med(m, 'peak_gb'):.2f} GiB"
        )
    for m in [m for m in methods if m.startswith("segmentkit")]:
        print(
            f"  {m} split: validate {med(m, 'validate_s'):.2f} s (cpu "
            f"{med(m, 'validate_cpu_s'):.2f}), features {med(m, 'features_s'):.2f} s "
            f"(cpu {med(m, 'features_cpu_s'):.2f})"
        )

    def ratio(a: str, b: str, key: str) -> float:
        return med(a, key) / med(b, key)

    if {"segmentkit", "segmentkit-nodup", "duckdb-count"} <= set(methods):
        # Where the time of validate + features goes, each part in bare counts.
        wall, cpu = med("duckdb-count", "seconds"), med("duckdb-count", "cpu_s")
        parts = {
            "validation scan": ("segmentkit-nodup", "validate_s", "validate_cpu_s"),
            "duplicate check": ("segmentkit", "validate_s", "validate_cpu_s"),
            "features": ("segmentkit", "features_s", "features_cpu_s"),
        }
        print("breakdown of segmentkit (wall; cpu; as bare counts wall; cpu)")
        for label, (m, w_key, c_key) in parts.items():
            w, c = med(m, w_key), med(m, c_key)
            if label == "duplicate check":  # validation with the check minus without it
                w -= med("segmentkit-nodup", "validate_s")
                c -= med("segmentkit-nodup", "validate_cpu_s")
            print(f"  {label:16s} {w:6.2f} s; {c:6.2f} s  ({w / wall:.2f}; {c / cpu:.2f})")
        print(f"  {'bare count':16s} {wall:6.2f} s; {cpu:6.2f} s  (1.00; 1.00)")

    print("ratios (wall; cpu)")
    for m in [m for m in methods if m.startswith("floor-") and "duckdb-count" in methods]:
        print(
            f"  {m} / duckdb-count: {ratio(m, 'duckdb-count', 'seconds'):.2f}; "
            f"{ratio(m, 'duckdb-count', 'cpu_s'):.2f}"
        )
    if "segmentkit-loop" in results and "segmentkit-many" in results:
        print(
            f"  segmentkit-loop / segmentkit-many ({args.snapshots} snapshots): "
            f"{ratio('segmentkit-loop', 'segmentkit-many', 'seconds'):.2f}; "
            f"{ratio('segmentkit-loop', 'segmentkit-many', 'cpu_s'):.2f}; features only "
            f"{ratio('segmentkit-loop', 'segmentkit-many', 'features_s'):.2f}; "
            f"{ratio('segmentkit-loop', 'segmentkit-many', 'features_cpu_s'):.2f}"
        )
    for m in [m for m in methods if m.startswith("segmentkit") and "duckdb-count" in methods]:
        print(
            f"  {m} / duckdb-count: {ratio(m, 'duckdb-count', 'seconds'):.2f}; "
            f"{ratio(m, 'duckdb-count', 'cpu_s'):.2f}  (target <= 3)"
        )
    if "polars" in results and "segmentkit-gap" in results:
        print(
            f"  polars / segmentkit-gap: {ratio('polars', 'segmentkit-gap', 'seconds'):.2f}; "
            f"{ratio('polars', 'segmentkit-gap', 'cpu_s'):.2f}  (target >= 1.25); peak RSS "
            f"{med('segmentkit-gap', 'peak_gb'):.2f} vs {med('polars', 'peak_gb'):.2f} GiB"
        )
    if "pandas" in results and "segmentkit" in results:
        print(f"  pandas / segmentkit: {ratio('pandas', 'segmentkit', 'seconds'):.2f}")
    if "segmentkit" in results:
        print(f"  peak RSS segmentkit: {med('segmentkit', 'peak_gb'):.2f} GiB (target <= 1.5)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)
    else:
        main()
