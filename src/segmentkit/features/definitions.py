"""The feature catalogue: names, order, types and documentation of every feature.

Every engine (:mod:`~segmentkit.features.duckdb_engine`,
:mod:`~segmentkit.features.spark_engine`) returns exactly these columns, in this
order, with these types; ``tests/features/test_spark_features.py`` fails when an
engine lacks a feature of the catalogue or returns one it does not declare.
"""

from __future__ import annotations

from dataclasses import dataclass

from segmentkit.config import FeatureConfig
from segmentkit.text import slug


@dataclass(frozen=True)
class FeatureSpec:
    """A feature's name, meaning and kind (used for docs, transforms and column types).

    Attributes
    ----------
    name : str
        Column name (stable snake_case).
    description : str
        One line for the README's feature table.
    heavy_tailed : bool
        Whether segmentation log-transforms it.
    integer : bool
        A count (int64); otherwise float64.
    """

    name: str
    description: str
    heavy_tailed: bool
    integer: bool = False


def describe_features(config: FeatureConfig | None = None) -> list[FeatureSpec]:
    """List the features :func:`build_features` returns, in column order.

    Examples
    --------
    >>> [f.name for f in describe_features()][:3]
    ['recency_days', 'tenure_days', 'events_total']
    """
    config = config or FeatureConfig()
    short = min(config.windows)
    specs = [
        FeatureSpec("recency_days", "days from the last event to as_of", True),
        FeatureSpec("tenure_days", "days from the first event to as_of", True),
        FeatureSpec("events_total", "events before as_of", True, integer=True),
        FeatureSpec("sessions_total", "sessions started before as_of", True, integer=True),
        FeatureSpec("active_days_total", "distinct days with an event", True, integer=True),
    ]
    for w in sorted(config.windows):
        specs += [
            FeatureSpec(
                f"active_days_{w}d",
                f"distinct days with an event in the last {w} days",
                True,
                integer=True,
            ),
            FeatureSpec(f"events_{w}d", f"events in the last {w} days", True, integer=True),
            FeatureSpec(
                f"sessions_{w}d", f"sessions started in the last {w} days", True, integer=True
            ),
            FeatureSpec(f"revenue_{w}d", f"net revenue in the last {w} days", True),
        ]
    specs += [
        FeatureSpec("distinct_events", "distinct event types used", False, integer=True),
        FeatureSpec("events_per_session", "events_total / sessions_total", True),
    ]
    specs += [
        FeatureSpec(f"{slug(e)}_events", f"count of {e!r} events", True, integer=True)
        for e in config.key_events
    ]
    specs += [
        FeatureSpec("revenue_total", "net revenue (refunds subtract)", True),
        FeatureSpec(
            "orders",
            "purchase occasions: distinct times with revenue > 0 (an order's lines are one)",
            True,
            integer=True,
        ),
        FeatureSpec("avg_order_value", "revenue of rows > 0 / orders (0 without orders)", True),
        FeatureSpec(
            "activity_trend",
            f"ln((1 + events in the last {short} days) / (1 + events in the {short} days before))",
            False,
        ),
        FeatureSpec(
            "median_gap_days",
            "median days between consecutive active days (tenure_days with one active day)",
            True,
        ),
    ]
    return specs


def feature_names(config: FeatureConfig | None = None) -> list[str]:
    """Return the feature column names for ``config`` (without ``user_id``)."""
    return [spec.name for spec in describe_features(config)]
