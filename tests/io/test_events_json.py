"""Event logs exported as JSON (Mixpanel, Segment, Amplitude, GA4 through BigQuery).

Such exports put one event per line as a JSON object, often with the contract's
columns nested (Mixpanel's ``properties.distinct_id``, ``properties.time``). Nested
objects are read as dotted columns, mapped like any other column.
"""

import json

import pandas as pd
import pytest

from segmentkit.config import ColumnMap
from segmentkit.errors import DataValidationError, SegmentkitWarning
from segmentkit.features import build_features
from segmentkit.io.events import load_events

AS_OF = "2024-02-01"


def _refusal(source) -> str:
    """The message ``load_events`` refuses ``source`` with."""
    return _refusal_with(source, None)


def _refusal_with(source, columns) -> str:
    """The message ``load_events`` refuses ``source`` read with ``columns`` with."""
    with pytest.raises(DataValidationError) as err:
        load_events(source, columns)
    return str(err.value)


def _lines(path, records) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def test_nested_keys_are_dotted_columns_and_give_the_logs_features(
    tiny_log, tmp_path, mixpanel_export, mixpanel_columns
):
    path = mixpanel_export(tiny_log, tmp_path / "export.jsonl")
    log = load_events(path, mixpanel_columns, as_of=AS_OF)
    assert log.source_columns == (
        "event",
        "properties.time",
        "properties.distinct_id",
        "properties.$session_id",
        "properties.$os",
        "properties.revenue",
    )
    flat = load_events(tiny_log, as_of=AS_OF)
    assert log.report == flat.report
    pd.testing.assert_frame_equal(build_features(log, AS_OF), build_features(flat, AS_OF))


@pytest.mark.parametrize("name", ["export.json", "export.ndjson.gz", "export.jsonl.gz"])
def test_an_array_file_and_gzipped_lines_read_as_the_lines(
    tiny_log, tmp_path, mixpanel_export, mixpanel_columns, name
):
    lines = load_events(mixpanel_export(tiny_log, tmp_path / "a.jsonl"), mixpanel_columns)
    log = load_events(mixpanel_export(tiny_log, tmp_path / name), mixpanel_columns)
    assert log.report == lines.report
    pd.testing.assert_frame_equal(log.to_pandas(), lines.to_pandas())


def test_a_nested_key_first_seen_late_and_rarely_is_a_column(tmp_path):
    # Purchases, the only events with an amount, come after DuckDB's 20,480-record
    # sample, and hold it in 2 of 25,002 objects (DuckDB would type such sparse
    # objects as maps): either way the column would not exist.
    views = [
        {
            "user": f"u{i % 500}",
            "ts": f"2024-01-{1 + i % 28:02d} 10:00:00",
            "event": "view",
            "properties": {"page": "/"},
        }
        for i in range(25_000)
    ]
    buys = [
        {"user": u, "ts": "2024-01-29 10:00:00", "event": "purchase", "properties": {"amount": a}}
        for u, a in (("u1", 20.5), ("u2", 4.5))
    ]
    path = tmp_path / "late.jsonl"
    _lines(path, views + buys)
    log = load_events(path, ColumnMap(user_id="user", timestamp="ts", revenue="properties.amount"))
    revenue = log.to_pandas().groupby("user_id")["revenue"].sum()
    assert revenue[["u1", "u2"]].tolist() == [20.5, 4.5]
    assert revenue.drop(["u1", "u2"]).eq(0).all()


