"""As-of feature table: one row per user, computed in DuckDB.

Only events strictly before ``as_of`` are read. Time is measured in whole
"days ago" counted back from ``as_of`` (day 0 is the 24 hours just before it), so
windows are exact for any snapshot time.

The plan is built for large logs: one hash aggregation over the raw events to
(user, session, day) groups, which are a few times fewer than events, then
everything else (distinct days, sessions, gaps) from those groups.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from segmentkit.config import ColumnMap, FeatureConfig
from segmentkit.data import EventLog, EventSource, load_events, to_timestamp
from segmentkit.errors import DataValidationError

__all__ = ["FeatureSpec", "build_features", "describe_features", "feature_names"]

# Bitmaps of event types stay exact up to this many distinct events.
_MAX_BITMAP_EVENTS = 64


@dataclass(frozen=True)
class FeatureSpec:
    """A feature's name, meaning and kind (used for docs and transforms)."""

    name: str
    description: str
    heavy_tailed: bool


def _slug(name: str) -> str:
    slug = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    return slug or "event"


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
        FeatureSpec("events_total", "events before as_of", True),
        FeatureSpec("sessions_total", "sessions started before as_of", True),
        FeatureSpec("active_days_total", "distinct days with an event", True),
    ]
    for w in sorted(config.windows):
        specs += [
            FeatureSpec(
                f"active_days_{w}d", f"distinct days with an event in the last {w} days", True
            ),
            FeatureSpec(f"events_{w}d", f"events in the last {w} days", True),
            FeatureSpec(f"sessions_{w}d", f"sessions started in the last {w} days", True),
            FeatureSpec(f"revenue_{w}d", f"net revenue in the last {w} days", True),
        ]
    specs += [
        FeatureSpec("distinct_events", "distinct event types used", False),
        FeatureSpec("events_per_session", "events_total / sessions_total", True),
    ]
    specs += [
        FeatureSpec(f"{_slug(e)}_events", f"count of {e!r} events", True) for e in config.key_events
    ]
    specs += [
        FeatureSpec("revenue_total", "net revenue (refunds subtract)", True),
        FeatureSpec("orders", "events with revenue > 0", True),
        FeatureSpec("avg_order_value", "revenue of orders / orders (0 without orders)", True),
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


def build_features(
    events: EventLog | EventSource,
    as_of: dt.date | dt.datetime | str,
    config: FeatureConfig | None = None,
    *,
    columns: ColumnMap | None = None,
) -> pd.DataFrame:
    """Compute the as-of feature table, one row per user.

    Parameters
    ----------
    events : EventLog or event source
        A validated log from :func:`segmentkit.data.load_events`, or anything it
        accepts (then it is validated here with ``columns``).
    as_of : date-like
        Snapshot time T. Only events with ``timestamp < T`` are read; users with no
        event before T are absent.
    config : FeatureConfig, optional
        Windows, session gap and key events.
    columns : ColumnMap, optional
        Column mapping, used when ``events`` is not yet an ``EventLog``.

    Returns
    -------
    pandas.DataFrame
        ``user_id`` then the columns of :func:`feature_names`, sorted by ``user_id``.

    Examples
    --------
    >>> import pandas as pd
    >>> raw = pd.DataFrame({"user_id": ["a", "a", "b"],
    ...                     "timestamp": ["2024-01-01 10:00", "2024-01-03 09:00", "2024-01-02"],
    ...                     "event": ["view", "purchase", "view"],
    ...                     "revenue": [0.0, 20.0, 0.0]})
    >>> table = build_features(raw, as_of="2024-01-04")
    >>> table[["user_id", "active_days_total", "revenue_total"]].to_dict("list")
    {'user_id': ['a', 'b'], 'active_days_total': [2, 1], 'revenue_total': [20.0, 0.0]}
    """
    config = config or FeatureConfig()
    cutoff = to_timestamp(as_of)
    if not isinstance(events, EventLog):
        events = load_events(events, columns, as_of=cutoff)
    elif events.as_of is not None and events.as_of < cutoff:
        raise DataValidationError(
            f"as_of {cutoff} is after the cut-off {events.as_of} the log was loaded with: "
            "events in between are missing"
        )
    con = events.con
    sql = _feature_sql(events, cutoff, config, _event_vocabulary(events, cutoff))
    table = con.execute(sql).df()
    return _finish(table, config)


def _event_vocabulary(events: EventLog, cutoff: dt.datetime) -> list[str] | None:
    names = [
        row[0]
        for row in events.con.execute(
            f"SELECT DISTINCT event FROM {events.table} "
            f"WHERE timestamp < {_ts(cutoff)} AND event IS NOT NULL ORDER BY event"
        ).fetchall()
    ]
    return names if len(names) <= _MAX_BITMAP_EVENTS else None


def _ts(value: dt.datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _feature_sql(
    events: EventLog, cutoff: dt.datetime, config: FeatureConfig, vocabulary: list[str] | None
) -> str:
    t = _ts(cutoff)
    windows = sorted(config.windows)
    short = windows[0]
    key_events = list(dict.fromkeys(config.key_events))
    if events.has_session_id:
        # Rows without a session id form one session per timestamp.
        keyed = "SELECT *, session_id AS session_key, CASE WHEN session_id IS NULL THEN timestamp END AS lone FROM base"
    else:
        # Gap-based sessionization: a session starts when the user's previous event
        # is more than `session_gap_minutes` earlier.
        gap = int(config.session_gap_minutes)
        keyed = f"""
            SELECT *, sum(new_session) OVER (
                       PARTITION BY user_id ORDER BY timestamp ROWS UNBOUNDED PRECEDING
                   ) AS session_key, NULL AS lone
            FROM (
                SELECT *, CASE WHEN lag(timestamp) OVER (PARTITION BY user_id ORDER BY timestamp)
                                    >= timestamp - INTERVAL {gap} MINUTE
                               THEN 0 ELSE 1 END AS new_session
                FROM base
            )"""
    if vocabulary is not None:
        codes = "[" + ", ".join(_literal(v) for v in vocabulary) + "]"
        event_bits = f"bit_or(1::UBIGINT << (list_position({codes}, event) - 1)) AS event_bits"
    else:
        event_bits = "NULL::UBIGINT AS event_bits"
    key_counts_a = "".join(
        f", count(*) FILTER (WHERE event = {_literal(e)}) AS k{i}" for i, e in enumerate(key_events)
    )
    key_sums = "".join(f", sum(k{i}) AS k{i}" for i in range(len(key_events)))
    key_out = "".join(
        f", coalesce(d.k{i}, 0) AS {_slug(e)}_events" for i, e in enumerate(key_events)
    )
    window_day = "".join(
        f""", count(*) FILTER (WHERE days_ago < {w}) AS active_days_{w}d
              , coalesce(sum(n_events) FILTER (WHERE days_ago < {w}), 0) AS events_{w}d
              , coalesce(sum(revenue) FILTER (WHERE days_ago < {w}), 0) AS revenue_{w}d"""
        for w in windows
    )
    window_sessions = "".join(
        f", count(*) FILTER (WHERE start_days_ago < {w}) AS sessions_{w}d" for w in windows
    )
    window_out = "".join(
        f", d.active_days_{w}d, d.events_{w}d, s.sessions_{w}d, d.revenue_{w}d" for w in windows
    )
    if vocabulary is not None:
        distinct_events = "bit_count(d.event_bits)"
        distinct_join = ""
    else:
        distinct_events = "x.distinct_events"
        distinct_join = f"""
            JOIN (SELECT user_id, count(DISTINCT event) AS distinct_events
                  FROM {events.table} WHERE timestamp < {t} GROUP BY user_id) x
              ON x.user_id = d.user_id"""
    return f"""
    WITH base AS (
        SELECT user_id, timestamp, event, coalesce(revenue, 0) AS revenue, session_id,
               CAST(floor(epoch({t} - timestamp) / 86400) AS INTEGER) AS days_ago
        FROM {events.table}
        WHERE timestamp < {t}
    ),
    keyed AS ({keyed}),
    by_session_day AS (
        SELECT user_id, session_key, lone, days_ago,
               count(*) AS n_events,
               sum(revenue) AS revenue,
               count(*) FILTER (WHERE revenue > 0) AS orders,
               coalesce(sum(revenue) FILTER (WHERE revenue > 0), 0) AS order_revenue,
               min(timestamp) AS first_ts,
               max(timestamp) AS last_ts,
               {event_bits}
               {key_counts_a}
        FROM keyed
        GROUP BY user_id, session_key, lone, days_ago
    ),
    by_day AS (
        SELECT user_id, days_ago,
               sum(n_events) AS n_events, sum(revenue) AS revenue, sum(orders) AS orders,
               sum(order_revenue) AS order_revenue, min(first_ts) AS first_ts,
               max(last_ts) AS last_ts, bit_or(event_bits) AS event_bits {key_sums}
        FROM by_session_day
        GROUP BY user_id, days_ago
    ),
    gaps AS (
        SELECT *, lead(days_ago) OVER (PARTITION BY user_id ORDER BY days_ago) - days_ago
                  AS gap_after
        FROM by_day
    ),
    d AS (
        SELECT user_id,
               min(first_ts) AS first_ts, max(last_ts) AS last_ts,
               sum(n_events) AS events_total, count(*) AS active_days_total,
               sum(revenue) AS revenue_total, sum(orders) AS orders,
               sum(order_revenue) AS order_revenue,
               bit_or(event_bits) AS event_bits,
               coalesce(sum(n_events) FILTER (WHERE days_ago >= {short}
                                               AND days_ago < {2 * short}), 0) AS events_previous,
               median(gap_after) AS median_gap_days
               {window_day} {key_sums}
        FROM gaps
        GROUP BY user_id
    ),
    s AS (
        SELECT user_id, count(*) AS sessions_total {window_sessions}
        FROM (SELECT user_id, session_key, lone, max(days_ago) AS start_days_ago
              FROM by_session_day GROUP BY user_id, session_key, lone)
        GROUP BY user_id
    )
    SELECT d.user_id,
           epoch({t} - d.last_ts) / 86400.0 AS recency_days,
           epoch({t} - d.first_ts) / 86400.0 AS tenure_days,
           d.events_total, s.sessions_total, d.active_days_total
           {window_out},
           {distinct_events} AS distinct_events,
           d.events_total / s.sessions_total AS events_per_session
           {key_out},
           d.revenue_total, d.orders,
           CASE WHEN d.orders > 0 THEN d.order_revenue / d.orders ELSE 0 END AS avg_order_value,
           ln((1 + d.events_{short}d) / (1 + d.events_previous)) AS activity_trend,
           d.median_gap_days
    FROM d JOIN s ON s.user_id = d.user_id {distinct_join}
    ORDER BY d.user_id
    """


def _finish(table: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """Fix dtypes and fill the one documented gap (``median_gap_days``)."""
    names = feature_names(config)
    table["median_gap_days"] = table["median_gap_days"].astype(float)
    table["median_gap_days"] = table["median_gap_days"].fillna(table["tenure_days"])
    integer = [
        n
        for n in names
        if (n.startswith(("events_", "sessions_", "active_days_")) and n != "events_per_session")
        or n in ("distinct_events", "orders")
        or n.endswith("_events")
    ]
    for name in names:
        dtype = np.int64 if name in integer else np.float64
        table[name] = table[name].astype(dtype)
    table = table[["user_id", *names]].reset_index(drop=True)
    table.columns.name = None
    return table
