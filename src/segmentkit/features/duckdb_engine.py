"""DuckDB engine: the feature table of every user as of a snapshot, in one SQL pass."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from segmentkit.config import ColumnMap, FeatureConfig
from segmentkit.errors import DataValidationError
from segmentkit.features.definitions import describe_features, feature_names
from segmentkit.io.events import (
    MICROS_PER_DAY,
    EventLog,
    EventSource,
    epoch_us,
    load_events,
    to_timestamp,
)
from segmentkit.parallel import thread_map
from segmentkit.text import slug, sql_literal, sql_timestamp

# Bitmaps of event types stay exact up to this many distinct events.
_MAX_BITMAP_EVENTS = 63


# Days per activity bitmap: 63 bits keep a BIGINT positive (unsigned integers reach
# pandas as float64 and would lose bits).
_BLOCK_DAYS = 63
#: Longest span from the first event to a snapshot: a log of user behaviour spanning
#: more has a placeholder or mistyped timestamp (or as_of), and the feature query,
#: one bitmap column per block of the span, would grow without bound (DuckDB itself
#: crashed near 17,000 blocks, a span of 3,000 years).
MAX_SPAN_YEARS = 100
_user_day_ids = itertools.count()


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
    sql = _feature_sql(events, cutoff, config, vocabulary, blocks, span_days)
    table = _fetch(events, sql)
    _note_users(events, cutoff, len(table))
    return _finish(_decode_day_bits(table, config, blocks), config)


def _fetch(events: EventLog, sql: str) -> pd.DataFrame:
    """Run a feature query and return its result as a DataFrame, through Arrow.

    The same frame as DuckDB's ``.df()`` (dtypes and values), for less CPU: measured
    on the 1M-user table of ``benchmarks/scoring.py``, 0.30 s against 0.7-0.86 s.
    """
    return events.con.sql(sql).to_arrow_table().to_pandas()


def _note_users(events: EventLog, cutoff: dt.datetime, users: int) -> None:
    """Give the log its number of users when a table as of ``cutoff`` holds every user.

    It does when every clean event is before ``cutoff``; the log then need not count
    its users in another scan (see :attr:`EventLog.report`).
    """
    last = events.last_event
    if last is not None and dt.datetime.fromisoformat(last) < cutoff:
        events.note_users(users)


def build_features_many(
    events: EventLog | EventSource,
    as_of_dates: Sequence[dt.date | dt.datetime | str],
    config: FeatureConfig | None = None,
    *,
    columns: ColumnMap | None = None,
) -> list[pd.DataFrame]:
    """Compute the feature tables of several snapshots, reading the log once.

    Equal to ``[build_features(events, t, config) for t in as_of_dates]``, but the
    events are read once: they are grouped into one row per user, day before the
    latest snapshot and session start (:func:`_user_day_sql`), and each snapshot
    aggregates that much smaller table. Snapshots a whole number of days apart share
    one grouping; others (different times of day) get one each. Measured on the
    15.9M-event, 100k-user, 240-day demo log at 6 monthly snapshots
    (``benchmarks/features.py --snapshots 6 --snapshot-step 30``): 1.8 times less
    CPU than a loop of :func:`build_features`, for a higher peak memory (1.12 vs
    0.69 GiB: the user-day table, about 100 bytes a row).

    Parameters
    ----------
    events : EventLog or event source
        A validated log from :func:`segmentkit.io.events.load_events`, or anything it
        accepts (then it is validated here with ``columns``, cut off at the latest date).
    as_of_dates : sequence of date-like
        Snapshot times, in any order (repeats allowed).
    config : FeatureConfig, optional
        Windows, session gap and key events.
    columns : ColumnMap, optional
        Column mapping, used when ``events`` is not yet an ``EventLog``.

    Returns
    -------
    list of pandas.DataFrame
        One table per date of ``as_of_dates``, in that order, each as
        :func:`build_features` returns it.

    Examples
    --------
    >>> import pandas as pd
    >>> raw = pd.DataFrame({"user_id": ["a", "a", "b"],
    ...                     "timestamp": ["2024-01-01 10:00", "2024-01-03 09:00", "2024-01-02"],
    ...                     "event": ["view", "purchase", "view"],
    ...                     "revenue": [0.0, 20.0, 0.0]})
    >>> early, late = build_features_many(raw, ["2024-01-02", "2024-01-04"])
    >>> early["user_id"].tolist(), late["active_days_total"].tolist()
    (['a'], [2, 1])
    """
    config = config or FeatureConfig()
    cutoffs = [to_timestamp(as_of) for as_of in as_of_dates]
    if not cutoffs:
        return []
    if not isinstance(events, EventLog):
        events = load_events(events, columns, as_of=max(cutoffs))
    for cutoff in cutoffs:
        _check_log_covers(events.as_of, cutoff)
    by_time_of_day: dict[int, list[dt.datetime]] = {}
    for cutoff in sorted(set(cutoffs)):
        by_time_of_day.setdefault(epoch_us(cutoff) % MICROS_PER_DAY, []).append(cutoff)
    tables: dict[dt.datetime, pd.DataFrame] = {}
    for aligned in by_time_of_day.values():
        tables.update(_aligned_snapshots(events, aligned, config))
    out, seen = [], set()
    for cutoff in cutoffs:
        out.append(tables[cutoff].copy() if cutoff in seen else tables[cutoff])
        seen.add(cutoff)
    return out


def _aligned_snapshots(
    events: EventLog, cutoffs: list[dt.datetime], config: FeatureConfig
) -> dict[dt.datetime, pd.DataFrame]:
    """Feature tables of snapshots a whole number of days apart, from one user-day table.

    An event ``d`` whole days before the latest snapshot L (``days_ago`` counted from
    L) is ``d - n`` days before a snapshot ``n`` days earlier, and before it when its
    timestamp is; a user-day row holds events of one such ``d`` and is either wholly
    before a snapshot or not (an event exactly at the snapshot gets its own row).
    Session starts do not depend on the snapshot: an event starts a session when the
    user's previous event is more than a gap earlier (or, with session ids, when it
    is the first of its session), whatever comes later; so each row also counts
    the sessions that start with its events.
    """
    latest = max(cutoffs)
    vocabulary, span_days = _scan_facts(events, latest)
    if span_days == 0:
        return {cutoff: _finish(_empty_table(config), config) for cutoff in cutoffs}
    user_days = f"_sk_user_days_{next(_user_day_ids)}"
    events.con.execute(
        f"CREATE TEMP TABLE {user_days} AS {_user_day_sql(events, latest, config, vocabulary)}"
    )
    try:
        if vocabulary is None:
            events.con.execute(
                f"""CREATE TEMP TABLE {user_days}_events AS
                SELECT user_id, event, min(timestamp) AS first_ts FROM {events.table}
                WHERE timestamp < {sql_timestamp(latest)} GROUP BY user_id, event"""
            )
        ((first,),) = events.con.execute(f"SELECT min(first_ts) FROM {user_days}").fetchall()
        tables = {}
        for cutoff in cutoffs:
            # As in _scan_facts: days from the first event before the snapshot.
            span = int((cutoff - first).total_seconds() // 86_400) + 1 if first < cutoff else 0
            tables[cutoff] = _snapshot_from_user_days(
                events, user_days, latest, cutoff, config, vocabulary, span
            )
        _note_users(events, latest, len(tables[latest]))
        return tables
    finally:
        events.con.execute(f"DROP TABLE IF EXISTS {user_days}")
        events.con.execute(f"DROP TABLE IF EXISTS {user_days}_events")


def _user_day_sql(
    events: EventLog, latest: dt.datetime, config: FeatureConfig, vocabulary: list[str] | None
) -> str:
    """Return the SQL of one row per user, whole days before ``latest`` and edge flag.

    ``on_edge`` marks events exactly a whole number of days before ``latest`` (they
    are at, not before, the snapshot of that day). Every count and sum is kept per
    row, so that a snapshot's features are sums, minima and bitwise ORs of rows.
    """
    code, event_bits = _event_code(vocabulary)
    key_events = list(dict.fromkeys(config.key_events))
    one_line_orders = events.order_times_unique is True
    per_day = [
        "count(*) AS events",
        "sum(revenue) AS revenue",
        *([_ORDERS_AS_ROWS] if one_line_orders else []),
        "coalesce(sum(revenue) FILTER (WHERE revenue > 0), 0) AS order_revenue",
        "min(timestamp) AS first_ts",
        "max(timestamp) AS last_ts",
        f"{event_bits} AS event_bits",
    ] + [
        f"count(*) FILTER (WHERE {_key_event_hit(name, vocabulary)}) AS {slug(name)}_events"
        for name in key_events
    ]
    sep = ",\n               "
    orders_sql = orders_column = orders_join = ""
    if not one_line_orders:
        orders_sql = f""",
    o AS (
        SELECT user_id, days_ago, before_us % {MICROS_PER_DAY} = 0 AS on_edge,
               count(*) AS orders
        FROM ({_order_times_sql()})
        GROUP BY ALL
    )"""
        orders_column = ", coalesce(o.orders, 0) AS orders"
        orders_join = "\n           LEFT JOIN o USING (user_id, days_ago, on_edge)"
    return f"""
    WITH base AS NOT MATERIALIZED ({_base_sql(events, latest, code)}),
    d AS (
        SELECT user_id, days_ago, before_us % {MICROS_PER_DAY} = 0 AS on_edge,
               {sep.join(per_day)}
        FROM base
        GROUP BY ALL
    ),
    session_starts AS ({_session_sql(events, config)}),
    s AS (
        SELECT user_id, CAST(start_us // {MICROS_PER_DAY} AS INTEGER) AS days_ago,
               start_us % {MICROS_PER_DAY} = 0 AS on_edge, count(*) AS sessions
        FROM session_starts
        GROUP BY ALL
    ){orders_sql}
    SELECT d.*, coalesce(s.sessions, 0) AS sessions{orders_column}
    FROM d LEFT JOIN s USING (user_id, days_ago, on_edge){orders_join}
    """


def _day_bit_columns(blocks: int, shift: int = 0) -> list[str]:
    """Return the aggregates OR-ing active days into 63-day bitmaps (``day_bits_<j>``).

    ``days_ago`` is counted from the snapshot plus ``shift`` days. The bit shift is
    evaluated on every row (before any FILTER), hence the CASE keeping it in range.
    """
    columns = []
    for j in range(blocks):
        lo, hi = _BLOCK_DAYS * j + shift, _BLOCK_DAYS * (j + 1) + shift
        columns.append(
            f"bit_or(CASE WHEN days_ago >= {lo} AND days_ago < {hi} "
            f"THEN 1::BIGINT << (days_ago - {lo}) ELSE 0::BIGINT END) AS day_bits_{j}"
        )
    return columns


def _snapshot_from_user_days(
    events: EventLog,
    user_days: str,
    latest: dt.datetime,
    cutoff: dt.datetime,
    config: FeatureConfig,
    vocabulary: list[str] | None,
    span_days: int,
) -> pd.DataFrame:
    """Return the feature table as of ``cutoff`` from the user-day table of ``latest``."""
    if span_days <= 0:
        return _finish(_empty_table(config), config)
    blocks = -(-span_days // _BLOCK_DAYS)
    shift = (latest - cutoff).days  # days_ago counted from cutoff = days_ago - shift
    windows = sorted(config.windows)
    short = windows[0]
    key_events = list(dict.fromkeys(config.key_events))

    def within(lo: int, hi: int) -> str:
        return f"days_ago >= {lo + shift} AND days_ago < {hi + shift}"

    per_user = [
        "CAST(sum(events) AS BIGINT) AS events_total",
        "sum(revenue) AS revenue_total",
        "CAST(sum(orders) AS BIGINT) AS orders",
        "sum(order_revenue) AS order_revenue",
        "min(first_ts) AS first_ts",
        "max(last_ts) AS last_ts",
        "bit_or(event_bits) AS event_bits",
        f"CAST(coalesce(sum(events) FILTER (WHERE {within(short, 2 * short)}), 0) AS BIGINT)"
        " AS events_previous",
        "CAST(sum(sessions) AS BIGINT) AS sessions_total",
    ] + [f"CAST(sum({slug(name)}_events) AS BIGINT) AS {slug(name)}_events" for name in key_events]
    for w in windows:
        recent = f"days_ago < {w + shift}"
        per_user += [
            f"CAST(coalesce(sum(events) FILTER (WHERE {recent}), 0) AS BIGINT) AS events_{w}d",
            f"coalesce(sum(revenue) FILTER (WHERE {recent}), 0) AS revenue_{w}d",
            f"CAST(coalesce(sum(sessions) FILTER (WHERE {recent}), 0) AS BIGINT) AS sessions_{w}d",
        ]
    per_user += _day_bit_columns(blocks, shift)
    t = sql_timestamp(cutoff)
    distinct_events, distinct_join = "bit_count(u.event_bits)", ""
    if vocabulary is None:
        distinct_events = "x.distinct_events"
        distinct_join = f"""
            JOIN (SELECT user_id, count(*) AS distinct_events FROM {user_days}_events
                  WHERE first_ts < {t} GROUP BY user_id) x
              ON x.user_id = u.user_id"""
    sep = ",\n               "
    columns = _output_columns(cutoff, config, blocks, distinct_events, lambda name: f"u.{name}")
    sql = f"""
    WITH u AS (
        SELECT user_id,
               {sep.join(per_user)}
        FROM {user_days}
        WHERE first_ts < {t}
        GROUP BY user_id
    )
    SELECT u.user_id,
           {sep.join(columns)}
    FROM u {distinct_join}
    ORDER BY u.user_id
    """
    table = _fetch(events, sql)
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
    first_event = events.first_event
    if events.event_names is not None and first_event is not None:
        first = dt.datetime.fromisoformat(first_event)
        if first >= cutoff:
            return [], 0
        names = list(events.event_names)
        span_days = _checked_span_days(first, cutoff, events.columns.timestamp)
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
    span_days = _checked_span_days(first, cutoff, events.columns.timestamp)
    names = [row[0] for row in rows if row[0] is not None]
    return (names if len(names) <= _MAX_BITMAP_EVENTS else None), span_days


def _checked_span_days(first: dt.datetime, cutoff: dt.datetime, column: str = "timestamp") -> int:
    """Days from the first event to the snapshot, counting both; refused beyond MAX_SPAN_YEARS.

    Raises
    ------
    DataValidationError
        Naming the first event and the snapshot.

    Examples
    --------
    >>> _checked_span_days(dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 1, 3))
    2
    """
    span_days = int((cutoff - first).total_seconds() // 86_400) + 1
    if span_days > MAX_SPAN_YEARS * 366:
        raise DataValidationError(
            f"column {column!r} (timestamp): the events before as_of {cutoff:%Y-%m-%d} start "
            f"on {first.date().isoformat()}, {span_days:,} days earlier; expected at most "
            f"{MAX_SPAN_YEARS} years of behaviour (a placeholder timestamp such as 0001-01-01, "
            "or a mistyped as_of?)"
        )
    return span_days


def _feature_sql(
    events: EventLog,
    cutoff: dt.datetime,
    config: FeatureConfig,
    vocabulary: list[str] | None,
    blocks: int,
    span_days: int,
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

    Every event before T is fewer than ``span_days`` days before it, so a window
    of at least ``span_days`` days holds every event: its counts and sums are the
    totals, written without a filter (DuckDB then computes each of them once).
    Measured at 200k users: a filtered revenue sum costs about a quarter of a
    bare ``GROUP BY user_id`` count.
    """
    t = sql_timestamp(cutoff)
    windows = sorted(config.windows)
    short = windows[0]
    key_events = list(dict.fromkeys(config.key_events))
    code, event_bits = _event_code(vocabulary)
    one_line_orders = events.order_times_unique is True
    per_user = [
        "count(*) AS events_total",
        "sum(revenue) AS revenue_total",
        *([_ORDERS_AS_ROWS] if one_line_orders else []),
        "coalesce(sum(revenue) FILTER (WHERE revenue > 0), 0) AS order_revenue",
        "min(timestamp) AS first_ts",
        "max(timestamp) AS last_ts",
        f"{event_bits} AS event_bits",
        f"count(*) FILTER (WHERE days_ago >= {short} AND days_ago < {2 * short})"
        " AS events_previous",
    ]
    for name in key_events:
        hit = _key_event_hit(name, vocabulary)
        per_user.append(f"count(*) FILTER (WHERE {hit}) AS {slug(name)}_events")
    per_user_sessions = ["count(*) AS sessions_total"]
    for w in windows:
        if w >= span_days:  # the window holds every event (see above)
            per_user += [f"count(*) AS events_{w}d", f"sum(revenue) AS revenue_{w}d"]
            per_user_sessions.append(f"count(*) AS sessions_{w}d")
            continue
        per_user += [
            f"count(*) FILTER (WHERE days_ago < {w}) AS events_{w}d",
            f"coalesce(sum(revenue) FILTER (WHERE days_ago < {w}), 0) AS revenue_{w}d",
        ]
        per_user_sessions.append(
            f"count(*) FILTER (WHERE start_us < {w * MICROS_PER_DAY}) AS sessions_{w}d"
        )
    per_user += _day_bit_columns(blocks)
    distinct_events = "bit_count(u.event_bits)"
    distinct_join = ""
    if vocabulary is None:
        distinct_events = "x.distinct_events"
        distinct_join = f"""
            JOIN (SELECT user_id, count(DISTINCT event) AS distinct_events
                  FROM {events.table} WHERE timestamp < {t} GROUP BY user_id) x
              ON x.user_id = u.user_id"""
    sep = ",\n               "
    qualify = _qualify
    orders_sql = orders_join = ""
    if not one_line_orders:
        orders_sql = f""",
    o AS (
        SELECT user_id, count(*) AS orders FROM ({_order_times_sql()}) GROUP BY user_id
    )"""
        orders_join = "LEFT JOIN o ON o.user_id = u.user_id"
        qualify = _qualify_with_orders
    columns = _output_columns(cutoff, config, blocks, distinct_events, qualify)
    return f"""
    WITH base AS NOT MATERIALIZED ({_base_sql(events, cutoff, code)}),
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
    ){orders_sql}
    SELECT u.user_id,
           {sep.join(columns)}
    FROM u JOIN s ON s.user_id = u.user_id {orders_join} {distinct_join}
    ORDER BY u.user_id
    """


