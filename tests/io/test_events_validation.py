"""Input that does not match the contract or the model is refused with one clear line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segmentkit.config import ColumnMap, load_config
from segmentkit.errors import DataValidationError, SegmentkitWarning
from segmentkit.io.events import (
    check_input,
    check_log_reaches_as_of,
    describe_input,
    load_events,
    to_timestamp,
)


@pytest.mark.parametrize(
    "text", ["01-11-2024", "11/01/2024", "2024-13-01", "next monday", "2024-1-5", ""]
)
def test_as_of_accepts_iso_8601_only(text):
    with pytest.raises(DataValidationError, match="expected an ISO 8601 date or datetime"):
        to_timestamp(text)


@pytest.mark.parametrize("number", [20250101, 1735689600.0, np.int64(1735689600000), True])
def test_as_of_refuses_numbers_rather_than_read_them_as_nanoseconds(number):
    with pytest.raises(DataValidationError, match="a number is no date"):
        to_timestamp(number)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-11-01", pd.Timestamp("2024-11-01")),
        ("2024-11-01T06:30", pd.Timestamp("2024-11-01 06:30")),
        ("2024-11-01T06:30:00Z", pd.Timestamp("2024-11-01 06:30")),
        ("2024-11-01T08:30+02:00", pd.Timestamp("2024-11-01 06:30")),
    ],
)
def test_iso_8601_dates_and_datetimes_parse(text, expected):
    assert to_timestamp(text) == expected


def _parquet_with_revenue_at_row_2(frame, folder, value):
    """Write ``frame`` to Parquet with row 2's revenue a genuine float (NaN/inf kept).

    pandas would write NaN as null; pyarrow keeps the float as it is.
    """
    table = pa.Table.from_pandas(frame, preserve_index=False)
    revenue = table.column("revenue").to_pylist()
    revenue[2] = value
    table = table.set_column(
        table.schema.get_field_index("revenue"), "revenue", pa.array(revenue, pa.float64())
    )
    path = folder / "events.parquet"
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize(
    ("value", "shown"),
    [(float("nan"), "nan"), (float("inf"), "inf"), (-float("inf"), "-inf"), (1e12, "1e+12")],
    ids=["nan", "inf", "-inf", "too-large"],
)
def test_unusable_revenue_is_an_input_error(tiny_log, tmp_path, value, shown):
    path = _parquet_with_revenue_at_row_2(tiny_log, tmp_path, value)
    with pytest.raises(DataValidationError, match=r"'revenue' \(revenue\): 1 value\(s\) are NaN"):
        load_events(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_unusable_revenue_in_parquet_is_shown_by_row(tiny_log, tmp_path, value):
    # The Parquet statistics of the column omit NaN: the example query must not trust them.
    path = _parquet_with_revenue_at_row_2(tiny_log, tmp_path, value)
    with pytest.raises(DataValidationError, match=rf"e\.g\. row 2: '{value}'"):
        load_events(path)


def test_revenue_just_below_the_limit_is_accepted(tiny_log):
    tiny_log.loc[1, "revenue"] = 999_999_999_999.0
    assert load_events(tiny_log).report.rows_clean == len(tiny_log)


def test_all_null_event_column_is_an_input_error(tiny_log):
    tiny_log["event"] = None
    with pytest.raises(DataValidationError, match=r"'event' \(event\): all 7 value\(s\) are null"):
        load_events(tiny_log)


def test_corrupt_parquet_is_one_line(tmp_path, tiny_log):
    path = tmp_path / "events.parquet"
    tiny_log.to_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + data[-200:])
    with pytest.raises(DataValidationError, match="events cannot be read") as info:
        load_events(path)
    assert "\n" not in str(info.value)


def test_mapped_column_that_is_absent_names_it_and_the_columns_present(tiny_log):
    config = load_config(overrides={"data": {"columns": {"revenue": "amount"}}})
    with pytest.raises(
        DataValidationError, match=r"revenue \('amount'\) mapped in data.columns"
    ) as info:
        load_events(tiny_log, config.data.columns)
    assert "'session_id'" in str(info.value)  # the columns present are listed


def test_explicit_null_means_no_revenue(tiny_log):
    config = load_config(overrides={"data": {"columns": {"revenue": None}}})
    log = load_events(tiny_log, config.data.columns)
    assert not log.has_revenue
    assert describe_input(log)["optional_used"] == ["session_id"]


def test_default_optional_columns_are_used_only_when_present(tiny_log):
    log = load_events(tiny_log.drop(columns=["revenue"]), ColumnMap())
    assert not log.has_revenue


def _schema(tiny_log):
    return describe_input(load_events(tiny_log), key_events=["purchase", "add_to_cart", "gift"])


def test_input_schema_records_columns_and_key_events(tiny_log):
    schema = _schema(tiny_log)
    assert schema["columns"] == {
        "user_id": "user_id",
        "timestamp": "timestamp",
        "event": "event",
        "revenue": "revenue",
        "session_id": "session_id",
    }
    assert schema["optional_used"] == ["revenue", "session_id"]
    assert schema["key_events_seen"] == ["add_to_cart", "purchase"]


def test_key_events_seen_from_known_names_match_a_scan_of_the_log(tiny_log):
    import dataclasses

    from segmentkit.io.events import key_events_seen

    log = load_events(tiny_log)
    unknown = dataclasses.replace(log, event_names=None)  # answered by reading the log
    asked = ["purchase", "gift", "refund", "view", "add_to_cart"]
    assert key_events_seen(log, asked) == key_events_seen(unknown, asked)
    assert key_events_seen(log, asked) == ["add_to_cart", "purchase", "refund", "view"]


@pytest.mark.parametrize("column", ["revenue", "session_id"])
def test_scoring_input_without_a_trained_column_is_refused(tiny_log, column):
    schema = _schema(tiny_log)
    log = load_events(tiny_log.drop(columns=[column]))
    with pytest.raises(
        DataValidationError, match=rf"trained with column\(s\) {column} \('{column}'\)"
    ):
        check_input(log, schema)


def test_key_event_never_seen_is_a_warning(tiny_log):
    schema = _schema(tiny_log)
    log = load_events(tiny_log[tiny_log["event"] != "add_to_cart"])
    key_event, share = check_input(log, schema)
    assert "['add_to_cart']" in key_event
    # 1 of the training log's 7 rows: the counts of every activity are lower too.
    assert share.startswith("event(s) ['add_to_cart'] held 14% of the training log's rows")
    assert check_input(load_events(tiny_log), schema) == []


def test_input_schema_records_each_events_share_of_rows(tiny_log):
    assert _schema(tiny_log)["event_shares"] == {
        "view": 3 / 7,
        "purchase": 2 / 7,
        "add_to_cart": 1 / 7,
        "refund": 1 / 7,
    }
    assert _transaction_schema(tiny_log)["event_shares"] == {}


def test_a_log_lacking_events_that_held_most_training_rows_is_refused(tiny_log):
    schema = _schema(tiny_log)
    purchases = load_events(tiny_log[tiny_log["event"].isin(["purchase", "refund"])])
    with pytest.raises(DataValidationError) as refused:
        check_input(purchases, schema)
    assert str(refused.value) == (
        "column 'event' (event): event(s) ['view', 'add_to_cart'] held 57% of the training "
        "log's rows and never occur in this log; events present: ['purchase', 'refund']. "
        "Every user's counts of events, sessions and active days would shrink, and segments "
        "and scores be confidently wrong: an export of some events only? Give the log with "
        "every event, as in training"
    )
    # Not one of the training log's events: named otherwise, not cut.
    renamed = tiny_log.replace({"event": {"view": "v", "purchase": "p", "refund": "r"}})
    with pytest.raises(DataValidationError, match=r"names its events otherwise\? Rename them"):
        check_input(load_events(renamed[renamed["event"] != "add_to_cart"]), schema)


def test_absent_events_spelled_otherwise_are_named(tiny_log):
    schema = _schema(tiny_log)
    (message,) = check_input(load_events(tiny_log.replace({"event": {"view": "View"}})), schema)
    assert message == (
        "event(s) ['view'] held 43% of the training log's rows and never occur in this log; "
        "spelled otherwise here: 'view' as 'View': counts of events, sessions and active days "
        "are lower than in training"
    )


def test_rarely_held_or_unrecorded_events_are_not_judged(tiny_log):
    schema = _schema(tiny_log)
    rare = {**schema, "event_shares": {**schema["event_shares"], "gift": 0.09}}
    assert check_input(load_events(tiny_log), rare) == []  # 9 % of training rows
    unrecorded = {k: v for k, v in schema.items() if k != "event_shares"}  # older bundles
    purchases = load_events(tiny_log[tiny_log["event"] == "purchase"])
    (message,) = check_input(purchases, unrecorded)
    assert "['add_to_cart'] occurred in the training log" in message


def test_rows_without_an_event_name_are_dropped_and_counted(tiny_log):
    tiny_log.loc[2, "event"] = None
    log = load_events(tiny_log)
    assert log.report.null_event == 1
    assert log.report.rows_clean == len(tiny_log) - 1


def test_rows_without_an_event_name_with_on_invalid_error(tiny_log):
    tiny_log.loc[2, "event"] = None
    with pytest.raises(
        DataValidationError, match=r"'event': 1 null value\(s\) \(on_invalid=error\)"
    ):
        load_events(tiny_log, on_invalid="error")


def test_cli_refuses_an_ambiguous_as_of(tmp_path, monkeypatch, capsys):
    from segmentkit.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "e.csv").write_text("user_id,timestamp,event\n1,2024-01-01,view\n")
    with pytest.raises(SystemExit) as info:
        main(["features", "--events", "e.csv", "--as-of", "01-11-2024", "--out", "f.csv"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "ISO 8601" in err


# --------------------------------------------------------------------------- as_of past the log


def _days_log(days: list[str]) -> pd.DataFrame:
    """One event a listed day at 10:00 (the log's quiet spells are the days between)."""
    stamps = pd.to_datetime([f"{day} 10:00" for day in days])
    return pd.DataFrame({"user_id": "a", "timestamp": stamps, "event": "view"})


# Events on the 1st, 2nd and 5th: the longest quiet spell is 2 whole days (3rd, 4th).
SPELL_LOG = ["2024-01-01", "2024-01-02", "2024-01-05"]


@pytest.mark.parametrize(
    "as_of",
    [None, "2024-01-03", "2024-01-05T12:00", "2024-01-06", "2024-01-07", "2024-01-08T23:59"],
)
def test_as_of_within_the_logs_longest_quiet_spell_is_accepted(as_of):
    log = load_events(_days_log(SPELL_LOG), as_of=as_of)
    check_log_reaches_as_of(log)
    assert check_input(log, None) == []


@pytest.mark.parametrize(
    ("as_of", "missing"),
    [("2024-01-09", "3.0"), ("2024-01-10T12:00", "4.5"), ("2099-01-01", "27,389.0")],
)
def test_as_of_past_the_end_of_the_log_is_refused(as_of, missing):
    log = load_events(_days_log(SPELL_LOG), as_of=as_of)
    message = (
        rf"leaves {missing} day\(s\) without any event after the day of the log's last event "
        r"\(2024-01-05T10:00:00\), but the log never goes more than 2 whole day\(s\) "
        r".* score as of 2024-01-06 or earlier"
    )
    with pytest.raises(DataValidationError, match=message):
        check_input(log, None)


def test_a_log_with_an_event_every_day_must_reach_the_day_before_as_of():
    days = [f"2024-01-{d:02d}" for d in range(1, 11)]
    check_log_reaches_as_of(load_events(_days_log(days), as_of="2024-01-11T23:59"))
    with pytest.raises(DataValidationError, match="never goes more than 0 whole day"):
        check_log_reaches_as_of(load_events(_days_log(days), as_of="2024-01-12"))


@pytest.mark.parametrize(
    ("spelled", "names"),
    [
        ({"purchase": "PURCHASE"}, "'purchase' as 'PURCHASE'"),
        ({"add_to_cart": "Add To Cart"}, "'add_to_cart' as 'Add To Cart'"),
        (
            {"purchase": " purchase ", "add_to_cart": "add-to-cart"},
            "'add_to_cart' as 'add-to-cart'",
        ),
    ],
    ids=["capitals", "blanks", "separators"],
)
def test_key_events_spelled_otherwise_than_in_training_are_refused(tiny_log, spelled, names):
    schema = _schema(tiny_log)
    log = load_events(tiny_log.replace({"event": spelled}))
    with pytest.raises(DataValidationError, match=f"column 'event' \\(event\\): .*{names}"):
        check_input(log, schema)


def test_a_key_event_merely_absent_is_still_a_warning_not_a_respelling(tiny_log):
    schema = _schema(tiny_log)
    log = load_events(tiny_log.replace({"event": {"purchase": "purchase_completed"}}))
    key_event, share = check_input(log, schema)
    assert "['purchase'] occurred in the training log" in key_event
    assert share.startswith("event(s) ['purchase'] held 29% of the training log's rows")


def _transaction_schema(tiny_log):
    """What a model trained on tiny_log's purchases as a transaction table recorded."""
    purchases = tiny_log[tiny_log["event"] == "purchase"].drop(columns=["event"])
    log = load_events(purchases, ColumnMap(event=None))
    return describe_input(log, key_events=["purchase", "add_to_cart"])


def test_a_full_event_log_for_a_transaction_model_is_refused(tiny_log):
    schema = _transaction_schema(tiny_log)
    assert "event" not in schema["columns"]
    with pytest.raises(
        DataValidationError,
        match=r"column 'event' \(event\): the model was trained on a transaction table "
        r".* other events \['add_to_cart', 'refund', 'view'\]",
    ):
        check_input(load_events(tiny_log), schema)


def test_an_event_column_of_purchases_only_fits_a_transaction_model(tiny_log):
    schema = _transaction_schema(tiny_log)
    purchases = tiny_log[tiny_log["event"] == "purchase"]
    assert check_input(load_events(purchases), schema) == []
    # The reverse (a model trained with events, scored on a transaction table) lacks a column.
    events_schema = _schema(tiny_log)
    with pytest.raises(DataValidationError, match=r"trained with column\(s\) event \('event'\)"):
        check_input(load_events(purchases, ColumnMap(event=None)), events_schema)


# --------------------------------------------------------------------------- files and columns


def _with_revenue_twice(tiny_log: pd.DataFrame) -> pd.DataFrame:
    cents = tiny_log.assign(cents=tiny_log["revenue"] * 100)
    return cents.rename(columns={"cents": "revenue"})


@pytest.mark.parametrize("kind", ["frame", "csv", "csv.gz", "parquet", "directory"])
def test_a_contract_column_named_twice_is_refused(tiny_log, tmp_path, kind):
    raw = _with_revenue_twice(tiny_log)
    source = {
        "frame": raw,
        "csv": tmp_path / "e.csv",
        "csv.gz": tmp_path / "e.csv.gz",
        "parquet": tmp_path / "e.parquet",
        "directory": tmp_path / "events",
    }[kind]
    if kind in ("csv", "csv.gz"):
        raw.to_csv(source, index=False)
    elif kind in ("parquet", "directory"):
        table = pa.Table.from_pandas(tiny_log, preserve_index=False)
        if kind == "directory":  # as Spark writes a table: the files are inside
            source.mkdir()
        target = source / "part-00000.parquet" if kind == "directory" else source
        pq.write_table(table.append_column("revenue", table["revenue"]), target)
    with pytest.raises(
        DataValidationError, match=r"column\(s\) \['revenue'\] appear more than once"
    ):
        load_events(source)


def test_a_column_really_named_like_a_copy_is_accepted(tiny_log, tmp_path):
    path = tmp_path / "e.csv"
    tiny_log.assign(revenue_1=1.0).to_csv(path, index=False)
    assert load_events(path).report.rows_clean == 7


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: p.mkdir(),
            r"events directory .*events.csv holds no event file; expected Parquet",
        ),
        (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    ],
    ids=["directory", "empty"],
)
def test_an_events_path_that_is_not_a_log_file_is_named(tmp_path, make, message):
    path = tmp_path / "events.csv"
    make(path)
    with pytest.raises(DataValidationError, match=message):
        load_events(path)


