import numpy as np
import pandas as pd
import pytest

from segmentkit.cli import main
from segmentkit.errors import ConfigError
from segmentkit.io.synth import (
    ARCHETYPES,
    SCENARIOS,
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


# ------------------------------------------------------------------ scenarios
def _per_user(log):
    events = log.events.assign(user_id=log.events["user_id"].astype(str))
    per_user = events.groupby("user_id").agg(
        first=("timestamp", "min"),
        last=("timestamp", "max"),
        events=("timestamp", "size"),
        revenue=("revenue", "sum"),
    )
    return per_user.join(log.truth.set_index("user_id"))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_is_deterministic_with_a_truth_table(name):
    log = generate_events(scenario=name, users=400, days=120, seed=5)
    again = generate_events(scenario=name, users=400, days=120, seed=5)
    pd.testing.assert_frame_equal(log.events, again.events)
    pd.testing.assert_frame_equal(log.truth, again.truth)
    assert log.scenario == name
    assert list(log.truth.columns) == ["user_id", "archetype", "start_day", "stop_day"]
    assert set(log.events["user_id"].astype(str)) == set(log.truth["user_id"])
    planted = {a.name for a in SCENARIOS[name].archetypes}
    assert set(log.truth["archetype"]) <= planted
    assert log.events["timestamp"].is_monotonic_increasing


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_vip_group_is_small_and_distinct_in_value(seed):
    log = generate_events(scenario="small_vip", users=3000, days=180, seed=seed)
    share = (log.truth["archetype"] == SCENARIOS["small_vip"].small_group).mean()
    assert 0.03 <= share <= 0.05
    spend = _per_user(log).groupby("archetype")["revenue"].median()
    assert spend["vip"] > 3 * spend.drop("vip").max()


@pytest.mark.parametrize("seed", [0, 1])
def test_users_differ_within_an_archetype_and_spend_is_heavy_tailed(seed):
    # Realistic spread: per-user rates are lognormal with sigma >= 0.5, so activity
    # within one archetype spans a wide range and spend has a long right tail.
    users = _per_user(generate_events(users=3000, days=180, seed=seed))
    steady = users[users["archetype"] == "power_user"]
    assert np.log(steady["events"]).std() >= 0.45
    buyers = users.loc[users["revenue"] > 0, "revenue"]
    assert buyers.mean() > 1.3 * buyers.median()
    assert buyers.quantile(0.99) > 10 * buyers.median()


def test_new_users_arrived_within_one_window():
    log = generate_events(scenario="new_users", users=2000, days=180, seed=4)
    users = _per_user(log)
    end = pd.Timestamp(log.end)
    tenure = (end - users["first"]).dt.days
    assert tenure[users["archetype"] == "new"].max() < 30
    assert (users["archetype"] == "new").mean() == pytest.approx(0.25, abs=0.04)
    assert tenure[users["archetype"] != "new"].median() > 60


def test_seasonal_scenario_shifts_the_base_rate():
    # Same seed, same users: the seasonal log is busier after the shift and near
    # the December peak than the plain one, and converts more.
    plain = generate_events(users=3000, days=240, seed=6)
    seasonal = generate_events(scenario="seasonal", users=3000, days=240, seed=6)

    def late_over_early(log):
        day = (log.events["timestamp"] - log.events["timestamp"].min()).dt.days
        late, early = day >= 200, (day >= 60) & (day < 100)
        return late.sum() / early.sum()

    assert late_over_early(seasonal) > 1.3 * late_over_early(plain)

    def conversion(log):
        late = log.events["timestamp"] >= pd.Timestamp(log.end) - pd.Timedelta(days=60)
        kinds = log.events.loc[late, "event"].value_counts()
        return kinds["purchase"] / kinds.sum()

    assert conversion(seasonal) > 1.1 * conversion(plain)


def test_transactions_scenario_is_an_order_table():
    log = generate_events(scenario="transactions", users=1500, days=240, seed=2)
    events = log.events
    assert list(events.columns) == ["user_id", "timestamp", "event", "revenue"]
    assert events["event"].astype(str).unique().tolist() == ["purchase"]
    assert (events["revenue"] != 0).all()
    assert (events["revenue"] < 0).any()  # refunds are negative purchases
    users = _per_user(log)
    lapsed = (pd.Timestamp(log.end) - users["last"]).dt.days > 90
    assert lapsed.mean() > 0.5  # most customers lapsed long ago


def test_overlap_scenario_has_no_clear_number_of_groups():
    assert SCENARIOS["overlap"].distinct_groups is None
    assert all(a.rate_sigma >= 0.8 for a in SCENARIOS["overlap"].archetypes)


def test_scenario_errors():
    with pytest.raises(ConfigError, match="unknown scenario 'nope'"):
        generate_events(scenario="nope", users=10, days=60)
    with pytest.raises(ConfigError, match="users given twice"):
        generate_events(10, 60, n_users=11)
    with pytest.raises(ConfigError, match="users is required"):
        generate_events(days=60)


def test_cli_writes_a_scenario(tmp_path, capsys):
    out = tmp_path / "tx.parquet"
    with pytest.raises(SystemExit) as exit_info:
        main(["demo-data", "--scenario", "transactions", "--users", "200", "--days", "90",
              "--out", str(out)])  # fmt: skip
    assert exit_info.value.code == 0
    assert "scenario transactions" in capsys.readouterr().out
    assert pd.read_parquet(out)["event"].astype(str).unique().tolist() == ["purchase"]
    with pytest.raises(SystemExit) as exit_info:
        main(["demo-data", "--scenario", "nope", "--out", str(tmp_path / "x.csv")])
    assert exit_info.value.code == 2
    assert "unknown scenario" in capsys.readouterr().err
