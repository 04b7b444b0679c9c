import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from conftest import AS_OF
from segmentkit.config import ColumnMap, FeatureConfig
from segmentkit.errors import DataValidationError
from segmentkit.features import (
    build_features,
    build_features_many,
    describe_features,
    feature_names,
)
from segmentkit.io.events import load_events
from segmentkit.io.synth import generate_events

CONFIG = FeatureConfig(
    windows=(7, 30), session_gap_minutes=30, key_events=("purchase", "add_to_cart")
)

# Worked out by hand from the tiny_log fixture (see conftest.py), as of 2024-01-31 00:00.
# User a's events are 29, 29, 10, 0, 0, 0 days ago; user b's one event is 60.5 days ago.
EXPECTED = pd.DataFrame(
    {
        "user_id": ["a", "b"],
        "recency_days": [10 / 1440, 60.5],
        "tenure_days": [29 + 14 / 24, 60.5],
        "events_total": [6, 1],
        "sessions_total": [3, 1],
        "active_days_total": [3, 1],
        "active_days_7d": [1, 0],
        "events_7d": [3, 0],
        "sessions_7d": [1, 0],
        "revenue_7d": [20.0, 0.0],
        "active_days_30d": [3, 0],
        "events_30d": [6, 0],
        "sessions_30d": [3, 0],
        "revenue_30d": [70.0, 0.0],
        "distinct_events": [4, 1],
        "events_per_session": [2.0, 1.0],
        "purchase_events": [2, 0],
        "add_to_cart_events": [1, 0],
        "revenue_total": [70.0, 0.0],
        "orders": [2, 0],
        "avg_order_value": [40.0, 0.0],
        "activity_trend": [math.log(4 / 2), 0.0],
        "median_gap_days": [14.5, 60.5],
    }
)


def test_hand_computed_features(tiny_log):
    table = build_features(tiny_log, AS_OF, CONFIG)
    pd.testing.assert_frame_equal(table, EXPECTED, check_dtype=False, atol=1e-9)
    assert list(table.columns) == ["user_id", *feature_names(CONFIG)]


def test_dtypes_are_stable(tiny_log):
    table = build_features(tiny_log, AS_OF, CONFIG)
    assert table["events_total"].dtype == np.int64
    assert table["active_days_7d"].dtype == np.int64
    assert table["recency_days"].dtype == np.float64
    assert table["events_per_session"].dtype == np.float64


def test_events_at_or_after_as_of_never_change_features(tiny_log, late_events):
    before = build_features(tiny_log, AS_OF, CONFIG)
    after = build_features(pd.concat([tiny_log, late_events]), AS_OF, CONFIG)
    pd.testing.assert_frame_equal(before, after)
    assert "c" not in set(after["user_id"])


def test_future_events_never_change_features_on_demo_data():
    log = generate_events(300, 90, seed=3)
    as_of = pd.Timestamp(log.end) - pd.Timedelta(days=20)
    events = log.events.assign(user_id=log.events["user_id"].astype(str))
    past = events[events["timestamp"] < as_of]
    full = build_features(events, as_of, CONFIG)
    only_past = build_features(past, as_of, CONFIG)
    pd.testing.assert_frame_equal(full, only_past)


def test_gap_based_sessions_without_session_id(tiny_log):
    no_sessions = tiny_log.drop(columns=["session_id"])
    table = build_features(no_sessions, AS_OF, CONFIG).set_index("user_id")
    # 30-minute gap: 10:00/10:10 | 09:00 | 23:00/23:20/23:50 (a gap of exactly 30 min stays)
    assert table.loc["a", "sessions_total"] == 3
    short_gap = FeatureConfig(windows=(7, 30), session_gap_minutes=15, key_events=())
    table = build_features(no_sessions, AS_OF, short_gap).set_index("user_id")
    # 15 minutes: 10:00/10:10 | 09:00 | 23:00 | 23:20 | 23:50
    assert table.loc["a", "sessions_total"] == 5
    assert table.loc["a", "sessions_7d"] == 3
    assert table.loc["a", "events_per_session"] == pytest.approx(6 / 5)


