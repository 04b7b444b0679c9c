"""Benchmark training (``train_model``) at several population sizes.

Usage::

    python benchmarks/train.py [--users 100000 300000] [--days 240] [--runs 3]
                               [--params params.yaml] [--k auto] [--refresh]
                               [--data-dir benchmarks/.data]

For every size, a demo log (``--days`` days, the demo generator of ``params.yaml``'s
kind, cached under ``benchmarks/.data/``) is trained on with ``params.yaml``'s settings
(override the number of segments with ``--k``). Every run is its own fresh Python
process, so its peak RSS (``VmHWM``) is its own; runs are interleaved across sizes.
Each run also times the baseline on the same file, a bare DuckDB
``SELECT user_id, count(*) ... GROUP BY user_id`` (a measure of the machine's speed at
that moment, so that figures from a loaded machine can be compared).

Prints, per size, the medians of ``--runs`` runs: wall time of each stage of
``train_model`` (loading and validation, features, segmentation, propensity; with the
propensity fits side by side, segmentation runs beside them: ``segmentation_alongside``
is its own run time, overlapping ``propensity``, and ``segmentation`` the wait it adds), total,
CPU time, peak RSS, the ratio total / bare count, the ratio to the issue's target
(100k: 40 s, 300k: 75 s, 1M: 180 s, where defined), the chosen family and the
out-of-time evaluation metrics of every propensity target (so that a speed-up which
changes the models shows), and the least-squares slope of
total time against users (seconds per 100k users) with the log-log exponent. The
MLflow logging and bundle saving of ``segmentkit train`` are not included (they do not
depend on the number of users beyond the bundle's size).

``--refresh`` times ``segmentkit refresh`` (``refresh_model``) instead: in each run a
champion is first trained ``REFRESH_DAYS`` (30) before the log's end (not timed), then
the refresh at the end reads the log file, trains the challenger and runs the drift
tests; its stages are printed as above (target at 1M users: 150 s).

The machine the project is developed on has 2 cores shared by several engineers:
smaller sizes (``--users 20000 50000``) and ``--runs 1`` give quick, rougher figures.

At 240 days the demo generator makes about 160 events per user: 1M users is a 160M-event
log, which the in-memory generator cannot hold in 24 GB (it is killed). Sizes above
``CHUNKED_ABOVE`` (300k) are therefore generated in chunks of ``CHUNK_USERS`` (200k) users, each
chunk its own generator run (seed ``seed * 1000 + chunk``, user and session ids offset
by the chunk) appended to one Parquet file (benchmark-only; the population is the same
mix of archetypes, but the users of different chunks are independent draws rather than
one draw). Sizes up to 300k are one generator run, as before.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
TARGET_SECONDS = {100_000: 40.0, 300_000: 75.0, 1_000_000: 180.0}
REFRESH_TARGET_SECONDS = {1_000_000: 150.0}
# Days between the champion's snapshot and the refresh's (--refresh).
REFRESH_DAYS = 30
CHUNKED_ABOVE = 300_000
CHUNK_USERS = 200_000


def ensure_chunked_log(users: int, days: int, seed: int, path: Path) -> Path:
    """Return ``path`` holding a demo log of ``users`` generated ``CHUNK_USERS`` at a time.

    Chunk ``c`` is ``generate_events(n, days, seed=seed * 1000 + c)`` with its user ids
    ``u0000000..`` moved on by ``c * CHUNK_USERS`` and its session ids by the largest
    session id written so far, so ids stay unique across chunks. A JSON file beside the
    log records the settings (a log made with other settings is replaced).
    """
    import json as _json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from segmentkit.io.synth import DEFAULT_END, GENERATOR_VERSION, generate_events

    stamp = path.with_name(f"{path.name}.settings.json")
    wanted = {
        "users": users,
        "days": days,
        "seed": seed,
        "scenario": "default",
        "end": DEFAULT_END.isoformat(),
        "generator": GENERATOR_VERSION,
        "chunk_users": CHUNK_USERS,
    }
    if path.is_file() and stamp.is_file() and _json.loads(stamp.read_text()) == wanted:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    schema = pa.schema(
        [
            ("user_id", pa.dictionary(pa.int32(), pa.string())),
            ("timestamp", pa.timestamp("us")),
            ("event", pa.dictionary(pa.int8(), pa.string())),
            ("revenue", pa.float64()),
            ("session_id", pa.int64()),
        ]
    )
    session_offset = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for chunk, first in enumerate(range(0, users, CHUNK_USERS)):
            n = min(CHUNK_USERS, users - first)
            events = generate_events(n, days, seed=seed * 1000 + chunk).events
            names = pa.array([f"u{first + i:07d}" for i in range(n)])
            codes = events["user_id"].cat.codes.to_numpy().astype("int32")
            event = events["event"].cat
            frame = {
                "user_id": pa.DictionaryArray.from_arrays(codes, names),
                "timestamp": pa.array(events["timestamp"].to_numpy().astype("datetime64[us]")),
                "event": pa.DictionaryArray.from_arrays(
                    event.codes.to_numpy().astype("int8"), pa.array(list(event.categories))
                ),
                "revenue": pa.array(events["revenue"].to_numpy()),
                "session_id": pa.array(events["session_id"].to_numpy() + session_offset),
            }
            session_offset = int(events["session_id"].max()) + session_offset
            writer.write_table(pa.table(frame, schema=schema), row_group_size=1_000_000)
            print(f"  chunk {chunk + 1}: {n:,} users, {len(events):,} events", flush=True)
            del events, frame
    tmp.replace(path)
    stamp.write_text(_json.dumps(wanted), encoding="utf-8")
    return path


def peak_rss_gib() -> float:
    """Peak resident memory of this process since it started (``VmHWM``), in GiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # not Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(kind: str, path: str, params: str, k: str) -> None:
    """Run one training (or the baseline) in this fresh process; print one JSON line."""
    import duckdb

    load = os.getloadavg()[0]
    if kind == "count":
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        start = time.perf_counter()
        con.execute(f"SELECT user_id, count(*) FROM read_parquet('{path}') GROUP BY user_id")
        con.fetchall()
        print(json.dumps({"seconds": time.perf_counter() - start, "load": load}))
        return
    from segmentkit.config import load_config
    from segmentkit.training import train_model

    overrides = {} if k == "params" else {"segmentation": {"k": k if k == "auto" else int(k)}}
    config = load_config(params, overrides=overrides)
    if kind == "refresh":
        refresh_child(config, path, load)
        return
    cpu0, start = cpu_seconds(), time.perf_counter()
    result = train_model(config, path)
    seconds = time.perf_counter() - start
    quality = {}
    if result.propensity is not None:
        rows = result.propensity.evaluation.metrics.query("model == 'model'")
        quality = {
            target: {m: float(v) for m, v in zip(part["metric"], part["value"], strict=True)}
            for target, part in rows.groupby("target", sort=False)
        }
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_s": cpu_seconds() - cpu0,
                "peak_gb": peak_rss_gib(),
                "stages": result.timings,
                "users": int(result.report.users),
                "events": int(result.report.rows_clean),
                "load": load,
                "choice": dict(result.propensity.choice) if result.propensity else {},
                "quality": quality,
            }
        )
    )


