"""Score users on Spark with a saved model: the same scores as local scoring, distributed.

The model travels to the executors as its bundle files (skops, checksummed) and
each Python worker loads it with :func:`segmentkit.bundle.load_bundle`, with the
same verification and allowlist as any load; no pickled estimator is sent.
Segments, probabilities and buckets depend on one user only and are computed
batch by batch; percentiles depend on the whole population and are computed
over it exactly, with a range partitioning of the scores (see
:func:`with_percentile`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segmentkit.bundle import SegmentationModel, live_version, load_bundle, save_bundle
from segmentkit.bundle.model import UNSAVED_VERSION
from segmentkit.config import ColumnMap
from segmentkit.errors import DataValidationError
from segmentkit.features.spark_engine import build_features_spark
from segmentkit.io.events import to_timestamp
from segmentkit.io.spark import (
    SparkEventLog,
    SparkEventSource,
    default_as_of_spark,
    load_events_spark,
    release_checkpoint,
)
from segmentkit.scoring import CHUNK_ROWS

__all__ = [
    "bundle_files",
    "score_features_spark",
    "score_spark",
    "with_percentile",
    "with_percentiles",
    "with_run_columns",
]

# Loaded models per Python worker process, by the digest of their manifest.
_WORKER_MODELS: dict[str, SegmentationModel] = {}


def bundle_files(model: SegmentationModel) -> dict[str, bytes]:
    """Save ``model`` as a bundle and return its live version's files (name to bytes)."""
    with tempfile.TemporaryDirectory(prefix="segmentkit-spark-") as tmp:
        live = live_version(save_bundle(model, Path(tmp) / "bundle"))
        return {path.name: path.read_bytes() for path in sorted(live.iterdir()) if path.is_file()}


def _worker_model(files: dict[str, bytes]) -> SegmentationModel:
    """Load (once per worker process) the model shipped as bundle files."""
    key = hashlib.sha256(files["MANIFEST.sha256"]).hexdigest()
    model = _WORKER_MODELS.get(key)
    if model is None:
        with tempfile.TemporaryDirectory(prefix="segmentkit-model-") as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            model = load_bundle(tmp)
        _WORKER_MODELS[key] = model
    return model


def _output_columns(model: SegmentationModel) -> list[tuple[str, str]]:
    """(score column, bucket column) per propensity target, in local scoring's order."""
    return [
        (m.output_name, f"{m.output_name}_bucket")
        for m in (model.propensity[name] for name in model.propensity)
    ]


def _batch_schema(model: SegmentationModel, user_type: T.DataType) -> T.StructType:
    fields = [
        T.StructField("user_id", user_type, True),
        T.StructField("segment_id", T.LongType(), False),
        T.StructField("segment_name", T.StringType(), False),
    ]
    for score, bucket in _output_columns(model):
        fields += [
            T.StructField(score, T.DoubleType(), True),
            T.StructField(bucket, T.StringType(), True),
        ]
    return T.StructType(fields)


def _score_chunk(chunk: pd.DataFrame, files: Any, columns: list[str]) -> pd.DataFrame:
    model = _worker_model(files.value)
    chunk = chunk.sort_values("_sk_row", kind="stable").drop(columns="_sk_row")
    return model.score_features(chunk.reset_index(drop=True))[columns]


def with_row_number(frame: DataFrame, order_by: str, cached: list[DataFrame]) -> DataFrame:
    """Add ``_sk_row``: the 0-based position of each row in ``order_by`` order.

    The frame is range partitioned, sorted and persisted (so that the count of each
    partition and the positions are read from the same partitions), then each row's
    position is its partition's offset plus its place inside the partition. The
    persisted frame is appended to ``cached``: the caller unpersists it once the
    result has been computed.
    """
    spark = frame.sparkSession
    partitions = int(spark.conf.get("spark.sql.shuffle.partitions"))
    ordered = (
        frame.repartitionByRange(partitions, F.col(order_by))
        .sortWithinPartitions(order_by)
        .withColumn("_sk_partition", F.spark_partition_id())
        .persist()
    )
    cached.append(ordered)
    counts = dict(ordered.groupBy("_sk_partition").count().collect())
    offsets, total = [], 0
    for key in range(max(counts, default=-1) + 1):
        offsets.append(total)
        total += int(counts.get(key, 0))
    # monotonically_increasing_id is the partition id (upper bits) and the row's place
    # in the partition, in the order the partition is read: sorted.
    place = F.monotonically_increasing_id() - F.shiftleft(F.spark_partition_id().cast("bigint"), 33)
    offset = F.element_at(F.array(*[F.lit(o) for o in offsets]), F.col("_sk_partition") + 1)
    return ordered.select(*frame.columns, (offset + place).alias("_sk_row"))