def _as_relation(frame, tmp_path):
    return duckdb.connect().from_df(frame)


def _as_parquet(frame, tmp_path):
    path = tmp_path / "events.parquet"
    frame.to_parquet(path)
    return str(path)


def _as_csv(frame, tmp_path):
    path = tmp_path / "events.csv"
    frame.to_csv(path, index=False)
    return path


def _as_glob(frame, tmp_path):
    frame.iloc[:3].to_parquet(tmp_path / "part-1.parquet")
    frame.iloc[3:].to_parquet(tmp_path / "part-2.parquet")
    return str(tmp_path / "part-*.parquet")


@pytest.mark.parametrize(
    "make_source",
    [lambda f, p: f, _as_relation, _as_parquet, _as_csv, _as_glob],
    ids=["dataframe", "duckdb-relation", "parquet", "csv", "parquet-glob"],
)
def test_every_input_kind_gives_the_same_features(tiny_log, tmp_path, make_source):
    table = build_features(make_source(tiny_log, tmp_path), AS_OF, CONFIG)
    pd.testing.assert_frame_equal(table, EXPECTED, check_dtype=False, atol=1e-9)


def test_column_mapping_and_integer_user_ids(tiny_log):
    renamed = tiny_log.rename(
        columns={"user_id": "uid", "timestamp": "ts", "event": "name", "revenue": "amount"}
    ).drop(columns=["session_id"])
    renamed["uid"] = renamed["uid"].map({"a": 10, "b": 2})
    columns = ColumnMap(
        user_id="uid", timestamp="ts", event="name", revenue="amount", session_id=None
    )
    table = build_features(renamed, AS_OF, CONFIG, columns=columns)
    assert table["user_id"].tolist() == [2, 10]
    assert table.set_index("user_id").loc[10, "revenue_total"] == 70.0


def test_timezone_aware_timestamps_are_converted_to_utc(tiny_log):
    shifted = tiny_log.copy()
    # The same instants written in UTC+02:00.
    shifted["timestamp"] = shifted["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Etc/GMT-2")
    table = build_features(shifted, AS_OF, CONFIG)
    pd.testing.assert_frame_equal(table, EXPECTED, check_dtype=False, atol=1e-9)


def test_transaction_table_without_event_column():
    tx = pd.DataFrame(
        {
            "customer": [1, 1, 2],
            "date": pd.to_datetime(["2024-01-02", "2024-01-10", "2024-01-05"]).date,
            "amount": [10.0, 30.0, 5.0],
        }
    )
    columns = ColumnMap(
        user_id="customer", timestamp="date", event=None, revenue="amount", session_id=None
    )
    table = build_features(tx, "2024-01-11", CONFIG, columns=columns).set_index("user_id")
    assert table.loc[1, "purchase_events"] == 2
    assert table.loc[1, "orders"] == 2
    assert table.loc[1, "avg_order_value"] == 20.0
    assert table.loc[1, "median_gap_days"] == 8.0


def test_orders_are_purchase_occasions_not_order_lines():
    # Invoice lines: user 1's first invoice has three lines at 10:00 (one a returned
    # item), a second invoice the next day has one line; a cancelled invoice (all lines
    # negative) is no order. User 2 bought twice on one date of a date-only export.
    tx = pd.DataFrame(
        {
            "customer": [1, 1, 1, 1, 1, 2, 2],
            "time": pd.to_datetime(
                [
                    "2024-01-02 10:00",
                    "2024-01-02 10:00",
                    "2024-01-02 10:00",
                    "2024-01-03 09:00",
                    "2024-01-05 12:00",
                    "2024-01-04 00:00",
                    "2024-01-04 00:00",
                ]
            ),
            "amount": [12.0, 8.0, -2.0, 30.0, -15.0, 5.0, 7.0],
            "sku": ["a", "b", "c", "a", "a", "x", "y"],
        }
    )
    columns = ColumnMap(
        user_id="customer", timestamp="time", event=None, revenue="amount", session_id=None
    )
    table = build_features(tx, "2024-01-06", CONFIG, columns=columns).set_index("user_id")
    assert table.loc[1, "events_total"] == 5  # rows still count as events
    assert table.loc[1, "orders"] == 2
    assert table.loc[1, "avg_order_value"] == (12.0 + 8.0 + 30.0) / 2
    assert table.loc[1, "revenue_total"] == 33.0
    assert table.loc[2, "orders"] == 1
    assert table.loc[2, "avg_order_value"] == 12.0