def _event_code(vocabulary: list[str] | None) -> tuple[str, str]:
    """Return the SQL of an event's integer code and of the bitmap of a user's codes."""
    if vocabulary is None:
        return "NULL::INTEGER", "NULL::BIGINT"
    # list_position runs once per distinct name of a dictionary-encoded column,
    # a CASE over the names once per row (measured twice as costly).
    names = ", ".join(sql_literal(v) for v in vocabulary)
    return f"list_position([{names}], event) - 1", "bit_or(1::BIGINT << code)"


def _key_event_hit(name: str, vocabulary: list[str] | None) -> str:
    """Return the SQL condition of a row being the key event ``name``."""
    if vocabulary is None:
        return f"event = {sql_literal(name)}"
    if name in vocabulary:
        return f"code = {vocabulary.index(name)}"
    return "false"


def _qualify(name: str) -> str:
    """Qualify a per-user aggregate of :func:`_feature_sql` by its CTE (``u`` or ``s``)."""
    return f"s.{name}" if name.startswith("sessions_") else f"u.{name}"


def _qualify_with_orders(name: str) -> str:
    """:func:`_qualify`, with ``orders`` from the CTE of order times ``o``."""
    if name == "orders":  # users without an order have no row in ``o``
        return "coalesce(o.orders, 0)"
    return _qualify(name)


