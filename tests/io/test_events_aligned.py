"""Text files of columns aligned by spaces (CDNOW's ``CDNOW_master.txt``).

No delimiter splits them, so a CSV reader sees one column per line. Their fields are
split on runs of spaces or tabs.
"""

import dataclasses

import pytest

from segmentkit.errors import DataValidationError
from segmentkit.io.events import load_events


def test_a_headerless_file_is_read_with_its_names(cdnow_txt, cdnow_columns):
    log = load_events(cdnow_txt, cdnow_columns)
    assert log.source_columns == ("customer", "date", "cds", "dollars")
    rows = log.to_pandas()
    assert len(rows) == 6 and log.report.users == 3
    # Ids keep their zeros; each line is a purchase on its day.
    assert rows.groupby("user_id")["revenue"].sum().round(2).to_dict() == {
        "00001": 11.77,
        "00002": 89.0,
        "00003": 61.06,
    }
    assert rows["timestamp"].max().isoformat() == "1997-04-02T00:00:00"


def test_a_header_line_names_the_columns(cdnow_txt, cdnow_columns, tmp_path):
    path = tmp_path / "with_header.txt"
    path.write_bytes(b"customer\tdate  cds dollars\r\n" + cdnow_txt.read_bytes())
    expected = load_events(cdnow_txt, cdnow_columns).to_pandas()
    log = load_events(path, dataclasses.replace(cdnow_columns, csv_header=None))
    assert log.source_columns == ("customer", "date", "cds", "dollars")
    assert log.to_pandas().equals(expected)


def test_without_names_the_values_read_as_names_point_to_csv_header(cdnow_txt, cdnow_columns):
    with pytest.raises(DataValidationError) as err:
        load_events(cdnow_txt, dataclasses.replace(cdnow_columns, csv_header=None))
    assert str(err.value).startswith(
        "missing required column(s) user_id ('customer'), timestamp ('date'); columns present: "
        "['00001', '19970101', '1', '11.77']; column names such as '00001', '19970101', '1', "
    )
    assert str(err.value).endswith("name their 4 columns in order in data.columns.csv_header")


def test_names_of_another_number_than_the_fields_are_refused(cdnow_txt, cdnow_columns):
    columns = dataclasses.replace(cdnow_columns, csv_header=("customer", "date", "dollars"))
    with pytest.raises(DataValidationError) as err:
        load_events(cdnow_txt, columns)
    assert str(err.value) == (
        "data.columns.csv_header names 3 column(s) ['customer', 'date', 'dollars'], but the "
        f"first line of {cdnow_txt} has 4 field(s): ['00001', '19970101', '1', '11.77']; "
        "expected one name per field, in order"
    )


def test_a_line_of_another_number_of_fields_is_refused(cdnow_txt, cdnow_columns):
    lines = cdnow_txt.read_bytes() + b" 00004 19970405  1   9.99 gift card\r\n"
    cdnow_txt.write_bytes(lines)
    with pytest.raises(DataValidationError) as err:
        load_events(cdnow_txt, cdnow_columns)
    assert str(err.value) == (
        f"events: 1 line(s) of {cdnow_txt} (columns aligned by spaces) have another number of "
        "fields than the 4 names ['customer', 'date', 'cds', 'dollars'], e.g. "
        "'00004 19970405 1 9.99 gift card': a value holding a space?"
    )
