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


def _refusal(source) -> str:
    """The message ``load_events`` refuses ``source`` with."""
    with pytest.raises(DataValidationError) as err:
        load_events(source)
    return str(err.value)


def test_a_latin1_csv_is_refused_with_the_setting_that_reads_it(latin1_csv):
    assert _refusal(latin1_csv) == (
        f"events cannot be read as UTF-8 ({latin1_csv}, line 3): a CSV exported as Latin-1 "
        "(ISO-8859-1, as Excel and older tools write it, e.g. '£' or 'é' in one byte)? Set "
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


def _export(tmp_path, last_line: str, rows: int = 25_000):
    """``rows`` well-formed lines, then ``last_line``; DuckDB types the columns from the
    first 20,480 lines, so with more, the last one is met only while reading."""
    lines = [LINES[0]] + [
        f"u{i % 50},2024-01-01 10:{i % 60:02d},view,{i % 7}.5" for i in range(rows)
    ]
    path = tmp_path / "export.csv"
    path.write_text("\n".join([*lines, last_line]) + "\n")
    return path


@pytest.mark.parametrize(
    "last_line, said",
    [
        (
            LINES[0],
            "line 25002 repeats the header ('user_id,timestamp,event,revenue'): CSV files "
            "concatenated with their headers? Remove the repeated header lines, or give the "
            "files as a glob or a directory, each read with its own header",
        ),
        (
            "u1,2024-06-01 00:00,view,n/a",
            "line 25002: column 'revenue' holds 'n/a', where its first rows hold DOUBLE values (a "
            "CSV column is typed from its first rows): a stray value, such as 'n/a' for a "
            "missing one? Blank it, or correct it",
        ),
        (
            "u1,2024-06-01 00:00,view,12,50",
            "line 25002 has 5 fields where the header has 4 ('u1,2024-06-01 00:00,view,12,50'): "
            "a delimiter inside a value (a decimal comma, a comma in a product name) that is not "
            "quoted? Quote such values, or export with another delimiter",
        ),
    ],
    ids=["header-again", "stray-value", "unquoted-comma"],
)
def test_a_line_the_csv_reader_stops_on_is_named_with_the_reason(tmp_path, last_line, said):
    path = _export(tmp_path, last_line)
    assert _refusal(path) == f"events: {path}, {said}"


def test_a_csv_whose_first_lines_split_unevenly_is_named_with_the_reason(tmp_path):
    path = _export(tmp_path, "u1,2024-06-01 00:00,view,12,50", rows=3000)
    assert _refusal(path) == (
        f"events: {path} cannot be split into columns: no delimiter (',', ';', '|', tab) gives "
        "its first lines one number of fields. A delimiter inside a value (a decimal comma, a "
        "comma in a product name) that is not quoted? Quote such values, or export with "
        "another delimiter"
    )


def test_values_met_within_the_first_lines_get_the_contracts_messages(tmp_path):
    # Typed from a sample that holds them, the columns are text: validation names the rows.
    with pytest.raises(DataValidationError, match=r"row 3000: 'n/a'; expected plain numbers"):
        load_events(_export(tmp_path, "u1,2024-06-01 00:00,view,n/a", rows=3000))


def test_the_header_again_within_the_first_lines_is_named_too(tmp_path):
    assert _refusal(_export(tmp_path, LINES[0], rows=3000)) == (
        "column 'timestamp' (timestamp): 1 value(s) cannot be parsed as a timestamp, e.g. "
        "row 3000: 'timestamp'; the column's own name as a value is the header line again: "
        "CSV files concatenated with their headers? Remove the repeated header lines, or give "
        "the files as a glob or a directory, each read with its own header"
    )


#: Excel's CSV in many European locales: "sep=;" first, ';' between fields, decimal commas.
EUROPEAN_LINES = [
    "sep=;",
    "user_id;timestamp;event;revenue;quantity",
    "u1;2024-01-01 10:00;view;0;1",
    "u1;2024-01-01 10:05;purchase;12,5;2",
    "u2;2024-01-02 11:00;purchase;-3,25;0,5",
    "u2;2024-01-03 11:00;purchase;7;1",
]


@pytest.fixture
def european_csv(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("\n".join(EUROPEAN_LINES) + "\n")
    return path


def test_decimal_commas_are_refused_with_the_setting_that_reads_them(european_csv):
    assert _refusal(european_csv) == (
        "column 'revenue' (revenue): 2 value(s) are not numeric, e.g. row 1: '12,5', row 2: "
        "'-3,25'; expected plain numbers such as -1234.5 (no thousands separators, decimal "
        "commas or currency signs); for decimal commas set data.columns.decimal_comma: true"
    )


def test_decimal_comma_reads_revenue_and_quantity(european_csv):
    log = load_events(european_csv, ColumnMap(quantity="quantity", decimal_comma=True))
    # revenue is the unit price times the quantity: 12.5 x 2, -3.25 x 0.5, 7 x 1.
    assert log.to_pandas()["revenue"].tolist() == [0.0, 25.0, -1.625, 7.0]


def test_decimal_comma_leaves_a_thousands_dot_unread(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("user_id;timestamp;event;revenue\nu1;2024-01-01 10:00;purchase;1.234,5\n")
    with pytest.raises(DataValidationError) as err:
        load_events(path, ColumnMap(decimal_comma=True))
    assert str(err.value) == (
        "column 'revenue' (revenue): 1 value(s) are not numeric, e.g. row 0: '1.234,5'; "
        "expected plain numbers such as -1234.5 (no thousands separators, decimal commas or "
        "currency signs)"
    )


def test_decimal_comma_must_be_true_or_false(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  columns:\n    decimal_comma: 'yes'\n")
    with pytest.raises(ConfigError, match=r"decimal_comma: expected true or false, got 'yes'"):
        load_config(path)
