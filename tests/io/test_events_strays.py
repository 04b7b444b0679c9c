"""Stray rows: a placeholder date (1970-01-01) or a wrong clock far away from the log.

Taobao's UserBehavior.csv, nine days of 2017, holds a few rows of 1902, 1970 and 2037.
Kept, they made their users decades old and moved the default snapshot to 2037.
"""

import datetime as dt
import warnings

import pandas as pd
import pytest

from segmentkit.errors import DataValidationError, SegmentkitWarning
from segmentkit.features import build_features
from segmentkit.io.events import STRAY_GAP_DAYS, find_stray_rows, load_events

AS_OF = "2025-01-01"


def _with(log: pd.DataFrame, *stamps: str, user: str = "u3") -> pd.DataFrame:
    extra = pd.DataFrame(
        {
            "user_id": user,
            "timestamp": pd.to_datetime(list(stamps), format="ISO8601"),
            "event": "view",
        }
    )
    return pd.concat([log, extra], ignore_index=True)


def _quiet_load(frame: pd.DataFrame, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = load_events(frame, **kwargs)
    return log, [str(w.message) for w in caught if issubclass(w.category, SegmentkitWarning)]


def test_stray_rows_are_dropped_counted_and_named(nine_days):
    log, said = _quiet_load(_with(nine_days, "1970-01-01", "1902-05-07 22:32:46"), as_of=AS_OF)
    report = log.report
    assert report.stray_timestamp == 2 and report.rows_clean == 2160
    assert (report.first_event, report.last_event) == ("2024-12-23T00:00:00", "2024-12-31T23:00:00")
    assert said == [
        "dropped 2 of 2,162 rows (0.09%) dated '1902-05-07', '1970-01-01' (column 'timestamp'), "
        "365 or more days without any event away from the rest of the log (2024-12-23 to "
        "2024-12-31): placeholder dates or a wrong clock; they count in no feature, segment or "
        "label (data.on_invalid: error refuses such a log instead)"
    ]
    # The user of the strays is described as if they had never been there.
    pd.testing.assert_frame_equal(
        build_features(log, AS_OF), build_features(load_events(nine_days, as_of=AS_OF), AS_OF)
    )


def test_a_stray_after_the_log_does_not_move_the_default_snapshot(nine_days):
    # Kept, a row of 2037 (before today in no year soon) would be refused as future-dated;
    # the stray is dropped instead and the snapshot is the midnight after the log.
    log, said = _quiet_load(_with(nine_days, "2037-04-02 06:53:20"))
    assert log.report.stray_timestamp == 1 and log.report.last_event == "2024-12-31T23:00:00"
    assert len(said) == 1 and "'2037-04-02'" in said[0]


def test_stray_rows_are_refused_when_invalid_rows_are_errors(nine_days):
    with pytest.raises(DataValidationError) as err:
        load_events(_with(nine_days, "1970-01-01"), as_of=AS_OF, on_invalid="error")
    assert str(err.value) == (
        "events: 1 of 2,161 rows (0.05%) dated '1970-01-01' (column 'timestamp'), 365 or more "
        "days without any event away from the rest of the log (2024-12-23 to 2024-12-31): "
        "placeholder dates or a wrong clock? data.on_invalid: drop drops and counts them"
    )


@pytest.mark.parametrize(
    "stamps",
    [
        # Three rows are 0.14% of the log: more than strays, a part of it.
        ["1970-01-01", "1970-01-02", "1970-01-03"],
        # 364 days without any event: not a year's silence.
        ["2023-12-24"],
    ],
    ids=["too-many", "gap-under-a-year"],
)
def test_rows_beyond_a_year_of_silence_in_numbers_or_closer_are_kept(nine_days, stamps):
    log, said = _quiet_load(_with(nine_days, *stamps), as_of=AS_OF)
    assert log.report.stray_timestamp == 0 and log.report.rows_clean == 2160 + len(stamps)
    assert log.report.first_event == pd.Timestamp(stamps[0]).isoformat()
    assert said == []


def test_a_small_log_has_no_strays(tiny_log):
    # One row of 8 is no "tiny share": with fewer than 1,000 rows, nothing is a stray.
    log = load_events(_with(tiny_log, "1970-01-01", user="b"))
    assert log.report.stray_timestamp == 0 and log.report.first_event == "1970-01-01T00:00:00"


def _days(pieces: dict[str, tuple[int, int]]) -> dict[dt.date, int]:
    """Days with rows: for each first day, (days in a row, rows per day)."""
    out = {}
    for first, (n_days, rows) in pieces.items():
        start = dt.date.fromisoformat(first)
        out.update({start + dt.timedelta(days=i): rows for i in range(n_days)})
    return out


def test_find_stray_rows_keeps_the_piece_with_most_rows():
    # Strays on both sides, several days each: the middle piece is the log.
    strays = find_stray_rows(
        _days({"2001-01-01": (2, 1), "2024-01-01": (30, 1000), "2030-06-01": (3, 2)})
    )
    assert (strays.first_day, strays.last_day) == (dt.date(2024, 1, 1), dt.date(2024, 1, 30))
    assert strays.rows == 8 and len(strays.days) == 5
    assert strays.bulk_bounds() == (dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 31))