def _base_sql(events: EventLog, cutoff: dt.datetime, code: str) -> str:
    """Return the SQL of the typed events before ``cutoff`` with their time before it."""
    t = sql_timestamp(cutoff)
    return f"""
        SELECT user_id, timestamp, event, {code} AS code,
               CAST(coalesce(revenue, 0) AS DECIMAL(18, 6)) AS revenue, session_id,
               epoch_us({t}) - epoch_us(timestamp) AS before_us,
               CAST((epoch_us({t}) - epoch_us(timestamp)) // {MICROS_PER_DAY} AS INTEGER)
                   AS days_ago
        FROM {events.table}
        WHERE timestamp < {t}"""


def _output_columns(
    cutoff: dt.datetime,
    config: FeatureConfig,
    blocks: int,
    distinct_events: str,
    col: Callable[[str], str],
) -> list[str]:
    """Return the select list of the feature table from per-user aggregates.

    ``col(name)`` qualifies an aggregate column (``events_total``, ``sessions_7d``,
    ``day_bits_0``...); both the one-snapshot and the many-snapshot queries end
    with these same expressions, so they compute the same values.
    """
    t = sql_timestamp(cutoff)
    windows = sorted(config.windows)
    short = windows[0]
    key_events = list(dict.fromkeys(config.key_events))
    passthrough = (
        [f"{col(f'{slug(name)}_events')} AS {slug(name)}_events" for name in key_events]
        + [f"{col(f'{c}_{w}d')} AS {c}_{w}d" for w in windows for c in ("events", "sessions")]
        + [f"CAST({col(f'revenue_{w}d')} AS DOUBLE) AS revenue_{w}d" for w in windows]
        + [f"{col(f'day_bits_{j}')} AS day_bits_{j}" for j in range(blocks)]
    )
    events_total, orders = col("events_total"), col("orders")
    return [
        f"epoch({t} - {col('last_ts')}) / 86400.0 AS recency_days",
        f"epoch({t} - {col('first_ts')}) / 86400.0 AS tenure_days",
        f"{events_total} AS events_total",
        f"{col('sessions_total')} AS sessions_total",
        f"{distinct_events} AS distinct_events",
        f"{events_total} / {col('sessions_total')} AS events_per_session",
        f"CAST({col('revenue_total')} AS DOUBLE) AS revenue_total",
        f"{orders} AS orders",
        f"CASE WHEN {orders} > 0 THEN CAST({col('order_revenue')} AS DOUBLE) / {orders} "
        "ELSE 0 END AS avg_order_value",
        f"ln((1 + {col(f'events_{short}d')}) / (1 + {col('events_previous')})) AS activity_trend",
        *passthrough,
    ]


