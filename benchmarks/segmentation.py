"""Fit time of Segmenter on 100k and 1M users.

Feature tables are real: ``generate_events`` + ``build_features`` (``--days``, 240,
as_of = log end), not a synthetic stand-in. Prints the median of several fits for
k fixed (6) and for k="auto" (k_range 3..10, bootstraps and silhouette on the
default 20k / 10k subsamples).

Run: ``python benchmarks/segmentation.py [--users 100000 1000000] [--repeats 3] [--days 240]``
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from segmentkit.features import build_features
from segmentkit.io.synth import generate_events
from segmentkit.models.segmentation import Segmenter, StabilityWarning


def _time_fit(X, repeats: int, **params) -> tuple[float, Segmenter]:
    times = []
    model = None
    for _ in range(repeats):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StabilityWarning)
            model = Segmenter(random_state=0, **params).fit(X)
        times.append(time.perf_counter() - start)
    return statistics.median(times), model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--days", type=int, default=240, help="Span of the generated log.")
    args = parser.parse_args()
    for n_users in args.users:
        start = time.perf_counter()
        log = generate_events(n_users, args.days, seed=0)
        table = build_features(log.events, as_of=log.end)
        X = table.drop(columns="user_id")
        del log, table
        print(f"{n_users:>9,} users: features built in {time.perf_counter() - start:.1f} s")
        for label, params in (("k=6 (fixed)", {"k": 6}), ("k=auto 3..10", {"k": "auto"})):
            seconds, model = _time_fit(X, args.repeats, **params)
            print(
                f"    {label:<14} median fit {seconds:6.1f} s over {args.repeats} runs; "
                f"k={model.k_}, rule met={model.k_rule_met_}, "
                f"min stability={model.segment_stability_.min():.2f}"
            )
            if params["k"] == "auto":
                cols = ["k", "min_jaccard", "silhouette", "min_share", "eligible", "chosen"]
                print(model.selection_[cols].round(3).to_string(index=False))
        print(model.profiles_[["name", "share", "stability"]].round(3).to_string())


if __name__ == "__main__":
    main()
