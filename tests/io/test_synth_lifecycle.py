"""The generator's life cycles: the default stays as it was, ``hazard`` has no calendar cliff."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from segmentkit.errors import ConfigError
from segmentkit.io.synth import SCENARIOS, generate_events

# Computed with the generator before the ``lifecycle`` option existed (300 users, 90
# days, seed 3): the default output must not change, drift and segment benchmarks
# are calibrated on it.
DEFAULT_HASHES = {
    "default": ("c342ab66699fe018", 18619),
    "small_vip": ("76e68d0c4e7a33d0", 22448),
    "new_users": ("720a892397e45e3c", 15810),
    "seasonal": ("bcd41742b1a037b7", 25850),
    "transactions": ("c7904b47f3762324", 965),
    "overlap": ("030356308684a4eb", 25102),
}


def _digest(frames: list[pd.DataFrame]) -> str:
    data = b"".join(pd.util.hash_pandas_object(f, index=False).values.tobytes() for f in frames)
    return hashlib.sha256(data).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_default_lifecycle_output_is_unchanged(name):
    log = generate_events(300, 90, seed=3, scenario=name)
    assert (_digest([log.events, log.truth]), len(log.events)) == DEFAULT_HASHES[name]
    explicit = generate_events(300, 90, seed=3, scenario=name, lifecycle="span")
    pd.testing.assert_frame_equal(log.events, explicit.events)


@pytest.fixture(scope="module")
def hazard():
    return generate_events(20_000, 240, seed=5, lifecycle="hazard")


def test_hazard_users_arrive_uniformly_over_the_span(hazard):
    # Every archetype, the "new" one included, arrives at a constant rate: a quarter
    # of each archetype's users in each quarter of the span.
    truth = hazard.truth
    quarter = np.minimum((truth["start_day"] // 60).astype(int), 3)
    shares = pd.crosstab(truth["archetype"], quarter, normalize="index")
    assert np.allclose(shares.to_numpy(), 0.25, atol=0.04)


def test_hazard_lapses_at_a_constant_rate_in_calendar_time(hazard):
    # at_risk users lapse: stops per user-day alive is the same in every 60-day
    # stretch (the default life cycle stops them all between 78 % and 90 % of it).
    truth = hazard.truth.query("archetype == 'at_risk'")
    start, stop = truth["start_day"].to_numpy(), truth["stop_day"].to_numpy()
    lapsed = stop < 240
    rates = []
    for lo in (60, 120, 180):
        hi = lo + 60
        alive_days = np.clip(np.minimum(stop, hi) - np.maximum(start, lo), 0, None).sum()
        stops = (lapsed & (stop >= lo) & (stop < hi)).sum()
        rates.append(stops / alive_days)
    # Mean life of at_risk under the default: (0.84 - 0.225) x 240 days.
    expected = 1.0 / (0.615 * 240)
    assert np.allclose(rates, expected, rtol=0.2)
    default = generate_events(20_000, 240, seed=5).truth.query("archetype == 'at_risk'")
    assert default["stop_day"].between(0.78 * 240 - 1, 0.9 * 240 + 1).all()


def _monthly_purchase_rates(log, months: int = 6) -> np.ndarray:
    """Share of the users seen before each of the last months who buy in that month."""
    events = log.events
    codes = events["user_id"].cat.codes.to_numpy()
    times = events["timestamp"].to_numpy()
    bought = (events["event"] == "purchase").to_numpy()
    first_seen = pd.Series(times).groupby(codes).min()
    end = pd.Timestamp(log.end)
    rates = []
    for k in range(months, 0, -1):
        t0, t1 = end - pd.Timedelta(days=30 * k), end - pd.Timedelta(days=30 * (k - 1))
        known = first_seen.index[first_seen < t0].to_numpy()
        buyers = np.unique(codes[bought & (times >= t0) & (times < t1)])
        rates.append(np.isin(known, buyers).mean())
    return np.array(rates)


def test_hazard_base_rate_moves_smoothly(hazard):
    # No month's purchase rate among known users moves from the month before by more
    # than two points; under the default life cycle the at_risk users all stop in the
    # same stretch of days, and the rate falls by more than that in one month.
    assert np.abs(np.diff(_monthly_purchase_rates(hazard))).max() < 0.02
    cliff = _monthly_purchase_rates(generate_events(20_000, 240, seed=5))
    assert np.abs(np.diff(cliff)).max() > 0.02


def test_hazard_is_deterministic_and_keeps_the_scenario():
    first = generate_events(500, 60, seed=2, scenario="transactions", lifecycle="hazard")
    again = generate_events(500, 60, seed=2, scenario="transactions", lifecycle="hazard")
    pd.testing.assert_frame_equal(first.events, again.events)
    assert first.events["event"].unique().tolist() == ["purchase"]
    assert (first.truth["stop_day"] >= first.truth["start_day"]).all()


def test_unknown_lifecycle_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown lifecycle 'cliff'; choose one of"):
        generate_events(50, 60, lifecycle="cliff")