def score_features_spark(
    model: SegmentationModel,
    features: DataFrame,
    as_of: dt.datetime | None = None,
    model_version: str | None = None,
) -> DataFrame:
    """Score a Spark feature table (``user_id`` and the model's feature columns).

    The scores are computed here, once, and cached; the intermediate frames this
    needs are released before returning. Call ``.unpersist()`` on the result when
    done with it.

    Parameters
    ----------
    model : SegmentationModel
        A fitted model.
    features : pyspark.sql.DataFrame
        ``user_id`` and the model's feature columns.
    as_of, model_version : optional
        When given, the run columns of :func:`with_run_columns` are added.

    Returns
    -------
    pyspark.sql.DataFrame
        The columns of :meth:`SegmentationModel.score_features`: ``user_id,
        segment_id, segment_name`` and per target the score, its percentile over
        all scored users, and its bucket (then ``as_of, model_version`` if asked).
    """
    missing = [c for c in ["user_id", *model.feature_names] if c not in features.columns]
    if missing:
        raise DataValidationError(
            f"feature table lacks column(s) {missing} that the model was trained on"
        )
    spark = features.sparkSession
    files = spark.sparkContext.broadcast(bundle_files(model))
    schema = _batch_schema(model, features.schema["user_id"].dataType)
    columns = schema.fieldNames()
    cached: list[DataFrame] = []
    # Computed once here (range partitioning samples its input, then reads it again);
    # a local checkpoint, released below.
    selected = features.select("user_id", *model.feature_names).localCheckpoint(eager=True)
    try:
        # Local scoring multiplies the users, sorted by id, in chunks of CHUNK_ROWS
        # rows, and a BLAS product can round a row differently by its place in a
        # chunk: the same chunks here give the same bits.
        numbered = with_row_number(selected, "user_id", cached)
        chunk = (F.col("_sk_row") / F.lit(CHUNK_ROWS)).cast("bigint")
        scored = numbered.groupBy(chunk).applyInPandas(
            lambda rows: _score_chunk(rows, files, columns), schema
        )
        outputs = _output_columns(model)
        if outputs:
            # Percentiles read the scores once more per target: keep them, not score again.
            scored = scored.persist()
            cached.append(scored)
            scored = with_percentiles(scored, [score for score, _ in outputs])
            ordered = ["user_id", "segment_id", "segment_name"]
            for score, bucket in outputs:
                ordered += [score, f"{score}_percentile", bucket]
            scored = scored.select(*ordered)
        if as_of is not None:
            scored = with_run_columns(scored, as_of, model_version or UNSAVED_VERSION)
        result = scored.persist()
        result.count()  # computed now, so that the intermediate frames can go
    finally:
        for frame in cached:
            frame.unpersist()
        release_checkpoint(selected)
        files.unpersist()
    return result


def with_percentile(frame: DataFrame, column: str, buckets: int | None = None) -> DataFrame:
    """Add ``<column>_percentile``; see :func:`with_percentiles`."""
    return with_percentiles(frame, [column], buckets)


def with_percentiles(frame: DataFrame, columns: list[str], buckets: int | None = None) -> DataFrame:
    """Add ``<column>_percentile`` per column: the whole percent of rows at or below.

    Exactly :func:`segmentkit.scoring.percentile_rank` over the whole frame (int64,
    0-100; NaN scores are refused as there), computed without bringing the values
    together: approximate quantiles cut the values into ranges (a pure function of
    the value, so equal values share a range and reruns agree), a pass counts each
    range, the driver adds those few counts into offsets, and each row's rank is its
    range's offset plus its exact rank inside the range. Every column's cuts come
    from one pass over ``frame`` and its range counts from a second one (so ``frame``
    is read twice whatever the number of columns: persist it if it is costly); the
    ranking is one shuffle per column.

    Parameters
    ----------
    frame : pyspark.sql.DataFrame
        Any frame with double ``columns``.
    columns : list of str
        Columns to rank.
    buckets : int, optional
        Value ranges (default: 4 per shuffle partition); each is ranked in one task.
    """
    spark = frame.sparkSession
    buckets = buckets or 4 * int(spark.conf.get("spark.sql.shuffle.partitions"))
    values = {column: F.col(f"`{column}`") for column in columns}
    invalid = {c: F.isnan(v) | v.isNull() for c, v in values.items()}
    levels = [i / buckets for i in range(1, buckets)]
    facts = frame.agg(
        *[F.count_if(invalid[c]) for c in columns],
        *[
            F.percentile_approx(F.when(~invalid[c], values[c]), levels, 4 * buckets)
            for c in columns
        ],
    ).first()
    for c, n_invalid in zip(columns, facts[: len(columns)], strict=True):
        if n_invalid:
            raise ValueError(f"percentile_rank: scores in {c!r} contain NaN")
    range_of = {
        c: _range_index(values[c], sorted(set(cuts or [])))
        for c, cuts in zip(columns, facts[len(columns) :], strict=True)
    }
    # One row per (column, range): a few hundred rows at most reach the driver.
    ranges = frame.select(F.posexplode(F.array(*[range_of[c] for c in columns])))
    totals = {
        (int(column), int(index)): int(count)
        for column, index, count in ranges.groupBy("pos", "col").count().collect()
    }
    for i, c in enumerate(columns):
        counts = [totals.get((i, j), 0) for j in range(buckets)]
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        frame = _rank_in_ranges(frame, c, range_of[c], starts)
    return frame