#: Orders as rows with revenue: exact where no order has several lines (see
#: :func:`_order_times_sql` for the others).
_ORDERS_AS_ROWS = "count(*) FILTER (WHERE revenue > 0) AS orders"


def _order_times_sql() -> str:
    """Return the SQL of one row per order: a user's distinct time with revenue > 0.

    An order is a purchase occasion, not a row: an order table with one row per line
    item (many rows at one user and time) holds one order per time, as the count
    target's labels count them (:mod:`segmentkit.models.labels`). Grouping only the
    rows with revenue (a few percent of an event log) still reads every user id again:
    measured on the 1M-user demo log, a tenth more CPU for the feature query (a
    ``count(DISTINCT ...)`` inside the wide aggregation cost four fifths more). So it
    is used only where orders may have several lines: when the log's duplicate check
    found no two rows with revenue at one user and time
    (:attr:`~segmentkit.io.events.EventLog.order_times_unique`), rows are orders.
    """
    return "SELECT user_id, days_ago, before_us FROM base WHERE revenue > 0 GROUP BY ALL"


def _session_sql(events: EventLog, config: FeatureConfig) -> str:
    """Return the SQL of one row per session: ``user_id``, ``start_us`` (its start, before T).

    ``start_us`` is the ``before_us`` of the session's first event.

    With session ids, a session is a (user, session id) group; the rows without an id
    (a tracker that sets one only for some events, say) are cut into sessions at gaps
    among themselves, as a log without ids is: three such clicks a minute apart are
    one session, not three. Without ids, sessions are cut where a user's previous
    event is more than ``session_gap_minutes`` earlier. Instead of sorting every
    event by user and time, events are first grouped into pieces (user, slice of one
    gap's length): events within a piece are less than a gap apart, so only the
    piece's first event can start a session, and it does when the previous piece of
    that user ended more than a gap before it. Only the pieces, a few times fewer
    than events, are sorted.

    The rows without an id are read in a scan of their own, which DuckDB skips by
    the column's null statistics when there are none (Parquet row groups, tables).
    """
    gap_us = int(config.session_gap_minutes) * 60_000_000
    gap_sessions = f"""
        SELECT user_id, first_us AS start_us
        FROM (
            SELECT user_id, min(before_us) AS last_us, max(before_us) AS first_us
            FROM base {{where}}
            GROUP BY user_id, before_us // {gap_us}
        )
        -- the previous piece of the user is the next one in time-before-as_of order
        QUALIFY coalesce(
            lead(last_us) OVER (PARTITION BY user_id ORDER BY first_us) > first_us + {gap_us},
            true
        )"""
    if events.has_session_id:
        return """
        SELECT user_id, max(before_us) AS start_us
        FROM base WHERE session_id IS NOT NULL
        GROUP BY user_id, session_id
        UNION ALL""" + gap_sessions.format(where="WHERE session_id IS NULL")
    return gap_sessions.format(where="")


