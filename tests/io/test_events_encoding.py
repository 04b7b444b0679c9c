"""CSV files that are not UTF-8 (Latin-1, as Excel and older tools export them).

Kaggle's UCI Online Retail ``data.csv`` is ISO-8859-1 ('£' in one byte): DuckDB
stops on it a few lines in. The refusal names the setting that reads it.
"""

import dataclasses

import pytest

from segmentkit.config import ColumnMap, load_config
from segmentkit.errors import ConfigError, DataValidationError
from segmentkit.io.events import load_events

LINES = [
    "user_id,timestamp,event,revenue",
    "u1,2024-01-01 10:00,vue produit,0",
    "u1,2024-01-01 10:05,achat café,2.5",
    "u2,2024-01-02 11:00,achat thé £,3.0",
]


@pytest.fixture
def latin1_csv(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(("\n".join(LINES) + "\n").encode("latin-1"))
    return path


def test_a_latin1_csv_is_refused_with_the_setting_that_reads_it(latin1_csv):
    with pytest.raises(DataValidationError) as err:
        load_events(latin1_csv)
    assert str(err.value) == (
        "events cannot be read as UTF-8 (line 3): a CSV exported as Latin-1 (ISO-8859-1, as "
        "Excel and older tools write it, e.g. '£' or 'é' in one byte)? Set "
        "data.columns.csv_encoding: latin-1 (or utf-16)"
    )


@pytest.mark.parametrize("header", [False, True], ids=["with-header", "headerless"])
def test_csv_encoding_reads_a_latin1_csv(latin1_csv, header):
    columns = ColumnMap(csv_encoding="latin-1")
    if header:
        latin1_csv.write_bytes(("\n".join(LINES[1:]) + "\n").encode("latin-1"))
        columns = dataclasses.replace(columns, csv_header=tuple(LINES[0].split(",")))
    log = load_events(latin1_csv, columns)
    assert log.event_names == ("achat café", "achat thé £", "vue produit")
    assert log.report.rows_clean == 3


def test_an_encoding_no_engine_reads_is_refused(latin1_csv):
    message = r"^data\.columns\.csv_encoding: expected one of \['latin-1', 'utf-16', 'utf-8'\]"
    with pytest.raises(DataValidationError, match=message + r".*got 'cp1252'"):
        load_events(latin1_csv, ColumnMap(csv_encoding="cp1252"))
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"data": {"columns": {"csv_encoding": "cp1252"}}})
