"""Spark engine: the same validation, features and scores as the DuckDB engine.

One local[2] SparkSession serves the whole test session (starting one takes
seconds). Every comparison is exact except ``activity_trend``, allowed 1e-12
relative (a ``log`` from another C library may differ in the last bit).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pyspark = pytest.importorskip("pyspark", reason="the Spark extra is not installed")

from segmentkit.config import ColumnMap, FeatureConfig  # noqa: E402
from segmentkit.errors import DataValidationError, InsufficientDataError  # noqa: E402
from segmentkit.features import build_features, feature_names  # noqa: E402
from segmentkit.features.spark_engine import build_features_spark  # noqa: E402
from segmentkit.io.events import load_events  # noqa: E402
from segmentkit.io.spark import load_events_spark  # noqa: E402
from segmentkit.io.synth import generate_events  # noqa: E402

AS_OF = pd.Timestamp("2024-01-31")


def to_spark(spark, frame: pd.DataFrame):
    """A Spark DataFrame with the same rows (categoricals as strings, as Parquet readers do)."""
    frame = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    return spark.createDataFrame(frame)


def assert_same_features(local: pd.DataFrame, distributed, config: FeatureConfig | None = None):
    """Exact equality of every column (activity_trend within 1e-12), rows matched by user."""
    theirs = distributed.toPandas()
    assert list(theirs.columns) == ["user_id", *feature_names(config)]
    assert list(local.columns) == list(theirs.columns)
    theirs = theirs.sort_values("user_id", kind="stable").reset_index(drop=True)
    local = local.reset_index(drop=True)
    assert len(local) == len(theirs)
    np.testing.assert_array_equal(
        local["user_id"].astype(str).to_numpy(), theirs["user_id"].astype(str).to_numpy()
    )
    for name in feature_names(config):
        assert theirs[name].dtype == local[name].dtype, name
        if name == "activity_trend":
            np.testing.assert_allclose(theirs[name], local[name], rtol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(theirs[name], local[name], err_msg=name)


def edge_case_log() -> pd.DataFrame:
    """Hand-made corner cases, each user one of them."""
    rows = [
        # a: sessions, a purchase, a refund, events straddling midnight before as_of
        ("a", "2024-01-01 10:00", "view", 0.0, "s1"),
        ("a", "2024-01-01 10:10", "purchase", 50.0, "s1"),
        ("a", "2024-01-20 09:00", "view", 0.0, "s2"),
        ("a", "2024-01-30 23:00", "add_to_cart", 0.0, "s3"),
        ("a", "2024-01-30 23:20", "purchase", 30.0, "s3"),
        ("a", "2024-01-30 23:50", "refund", -10.0, "s3"),
        ("a", "2024-01-30 23:59:59.999999", "view", None, "s3"),
        # b: one old event (median gap falls back to tenure), exact duplicates
        ("b", "2023-12-01 12:00", "view", 0.0, "s4"),
        ("b", "2023-12-01 12:00", "view", 0.0, "s4"),
        # c: no session ids (cut at gaps), ties, revenue with many decimals
        ("c", "2024-01-10 08:00", "purchase", 0.1234565, None),
        ("c", "2024-01-10 08:00", "view", 0.0, None),
        ("c", "2024-01-10 08:29", "view", 0.0, None),
        ("c", "2024-01-10 09:30", "purchase", 2.0000005, None),
        ("c", "2023-05-02 00:00:00.000001", "view", 0.0, None),
        # d: activity spread over more than 63 days (several day bitmaps), even gap count
        *[
            ("d", f"{day} 12:00", "view", 0.0, f"d{i}")
            for i, day in enumerate(
                ["2023-06-01", "2023-08-15", "2023-10-20", "2023-11-01", "2024-01-05", "2024-01-30"]
            )
        ],
        # e: only events at or after as_of (absent from the table)
        ("e", "2024-01-31 00:00", "view", 0.0, "s9"),
        ("e", "2024-02-03 00:00", "view", 0.0, "s9"),
        # f: event names needing a slug and an event named like a key event with spaces
        ("f", "2024-01-29 13:00", "Add To Cart!", 0.0, "s10"),
        ("f", "2024-01-29 13:40", "purchase", 19.99, "s10"),
        ("f", "2024-01-29 14:20", "purchase", 0.01, "s11"),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "timestamp", "event", "revenue", "session_id"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], format="ISO8601")
    return frame


CONFIGS = {
    "default": FeatureConfig(),
    "three-windows": FeatureConfig(
        windows=(7, 30, 200), session_gap_minutes=45, key_events=("purchase", "Add To Cart!")
    ),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("sessions", ["session_id", "gap"])
@pytest.mark.parametrize("as_of", ["2024-01-31", "2024-01-10 08:29"])
def test_edge_cases_match_duckdb(spark, config, sessions, as_of):
    events = edge_case_log()
    columns = ColumnMap() if sessions == "session_id" else ColumnMap(session_id=None)
    local = build_features(events, as_of, config, columns=columns)
    distributed = build_features_spark(to_spark(spark, events), as_of, config, columns=columns)
    assert_same_features(local, distributed, config)


@pytest.fixture(scope="module")
def demo_events() -> pd.DataFrame:
    return generate_events(400, 150, seed=11).events


@pytest.mark.parametrize("sessions", ["session_id", "gap"])
@pytest.mark.parametrize("as_of", ["2024-12-01", "2024-10-15"])
def test_demo_log_matches_duckdb(spark, demo_events, sessions, as_of, tmp_path):
    events = demo_events if sessions == "session_id" else demo_events.drop(columns="session_id")
    path = tmp_path / "events.parquet"
    events.to_parquet(path)
    end = pd.Timestamp(events["timestamp"].max()).normalize() + pd.Timedelta(days=1)
    snapshot = end if as_of == "2024-12-01" else end - pd.Timedelta(days=47)
    local = build_features(str(path), snapshot)
    distributed = build_features_spark(str(path), snapshot)
    assert_same_features(local, distributed)


def test_many_event_types_and_integer_user_ids(spark):
    rng = np.random.default_rng(5)
    n = 400
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, n),
            "timestamp": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 90 * 86_400, n), unit="s"),
            "event": [f"e{i}" for i in rng.integers(0, 80, n)],  # > 63: no event bitmap
            "revenue": rng.choice([0.0, 9.99, -3.5], n),
        }
    )
    # Amounts on one event only: 9.99 on every event would be a price, refused.
    events["revenue"] = events["revenue"].where(events["event"] == "e1", 0.0)
    local = build_features(events, "2024-03-15", columns=ColumnMap(session_id=None))
    distributed = build_features_spark(
        to_spark(spark, events), "2024-03-15", columns=ColumnMap(session_id=None)
    )
    assert_same_features(local, distributed)


def test_data_quality_report_is_the_same(spark):
    events = edge_case_log()
    events.loc[len(events)] = [None, pd.Timestamp("2024-01-02"), "view", 0.0, "x"]
    events.loc[len(events)] = ["g", pd.NaT, "view", 0.0, "x"]
    events.loc[len(events)] = ["g", pd.Timestamp("2024-01-03"), None, 0.0, "x"]
    local = load_events(events, as_of="2024-01-31").report
    distributed = load_events_spark(to_spark(spark, events), as_of="2024-01-31").report
    assert distributed == local
    assert (local.duplicate_rows, local.null_user_id, local.null_timestamp) == (1, 1, 1)
    assert local.null_event == 1


def test_nanosecond_parquet_and_time_zones(spark, tmp_path):
    """pandas writes nanoseconds (Spark refuses them as timestamps); zones convert to UTC."""
    events = edge_case_log()
    events["timestamp"] = events["timestamp"].astype("datetime64[ns]") + pd.to_timedelta(
        np.arange(len(events)) * 7, unit="ns"
    )
    nanos = tmp_path / "nanos.parquet"
    events.to_parquet(nanos)
    assert_same_features(build_features(str(nanos), AS_OF), build_features_spark(str(nanos), AS_OF))
    aware = edge_case_log()
    aware["timestamp"] = aware["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Asia/Kolkata")
    zoned = tmp_path / "zoned.parquet"
    aware.to_parquet(zoned)
    assert_same_features(build_features(str(zoned), AS_OF), build_features_spark(str(zoned), AS_OF))


def test_naive_strings_are_utc_whatever_the_session_time_zone(spark):
    events = edge_case_log()
    events["timestamp"] = events["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S.%f")
    local = build_features(events, AS_OF)
    frame = to_spark(spark, events)
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        distributed = build_features_spark(frame, AS_OF)
        assert_same_features(local, distributed)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")


def _error(call):
    with pytest.raises((DataValidationError, InsufficientDataError)) as info:
        call()
    return type(info.value), str(info.value)


def with_revenue(value: float):
    """Edit the events' revenue: one row gets ``value``, a genuine float (NaN, inf, ...).

    Written through Arrow to Parquet, because pandas and Arrow turn a NaN in a DataFrame
    into null on the way to either engine.
    """

    def change(events: pd.DataFrame) -> pa.Table:
        table = pa.Table.from_pandas(events, preserve_index=False)
        revenue = table.column("revenue").to_pylist()
        revenue[3] = value
        index = table.schema.get_field_index("revenue")
        return table.set_column(index, "revenue", pa.array(revenue, pa.float64()))

    return change


def all_null_events(events: pd.DataFrame) -> pd.DataFrame:
    # A string column of nulls: an untyped one has no Spark type to create a DataFrame with.
    return events.assign(event=pd.Series([None] * len(events), dtype="string"))


BAD_INPUTS = {
    "missing-column": (lambda e: e.drop(columns="event"), {}),
    "renamed-column": (lambda e: e.rename(columns={"user_id": "uid"}), {}),
    "bad-timestamp": (lambda e: e.assign(timestamp=["2024-01-02", "yesterday"] * 12), {}),
    "bad-revenue": (lambda e: e.assign(revenue=["1.5", "ten"] * 12), {}),
    "null-user-error": (
        lambda e: e.assign(user_id=[None, *e["user_id"][1:]]),
        {"on_invalid": "error"},
    ),
    "nan-revenue": (with_revenue(float("nan")), {}),
    "infinite-revenue": (with_revenue(float("inf")), {}),
    "negative-infinite-revenue": (with_revenue(-float("inf")), {}),
    "too-large-revenue": (lambda e: e.assign(revenue=[1.0, -1e12] * 12), {}),
    "all-null-event": (all_null_events, {}),
    "null-event-error": (
        lambda e: e.assign(event=[*e["event"][:5], None, *e["event"][6:]]),
        {"on_invalid": "error"},
    ),
    "absent-mapped-column": (
        lambda e: e,
        {"columns": ColumnMap(revenue="amount", explicit=("revenue",))},
    ),
    # Named otherwise than its role in ColumnMap(...), not in params.yaml: meant all the same.
    "absent-named-column": (lambda e: e, {"columns": ColumnMap(session_id="sid")}),
    "all-after-as-of": (lambda e: e, {"as_of": "2020-01-01"}),
    "too-few-users": (lambda e: e, {"min_users": 50}),
    "bad-on-invalid": (lambda e: e, {"on_invalid": "ignore"}),
}


# The rule each case must trip (on both engines), so that parity never means the same
# unrelated error twice.
BAD_INPUT_RULES = {
    "missing-column": "missing required column(s) event",
    "renamed-column": "missing required column(s) user_id",
    "bad-timestamp": "cannot be parsed as a timestamp",
    "bad-revenue": "12 value(s) are not numeric",
    "null-user-error": "column 'user_id': 1 null value(s)",
    "nan-revenue": "1 value(s) are NaN, infinite or not below 1e+12",
    "infinite-revenue": "1 value(s) are NaN, infinite or not below 1e+12",
    "negative-infinite-revenue": "1 value(s) are NaN, infinite or not below 1e+12",
    "too-large-revenue": "12 value(s) are NaN, infinite or not below 1e+12",
    "all-null-event": "column 'event' (event): all 24 value(s) are null",
    "null-event-error": "column 'event': 1 null value(s) (on_invalid=error)",
    "absent-mapped-column": "revenue ('amount') mapped in data.columns are absent",
    "absent-named-column": "session_id ('sid') mapped in data.columns are absent",
    "all-after-as-of": "0 null events, 24 at or after as_of",
    "too-few-users": "at least 50 are needed",
    "bad-on-invalid": "on_invalid: expected",
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gets_the_same_error(spark, name, tmp_path):
    change, options = BAD_INPUTS[name]
    events = change(edge_case_log().iloc[:24].copy())
    if isinstance(events, pa.Table):  # both engines read the same Parquet file
        path = tmp_path / "events.parquet"
        pq.write_table(events, path)
        local_source, spark_source = path, str(path)
    else:
        local_source, spark_source = events, to_spark(spark, events)
    local_type, local_message = _error(lambda: load_events(local_source, **options))
    spark_type, spark_message = _error(
        lambda: load_events_spark(spark_source, spark=spark, **options)
    )
    assert BAD_INPUT_RULES[name] in local_message
    assert spark_type is local_type
    # Spark has no row order: samples name values, not row numbers.
    assert spark_message.split(" e.g. ")[0] == local_message.split(" e.g. ")[0]


def test_paths_that_match_nothing_are_named(spark, tmp_path):
    with pytest.raises(DataValidationError, match="no file matches"):
        load_events_spark(str(tmp_path / "*.parquet"), spark=spark)


def test_later_events_never_change_features(spark):
    events = edge_case_log()
    later = pd.DataFrame(
        {
            "user_id": ["a", "b", "z"],
            "timestamp": pd.to_datetime(["2024-01-31", "2024-02-02", "2024-03-01"]),
            "event": ["purchase"] * 3,
            "revenue": [99.0] * 3,
            "session_id": ["s3", "s4", "s5"],
        }
    )
    before = build_features_spark(to_spark(spark, events), AS_OF).toPandas()
    after = build_features_spark(to_spark(spark, pd.concat([events, later])), AS_OF).toPandas()
    pd.testing.assert_frame_equal(
        before.sort_values("user_id").reset_index(drop=True),
        after.sort_values("user_id").reset_index(drop=True),
    )


def test_importing_segmentkit_does_not_import_pyspark():
    code = "import sys, segmentkit, segmentkit.cli; print('pyspark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_as_of_after_the_load_cut_off_is_refused(spark):
    log = load_events_spark(to_spark(spark, edge_case_log()), as_of="2024-01-10")
    with pytest.raises(DataValidationError, match="events in between are missing"):
        build_features_spark(log, dt.datetime(2024, 1, 31))


def test_a_catalogue_feature_without_an_implementation_is_refused(spark, monkeypatch):
    """Both engines compute exactly the catalogue: a declared feature neither computes fails."""
    from segmentkit.features import definitions, duckdb_engine, spark_engine

    original = definitions.describe_features

    def with_extra(config=None):
        return [*original(config), definitions.FeatureSpec("weekend_share", "new", False)]

    for module in (definitions, duckdb_engine, spark_engine):
        if hasattr(module, "describe_features"):
            monkeypatch.setattr(module, "describe_features", with_extra)
    monkeypatch.setattr(
        definitions, "feature_names", lambda c=None: [s.name for s in with_extra(c)]
    )
    monkeypatch.setattr(duckdb_engine, "feature_names", definitions.feature_names)
    # The Spark engine runs the DuckDB engine on the executors: their table must have
    # the catalogue's columns (here the executors' Python workers keep the original).
    with pytest.raises(Exception, match="NotImplementedError.*weekend_share"):
        build_features_spark(to_spark(spark, edge_case_log()), AS_OF).collect()
    with pytest.raises(KeyError, match="weekend_share"):
        duckdb_engine.build_features(edge_case_log(), AS_OF)
