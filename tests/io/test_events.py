import datetime as dt
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import AS_OF
from segmentkit.config import ColumnMap
from segmentkit.errors import DataValidationError, InsufficientDataError
from segmentkit.io.events import (
    check_output_path,
    check_output_target,
    default_as_of,
    load_events,
    to_timestamp,
    write_table,
)


def test_clean_log_report(tiny_log):
    log = load_events(tiny_log)
    report = log.report
    assert report.rows_read == 7
    assert report.rows_clean == 7
    assert report.users == 2
    assert report.duplicate_rows == 0
    assert report.negative_revenue_rows == 1
    assert report.first_event == "2023-12-01T12:00:00"
    assert report.last_event == "2024-01-30T23:50:00"
    assert log.has_revenue and log.has_session_id


def test_missing_required_column_is_named_with_columns_present(tiny_log):
    with pytest.raises(DataValidationError) as err:
        load_events(tiny_log.drop(columns=["event"]))
    message = str(err.value)
    assert "event ('event')" in message
    assert "columns present" in message and "'user_id'" in message


def test_missing_mapped_column_names_the_mapped_name(tiny_log):
    with pytest.raises(DataValidationError, match=r"user_id \('customer'\)"):
        load_events(tiny_log, ColumnMap(user_id="customer"))


def test_unparseable_timestamps_report_sample_rows(tiny_log):
    raw = tiny_log.astype({"timestamp": str})
    raw.loc[2, "timestamp"] = "yesterday"
    raw.loc[5, "timestamp"] = "2024-02-30 10:00"
    with pytest.raises(DataValidationError) as err:
        load_events(raw)
    message = str(err.value)
    assert "2 value(s) cannot be parsed" in message
    assert "row 2: 'yesterday'" in message
    assert "row 5: '2024-02-30 10:00'" in message


def test_non_numeric_revenue_reports_sample_rows(tiny_log):
    raw = tiny_log.astype({"revenue": str})
    raw.loc[1, "revenue"] = "fifty"
    with pytest.raises(
        DataValidationError, match=r"revenue.*1 value\(s\) are not numeric.*row 1: 'fifty'"
    ):
        load_events(raw)


def test_revenue_of_a_wrong_type_is_refused(tiny_log):
    raw = tiny_log.assign(revenue=[True] * len(tiny_log))
    with pytest.raises(DataValidationError, match="expected numbers, got type BOOLEAN"):
        load_events(raw)


def test_timestamp_of_a_wrong_type_is_refused(tiny_log):
    raw = tiny_log.assign(timestamp=range(len(tiny_log)))
    with pytest.raises(DataValidationError, match="timestamp.*got type BIGINT"):
        load_events(raw)


def test_user_id_of_a_wrong_type_is_refused(tiny_log):
    raw = tiny_log.assign(user_id=1.5)
    with pytest.raises(DataValidationError, match="user_id.*expected strings or integers"):
        load_events(raw)


def test_null_user_and_timestamp_rows_are_dropped_and_counted(tiny_log):
    raw = tiny_log.copy()
    raw.loc[0, "user_id"] = None
    raw.loc[6, "timestamp"] = pd.NaT
    log = load_events(raw)
    assert log.report.null_user_id == 1
    assert log.report.null_timestamp == 1
    assert log.report.rows_clean == 5
    assert log.report.users == 1


def test_null_rows_raise_when_on_invalid_is_error(tiny_log):
    raw = tiny_log.copy()
    raw.loc[3, "user_id"] = None
    with pytest.raises(DataValidationError, match=r"'user_id': 1 null value\(s\).*row 3"):
        load_events(raw, on_invalid="error")


def test_unknown_on_invalid_policy(tiny_log):
    with pytest.raises(DataValidationError, match="on_invalid"):
        load_events(tiny_log, on_invalid="ignore")


def test_exact_duplicates_are_dropped_and_counted(tiny_log):
    raw = pd.concat([tiny_log, tiny_log.iloc[[0, 1, 1]]])
    log = load_events(raw)
    assert log.report.duplicate_rows == 3
    assert log.report.rows_clean == 7


def test_events_at_or_after_as_of_are_excluded_and_counted(tiny_log, late_events):
    log = load_events(pd.concat([tiny_log, late_events]), as_of=AS_OF)
    assert log.report.at_or_after_as_of == 3
    assert log.report.rows_clean == 7
    assert log.report.users == 2
    assert log.to_pandas()["timestamp"].max() < AS_OF