@pytest.mark.parametrize("lines", [False, True], ids=["one-line-orders", "order-lines"])
def test_orders_are_the_same_whether_rows_or_order_times_are_counted(lines):
    # The duplicate check tells whether an order may have several lines; where it
    # found none, rows with revenue are counted, and the table must not change.
    events = generate_events(300, 60, seed=2).events
    if lines:  # a second line for some orders: same user and time, another amount
        orders = events[events["revenue"] > 0].iloc[::3].assign(revenue=1.25)
        events = pd.concat([events, orders], ignore_index=True)
    checked = load_events(events, as_of="2024-12-20")
    unchecked = load_events(events, as_of="2024-12-20", check_duplicates=False)
    assert checked.order_times_unique is (not lines)
    assert unchecked.order_times_unique is None
    table = build_features(checked, "2024-12-20")
    pd.testing.assert_frame_equal(table, build_features(unchecked, "2024-12-20"))
    many = build_features_many(checked, ["2024-12-01", "2024-12-20"])
    pd.testing.assert_frame_equal(many[1], table)
    if lines:
        assert (table["orders"] < table["events_total"]).any()


def test_as_of_beyond_the_loaded_cut_off_is_refused(tiny_log):
    log = load_events(tiny_log, as_of="2024-01-15")
    with pytest.raises(DataValidationError, match="after the cut-off"):
        build_features(log, AS_OF, CONFIG)


def test_every_feature_is_described():
    specs = describe_features(CONFIG)
    assert [s.name for s in specs] == feature_names(CONFIG)
    assert all(s.description for s in specs)
    assert len(set(feature_names(CONFIG))) == len(specs)


def test_many_event_types_fall_back_to_exact_distinct_count():
    # More event types than the bitmap holds: the exact fallback must agree.
    rows = [
        ("u", pd.Timestamp("2024-01-01") + pd.Timedelta(minutes=i), f"e{i % 70}")
        for i in range(140)
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "timestamp", "event"])
    table = build_features(frame, "2024-02-01", CONFIG)
    assert table.loc[0, "distinct_events"] == 70


def test_active_days_and_gaps_across_64_day_blocks():
    as_of = pd.Timestamp("2024-12-31")
    days_ago = [0, 63, 64, 130, 200]
    frame = pd.DataFrame(
        {
            "user_id": "u",
            "timestamp": [as_of - pd.Timedelta(days=d) - pd.Timedelta(hours=12) for d in days_ago],
            "event": "view",
        }
    )
    table = build_features(frame, as_of, FeatureConfig(windows=(30, 90, 180), key_events=()))
    row = table.iloc[0]
    assert row["active_days_total"] == 5
    assert row["active_days_30d"] == 1
    assert row["active_days_90d"] == 3
    assert row["active_days_180d"] == 4
    assert row["median_gap_days"] == (63 + 66) / 2  # gaps 63, 1, 66, 70