def _decode_day_bits(table: pd.DataFrame, config: FeatureConfig, blocks: int) -> pd.DataFrame:
    """Turn the 63-day bitmaps into active-day counts and the median gap between active days.

    Bit ``i`` of block ``j`` is set when the user was active ``63 j + i`` days before
    as_of; counts are vectorized over users, median gaps computed by a compiled
    kernel (:func:`_median_gaps`).
    """
    columns = [f"day_bits_{j}" for j in range(blocks)]
    bits = np.ascontiguousarray(table[columns].to_numpy(dtype=np.int64))
    table = table.drop(columns=columns)
    unsigned = bits.view(np.uint64)
    table["active_days_total"] = np.bitwise_count(unsigned).sum(axis=1).astype(np.int64)
    for w in sorted(config.windows):
        full, rest = divmod(min(w, _BLOCK_DAYS * blocks), _BLOCK_DAYS)
        count = np.bitwise_count(unsigned[:, :full]).sum(axis=1) if full else 0
        if rest:
            mask = np.uint64((1 << rest) - 1)
            count = count + np.bitwise_count(unsigned[:, full] & mask)
        table[f"active_days_{w}d"] = np.asarray(count, dtype=np.int64)
    table["median_gap_days"] = _median_gaps(bits)
    return table


#: Rows per call of the median-gap kernel (calls run on the shared thread pool).
_MEDIAN_CHUNK_ROWS = 131_072


