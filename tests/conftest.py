"""Shared fixtures: small hand-made logs whose features can be checked by eye."""

from __future__ import annotations

import os
import sys

import pandas as pd
import pytest

AS_OF = pd.Timestamp("2024-01-31")


@pytest.fixture
def tiny_log() -> pd.DataFrame:
    """Two users; user a has three sessions, a purchase, a refund; b has one old view."""
    rows = [
        ("a", "2024-01-01 10:00", "view", 0.0, "s1"),
        ("a", "2024-01-01 10:10", "purchase", 50.0, "s1"),
        ("a", "2024-01-20 09:00", "view", 0.0, "s2"),
        ("a", "2024-01-30 23:00", "add_to_cart", 0.0, "s3"),
        ("a", "2024-01-30 23:20", "purchase", 30.0, "s3"),
        ("a", "2024-01-30 23:50", "refund", -10.0, "s3"),
        ("b", "2023-12-01 12:00", "view", 0.0, "s4"),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "timestamp", "event", "revenue", "session_id"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame


@pytest.fixture
def late_events() -> pd.DataFrame:
    """Events at or after AS_OF, for existing users and a new one."""
    rows = [
        ("a", "2024-01-31 00:00", "purchase", 999.0, "s3"),
        ("b", "2024-02-03 08:00", "view", 0.0, "s9"),
        ("c", "2024-02-05 08:00", "purchase", 5.0, "s10"),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "timestamp", "event", "revenue", "session_id"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame


def _two_behaviours(n_per_group: int = 40) -> pd.DataFrame:
    """Daily buyers active every day vs. users seen once two months ago (planted groups)."""
    rows = []
    start = pd.Timestamp("2024-03-01")
    for i in range(n_per_group):
        for day in range(30):
            ts = start + pd.Timedelta(days=day, hours=10, minutes=i % 50)
            rows.append((f"busy{i}", ts, "view", 0.0))
            rows.append((f"busy{i}", ts + pd.Timedelta(minutes=5), "purchase", 20.0 + i % 7))
        rows.append((f"quiet{i}", start - pd.Timedelta(days=60 - i % 5), "view", 0.0))
    return pd.DataFrame(rows, columns=["user_id", "timestamp", "event", "revenue"])


def _rees_columns():
    from segmentkit.config import ColumnMap

    return ColumnMap(
        user_id="user_id",
        timestamp="event_time",
        event="event_type",
        revenue="price",
        session_id="user_session",
        explicit=("revenue", "session_id"),
    )


def _rees_rows() -> pd.DataFrame:
    """Two users browsing a multi-category store, as REES46 exports them (a price on every row).

    User 1 views two products (one twice at the same second, exported twice), carts
    one and buys it; user 2 views, carts and removes a phone, then views and buys a
    case. Money spent: user 1 289.52, user 2 12.00.
    """
    return pd.DataFrame(
        {
            "event_time": [
                "2019-10-01 10:00:00 UTC",
                "2019-10-01 10:00:00 UTC",
                "2019-10-01 10:01:00 UTC",
                "2019-10-01 10:02:00 UTC",
                "2019-10-01 10:05:00 UTC",
                "2019-10-02 18:00:00 UTC",
                "2019-10-02 18:01:00 UTC",
                "2019-10-02 18:03:00 UTC",
                "2019-10-02 18:04:00 UTC",
                "2019-10-02 18:05:00 UTC",
            ],
            "event_type": [
                *("view", "view", "view", "cart", "purchase"),
                *("view", "cart", "remove_from_cart", "view", "purchase"),
            ],
            "product_id": [1004, 1004, 2001, 2001, 2001, 3001, 3001, 3001, 3002, 3002],
            "price": [489.07, 489.07, 289.52, 289.52, 289.52, 699.0, 699.0, 699.0, 12.0, 12.0],
            "user_id": [541312140] * 5 + [554748717] * 5,
            "user_session": ["s1"] * 5 + ["s2"] * 5,
        }
    )


@pytest.fixture
def priced_views() -> pd.DataFrame:
    """A log with a price on every event (see ``_rees_rows``)."""
    return _rees_rows()


@pytest.fixture
def priced_view_columns():
    """Its mapping, without ``revenue_events``."""
    return _rees_columns()


@pytest.fixture
def nine_days() -> pd.DataFrame:
    """10 users, one view every hour for nine days: 2,160 rows."""
    hours = pd.date_range("2024-12-23", periods=9 * 24, freq="h")
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(10) for _ in hours],
            "timestamp": list(hours) * 10,
            "event": "view",
        }
    )


