"""CSV files without a header row (Taobao's ``UserBehavior.csv``): ``data.columns.csv_header``.

Read with a header (the default), such a file loses its first line to column names
that are values; the refusal says so. Named in order, every line is data.
"""

import dataclasses

import pandas as pd
import pytest

from segmentkit.config import load_config
from segmentkit.errors import ConfigError, DataValidationError
from segmentkit.io.events import load_events

FIRST_LINE = "['1', '2268318', '2520377', 'pv', '1511544070']"


def _lines(path):
    return path.read_text().splitlines()


def test_a_headerless_csv_reads_every_line_as_data(taobao_csv, taobao_columns):
    log = load_events(taobao_csv, taobao_columns)
    assert log.report.rows_read == 5 and log.report.users == 2
    # The first line is an event, not the header: user 1's first view (1511544070 s).
    assert log.report.first_event == "2017-11-24T17:21:10"
    assert log.source_columns == taobao_columns.csv_header
    assert log.to_pandas().groupby("user_id")["event"].agg(list).to_dict() == {
        1: ["pv", "pv", "buy"],
        2: ["pv", "cart"],
    }


def test_headerless_reads_as_the_same_file_with_its_header(taobao_csv, taobao_columns, tmp_path):
    with_header = tmp_path / "named.csv"
    with_header.write_text("user,item,category,behavior,time\n" + taobao_csv.read_text())
    named = load_events(with_header, dataclasses.replace(taobao_columns, csv_header=None))
    log = load_events(taobao_csv, taobao_columns)
    assert log.report == named.report
    pd.testing.assert_frame_equal(log.to_pandas(), named.to_pandas())


def test_headerless_partitions_and_gzip_keep_every_line(taobao_csv, taobao_columns, tmp_path):
    frame = pd.Series(_lines(taobao_csv)).str.split(",", expand=True)
    for day, rows in (("1", frame.iloc[:3]), ("2", frame.iloc[3:])):
        (tmp_path / "logs" / f"day={day}").mkdir(parents=True)
        rows.to_csv(tmp_path / "logs" / f"day={day}" / "part.csv.gz", header=False, index=False)
    log = load_events(tmp_path / "logs", taobao_columns)
    assert log.report == load_events(taobao_csv, taobao_columns).report
    assert log.source_columns == (*taobao_columns.csv_header, "day")


def test_without_csv_header_names_that_are_values_are_pointed_at(taobao_csv, taobao_columns):
    with pytest.raises(DataValidationError) as err:
        load_events(taobao_csv, dataclasses.replace(taobao_columns, csv_header=None))
    assert str(err.value) == (
        "missing required column(s) user_id ('user'), timestamp ('time'), event ('behavior'); "
        "columns present: ['1', '2268318', '2520377', 'pv', '1511544070']; column names such "
        "as '1', '2268318', '2520377', ... look like values, not names: was a first line of "
        "data read as the header? For CSV files without a header row, name their 5 columns "
        "in order in data.columns.csv_header"
    )


def test_names_that_are_not_values_get_no_header_hint(tiny_log):
    with pytest.raises(DataValidationError) as err:
        load_events(tiny_log.rename(columns={"timestamp": "when", "event": "2024"}))
    message = str(err.value)
    assert message.startswith("missing required column(s) timestamp ('timestamp'), event")
    assert "look like values" in message  # '2024' is a value...
    with pytest.raises(DataValidationError) as err:
        load_events(tiny_log.rename(columns={"timestamp": "when"}))
    assert "look like values" not in str(err.value)  # ...'when' is a name


@pytest.mark.parametrize(
    "names",
    [("user", "item", "category", "behavior"), ("a", "b", "c", "d", "e", "f")],
    ids=["too-few", "too-many"],
)
def test_a_csv_header_of_another_length_is_refused(taobao_csv, taobao_columns, names):
    with pytest.raises(DataValidationError) as err:
        load_events(taobao_csv, dataclasses.replace(taobao_columns, csv_header=names))
    assert str(err.value) == (
        f"data.columns.csv_header names {len(names)} column(s) {list(names)}, but the first "
        f"line of {taobao_csv} has 5 field(s): {FIRST_LINE}; expected one name per field, "
        "in order"
    )


def test_a_csv_header_for_a_file_with_its_header_row_is_refused(
    taobao_csv, taobao_columns, tmp_path
):
    # Read as data, the header row would be a user 'User' with an unparseable time.
    source = tmp_path / "named.csv"
    source.write_text("User,Item,Category,Behavior,Time\n" + taobao_csv.read_text())
    with pytest.raises(DataValidationError) as err:
        load_events(source, taobao_columns)
    assert str(err.value) == (
        f"data.columns.csv_header is set, but the first line of {source} is a header row "
        "(['User', 'Item', 'Category', 'Behavior', 'Time']) that would be read as data; set "
        "csv_header to null to read the names from the file"
    )


def test_csv_header_is_not_used_for_sources_that_name_their_columns(
    taobao_csv, taobao_columns, tmp_path
):
    # A bundle trained on a headerless CSV scores a Parquet export of the same columns.
    frame = pd.read_csv(taobao_csv, names=list(taobao_columns.csv_header))
    frame.to_parquet(tmp_path / "events.parquet")
    expected = load_events(taobao_csv, taobao_columns).report
    assert load_events(tmp_path / "events.parquet", taobao_columns).report == expected
    assert load_events(frame, taobao_columns).report == expected


def test_csv_header_names_the_columns_of_csv_files_only(taobao_csv, taobao_columns):
    # pandas' read_csv(header=None) numbers the columns: not a file csv_header can name.
    frame = pd.read_csv(taobao_csv, header=None).rename(columns=str)
    with pytest.raises(DataValidationError) as err:
        load_events(frame, taobao_columns)
    assert str(err.value).endswith(
        "; column names such as '0', '1', '2', ... look like values, not names: "
        "data.columns.csv_header names the columns of CSV files only"
    )


@pytest.mark.parametrize(
    "names, message",
    [
        ((), r"expected the names of a headerless CSV's columns in order"),
        (("user", " ", "time"), r"expected the names of a headerless CSV's columns in order"),
        (("user", "time", "user"), r"names 'user' twice; expected each column named once"),
    ],
    ids=["empty", "blank", "twice"],
)
def test_a_csv_header_that_cannot_name_columns_is_refused(
    taobao_csv, taobao_columns, names, message
):
    with pytest.raises(DataValidationError, match=r"^data\.columns\.csv_header: " + message):
        load_events(taobao_csv, dataclasses.replace(taobao_columns, csv_header=names))
    with pytest.raises(ConfigError, match=r"^data\.columns\.csv_header: " + message):
        load_config(overrides={"data": {"columns": {"csv_header": list(names)}}})


def test_params_yaml_reads_csv_header_as_a_tuple():
    config = load_config(overrides={"data": {"columns": {"csv_header": ["user", "time"]}}})
    assert config.data.columns.csv_header == ("user", "time")