def test_nothing_left_after_cleaning(tiny_log):
    with pytest.raises(
        InsufficientDataError, match="no events left after cleaning before as_of 2020-01-01"
    ):
        load_events(tiny_log, as_of="2020-01-01")


def test_fewer_users_than_needed(tiny_log):
    with pytest.raises(InsufficientDataError, match=r"found 2 user\(s\); at least 10"):
        load_events(tiny_log, min_users=10)


def test_unsupported_source_type():
    with pytest.raises(DataValidationError, match="got list"):
        load_events([1, 2, 3])


def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(DataValidationError, match="events file not found"):
        load_events(tmp_path / "none.parquet")
    with pytest.raises(DataValidationError, match="no file matches"):
        load_events(str(tmp_path / "*.parquet"))


def test_unsupported_file_suffix(tmp_path):
    path = tmp_path / "events.xlsx"
    path.write_text("{}")
    with pytest.raises(DataValidationError) as err:
        load_events(path)
    assert str(err.value) == (
        f"events {str(path)!r}: expected Parquet (.parquet), CSV (.csv, .tsv, .txt, .dat) or "
        "JSON lines (.jsonl, .ndjson, .json) files, the text ones optionally gzipped (.gz), got "
        "['.xlsx']; an Excel workbook (UCI's 'Online Retail.xlsx') is not read: save its sheet "
        "as CSV UTF-8, or pass pandas.read_excel(path) as a DataFrame"
    )


def test_an_archive_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "export.zip"
    path.write_bytes(b"PK")
    with pytest.raises(DataValidationError, match=r"'\.zip'\]; an archive is not read: unzip it"):
        load_events(path)


def _spark_output_dir(root, frame: pd.DataFrame):
    """A table as Spark writes it: part files, a _SUCCESS marker, checksums, leftovers."""
    root.mkdir()
    half = len(frame) // 2
    frame.iloc[:half].to_parquet(root / "part-00000.snappy.parquet")
    frame.iloc[half:].to_parquet(root / "part-00001.snappy.parquet")
    (root / "_SUCCESS").write_bytes(b"")
    (root / ".part-00000.snappy.parquet.crc").write_bytes(b"crc")
    (root / "_temporary" / "0").mkdir(parents=True)
    (root / "_temporary" / "0" / "part-00002.snappy.parquet").write_bytes(b"half-written")
    return root


def test_a_directory_is_read_as_its_files_as_spark_writes_them(tiny_log, tmp_path):
    directory = _spark_output_dir(tmp_path / "events", tiny_log)
    expected = load_events(tiny_log).report
    assert load_events(directory).report == expected
    assert load_events(f"{directory}/").report == expected


def test_partition_directories_give_their_column(tiny_log, tmp_path):
    for day, rows in tiny_log.groupby(tiny_log["timestamp"].dt.date):
        part = tmp_path / "events" / f"day={day}"
        part.mkdir(parents=True)
        rows.to_parquet(part / "data.parquet")
    log = load_events(tmp_path / "events")
    assert log.source_columns[-1] == "day"
    assert log.report == load_events(tiny_log).report


def test_gzipped_csv_reads_as_the_csv(tiny_log, tmp_path):
    tiny_log.to_csv(tmp_path / "events.csv.gz", index=False)
    tiny_log.to_csv(tmp_path / "events.csv", index=False)
    gzipped = load_events(tmp_path / "events.csv.gz")
    assert gzipped.report == load_events(tmp_path / "events.csv").report
    pd.testing.assert_frame_equal(
        gzipped.to_pandas(), load_events(tmp_path / "events.csv").to_pandas()
    )


def test_a_directory_mixing_parquet_and_csv_is_refused(tiny_log, tmp_path):
    (tmp_path / "events").mkdir()
    tiny_log.to_csv(tmp_path / "events" / "a.csv", index=False)
    tiny_log.to_parquet(tmp_path / "events" / "b.parquet")
    with pytest.raises(DataValidationError, match=r"CSV and Parquet files mixed; name one kind"):
        load_events(tmp_path / "events")


def test_an_output_inside_the_events_directory_is_refused(tiny_log, tmp_path):
    from segmentkit.io.events import check_output_target

    directory = _spark_output_dir(tmp_path / "events", tiny_log)
    with pytest.raises(DataValidationError, match=r"is inside the events directory"):
        check_output_target(directory / "scores.parquet", directory)
    assert check_output_target(tmp_path / "scores.parquet", directory).name == "scores.parquet"