@pytest.fixture
def taobao_csv(tmp_path):
    """Taobao's ``UserBehavior.csv`` layout, with no header row: user, item, category,
    behaviour, epoch seconds; two users, five lines."""
    lines = [
        "1,2268318,2520377,pv,1511544070",
        "1,2333346,2520771,pv,1511561733",
        "1,2576651,149192,buy,1511572885",
        "2,3830808,4181361,pv,1511593493",
        "2,4365585,2520377,cart,1511596146",
    ]
    path = tmp_path / "UserBehavior.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def taobao_columns():
    """Its mapping, the column names given in ``csv_header``."""
    from segmentkit.config import ColumnMap

    return ColumnMap(
        user_id="user",
        timestamp="time",
        event="behavior",
        revenue=None,
        session_id=None,
        timestamp_format="unix_s",
        csv_header=("user", "item", "category", "behavior", "time"),
    )


def _mixpanel_records(log: pd.DataFrame) -> list[dict]:
    """``log``'s rows as Mixpanel exports them; revenue only on the events that carry it."""
    records = []
    for row in log.itertuples(index=False):
        properties = {
            "time": int(pd.Timestamp(row.timestamp).timestamp()),
            "distinct_id": str(row.user_id),
            "$session_id": str(row.session_id),
            "$os": "iOS",
        }
        if row.revenue:
            properties["revenue"] = float(row.revenue)
        records.append({"event": str(row.event), "properties": properties})
    return records


@pytest.fixture
def mixpanel_export():
    """Write a log (the contract's columns) as Mixpanel's JSON export: nested properties.

    One object per line, gzipped for a ``.gz`` name, one array for a ``.json`` name.
    """
    import gzip
    import json

    def write(log: pd.DataFrame, path):
        records = _mixpanel_records(log)
        if str(path).endswith(".json"):
            path.write_text(json.dumps(records, indent=1))
            return path
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "wt", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in records)
        return path

    return write


@pytest.fixture
def mixpanel_columns():
    """The mapping of a Mixpanel export (see ``mixpanel_export``)."""
    from segmentkit.config import ColumnMap

    return ColumnMap(
        user_id="properties.distinct_id",
        timestamp="properties.time",
        timestamp_format="unix_s",
        revenue="properties.revenue",
        session_id="properties.$session_id",
    )


@pytest.fixture
def segment_export():
    """Write a log as Segment's JSON lines: ISO times with milliseconds and ``Z``,
    ``userId``, ``properties.revenue``; plus one anonymous page call (``userId`` null)."""
    import json

    def write(log: pd.DataFrame, path):
        records = [
            {
                "type": "track",
                "event": str(row.event),
                "userId": str(row.user_id),
                "timestamp": pd.Timestamp(row.timestamp).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
                + "Z",
                "properties": {"revenue": float(row.revenue)} if row.revenue else {},
                "context": {"session": str(row.session_id)},
            }
            for row in log.itertuples(index=False)
        ]
        first = pd.Timestamp(log["timestamp"].min()).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        records.append({"type": "page", "anonymousId": "x1", "userId": None, "timestamp": first})
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
        return path

    return write


@pytest.fixture
def segment_columns():
    """The mapping of a Segment export (see ``segment_export``)."""
    from segmentkit.config import ColumnMap

    return ColumnMap(
        user_id="userId",
        timestamp="timestamp",
        event="event",
        revenue="properties.revenue",
        session_id="context.session",
    )