def test_a_line_that_is_not_json_is_refused_with_its_number(tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_text(
        '{"user_id": "a", "timestamp": "2024-01-01 10:00:00", "event": "view"}\n'
        "<html>Gateway Timeout</html>\n"  # an export cut by a proxy's error page
        '{"user_id": "b", "timestamp": "2024-01-01 11:00:00", "event": "view"}\n'
    )
    assert _refusal(path) == (
        f"events: {path}, line 2 is not JSON ('<html>Gateway Timeout</html>'): expected one "
        "JSON object per line (JSON lines), or one JSON array of objects per file"
    )


def test_a_mapped_key_absent_from_every_record_lists_the_dotted_columns(
    tiny_log, tmp_path, mixpanel_export
):
    path = mixpanel_export(tiny_log, tmp_path / "export.jsonl")
    columns = ColumnMap(user_id="properties.user_id", timestamp="properties.time")
    with pytest.raises(DataValidationError, match=r"'properties\.distinct_id'"):
        load_events(path, columns)


def test_tab_separated_and_txt_files_are_csv(tiny_log, tmp_path):
    tiny_log.to_csv(tmp_path / "events.csv", index=False)
    expected = load_events(tmp_path / "events.csv").to_pandas()
    for name in ("events.tsv", "events.txt", "events.tsv.gz", "yoochoose-clicks.dat"):
        tiny_log.to_csv(tmp_path / name, index=False, sep="\t")
        pd.testing.assert_frame_equal(load_events(tmp_path / name).to_pandas(), expected)


def test_json_and_csv_files_mixed_are_refused(tiny_log, tmp_path, mixpanel_export):
    (tmp_path / "events").mkdir()
    tiny_log.to_csv(tmp_path / "events" / "a.csv", index=False)
    mixpanel_export(tiny_log, tmp_path / "events" / "b.jsonl")
    with pytest.raises(DataValidationError, match=r"CSV and JSON files mixed; name one kind"):
        load_events(tmp_path / "events")


def test_an_export_wrapping_its_events_in_one_object_is_refused_with_the_way_out(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(
        json.dumps(
            {
                "exported": "2024-02-01",
                "events": [
                    {"user_id": "a", "timestamp": "2024-01-01 10:00:00", "event": "view"},
                    {"user_id": "b", "timestamp": "2024-01-01 11:00:00", "event": "view"},
                ],
            },
            indent=2,
        )
    )
    assert _refusal(path) == (
        f"events: {path} holds objects whose 'events' lists records, and no column 'user_id' "
        "(columns present: ['exported', 'events']): an export wrapping its events in one "
        "object? Give one event per line, e.g. jq -c '.events[]' export.json > events.jsonl"
    )


def test_a_ga4_export_reads_its_microseconds_given_as_text(
    tiny_log, tmp_path, ga4_export, ga4_columns
):
    log = load_events(ga4_export(tiny_log, tmp_path / "ga4.jsonl"), ga4_columns, as_of=AS_OF)
    rows = log.to_pandas()
    assert rows["timestamp"].sort_values().tolist() == tiny_log["timestamp"].sort_values().tolist()
    assert sorted(rows["revenue"].dropna()) == [-10.0, 30.0, 50.0]
    assert sorted(rows["user_id"].unique()) == ["1026454.4271112065", "1026455.4271112065"]


def test_text_that_is_no_number_is_an_unparseable_epoch_time():
    raw = pd.DataFrame({"user_id": ["a", "b"], "timestamp": ["1609459200", "n/a"], "event": "v"})
    with pytest.raises(DataValidationError) as err:
        load_events(raw, ColumnMap(timestamp_format="unix_s"))
    assert str(err.value) == (
        "column 'timestamp' (timestamp): 1 value(s) cannot be parsed as a timestamp, e.g. "
        "row 1: 'n/a'; expected data.columns.timestamp_format 'unix_s'"
    )


def test_an_epoch_format_on_a_column_of_true_and_false_is_refused():
    raw = pd.DataFrame({"user_id": ["a", "b"], "timestamp": [True, False], "event": "v"})
    with pytest.raises(DataValidationError) as err:
        load_events(raw, ColumnMap(timestamp_format="unix_s"))
    assert str(err.value) == (
        "column 'timestamp' (timestamp): data.columns.timestamp_format 'unix_s' reads numbers "
        "since 1970, but the column has type BOOLEAN"
    )


def test_nested_parquet_structs_are_dotted_columns_as_in_json(
    tiny_log, tmp_path, ga4_export, ga4_columns
):
    import pyarrow.json
    import pyarrow.parquet as pq

    lines = ga4_export(tiny_log, tmp_path / "ga4.jsonl")
    table = pyarrow.json.read_json(lines)
    assert pyarrow.types.is_struct(table.schema.field("ecommerce").type)
    pq.write_table(table, tmp_path / "ga4.parquet")
    expected = load_events(lines, ga4_columns, as_of=AS_OF)
    log = load_events(tmp_path / "ga4.parquet", ga4_columns, as_of=AS_OF)
    assert "ecommerce.purchase_revenue" in log.source_columns
    assert log.report == expected.report
    pd.testing.assert_frame_equal(log.to_pandas(), expected.to_pandas())


def test_a_segment_export_reads_its_iso_times_and_drops_anonymous_calls(
    tiny_log, tmp_path, segment_export, segment_columns
):
    path = segment_export(tiny_log, tmp_path / "segment.jsonl")
    with pytest.warns(SegmentkitWarning) as caught:
        log = load_events(path, segment_columns, as_of=AS_OF)
    assert str(caught[0].message) == (
        "dropped 1 of 8 rows (12.5%) without a user id (column 'userId'): they count in no "
        "feature, segment or label (data.on_invalid: error refuses such a log instead); "
        "column(s) 'anonymousId' hold a value on every row without a user id (anonymous users "
        "or devices?): map data.columns.user_id to one of them to keep those rows (every user "
        "is then known by it)"
    )
    assert log.report.null_user_id == 1 and log.report.rows_read == len(tiny_log) + 1
    flat = load_events(tiny_log, as_of=AS_OF)
    pd.testing.assert_frame_equal(build_features(log, AS_OF), build_features(flat, AS_OF))


def test_a_json_file_that_is_not_utf8_is_refused_with_how_to_reencode_it(tmp_path):
    path = tmp_path / "export.jsonl"
    line = '{"user_id": "a", "timestamp": "2024-01-01 10:00:00", "event": "achat café"}\n'
    path.write_bytes(line.encode("latin-1"))
    assert _refusal(path) == (
        f"events: {path} is not UTF-8 (invalid UTF-8 encoding in string), as JSON must be: "
        "exported as Latin-1? Re-encode it, e.g. iconv -f latin1 -t utf-8 export.jsonl > "
        "utf8.jsonl"
    )


def test_a_key_only_the_last_of_many_files_holds_is_a_column(tmp_path):
    # Exports come as one file an hour; DuckDB types JSON from its first 32 files.
    (tmp_path / "export").mkdir()
    for hour in range(40):
        record = {"user_id": f"u{hour}", "timestamp": f"2024-01-02 {hour % 24:02d}:00:00"}
        record |= {"event": "purchase", "revenue": 5.0} if hour == 39 else {"event": "view"}
        _lines(tmp_path / "export" / f"hour-{hour:02d}.jsonl", [record])
    log = load_events(tmp_path / "export", ColumnMap(revenue="revenue"))
    assert log.to_pandas()["revenue"].fillna(0).sum() == 5.0


def test_a_key_of_a_properties_map_is_mapped_by_its_dotted_name(properties_map_parquet):
    columns = ColumnMap(revenue="properties.revenue", session_id=None)
    log = load_events(properties_map_parquet, columns)
    assert log.source_columns[-2:] == ("properties", "properties.revenue")
    assert log.report.duplicate_rows == 1
    assert log.to_pandas()["revenue"].dropna().tolist() == [12.5]


POSTHOG = ColumnMap(
    user_id="distinct_id", revenue="properties.revenue", session_id="properties.$session_id"
)


def test_keys_of_json_objects_in_a_text_column_are_read_by_their_dotted_name(posthog_csv):
    log = load_events(posthog_csv, POSTHOG)
    rows = log.to_pandas()
    assert rows["session_id"].tolist() == ["s1", "s1", "s2"]
    assert rows["revenue"].fillna(0).tolist() == [0.0, 12.5, 0.0]


def test_a_dotted_name_on_a_text_column_without_json_is_refused_as_absent(posthog_csv):
    columns = ColumnMap(user_id="distinct_id", session_id="uuid.session")
    message = _refusal_with(posthog_csv, columns)
    assert message.startswith("column(s) session_id ('uuid.session') mapped in data.columns are")


def test_an_id_column_missing_on_some_anonymous_rows_is_not_named(tmp_path):
    rows = [
        {"userId": "a", "anonymousId": "x1", "timestamp": "2024-01-01 10:00:00", "event": "v"},
        {"userId": None, "anonymousId": "x2", "timestamp": "2024-01-01 11:00:00", "event": "v"},
        {"userId": None, "timestamp": "2024-01-01 12:00:00", "event": "v"},
    ]
    path = tmp_path / "export.jsonl"
    _lines(path, rows)
    with pytest.warns(SegmentkitWarning) as caught:
        load_events(path, ColumnMap(user_id="userId", revenue=None, session_id=None))
    assert str(caught[0].message).endswith("(data.on_invalid: error refuses such a log instead)")
