"""Refresh verdicts on small logs: changes judged beyond sampling noise, intake of new users.

A refresh of 200 users against a champion of thousands used to WARN or DRIFT on
most unchanged logs (PSI and segment shares at 200 users move by chance); a
planted change must still be found at that size.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from segmentkit.drift.reference import build_feature_reference
from segmentkit.drift.stats import psi_test
from segmentkit.drift.verdict import (
    aged_psi_test,
    newcomer_intake_test,
    psi_noise,
    segment_share_tests,
)


@pytest.mark.parametrize("n_current", [200, 2000])
def test_psi_noise_bounds_the_psi_of_samples_of_one_distribution(n_current):
    rng = np.random.default_rng(1)
    reference = build_feature_reference(
        pd.DataFrame({"spend": rng.lognormal(3, 1, 2000)}), n_bins=10
    )["spend"]
    allowance = psi_noise(reference.n_bins, reference.n, n_current)
    scores = np.array(
        [psi_test(reference, rng.lognormal(3, 1, n_current), None, None).score for _ in range(500)]
    )
    assert (scores > allowance).mean() <= 0.01  # 0.1 % by design, with slack for the draw
    assert np.quantile(scores, 0.99) > allowance / 3  # and not an allowance for everything


def test_small_unchanged_sample_is_ok_and_a_real_shift_is_still_drift():
    rng = np.random.default_rng(2)
    reference = build_feature_reference(
        pd.DataFrame({"events_30d": rng.lognormal(2, 0.8, 2000)}), n_bins=10
    )["events_30d"]
    unchanged = [
        aged_psi_test(reference, rng.lognormal(2, 0.8, 200), rng.lognormal(2, 0.8, 200)).status
        for _ in range(100)
    ]
    doubled = [
        aged_psi_test(
            reference, rng.lognormal(2 + np.log(2), 0.8, 200), rng.lognormal(2, 0.8, 200)
        ).status
        for _ in range(100)
    ]
    assert unchanged.count("OK") >= 98
    assert doubled.count("DRIFT") >= 95


def test_segment_shares_of_a_small_sample_move_by_chance_only():
    rng = np.random.default_rng(3)
    shares = [0.45, 0.3, 0.2, 0.05]
    statuses = [
        r.status
        for _ in range(100)
        for r in segment_share_tests(shares, rng.choice(4, size=200, p=shares))
    ]
    assert statuses.count("OK") >= len(statuses) - 2
    # A segment of 20% that is gone is gone at any size.
    gone = segment_share_tests(shares, rng.choice(3, size=200, p=[0.5, 0.35, 0.15]))
    assert (gone[2].status, gone[2].details["change"]) == ("OK", "steady")
    gone = segment_share_tests(shares, rng.choice([0, 1, 3], size=200, p=[0.5, 0.4, 0.1]))
    assert (gone[2].status, gone[2].details["change"]) == ("DRIFT", "vanished")
    # Doubling a 20% segment among 200 users is beyond chance.
    grown = segment_share_tests(shares, rng.choice(4, size=200, p=[0.3, 0.2, 0.45, 0.05]))
    assert grown[2].status == "DRIFT" and grown[2].details["change"] == "grew"


@pytest.mark.parametrize(
    ("then", "now", "status"),
    [
        pytest.param(300, 310, "OK", id="steady"),
        pytest.param(300, 720, "WARN", id="surge"),
        pytest.param(300, 120, "WARN", id="collapse"),
        pytest.param(300, 400, "OK", id="within-ratio"),
        pytest.param(10, 40, "OK", id="too-few-to-judge"),
        pytest.param(3000, 9000, "WARN", id="never-drift"),
    ],
)
def test_newcomer_intake(then, now, status):
    result = newcomer_intake_test(then, now)
    assert result.status == status
    assert result.details["newcomers_then"] == then and result.details["newcomers_now"] == now


@pytest.mark.slow
def test_refresh_checks_on_200_users_and_on_an_acquisition_surge():
    """Calibrated checks on a steady log: a 200-user extract is OK, a 20% intake surge WARNs."""
    from segmentkit.config import load_config
    from segmentkit.drift.checks import calibrated_checks
    from segmentkit.drift.scenarios import steady_log
    from segmentkit.drift.verdict import decide
    from segmentkit.features import build_features
    from segmentkit.io.events import load_events
    from segmentkit.io.synth import generate_events
    from segmentkit.training import train_model

    config = load_config(
        None,
        {"segmentation": {"k_range": [3, 8], "n_bootstrap": 5}, "propensity": {"targets": []}},
    )
    end = dt.date(2025, 1, 1)
    as_of = dt.datetime(2025, 1, 1)
    champion_as_of = as_of - dt.timedelta(days=30)
    verdicts: dict[str, list[tuple[str, str | None]]] = {"small": [], "surge": []}
    for seed in (700, 701, 702):
        events = steady_log(300, 180, 10, 30, end, seed=seed)
        champion = train_model(config, events, champion_as_of)
        users = events["user_id"].drop_duplicates().sample(200, random_state=seed)
        joined = generate_events(len(champion.features) // 5, 30, seed=seed, end=end).events
        joined = joined.astype({"user_id": str, "event": str})
        joined = joined[joined["timestamp"] >= champion_as_of]
        joined["user_id"] = "new-" + joined["user_id"]
        joined["session_id"] += int(events["session_id"].max()) + 1
        logs = {
            "small": events[events["user_id"].isin(users)],
            "surge": pd.concat([events, joined], ignore_index=True),
        }
        for name, frame in logs.items():
            log = load_events(frame, config.data.columns)
            segmenter = champion.model.segmenter
            checks = calibrated_checks(
                log=log,
                segmenter=segmenter,
                reference=champion.model.metadata.feature_reference,
                reference_shares=champion.model.metadata.segment_shares,
                segment_names=list(segmenter.segment_names_),
                feature_config=champion.model.feature_config,
                champion_as_of=champion_as_of,
                as_of=as_of,
                current=build_features(log, as_of, config.features),
                config=config.drift,
            )
            verdict = decide(checks.results)
            top = verdict.findings[0].kind if verdict.findings else None
            verdicts[name].append((verdict.status, top))
    small = [status for status, _ in verdicts["small"]]
    assert "DRIFT" not in small and small.count("OK") >= 2, verdicts["small"]
    for status, top in verdicts["surge"]:
        assert status == "WARN" and top in ("newcomer_intake", "segment_share"), verdicts["surge"]


def test_history_allows_for_an_extract_but_not_for_a_rewritten_past():
    from segmentkit.drift.verdict import history_test

    rng = np.random.default_rng(4)
    values = np.round(rng.lognormal(2, 1, 2000))
    reference = build_feature_reference(pd.DataFrame({"events_total": values}))["events_total"]
    assert history_test(reference, values).score == pytest.approx(0.0, abs=1e-12)
    extracts = [history_test(reference, rng.choice(values, 200, replace=False)) for _ in range(100)]
    assert sum(r.status == "OK" for r in extracts) >= 98
    # The same users with half of their events lost is a rewritten past, at any size.
    lost = np.round(values * 0.5)
    assert history_test(reference, lost).status == "DRIFT"
    assert history_test(reference, lost[:200]).status == "DRIFT"
    # The most active tenth of users removed from the log: the past changed.
    assert history_test(reference, np.sort(values)[:1800]).status == "DRIFT"