def test_unreadable_file_is_a_validation_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataValidationError, match="cannot be read"):
        load_events(path)


def test_timezone_strings_are_read_as_utc(tiny_log):
    raw = tiny_log.astype({"timestamp": str})
    raw.loc[0, "timestamp"] = "2024-01-01T12:00:00+02:00"
    log = load_events(raw)
    assert log.to_pandas().loc[0, "timestamp"] == pd.Timestamp("2024-01-01 10:00")


def test_default_as_of_is_midnight_after_the_last_event(tiny_log):
    assert default_as_of(load_events(tiny_log)) == dt.datetime(2024, 1, 31)


def test_to_timestamp_rejects_garbage():
    with pytest.raises(DataValidationError, match="as_of"):
        to_timestamp("not a date")
    assert to_timestamp(pd.Timestamp("2024-01-01 02:00", tz="Europe/Paris")) == dt.datetime(
        2024, 1, 1, 1
    )


def test_write_table_round_trip_and_refuses_unknown_suffix(tmp_path, tiny_log):
    for name in ("out.parquet", "out.csv"):
        path = write_table(tiny_log, tmp_path / "sub" / name)
        assert path.is_file()
        assert not list(path.parent.glob(".*.tmp"))
    with pytest.raises(DataValidationError, match="expected a .parquet or .csv"):
        check_output_path(tmp_path / "out.xlsx")