def _median_gaps(bits: np.ndarray) -> np.ndarray:
    """Median distance in days between consecutive active days, per row (NaN below two).

    ``bits`` holds one row of 63-day blocks (int64, bit 63 unused) per user. A
    compiled loop over the set bits replaces unpacking every user's days into a
    byte matrix (measured at 1M users: 1.2 s of CPU in numpy, a few hundredths here).

    Examples
    --------
    >>> days = [0, 3, 4, 10, 70]  # gaps 3, 1, 6, 60
    >>> row = [sum(1 << d for d in days if d < 63), sum(1 << (d - 63) for d in days if d >= 63)]
    >>> _median_gaps(np.array([row, [1, 0]], dtype=np.int64)).tolist()
    [4.5, nan]
    """
    kernel = _median_gaps_kernel()
    out = np.empty(bits.shape[0])
    starts = range(0, bits.shape[0], _MEDIAN_CHUNK_ROWS)
    thread_map(
        lambda start: kernel(
            bits[start : start + _MEDIAN_CHUNK_ROWS], out[start : start + _MEDIAN_CHUNK_ROWS]
        ),
        starts,
    )
    return out


def _median_gaps_rows(bits: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Kernel of :func:`_median_gaps`: writes the median gap of each row of ``bits`` to ``out``."""
    rows, blocks = bits.shape
    days = np.empty(_BLOCK_DAYS * blocks, np.int64)
    for r in range(rows):
        n = 0
        for j in range(blocks):
            block = bits[r, j]
            i = 0
            while block != 0:
                if block & 1:
                    days[n] = _BLOCK_DAYS * j + i
                    n += 1
                block >>= 1
                i += 1
        if n < 2:
            out[r] = np.nan
            continue
        gaps = np.sort(days[1:n] - days[: n - 1])
        m = n - 1
        out[r] = (gaps[(m - 1) // 2] + gaps[m // 2]) / 2.0


@functools.cache
def _median_gaps_kernel() -> Callable[[np.ndarray, np.ndarray], None]:
    """Compile :func:`_median_gaps_rows` on first use (numba is imported only then).

    Compiled as the scoring kernels are (cached on disk where writable).
    """
    from segmentkit.models.hgb_runtime import _kernel

    return _kernel(_median_gaps_rows)


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
