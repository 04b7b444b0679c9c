"""Benchmark the Spark engine against DuckDB: features and scoring, wall and CPU seconds, memory.

Usage::

    python benchmarks/spark.py [--users 200000 50000] [--days 38] [--runs 3]

For each population size, generates (or reuses) a demo log in one Parquet file under
``benchmarks/.data/``, trains a model once on a 20k-user log, then times in fresh
processes (each run its own process, so peak memory is that run's own):

- DuckDB: ``load_events`` + ``build_features``; ``SegmentationModel.score`` from the log;
- Spark ``local[2]``: ``load_events_spark`` + ``build_features_spark``; ``score_spark``,
  each consumed by Spark's no-op sink (everything is computed, nothing is written).

Spark's session start (several seconds) is outside the clock and reported apart. CPU
seconds are those of the whole process tree (the Python driver, Spark's JVM and its
Python workers). Memory: peak RSS of the Python driver process, which is what must
stay flat as users grow (in local mode the executors live in the JVM, whose peak is
shown too). Prints medians of ``--runs`` runs and the ratios Spark / DuckDB (target:
Spark CPU <= 6x DuckDB's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"

CHILD = r"""
import json, os, sys, time
engine, task, events, as_of, bundle = sys.argv[1:6]
import psutil

def tree_cpu():
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total

def peak_rss(pid):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0

import segmentkit
model = segmentkit.load(bundle) if task == "score" else None
startup = 0.0
if engine == "spark":
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession
    t0 = time.perf_counter()
    spark = (SparkSession.builder.master("local[2]")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "8")
             .config("spark.driver.memory", "2g")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    from segmentkit.features.spark_engine import build_features_spark
    from segmentkit.spark.scoring import score_spark
    startup = time.perf_counter() - t0
else:
    from segmentkit.features import build_features
    from segmentkit.io.events import load_events

cpu0, wall0 = tree_cpu(), time.perf_counter()
if engine == "duckdb" and task == "features":
    rows = len(build_features(load_events(events, as_of=as_of), as_of))
elif engine == "duckdb":
    rows = len(model.score(events, as_of=as_of))
elif task == "features":
    build_features_spark(events, as_of).write.format("noop").mode("overwrite").save()
    rows = -1
else:
    score_spark(model, events, as_of=as_of).write.format("noop").mode("overwrite").save()
    rows = -1
wall = time.perf_counter() - wall0
cpu = tree_cpu() - cpu0
jvm = 0
for proc in psutil.Process().children(recursive=True):
    if "java" in proc.name():
        jvm = max(jvm, peak_rss(proc.pid))
print(json.dumps({"wall": wall, "cpu": cpu, "startup": startup, "rows": rows,
                  "driver_peak": peak_rss(os.getpid()), "jvm_peak": jvm}))
"""


def run_child(engine: str, task: str, events: Path, as_of: str, bundle: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, engine, task, str(events), as_of, str(bundle)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[200_000, 50_000])
    parser.add_argument("--days", type=int, default=38)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from segmentkit.bundle import save_bundle
    from segmentkit.config import load_config
    from segmentkit.io.synth import DEFAULT_END, ensure_demo_log
    from segmentkit.training import train_model

    bundle = DATA / "spark_bench_model"
    if not bundle.exists():
        train_log = ensure_demo_log(20_000, 240, 7, DATA / "train_20000u_240d.parquet")
        config = load_config(HERE.parent / "params.yaml", overrides={"segmentation": {"k": 6}})
        save_bundle(train_model(config, train_log, DEFAULT_END).model, bundle)
    as_of = DEFAULT_END.isoformat()
    print(f"load average: {os.getloadavg()}")
    table = []
    for users in args.users:
        events = ensure_demo_log(
            users, args.days, 0, DATA / f"events_{users}u_{args.days}d.parquet"
        )
        for task in ("features", "score"):
            medians = {}
            for engine in ("duckdb", "spark"):
                runs = [run_child(engine, task, events, as_of, bundle) for _ in range(args.runs)]
                for i, r in enumerate(runs):
                    print(
                        f"  {users:>7,} {task:8s} {engine:6s} run {i + 1}: wall {r['wall']:6.1f} s"
                        f"  cpu {r['cpu']:6.1f} s  driver {r['driver_peak'] / 2**20:6.0f} MiB"
                        f"  jvm {r['jvm_peak'] / 2**20:6.0f} MiB  start {r['startup']:.1f} s",
                        flush=True,
                    )
                medians[engine] = {
                    key: statistics.median(r[key] for r in runs)
                    for key in ("wall", "cpu", "driver_peak", "jvm_peak", "startup")
                }
            table.append((users, task, medians))
    print(f"load average: {os.getloadavg()}")
    print(
        "\n| users | task | DuckDB wall s | DuckDB CPU s | Spark wall s | Spark CPU s "
        "| wall ratio | CPU ratio | driver peak MiB (DuckDB / Spark) | Spark JVM peak MiB "
        "| Spark start s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for users, task, m in table:
        d, s = m["duckdb"], m["spark"]
        print(
            f"| {users:,} | {task} | {d['wall']:.1f} | {d['cpu']:.1f} | {s['wall']:.1f} "
            f"| {s['cpu']:.1f} | {s['wall'] / d['wall']:.1f}x | {s['cpu'] / d['cpu']:.1f}x "
            f"| {d['driver_peak'] / 2**20:.0f} / {s['driver_peak'] / 2**20:.0f} "
            f"| {s['jvm_peak'] / 2**20:.0f} | {s['startup']:.1f} |"
        )


if __name__ == "__main__":
    main()
