import numpy as np
import pandas as pd
import pytest

from segmentkit.features import build_features
from segmentkit.io.synth import generate_events
from segmentkit.io.transactions import (
    TRANSACTION_LOG_ATTR,
    constant_or_duplicate_columns,
    is_transaction_log,
    transaction_redundant_features,
)
from segmentkit.models.segmentation import Segmenter


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (pd.DataFrame({"event": ["purchase"] * 3}), True),
        (pd.DataFrame({"event": ["view", "purchase"]}), False),
        (pd.DataFrame({"distinct_events": [1, 1, 1]}), True),
        (pd.DataFrame({"distinct_events": [1, 2]}), False),
        (pd.DataFrame({"orders": [1, 2]}), False),
    ],
    ids=["one-event-log", "two-event-log", "features-single", "features-mixed", "unknown"],
)
def test_is_transaction_log(table, expected):
    assert is_transaction_log(table) is expected


def test_attrs_flag_wins():
    table = pd.DataFrame({"distinct_events": [1, 2]})
    table.attrs[TRANSACTION_LOG_ATTR] = True
    assert is_transaction_log(table)


def test_redundant_features_by_construction():
    names = ["recency_days", "events_total", "sessions_total", "sessions_90d", "active_days_30d",
             "distinct_events", "events_per_session", "purchase_events", "add_to_cart_events",
             "revenue_total", "orders"]  # fmt: skip
    assert transaction_redundant_features(names) == [
        "sessions_total",
        "sessions_90d",
        "distinct_events",
        "events_per_session",
        "purchase_events",
        "add_to_cart_events",
    ]


def test_constant_or_duplicate_columns():
    X = np.array([[1.0, 7.0, 1.0, 2.0], [2.0, 7.0, 2.0, 3.0], [3.0, 7.0, 3.0, 3.0]])
    assert constant_or_duplicate_columns(X).tolist() == [False, True, True, False]
    assert constant_or_duplicate_columns(np.empty((0, 2))).tolist() == [True, True]


def test_segmenter_drops_redundant_features_of_a_transaction_log():
    log = generate_events(scenario="transactions", users=800, days=240, seed=1)
    table = build_features(log.events, as_of=log.end)
    assert is_transaction_log(log.events) and is_transaction_log(table)
    X = table.drop(columns="user_id")
    model = Segmenter(k=4, n_bootstrap=0, random_state=0).fit(X)
    assert model.transaction_log_
    dropped = model.dropped_features_
    for name in ("distinct_events", "events_per_session", "purchase_events", "sessions_total"):
        assert name in dropped
    assert dropped["add_to_cart_events"] in ("constant", "transaction log")
    used = list(model.features_used_)
    assert not set(used) & set(dropped)
    assert {"recency_days", "orders", "revenue_total"} <= set(used)
    assert model.cluster_centers_.shape == (4, len(used))
    profile_columns = [c for c in model.profiles_.columns if c.startswith(("median_", "lift_"))]
    assert {c.split("_", 1)[1] for c in profile_columns} == set(used)
    assert model.scaled_features(X).shape == (len(X), len(used))
    np.testing.assert_array_equal(model.predict(X), model.labels_)


def test_event_log_keeps_its_features():
    log = generate_events(users=400, days=120, seed=1)
    X = build_features(log.events, as_of=log.end).drop(columns="user_id")
    model = Segmenter(k=3, n_bootstrap=0, random_state=0).fit(X)
    assert not model.transaction_log_
    assert "distinct_events" in model.features_used_
    assert set(model.dropped_features_.values()) <= {"constant", "duplicate"}
