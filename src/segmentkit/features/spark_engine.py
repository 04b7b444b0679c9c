"""As-of features on Apache Spark: the DuckDB engine's table, computed partition by partition.

:func:`build_features_spark` returns the same table as
:func:`segmentkit.features.duckdb_engine.build_features`, bit for bit, because it
*is* that engine: the log arrives shuffled once by user
(:func:`segmentkit.io.spark.load_events_spark`), so a partition holds every event
of its users, and a Python worker runs the local engine on each partition's rows
(Arrow batches loaded into a DuckDB of one thread and bounded memory; see
:func:`segmentkit.io.spark.partition_events`). The feature set has one
definition and one implementation; the rows never reach the driver.

pyspark is an optional dependency (``pip install 'segmentkit[spark]'``); this
module is imported only on request, never by ``import segmentkit``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator

import pyarrow as pa

from segmentkit.config import ColumnMap, FeatureConfig
from segmentkit.features.definitions import describe_features
from segmentkit.features.duckdb_engine import _check_log_covers, build_features
from segmentkit.io.events import EventLog, to_timestamp
from segmentkit.io.spark import (
    Derive,
    DeriveFactory,
    SparkEventLog,
    SparkEventSource,
    derived_frame,
    load_events_spark,
    partition_events,
)

try:
    from pyspark.sql import DataFrame
    from pyspark.sql import types as T
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Spark engine needs pyspark: pip install 'segmentkit[spark]'") from exc

__all__ = [
    "arrow_schema",
    "build_features_spark",
    "feature_schema",
    "features_of_partitions",
    "partition_features",
]


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
        # One pass: each partition is cleaned and its features computed in the same
        # Python worker (the events are never kept); the features are kept instead.
        log = load_events_spark(
            events, columns, as_of=cutoff, derive=features_of_partitions(cutoff, config)
        )
        return derived_frame(log)
    if events.derived is not None:
        raise TypeError("build_features_spark: this log keeps derived tables, not its events")
    _check_log_covers(events.as_of, cutoff)
    schema = feature_schema(events.schema["user_id"].dataType, config)
    has_revenue, has_session_id = events.has_revenue, events.has_session_id

    def features(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        log = partition_events(batches, has_revenue, has_session_id)
        if log is None:
            return
        try:
            yield from partition_features(log, cutoff, config, schema).to_batches()
        finally:
            log.con.close()

    return events.packed.mapInArrow(features, schema)


def features_of_partitions(as_of: dt.datetime, config: FeatureConfig) -> DeriveFactory:
    """``derive`` for :func:`load_events_spark` that keeps each partition's features."""

    def derive(user_type: T.DataType) -> tuple[Derive, T.StructType]:
        schema = feature_schema(user_type, config)
        return functools.partial(
            partition_features, as_of=as_of, config=config, schema=schema
        ), schema

    return derive


def partition_features(
    log: EventLog, as_of: dt.datetime, config: FeatureConfig, schema: T.StructType
) -> pa.Table:
    """Return the local engine's features of one partition's events (Arrow, ``schema``).

    Runs in a Python worker; ``schema`` is the driver's :func:`feature_schema`.
    """
    table = build_features(log, as_of, config)
    names = schema.fieldNames()
    if list(table.columns) != names:
        # An executor whose segmentkit declares other features than the driver's.
        raise NotImplementedError(
            f"the feature engine on this executor returns {list(table.columns)}, "
            f"the driver's catalogue declares {names}"
        )
    return pa.Table.from_pandas(table, schema=arrow_schema(schema), preserve_index=False)


_ARROW_TYPES = {T.StringType: pa.string(), T.LongType: pa.int64(), T.DoubleType: pa.float64()}


def arrow_schema(schema: T.StructType) -> pa.Schema:
    """Return the Arrow schema of a frame of string, bigint and double columns."""
    return pa.schema([pa.field(f.name, _ARROW_TYPES[type(f.dataType)]) for f in schema.fields])


def feature_schema(user_type: T.DataType, config: FeatureConfig | None = None) -> T.StructType:
    """Return the Spark schema of the feature table, from the feature catalogue.

    ``user_id`` (of ``user_type``) then every feature of
    :func:`segmentkit.features.definitions.describe_features`: bigint for counts,
    double otherwise.
    """
    return T.StructType(
        [
            T.StructField("user_id", user_type, True),
            *[
                T.StructField(spec.name, T.LongType() if spec.integer else T.DoubleType(), True)
                for spec in describe_features(config)
            ],
        ]
    )
