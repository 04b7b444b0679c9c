"""Logs that give a product's price on every row, views and carts too (REES46's shape).

Revenue is summed over rows, so such a price is money spent only on purchase rows:
``data.columns.revenue_events`` says which events' amounts count, and without it a
log with amounts above 0 on several events is refused rather than summed.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from segmentkit.config import load_config
from segmentkit.errors import ConfigError, DataValidationError
from segmentkit.features import build_features
from segmentkit.io.events import load_events

AS_OF = "2019-11-01"


def paid_only(rows: pd.DataFrame) -> pd.DataFrame:
    """The same log as a tracker that records an amount on purchases only would give it."""
    return rows.assign(price=rows["price"].where(rows["event_type"] == "purchase"))


def test_a_price_on_every_event_is_refused_naming_the_events_and_their_rows(
    priced_views, priced_view_columns
):
    # Summed, user 1 would have spent 1,846.70 in 4 "orders" (every distinct priced time).
    with pytest.raises(DataValidationError) as refused:
        load_events(priced_views, priced_view_columns, as_of=AS_OF)
    # Each user's amount recurs along the funnel: 289.52 viewed, carted and bought.
    assert str(refused.value) == (
        "column 'price' (revenue): one user's same amount recurs on rows of 4 events ('view' "
        "3 of 5 rows, 'cart' 2 of 2 rows, 'purchase' 2 of 2 rows, 'remove_from_cart' 1 of 1 row "
        "with an amount above 0 share it with another event): a price carried on every event, "
        "not money paid; summed, viewed or carted products would count as spending. Name the "
        "events whose amounts were paid (and refunded) in data.columns.revenue_events, "
        "e.g. [purchase]"
    )


def test_payments_of_two_kinds_are_summed_without_a_setting():
    # Purchases and monthly renewals: amounts on two events, one user's 9.99 purchase
    # coincides with the renewal price (1 of 3 purchases, 3 of 9 renewals: below half).
    days = [f"2024-0{m}-01" for m in (1, 2, 3)]
    rows = pd.DataFrame(
        {
            "user_id": ["a", "b", "c"] + [u for u in "abc" for _ in days],
            "timestamp": ["2024-01-15", "2024-02-15", "2024-03-15"] + days * 3,
            "event": ["purchase"] * 3 + ["renewal"] * 9,
            "revenue": [30.0, 45.5, 9.99] + [9.99] * 9,
        }
    )
    table = build_features(load_events(rows), "2024-04-01").set_index("user_id")
    assert table["revenue_total"].tolist() == pytest.approx([59.97, 75.47, 39.96])


def test_revenue_events_keep_the_amounts_of_purchases_only(priced_views, priced_view_columns):
    columns = dataclasses.replace(priced_view_columns, revenue_events=("purchase",))
    log = load_events(priced_views, columns, as_of=AS_OF)
    # The two views of product 1004 at one second are one row exported twice; views of
    # different products at different prices stay apart although neither has revenue.
    assert (log.report.rows_read, log.report.duplicate_rows, log.report.rows_clean) == (10, 1, 9)
    clean = log.to_pandas()
    assert clean.loc[clean["event"] != "purchase", "revenue"].isna().all()
    features = build_features(log, AS_OF).set_index("user_id")
    assert features.loc[541312140, "revenue_total"] == pytest.approx(289.52)
    assert features.loc[554748717, "revenue_total"] == pytest.approx(12.0)
    assert features["orders"].tolist() == [1, 1]
    assert features["avg_order_value"].tolist() == pytest.approx([289.52, 12.0])
    # Exactly the features of the same log with an amount on purchase rows only.
    expected = build_features(
        load_events(paid_only(priced_views), priced_view_columns, as_of=AS_OF), AS_OF
    )
    pd.testing.assert_frame_equal(build_features(log, AS_OF), expected)


def test_two_views_at_one_time_with_different_prices_are_two_rows(
    priced_views, priced_view_columns
):
    rows = priced_views
    rows.loc[1, "price"] = 499.0  # the second export of the view shows another price
    columns = dataclasses.replace(priced_view_columns, revenue_events=("purchase",))
    assert load_events(rows, columns, as_of=AS_OF).report.duplicate_rows == 0


def test_refunds_on_their_own_event_count_when_named(priced_views, priced_view_columns):
    rows = pd.concat(
        [
            priced_views,
            pd.DataFrame(
                {
                    "event_time": ["2019-10-09 09:00:00 UTC"],
                    "event_type": ["refund"],
                    "product_id": [3002],
                    "price": [-12.0],
                    "user_id": [554748717],
                    "user_session": ["s3"],
                }
            ),
        ],
        ignore_index=True,
    )
    kept = load_events(
        rows, dataclasses.replace(priced_view_columns, revenue_events=("purchase", "refund"))
    )
    assert kept.report.negative_revenue_rows == 1
    table = build_features(kept, AS_OF).set_index("user_id")
    assert table.loc[554748717, "revenue_total"] == pytest.approx(0.0)
    ignored = load_events(
        rows, dataclasses.replace(priced_view_columns, revenue_events=("purchase",))
    )
    assert ignored.report.negative_revenue_rows == 0


def test_amounts_on_purchases_and_refunds_below_zero_need_no_setting(
    priced_views, priced_view_columns
):
    # The usual event log: amounts on purchases, refunds as negative amounts, 0 elsewhere.
    rows = paid_only(priced_views).fillna({"price": 0.0})
    rows.loc[rows["event_type"] == "remove_from_cart", "price"] = -5.0
    log = load_events(rows, priced_view_columns, as_of=AS_OF)
    assert log.report.negative_revenue_rows == 1


@pytest.mark.parametrize(
    ("chosen", "message"),
    [
        (
            ("Purchase",),
            r"^data\.columns\.revenue_events: this log spells 'Purchase' as 'purchase'; the "
            r"revenue of those rows would be ignored",
        ),
        ((), r"^data\.columns\.revenue_events: expected one or more event names"),
        (("purchase", ""), r"^data\.columns\.revenue_events: expected one or more event names"),
    ],
    ids=["respelled", "empty", "blank-name"],
)
def test_revenue_events_that_select_nothing_are_refused(
    chosen, message, priced_views, priced_view_columns
):
    with pytest.raises(DataValidationError, match=message):
        load_events(
            priced_views,
            dataclasses.replace(priced_view_columns, revenue_events=chosen),
            as_of=AS_OF,
        )


def test_revenue_events_need_a_revenue_and_an_event_column(priced_views, priced_view_columns):
    rows = priced_views.drop(columns="price")
    without_revenue = dataclasses.replace(
        priced_view_columns,
        revenue="revenue",
        explicit=("session_id",),
        revenue_events=("purchase",),
    )
    with pytest.raises(DataValidationError, match=r"no revenue column 'revenue'"):
        load_events(rows, without_revenue, as_of=AS_OF)
    # A column named otherwise than its role is meant: its absence is refused first.
    named = dataclasses.replace(without_revenue, revenue="amount")
    with pytest.raises(DataValidationError, match=r"revenue \('amount'\) mapped in data.columns"):
        load_events(rows, named, as_of=AS_OF)
    transactions = dataclasses.replace(
        priced_view_columns, event=None, revenue_events=("purchase",)
    )
    with pytest.raises(DataValidationError, match=r"needs an event column.*event is null"):
        load_events(priced_views, transactions, as_of=AS_OF)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"revenue_events": []}, r"expected one or more event names"),
        ({"revenue": None, "revenue_events": ["purchase"]}, r"data\.columns\.revenue is null"),
        ({"event": None, "revenue_events": ["purchase"]}, r"data\.columns\.event is null"),
    ],
    ids=["empty", "no-revenue", "transaction-table"],
)
def test_params_yaml_refuses_revenue_events_that_select_nothing(columns, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"data": {"columns": columns}})


def test_params_yaml_reads_revenue_events_as_a_tuple():
    config = load_config(overrides={"data": {"columns": {"revenue_events": ["purchase"]}}})
    assert config.data.columns.revenue_events == ("purchase",)


def test_a_paid_event_spelled_two_ways_is_named_in_the_refusal():
    # One user's 9.99 purchases under two spellings recur across "events": the refusal
    # says the two names are one event.
    rows = pd.DataFrame(
        {
            "user_id": ["a"] * 4,
            "timestamp": ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"],
            "event": ["purchase", "purchase", "Purchase", "Purchase"],
            "revenue": [9.99] * 4,
        }
    )
    with pytest.raises(DataValidationError) as refused:
        load_events(rows)
    assert str(refused.value).endswith(
        "e.g. [purchase] ('Purchase' and 'purchase' spell one event: give the log one spelling)"
    )
