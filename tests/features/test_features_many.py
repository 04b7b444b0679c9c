"""build_features_many: the same tables as build_features at each date, from one read of the log."""

import numpy as np
import pandas as pd
import pytest

from conftest import AS_OF
from segmentkit.config import ColumnMap, FeatureConfig
from segmentkit.errors import DataValidationError
from segmentkit.features import build_features, build_features_many, feature_names
from segmentkit.io.events import load_events
from segmentkit.io.synth import generate_events

CONFIG = FeatureConfig(
    windows=(7, 30), session_gap_minutes=30, key_events=("purchase", "add_to_cart")
)


def _assert_same_as_one_by_one(events, dates, config, columns=None):
    many = build_features_many(events, dates, config, columns=columns)
    assert len(many) == len(dates)
    for date, table in zip(dates, many, strict=True):
        expected = build_features(events, date, config, columns=columns)
        pd.testing.assert_frame_equal(table, expected, check_exact=True, obj=f"as of {date}")
    return many


def test_tiny_log_at_edges_repeats_and_any_order(tiny_log):
    # Before every event, exactly at an event (it is excluded), at a session's second
    # event, at a time of day of its own, a repeat, out of order.
    dates = [
        AS_OF,
        "2023-11-30",
        "2024-01-01 10:10",
        "2023-12-01 12:00",
        "2024-01-20",
        "2024-01-30 23:20",
        AS_OF,
        "2024-01-01 10:10:00.000001",
    ]
    log = load_events(tiny_log)
    many = _assert_same_as_one_by_one(log, dates, CONFIG)
    assert many[1].empty and list(many[1].columns) == ["user_id", *feature_names(CONFIG)]
    assert many[3].empty  # b's event is at, not before, the snapshot
    assert many[0] is not many[6]
    assert many[2].set_index("user_id").loc["a", "events_total"] == 1


def test_events_at_midnight_on_midnight_snapshots():
    # Date-only timestamps: every event is a whole number of days before each snapshot.
    days = pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-03", "2024-01-08", "2024-01-09"])
    frame = pd.DataFrame(
        {
            "user_id": ["a", "b", "a", "a", "b"],
            "timestamp": days,
            "event": ["view", "purchase", "purchase", "view", "view"],
            "revenue": [0.0, 5.0, 12.5, 0.0, 0.0],
        }
    )
    dates = [pd.Timestamp("2024-01-01") + pd.Timedelta(days=d) for d in range(11)]
    _assert_same_as_one_by_one(load_events(frame), dates, CONFIG, columns=None)


@pytest.mark.parametrize(
    "columns", [None, ColumnMap(session_id=None)], ids=["session_ids", "gap_sessions"]
)
def test_demo_log_at_six_snapshots(columns):
    demo = generate_events(300, 120, seed=4)
    events = demo.events.assign(user_id=demo.events["user_id"].astype(str))
    end = pd.Timestamp(demo.end)
    dates = [end - pd.Timedelta(days=d) for d in (0, 7, 14, 30, 61, 90)]
    dates.append(end - pd.Timedelta(days=400))  # before every event
    log = load_events(events, columns)
    many = _assert_same_as_one_by_one(log, dates, CONFIG)
    assert [len(t) > 0 for t in many] == [True] * 6 + [False]


def test_gap_sessions_across_snapshots_with_ties_and_exact_gaps():
    rng = np.random.default_rng(7)
    n = 2000
    as_of = pd.Timestamp("2024-03-01")
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, n).astype(str),
            "timestamp": as_of - pd.to_timedelta(rng.integers(-20, 12 * 24 * 6, n) * 10, unit="m"),
            "event": rng.choice(["view", "purchase"], n),
        }
    )
    config = FeatureConfig(windows=(1, 3), session_gap_minutes=30, key_events=("purchase",))
    dates = [as_of - pd.Timedelta(days=d) for d in range(0, 12, 2)]
    dates += [as_of - pd.Timedelta(hours=5)]
    _assert_same_as_one_by_one(load_events(events), dates, config)


def test_many_event_types_and_long_spans():
    # More event types than the bitmap holds (exact fallback) and spans over several
    # 63-day blocks, with windows longer than one block.
    rng = np.random.default_rng(3)
    n = 1500
    end = pd.Timestamp("2024-12-31")
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, 25, n),
            "timestamp": end - pd.to_timedelta(rng.integers(0, 300 * 24 * 60, n), unit="m"),
            "event": [f"e{i}" for i in rng.integers(0, 80, n)],
        }
    )
    config = FeatureConfig(windows=(30, 90, 180), key_events=("e1", "e79", "absent"))
    dates = [end - pd.Timedelta(days=d) for d in (0, 1, 64, 127, 250)]
    _assert_same_as_one_by_one(load_events(events), dates, config)


def test_transaction_table_from_a_raw_source():
    tx = pd.DataFrame(
        {
            "customer": [1, 1, 2, 2, 3],
            "date": pd.to_datetime(
                ["2024-01-02", "2024-01-10", "2024-01-05", "2024-01-05", "2024-01-20"]
            ),
            "amount": [10.0, 30.0, 5.0, -5.0, 7.25],
        }
    )
    columns = ColumnMap(
        user_id="customer", timestamp="date", event=None, revenue="amount", session_id=None
    )
    dates = ["2024-01-21", "2024-01-06", "2024-01-11"]
    _assert_same_as_one_by_one(tx, dates, CONFIG, columns=columns)


def test_order_lines_at_one_time_are_one_order_at_every_snapshot():
    # Lines of one invoice share a time; one invoice sits exactly on a snapshot's midnight
    # (it is after that snapshot, before the next), one straddles nothing.
    tx = pd.DataFrame(
        {
            "customer": [1, 1, 1, 1, 1, 2, 2],
            "time": pd.to_datetime(
                [
                    "2024-01-02 10:00",
                    "2024-01-02 10:00",
                    "2024-01-06 00:00",
                    "2024-01-06 00:00",
                    "2024-01-06 00:00",
                    "2024-01-03 23:59",
                    "2024-01-04 00:00",
                ]
            ),
            "amount": [12.0, 8.0, 3.0, 4.0, -1.0, 5.0, 7.0],
            "sku": ["a", "b", "a", "b", "c", "x", "y"],
        }
    )
    columns = ColumnMap(
        user_id="customer", timestamp="time", event=None, revenue="amount", session_id=None
    )
    dates = ["2024-01-07", "2024-01-06", "2024-01-04", "2024-01-05"]
    many = _assert_same_as_one_by_one(tx, dates, CONFIG, columns=columns)
    latest = many[0].set_index("user_id")
    assert latest["orders"].to_dict() == {1: 2, 2: 2}
    assert many[1].set_index("user_id").loc[1, "orders"] == 1


def test_no_dates_gives_no_tables(tiny_log):
    assert build_features_many(tiny_log, [], CONFIG) == []


def test_a_date_after_the_loaded_cut_off_is_refused(tiny_log):
    log = load_events(tiny_log, as_of="2024-01-15")
    with pytest.raises(DataValidationError, match="after the cut-off"):
        build_features_many(log, ["2024-01-10", AS_OF], CONFIG)


def test_leaves_no_tables_behind(tiny_log):
    log = load_events(tiny_log)
    before = log.con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
    build_features_many(log, [AS_OF, "2024-01-10"], CONFIG)
    assert log.con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == before
