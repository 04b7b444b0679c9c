import numpy as np
import pandas as pd
import pytest

from segmentkit.errors import ConfigError
from segmentkit.io.synth import (
    ARCHETYPES,
    archetypes_path_for,
    ensure_demo_log,
    generate_events,
    write_demo_log,
)


@pytest.fixture(scope="module")
def demo():
    return generate_events(3000, 180, seed=11)


def test_same_seed_same_log_other_seed_other_log(demo):
    again = generate_events(3000, 180, seed=11)
    pd.testing.assert_frame_equal(demo.events, again.events)
    pd.testing.assert_frame_equal(demo.archetypes, again.archetypes)
    other = generate_events(3000, 180, seed=12)
    assert not demo.events["timestamp"].equals(other.events["timestamp"])


def test_every_archetype_is_planted_in_proportion(demo):
    shares = demo.archetypes["archetype"].value_counts(normalize=True)
    for archetype in ARCHETYPES:
        assert shares[archetype.name] == pytest.approx(archetype.share, abs=0.03)


def test_log_shape(demo):
    events = demo.events
    assert list(events.columns) == ["user_id", "timestamp", "event", "revenue", "session_id"]
    assert events["timestamp"].is_monotonic_increasing
    assert events["timestamp"].max() < pd.Timestamp(demo.end)
    assert events["timestamp"].min() >= pd.Timestamp(demo.end) - pd.Timedelta(days=180)
    assert set(events["user_id"].astype(str)) == set(demo.archetypes["user_id"])
    assert not events.duplicated().any()


def test_purchases_carry_revenue_and_refunds_are_negative(demo):
    events = demo.events
    purchases = events[events["event"] == "purchase"]
    assert (purchases["revenue"] > 0).all()
    refunds = events[events["event"] == "refund"]
    assert len(refunds) > 0 and (refunds["revenue"] < 0).all()
    browsing = events[~events["event"].isin(["purchase", "refund"])]
    assert (browsing["revenue"] == 0).all()


def test_archetypes_behave_differently(demo):
    events = demo.events.assign(user_id=demo.events["user_id"].astype(str))
    kind = events["user_id"].map(demo.archetypes.set_index("user_id")["archetype"])
    per_user = (
        events.groupby(kind, observed=True)["user_id"].count()
        / demo.archetypes["archetype"].value_counts()
    )
    assert per_user["power_user"] > 3 * per_user["casual"]
    spend = (
        events.groupby(kind, observed=True)["revenue"].sum()
        / demo.archetypes["archetype"].value_counts()
    )
    assert spend["big_spender"] > 3 * spend["casual"]
    end = pd.Timestamp(demo.end)
    last_seen = events.groupby("user_id")["timestamp"].max()
    truth = demo.archetypes.set_index("user_id")["archetype"]
    assert (end - last_seen[truth == "dormant"]).dt.days.min() >= 60
    first_seen = events.groupby("user_id")["timestamp"].min()
    assert (end - first_seen[truth == "new"]).dt.days.max() <= 14


def test_weekly_cycle_weekends_busier(demo):
    weekday = demo.events["timestamp"].dt.day_of_week
    per_day = weekday.value_counts().sort_index()
    assert per_day[[5, 6]].mean() > 1.2 * per_day[[0, 1]].mean()


def test_sessions_group_events_of_one_user(demo):
    per_session = demo.events.groupby("session_id")["user_id"].nunique()
    assert (per_session == 1).all()
    assert demo.events.groupby("session_id").size().mean() > 2


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_write_and_reuse(tmp_path, suffix):
    log = generate_events(200, 90, seed=1)
    events_path, truth_path = write_demo_log(log, tmp_path / f"demo{suffix}")
    assert truth_path == archetypes_path_for(events_path)
    truth = pd.read_parquet(truth_path) if suffix == ".parquet" else pd.read_csv(truth_path)
    assert len(truth) == len(log.archetypes)
    path = ensure_demo_log(200, 90, 1, tmp_path / f"cached{suffix}")
    stamp = path.stat().st_mtime_ns
    assert ensure_demo_log(200, 90, 1, path).stat().st_mtime_ns == stamp
    ensure_demo_log(201, 90, 1, path)  # other settings regenerate
    assert (
        pd.read_parquet(archetypes_path_for(path))
        if suffix == ".parquet"
        else pd.read_csv(archetypes_path_for(path))
    ).shape[0] == 201


def test_invalid_settings():
    with pytest.raises(ConfigError, match="users must be at least 1"):
        generate_events(0, 90)
    with pytest.raises(ConfigError, match="days must be at least 30"):
        generate_events(10, 5)
    with pytest.raises(ConfigError, match="expected a .parquet or .csv"):
        write_demo_log(generate_events(10, 60), "demo.json")


def test_large_populations_are_vectorized():
    # 50k users must be quick (1M users is the benchmark's job); the rate here guards
    # against an accidental per-user Python loop.
    log = generate_events(50_000, 120, seed=2)
    assert len(log.archetypes) > 49_000
    assert np.isfinite(log.events["revenue"]).all()