def _naive_features(events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """A slow, obviously correct pandas version of a few features."""
    past = events[events["timestamp"] < as_of].copy()
    past["days_ago"] = ((as_of - past["timestamp"]) // pd.Timedelta(days=1)).astype(int)
    grouped = past.groupby("user_id")
    out = pd.DataFrame(
        {
            "events_total": grouped.size(),
            "sessions_total": grouped["session_id"].nunique(),
            "active_days_total": grouped["days_ago"].nunique(),
            "active_days_30d": past[past["days_ago"] < 30].groupby("user_id")["days_ago"].nunique(),
            "revenue_30d": past[past["days_ago"] < 30].groupby("user_id")["revenue"].sum(),
            "distinct_events": grouped["event"].nunique(),
            "median_gap_days": grouped["days_ago"].apply(
                lambda d: np.median(np.diff(np.sort(d.unique()))) if d.nunique() > 1 else np.nan
            ),
        }
    ).fillna({"active_days_30d": 0, "revenue_30d": 0.0})
    return out


def test_matches_a_naive_pandas_implementation_on_demo_data():
    log = generate_events(400, 200, seed=5)
    events = log.events.assign(
        user_id=log.events["user_id"].astype(str), event=log.events["event"].astype(str)
    )
    as_of = pd.Timestamp(log.end) - pd.Timedelta(days=10)
    table = build_features(events, as_of, FeatureConfig(windows=(30, 90))).set_index("user_id")
    expected = _naive_features(events, as_of)
    table = table.loc[expected.index]
    for column in expected.columns:
        left = table[column].where(expected[column].notna(), np.nan)
        np.testing.assert_allclose(left, expected[column], err_msg=column)


def test_rows_without_session_id_are_cut_into_sessions_at_gaps(tiny_log):
    raw = tiny_log.copy()
    raw["session_id"] = raw["session_id"].astype(object)
    raw.loc[[3, 4], "session_id"] = None  # two of the three events of s3 lose their id
    table = build_features(raw, AS_OF, CONFIG).set_index("user_id")
    # s1, s2, what is left of s3 (23:50), and 23:00 + 23:20 without ids: 20 minutes
    # apart, within the 30-minute gap, one session (it was one per timestamp, two).
    assert table.loc["a", "sessions_total"] == 4
    short_gap = FeatureConfig(windows=(7, 30), session_gap_minutes=15, key_events=())
    table = build_features(raw, AS_OF, short_gap).set_index("user_id")
    assert table.loc["a", "sessions_total"] == 5
    assert table.loc["a", "events_per_session"] == pytest.approx(6 / 5)


def _naive_gap_sessions(
    events: pd.DataFrame, as_of: pd.Timestamp, gap_minutes: int
) -> pd.DataFrame:
    """Sessions by sorting every user's events and cutting at gaps longer than the gap."""
    past = events[events["timestamp"] < as_of].sort_values(["user_id", "timestamp"])
    previous = past.groupby("user_id")["timestamp"].shift()
    starts = past[
        previous.isna() | (past["timestamp"] - previous > pd.Timedelta(minutes=gap_minutes))
    ]
    days_ago = (as_of - starts["timestamp"]) // pd.Timedelta(days=1)
    return pd.DataFrame(
        {
            "sessions_total": starts.groupby("user_id").size(),
            "sessions_7d": (days_ago < 7).groupby(starts["user_id"]).sum(),
        }
    )


@pytest.mark.parametrize("gap_minutes", [1, 7, 30, 1500])
def test_gap_sessions_match_a_sort_based_sessionization(gap_minutes):
    # Timestamps on a coarse grid make exact-gap distances, ties and day crossings common.
    rng = np.random.default_rng(gap_minutes)
    n = 3000
    as_of = pd.Timestamp("2024-03-01")
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, 40, n).astype(str),
            "timestamp": as_of
            - pd.to_timedelta(rng.integers(-50, 20 * 24 * 60, n) * gap_minutes / 7, unit="m").round(
                "s"
            ),
            "event": "view",
        }
    )
    config = FeatureConfig(windows=(7, 30), session_gap_minutes=gap_minutes, key_events=())
    table = build_features(events, as_of, config).set_index("user_id")
    expected = _naive_gap_sessions(events, as_of, gap_minutes)
    pd.testing.assert_frame_equal(
        table[["sessions_total", "sessions_7d"]], expected.loc[table.index], check_dtype=False
    )


def test_events_after_as_of_in_a_log_loaded_without_cut_off_change_nothing(tiny_log):
    # Names and first events known from loading include a later, new event type.
    late = pd.DataFrame(
        {
            "user_id": ["a", "c"],
            "timestamp": pd.to_datetime(["2024-02-02", "2024-02-03"]),
            "event": ["wishlist", "view"],
            "revenue": [0.0, 0.0],
            "session_id": ["s8", "s9"],
        }
    )
    log = load_events(pd.concat([tiny_log, late]))
    assert "wishlist" in log.event_names
    pd.testing.assert_frame_equal(
        build_features(log, AS_OF, CONFIG), build_features(tiny_log, AS_OF, CONFIG)
    )
    early = build_features(log, "2023-12-01 12:00", CONFIG)  # before every event
    assert early.empty and list(early.columns) == ["user_id", *feature_names(CONFIG)]


