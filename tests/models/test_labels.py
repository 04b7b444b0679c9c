"""Labels on transaction tables: occasions, not rows; refunds are not purchases."""

from __future__ import annotations

import pandas as pd
import pytest

from segmentkit.config import ColumnMap, TargetConfig
from segmentkit.io.events import load_events
from segmentkit.models.labels import build_label_table, build_labels

COUNT = TargetConfig(name="purchases", kind="count", event="purchase")
BUY = TargetConfig(name="purchase", kind="event", event="purchase")
CHURN = TargetConfig(name="churn", kind="inactivity")
TRANSACTIONS = ColumnMap(event=None, revenue="revenue", explicit=("revenue",))


def _log(rows, columns=("user_id", "timestamp", "revenue", "line")):
    return load_events(pd.DataFrame(rows, columns=list(columns)), TRANSACTIONS)


def test_the_lines_of_one_order_are_one_purchase_occasion():
    # Before t0 every user has an order; in the window: a has one order of three
    # lines (two at the same amount) and a later order of one line; b one order.
    log = _log(
        [
            ("a", "2024-01-01 09:00", 5.0, 1),
            ("b", "2024-01-01 09:00", 5.0, 1),
            ("a", "2024-01-10 08:26", 15.3, 1),
            ("a", "2024-01-10 08:26", 15.3, 2),
            ("a", "2024-01-10 08:26", 22.0, 3),
            ("a", "2024-01-12 10:00", 3.0, 1),
            ("b", "2024-01-15 11:00", 7.0, 1),
        ]
    )
    assert log.report.rows_clean == 7  # every line kept
    labels = build_labels(log, "2024-01-05", COUNT, 30)
    assert labels.to_dict("list") == {"user_id": ["a", "b"], "label": [2, 1]}


def test_a_date_only_log_counts_one_occasion_per_purchase_day():
    log = _log(
        [
            ("a", "1997-01-01", 11.77, 1),
            ("a", "1997-01-12", 12.00, 1),
            ("a", "1997-01-12", 77.00, 2),
            ("a", "1997-01-20", 9.00, 1),
        ]
    )
    labels = build_labels(log, "1997-01-05", COUNT, 30)
    assert labels["label"].tolist() == [2]


@pytest.mark.parametrize("with_population", [False, True], ids=["full-scan", "window-only"])
def test_refunds_are_not_purchases_but_are_activity(with_population):
    # In the window, a only returns goods (a cancelled invoice: negative lines); b buys
    # and returns part of it at the same time; c does nothing.
    log = _log(
        [
            ("a", "2024-01-01", 20.0, 1),
            ("b", "2024-01-01", 20.0, 1),
            ("c", "2024-01-01", 20.0, 1),
            ("a", "2024-01-08", -20.0, 1),
            ("b", "2024-01-09", 30.0, 1),
            ("b", "2024-01-09", -5.0, 2),
        ]
    )
    population = pd.DataFrame({"user_id": ["a", "b", "c"]}) if with_population else None
    table = build_label_table(
        log, "2024-01-05", [(BUY, 30), (COUNT, 30), (CHURN, 30)], population=population
    )
    assert table.to_dict("list") == {
        "user_id": ["a", "b", "c"],
        "label_0": [0, 1, 0],  # a's return is not a purchase
        "label_1": [0, 1, 0],
        "label_2": [0, 0, 1],  # but it is activity: a has not churned
    }


def test_an_event_log_counts_each_purchase_at_its_own_time():
    raw = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a"],
            "timestamp": [
                "2024-01-01 10:00",
                "2024-01-06 10:00",
                "2024-01-06 10:05",
                "2024-01-06 10:05",
            ],
            "event": ["view", "purchase", "purchase", "view"],
        }
    )
    labels = build_labels(load_events(raw), "2024-01-05", COUNT, 30)
    assert labels["label"].tolist() == [2]  # no revenue column: every purchase counts
