"""The Spark event log: partitions sized by rows, clean rows, release."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark", reason="the Spark extra is not installed")

from segmentkit.features import build_features
from segmentkit.features.spark_engine import build_features_spark
from segmentkit.io import spark as io_spark
from segmentkit.io.events import load_events
from segmentkit.io.synth import generate_events

# Each test runs several Spark jobs (seconds each on a local session).
pytestmark = pytest.mark.slow

AS_OF = "2024-12-01"


@pytest.fixture(scope="module")
def events_with_copies() -> pd.DataFrame:
    """A small demo log in which some rows appear two or three times."""
    events = generate_events(120, 60, seed=5).events
    for column in events.columns:
        if isinstance(events[column].dtype, pd.CategoricalDtype):
            events[column] = events[column].astype(str)
    return pd.concat([events, events.iloc[::7], events.iloc[::11]], ignore_index=True)


def test_a_larger_log_gets_more_partitions_and_the_same_features(
    spark, events_with_copies, monkeypatch
):
    rows = len(events_with_copies)
    monkeypatch.setattr(io_spark, "ROWS_PER_PARTITION", rows // 5)
    log = io_spark.load_events_spark(spark.createDataFrame(events_with_copies), as_of=AS_OF)
    try:
        # ceil(rows / (rows // 5)) partitions: more than the session's 2.
        assert log.packed.rdd.getNumPartitions() == -(-rows // (rows // 5)) > 2
        local = load_events(events_with_copies, as_of=AS_OF)
        assert log.report == local.report
        theirs = build_features_spark(log, AS_OF).toPandas()
        theirs = theirs.sort_values("user_id", kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(theirs, build_features(local, AS_OF))
    finally:
        log.release()


def test_frame_holds_the_clean_events_and_release_frees_them(clean_spark, events_with_copies):
    spark = clean_spark
    log = io_spark.load_events_spark(spark.createDataFrame(events_with_copies), as_of=AS_OF)
    assert spark.sparkContext._jsc.getPersistentRDDs().size() == 1  # the packed log
    assert log.report.duplicate_rows > 0
    rows = log.frame.toPandas()
    clean = load_events(events_with_copies, as_of=AS_OF).to_pandas()
    assert list(rows.columns) == ["user_id", "ts_us", "event", "revenue", "session_id"]
    order = ["user_id", "ts_us", "event", "revenue", "session_id"]
    rows = rows.sort_values(order, kind="stable").reset_index(drop=True)
    clean["ts_us"] = clean["timestamp"].astype("datetime64[us]").astype("int64")
    clean = clean[order].sort_values(order, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(rows, clean, check_dtype=False)
    log.release()
    assert spark.sparkContext._jsc.getPersistentRDDs().size() == 0


def test_a_log_loaded_with_derive_keeps_the_features_and_refuses_event_reads(
    spark, events_with_copies
):
    from segmentkit.features.spark_engine import features_of_partitions
    from segmentkit.io.events import to_timestamp

    source = spark.createDataFrame(events_with_copies)
    cutoff = to_timestamp(AS_OF)
    log = io_spark.load_events_spark(
        source, as_of=AS_OF, derive=features_of_partitions(cutoff, None)
    )
    try:
        local = load_events(events_with_copies, as_of=AS_OF)
        # The same report as a log that keeps its events, and the local features.
        assert log.report == local.report
        theirs = io_spark.derived_frame(log).toPandas()
        theirs = theirs.sort_values("user_id", kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(theirs, build_features(local, AS_OF))
        with pytest.raises(TypeError, match="keeps the derived tables"):
            log.frame  # noqa: B018 - the property raises
        with pytest.raises(TypeError, match="not its events"):
            build_features_spark(log, AS_OF)
    finally:
        log.release()
    events_log = io_spark.load_events_spark(source, as_of=AS_OF)
    try:
        with pytest.raises(TypeError, match="keeps its events"):
            io_spark.derived_frame(events_log)
    finally:
        events_log.release()


def test_naive_parquet_times_are_utc_whatever_the_session_time_zone(
    spark, events_with_copies, tmp_path
):
    """Read as instants at their stored microseconds: no zone conversion, no DST gap."""
    events = events_with_copies.copy()
    # Times in New York's spring-forward gap and autumn repeat, and before 1970 (on 10 rows,
    # 0.14% of the log: more than strays a year of silence sets apart, which are dropped).
    events.loc[:11, "timestamp"] = pd.to_datetime(
        ["2024-03-10 02:30:00.123456", "2024-11-03 01:30:00"] + ["1969-12-31 23:59:59.999999"] * 10,
        format="ISO8601",
    )
    events["timestamp"] = events["timestamp"].astype("datetime64[us]")
    path = tmp_path / "naive.parquet"
    events.to_parquet(path)
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        log = io_spark.load_events_spark(str(path), spark=spark)
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)
    try:
        local = load_events(str(path))
        assert log.report == local.report
        assert log.report.first_event == "1969-12-31T23:59:59.999999"
        stamps = {row[0] for row in log.frame.select("ts_us").collect()}
        assert stamps == set(events["timestamp"].astype("int64").tolist())
    finally:
        log.release()


@pytest.mark.parametrize("derived", [False, True])
def test_order_lines_equal_in_the_log_columns_are_kept_as_the_local_log_keeps_them(spark, derived):
    t = pd.Timestamp("2024-11-20 10:00")
    lines = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "b", "c"],
            "timestamp": [t] * 7 + [t + pd.Timedelta(hours=1)],
            "event": ["purchase"] * 8,
            "revenue": [2.95] * 8,
            # a: two products at one price (kept), one line exported twice (dropped);
            # b: a null in a different column (kept apart); c: one line.
            "product": ["mug", "cup", "cup", "bowl", None, "x", "x", "mug"],
            "colour": ["red", "red", "red", "red", "x", None, None, "blue"],
        }
    )
    from segmentkit.features.spark_engine import features_of_partitions
    from segmentkit.io.events import to_timestamp

    local = load_events(lines, as_of=AS_OF)
    assert local.report.duplicate_rows == 2  # a's third "cup" line and b's second row
    derive = features_of_partitions(to_timestamp(AS_OF), None) if derived else None
    log = io_spark.load_events_spark(spark.createDataFrame(lines), as_of=AS_OF, derive=derive)
    try:
        assert log.report == local.report
        if derived:
            theirs = io_spark.derived_frame(log).toPandas()
            theirs = theirs.sort_values("user_id", kind="stable").reset_index(drop=True)
            pd.testing.assert_frame_equal(theirs, build_features(local, AS_OF))
            assert theirs["events_total"].tolist() == [3, 2, 1]
        else:
            rows = log.frame.toPandas()
            assert list(rows.columns) == ["user_id", "ts_us", "event", "revenue", "session_id"]
            assert rows.groupby("user_id").size().to_dict() == {"a": 3, "b": 2, "c": 1}
    finally:
        log.release()


_STAMPS = {
    # UCI Online Retail's text (months and hours without a leading zero).
    "%m/%d/%Y %H:%M": ["12/1/2010 8:26", "12/13/2010 17:05", "1/4/2011 9:00", "11/30/2011 23:59"],
    # CDNOW's integers.
    "%Y%m%d": [19970101, 19970218, 19980630, 19971231],
    # Offsets, converted to UTC.
    "%Y-%m-%d %H:%M:%S%z": [
        "2024-11-20 10:00:00+0100",
        "2024-11-20 10:00:00-0530",
        "2024-11-21 00:30:00+0000",
        "2024-11-22 23:00:00+0200",
    ],
    # RetailRocket's epoch milliseconds.
    "unix_ms": [1433221332117, 1433224214164, 1433221999827, 1438400163914],
}


def _stamped(timestamp_format: str, values: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "c"],
            "when": values,
            "event": ["view", "purchase", "purchase", "view"],
            "revenue": [0.0, 5.0, 7.5, 0.0],
        }
    )


@pytest.mark.parametrize("timestamp_format", list(_STAMPS), ids=["uci", "cdnow", "offset", "ms"])
def test_a_timestamp_format_reads_as_locally(spark, timestamp_format):
    from segmentkit.config import ColumnMap

    lines = _stamped(timestamp_format, _STAMPS[timestamp_format])
    columns = ColumnMap(timestamp="when", timestamp_format=timestamp_format)
    local = load_events(lines, columns)
    log = io_spark.load_events_spark(spark.createDataFrame(lines), columns)
    try:
        assert log.report == local.report
        rows = log.frame.toPandas().sort_values(["user_id", "ts_us"]).reset_index(drop=True)
        expected = local.to_pandas().sort_values(["user_id", "timestamp"])
        micros = (expected["timestamp"] - pd.Timestamp("1970-01-01")) // pd.Timedelta("1us")
        assert rows["ts_us"].tolist() == micros.tolist()
    finally:
        log.release()


def test_a_timestamp_format_reads_a_csv_as_locally(spark, tmp_path):
    # Spark reads every CSV column as text, DuckDB infers numbers: the same times either way.
    from segmentkit.config import ColumnMap

    path = tmp_path / "events.csv"
    _stamped("unix_ms", _STAMPS["unix_ms"]).to_csv(path, index=False)
    columns = ColumnMap(timestamp="when", timestamp_format="unix_ms")
    local = load_events(path, columns)
    log = io_spark.load_events_spark(str(path), columns, spark=spark)
    try:
        assert log.report == local.report
        assert log.report.first_event == "2015-06-02T05:02:12.117000"
    finally:
        log.release()


def test_a_timestamp_the_format_does_not_match_is_refused_as_locally(spark):
    from segmentkit.config import ColumnMap
    from segmentkit.errors import DataValidationError

    values = [*_STAMPS["%m/%d/%Y %H:%M"][:3], "2011-11-30 23:59"]
    lines = _stamped("%m/%d/%Y %H:%M", values)
    columns = ColumnMap(timestamp="when", timestamp_format="%m/%d/%Y %H:%M")
    message = (
        # Spark's rows have no number (no order): the value alone.
        r"column 'when' \(timestamp\): 1 value\(s\) cannot be parsed as a timestamp, e\.g\. "
        r"(row 3: )?'2011-11-30 23:59'; expected data.columns.timestamp_format '%m/%d/%Y %H:%M'"
    )
    with pytest.raises(DataValidationError, match=message):
        load_events(lines, columns)
    with pytest.raises(DataValidationError, match=message):
        io_spark.load_events_spark(spark.createDataFrame(lines), columns)


def test_a_timestamp_pattern_duckdb_cannot_read_is_refused_before_any_spark_work():
    from segmentkit.config import ColumnMap
    from segmentkit.errors import ConfigError

    columns = ColumnMap(timestamp_format="%Y %Q")
    # No session is needed (nor started): the refusal comes first, as locally.
    with pytest.raises(ConfigError, match=r"timestamp_format: '%Y %Q' cannot be read"):
        io_spark.load_events_spark("events.csv", columns)
    with pytest.raises(ConfigError, match=r"timestamp_format: '%Y %Q' cannot be read"):
        load_events(pd.DataFrame({"user_id": [1], "timestamp": ["2024"], "event": ["v"]}), columns)


def _float_id_lines(ids) -> pd.DataFrame:
    """Order lines whose customer ids pandas wrote as floats (a gap makes the column float)."""
    return pd.DataFrame(
        {
            "CustomerID": ids,
            "timestamp": pd.to_datetime(
                ["2024-11-20 10:00", "2024-11-21 10:00", "2024-11-22 00:00"]
            ),
            "event": ["purchase"] * 3,
            "revenue": [2.0, 3.0, 4.0],
        }
    )


def test_whole_float_ids_are_integers_as_locally(spark):
    from segmentkit.config import ColumnMap

    lines = _float_id_lines([12346.0, 12347.0, np.nan])
    columns = ColumnMap(user_id="CustomerID")
    local = load_events(lines, columns, as_of=AS_OF, on_invalid="drop")
    log = io_spark.load_events_spark(spark.createDataFrame(lines), columns, as_of=AS_OF)
    try:
        assert log.report == local.report
        rows = log.frame.toPandas().sort_values("user_id")
        assert rows["user_id"].tolist() == [12346, 12347]
        assert str(rows["user_id"].dtype) == "int64"
    finally:
        log.release()


@pytest.mark.parametrize("bad", [12346.5, np.inf, 1e30], ids=["fraction", "infinite", "beyond"])
def test_float_ids_that_are_not_whole_numbers_are_refused_as_locally(spark, bad):
    from segmentkit.config import ColumnMap
    from segmentkit.errors import DataValidationError

    lines = _float_id_lines([bad, 12347.0, 12348.0])
    message = (
        r"column 'CustomerID' \(user_id\): expected strings or integers, but 1 numeric "
        r"value\(s\) are not whole numbers within 64 bits, e\.g\. "
    )
    columns = ColumnMap(user_id="CustomerID")
    with pytest.raises(DataValidationError, match=message):
        load_events(lines, columns, as_of=AS_OF)
    with pytest.raises(DataValidationError, match=message):
        io_spark.load_events_spark(spark.createDataFrame(lines), columns, as_of=AS_OF)


def _priced_lines(quantities) -> pd.DataFrame:
    t = pd.Timestamp("2024-11-20 10:00")
    return pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b"],
            "timestamp": [t] * 4 + [t + pd.Timedelta(hours=1)],
            "event": ["purchase"] * 5,
            "price": [2.0, 3.0, 5.0, 5.0, 2.55],
            "qty": quantities,
        }
    )


def test_unit_price_times_quantity_is_read_as_locally(spark):
    from segmentkit.config import ColumnMap

    # 3 x 2.0 and 2 x 3.0 are two lines; 0 x 5.0 twice is one line exported twice.
    lines = _priced_lines([3, 2, 0, 0, -6])
    columns = ColumnMap(revenue="price", quantity="qty")
    theirs, report = _features_alike(spark, lines, columns, AS_OF)
    assert (report.duplicate_rows, report.negative_revenue_rows) == (1, 1)
    assert theirs["revenue_total"].tolist() == pytest.approx([12.0, -15.3])


@pytest.mark.parametrize(
    ("quantities", "message"),
    [
        (
            ["3", "2", "0", "zero", "-6"],
            r"column 'qty' \(quantity\): 1 value\(s\) are not numeric, e\.g\. ",
        ),
        (
            [pd.Timestamp("2024-11-01")] * 5,
            r"column 'qty' \(quantity\): expected numbers, got type (TIMESTAMP|TIMESTAMP_NTZ)",
        ),
    ],
    ids=["text", "dates"],
)
def test_a_quantity_that_is_not_a_number_is_refused_as_locally(spark, quantities, message):
    from segmentkit.config import ColumnMap
    from segmentkit.errors import DataValidationError

    lines = _priced_lines(quantities)
    columns = ColumnMap(revenue="price", quantity="qty")
    with pytest.raises(DataValidationError, match=message):
        load_events(lines, columns, as_of=AS_OF)
    with pytest.raises(DataValidationError, match=message):
        io_spark.load_events_spark(spark.createDataFrame(lines), columns, as_of=AS_OF)


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        # UCI Online Retail: pandas wrote integer ids with gaps as floats.
        (["12346.0", "12347.0", "", "12348.0"], [12346, 12347, 12348]),
        # CDNOW: ids with leading zeros stay text, as DuckDB reads them.
        (["00001", "00002", "00010", "00001"], ["00001", "00002", "00010"]),
    ],
    ids=["float-ids", "leading-zeros"],
)
def test_csv_columns_of_numbers_are_typed_as_locally(spark, tmp_path, ids, expected):
    path = tmp_path / "orders.csv"
    lines = ["user_id,timestamp,event,revenue"] + [
        f"{user},2024-11-{20 + i} 10:00,purchase,{2.5 * (i + 1)}" for i, user in enumerate(ids)
    ]
    path.write_text("\n".join(lines) + "\n")
    local = load_events(path)
    log = io_spark.load_events_spark(str(path), spark=spark)
    try:
        assert log.report == local.report
        rows = log.frame.toPandas()
        assert sorted(set(rows["user_id"])) == expected == sorted(set(local.to_pandas()["user_id"]))
        assert rows["revenue"].sum() == local.to_pandas()["revenue"].sum()
    finally:
        log.release()


def test_a_csv_of_numeric_dates_without_a_format_is_refused_as_locally(spark, tmp_path):
    from segmentkit.errors import DataValidationError

    path = tmp_path / "cdnow.csv"
    path.write_text("user_id,timestamp,event\n00001,19970101,purchase\n00002,19970218,purchase\n")
    with pytest.raises(DataValidationError) as local:
        load_events(path)
    with pytest.raises(DataValidationError) as on_spark:
        io_spark.load_events_spark(str(path), spark=spark)
    assert str(on_spark.value) == str(local.value)
    assert "set data.columns.timestamp_format, e.g. '%Y%m%d'" in str(local.value)


def test_a_price_on_every_event_is_refused_as_locally(spark, priced_views, priced_view_columns):
    _refused_alike(spark, priced_views, priced_view_columns, AS_OF)


@pytest.mark.parametrize("chosen", [("purchase",), ("Purchase",)], ids=["kept", "respelled"])
def test_revenue_events_read_as_locally(spark, chosen, priced_views, priced_view_columns):
    import dataclasses

    columns = dataclasses.replace(priced_view_columns, revenue_events=chosen)
    if chosen == ("Purchase",):
        _refused_alike(spark, priced_views, columns, "2019-11-01")
        return
    theirs, _ = _features_alike(spark, priced_views, columns, "2019-11-01")
    assert theirs["revenue_total"].tolist() == pytest.approx([289.52, 12.0])


def _refused_alike(spark, frame: pd.DataFrame, columns, as_of: str) -> None:
    """Both engines refuse ``frame`` read with ``columns``, with one message."""
    from segmentkit.errors import DataValidationError

    with pytest.raises(DataValidationError) as local:
        load_events(frame, columns, as_of=as_of)
    with pytest.raises(DataValidationError) as theirs:
        io_spark.load_events_spark(spark.createDataFrame(frame), columns, as_of=as_of)
    assert str(theirs.value) == str(local.value)


def _file_refused_alike(spark, path, columns=None) -> str:
    """Both engines refuse the file at ``path`` with one message: return it.

    The same message but for the examples' row numbers, which Spark has no order for.
    """
    import re

    from segmentkit.errors import DataValidationError

    with pytest.raises(DataValidationError) as local:
        load_events(str(path), columns)
    with pytest.raises(DataValidationError) as theirs:
        io_spark.load_events_spark(str(path), columns, spark=spark)
    assert str(theirs.value) == re.sub(r"row \d+: ", "", str(local.value))
    return str(local.value)


def _file_read_alike(spark, source, columns=None):
    """Both engines read the file(s) at ``source`` into one report and columns.

    Returns the local log and Spark's clean rows (a pandas frame).
    """
    local = load_events(source, columns)
    log = io_spark.load_events_spark(str(source), columns, spark=spark)
    try:
        assert log.report == local.report
        assert log.source_columns == local.source_columns
        return local, log.frame.toPandas()
    finally:
        log.release()


def _features_alike(spark, frame: pd.DataFrame, columns, as_of: str):
    """Spark's report and features of ``frame`` equal the local ones: return them."""
    from segmentkit.features.spark_engine import features_of_partitions
    from segmentkit.io.events import to_timestamp

    local = load_events(frame, columns, as_of=as_of)
    derive = features_of_partitions(to_timestamp(as_of), None)
    log = io_spark.load_events_spark(
        spark.createDataFrame(frame), columns, as_of=as_of, derive=derive
    )
    try:
        assert log.report == local.report
        theirs = io_spark.derived_frame(log).toPandas()
        theirs = theirs.sort_values("user_id", kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(theirs, build_features(local, as_of))
        return theirs, log.report
    finally:
        log.release()


def _events_as_files(root, frame: pd.DataFrame, layout: str):
    """Write ``frame`` as a Spark output directory, partition directories or a gzip CSV."""
    root.mkdir()
    if layout == "csv.gz":
        frame.to_csv(root / "events.csv.gz", index=False)
        return root / "events.csv.gz"
    if layout == "partitions":
        for day, rows in frame.groupby(frame["timestamp"].dt.strftime("%Y-%m")):
            (root / f"month={day}").mkdir()
            rows.to_parquet(root / f"month={day}" / "data.parquet")
        return root
    half = len(frame) // 2
    frame.iloc[:half].to_parquet(root / "part-00000.parquet")
    frame.iloc[half:].to_parquet(root / "part-00001.parquet")
    (root / "_SUCCESS").write_bytes(b"")
    (root / "_temporary").mkdir()
    (root / "_temporary" / "part-00002.parquet").write_bytes(b"half-written")
    return root


@pytest.mark.parametrize("layout", ["spark-output", "partitions", "csv.gz"])
def test_directories_and_gzip_csv_are_read_as_locally(spark, tmp_path, layout):
    events = generate_events(60, 60, seed=2).events
    events["user_id"] = events["user_id"].astype(str)
    events["event"] = events["event"].astype(str)
    source = _events_as_files(tmp_path / "events", events, layout)
    local = load_events(source, as_of=AS_OF)
    log = io_spark.load_events_spark(str(source), as_of=AS_OF, spark=spark)
    try:
        assert log.report == local.report
        assert log.source_columns == local.source_columns
        assert (layout == "partitions") == ("month" in local.source_columns)
    finally:
        log.release()


@pytest.mark.parametrize(
    ("export", "name"),
    [
        ("mixpanel", "events.jsonl"),
        ("mixpanel", "events.json"),
        ("mixpanel", "events.ndjson.gz"),
        ("ga4", "events.jsonl"),
        ("segment", "events.jsonl"),
        ("ga4", "events.parquet"),  # its nested structs, as BigQuery exports them to Parquet
    ],
)
def test_json_exports_are_read_as_locally(spark, tmp_path, request, export, name):
    import pyarrow.json
    import pyarrow.parquet as pq

    from segmentkit.features.spark_engine import features_of_partitions
    from segmentkit.io.events import to_timestamp

    events = generate_events(60, 60, seed=2).events
    write = request.getfixturevalue(f"{export}_export")
    columns = request.getfixturevalue(f"{export}_columns")
    source = str(write(events, tmp_path / name.replace(".parquet", ".jsonl")))
    if name.endswith(".parquet"):
        pq.write_table(pyarrow.json.read_json(source), tmp_path / name)
        source = str(tmp_path / name)
    local = load_events(source, columns, as_of=AS_OF)
    derive = features_of_partitions(to_timestamp(AS_OF), None)
    log = io_spark.load_events_spark(source, columns, as_of=AS_OF, spark=spark, derive=derive)
    try:
        assert log.report == local.report
        assert local.report.rows_read - local.report.null_user_id == len(events)
        assert log.source_columns == local.source_columns
        theirs = io_spark.derived_frame(log).toPandas()
        theirs = theirs.sort_values("user_id", kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(theirs, build_features(local, AS_OF))
    finally:
        log.release()


def test_a_json_line_that_is_not_json_is_refused_as_locally(spark, tmp_path):

    path = tmp_path / "cut.jsonl"
    path.write_text(
        '{"user_id": "a", "timestamp": "2024-01-01 10:00:00", "event": "view"}\n'
        '{"user_id": "b", "timestamp": "2024-01-01 11:00:00", "event": \n'
    )
    assert "line 2 is not JSON" in _file_refused_alike(spark, path)


def test_a_latin1_json_file_is_refused_as_locally(spark, tmp_path):
    path = tmp_path / "export.jsonl"
    line = '{"user_id": "a", "timestamp": "2024-01-01 10:00:00", "event": "achat café"}\n'
    path.write_bytes(line.encode("latin-1"))
    # Spark would read the byte as U+FFFD without a word.
    assert "is not UTF-8" in _file_refused_alike(spark, path)


def test_pretty_printed_json_objects_are_read_locally_and_refused_by_spark(spark, tmp_path):
    from segmentkit.errors import DataValidationError

    path = tmp_path / "pretty.json"
    records = [{"user_id": u, "timestamp": "2024-01-01 10:00:00", "event": "view"} for u in "ab"]
    path.write_text("".join(json.dumps(record, indent=2) + "\n" for record in records))
    assert load_events(str(path)).report.rows_clean == 2
    with pytest.raises(DataValidationError) as err:
        io_spark.load_events_spark(str(path), spark=spark)
    assert str(err.value).startswith(f"events: {path}, line 1 is not JSON ('{{'): expected one")


def test_a_remote_json_record_that_is_not_json_is_named_by_spark(spark, tmp_path):
    from segmentkit.errors import DataValidationError

    path = tmp_path / "cut.jsonl"
    path.write_text('{"user_id": "a", "timestamp": "2024-01-01 10:00:00"}\n<html>\n')
    # A URI, as of object storage: the driver does not open it, Spark finds the line.
    uri = f"file://{path}"
    with pytest.raises(DataValidationError) as err:
        io_spark._refuse_corrupt_json(spark.read, [uri])
    assert str(err.value) == (
        f"events ['{uri}']: a record is not JSON ('<html>'): expected one JSON object per line "
        "(JSON lines), or one JSON array of objects per file"
    )


def test_an_export_wrapping_its_events_in_one_object_is_refused_as_locally(spark, tmp_path):

    path = tmp_path / "export.jsonl"
    record = {"user_id": "a", "timestamp": "2024-01-01 10:00:00", "event": "view"}
    path.write_text(json.dumps({"exported": "2024-02-01", "events": [record, record]}) + "\n")
    assert "jq -c '.events[]'" in _file_refused_alike(spark, path)


def test_json_arrays_and_json_lines_mixed_are_refused(spark, tmp_path, tiny_log, mixpanel_export):
    from segmentkit.errors import DataValidationError

    (tmp_path / "events").mkdir()
    mixpanel_export(tiny_log, tmp_path / "events" / "a.json")
    mixpanel_export(tiny_log, tmp_path / "events" / "b.jsonl")
    with pytest.raises(DataValidationError, match="JSON arrays and JSON lines mixed"):
        io_spark.read_events_spark(spark, str(tmp_path / "events"))


def test_a_row_dated_after_today_is_refused_as_locally(spark, tiny_log):
    from segmentkit.errors import DataValidationError

    ahead = pd.Timestamp.now("UTC").tz_localize(None).normalize() + pd.Timedelta(days=400)
    raw = tiny_log.assign(timestamp=tiny_log["timestamp"].where(tiny_log.index < 6, ahead))
    with pytest.raises(DataValidationError) as local:
        load_events(raw)
    with pytest.raises(DataValidationError) as theirs:
        io_spark.load_events_spark(spark.createDataFrame(raw))
    # The same message but for the example, which Spark gives without a row number.
    assert str(theirs.value) == str(local.value).replace("row 6: ", "")


@pytest.mark.parametrize("stamp", ["19970101", "1433221332117"], ids=["cdnow-date", "epoch-ms"])
def test_dates_written_as_digits_in_text_are_refused_as_locally(spark, stamp):
    from segmentkit.errors import DataValidationError

    raw = pd.DataFrame({"user_id": ["a", "b"], "timestamp": [stamp] * 2, "event": ["view"] * 2})
    with pytest.raises(DataValidationError) as local:
        load_events(raw)
    with pytest.raises(DataValidationError) as theirs:
        io_spark.load_events_spark(spark.createDataFrame(raw))
    assert str(theirs.value) == str(local.value).replace("row 0: ", "").replace("row 1: ", "")


@pytest.mark.parametrize(
    "uris",
    [["s3://bucket/events.xlsx"], ["s3://bucket/a.csv", "s3://bucket/b.parquet"]],
    ids=["other-suffix", "mixed-kinds"],
)
def test_remote_uris_of_another_kind_or_of_mixed_kinds_are_refused_before_reading(spark, uris):
    from segmentkit.errors import DataValidationError

    with pytest.raises(
        DataValidationError, match=r"expected Parquet \(\.parquet\), CSV .* of one kind"
    ):
        io_spark.read_events_spark(spark, uris)


@pytest.mark.parametrize("layout", ["file", "partitions"])
def test_a_headerless_csv_is_read_as_locally(spark, tmp_path, layout, taobao_csv, taobao_columns):
    source = taobao_csv
    if layout == "partitions":
        lines = taobao_csv.read_text().splitlines()
        source = tmp_path / "logs"
        for day, part in (("1", lines[:3]), ("2", lines[3:])):
            (source / f"day={day}").mkdir(parents=True)
            (source / f"day={day}" / "part.csv").write_text("\n".join(part) + "\n")
    local, rows = _file_read_alike(spark, source, taobao_columns)
    assert local.report.rows_read == 5
    theirs = rows["user_id"].sort_values().tolist()
    assert theirs == local.to_pandas()["user_id"].sort_values().tolist() == [1, 1, 1, 2, 2]


@pytest.mark.parametrize("layout", ["headerless", "header-line", "partitions"])
def test_columns_aligned_by_spaces_are_read_as_locally(
    spark, tmp_path, cdnow_txt, cdnow_columns, layout
):
    source, columns = cdnow_txt, cdnow_columns
    if layout == "header-line":
        source = tmp_path / "with_header.txt"
        source.write_bytes(b"customer  date cds\tdollars\r\n" + cdnow_txt.read_bytes())
        columns = dataclasses.replace(cdnow_columns, csv_header=None)
    if layout == "partitions":
        source = tmp_path / "orders"
        lines = cdnow_txt.read_bytes().splitlines(keepends=True)
        for part, rows in (("part=1", lines[:3]), ("part=2", lines[3:])):
            (source / part).mkdir(parents=True)
            (source / part / "lines.txt").write_bytes(b"".join(rows))
    local, rows = _file_read_alike(spark, source, columns)
    assert local.report.rows_clean == 6
    assert ("part" in local.source_columns) == (layout == "partitions")
    rows = rows.sort_values(["user_id", "ts_us"]).reset_index(drop=True)
    assert rows["user_id"].tolist() == local.to_pandas()["user_id"].tolist()
    assert rows["revenue"].tolist() == local.to_pandas()["revenue"].tolist()


def test_a_line_of_columns_aligned_by_spaces_of_another_width_is_refused_as_locally(
    spark, cdnow_txt, cdnow_columns
):

    cdnow_txt.write_bytes(cdnow_txt.read_bytes() + b" 00004 19970405  1   9.99 gift card\r\n")
    message = _file_refused_alike(spark, cdnow_txt, cdnow_columns)
    assert "'00004 19970405 1 9.99 gift card'" in message


def test_a_headerless_csv_of_another_width_is_refused_as_locally(spark, taobao_csv, taobao_columns):
    import dataclasses

    from segmentkit.errors import DataValidationError

    columns = dataclasses.replace(taobao_columns, csv_header=taobao_columns.csv_header[:4])
    with pytest.raises(DataValidationError) as local:
        load_events(taobao_csv, columns)
    with pytest.raises(DataValidationError) as theirs:
        io_spark.load_events_spark(str(taobao_csv), columns, spark=spark)
    assert str(theirs.value) == str(local.value)
    # Remote files are not read before Spark's scan: Spark's own fields are counted.
    frame = spark.read.csv(str(taobao_csv), header=False)
    with pytest.raises(DataValidationError, match=r"names 4 column\(s\) .* have 5 field\(s\)"):
        io_spark._named_fields(frame, columns.csv_header, "s3://bucket/UserBehavior.csv")
    with_day = frame.withColumn("day", frame["_c0"])
    named = io_spark._named_fields(with_day, taobao_columns.csv_header, "s3://bucket/logs")
    assert named.columns == [*taobao_columns.csv_header, "day"]


@pytest.mark.parametrize("on_invalid", ["drop", "error"])
def test_stray_rows_are_dropped_or_refused_as_locally(spark, nine_days, on_invalid):
    import warnings

    from segmentkit.errors import DataValidationError, SegmentkitWarning

    stray = pd.DataFrame(
        {"user_id": "u3", "timestamp": pd.to_datetime(["1970-01-01", "2037-04-02"]), "event": "x"}
    )
    raw = pd.concat([nine_days, stray], ignore_index=True)

    def loaded(load):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                log = load()
            except DataValidationError as exc:
                return str(exc), []
        said = [str(w.message) for w in caught if issubclass(w.category, SegmentkitWarning)]
        return log, said

    local, local_said = loaded(lambda: load_events(raw, on_invalid=on_invalid))
    theirs, their_said = loaded(
        lambda: io_spark.load_events_spark(spark.createDataFrame(raw), on_invalid=on_invalid)
    )
    assert their_said == local_said
    if on_invalid == "error":
        assert theirs == local and local.startswith("events: 2 of 2,162 rows")
        return
    try:
        assert theirs.report == local.report and local.report.stray_timestamp == 2
        assert len(local_said) == 1 and local_said[0].startswith("dropped 2 of 2,162 rows")
    finally:
        theirs.release()


def test_the_default_snapshot_refuses_a_late_tail_as_locally(spark, nine_days):
    from segmentkit.errors import DataValidationError
    from segmentkit.io.events import default_as_of

    tail = pd.DataFrame(
        {"user_id": ["u3"], "timestamp": pd.to_datetime(["2025-01-16 04:00"]), "event": ["view"]}
    )
    raw = pd.concat([nine_days, tail], ignore_index=True)
    with pytest.raises(DataValidationError) as local:
        default_as_of(load_events(raw))
    log = io_spark.load_events_spark(spark.createDataFrame(raw))
    try:
        with pytest.raises(DataValidationError) as theirs:
            io_spark.default_as_of_spark(log)
    finally:
        log.release()
    assert str(theirs.value) == str(local.value)
    assert str(local.value).startswith("events: the last 1 row(s), on '2025-01-16', come 15 day")


@pytest.mark.parametrize("sep", [";", "\t", ","], ids=["semicolon", "tab", "comma"])
def test_csv_delimiters_and_doubled_quotes_are_read_as_locally(spark, tmp_path, sep):
    # Excel's exports in many locales separate by ';'; Spark reads ',' unless told.
    path = tmp_path / "events.csv"
    rows = pd.DataFrame(
        {
            "user_id": ['say "hi"', "b", "b"],
            "timestamp": ["2024-01-01 10:00", "2024-01-02 11:00", "2024-01-03 12:00"],
            "event": ["view", "purchase", "view"],
            "revenue": [0.0, 12.5, 0.0],
        }
    )
    rows.to_csv(path, index=False, sep=sep)
    assert '"say ""hi"""' in path.read_text()  # RFC 4180: quotes doubled inside quotes
    local = load_events(path)
    log = io_spark.load_events_spark(str(path), spark=spark)
    try:
        assert log.report == local.report and log.source_columns == tuple(rows.columns)
        theirs = sorted(log.frame.toPandas()["user_id"])
        assert theirs == sorted(local.to_pandas()["user_id"]) == ["b", "b", 'say "hi"']
    finally:
        log.release()


@pytest.mark.parametrize(
    "refunds", [None, ("refund",), ("Refund",)], ids=["none", "named", "respelled"]
)
def test_positive_refunds_are_read_as_locally(spark, tiny_log, refunds):
    from segmentkit.config import ColumnMap

    positive = tiny_log.assign(revenue=tiny_log["revenue"].abs())
    columns = ColumnMap(refund_events=refunds)
    if refunds != ("refund",):
        _refused_alike(spark, positive, columns, "2024-02-01")
        return
    theirs, report = _features_alike(spark, positive, columns, "2024-02-01")
    assert report.negative_revenue_rows == 1
    assert theirs["revenue_total"].tolist() == pytest.approx([70.0, 0.0])


def test_csv_ids_that_look_like_decimals_are_text_as_locally(spark, tmp_path):
    from segmentkit.config import ColumnMap

    path = tmp_path / "ga4.csv"
    path.write_text(
        "user_pseudo_id,event_timestamp,event_name\n"
        "1026454.427111206501,1604512629336826,page_view\n"
        "1026454.427111206502,1604512629336900,page_view\n"
        "20.0,1604512699336900,purchase\n"
    )
    columns = ColumnMap(
        user_id="user_pseudo_id",
        timestamp="event_timestamp",
        event="event_name",
        timestamp_format="unix_us",
    )
    local = load_events(path, columns)
    log = io_spark.load_events_spark(str(path), columns, spark=spark)
    try:
        assert log.report == local.report
        theirs = sorted(log.frame.toPandas()["user_id"])
        expected = ["1026454.427111206501", "1026454.427111206502", "20.0"]
        assert theirs == sorted(local.to_pandas()["user_id"]) == expected
    finally:
        log.release()


def test_rows_dropped_for_null_ids_are_warned_about_as_locally(spark, tiny_log):
    import warnings

    from segmentkit.errors import SegmentkitWarning

    raw = tiny_log.assign(user_id=tiny_log["user_id"].where(tiny_log.index != 2))

    def said(load):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            log = load()
        return log, [str(w.message) for w in caught if issubclass(w.category, SegmentkitWarning)]

    _, local = said(lambda: load_events(raw))
    log, theirs = said(lambda: io_spark.load_events_spark(spark.createDataFrame(raw)))
    log.release()
    assert (
        theirs
        == local
        == [
            "dropped 1 of 7 rows (14.3%) without a user id (column 'user_id'): they count in no "
            "feature, segment or label (data.on_invalid: error refuses such a log instead)"
        ]
    )


def test_a_latin1_csv_is_refused_or_read_as_locally(spark, tmp_path):
    from segmentkit.config import ColumnMap
    from segmentkit.errors import DataValidationError

    path = tmp_path / "export.csv"
    lines = ["user_id,timestamp,event", "u1,2024-01-01 10:00,vue", "u2,2024-01-02,achat café"]
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(DataValidationError) as local:
        load_events(path)
    # Spark would read the byte as U+FFFD without a word: refused as locally.
    with pytest.raises(DataValidationError) as theirs:
        io_spark.load_events_spark(str(path), spark=spark)
    assert str(theirs.value) == str(local.value)
    columns = ColumnMap(csv_encoding="latin-1")
    log = io_spark.load_events_spark(str(path), columns, spark=spark)
    try:
        assert log.report == load_events(path, columns).report
        assert sorted(log.frame.toPandas()["event"]) == ["achat café", "vue"]
    finally:
        log.release()


def test_decimal_commas_are_refused_or_read_as_locally(spark, tmp_path):
    from segmentkit.config import ColumnMap

    path = tmp_path / "export.csv"
    lines = ["user_id;timestamp;event;revenue;quantity", "u1;2024-01-01 10:00;purchase;12,5;2"]
    path.write_text("\n".join([*lines, "u2;2024-01-02 11:00;purchase;-3,25;0,5"]) + "\n")
    assert "decimal_comma: true" in _file_refused_alike(spark, path)
    columns = ColumnMap(quantity="quantity", decimal_comma=True)
    log = io_spark.load_events_spark(str(path), columns, spark=spark)
    try:
        assert log.report == load_events(path, columns).report
        assert sorted(log.frame.toPandas()["revenue"]) == [-1.625, 25.0]
    finally:
        log.release()


@pytest.mark.parametrize("revenue", [None, "properties.revenue"])
def test_a_table_with_a_properties_map_is_read_as_locally(spark, properties_map_parquet, revenue):
    # Spark hashes no map: the duplicate check failed on such tables (as Spark writes them).
    from segmentkit.config import ColumnMap

    columns = ColumnMap(revenue=revenue, session_id=None)
    local, rows = _file_read_alike(spark, properties_map_parquet, columns)
    assert local.report.duplicate_rows == 1
    assert rows["revenue"].dropna().tolist() == ([12.5] if revenue else [])


def test_keys_of_json_text_are_read_as_locally(spark, posthog_csv):
    from segmentkit.config import ColumnMap

    columns = ColumnMap(
        user_id="distinct_id", revenue="properties.revenue", session_id="properties.$session_id"
    )
    local, rows = _file_read_alike(spark, posthog_csv, columns)
    assert sorted(rows["session_id"]) == sorted(local.to_pandas()["session_id"])
    assert rows["revenue"].dropna().tolist() == [12.5]


def test_the_anonymous_id_hint_is_given_as_locally(spark, tmp_path, tiny_log, segment_export):
    from segmentkit.config import ColumnMap
    from segmentkit.errors import SegmentkitWarning

    path = str(segment_export(tiny_log, tmp_path / "segment.jsonl"))
    columns = ColumnMap(user_id="userId", revenue=None, session_id=None)
    with pytest.warns(SegmentkitWarning) as local:
        load_events(path, columns)
    with pytest.warns(SegmentkitWarning) as theirs:
        io_spark.load_events_spark(path, columns, spark=spark).release()
    ours = [str(w.message) for w in theirs if issubclass(w.category, SegmentkitWarning)]
    assert ours == [str(w.message) for w in local]
    assert "'anonymousId' hold a value on every row without a user id" in str(local[0].message)


def test_an_aligned_file_in_another_encoding_is_refused_by_spark(spark, cdnow_txt, cdnow_columns):
    from segmentkit.errors import DataValidationError

    columns = dataclasses.replace(cdnow_columns, csv_encoding="latin-1")
    assert load_events(cdnow_txt, columns).report.rows_clean == 6
    with pytest.raises(DataValidationError) as err:
        io_spark.load_events_spark(str(cdnow_txt), columns, spark=spark)
    assert str(err.value) == (
        f"events ['{cdnow_txt}']: Spark reads files of columns aligned by spaces as UTF-8 only, "
        "not latin-1; convert them, or read them with the local engine"
    )