def test_find_stray_rows_needs_a_whole_year_without_events():
    exactly = _days({"2023-01-01": (1, 1), "2024-01-01": (100, 100)})
    # 2023-01-01 to 2024-01-01: 364 empty days between them, then 365 a day earlier.
    assert (dt.date(2024, 1, 1) - dt.date(2023, 1, 1)).days - 1 == STRAY_GAP_DAYS - 1
    assert find_stray_rows(exactly) is None
    one_more = _days({"2022-12-31": (1, 1), "2024-01-01": (100, 100)})
    assert find_stray_rows(one_more).rows == 1


def test_find_stray_rows_takes_the_later_of_equal_pieces():
    strays = find_stray_rows(_days({"2020-01-01": (10, 1), "2024-01-01": (10, 1)}))
    assert strays is None  # 10 of 20 rows: no piece is tiny
    assert find_stray_rows({}) is None and find_stray_rows({dt.date(2024, 1, 1): 5}) is None


def test_the_default_snapshot_does_not_follow_a_few_rows_after_a_silence(nine_days):
    from segmentkit.io.events import default_as_of

    log = load_events(_with(nine_days, "2025-01-16 04:00"))
    with pytest.raises(DataValidationError) as err:
        default_as_of(log)
    assert str(err.value) == (
        "events: the last 1 row(s), on '2025-01-16', come 15 day(s) without any event after "
        "the rest of the log (2024-12-23 to 2024-12-31), which never went more than 0 day(s) "
        "without one: a wrong clock or a stray export? The snapshot would default to "
        "2025-01-17, the midnight after them, and every user would look inactive since. Set "
        "data.as_of (--as-of) to the log's real end, e.g. 2025-01-01: rows at or after it are "
        "excluded and counted"
    )
    # As told: the row is excluded and counted, and the snapshot is the log's end.
    told = load_events(_with(nine_days, "2025-01-16 04:00"), as_of="2025-01-01")
    assert told.report.at_or_after_as_of == 1 and default_as_of(told) == dt.datetime(2025, 1, 1)


@pytest.mark.parametrize(
    "stamps",
    [
        ["2025-01-07"],  # 6 days without events: a pause, not a silence
        ["2025-01-16"] * 3,  # 3 rows are 0.14% of the log: its end
    ],
    ids=["short-pause", "too-many"],
)
def test_a_short_pause_or_a_real_end_keeps_the_default_snapshot(nine_days, stamps):
    from segmentkit.io.events import default_as_of

    log = load_events(_with(nine_days, *[f"{s} 0{i}:00" for i, s in enumerate(stamps)]))
    expected = pd.Timestamp(stamps[-1]).normalize() + pd.Timedelta(days=1)
    assert default_as_of(log) == expected.to_pydatetime()


def test_a_tail_after_a_silence_the_log_already_knew_is_its_end(nine_days):
    from segmentkit.io.events import default_as_of

    # The log went 21 days without events once: a tail 8 days after its last day is no stray.
    earlier = nine_days.assign(timestamp=nine_days["timestamp"] - pd.Timedelta(days=30))
    log = load_events(pd.concat([earlier, _with(nine_days, "2025-01-09 10:00")]))
    assert default_as_of(log) == dt.datetime(2025, 1, 10)