def test_rows_dropped_as_unusable_are_one_warning_when_scoring(tiny_log):
    raw = tiny_log.astype({"user_id": object, "event": object})
    raw.loc[[0, 6], "user_id"] = None
    raw.loc[2, "event"] = None
    raw.loc[4, "timestamp"] = pd.NaT  # a purchase: row 1 is another, so none goes unseen
    with pytest.warns(SegmentkitWarning) as caught:
        log = load_events(raw)
    (message,) = [str(w.message) for w in caught]
    assert message == (
        "dropped 2 of 7 rows (28.6%) without a user id (column 'user_id') and 1 of 7 rows "
        "(14.3%) without a timestamp (column 'timestamp') and 1 of 7 rows (14.3%) without "
        "an event name (column 'event'): they count in no feature, segment or label "
        "(data.on_invalid: error refuses such a log instead)"
    )
    # Scoring says it once (load_events' warning), not again; every view was among the
    # dropped rows, which it says as the training log's events that this log lacks.
    assert check_input(log, _schema(tiny_log)) == [
        "event(s) ['view'] held 43% of the training log's rows and never occur in this log: "
        "counts of events, sessions and active days are lower than in training"
    ]


@pytest.mark.parametrize(
    ("renamed", "columns", "message"),
    [
        (
            {"user_id": "UserID"},
            None,
            r"missing required column\(s\) user_id \('user_id'\); columns present: \['UserID', "
            r".*\]; did you mean 'UserID' for 'user_id'\? \(column names must match exactly\)$",
        ),
        (
            {"revenue": "Revenue"},
            ColumnMap(explicit=("revenue",)),
            r"column\(s\) revenue \('revenue'\) mapped in data.columns are absent; .*; did you "
            r"mean 'Revenue' for 'revenue'\?",
        ),
    ],
    ids=["required", "explicit"],
)
def test_a_missing_column_spelled_otherwise_is_pointed_out(tiny_log, renamed, columns, message):
    with pytest.raises(DataValidationError, match=message):
        load_events(tiny_log.rename(columns=renamed), columns)


