"""Time fit_propensity on the demo log and print its out-of-time evaluation.

Usage: python benchmarks/propensity.py [n_users] [n_threads]
(defaults: 20000 users, params.yaml settings, n_threads=1).
"""

from __future__ import annotations

import sys
import time

import pandas as pd

from segmentkit.config import load_config
from segmentkit.features import build_features
from segmentkit.io.events import load_events
from segmentkit.io.synth import generate_events
from segmentkit.models.propensity import fit_propensity
from segmentkit.scoring import score_propensity


def main() -> None:
    """Run the benchmark."""
    n_users = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    n_threads = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "none" else None
    if len(sys.argv) <= 2:
        n_threads = 1
    cfg = load_config("params.yaml")
    demo = generate_events(n_users, cfg.data.demo.days, seed=cfg.data.demo.seed)
    log = load_events(demo.events)
    as_of = pd.Timestamp(demo.end)
    segments = demo.archetypes.rename(columns={"archetype": "segment"})
    start = time.perf_counter()
    result = fit_propensity(
        log, as_of, cfg.features, cfg.propensity, segments=segments, n_threads=n_threads
    )
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = score_propensity(result.models, build_features(log, as_of, cfg.features))
    score_s = time.perf_counter() - start
    print(f"users={n_users} events={len(demo.events)} n_threads={n_threads}")
    print(f"fit_propensity: {fit_s:.1f} s; features + scoring at as_of: {score_s:.1f} s")
    print("choice:", result.choice)
    pd.set_option("display.width", 160)
    for metric in ("roc_auc", "pr_auc", "brier", "log_loss", "lift_top_decile",
                   "poisson_deviance", "predicted_total", "actual_total"):  # fmt: skip
        print(f"\n{metric}\n{result.evaluation.summary(metric).round(4)}")
    print("\nsnapshots\n", result.evaluation.snapshots)
    print("\nsegments\n", result.evaluation.segments.round(3))
    buckets = [c for c in scores.columns if c.endswith("_bucket")]
    print(
        "\nbucket shares at as_of\n", scores[buckets].apply(pd.Series.value_counts, normalize=True)
    )


if __name__ == "__main__":
    main()
