"""DuckDB engine: the feature table of every user as of a snapshot, in one SQL pass."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from segmentkit.config import ColumnMap, FeatureConfig
from segmentkit.errors import DataValidationError
from segmentkit.features.definitions import describe_features, feature_names
from segmentkit.io.events import EventLog, EventSource, load_events, to_timestamp
from segmentkit.text import slug, sql_literal, sql_timestamp

# Bitmaps of event types stay exact up to this many distinct events.
_MAX_BITMAP_EVENTS = 63


# Days per activity bitmap: 63 bits keep a BIGINT positive (unsigned integers reach
# pandas as float64 and would lose bits).
_BLOCK_DAYS = 63
_DAY_US = 86_400_000_000


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
        A validated log from :func:`segmentkit.io.events.load_events`, or anything it
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
    else:
        _check_log_covers(events.as_of, cutoff)
    vocabulary, span_days = _scan_facts(events, cutoff)
    if span_days == 0:
        return _finish(_empty_table(config), config)
    blocks = -(-span_days // _BLOCK_DAYS)
    sql = _feature_sql(events, cutoff, config, vocabulary, blocks)
    table = events.con.execute(sql).df()
    return _finish(_decode_day_bits(table, config, blocks), config)


def _check_log_covers(log_as_of: dt.datetime | None, cutoff: dt.datetime) -> None:
    """Refuse a snapshot after the cut-off a log was loaded with (its later events are missing).

    Raises
    ------
    DataValidationError
        If ``cutoff`` is after ``log_as_of``.
    """
    if log_as_of is not None and log_as_of < cutoff:
        raise DataValidationError(
            f"as_of {cutoff} is after the cut-off {log_as_of} the log was loaded with: "
            "events in between are missing"
        )


def _scan_facts(events: EventLog, cutoff: dt.datetime) -> tuple[list[str] | None, int]:
    """Event vocabulary (``None`` when too large for a bitmap) and days spanned before T.

    A log from :func:`load_events` already knows its event names and first event, so
    the log is not scanned again. Its names may include events that only occur at or
    after T: they only take unused bits of the event bitmaps, which changes no feature.
    """
    first_event = events.report.first_event
    if events.event_names is not None and first_event is not None:
        first = dt.datetime.fromisoformat(first_event)
        if first >= cutoff:
            return [], 0
        names = list(events.event_names)
        span_days = int((cutoff - first).total_seconds() // 86_400) + 1
        return (names if len(names) <= _MAX_BITMAP_EVENTS else None), span_days
    rows = events.con.execute(
        f"""
        SELECT event, min(timestamp) FROM {events.table}
        WHERE timestamp < {sql_timestamp(cutoff)} GROUP BY event ORDER BY event
        """
    ).fetchall()
    if not rows:
        return [], 0
    first = min(row[1] for row in rows)
    span_days = int((cutoff - first).total_seconds() // 86_400) + 1
    names = [row[0] for row in rows if row[0] is not None]
    return (names if len(names) <= _MAX_BITMAP_EVENTS else None), span_days


def _feature_sql(
    events: EventLog,
    cutoff: dt.datetime,
    config: FeatureConfig,
    vocabulary: list[str] | None,
    blocks: int,
) -> str:
    """Return the SQL of the feature table with raw day bitmaps (see :func:`_decode_day_bits`).

    One wide aggregation by user reads the events once for every count, sum,
    window and bitmap; sessions need a second, narrow aggregation into pieces
    (see :func:`_session_sql`). Event names are turned into small integer codes
    once per row, so event bitmaps and key-event counts compare integers, not
    strings. Revenue is summed as DECIMAL: exact integer arithmetic, so parallel
    aggregation in any order gives bit-identical features (and models). Active
    days are OR-ed into 63-day bitmaps (``day_bits_<j>`` holds days ago
    63j..63j+62), which replaces a costly distinct count over (user, day) pairs.
    """
    t = sql_timestamp(cutoff)
    windows = sorted(config.windows)
    short = windows[0]
    key_events = list(dict.fromkeys(config.key_events))
    if vocabulary is not None:
        # list_position runs once per distinct name of a dictionary-encoded column,
        # a CASE over the names once per row (measured twice as costly).
        names = ", ".join(sql_literal(v) for v in vocabulary)
        code = f"list_position([{names}], event) - 1"
        event_bits = "bit_or(1::BIGINT << code)"
    else:
        code = "NULL::INTEGER"
        event_bits = "NULL::BIGINT"
    per_user = [
        "count(*) AS events_total",
        "sum(revenue) AS revenue_total",
        "count(*) FILTER (WHERE revenue > 0) AS orders",
        "coalesce(sum(revenue) FILTER (WHERE revenue > 0), 0) AS order_revenue",
        "min(timestamp) AS first_ts",
        "max(timestamp) AS last_ts",
        f"{event_bits} AS event_bits",
        f"count(*) FILTER (WHERE days_ago >= {short} AND days_ago < {2 * short})"
        " AS events_previous",
    ]
    for name in key_events:
        if vocabulary is None:
            hit = f"event = {sql_literal(name)}"
        elif name in vocabulary:
            hit = f"code = {vocabulary.index(name)}"
        else:
            hit = "false"
        per_user.append(f"count(*) FILTER (WHERE {hit}) AS {slug(name)}_events")
    for w in windows:
        per_user += [
            f"count(*) FILTER (WHERE days_ago < {w}) AS events_{w}d",
            f"coalesce(sum(revenue) FILTER (WHERE days_ago < {w}), 0) AS revenue_{w}d",
        ]
    for j in range(blocks):
        lo, hi = _BLOCK_DAYS * j, _BLOCK_DAYS * (j + 1)
        # The shift is evaluated on every row (before any FILTER), so keep it in range.
        per_user.append(
            f"bit_or(CASE WHEN days_ago >= {lo} AND days_ago < {hi} "
            f"THEN 1::BIGINT << (days_ago - {lo}) ELSE 0::BIGINT END) AS day_bits_{j}"
        )
    per_user_sessions = ["count(*) AS sessions_total"] + [
        f"count(*) FILTER (WHERE start_days_ago < {w}) AS sessions_{w}d" for w in windows
    ]
    distinct_events = "bit_count(u.event_bits)"
    distinct_join = ""
    if vocabulary is None:
        distinct_events = "x.distinct_events"
        distinct_join = f"""
            JOIN (SELECT user_id, count(DISTINCT event) AS distinct_events
                  FROM {events.table} WHERE timestamp < {t} GROUP BY user_id) x
              ON x.user_id = u.user_id"""
    passthrough = (
        [f"u.{slug(name)}_events" for name in key_events]
        + [f"{c}_{w}d" for w in windows for c in ("u.events", "s.sessions")]
        + [f"CAST(u.revenue_{w}d AS DOUBLE) AS revenue_{w}d" for w in windows]
        + [f"u.day_bits_{j}" for j in range(blocks)]
    )
    sep = ",\n               "
    return f"""
    WITH base AS NOT MATERIALIZED (
        SELECT user_id, timestamp, event, {code} AS code,
               CAST(coalesce(revenue, 0) AS DECIMAL(18, 6)) AS revenue, session_id,
               epoch_us({t}) - epoch_us(timestamp) AS before_us,
               CAST((epoch_us({t}) - epoch_us(timestamp)) // {_DAY_US} AS INTEGER) AS days_ago
        FROM {events.table}
        WHERE timestamp < {t}
    ),
    u AS (
        SELECT user_id,
               {sep.join(per_user)}
        FROM base
        GROUP BY user_id
    ),
    session_starts AS ({_session_sql(events, config)}),
    s AS (
        SELECT user_id, {", ".join(per_user_sessions)}
        FROM session_starts
        GROUP BY user_id
    )
    SELECT u.user_id,
           epoch({t} - u.last_ts) / 86400.0 AS recency_days,
           epoch({t} - u.first_ts) / 86400.0 AS tenure_days,
           u.events_total, s.sessions_total,
           {distinct_events} AS distinct_events,
           u.events_total / s.sessions_total AS events_per_session,
           CAST(u.revenue_total AS DOUBLE) AS revenue_total, u.orders,
           CASE WHEN u.orders > 0 THEN CAST(u.order_revenue AS DOUBLE) / u.orders ELSE 0 END
               AS avg_order_value,
           ln((1 + u.events_{short}d) / (1 + u.events_previous)) AS activity_trend,
           {", ".join(passthrough)}
    FROM u JOIN s ON s.user_id = u.user_id {distinct_join}
    ORDER BY u.user_id
    """


def _session_sql(events: EventLog, config: FeatureConfig) -> str:
    """Return the SQL of one row per session: ``user_id``, ``start_days_ago`` (its first day).

    With session ids, a session is a (user, session id) group; rows without an id
    form one session per timestamp. Without them, sessions are cut where a user's
    previous event is more than ``session_gap_minutes`` earlier. Instead of
    sorting every event by user and time, events are first grouped into pieces
    (user, slice of one gap's length): events within a piece are less than a gap
    apart, so only the piece's first event can start a session, and it does when
    the previous piece of that user ended more than a gap before it. Only the
    pieces, a few times fewer than events, are sorted.
    """
    if events.has_session_id:
        return """
        SELECT user_id, max(days_ago) AS start_days_ago
        FROM base
        GROUP BY user_id, session_id, CASE WHEN session_id IS NULL THEN timestamp END"""
    gap_us = int(config.session_gap_minutes) * 60_000_000
    return f"""
        SELECT user_id, CAST(first_us // {_DAY_US} AS INTEGER) AS start_days_ago
        FROM (
            SELECT user_id, min(before_us) AS last_us, max(before_us) AS first_us
            FROM base
            GROUP BY user_id, before_us // {gap_us}
        )
        -- the previous piece of the user is the next one in time-before-as_of order
        QUALIFY coalesce(
            lead(last_us) OVER (PARTITION BY user_id ORDER BY first_us) > first_us + {gap_us},
            true
        )"""


def _decode_day_bits(table: pd.DataFrame, config: FeatureConfig, blocks: int) -> pd.DataFrame:
    """Turn the 63-day bitmaps into active-day counts and the median gap between active days.

    Bit ``i`` of block ``j`` is set when the user was active ``63 j + i`` days before
    as_of; decoding is vectorized over users, in chunks to bound memory.
    """
    columns = [f"day_bits_{j}" for j in range(blocks)]
    bits = np.ascontiguousarray(table[columns].to_numpy(dtype=np.int64)).view(np.uint64)
    table = table.drop(columns=columns)
    table["active_days_total"] = np.bitwise_count(bits).sum(axis=1).astype(np.int64)
    for w in sorted(config.windows):
        full, rest = divmod(min(w, _BLOCK_DAYS * blocks), _BLOCK_DAYS)
        count = np.bitwise_count(bits[:, :full]).sum(axis=1) if full else 0
        if rest:
            mask = np.uint64((1 << rest) - 1)
            count = count + np.bitwise_count(bits[:, full] & mask)
        table[f"active_days_{w}d"] = np.asarray(count, dtype=np.int64)
    medians = np.full(len(table), np.nan)
    chunk = 50_000
    for start in range(0, len(table), chunk):
        medians[start : start + chunk] = _median_gaps(bits[start : start + chunk])
    table["median_gap_days"] = medians
    return table


def _median_gaps(bits: np.ndarray) -> np.ndarray:
    """Median distance between consecutive set bits per row (NaN with fewer than two)."""
    flags = np.unpackbits(bits.view(np.uint8), axis=1, bitorder="little")
    # Drop bit 63 of every block (always 0) so that column index = days ago.
    flags = flags.reshape(bits.shape[0], bits.shape[1], 64)[:, :, :_BLOCK_DAYS]
    flags = flags.reshape(bits.shape[0], -1)
    rows, days = np.nonzero(flags)  # row-major: days ascend within each row
    same = rows[1:] == rows[:-1]
    gap_rows = rows[1:][same]
    gaps = (days[1:] - days[:-1])[same].astype(float)
    out = np.full(bits.shape[0], np.nan)
    if gaps.size == 0:
        return out
    order = np.lexsort((gaps, gap_rows))
    gaps, gap_rows = gaps[order], gap_rows[order]
    counts = np.bincount(gap_rows, minlength=bits.shape[0])
    has = counts > 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lower = starts + (counts - 1) // 2
    upper = starts + counts // 2
    out[has] = (gaps[lower[has]] + gaps[upper[has]]) / 2.0
    return out


def _empty_table(config: FeatureConfig) -> pd.DataFrame:
    return pd.DataFrame(
        {"user_id": pd.Series(dtype=object), **{n: [] for n in feature_names(config)}}
    )


def _finish(table: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """Fix dtypes and fill the one documented gap (``median_gap_days``)."""
    specs = describe_features(config)
    names = [spec.name for spec in specs]
    table["median_gap_days"] = table["median_gap_days"].astype(float)
    table["median_gap_days"] = table["median_gap_days"].fillna(table["tenure_days"])
    for spec in specs:
        table[spec.name] = table[spec.name].astype(np.int64 if spec.integer else np.float64)
    table = table[["user_id", *names]].reset_index(drop=True)
    table.columns.name = None
    return table