@pytest.fixture
def ga4_export():
    """Write a log as GA4's BigQuery export to JSON: INT64 values (times) as strings.

    ``event_timestamp`` in microseconds, revenue under ``ecommerce``, the session id in
    the ``event_params`` list (which a mapping cannot reach), ids as GA4's decimals.
    """
    import json

    def write(log: pd.DataFrame, path):
        lines = []
        number = {user: i for i, user in enumerate(pd.unique(log["user_id"]))}
        for row in log.itertuples(index=False):
            stamp = pd.Timestamp(row.timestamp)
            record = {
                "event_date": stamp.strftime("%Y%m%d"),
                "event_timestamp": str(stamp.value // 1000),
                "event_name": str(row.event),
                "event_params": [{"key": "ga_session_id", "value": {"int_value": "17"}}],
                "user_pseudo_id": f"{1026454 + number[row.user_id]}.4271112065",
                "ecommerce": {"purchase_revenue": float(row.revenue) if row.revenue else None},
            }
            lines.append(json.dumps(record) + "\n")
        path.write_text("".join(lines))
        return path

    return write


@pytest.fixture
def ga4_columns():
    """The mapping of a GA4 export (see ``ga4_export``)."""
    from segmentkit.config import ColumnMap

    return ColumnMap(
        user_id="user_pseudo_id",
        timestamp="event_timestamp",
        timestamp_format="unix_us",
        event="event_name",
        revenue="ecommerce.purchase_revenue",
        session_id=None,
    )


@pytest.fixture
def cdnow_txt(tmp_path):
    """CDNOW's ``CDNOW_master.txt`` layout: columns aligned by spaces, no header, CRLF;
    customer, date, CDs, dollars; three customers, six lines."""
    lines = [
        " 00001 19970101  1   11.77",
        " 00002 19970112  1   12.00",
        " 00002 19970112  5   77.00",
        " 00003 19970102  2   20.76",
        " 00003 19970330  2   20.76",
        " 00003 19970402  2   19.54",
    ]
    path = tmp_path / "CDNOW_master.txt"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


@pytest.fixture
def cdnow_columns():
    """Its mapping, the column names given in ``csv_header``."""
    from segmentkit.config import ColumnMap

    return ColumnMap(
        user_id="customer",
        timestamp="date",
        timestamp_format="%Y%m%d",
        event=None,
        revenue="dollars",
        session_id=None,
        csv_header=("customer", "date", "cds", "dollars"),
    )


@pytest.fixture
def properties_map_parquet(tmp_path):
    """An event table as a Spark job writes it: ``properties`` a map of text; user a's
    first view is in it twice (an exact duplicate, map included), b's purchase pays 12.5."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stamps = ["2024-01-01 10:00", "2024-01-01 10:00", "2024-01-01 11:00", "2024-01-01 12:00"]
    table = pa.table(
        {
            "user_id": ["a", "a", "b", "a"],
            "timestamp": pa.array(pd.to_datetime(stamps), pa.timestamp("us")),
            "event": ["view", "view", "purchase", "view"],
            "properties": pa.array(
                [[("page", "/")], [("page", "/")], [("revenue", "12.5")], [("page", "/x")]],
                pa.map_(pa.string(), pa.string()),
            ),
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    return path


@pytest.fixture
def posthog_csv(tmp_path):
    """PostHog's CSV export: ``properties`` a JSON object in text; u1 pays 12.5."""
    lines = [
        "uuid,event,properties,timestamp,distinct_id",
        '1,$pageview,"{""$session_id"": ""s1"", ""$current_url"": ""/""}",2024-01-01 10:00:00,u1',
        '2,purchase,"{""$session_id"": ""s1"", ""revenue"": 12.5}",2024-01-01 10:05:00,u1',
        '3,$pageview,"{""$session_id"": ""s2""}",2024-01-02 10:00:00,u2',
    ]
    path = tmp_path / "posthog.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def two_behaviours() -> pd.DataFrame:
    """80 users in two planted groups (see ``_two_behaviours``)."""
    return _two_behaviours()


@pytest.fixture(scope="module")
def two_behaviours_log() -> pd.DataFrame:
    """The same log, shared by the tests of one module (do not modify it)."""
    return _two_behaviours()


@pytest.fixture
def watch_feature_builds():
    """Return ``watch(patcher)``: record each one-pass build of snapshot features.

    With ``patcher`` (``monkeypatch`` or one of its contexts) applied, every call of
    ``build_features_many`` made through :mod:`segmentkit.models.labels` is recorded
    (its sorted times) and any single-snapshot ``build_features`` fails the test.
    """

    def watch(patcher) -> list[list]:
        import segmentkit.features as features_module
        import segmentkit.models.labels as labels_module

        calls: list[list] = []
        many = labels_module.build_features_many

        def spy_many(log, times, config=None):
            calls.append(sorted(times))
            return many(log, times, config)

        def no_single(*args, **kwargs):
            raise AssertionError("a snapshot was built outside the one pass")

        patcher.setattr(labels_module, "build_features_many", spy_many)
        patcher.setattr(labels_module, "build_features", no_single)
        patcher.setattr(features_module, "build_features", no_single)
        return calls

    return watch


# Tests that train full models, start servers or execute notebooks: seconds to minutes
# each. `python -m pytest -m "not slow"` leaves them out for a fast inner loop; the README
# command runs everything. Whole modules here; single slow tests carry @pytest.mark.slow.
SLOW_MODULES = (
    "tests/test_training_cli.py",
    "tests/test_refresh.py",
    "tests/test_notebooks.py",
    # Spark: each test runs several Spark jobs (seconds each on a local session).
    "tests/features/test_spark_features.py",
    "tests/spark/test_spark_scoring.py",
    "tests/spark/test_spark_cli.py",
)
SLOW_TESTS = (
    "tests/test_tracking.py::test_train_and_score_against_a_real_mlflow_server",
    "tests/test_tracking.py::test_default_tracking_is_embedded_sqlite_in_the_working_directory",
    "tests/test_cli.py::test_bad_input_from_a_real_process_has_no_traceback",
    "tests/models/test_hgb_runtime.py::test_kernels_compile_without_a_writable_cache",
    "tests/models/test_hgb_runtime.py::test_deep_trees_fall_back_to_scikit_learn",
    "tests/models/test_propensity.py::test_events_after_as_of_change_nothing",
    "tests/models/test_propensity.py::test_transaction_log",
    "tests/io/test_synth.py::test_same_seed_same_log_other_seed_other_log",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        module, _, name = item.nodeid.partition("::")
        if module in SLOW_MODULES or f"{module}::{name.split('[')[0]}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        if "spark" in item.fspath.basename:
            # pyspark warns about pandas 3 and passes pandas a deprecated argument;
            # neither changes results (the Spark parity tests check every value).
            item.add_marker(pytest.mark.filterwarnings("ignore::FutureWarning"))
            item.add_marker(pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"))
            item.add_marker(pytest.mark.filterwarnings("ignore:Series.values returning"))


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for the whole test session (it takes seconds to start)."""
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("segmentkit-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def clean_spark(spark):
    """The session with nothing cached: earlier tests' frames and local checkpoints freed.

    A log read by ``build_features_spark(path)`` keeps its local checkpoint until the
    JVM collects the frame, so what a test finds cached may be another test's.
    """
    spark.catalog.clearCache()
    rdds = spark.sparkContext._jsc.getPersistentRDDs()
    for key in list(rdds.keySet().toArray()):
        rdds.get(key).unpersist(True)
    assert spark.sparkContext._jsc.getPersistentRDDs().size() == 0
    return spark


def _segments_model(events, end, features):
    """A segments-only model of ``events`` as of ``end`` (see :func:`segments_model`)."""
    from segmentkit.bundle.metadata import BundleMetadata
    from segmentkit.bundle.model import SegmentationModel
    from segmentkit.drift.reference import build_feature_reference
    from segmentkit.features import build_features, feature_names
    from segmentkit.io.events import describe_input, load_events
    from segmentkit.models.segmentation import Segmenter

    log = load_events(events)
    table = build_features(log, end, features)
    names = feature_names(features)
    return SegmentationModel(
        segmenter=Segmenter(k=3, n_bootstrap=2, random_state=0).fit(table[names]),
        propensity={},
        feature_config=features,
        metadata=BundleMetadata(
            as_of=end.isoformat(),
            input_schema=describe_input(log, features.key_events),
            feature_reference=build_feature_reference(table[["user_id", *names]]),
            data_quality={"first_event": log.first_event},
        ),
    )


@pytest.fixture(scope="session")
def segments_model():
    """Build a segments-only model of a log as of ``end``, with what scoring checks.

    Called as ``segments_model(events, end, features)``: three segments, no propensity,
    and the metadata training records (input schema, feature reference, first event).
    """
    return _segments_model