def _range_index(value: Column, bounds: list[float]) -> Column:
    """How many of the sorted ``bounds`` ``value`` exceeds, by binary search.

    A row evaluates about log2(len(bounds)) comparisons, not one per bound.
    """

    def search(lo: int, hi: int) -> Column:  # the answer is in [lo, hi]
        if lo == hi:
            return F.lit(lo)
        mid = (lo + hi) // 2
        return F.when(value > F.lit(bounds[mid]), search(mid + 1, hi)).otherwise(search(lo, mid))

    return search(0, len(bounds))


def _rank_in_ranges(
    frame: DataFrame, column: str, range_index: Column, starts: np.ndarray
) -> DataFrame:
    """Add ``<column>_percentile`` given each value range's first rank (``starts``).

    A row's rank is its range's first rank plus the rows of its range at or below its
    value (a window over the range, ties included): one shuffle of the frame.
    """
    total = max(int(starts[-1]), 1)
    in_range = (
        Window.partitionBy("_sk_range")
        .orderBy(F.col(f"`{column}`"))
        .rangeBetween(Window.unboundedPreceding, Window.currentRow)
    )
    start = F.element_at(F.array(*[F.lit(int(x)) for x in starts]), F.col("_sk_range") + 1)
    ranked = frame.withColumn("_sk_range", range_index).withColumn(
        "_sk_at_or_below", start + F.count(F.lit(1)).over(in_range)
    )
    # The same integer arithmetic as percentile_rank.
    percentile = F.expr(f"(_sk_at_or_below * 100) div {total}")
    return ranked.select(*frame.columns, percentile.alias(f"{column}_percentile"))


def score_spark(
    model: SegmentationModel,
    events: SparkEventLog | SparkEventSource,
    as_of: dt.date | dt.datetime | str | None = None,
    columns: ColumnMap | None = None,
) -> DataFrame:
    """Score users of a Spark event log at ``as_of`` (default: midnight after the last event).

    The Spark counterpart of :meth:`SegmentationModel.score`: the same users,
    columns and values (segment ids and names, scores, percentiles, buckets, as_of,
    model_version). The result is computed here and cached (see
    :func:`score_features_spark`): ``.unpersist()`` it when done.

    Examples
    --------
    >>> scores = score_spark(segmentkit.load("models/demo"), spark.read.parquet("events/"))
    ... # doctest: +SKIP
    """
    cutoff = to_timestamp(as_of) if as_of is not None else None
    if isinstance(events, SparkEventLog):
        log = events
    else:
        log = load_events_spark(events, columns or model.columns, as_of=cutoff)
    try:
        snapshot = cutoff if cutoff is not None else default_as_of_spark(log)
        features = build_features_spark(log, snapshot, model.feature_config)
        return score_features_spark(model, features, snapshot, model.metadata.model_version)
    finally:
        if log is not events:  # loaded here: the kept events are no longer needed
            log.release()


def with_run_columns(scored: DataFrame, as_of: dt.datetime, model_version: str) -> DataFrame:
    """Add ``as_of`` (naive UTC timestamp) and ``model_version``, as local scoring does."""
    stamp = F.expr(f"TIMESTAMP_NTZ '{as_of.isoformat(sep=' ')}'")
    return scored.withColumn("as_of", stamp).withColumn("model_version", F.lit(model_version))
