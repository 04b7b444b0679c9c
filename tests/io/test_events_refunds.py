"""Refunds given as amounts above 0 (GA4's ``refund``): ``data.columns.refund_events``.

Summed as the log gives them, refunds would add to spending. Named, they are read as
money returned; an event named as a refund with amounts above 0 and no setting is
refused.
"""

import dataclasses

import pandas as pd
import pytest

from segmentkit.config import ColumnMap, load_config
from segmentkit.errors import ConfigError, DataValidationError
from segmentkit.features import build_features
from segmentkit.io.events import load_events

AS_OF = "2024-02-01"


@pytest.fixture
def positive_refunds(tiny_log) -> pd.DataFrame:
    """tiny_log with its refund of 10 given as +10 (user a: 50 + 30 paid, 10 returned)."""
    return tiny_log.assign(revenue=tiny_log["revenue"].abs())


def test_positive_refunds_are_refused_without_refund_events(positive_refunds):
    with pytest.raises(DataValidationError) as err:
        load_events(positive_refunds, as_of=AS_OF)
    assert str(err.value) == (
        "column 'revenue' (revenue): event(s) 'refund' have amounts above 0, which would be "
        "summed as spending: refunds given as positive amounts? Name them in "
        "data.columns.refund_events (their amounts are then read as money returned), or, if "
        "they are money paid, in data.columns.revenue_events"
    )


def test_refund_events_read_positive_refunds_as_money_returned(positive_refunds, tiny_log):
    columns = ColumnMap(refund_events=("refund",))
    log = load_events(positive_refunds, columns, as_of=AS_OF)
    assert log.report.negative_revenue_rows == 1
    features = build_features(log, AS_OF)
    # 50 + 30 - 10, as the log with its refund below 0 reads.
    assert features.set_index("user_id").loc["a", "revenue_total"] == pytest.approx(70.0)
    pd.testing.assert_frame_equal(features, build_features(load_events(tiny_log), AS_OF))
    # A refund already below 0 stays below 0.
    assert build_features(load_events(tiny_log, columns), AS_OF).equals(features)


def test_revenue_events_naming_a_refund_counts_it_as_paid(positive_refunds):
    log = load_events(positive_refunds, ColumnMap(revenue_events=("purchase", "refund")))
    revenue = build_features(log, AS_OF).set_index("user_id").loc["a", "revenue_total"]
    assert revenue == pytest.approx(90.0)


_RESPELLED = (
    {"refund_events": ("Refund",)},
    r"^data\.columns\.refund_events: this log spells 'Refund' as 'refund'; those refunds would "
    r"count as spending",
)
_CANNOT_APPLY = {
    "not-counted": (
        {"refund_events": ("refund",), "revenue_events": ("purchase",)},
        r"^data\.columns\.refund_events \['refund'\] are not in revenue_events "
        r"\(\['purchase'\]\): their amounts would be ignored",
    ),
    "empty": ({"refund_events": ()}, r"^data\.columns\.refund_events: expected one or more event"),
    "no-revenue": (
        {"refund_events": ("refund",), "revenue": None},
        r"data\.columns\.revenue is null",
    ),
    "no-event": ({"refund_events": ("refund",), "event": None}, r"data\.columns\.event is null"),
}


@pytest.mark.parametrize(
    "changes, message", [_RESPELLED, *_CANNOT_APPLY.values()], ids=["respelled", *_CANNOT_APPLY]
)
def test_refund_events_that_cannot_apply_are_refused(positive_refunds, changes, message):
    with pytest.raises(DataValidationError, match=message):
        load_events(positive_refunds, dataclasses.replace(ColumnMap(), **changes))


@pytest.mark.parametrize("changes, message", _CANNOT_APPLY.values(), ids=list(_CANNOT_APPLY))
def test_params_yaml_refuses_refund_events_that_cannot_apply(changes, message):
    raw = {key: list(v) if isinstance(v, tuple) else v for key, v in changes.items()}
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"data": {"columns": raw}})


def test_params_yaml_reads_refund_events_as_a_tuple():
    config = load_config(overrides={"data": {"columns": {"refund_events": ["refund"]}}})
    assert config.data.columns.refund_events == ("refund",)


def test_a_price_on_every_event_with_positive_refunds_needs_both_settings(
    priced_views, priced_view_columns
):
    # A price on every event, and each purchase refunded at its price (above 0).
    refunds = priced_views[priced_views["event_type"] == "purchase"].assign(event_type="refund")
    log = pd.concat([priced_views, refunds], ignore_index=True)
    with pytest.raises(
        DataValidationError, match=r"^column 'price' \(revenue\): event\(s\) 'refund'"
    ):
        load_events(log, priced_view_columns, as_of=AS_OF)
    refunded = dataclasses.replace(priced_view_columns, refund_events=("refund",))
    with pytest.raises(DataValidationError, match=r"same amount recurs on rows of 4 events"):
        load_events(log, refunded, as_of=AS_OF)
    both = dataclasses.replace(refunded, revenue_events=("purchase", "refund"))
    features = build_features(load_events(log, both, as_of=AS_OF), AS_OF)
    assert features["revenue_total"].abs().max() == pytest.approx(0.0)  # each purchase refunded