def test_a_role_named_otherwise_in_the_api_is_refused_when_absent(tiny_log):
    # Only params.yaml recorded its mappings as explicit: ColumnMap(revenue="amount")
    # on a log without 'amount' trained without revenue features, without a word.
    with pytest.raises(DataValidationError) as err:
        load_events(tiny_log, ColumnMap(revenue="amount"))
    assert str(err.value) == (
        "column(s) revenue ('amount') mapped in data.columns are absent; columns present: "
        "['user_id', 'timestamp', 'event', 'revenue', 'session_id'] (map the role to null if "
        "the log has no such column)"
    )
    assert not load_events(tiny_log.drop(columns="revenue"), ColumnMap()).has_revenue


def test_a_missing_column_with_no_near_name_gets_no_hint(tiny_log):
    with pytest.raises(DataValidationError) as error:
        load_events(tiny_log.rename(columns={"user_id": "visitor"}))
    assert "did you mean" not in str(error.value)


def _with_a_row_from_a_wrong_clock(tiny_log: pd.DataFrame) -> pd.DataFrame:
    """tiny_log plus one view stamped a year after today (a device clock gone wrong)."""
    ahead = pd.Timestamp.now("UTC").tz_localize(None).normalize() + pd.Timedelta(days=366)
    wrong = pd.DataFrame(
        {"user_id": ["b"], "timestamp": [ahead], "event": ["view"], "revenue": [0.0],
         "session_id": ["s9"]}
    )  # fmt: skip
    return pd.concat([tiny_log, wrong], ignore_index=True)