def refresh_child(config, path: str, load: float) -> None:
    """Train a champion ``REFRESH_DAYS`` before the log's end (not timed), then time a refresh.

    The refresh (``segmentkit.refresh.refresh_model``) reads the log file itself, so its
    loading is timed; its stages are those it reports to ``progress``.
    """
    import contextlib
    import datetime as dt

    from segmentkit.refresh import refresh_model
    from segmentkit.training import load_snapshot, train_model

    log, end = load_snapshot(config, path)
    champion = train_model(config, log, end - dt.timedelta(days=REFRESH_DAYS)).model
    del log
    stages: dict[str, float] = {}

    @contextlib.contextmanager
    def progress(name: str):
        start = time.perf_counter()
        yield
        key = name.split(" ")[0].lower()
        stages[key] = stages.get(key, 0.0) + time.perf_counter() - start

    cpu0, start = cpu_seconds(), time.perf_counter()
    result = refresh_model(champion, config, path, end, progress=progress)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_s": cpu_seconds() - cpu0,
                "peak_gb": peak_rss_gib(),
                "stages": stages,
                "users": int(result.challenger.report.users),
                "events": int(result.challenger.report.rows_clean),
                "load": load,
                "status": result.report.status,
            }
        )
    )


def run_child(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def slope(sizes: list[int], seconds: list[float]) -> tuple[float, float]:
    """Least-squares seconds per user, and the exponent of time ~ users**b (log-log fit)."""
    n = len(sizes)
    mx, my = sum(sizes) / n, sum(seconds) / n
    sxx = sum((x - mx) ** 2 for x in sizes)
    per_user = sum((x - mx) * (y - my) for x, y in zip(sizes, seconds, strict=True)) / sxx
    lx = [math.log(x) for x in sizes]
    ly = [math.log(y) for y in seconds]
    mlx, mly = sum(lx) / n, sum(ly) / n
    exponent = sum((a - mlx) * (b - mly) for a, b in zip(lx, ly, strict=True)) / sum(
        (a - mlx) ** 2 for a in lx
    )
    return per_user, exponent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DATA,
        help="where the logs are cached (default benchmarks/.data; 1M-user logs take GBs)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--params", default=str(HERE.parent / "params.yaml"))
    parser.add_argument("--k", default="params", help="'auto', an integer, or 'params'")
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="time `segmentkit refresh` instead (a champion trained REFRESH_DAYS earlier)",
    )
    args = parser.parse_args()
    kind = "refresh" if args.refresh else "train"
    targets = REFRESH_TARGET_SECONDS if args.refresh else TARGET_SECONDS

    from segmentkit.io.synth import ensure_demo_log

    logs = {}
    for users in args.users:
        path = args.data_dir / f"train_{users}u_{args.days}d_s{args.seed}.parquet"
        start = time.perf_counter()
        if users > CHUNKED_ABOVE:
            logs[users] = ensure_chunked_log(users, args.days, args.seed, path)
        else:
            logs[users] = ensure_demo_log(users, args.days, args.seed, path)
        print(f"log {path.name} ready in {time.perf_counter() - start:.1f} s")

    results: dict[int, list[dict]] = {u: [] for u in args.users}
    for run in range(args.runs):
        for users in args.users:  # interleaved: load changes hit every size alike
            r = run_child(kind, str(logs[users]), args.params, args.k)
            r["count_s"] = run_child("count", str(logs[users]), args.params, args.k)["seconds"]
            results[users].append(r)
            stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
            print(
                f"  run {run + 1} {users:>9,} users ({r['events']:,} events): "
                f"{r['seconds']:7.1f} s [{stages}] cpu {r['cpu_s']:.1f} s "
                f"{r['peak_gb']:.2f} GiB; bare count {r['count_s']:.2f} s; load {r['load']:.1f}"
            )

    loads = [r["load"] for rs in results.values() for r in rs]
    print(f"\nmedians of {args.runs} run(s) (1-min load average {min(loads):.1f}-{max(loads):.1f})")
    totals = []
    for users, rs in results.items():
        total = statistics.median(r["seconds"] for r in rs)
        totals.append(total)
        stages = ", ".join(
            f"{name} {statistics.median(r['stages'][name] for r in rs):.1f}"
            for name in rs[0]["stages"]
        )
        count = statistics.median(r["count_s"] for r in rs)
        target = targets.get(users)
        versus = f"; / target {total / target:.2f} ({target:.0f} s)" if target else ""
        print(
            f"  {users:>9,} users: {total:7.1f} s [{stages}] "
            f"cpu {statistics.median(r['cpu_s'] for r in rs):.1f} s, "
            f"peak RSS {statistics.median(r['peak_gb'] for r in rs):.2f} GiB; "
            f"/ bare count {total / count:.0f}x{versus}"
        )
        # Same data, params and seed give the same models: the first run stands for all.
        if args.refresh:
            print(f"      drift status {rs[0]['status']}")
            continue
        for target, metrics in rs[0]["quality"].items():
            shown = ", ".join(f"{m} {v:.4f}" for m, v in metrics.items())
            print(f"      {target} ({rs[0]['choice'][target]}): {shown}")
    if len(args.users) >= 2:
        per_user, exponent = slope(args.users, totals)
        print(
            f"slope: {per_user * 100_000:.1f} s per 100k users; time ~ users^{exponent:.2f} "
            "(1.0 = linear)"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
    else:
        main()
