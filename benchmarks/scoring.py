"""Benchmark scoring throughput at 1M users.

Usage::

    python benchmarks/scoring.py [--users 1000000] [--days 38] [--runs 3] [--bundle DIR]

``--days 30`` (the shortest demo log: 23.5M events for 1M users) is the nearest to the
20M events of the issue's target; the default 38 days gives 29.2M.

Trains a model once on a 20k-user demo log of the same span and end as the scored
one (k fixed, the default propensity targets on weekly snapshots: scoring refuses a
log that starts later than the training log did and inside the feature windows), then
scores a 1M-user population:

(a) from features: ``SegmentationModel.score_features`` on a prebuilt feature table;
(b) end to end: ``SegmentationModel.score`` from the Parquet event log (validation,
    features, scoring);
(c) baseline: scikit-learn's own predictors on the same matrix (the Segmenter's
    ``predict`` and each fitted estimator's ``decision_function`` / ``predict``, i.e.
    the boosted trees without :mod:`segmentkit.models.hgb_runtime`), without calibration,
    percentiles, buckets or frame assembly;
(d) the whole command, ``segmentkit score --model BUNDLE --events LOG --out FILE``, in a
    fresh process (imports, bundle loading and checks, validation, features, scoring,
    writing the Parquet file), against the bare DuckDB ``GROUP BY user_id`` count of the
    same file in a fresh process; with the medians of the steps the command prints and
    of ``import segmentkit.cli`` in a fresh process.

Prints medians of ``--runs`` runs, users/s, the ratio c/a (target: >= 500k users/s
from features) and the whole command's time (target <= 12 s for 1M users / 20M events)
with its ratio to the bare count. ``score_features`` and the baseline must agree
exactly on the raw scores; the script checks that before timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: params.yaml with k = 6 and weekly propensity snapshots, which a log of a few weeks holds.
TRAINING_OVERRIDES = {
    "segmentation": {"k": 6},
    "propensity": {"horizon_days": 7, "snapshot_step_days": 7},
}
DATA = HERE / ".data"
CLI = "import sys; from segmentkit.cli import main; sys.argv[0] = 'segmentkit'; main()"
COUNT = (
    "import duckdb, sys; con = duckdb.connect(); con.execute('SET enable_progress_bar = false');"
    "con.execute(f\"SELECT user_id, count(*) FROM read_parquet('{sys.argv[1]}') GROUP BY user_id\")"
    ".fetchall()"
)


def timed_process(*args: str, output: list[str] | None = None) -> float:
    """Wall time of a fresh Python process running ``args`` (imports included).

    The process's standard output is appended to ``output`` if given.
    """
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if output is not None:
        output.append(done.stdout)
    return seconds


def step_seconds(stdout: str) -> dict[str, float]:
    """Return the ``  <step>: done in <s> s`` lines a command printed, step name to seconds."""
    steps = {}
    for line in stdout.splitlines():
        name, found, rest = line.strip().rpartition(": done in ")
        if found and rest.endswith(" s"):
            steps[name] = float(rest[:-2])
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=38)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--bundle",
        type=Path,
        help="reuse the model saved here by an earlier run (saved there after training if absent)",
    )
    args = parser.parse_args()

    import numpy as np

    from segmentkit import load
    from segmentkit.bundle import save_bundle
    from segmentkit.config import load_config
    from segmentkit.features import build_features
    from segmentkit.io.synth import DEFAULT_END, ensure_demo_log
    from segmentkit.models.propensity import _raw_score
    from segmentkit.parallel import usable_cores
    from segmentkit.training import train_model

    if args.bundle is not None and args.bundle.is_dir():
        model = load(args.bundle)
        print(f"model loaded from {args.bundle}")
    else:
        # Trained on a log like the one scored (same span and end): scoring refuses a log
        # that starts later than the training log did and inside the feature windows.
        train_log = ensure_demo_log(
            20_000, args.days, 7, DATA / f"train_20000u_{args.days}d.parquet"
        )
        config = load_config(HERE.parent / "params.yaml", overrides=TRAINING_OVERRIDES)
        t0 = time.perf_counter()
        model = train_model(config, train_log, DEFAULT_END).model
        print(f"trained on 20k users in {time.perf_counter() - t0:.1f} s")
        if args.bundle is not None:
            save_bundle(model, args.bundle)

    events = ensure_demo_log(
        args.users, args.days, 0, DATA / f"events_{args.users}u_{args.days}d.parquet"
    )
    t0 = time.perf_counter()
    features = build_features(events, DEFAULT_END, model.feature_config)
    print(f"{len(features):,} users; features built in {time.perf_counter() - t0:.1f} s")
    n = len(features)
    names = model.feature_names

    def sklearn_raw(estimator, X):
        # The model's own inputs: "+bgnbd" families append the BG/NBD columns.
        X = estimator._design(X)
        inner = estimator.estimator_
        if hasattr(inner, "decision_function"):
            return inner.decision_function(X)
        return inner.predict(X)

    def bare() -> None:
        X = features[names].to_numpy(dtype=np.float64)
        model.segmenter.predict(features[names])
        for estimator in model.propensity.values():
            sklearn_raw(estimator, X)

    # The fast path must give scikit-learn's numbers, bit for bit.
    X = features[names].to_numpy(dtype=np.float64)
    for name, estimator in model.propensity.items():
        fast = _raw_score(estimator.estimator_, estimator._design(X), estimator.kind != "count")
        if not np.array_equal(fast, sklearn_raw(estimator, X)):
            raise SystemExit(f"raw scores of {name!r} differ from scikit-learn's")
    print("raw scores equal scikit-learn's for every target")
    print(f"threads: {usable_cores()}")

    tmp = Path(tempfile.mkdtemp(prefix="segmentkit-bench-"))
    bundle = args.bundle if args.bundle is not None else save_bundle(model, tmp / "bundle")
    command = ["-c", CLI, "score", "--model", str(bundle), "--events", str(events)]
    command += ["--as-of", DEFAULT_END.isoformat(), "--out", str(tmp / "scores.parquet")]

    timings: dict[str, list[float]] = {
        "from features": [],
        "scikit-learn": [],
        "end to end": [],
        "CLI score": [],
        "bare count": [],
        "import cli": [],
    }
    loads = []
    printed: list[str] = []  # what each CLI run printed: its steps' times
    for run in range(args.runs):
        loads.append(os.getloadavg()[0])
        for label, call in (
            ("from features", lambda: model.score_features(features)),
            ("scikit-learn", bare),
            ("end to end", lambda: model.score(events, as_of=DEFAULT_END)),
            ("CLI score", lambda: timed_process(*command, output=printed)),
            ("bare count", lambda: timed_process("-c", COUNT, str(events))),
            ("import cli", lambda: timed_process("-c", "import segmentkit.cli")),
        ):
            start = time.perf_counter()
            value = call()
            seconds = value if isinstance(value, float) else time.perf_counter() - start
            timings[label].append(seconds)
            print(f"  run {run + 1} {label:14s} {seconds:6.2f} s  {n / seconds:,.0f} users/s")

    print(f"\nmedians (1-min load average {min(loads):.1f}-{max(loads):.1f})")
    medians = {label: statistics.median(values) for label, values in timings.items()}
    for label, seconds in medians.items():
        print(f"  {label:14s} {seconds:6.2f} s  {n / seconds:,.0f} users/s")
    ratio = medians["scikit-learn"] / medians["from features"]
    print(f"ratio c/a (scikit-learn predictors / score_features): {ratio:.2f}")
    print(f"from features: {n / medians['from features']:,.0f} users/s (target >= 500,000)")
    print(
        f"CLI score: {medians['CLI score']:.2f} s (target <= 12 s), "
        f"{medians['CLI score'] / medians['bare count']:.1f}x the bare count in a fresh process"
    )
    # The command's own steps (the model loads in the background during the first).
    steps = [step_seconds(text) for text in printed]
    print("CLI score steps (medians; the rest is interpreter start and imports):")
    print(f"  {'import segmentkit.cli':68s} {medians['import cli']:6.2f} s (fresh process)")
    for name in steps[0] if steps else []:
        values = [run[name] for run in steps if name in run]
        print(f"  {name[:68]:68s} {statistics.median(values):6.2f} s")


if __name__ == "__main__":
    main()