@pytest.mark.parametrize("make_source", [lambda f, p: f, _as_parquet], ids=["dataframe", "parquet"])
def test_duplicates_change_no_feature(make_source, tmp_path):
    log = generate_events(200, 60, seed=11)
    events = log.events.assign(
        user_id=log.events["user_id"].astype(str), event=log.events["event"].astype(str)
    )
    copies = events.sample(n=300, replace=True, random_state=1)
    doubled = pd.concat([events, copies], ignore_index=True).sample(frac=1.0, random_state=2)
    as_of = pd.Timestamp(log.end)
    for columns in (None, ColumnMap(session_id=None)):
        expected = build_features(events, as_of, CONFIG, columns=columns)
        loaded = load_events(make_source(doubled, tmp_path), columns, as_of=as_of)
        used = ["user_id", "timestamp", "event", "revenue"] + (
            ["session_id"] if columns is None else []
        )
        past = doubled.loc[doubled["timestamp"] < as_of, used]
        assert loaded.report.duplicate_rows == len(past) - len(past.drop_duplicates()) >= 300
        pd.testing.assert_frame_equal(build_features(loaded, as_of, CONFIG), expected)


def test_median_gaps_kernel_matches_numpy_median_of_day_differences():
    from segmentkit.features.duckdb_engine import _BLOCK_DAYS, _median_gaps

    rng = np.random.default_rng(3)
    blocks = 3
    bits = np.zeros((500, blocks), dtype=np.int64)
    expected = np.full(500, np.nan)
    for row in range(500):
        days = np.sort(rng.choice(_BLOCK_DAYS * blocks, size=rng.integers(0, 40), replace=False))
        for day in days:
            bits[row, day // _BLOCK_DAYS] |= 1 << int(day % _BLOCK_DAYS)
        if len(days) > 1:
            expected[row] = np.median(np.diff(days))
    np.testing.assert_array_equal(_median_gaps(bits), expected)


def _naive_window_features(
    events: pd.DataFrame, as_of: pd.Timestamp, windows: tuple[int, ...], gap_minutes: int | None
) -> pd.DataFrame:
    """Events, revenue and sessions per window, by filtering the rows of each window."""
    past = events[events["timestamp"] < as_of].sort_values(["user_id", "timestamp"])
    if gap_minutes is None:
        starts = past.groupby(["user_id", "session_id"])["timestamp"].min().reset_index()
    else:
        previous = past.groupby("user_id")["timestamp"].shift()
        starts = past[
            previous.isna() | (past["timestamp"] - previous > pd.Timedelta(minutes=gap_minutes))
        ]
    row_days = (as_of - past["timestamp"]) // pd.Timedelta(days=1)
    start_days = (as_of - starts["timestamp"]) // pd.Timedelta(days=1)
    out = {}
    for w in windows:
        out[f"events_{w}d"] = (row_days < w).groupby(past["user_id"]).sum()
        out[f"revenue_{w}d"] = (
            past["revenue"].where(row_days < w, 0.0).groupby(past["user_id"]).sum()
        )
        out[f"sessions_{w}d"] = (start_days < w).groupby(starts["user_id"]).sum()
    return pd.DataFrame(out)


@pytest.mark.parametrize("windows", [(19, 20), (20, 21), (5, 19), (3, 60)], ids=str)
@pytest.mark.parametrize("gap_minutes", [None, 45], ids=["session-ids", "gap-45min"])
def test_windows_holding_the_whole_history_equal_filtered_counts(windows, gap_minutes):
    # The first event is 19.5 days before as_of: the log spans 20 days, so a 20-day
    # window holds every event and a 19-day one does not (the query skips the filter
    # of a window that holds every event; both sides of that edge are checked).
    rng = np.random.default_rng(3)
    n = 600
    as_of = pd.Timestamp("2024-03-01")
    minutes_before = rng.integers(1, int(19.5 * 24 * 60), n)
    minutes_before[0] = int(19.5 * 24 * 60)
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, 12, n).astype(str),
            "timestamp": as_of - pd.to_timedelta(minutes_before, unit="m"),
            "event": rng.choice(["view", "purchase"], n),
            "revenue": rng.integers(-3, 40, n) / 4,
            "session_id": minutes_before // 240,
        }
    )
    columns = ColumnMap(session_id=None) if gap_minutes is not None else None
    config = FeatureConfig(windows=windows, session_gap_minutes=gap_minutes or 30, key_events=())
    table = build_features(load_events(events, columns), as_of, config).set_index("user_id")
    expected = _naive_window_features(events, as_of, windows, gap_minutes)
    got = table[expected.columns].loc[expected.index]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_names=False)
    widest = max(windows)
    if widest >= 20:
        assert (table[f"events_{widest}d"] == table["events_total"]).all()


