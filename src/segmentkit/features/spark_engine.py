"""As-of features on Apache Spark: the DuckDB engine's table, distributed.

:func:`build_features_spark` computes every feature of the catalogue in
:mod:`segmentkit.features.definitions` with the DataFrame API and returns the
same values as :func:`segmentkit.features.duckdb_engine.build_features`: counts,
sums (revenue summed as DECIMAL, exact in any order), time differences (in the
way DuckDB's ``epoch(interval)`` computes them) and medians are bit-identical;
``activity_trend`` takes its logarithm from the C library (as DuckDB does) in a
Python worker, since the JVM's ``log`` can differ in the last bit.

pyspark is an optional dependency (``pip install 'segmentkit[spark]'``); this
module is imported only on request, never by ``import segmentkit``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd

from segmentkit.config import ColumnMap, FeatureConfig
from segmentkit.features.definitions import describe_features
from segmentkit.features.duckdb_engine import _BLOCK_DAYS as BLOCK_DAYS
from segmentkit.features.duckdb_engine import (
    _MAX_BITMAP_EVENTS,
    _check_log_covers,
    _decode_day_bits,
)
from segmentkit.io.events import to_timestamp
from segmentkit.io.spark import (
    MICROS_PER_DAY,
    SparkEventLog,
    SparkEventSource,
    epoch_us,
    load_events_spark,
    utc_session,
)
from segmentkit.text import slug

try:
    from pyspark.sql import Column, DataFrame, Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Spark engine needs pyspark: pip install 'segmentkit[spark]'") from exc

__all__ = ["build_features_spark"]

_MICROS_PER_SECOND = 1_000_000


def build_features_spark(
    events: SparkEventLog | SparkEventSource,
    as_of: dt.date | dt.datetime | str,
    config: FeatureConfig | None = None,
    *,
    columns: ColumnMap | None = None,
) -> DataFrame:
    """Compute the as-of feature table on Spark, one row per user.

    The same table as :func:`segmentkit.features.build_features` (same columns,
    same values), as a lazy Spark DataFrame (not sorted).

    Parameters
    ----------
    events : SparkEventLog, Spark DataFrame or paths
        A log from :func:`load_events_spark`, or anything it accepts (then it is
        validated here with ``columns``).
    as_of : date-like
        Snapshot time T; only events with ``timestamp < T`` are read.
    config : FeatureConfig, optional
        Windows, session gap and key events.
    columns : ColumnMap, optional
        Column mapping, used when ``events`` is not yet a ``SparkEventLog``.

    Returns
    -------
    pyspark.sql.DataFrame
        ``user_id`` then the columns of :func:`segmentkit.features.feature_names`
        (bigint or double, as the DuckDB engine's int64 and float64).
    """
    config = config or FeatureConfig()
    cutoff = to_timestamp(as_of)
    if not isinstance(events, SparkEventLog):
        events = load_events_spark(events, columns, as_of=cutoff)
    else:
        _check_log_covers(events.as_of, cutoff)
    t_us = epoch_us(cutoff)
    # Days spanned before T, bounded by the log's first event: enough 63-day bitmaps.
    first = events.report.first_event
    first_us = epoch_us(dt.datetime.fromisoformat(first)) if first is not None else t_us
    blocks = max(1, -(-((t_us - first_us) // MICROS_PER_DAY + 1) // BLOCK_DAYS))
    spark = events.frame.sparkSession
    with utc_session(spark):
        return _feature_frame(events, t_us, config, blocks)


def _feature_frame(
    events: SparkEventLog, t_us: int, config: FeatureConfig, blocks: int
) -> DataFrame:
    """Build the DataFrame plan, mirroring the DuckDB engine's SQL column for column.

    The log arrives hash partitioned by user (see :func:`load_events_spark`), and
    every grouping here has ``user_id`` among its keys: sessions and users are
    aggregated inside that partitioning, without shuffling the events again.

    Revenue is summed as DECIMAL(18, 6), as in DuckDB: exact, so any aggregation
    order gives the same double. Time differences are converted to days the way
    DuckDB's ``epoch(interval)`` does (whole days plus the rest in seconds). Active
    days are OR-ed into the DuckDB engine's 63-day bitmaps and decoded by the same
    function, in Python workers; distinct event types are OR-ed into a bitmap too
    when the log has at most 63 of them (as in the DuckDB engine).
    """
    windows = sorted(config.windows)
    short = windows[0]
    key_events = list(dict.fromkeys(config.key_events))
    base = events.frame.where(F.col("ts_us") < F.lit(t_us)).select(
        "user_id",
        "ts_us",
        "event",
        F.coalesce(F.col("revenue"), F.lit(0.0)).cast("decimal(18,6)").alias("revenue"),
        "session_id",
        # Integer division truncates, which is floor here: the difference is positive.
        F.expr(f"({t_us} - ts_us) div {MICROS_PER_DAY}").cast("int").alias("days_ago"),
    )
    days_ago, revenue, event = F.col("days_ago"), F.col("revenue"), F.col("event")
    # A driver-side list of event names (bounded: it stops past the bitmap's width).
    names = [
        row[0] for row in base.select("event").distinct().limit(_MAX_BITMAP_EVENTS + 1).collect()
    ]
    vocabulary = sorted(names) if len(names) <= _MAX_BITMAP_EVENTS else None

    # Each per-user aggregate as (expression over events, how partial results combine).
    partial: dict[str, tuple[Column, str]] = {
        "events_total": (F.count(F.lit(1)), "sum"),
        "revenue_total": (F.sum(revenue), "sum"),
        "orders": (F.count_if(revenue > 0), "sum"),
        "order_revenue": (F.sum(F.when(revenue > 0, revenue)), "sum"),
        "first_us": (F.min("ts_us"), "min"),
        "last_us": (F.max("ts_us"), "max"),
        "events_previous": (F.count_if((days_ago >= short) & (days_ago < 2 * short)), "sum"),
    }
    if vocabulary is not None:
        codes = F.create_map(*[F.lit(x) for i, name in enumerate(vocabulary) for x in (name, i)])
        bit = F.call_function("shiftleft", F.lit(1).cast("bigint"), F.element_at(codes, event))
        partial["event_bits"] = (F.bit_or(bit), "bit_or")
    else:
        partial["event_set"] = (F.collect_set(event), "union")
    for j in range(blocks):
        lo = BLOCK_DAYS * j
        in_block = (days_ago >= lo) & (days_ago < lo + BLOCK_DAYS)
        bit = F.expr(f"shiftleft(CAST(1 AS BIGINT), days_ago - {lo})")
        partial[f"day_bits_{j}"] = (
            F.bit_or(F.when(in_block, bit).otherwise(F.lit(0).cast("bigint"))),
            "bit_or",
        )
    for name in key_events:
        partial[f"{slug(name)}_events"] = (F.count_if(event == F.lit(name)), "sum")
    for w in windows:
        partial[f"events_{w}d"] = (F.count_if(days_ago < w), "sum")
        partial[f"revenue_{w}d"] = (F.sum(F.when(days_ago < w, revenue)), "sum")

    if events.has_session_id:
        # Rows without a session id form one session per timestamp; a session starts
        # on its earliest event (the largest days_ago). Sessions are aggregated first,
        # then their partial aggregates are combined per user.
        lone = F.when(F.col("session_id").isNull(), F.col("ts_us"))
        sessions = base.groupBy("user_id", "session_id", lone.alias("lone")).agg(
            *[expr.alias(name) for name, (expr, _) in partial.items()],
            F.max(days_ago).alias("start_days_ago"),
        )
        start = F.col("start_days_ago")
        users = sessions.groupBy("user_id").agg(
            *[_combine(how, name).alias(name) for name, (_, how) in partial.items()],
            F.count(F.lit(1)).alias("sessions_total"),
            *[F.count_if(start < w).alias(f"sessions_{w}d") for w in windows],
        )
    else:
        # A session starts when the user's previous event is more than the gap earlier;
        # counting starts needs no second aggregation.
        gap_us = int(config.session_gap_minutes) * 60 * _MICROS_PER_SECOND
        previous = F.lag("ts_us").over(Window.partitionBy("user_id").orderBy("ts_us"))
        new = F.when(previous >= F.col("ts_us") - F.lit(gap_us), 0).otherwise(1)
        marked = base.withColumn("new_session", new)
        started = F.col("new_session") == 1
        users = marked.groupBy("user_id").agg(
            *[expr.alias(name) for name, (expr, _) in partial.items()],
            F.count_if(started).alias("sessions_total"),
            *[F.count_if(started & (days_ago < w)).alias(f"sessions_{w}d") for w in windows],
        )
    distinct = F.bit_count("event_bits") if vocabulary is not None else F.size("event_set")
    users = users.withColumn("distinct_events", distinct)
    zero = F.lit(0).cast("decimal(18,6)")
    users = users.withColumn("order_revenue", F.coalesce("order_revenue", zero))
    for w in windows:
        users = users.withColumn(f"revenue_{w}d", F.coalesce(f"revenue_{w}d", zero))
    return _finish(users, t_us, config, key_events, blocks)


def _combine(how: str, name: str) -> Column:
    """Combine per-session partial aggregates of ``name`` into the user's."""
    if how == "union":
        return F.array_distinct(F.flatten(F.collect_list(name)))
    return getattr(F, how)(name)


def _days_between(t_us: int, column: str) -> Column:
    """``epoch(T - ts) / 86400.0`` exactly as DuckDB computes it."""
    delta = F.lit(t_us) - F.col(column)
    whole = F.expr(f"({t_us} - {column}) div {MICROS_PER_DAY}") * F.lit(86_400)
    rest = (delta % F.lit(MICROS_PER_DAY)) / F.lit(1e6)
    return (whole.cast("double") + rest) / F.lit(86_400.0)


def _finish(
    users: DataFrame, t_us: int, config: FeatureConfig, key_events: list[str], blocks: int
) -> DataFrame:
    windows = sorted(config.windows)
    short = windows[0]
    computed: dict[str, Column] = {
        "recency_days": _days_between(t_us, "last_us"),
        "tenure_days": _days_between(t_us, "first_us"),
        "events_total": F.col("events_total"),
        "sessions_total": F.col("sessions_total"),
        "distinct_events": F.col("distinct_events").cast("bigint"),
        "events_per_session": F.col("events_total") / F.col("sessions_total"),
        "revenue_total": F.col("revenue_total").cast("double"),
        "orders": F.col("orders"),
        "avg_order_value": F.when(
            F.col("orders") > 0, F.col("order_revenue").cast("double") / F.col("orders")
        ).otherwise(F.lit(0.0)),
    }
    for name in key_events:
        computed[f"{slug(name)}_events"] = F.col(f"{slug(name)}_events")
    for w in windows:
        computed[f"events_{w}d"] = F.col(f"events_{w}d")
        computed[f"sessions_{w}d"] = F.col(f"sessions_{w}d")
        computed[f"revenue_{w}d"] = F.col(f"revenue_{w}d").cast("double")
    # Computed in Python workers from the columns below (see _decode).
    in_python = {"active_days_total", "median_gap_days", "activity_trend"}
    in_python |= {f"active_days_{w}d" for w in windows}
    specs = describe_features(config)
    unknown = [s.name for s in specs if s.name not in computed and s.name not in in_python]
    if unknown:  # declared in the catalogue, not implemented here
        raise NotImplementedError(f"the Spark engine does not implement feature(s) {unknown}")
    helpers = [
        F.col(f"events_{short}d").alias("_sk_events_short"),
        F.col("events_previous").alias("_sk_events_previous"),
        *[F.col(f"day_bits_{j}") for j in range(blocks)],
    ]
    partial = users.select(
        "user_id",
        *[
            computed[spec.name].cast("bigint" if spec.integer else "double").alias(spec.name)
            for spec in specs
            if spec.name in computed
        ],
        *helpers,
    )
    schema = T.StructType(
        [
            partial.schema["user_id"],
            *[
                T.StructField(spec.name, T.LongType() if spec.integer else T.DoubleType(), True)
                for spec in specs
            ],
        ]
    )
    names = [spec.name for spec in specs]

    def decode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield _decode(batch, config, blocks)[["user_id", *names]]

    return partial.mapInPandas(decode, schema)


def _decode(batch: pd.DataFrame, config: FeatureConfig, blocks: int) -> pd.DataFrame:
    """Active days and median gaps from the bitmaps, and ``activity_trend``, as DuckDB's engine.

    The bitmaps are decoded by the DuckDB engine's own function. The logarithm is the
    C library's (as DuckDB's ``ln``), not the JVM's, which can differ in the last bit.
    """
    table = _decode_day_bits(batch.reset_index(drop=True), config, blocks)
    table["median_gap_days"] = table["median_gap_days"].fillna(table["tenure_days"])
    ratio = (1 + table["_sk_events_short"].to_numpy(dtype=np.int64)) / (
        1 + table["_sk_events_previous"].to_numpy(dtype=np.int64)
    )
    table["activity_trend"] = np.array([math.log(x) for x in ratio], dtype=np.float64)
    return table
