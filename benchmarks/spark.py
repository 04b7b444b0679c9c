"""Benchmark the Spark engine against DuckDB: features and scoring, wall and CPU seconds, memory.

Usage::

    python benchmarks/spark.py [--users 50000 200000] [--days 38] [--runs 3]

For each population size, generates (or reuses) a demo log in one Parquet file under
``benchmarks/.data/``, trains a model once on a 20k-user log of the same span (weekly
propensity snapshots), then times:

- DuckDB: ``load_events`` + ``build_features``; ``SegmentationModel.score`` from the log;
  ``--runs`` fresh processes each (a run's peak memory is its own).
- Spark ``local[2]`` (``spark.sql.shuffle.partitions=2``, one partition per core: the
  engine adds partitions as the log grows, one per ``ROWS_PER_PARTITION`` events):
  ``load_events_spark`` + ``build_features_spark``; ``score_spark``
  (computed and cached, then written to Spark's no-op sink and released), all from the
  Parquet path (so scoring places its user ranges from a few of the file's row
  groups). One fresh process per task and size runs it ``--runs`` times in one
  session: the first run is *cold* (a new JVM: class loading, JIT compilation, Python
  workers starting), the later ones *warm*, as in a long-lived session on a cluster.

Reported for Spark, so that no cost is hidden: session start on its own; the cold run
with and without the session start; the median of the warm runs. CPU seconds are those
of the whole process tree (the Python driver, Spark's JVM and its Python workers).
Memory: peak RSS of the Python driver process, which must stay flat as users grow (in
local mode the executors live in the JVM, whose peak is shown too). The ratios are
Spark / DuckDB (median of DuckDB's runs); target: Spark CPU <= 6x DuckDB's.
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
#: params.yaml with k = 6 and weekly propensity snapshots, which a log of a few weeks holds.
TRAINING_OVERRIDES = {
    "segmentation": {"k": 6},
    "propensity": {"horizon_days": 7, "snapshot_step_days": 7},
}
DATA = HERE / ".data"

CHILD = r"""
import json, os, sys, time
engine, task, events, as_of, bundle, runs = sys.argv[1:7]
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

cpu_start, wall_start = tree_cpu(), time.perf_counter()
import segmentkit
model = segmentkit.load(bundle) if task == "score" else None
if engine == "spark":
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master("local[2]")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "2")
             .config("spark.driver.memory", "2g")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    from segmentkit.features.spark_engine import build_features_spark
    from segmentkit.spark.scoring import score_spark
    def job():
        if task == "features":
            build_features_spark(events, as_of).write.format("noop").mode("overwrite").save()
        else:
            scores = score_spark(model, events, as_of=as_of)
            scores.write.format("noop").mode("overwrite").save()
            scores.unpersist(blocking=True)
else:
    from segmentkit.features import build_features
    from segmentkit.io.events import load_events
    def job():
        if task == "features":
            build_features(load_events(events, as_of=as_of), as_of)
        else:
            model.score(events, as_of=as_of)
startup = {"wall": time.perf_counter() - wall_start, "cpu": tree_cpu() - cpu_start}
timed = []
for _ in range(int(runs)):
    cpu0, wall0 = tree_cpu(), time.perf_counter()
    job()
    timed.append({"wall": time.perf_counter() - wall0, "cpu": tree_cpu() - cpu0})
jvm = 0
for proc in psutil.Process().children(recursive=True):
    if "java" in proc.name():
        jvm = max(jvm, peak_rss(proc.pid))
print(json.dumps({"startup": startup, "runs": timed,
                  "driver_peak": peak_rss(os.getpid()), "jvm_peak": jvm}))
"""


def run_child(engine: str, task: str, events: Path, as_of: str, bundle: Path, runs: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, engine, task, str(events), as_of, str(bundle), str(runs)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(task: str, events: Path, as_of: str, bundle: Path, runs: int) -> dict:
    """DuckDB: ``runs`` fresh processes (first run each); Spark: one process, ``runs`` runs."""
    duckdb = [run_child("duckdb", task, events, as_of, bundle, 1) for _ in range(runs)]
    spark = run_child("spark", task, events, as_of, bundle, runs)
    cold, warm = spark["runs"][0], spark["runs"][1:] or spark["runs"]
    return {
        "duckdb_cpu": statistics.median(r["runs"][0]["cpu"] for r in duckdb),
        "duckdb_wall": statistics.median(r["runs"][0]["wall"] for r in duckdb),
        "duckdb_peak": statistics.median(r["driver_peak"] for r in duckdb),
        "start_cpu": spark["startup"]["cpu"],
        "start_wall": spark["startup"]["wall"],
        "cold_cpu": cold["cpu"],
        "cold_wall": cold["wall"],
        "warm_cpu": statistics.median(r["cpu"] for r in warm),
        "warm_wall": statistics.median(r["wall"] for r in warm),
        "spark_peak": spark["driver_peak"],
        "jvm_peak": spark["jvm_peak"],
        "duckdb_runs": [r["runs"][0] for r in duckdb],
        "spark_runs": spark["runs"],
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--days", type=int, default=38)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from segmentkit.bundle import save_bundle
    from segmentkit.config import load_config
    from segmentkit.io.synth import DEFAULT_END, ensure_demo_log
    from segmentkit.training import train_model

    bundle = DATA / f"spark_bench_model_{args.days}d"
    if not bundle.exists():
        # Trained on a log like the one scored (same span and end): scoring refuses a log
        # that starts later than the training log did and inside the feature windows.
        train_log = ensure_demo_log(
            20_000, args.days, 7, DATA / f"train_20000u_{args.days}d.parquet"
        )
        config = load_config(HERE.parent / "params.yaml", overrides=TRAINING_OVERRIDES)
        save_bundle(train_model(config, train_log, DEFAULT_END).model, bundle)
    as_of = DEFAULT_END.isoformat()
    rows = []
    for users in args.users:
        events = ensure_demo_log(
            users, args.days, 0, DATA / f"events_{users}u_{args.days}d.parquet"
        )
        for task in ("features", "score"):
            m = measure(task, events, as_of, bundle, args.runs)
            print(f"{users:>7,} {task}: {json.dumps(m)}", flush=True)
            rows.append((users, task, m))
    gib = 2**20
    print(
        "\n| users | task | DuckDB CPU s | Spark CPU s: warm / cold / cold + start "
        "| CPU ratio: warm / cold / cold + start | wall ratio: warm / cold + start "
        "| driver peak MiB DuckDB / Spark | Spark JVM peak MiB | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for users, task, m in rows:
        d = m["duckdb_cpu"]
        with_start = m["cold_cpu"] + m["start_cpu"]
        print(
            f"| {users:,} | {task} | {d:.1f} "
            f"| {m['warm_cpu']:.1f} / {m['cold_cpu']:.1f} / {with_start:.1f} "
            f"| {m['warm_cpu'] / d:.1f}x / {m['cold_cpu'] / d:.1f}x / {with_start / d:.1f}x "
            f"| {m['warm_wall'] / m['duckdb_wall']:.1f}x / "
            f"{(m['cold_wall'] + m['start_wall']) / m['duckdb_wall']:.1f}x "
            f"| {m['duckdb_peak'] / gib:.0f} / {m['spark_peak'] / gib:.0f} "
            f"| {m['jvm_peak'] / gib:.0f} | {m['load']:.1f} |"
        )


if __name__ == "__main__":
    main()