def test_a_row_dated_after_today_is_refused_when_the_snapshot_defaults_to_the_log_end(tiny_log):
    raw = _with_a_row_from_a_wrong_clock(tiny_log)
    with pytest.raises(DataValidationError) as error:
        load_events(raw)
    ahead = raw["timestamp"].iloc[-1]
    assert str(error.value).startswith(
        f"events: 1 row(s) are dated after today ({pd.Timestamp.now('UTC').date()}), the last at "
        f"{ahead.isoformat(sep=' ')}, e.g. row 7: '{ahead.isoformat(sep=' ')}': a wrong clock? "
        f"The snapshot would default to {(ahead + pd.Timedelta(days=1)).date()}"
    )
    # With the snapshot given, the row is excluded and counted like any later row.
    log = load_events(raw, as_of="2024-02-01")
    assert (log.report.at_or_after_as_of, log.report.rows_clean) == (1, 7)


def test_events_up_to_tomorrow_are_accepted(tiny_log):
    # A day of grace: a log exported from a time zone ahead of UTC ends "tomorrow".
    tomorrow = pd.Timestamp.now("UTC").tz_localize(None).normalize() + pd.Timedelta(
        days=1, hours=23
    )
    raw = tiny_log.assign(timestamp=tiny_log["timestamp"].where(tiny_log.index < 6, tomorrow))
    assert load_events(raw).report.last_event == tomorrow.isoformat()


@pytest.mark.parametrize("stamp", ["19970101", "1433221332117"], ids=["cdnow-date", "epoch-ms"])
def test_dates_written_as_digits_in_text_get_the_timestamp_format_hint(stamp):
    raw = pd.DataFrame({"user_id": ["a"], "timestamp": [stamp], "event": ["view"]})
    with pytest.raises(DataValidationError) as error:
        load_events(raw)
    assert str(error.value) == (
        f"column 'timestamp' (timestamp): 1 value(s) cannot be parsed as a timestamp, e.g. "
        f"row 0: '{stamp}' (numbers such as 19970101 or 1433221332117 are not read as dates: "
        "set data.columns.timestamp_format, e.g. '%Y%m%d' or 'unix_ms')"
    )
