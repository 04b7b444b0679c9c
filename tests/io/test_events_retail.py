"""Retail transaction tables as they come: order lines, float ids, dates only, bad formats.

The shapes are those of public retail logs (a CDNOW-like purchase log with dates
only, a UCI-Online-Retail-like table of invoice lines with returns and rows without
a customer), mapped through ``data.columns`` with ``event: null``.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

from segmentkit.config import ColumnMap, load_config
from segmentkit.errors import ConfigError, DataValidationError, SegmentkitWarning
from segmentkit.io.events import load_events

RETAIL = ColumnMap(
    user_id="CustomerID",
    timestamp="InvoiceDate",
    event=None,
    revenue="Amount",
    explicit=("revenue",),
)
CDNOW = ColumnMap(
    user_id="customer_id", timestamp="date", event=None, revenue="amount", explicit=("revenue",)
)


def _order_lines() -> pd.DataFrame:
    """Two invoices of customer 12346 and one without a customer (a quarter of the rows).

    Invoice 536365 has three lines, two of them different products at the same amount;
    C536365 cancels one line two days later; invoice 536367 has no customer id.
    """
    return pd.DataFrame(
        {
            "InvoiceNo": ["536365", "536365", "536365", "C536365", "536366", "536367"],
            "StockCode": ["85123A", "71053", "84406B", "71053", "22752", "21730"],
            "Quantity": [6, 6, 8, -6, 2, 6],
            "InvoiceDate": [
                "2010-12-01 08:26:00",
                "2010-12-01 08:26:00",
                "2010-12-01 08:26:00",
                "2010-12-03 10:00:00",
                "2010-12-05 09:01:00",
                "2010-12-05 09:02:00",
            ],
            "UnitPrice": [2.55, 2.55, 2.75, 2.55, 7.65, 4.25],
            "CustomerID": [12346.0, 12346.0, 12346.0, 12346.0, 12347.0, np.nan],
            "Amount": [15.3, 15.3, 22.0, -15.3, 15.3, 25.5],
        }
    )


def _write(frame: pd.DataFrame, tmp_path, kind: str):
    if kind == "frame":
        return frame
    path = tmp_path / f"log.{kind}"
    if kind == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("kind", ["frame", "csv", "parquet"])
def test_order_lines_at_one_time_are_kept_and_float_ids_read_as_integers(tmp_path, kind):
    source = _write(_order_lines(), tmp_path, kind)
    with pytest.warns(SegmentkitWarning, match=r"dropped 1 of 6 rows \(16.7%\) without a user id"):
        log = load_events(source, RETAIL)
    report = log.report
    # The two lines of one invoice at the same amount are different products: kept.
    assert (report.duplicate_rows, report.null_user_id, report.rows_clean) == (0, 1, 5)
    assert report.negative_revenue_rows == 1
    clean = log.to_pandas()
    assert clean["user_id"].tolist() == [12346, 12346, 12346, 12346, 12347]
    assert pd.api.types.is_integer_dtype(clean["user_id"])
    assert set(clean["event"]) == {"purchase"}
    assert clean["revenue"].sum() == pytest.approx(15.3 + 15.3 + 22.0 - 15.3 + 15.3)


@pytest.mark.parametrize("kind", ["frame", "parquet"])
def test_rows_equal_in_every_column_are_duplicates(tmp_path, kind):
    lines = _order_lines()
    source = _write(pd.concat([lines, lines.iloc[[0, 4]]], ignore_index=True), tmp_path, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SegmentkitWarning)
        report = load_events(source, RETAIL).report
    assert (report.duplicate_rows, report.rows_clean) == (2, 5)


def test_rows_equal_in_the_mapped_columns_only_are_duplicates_when_nothing_else_differs():
    lines = _order_lines().drop(columns=["InvoiceNo", "StockCode", "Quantity", "UnitPrice"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SegmentkitWarning)
        report = load_events(lines, RETAIL).report
    # Without the product columns the two 15.30 lines of invoice 536365 are one row twice.
    assert (report.duplicate_rows, report.rows_clean) == (1, 4)


@pytest.mark.parametrize(
    "bad",
    [[12346.5, 12347.0], [np.inf, 12347.0], [1e30, 12347.0]],
    ids=["fraction", "infinite", "beyond-64-bits"],
)
def test_float_user_ids_that_are_not_whole_numbers_are_refused(bad):
    raw = pd.DataFrame({"CustomerID": bad, "InvoiceDate": ["2010-12-01"] * 2, "Amount": 1.0})
    with pytest.raises(
        DataValidationError,
        match=r"column 'CustomerID' \(user_id\): expected strings or integers, but 1 numeric "
        r"value\(s\) are not whole numbers within 64 bits, e\.g\. row 0",
    ):
        load_events(raw, RETAIL)


def test_a_date_only_purchase_log_with_integer_ids_loads(tmp_path):
    path = tmp_path / "cdnow.csv"
    path.write_text(
        "customer_id,date,cds,amount\n"
        "1,1997-01-01,1,11.77\n"
        "2,1997-01-12,1,12.00\n"
        "2,1997-01-12,5,77.00\n"
        "3,1997-01-02,2,20.76\n"
    )
    log = load_events(path, CDNOW)
    clean = log.to_pandas()
    assert clean["user_id"].tolist() == [1, 2, 2, 3]
    # Two purchases of one day, different amounts: both kept, at midnight UTC.
    assert clean["timestamp"].tolist() == [
        pd.Timestamp("1997-01-01"),
        pd.Timestamp("1997-01-12"),
        pd.Timestamp("1997-01-12"),
        pd.Timestamp("1997-01-02"),
    ]
    assert log.report.duplicate_rows == 0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            'customer_id,date,amount\n1,1997-01-01,"1,234.50"\n2,1997-01-02,3\n',
            r"column 'amount' \(revenue\): 1 value\(s\) are not numeric, e\.g\. row 0: "
            r"'1,234\.50'; expected plain numbers .*no thousands separators",
        ),
        (
            "customer_id,date,amount\n1,12/1/2010 8:26,1\n2,12/13/2010 9:00,3\n",
            r"column 'date' \(timestamp\): 2 value\(s\) cannot be parsed.*row 0: "
            r"'12/1/2010 8:26'.*expected ISO 8601 .*day and month order",
        ),
        (
            "customer_id,date,amount\n1,19970101,1\n2,19970102,3\n",
            r"column 'date' \(timestamp\): expected datetimes or date strings, got type BIGINT "
            r"\(numbers such as 19970101 or 1433221332117 are not read as dates: set "
            r"data\.columns\.timestamp_format, e\.g\. '%Y%m%d' or 'unix_ms'\)",
        ),
    ],
    ids=["thousands-separator", "us-date", "yyyymmdd-integer"],
)
def test_formats_of_exported_logs_are_refused_with_what_to_do(tmp_path, text, match):
    path = tmp_path / "log.csv"
    path.write_text(text)
    with pytest.raises(DataValidationError, match=match):
        load_events(path, CDNOW)


@pytest.mark.parametrize(
    ("text", "timestamp_format", "expected"),
    [
        # UCI Online Retail's export: month first, hours without a leading zero.
        (
            "customer_id,date,amount\n1,12/1/2010 8:26,1\n2,1/12/2011 10:05,3\n",
            "%m/%d/%Y %H:%M",
            ["2010-12-01 08:26", "2011-01-12 10:05"],
        ),
        # The same text read day first: the format decides, not a guess.
        (
            "customer_id,date,amount\n1,12/1/2010 8:26,1\n2,1/12/2011 10:05,3\n",
            "%d/%m/%Y %H:%M",
            ["2010-01-12 08:26", "2011-12-01 10:05"],
        ),
        # CDNOW: dates as yyyymmdd integers.
        ("customer_id,date,amount\n1,19970101,1\n2,19970112,3\n", "%Y%m%d",
         ["1997-01-01", "1997-01-12"]),
        # An offset is converted to UTC.
        (
            "customer_id,date,amount\n1,2011-01-12 10:05 +0100,1\n2,2011-01-12 10:05 -0230,3\n",
            "%Y-%m-%d %H:%M %z",
            ["2011-01-12 09:05", "2011-01-12 12:35"],
        ),
        # Epoch numbers (RetailRocket-like milliseconds, seconds with a fraction).
        ("customer_id,date,amount\n1,1433221332117,1\n2,0,3\n", "unix_ms",
         ["2015-06-02 05:02:12.117", "1970-01-01"]),
        ("customer_id,date,amount\n1,1433221332.5,1\n2,-86400,3\n", "unix_s",
         ["2015-06-02 05:02:12.5", "1969-12-31"]),
        ("customer_id,date,amount\n1,1433221332117000,1\n2,1,3\n", "unix_us",
         ["2015-06-02 05:02:12.117", "1970-01-01 00:00:00.000001"]),
    ],
    ids=["us-date", "day-first", "yyyymmdd-integer", "offset", "unix-ms", "unix-s", "unix-us"],
)  # fmt: skip
def test_timestamp_format_reads_exported_timestamps(tmp_path, text, timestamp_format, expected):
    path = tmp_path / "log.csv"
    path.write_text(text)
    columns = dataclasses.replace(CDNOW, timestamp_format=timestamp_format)
    clean = load_events(path, columns).to_pandas().sort_values("user_id")
    assert clean["timestamp"].tolist() == [pd.Timestamp(t) for t in expected]


@pytest.mark.parametrize(
    ("text", "timestamp_format", "error", "match"),
    [
        (
            "customer_id,date,amount\n1,12/1/2010 8:26,1\n2,2010-12-13,3\n",
            "%m/%d/%Y %H:%M",
            DataValidationError,
            r"column 'date' \(timestamp\): 1 value\(s\) cannot be parsed as a timestamp, e\.g\. "
            r"row 1: '2010-12-13'; expected data\.columns\.timestamp_format '%m/%d/%Y %H:%M'",
        ),
        (
            # Text is read as numbers (BigQuery's JSON gives INT64 as strings): a date in
            # text is an unparseable value, named with the format.
            "customer_id,date,amount\n1,1 Dec 2010,1\n",
            "unix_ms",
            DataValidationError,
            r"column 'date' \(timestamp\): 1 value\(s\) cannot be parsed as a timestamp, e\.g\. "
            r"row 0: '1 Dec 2010'; expected data\.columns\.timestamp_format 'unix_ms'",
        ),
        (
            "customer_id,date,amount\n1,x,1\n",
            "%Y-%Q",
            ConfigError,
            r"data\.columns\.timestamp_format: '%Y-%Q' cannot be read: .*%Q",
        ),
        (
            "customer_id,date,amount\n1,99999999999999999,1\n2,1,3\n",
            "unix_s",
            DataValidationError,
            r"column 'date' \(timestamp\): 1 value\(s\) cannot be parsed.*row 0: "
            r"'99999999999999999'.*'unix_s'",
        ),
    ],
    ids=["unmatched-value", "unix-on-dates", "bad-directive", "epoch-out-of-range"],
)
def test_timestamp_format_refusals_name_the_column_and_format(
    tmp_path, text, timestamp_format, error, match
):
    path = tmp_path / "log.csv"
    path.write_text(text)
    columns = dataclasses.replace(CDNOW, timestamp_format=timestamp_format)
    with pytest.raises(error, match=match):
        load_events(path, columns, on_invalid="error")


def test_timestamp_format_leaves_typed_timestamps_as_they_are(tmp_path):
    raw = pd.DataFrame(
        {"customer_id": [1], "date": [pd.Timestamp("1997-01-01 10:00")], "amount": [1.0]}
    )
    columns = dataclasses.replace(CDNOW, timestamp_format="%d/%m/%Y")
    clean = load_events(raw, columns).to_pandas()
    assert clean["timestamp"].tolist() == [pd.Timestamp("1997-01-01 10:00")]


@pytest.mark.parametrize("value", ["dd/mm/yyyy", "%d/%m", "", "unix"])
def test_params_refuse_a_timestamp_format_without_a_year(tmp_path, value):
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  columns:\n    timestamp_format: '{value}'\n")
    with pytest.raises(ConfigError, match=r"data\.columns\.timestamp_format: .* is not a strptime"):
        load_config(params)
    # The same refusal for a ColumnMap given to the Python API, before any scan.
    columns = dataclasses.replace(CDNOW, timestamp_format=value)
    path = tmp_path / "log.csv"
    path.write_text("customer_id,date,amount\n1,12/1/2010,1\n")
    with pytest.raises(ConfigError, match=r"data\.columns\.timestamp_format: .* is not a strptime"):
        load_events(path, columns)


def test_rows_without_a_customer_are_refused_with_their_count_on_error():
    with pytest.raises(
        DataValidationError, match=r"column 'CustomerID': 1 null value\(s\) \(on_invalid=error\)"
    ):
        load_events(_order_lines(), RETAIL, on_invalid="error")


def test_a_clean_log_loads_without_a_warning():
    lines = _order_lines().dropna(subset=["CustomerID"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SegmentkitWarning)
        assert load_events(lines, RETAIL).report.rows_clean == 5


def test_a_parquet_date_column_is_read_as_midnight(tmp_path):
    raw = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "date": [pd.Timestamp("1997-01-01").date(), pd.Timestamp("1997-01-12").date()],
            "amount": [11.77, 12.0],
        }
    )
    path = tmp_path / "cdnow.parquet"
    raw.to_parquet(path, index=False)
    assert load_events(path, CDNOW).to_pandas()["timestamp"].tolist() == [
        pd.Timestamp("1997-01-01"),
        pd.Timestamp("1997-01-12"),
    ]


# --------------------------------------------------------------------------- unit price x quantity

#: The same order lines read as UCI Online Retail gives them: a unit price and a quantity.
PRICED = dataclasses.replace(RETAIL, revenue="UnitPrice", quantity="Quantity")


@pytest.mark.parametrize("kind", ["frame", "csv", "parquet"])
def test_unit_price_times_quantity_is_the_revenue(tmp_path, kind):
    from segmentkit.config import FeatureConfig
    from segmentkit.features import build_features

    lines = _order_lines()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SegmentkitWarning)
        priced = load_events(_write(lines.drop(columns=["Amount"]), tmp_path, kind), PRICED)
        amounts = load_events(lines, RETAIL)
    # 6 x 2.55, 6 x 2.55, 8 x 2.75, -6 x 2.55 (the cancelled line: a refund), 2 x 7.65
    clean = priced.to_pandas()
    assert clean["revenue"].tolist() == pytest.approx([15.3, 15.3, 22.0, -15.3, 15.3])
    assert priced.report == amounts.report
    config = FeatureConfig(windows=(30,), key_events=("purchase",))
    pd.testing.assert_frame_equal(
        build_features(priced, "2011-01-01", config), build_features(amounts, "2011-01-01", config)
    )


def test_lines_of_equal_amount_at_other_prices_are_not_duplicates():
    # 0 units at two prices, and 3 x 2.0 against 2 x 3.0: equal amounts, different lines.
    lines = pd.DataFrame(
        {
            "CustomerID": [1, 1, 1, 1, 1],
            "InvoiceDate": ["2010-12-01 08:26"] * 5,
            "UnitPrice": [2.0, 3.0, 1.0, 5.0, 5.0],
            "Quantity": [3, 2, 0, 0, 0],
        }
    )
    report = load_events(lines, PRICED).report
    # Only the last line, equal in every column to the one before, is a copy.
    assert (report.duplicate_rows, report.rows_clean) == (1, 4)


def test_a_quantity_that_is_not_a_number_is_refused_naming_the_column():
    lines = _order_lines().drop(columns=["Amount"]).astype({"Quantity": str})
    lines.loc[4, "Quantity"] = "2 pcs"
    with pytest.raises(
        DataValidationError,
        match=r"column 'Quantity' \(quantity\): 1 value\(s\) are not numeric, e\.g\. "
        r"row 4: '2 pcs'",
    ):
        load_events(lines, PRICED)


def test_a_quantity_column_of_dates_is_refused():
    lines = _order_lines().drop(columns=["Amount"])
    lines["Quantity"] = pd.Timestamp("2010-12-01")
    with pytest.raises(
        DataValidationError, match=r"column 'Quantity' \(quantity\): expected numbers, got type"
    ):
        load_events(lines, PRICED)


def test_an_amount_too_large_names_price_and_quantity():
    lines = _order_lines().drop(columns=["Amount"])
    lines.loc[0, "Quantity"] = 10**12
    with pytest.raises(
        DataValidationError,
        match=r"column 'UnitPrice' \(revenue\) times quantity 'Quantity': 1 value\(s\) are NaN, "
        r"infinite or not below 1e\+12",
    ):
        load_events(lines, PRICED)


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        (
            dataclasses.replace(PRICED, revenue=None),
            r"'Quantity' \(quantity\) multiplies the unit price in the revenue column "
            r"\(not mapped\)",
        ),
        (
            dataclasses.replace(PRICED, revenue="price", explicit=()),
            r"'Quantity' \(quantity\) multiplies the unit price in the revenue column "
            r"\('price', absent\)",
        ),
        (
            dataclasses.replace(PRICED, quantity="Qty"),
            r"missing required column\(s\) quantity \('Qty'\)",
        ),
    ],
    ids=["no-price-mapped", "price-column-absent", "quantity-column-absent"],
)
def test_a_quantity_without_its_price_or_its_column_is_refused(columns, match):
    with pytest.raises(DataValidationError, match=match):
        load_events(_order_lines().drop(columns=["Amount"]), columns)


def test_params_refuse_a_quantity_without_a_unit_price(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  columns:\n    revenue: null\n    quantity: Quantity\n")
    with pytest.raises(ConfigError, match=r"data.columns.quantity \('Quantity'\) multiplies"):
        load_config(params)


def test_a_quantity_column_is_never_used_unless_mapped():
    lines = pd.DataFrame(
        {
            "user_id": [1, 1],
            "timestamp": ["2010-12-01 08:26", "2010-12-02 08:26"],
            "event": "purchase",
            "revenue": [15.3, 22.0],
            "quantity": [6, 8],
        }
    )
    assert load_events(lines).to_pandas()["revenue"].tolist() == [15.3, 22.0]


def test_scoring_refuses_a_log_read_with_another_meaning_of_revenue():
    from segmentkit.io.events import check_input, describe_input

    lines = _order_lines()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SegmentkitWarning)
        priced = load_events(lines, PRICED)
        amounts = load_events(lines, RETAIL)
    assert describe_input(priced)["columns"]["quantity"] == "Quantity"
    # Trained on price x quantity, given amounts without the quantity: a column is missing.
    with pytest.raises(DataValidationError, match=r"trained with column\(s\) quantity"):
        check_input(amounts, describe_input(priced))
    # Trained on amounts, given a quantity: the revenue would be multiplied again.
    with pytest.raises(
        DataValidationError,
        match=r"column 'Quantity' \(quantity\): the model was trained on revenue as the log gave",
    ):
        check_input(priced, describe_input(amounts))
    assert check_input(priced, describe_input(priced)) == []


def test_csv_ids_that_look_like_decimals_are_read_as_text_exactly(tmp_path):
    # Ids shaped as GA4's user_pseudo_id: as doubles, these two are one number.
    first, second = "1026454.427111206501", "1026454.427111206502"
    assert float(first) == float(second)
    path = tmp_path / "ga4.csv"
    path.write_text(
        "user_pseudo_id,event_timestamp,event_name\n"
        f"{first},1604512629336826,page_view\n"
        f"{second},1604512629336900,page_view\n"
        f"{second},1604512699336900,purchase\n"
    )
    columns = ColumnMap(
        user_id="user_pseudo_id",
        timestamp="event_timestamp",
        event="event_name",
        timestamp_format="unix_us",
    )
    rows = load_events(path, columns).to_pandas()
    assert rows.groupby("user_id").size().to_dict() == {first: 1, second: 2}


def test_csv_ids_that_are_whole_decimals_stay_integers(tmp_path):
    # UCI's CustomerID, written by pandas with gaps: 12346.0.
    path = tmp_path / "uci.csv"
    path.write_text("CustomerID,InvoiceDate,Amount\n12346.0,2010-12-01,1\n,2010-12-01,1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SegmentkitWarning)
        rows = load_events(path, RETAIL).to_pandas()
    assert rows["user_id"].tolist() == [12346]


def test_float_ids_with_fractions_in_a_frame_point_at_reading_them_as_text():
    raw = pd.DataFrame(
        {"CustomerID": [1026454.4271112065], "InvoiceDate": ["2010-12-01"], "Amount": 1.0}
    )
    with pytest.raises(DataValidationError) as err:
        load_events(raw, RETAIL)
    assert str(err.value).endswith(
        "(ids that look like decimals, such as GA4's user_pseudo_id 1026454.4271112065, are "
        "text: give the column as text, e.g. pandas' read_csv(..., dtype={'CustomerID': str}))"
    )
