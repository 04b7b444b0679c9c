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


def test_variant_logs_change_what_they_say():
    from segmentkit.drift.scenarios import add_new_users, extract_users, repeat_sessions, steady_log

    events = steady_log(40, 90, 4, 30, dt.date(2025, 1, 1), seed=1)
    since, until = dt.datetime(2024, 12, 2), dt.datetime(2025, 1, 1)
    joined = add_new_users(events, 30, since, until, seed=1)
    new = joined[~joined["user_id"].isin(events["user_id"])]
    assert new["user_id"].nunique() == 30 and new["timestamp"].min() >= pd.Timestamp(since)
    assert not set(new["session_id"]) & set(events["session_id"])
    peak = repeat_sessions(events, since, until, seed=1)
    recent = (events["timestamp"] >= pd.Timestamp(since)).sum()
    assert recent < (peak["timestamp"] >= pd.Timestamp(since)).sum() <= 2 * recent
    assert len(peak[peak["timestamp"] < pd.Timestamp(since)]) == len(events) - recent
    assert extract_users(events, 25, seed=1)["user_id"].nunique() == 25


@pytest.mark.slow
def test_variants_get_the_right_verdict_over_seeds():
    """More users, small extracts: OK; an acquisition surge: WARN; a peak season, a price
    change, a lost event: DRIFT, each named first (seeds not used while developing)."""
    from segmentkit.drift.scenarios import VARIANTS, calibration_table

    table = calibration_table(range(700, 703), ["unchanged", *VARIANTS])
    wrong = table[~table["correct"]]
    assert len(wrong) <= 1, wrong.to_string()  # 27 verdicts; one WARN at 200 users is chance


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