def test_a_failed_write_leaves_no_file_behind(tmp_path, tiny_log, monkeypatch):
    def full_disk(self, path, **kwargs):
        Path(path).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_table(tiny_log, tmp_path / "scores.parquet")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "out", "message"),
    [
        (lambda d: (d / "scores.parquet").mkdir(), "scores.parquet", "is a directory"),
        (lambda d: (d / "events.csv").write_text("x"), "events.csv/s.parquet", "is a file, not"),
        (lambda d: None, "scores.json", "expected a .parquet or .csv"),
    ],
    ids=["directory", "parent-is-a-file", "suffix"],
)
def test_output_targets_that_cannot_be_written_are_refused(tmp_path, make, out, message):
    make(tmp_path)
    with pytest.raises(DataValidationError, match=message):
        check_output_target(tmp_path / out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any directory")
def test_an_output_directory_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(DataValidationError, match="is not writable"):
        check_output_target(locked / "scores.parquet")


@pytest.mark.parametrize("pattern", ["events.parquet", "ev*.parquet", "sub/../events.parquet"])
def test_an_output_that_is_the_event_log_is_refused(tmp_path, tiny_log, pattern, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    tiny_log.to_parquet(tmp_path / "events.parquet")
    with pytest.raises(DataValidationError, match="is the events file"):
        check_output_target(tmp_path / "events.parquet", pattern)
    assert check_output_target(tmp_path / "scores.parquet", pattern) == tmp_path / "scores.parquet"
    assert check_output_target("new/dir/s.csv", tiny_log) == Path("new/dir/s.csv")


@pytest.mark.parametrize(
    ("pattern", "out", "refused"),
    [
        ("logs/*.parquet", "logs/scores.parquet", True),
        ("logs/part-*.parquet", "logs/../logs/part-scores.parquet", True),
        ("logs/*.parquet", "logs/sub/scores.parquet", False),  # * stays in one directory
        ("logs/*.parquet", "scores.parquet", False),
        ("logs/part-*.parquet", "logs/scores.parquet", False),
        ("logs/**/*.parquet", "logs/sub/scores.parquet", True),  # DuckDB: any depth,
        ("logs/**/*.parquet", "logs/scores.parquet", True),  # none included
    ],
)
def test_an_output_the_events_glob_would_read_next_time_is_refused(
    tmp_path, tiny_log, monkeypatch, pattern, out, refused
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs" / "sub").mkdir(parents=True)
    tiny_log.to_parquet(tmp_path / "logs" / "part-0.parquet")
    if refused:
        with pytest.raises(DataValidationError, match=r"matches the events glob .*next run"):
            check_output_target(out, pattern)
    else:
        assert check_output_target(out, pattern) == Path(out)


def test_duplicate_check_can_be_turned_off(tiny_log):
    raw = pd.concat([tiny_log, tiny_log.iloc[[0]]])
    checked = load_events(raw)
    assert checked.report.duplicates_checked and checked.report.duplicate_rows == 1
    unchecked = load_events(raw, check_duplicates=False)
    assert not unchecked.report.duplicates_checked
    assert unchecked.report.duplicate_rows == 0
    assert unchecked.report.rows_clean == 8  # the copy stays: the caller vouched for the log


def test_every_count_of_the_report_comes_from_one_scan_of_a_file(tmp_path, tiny_log):
    # Nulls, late rows, refunds and duplicates together in a Parquet file.
    raw = pd.concat([tiny_log, tiny_log.iloc[[1, 5, 5]]], ignore_index=True)
    raw.loc[2, "user_id"] = None
    raw = pd.concat(
        [
            raw,
            pd.DataFrame(
                {
                    "user_id": ["a"],
                    "timestamp": [AS_OF],
                    "event": ["view"],
                    "revenue": [0.0],
                    "session_id": ["s9"],
                }
            ),
        ]
    )
    path = tmp_path / "events.parquet"
    raw.to_parquet(path)
    report = load_events(path, as_of=AS_OF).report
    assert (report.rows_read, report.null_user_id, report.at_or_after_as_of) == (11, 1, 1)
    assert (report.duplicate_rows, report.rows_clean, report.negative_revenue_rows) == (3, 6, 1)
    assert report.users == 2
    clean = load_events(path, as_of=AS_OF).to_pandas()
    expected = tiny_log.drop(index=2).sort_values(["user_id", "timestamp", "event"])
    pd.testing.assert_frame_equal(
        clean[expected.columns].reset_index(drop=True),
        expected.reset_index(drop=True),
        check_dtype=False,
    )


def _as_parquet_file(frame, tmp_path):
    path = tmp_path / "events.parquet"
    frame.to_parquet(path)
    return path


@pytest.mark.parametrize(
    "make_source", [lambda f, p: f, _as_parquet_file], ids=["dataframe", "parquet"]
)
def test_duplicated_refunds_are_counted_once(tiny_log, tmp_path, make_source):
    # The refund (row 5) three times and the first view twice: 3 copies dropped.
    raw = pd.concat([tiny_log, tiny_log.iloc[[5, 5, 0]]], ignore_index=True)
    log = load_events(make_source(raw, tmp_path))
    assert (log.report.duplicate_rows, log.report.rows_clean) == (3, 7)
    assert log.report.negative_revenue_rows == 1
    clean = log.to_pandas()
    pd.testing.assert_frame_equal(
        clean[tiny_log.columns].reset_index(drop=True),
        tiny_log.sort_values(["user_id", "timestamp", "event"]).reset_index(drop=True),
        check_dtype=False,
    )


def test_rows_that_only_share_a_hash_are_all_kept(tiny_log):
    # A hash collision between different rows must not drop either: simulate one by
    # declaring the hashes of two distinct rows "repeated".
    from segmentkit.io.events import _drop_duplicates, connect

    con = connect()
    con.register("raw", tiny_log)
    typed = "user_id, timestamp, event, revenue, session_id"
    row_hash = "hash(user_id, timestamp, event, revenue, session_id)"
    hashes = con.execute(f"SELECT {row_hash} AS h FROM raw WHERE event = 'view'").fetchnumpy()
    repeated = np.sort(np.asarray(hashes["h"], dtype=np.uint64))
    sql, dropped, refunds = _drop_duplicates(con, "raw", typed, "true", row_hash, repeated)
    assert (dropped, refunds) == (0, 0)
    assert con.execute(f"SELECT count(*) FROM ({sql})").fetchall()[0][0] == len(tiny_log)


def test_event_names_of_the_clean_log_are_known(tiny_log, late_events):
    log = load_events(pd.concat([tiny_log, late_events]), as_of=AS_OF)
    assert log.event_names == ("add_to_cart", "purchase", "refund", "view")


def test_a_log_with_many_duplicates_is_copied_once(tiny_log, tmp_path, monkeypatch):
    import segmentkit.io.events as events

    raw = pd.concat([tiny_log, tiny_log.iloc[[5, 5, 0]]], ignore_index=True)
    path = _as_parquet_file(raw, tmp_path)

    def kind(log):
        query = f"SELECT table_type FROM information_schema.tables WHERE table_name = '{log.table}'"
        return log.con.execute(query).fetchall()[0][0]

    in_view = load_events(path)  # two repeated hashes: the Parquet file is read in place
    monkeypatch.setattr(events, "MAX_REPEATS_IN_VIEW", 1)
    copied = load_events(path)
    assert (kind(in_view), kind(copied)) == ("VIEW", "LOCAL TEMPORARY")
    assert copied.report == in_view.report
    pd.testing.assert_frame_equal(copied.to_pandas(), in_view.to_pandas())


def test_users_are_counted_while_loading_only_when_min_users_asks(tiny_log, late_events):
    raw = pd.concat([tiny_log, late_events], ignore_index=True)
    counted = load_events(raw, as_of=AS_OF, min_users=2)
    deferred = load_events(raw, as_of=AS_OF)
    assert counted.users_counted and not deferred.users_counted
    # Counted on first use: the same report either way.
    assert deferred.report == counted.report
    assert deferred.report.users == 2


def test_a_feature_table_over_every_clean_event_gives_the_log_its_users(tiny_log):
    from segmentkit.features import build_features, build_features_many

    eager = load_events(tiny_log, min_users=2).report
    for build in (
        lambda log: build_features(log, AS_OF),
        lambda log: build_features_many(log, [AS_OF - dt.timedelta(days=7), AS_OF])[-1],
    ):
        log = load_events(tiny_log)
        table = build(log)
        # The log's clean table is gone: the report can only come from the features.
        log.con.execute(f"ALTER TABLE {log.table} RENAME TO gone")
        assert log.report == eager
        assert log.report.users == len(table)


def test_a_feature_table_before_the_last_event_leaves_the_count_to_the_log(tiny_log):
    from segmentkit.features import build_features

    log = load_events(tiny_log)
    last = dt.datetime.fromisoformat(log.last_event)
    early = build_features(log, last - dt.timedelta(days=40))  # one of the two users
    assert len(early) == 1
    assert log.report.users == 2


@pytest.mark.parametrize("cores", [1, 2])
def test_duplicates_are_found_in_both_halves_of_the_hash_range(monkeypatch, cores):
    import segmentkit.io.events as events

    rng = np.random.default_rng(3)
    rows = 400
    days = pd.to_timedelta(rng.integers(0, 9, rows), "D")
    raw = pd.DataFrame(
        {
            "user_id": rng.choice(["a", "b", "c", "d"], rows),
            "timestamp": pd.Timestamp("2024-01-01") + days,
            "event": rng.choice(["view", "purchase"], rows),
        }
    )  # 72 possible rows: most rows are exact duplicates, hashed all over the range
    monkeypatch.setattr(events, "usable_cores", lambda: cores)
    report = load_events(raw).report
    distinct = len(raw.drop_duplicates())
    assert (report.rows_clean, report.duplicate_rows) == (distinct, rows - distinct)


@pytest.mark.parametrize("size", [0, 1, 2, 5_000, 300_000])
def test_repeated_hashes_match_a_sort_of_the_values(size):
    from segmentkit.io.events import _repeated

    rng = np.random.default_rng(size)
    top_bit = np.uint64((size % 2) << 63)  # both halves of the hash range
    values = rng.integers(0, 2**63, size, dtype=np.int64).view(np.uint64) | top_bit
    if size > 10:
        values[: size // 10] = rng.choice(values[size // 2 :], size // 10)  # some twice or more
    ordered = np.sort(values)
    expected = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    assert np.array_equal(_repeated(values.copy()), expected)


def test_repeated_values_in_one_crowded_bucket_and_sharing_low_bits():
    from segmentkit.io import events

    rng = np.random.default_rng(3)
    # More copies of one value than the table of a bucket holds (sorted instead) ...
    crowded = np.full(events._TABLE_SLOTS, 2**62 + 5, dtype=np.uint64)
    # ... and values with equal low bits: they probe past each other in the table.
    same_low_bits = (np.arange(1, 40, dtype=np.uint64) << np.uint64(50)) | np.uint64(7)
    values = np.concatenate(
        [
            crowded,
            same_low_bits,
            same_low_bits[::3],
            rng.integers(0, 2**63, 20_000, dtype=np.int64).view(np.uint64),
        ]
    )
    rng.shuffle(values)
    ordered = np.sort(values)
    expected = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    assert expected.size >= 14
    assert np.array_equal(events._repeated(values.copy()), expected)