@pytest.mark.parametrize("share_without_id", [0.0, 0.3, 1.0])
def test_sessions_with_some_rows_lacking_a_session_id_match_a_naive_count(share_without_id):
    # Rows with an id form (user, id) sessions; rows without one are cut at 30-minute
    # gaps among themselves. The query groups the two kinds apart: checked against a
    # sort-based pandas sessionization.
    rng = np.random.default_rng(7)
    n = 2000
    as_of = pd.Timestamp("2024-03-01")
    minutes_before = rng.integers(1, 40 * 24 * 60 // 10, n) * 10  # ties on a 10-minute grid
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, n).astype(str),
            "timestamp": as_of - pd.to_timedelta(minutes_before, unit="m"),
            "event": "view",
            "session_id": (minutes_before // 600).astype(object),
        }
    )
    events.loc[rng.random(n) < share_without_id, "session_id"] = None
    config = FeatureConfig(windows=(7, 60), key_events=())
    table = build_features(events, as_of, config).set_index("user_id")
    with_id = events.dropna(subset=["session_id"])
    without = events[events["session_id"].isna()].sort_values(["user_id", "timestamp"])
    previous = without.groupby("user_id")["timestamp"].shift()
    cut = previous.isna() | (without["timestamp"] - previous > pd.Timedelta(minutes=30))
    starts = pd.concat(
        [
            with_id.groupby(["user_id", "session_id"])["timestamp"].min().reset_index(),
            without.loc[cut, ["user_id", "timestamp"]],
        ]
    )
    recent = (as_of - starts["timestamp"]) < pd.Timedelta(days=7)
    expected = pd.DataFrame(
        {
            "sessions_total": starts.groupby("user_id").size(),
            "sessions_7d": recent.groupby(starts["user_id"]).sum(),
        }
    )
    pd.testing.assert_frame_equal(
        table[["sessions_total", "sessions_7d"]], expected.loc[table.index], check_dtype=False
    )


@pytest.mark.parametrize(
    ("first", "as_of"),
    [("0001-01-01 00:00", "2024-02-01"), ("2024-01-01 10:00", "9999-12-31")],
    ids=["placeholder-timestamp", "mistyped-as-of"],
)
def test_a_span_of_centuries_is_refused_not_built(tiny_log, first, as_of):
    # DuckDB crashed (SIGFPE) on the query of a span of millennia; a century is no behaviour.
    raw = tiny_log.astype({"timestamp": str})
    raw.loc[0, "timestamp"] = first
    with pytest.raises(DataValidationError, match=r"expected at most 100 years of behaviour"):
        build_features(raw, as_of)
    log = load_events(raw, as_of=as_of)
    with pytest.raises(DataValidationError, match=r"column 'timestamp' \(timestamp\)"):
        build_features_many(log, [as_of, "2024-01-15"])


def test_a_span_of_decades_is_still_built(tiny_log):
    raw = tiny_log.astype({"timestamp": str})
    raw.loc[0, "timestamp"] = "1970-01-01 00:00"
    table = build_features(raw, AS_OF)
    assert table.loc[table["user_id"] == "a", "tenure_days"].item() > 365 * 54
