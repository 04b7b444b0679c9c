"""Segments on planted scenarios: is k right, are archetypes recovered, are names right.

For every scenario x seed: generate the log (``segmentkit.io.synth``), build
features as of the log's end, fit ``Segmenter(k="auto")`` with the default
parameters, and compare with the planted archetypes:

* **k right**: the chosen k equals the scenario's number of distinct groups;
* **ARI** of the segments against the archetypes;
* **small J**: Jaccard of the planted small group with its best-matching segment
  (scenarios with a small group);
* **names**: share of the checked archetypes whose majority segment has the
  expected name (dormant/lost -> Hibernating, new -> New, at_risk -> At risk,
  vip/big_spender/champion -> Champions).

It also times ``k="auto"`` against a fit with k fixed at the planted number
(same data, same run; medians over the runs) and prints the ratio.

Run: ``python benchmarks/segmentation.py [--scenarios ...] [--seeds 0 1 2 3 4]
[--users 5000] [--days 240]``; a scenario written ``small_vip@0.03`` has its small
group at that share of users (the other archetypes rescaled); ``--speed USERS`` times
auto vs fixed k on one larger default log instead (``--events PATH``: a cached
default-scenario Parquet log).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from segmentkit.features import build_features
from segmentkit.io.synth import SCENARIOS, generate_events
from segmentkit.models.segmentation import Segmenter, StabilityWarning

EXPECTED_NAMES = {
    "dormant": "Hibernating",
    "lost": "Hibernating",
    "new": "New",
    "at_risk": "At risk",
    "vip": "Champions",
    "big_spender": "Champions",
    "champion": "Champions",
}


def _fit(X: pd.DataFrame, **params) -> tuple[Segmenter, float]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StabilityWarning)
        model = Segmenter(**params).fit(X)
    return model, time.perf_counter() - start


def _best_jaccard(truth: np.ndarray, labels: np.ndarray, group: str) -> float:
    members = truth == group
    return max(
        (members & (labels == s)).sum() / (members | (labels == s)).sum() for s in np.unique(labels)
    )


def _names_right(truth: np.ndarray, labels: np.ndarray, names: list[str]) -> tuple[int, int]:
    table = pd.crosstab(truth, labels)
    checked = right = 0
    for archetype, expected in EXPECTED_NAMES.items():
        if archetype in table.index:
            checked += 1
            right += names[int(table.loc[archetype].idxmax())].startswith(expected)
    return right, checked


def small_group_archetypes(scenario: str, share: float) -> tuple:
    """Return the scenario's archetypes with its small group at ``share`` (others rescaled)."""
    spec = SCENARIOS[scenario]
    old = next(a.share for a in spec.archetypes if a.name == spec.small_group)
    return tuple(
        dataclasses.replace(
            a, share=share if a.name == spec.small_group else a.share * (1 - share) / (1 - old)
        )
        for a in spec.archetypes
    )


def run(scenario: str, seed: int, users: int, days: int) -> dict:
    # "small_vip@0.03": the scenario with its small group at 3 % of users.
    scenario, _, share = scenario.partition("@")
    archetypes = small_group_archetypes(scenario, float(share)) if share else None
    log = generate_events(
        scenario=scenario, users=users, days=days, seed=seed, archetypes=archetypes
    )
    table = build_features(log.events, as_of=log.end)
    truth = log.truth.set_index("user_id").loc[table["user_id"].astype(str), "archetype"]
    truth = truth.to_numpy()
    X = table.drop(columns="user_id")
    spec = SCENARIOS[scenario]
    auto, auto_s = _fit(X, random_state=seed)
    row = {
        "scenario": f"{scenario}@{share}" if share else scenario,
        "seed": seed,
        "true_k": spec.distinct_groups,
        "k": auto.k_,
        "ari": adjusted_rand_score(truth, auto.labels_),
        "small_j": _best_jaccard(truth, auto.labels_, spec.small_group)
        if spec.small_group
        else np.nan,
        "auto_s": auto_s,
    }
    row["names_right"], row["names_checked"] = _names_right(
        truth, auto.labels_, list(auto.segment_names_)
    )
    if spec.distinct_groups:
        fixed, fixed_s = _fit(X, k=spec.distinct_groups, random_state=seed)
        row["fixed_ari"] = adjusted_rand_score(truth, fixed.labels_)
        row["fixed_s"] = fixed_s
    row["names"] = ", ".join(auto.segment_names_)
    return row


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    clear = runs[runs["true_k"].notna()]
    rows = []
    for scenario, group in [*clear.groupby("scenario", sort=False), ("all", clear)]:
        small = group["small_j"].dropna()
        rows.append(
            {
                "scenario": scenario,
                "runs": len(group),
                "k right": f"{(group['k'] == group['true_k']).mean():.0%}",
                "chosen k": " ".join(str(k) for k in group["k"]),
                "median ARI": round(group["ari"].median(), 3),
                "ARI at true k": round(group["fixed_ari"].median(), 3),
                "small J>=0.7": f"{(small >= 0.7).mean():.0%}" if len(small) else "-",
                "median small J": round(small.median(), 3) if len(small) else np.nan,
                "names right": f"{group['names_right'].sum()}/{group['names_checked'].sum()}",
                "auto/fixed time": round(group["auto_s"].median() / group["fixed_s"].median(), 2),
            }
        )
    return pd.DataFrame(rows)


def speed(users: int, days: int, repeats: int, events: str | None = None) -> None:
    if events:
        # A cached log of the default scenario (generating 1M users in memory takes
        # GBs), as of the end written beside it by benchmarks/train.py.
        end = json.loads(Path(f"{events}.settings.json").read_text())["end"]
        X = build_features(events, as_of=end).drop(columns="user_id")
        users = len(X)
    else:
        log = generate_events(scenario="default", users=users, days=days, seed=0)
        X = build_features(log.events, as_of=log.end).drop(columns="user_id")
        del log
    k = SCENARIOS["default"].distinct_groups
    fixed = statistics.median(_fit(X, k=k, random_state=0)[1] for _ in range(repeats))
    auto = statistics.median(_fit(X, random_state=0)[1] for _ in range(repeats))
    print(
        f"{users:,} users: k={k} fixed {fixed:.1f} s, k=auto (3..10) {auto:.1f} s, "
        f"ratio {auto / fixed:.2f} (medians of {repeats}; load {os.getloadavg()[0]:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=["default", "small_vip", "new_users", "seasonal", "transactions", "overlap"],
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--speed", type=int, default=0, help="Time auto vs fixed k on N users.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--events",
        help="with --speed: time on this default-scenario Parquet log instead of generating one",
    )
    args = parser.parse_args()
    if args.speed:
        speed(args.speed, args.days, args.repeats, args.events)
        return
    runs = []
    for scenario in args.scenarios:
        for seed in args.seeds:
            runs.append(run(scenario, seed, args.users, args.days))
            r = runs[-1]
            print(
                f"{scenario:<13} seed {seed}: k={r['k']} (planted {r['true_k']}), "
                f"ARI {r['ari']:.3f}, small J {r['small_j']:.2f}, "
                f"names {r['names_right']}/{r['names_checked']}: {r['names']}",
                flush=True,
            )
    frame = pd.DataFrame(runs)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print()
        print(summarize(frame).to_string(index=False))
        overlap = frame[frame["true_k"].isna()]
        if len(overlap):
            print(
                f"\noverlap (no clear k): chosen k {' '.join(map(str, overlap['k']))}, "
                f"median ARI {overlap['ari'].median():.3f}"
            )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
