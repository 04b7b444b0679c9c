"""Score users on Spark with a saved model: the same scores as local scoring, distributed.

The model travels to the executors as its bundle files (skops, checksummed) and
each Python worker loads it with :func:`segmentkit.bundle.load_bundle`, with the
same verification and allowlist as any load; no pickled estimator is sent.
Segments, probabilities and buckets depend on one user only and are computed in
local scoring's chunks of users (same rows, same order, same bits); percentiles
depend on the whole population and are computed over it exactly, from 100 order
statistics of each score (see :func:`with_percentiles`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segmentkit.bundle import SegmentationModel, live_version, load_bundle, save_bundle
from segmentkit.bundle.model import (
    ORDER_VALUE,
    UNSAVED_VERSION,
    check_order_value_scale,
    trained_order_value,
)
from segmentkit.config import ColumnMap
from segmentkit.errors import DataValidationError, SegmentkitWarning
from segmentkit.features.duckdb_engine import _check_log_covers
from segmentkit.features.spark_engine import (
    arrow_schema,
    build_features_spark,
    feature_schema,
    features_of_partitions,
    partition_features,
)
from segmentkit.io.events import check_revenue_read_as_trained, to_timestamp
from segmentkit.io.spark import (
    SparkEventLog,
    SparkEventSource,
    check_spark_input,
    default_as_of_spark,
    load_events_spark,
    partition_events,
    partition_tables,
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
# Bundle files of the models shipped from this driver, by id of the (live) model object.
_SHIPPED: dict[int, tuple[weakref.ref, dict[str, bytes]]] = {}


def bundle_files(model: SegmentationModel) -> dict[str, bytes]:
    """Return the files (name to bytes) of the live version of ``model`` saved as a bundle.

    Saved once per model object in a process (saving costs about as much as scoring
    a chunk of users): later calls for the same object return the same files, so a
    model is taken as fixed once it has been shipped.
    """
    key = id(model)
    shipped = _SHIPPED.get(key)
    if shipped is not None and shipped[0]() is model:
        return shipped[1]
    with tempfile.TemporaryDirectory(prefix="segmentkit-spark-") as tmp:
        live = live_version(save_bundle(model, Path(tmp) / "bundle"))
        files = {path.name: path.read_bytes() for path in sorted(live.iterdir()) if path.is_file()}
    _SHIPPED[key] = (weakref.ref(model, lambda _, key=key: _SHIPPED.pop(key, None)), files)
    return files


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
        return _with_population_columns(model, scored, as_of, model_version, cached)
    finally:
        for frame in cached:
            frame.unpersist()
        release_checkpoint(selected)
        files.unpersist()


def _with_population_columns(
    model: SegmentationModel,
    scored: DataFrame,
    as_of: dt.datetime | None,
    model_version: str | None,
    cached: list[DataFrame],
) -> DataFrame:
    """Add the percentiles (and run columns) to ``scored`` rows; compute and cache the result.

    ``scored`` is persisted (and appended to ``cached``, for the caller to release)
    while the percentiles read it.
    """
    outputs = _output_columns(model)
    if outputs:
        # The percentiles read the scores three times: keep them, not score again.
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
    return result


def _score_log(
    model: SegmentationModel, log: SparkEventLog, as_of: dt.datetime, model_version: str | None
) -> DataFrame:
    """Features and scores of a log whose partitions are consecutive ranges of user ids.

    Each partition's features (kept by the log, or computed here from its events)
    are cut, by the users' places in id order (the users of the partitions before
    plus the place in the partition), into pieces of local scoring's chunks; the
    pieces of a chunk meet in one group, which is scored as that chunk locally (same
    rows, same order, so the same bits). The pieces, and each chunk's scores, travel
    and are kept as Arrow streams, a few values per partition or chunk; the scores
    become rows once, with their percentiles (:func:`_chunks_with_percentiles`).
    """
    spark = log.packed.sparkSession
    features_schema = feature_schema(log.schema["user_id"].dataType, model.feature_config)
    if log.derived is not None and (log.derived != features_schema or log.as_of != as_of):
        # Kept tables are trusted only as the model's features at this as_of.
        raise DataValidationError(
            "the log keeps derived tables, not its events: load it with "
            "derive=features_of_partitions(as_of, model.feature_config) and the same as_of"
        )
    schema = _batch_schema(model, log.schema["user_id"].dataType)
    arrow_scores = arrow_schema(schema)
    columns = schema.fieldNames()
    config, bounds = model.feature_config, log.user_bounds
    has_revenue, has_session_id = log.has_revenue, log.has_session_id
    derived = log.derived is not None
    users = log.partition_users
    starts = [sum(users[:i]) for i in range(len(users))]
    files = spark.sparkContext.broadcast(bundle_files(model))

    def partition_table(batches: Iterator[pa.RecordBatch]) -> pa.Table | None:
        if derived:  # the features were computed as the log was loaded
            return partition_tables(batches)
        events = partition_events(batches, has_revenue, has_session_id)
        if events is None:
            return None
        try:
            return partition_features(events, as_of, config, features_schema)
        finally:
            events.con.close()

    def pieces(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        part = TaskContext.get().partitionId()
        table = partition_table(batches)
        if table is None:
            return
        _check_partition(table.column("user_id"), part, users, bounds)
        first = starts[part]
        for chunk in range(first // CHUNK_ROWS, (first + len(table) - 1) // CHUNK_ROWS + 1):
            lo = max(first, chunk * CHUNK_ROWS)
            hi = min(first + len(table), (chunk + 1) * CHUNK_ROWS)
            yield pa.RecordBatch.from_pydict(
                {
                    "chunk": [chunk],
                    "start": [lo],
                    "features": [_to_stream(table.slice(lo - first, hi - lo))],
                },
                schema=_PIECE_SCHEMA,
            )

    targets = [score for score, _ in _output_columns(model)]
    # Sketches of (together) about _SKETCH_TOTAL values per score, whatever the users.
    sketch_size = max(16, -(-_SKETCH_TOTAL * CHUNK_ROWS // max(sum(users), 1)))

    # The scored buyers' order values ride along with each chunk's scores, for the
    # revenue-unit check of local scoring.
    order_check = trained_order_value(model.metadata.feature_reference) is not None

    def score_chunk(group: pa.Table) -> pa.Table:
        order = np.argsort(group.column("start").to_numpy())
        blobs = group.column("features")
        rows = pa.concat_tables([_from_stream(blobs[int(i)]) for i in order]).to_pandas()
        scored = _worker_model(files.value).score_features(rows)[columns]
        table = pa.Table.from_pandas(scored, schema=arrow_scores, preserve_index=False)
        bought = rows[ORDER_VALUE].to_numpy(dtype=np.float64) if order_check else np.empty(0)
        nan, sketch = _sketch([scored[t].to_numpy(np.float64) for t in targets], sketch_size)
        return pa.table(
            {
                "rows": [len(scored)],
                "nan": [nan],
                "sketch": [sketch],
                "scores": [_to_stream(table)],
                "order_values": [bought[np.isfinite(bought) & (bought > 0)].tolist()],
            },
            schema=_CHUNK_SCHEMA,
        )

    cached: list[DataFrame] = []
    try:
        # One row per chunk: its scores as an Arrow stream, kept while the percentiles
        # read them (in Python workers, never as rows), and a sketch of each score.
        chunks = (
            log.packed.mapInArrow(pieces, _PIECE_SPARK_SCHEMA)
            .groupBy("chunk")
            .applyInArrow(score_chunk, _CHUNK_SPARK_SCHEMA)
            .persist()
        )
        cached.append(chunks)
        if order_check:
            _check_order_values(chunks.select(F.explode("order_values").alias("v")), model)
        result = _chunks_with_percentiles(chunks, targets, schema)
        if as_of is not None:
            result = with_run_columns(result, as_of, model_version or UNSAVED_VERSION)
        result = result.persist()
        result.count()  # computed now, so that the chunks can go
        return result
    finally:
        for frame in cached:
            frame.unpersist()
        files.unpersist()


#: About how many values of each score all chunks' sketches hold together: they place
#: the value ranges of the percentiles, so ranges hold about n / _SKETCH_TOTAL users.
_SKETCH_TOTAL = 8192


def _check_order_values(values: DataFrame, model: SegmentationModel) -> None:
    """Refuse order values of another scale than training's, as local scoring does.

    ``values`` holds every scored user's ``avg_order_value`` in column ``v``; the exact
    median of the positive ones (Spark's ``percentile``: the mean of the two middle
    values, as numpy's median) goes to
    :func:`~segmentkit.bundle.model.check_order_value_scale`.
    """
    # NaN is above every number in Spark: it is left out by name.
    row = values.where((F.col("v") > 0) & ~F.isnan("v")).agg(
        F.count("v").alias("n"), F.expr("percentile(v, 0.5)").alias("median")
    )
    n, median = row.first()
    check_order_value_scale(median, int(n), model.metadata.feature_reference)


_CHUNK_SCHEMA = pa.schema(
    [
        ("rows", pa.int64()),
        ("nan", pa.list_(pa.int64())),
        ("sketch", pa.list_(pa.float64())),
        ("scores", pa.binary()),
        ("order_values", pa.list_(pa.float64())),
    ]
)
_CHUNK_SPARK_SCHEMA = (
    "rows long, nan array<long>, sketch array<double>, scores binary, order_values array<double>"
)
_RANKED_SCHEMA = pa.schema(
    [("pos", pa.int64()), ("bucket", pa.int64()), ("place", pa.int64()), ("v", pa.float64())]
)


def _sketch(scores: list[np.ndarray], size: int) -> tuple[list[int], list[float]]:
    """NaN count per score, and ``size`` evenly spaced order statistics of each (concatenated).

    Each score contributes the same number of values (fewer when it has fewer).
    """
    rows = len(scores[0]) if scores else 0
    places = np.unique(np.linspace(0, rows - 1, min(rows, size)).round().astype(int))
    nan, sketch = [], []
    for values in scores:
        ordered = np.sort(values)  # NaN last
        nan.append(int(np.isnan(values).sum()))
        sketch.extend(ordered[places].tolist())
    return nan, sketch


def _chunks_with_percentiles(
    chunks: DataFrame, targets: list[str], schema: T.StructType
) -> DataFrame:
    """Return the scored rows of ``chunks`` (:func:`_score_log`) with each target's percentile.

    Exactly as :func:`with_percentiles` (the same order statistics, found by the same
    passes), but the scores are read from the chunks' Arrow streams in Python workers
    and the value ranges are placed from the chunks' sketches, not by another pass.
    """
    facts = chunks.select("rows", "nan", "sketch").collect()
    total = sum(int(row[0]) for row in facts)
    thresholds: list[np.ndarray] = []
    if targets and total:
        for i, target in enumerate(targets):
            if any(row[1][i] for row in facts):
                raise ValueError(f"percentile_rank: scores in {target!r} contain NaN")
        pooled = [
            np.concatenate(
                [np.asarray(row[2], dtype=np.float64).reshape(len(targets), -1)[i] for row in facts]
            )
            for i in range(len(targets))
        ]
        cuts = [np.unique(values) for values in pooled]
        scores = chunks.select("scores")

        def values_of(batch: pa.RecordBatch) -> Iterator[list[np.ndarray]]:
            for blob in batch.column("scores"):
                table = _from_stream(blob)
                yield [table.column(t).to_numpy() for t in targets]

        thresholds = _thresholds(scores, cuts, total, values_of)
    out_fields = []
    for field in schema.fields:
        out_fields.append(field)
        if field.name in targets:
            out_fields.append(T.StructField(f"{field.name}_percentile", T.LongType(), True))
    out_schema = T.StructType(out_fields)
    arrow_out = arrow_schema(out_schema)

    def unpack(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for blob in batch.column("scores"):
                table = _from_stream(blob)
                columns = []
                for field in schema.fields:
                    columns.append(table.column(field.name))
                    if field.name in targets:
                        # How many of the 100 order statistics are at or below the score.
                        ordered = thresholds[targets.index(field.name)]
                        values = table.column(field.name).to_numpy()
                        columns.append(pa.array(np.searchsorted(ordered, values, side="right")))
                yield from pa.Table.from_arrays(columns, schema=arrow_out).to_batches()

    return chunks.select("scores").mapInArrow(unpack, out_schema)


_PIECE_SCHEMA = pa.schema([("chunk", pa.int64()), ("start", pa.int64()), ("features", pa.binary())])
_PIECE_SPARK_SCHEMA = "chunk long, start long, features binary"


def _to_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_stream(blob: pa.BinaryScalar) -> pa.Table:
    return pa.ipc.open_stream(blob.as_buffer()).read_all()


def _check_partition(user_id: pa.ChunkedArray, part: int, users: tuple, bounds: tuple) -> None:
    """Refuse a partition that is not the range of ids the driver placed there.

    Scores would still be right but not bit for bit (chunks are cut by place in id
    order): an internal error, never expected.
    """
    above = bounds[part - 1] if 0 < part <= len(bounds) else None
    upto = bounds[part] if part < len(bounds) else None
    if (
        len(user_id) != users[part]
        or (above is not None and not user_id[0].as_py() > above)
        or (upto is not None and not user_id[-1].as_py() <= upto)
    ):
        raise RuntimeError(
            f"partition {part} of the event log does not hold the users expected there "
            f"({len(user_id)} users, expected {users[part]} above {above!r} up to {upto!r})"
        )


def with_percentile(frame: DataFrame, column: str, buckets: int | None = None) -> DataFrame:
    """Add ``<column>_percentile``; see :func:`with_percentiles`."""
    return with_percentiles(frame, [column], buckets)


def with_percentiles(frame: DataFrame, columns: list[str], buckets: int | None = None) -> DataFrame:
    """Add ``<column>_percentile`` per column: the whole percent of rows at or below.

    Exactly :func:`segmentkit.scoring.percentile_rank` over the whole frame (int64,
    0-100; NaN scores are refused as there), without bringing the values together.
    A row with ``r`` of the ``n`` values at or below its value ``v`` gets
    ``floor(100 r / n)``, which is at least ``k`` exactly when ``v`` is at least the
    ``ceil(k n / 100)``-th smallest value: so the percentile is the number of these
    100 order statistics at or below ``v``, and only they are needed, per column.
    Three passes over ``frame`` find them exactly, whatever the number of columns
    (persist ``frame`` if it is costly): approximate quantiles cut each column's
    values into ranges (equal values share a range); the rows of each range are
    counted (the driver adds those counts into offsets and locates each statistic:
    its range and its rank there); the ranges that hold a statistic send their
    distinct values with their counts to one task per range, which ranks them. The
    driver holds a few numbers per range, never rows. The returned frame adds the
    percentiles to ``frame``'s rows in the JVM (a binary search of 100 values).

    Parameters
    ----------
    frame : pyspark.sql.DataFrame
        Any frame with double ``columns``.
    columns : list of str
        Columns to rank.
    buckets : int, optional
        Value ranges per column (default: 4 per shuffle partition).
    """
    spark = frame.sparkSession
    buckets = buckets or 4 * int(spark.conf.get("spark.sql.shuffle.partitions"))
    values = {column: F.col(f"`{column}`") for column in columns}
    invalid = {c: F.isnan(v) | v.isNull() for c, v in values.items()}
    levels = [i / buckets for i in range(1, buckets)]
    facts = frame.agg(
        F.count(F.lit(1)),
        *[F.count_if(invalid[c]) for c in columns],
        *[
            F.percentile_approx(F.when(~invalid[c], values[c]), levels, 4 * buckets)
            for c in columns
        ],
    ).first()
    total = int(facts[0])
    for c, n_invalid in zip(columns, facts[1 : len(columns) + 1], strict=True):
        if n_invalid:
            raise ValueError(f"percentile_rank: scores in {c!r} contain NaN")
    if total == 0:
        return frame.select(
            "*", *[F.lit(None).cast("bigint").alias(f"{c}_percentile") for c in columns]
        )
    cuts = [np.unique(np.asarray(c or [], dtype=np.float64)) for c in facts[len(columns) + 1 :]]
    scores = frame.select(*[values[c] for c in columns])
    return _add_percentiles(frame, columns, _thresholds(scores, cuts, total, _columns_of))


def _columns_of(batch: pa.RecordBatch) -> Iterator[list[np.ndarray]]:
    yield [column.to_numpy(zero_copy_only=False) for column in batch.columns]


def _thresholds(
    scores: DataFrame,
    cuts: list[np.ndarray],
    total: int,
    values_of: Callable[[pa.RecordBatch], Iterator[list[np.ndarray]]],
) -> list[np.ndarray]:
    """Return the 100 order statistics of each score: ranks ``ceil(k n / 100)``, k = 1..100.

    Two passes over ``scores`` (``values_of`` turns one of its Arrow batches into
    arrays of each score's values): rows per value range (range ``j``: above ``j`` of
    the column's ``cuts``), then the values of the ranges that hold a statistic.
    """
    counts = _range_counts(scores, cuts, values_of)
    # Each statistic located as (column, range, 0-based rank in the range).
    ranks = [(k * total + 99) // 100 for k in range(1, 101)]
    located: dict[tuple[int, int], tuple[int, int, int]] = {}
    for i in range(len(cuts)):
        starts = np.concatenate([[0], np.cumsum(counts[i])])
        for rank in ranks:
            j = int(np.searchsorted(starts, rank, side="left")) - 1
            located[(i, rank)] = (i, j, rank - 1 - int(starts[j]))
    statistics = _order_statistics(scores, cuts, sorted(set(located.values())), values_of)
    return [np.array([statistics[located[(i, rank)]] for rank in ranks]) for i in range(len(cuts))]


def _add_percentiles(
    frame: DataFrame, columns: list[str], thresholds: list[np.ndarray]
) -> DataFrame:
    """Add ``<column>_percentile``: how many of the column's sorted thresholds are <= the value.

    In the JVM: Spark ML's ``Bucketizer`` (a binary search per row) finds how many of
    the distinct thresholds are at or below the value, and a lookup turns that into
    how many thresholds, repeats included. Zeros are made positive first (``x + 0.0``)
    because the bucketizer orders -0.0 before 0.0, which compare equal locally.
    """
    from pyspark.ml.feature import Bucketizer

    splits, cumulative = [], []
    for values in thresholds:
        distinct, repeats = np.unique(
            np.asarray(values, dtype=np.float64) + 0.0, return_counts=True
        )
        splits.append([-np.inf, *distinct.tolist(), np.inf])
        cumulative.append([0, *np.cumsum(repeats).tolist()])
    names = [f"_sk_bucket_{i}" for i in range(len(columns))]
    staged = frame.select(
        "*",
        *[(F.col(f"`{c}`") + F.lit(0.0)).alias(f"_sk_value_{i}") for i, c in enumerate(columns)],
    )
    bucketed = Bucketizer(
        splitsArray=splits,
        inputCols=[f"_sk_value_{i}" for i in range(len(columns))],
        outputCols=names,
    ).transform(staged)
    return bucketed.select(
        *[F.col(f"`{c}`") for c in frame.columns],
        *[
            F.element_at(
                F.array(*[F.lit(int(n)).cast("bigint") for n in cumulative[i]]),
                F.col(names[i]).cast("int") + 1,
            ).alias(f"{c}_percentile")
            for i, c in enumerate(columns)
        ],
    )


def _range_counts(
    scores: DataFrame,
    cuts: list[np.ndarray],
    values_of: Callable[[pa.RecordBatch], Iterator[list[np.ndarray]]],
) -> list[np.ndarray]:
    """Rows per value range, per score column (range ``j``: above ``j`` cuts)."""

    def count_ranges(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        totals = [np.zeros(len(c) + 1, dtype=np.int64) for c in cuts]
        for batch in batches:
            for arrays in values_of(batch):
                for i, v in enumerate(arrays):
                    ranges = np.searchsorted(cuts[i], v, "left")
                    totals[i] += np.bincount(ranges, minlength=len(cuts[i]) + 1)
        yield pa.RecordBatch.from_pydict(
            {
                "pos": np.repeat(np.arange(len(totals)), [len(t) for t in totals]),
                "bucket": np.concatenate([np.arange(len(t)) for t in totals]),
                "count": np.concatenate(totals),
            }
        )

    # One row per column and range from each partition: a few thousand at most.
    counts = [np.zeros(len(c) + 1, dtype=np.int64) for c in cuts]
    for pos, bucket, count in scores.mapInArrow(
        count_ranges, "pos long, bucket long, count long"
    ).collect():
        counts[pos][bucket] += count
    return counts


def _order_statistics(
    scores: DataFrame,
    cuts: list[np.ndarray],
    wanted: list[tuple[int, int, int]],
    values_of: Callable[[pa.RecordBatch], Iterator[list[np.ndarray]]],
) -> dict[tuple[int, int, int], float]:
    """Value at each wanted (column, range, 0-based rank in the range).

    Each partition sends the distinct values of the wanted ranges with their counts;
    one task per range adds them up and ranks them (equal values are one entry,
    however many rows hold them).
    """
    needed = [np.unique([j for i, j, _ in wanted if i == column]) for column in range(len(cuts))]
    places: dict[tuple[int, int], list[int]] = {}
    for i, j, place in wanted:
        places.setdefault((i, j), []).append(place)

    def distinct(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        kept = [([], []) for _ in cuts]
        for batch in batches:
            for arrays in values_of(batch):
                for i, v in enumerate(arrays):
                    ranges = np.searchsorted(cuts[i], v, "left")
                    mask = np.isin(ranges, needed[i])
                    kept[i][0].append(ranges[mask])
                    kept[i][1].append(v[mask])
        for i, (ranges, v) in enumerate(kept):
            if not ranges:
                continue
            pairs = pd.DataFrame({"bucket": np.concatenate(ranges), "v": np.concatenate(v)})
            counted = pairs.groupby(["bucket", "v"], sort=False).size().reset_index(name="count")
            yield pa.RecordBatch.from_pydict(
                {
                    "pos": np.full(len(counted), i, dtype=np.int64),
                    "bucket": counted["bucket"].to_numpy(np.int64),
                    "v": counted["v"].to_numpy(np.float64),
                    "count": counted["count"].to_numpy(np.int64),
                }
            )

    def rank(group: pa.Table) -> pa.Table:
        pos = group.column("pos")[0].as_py()
        buckets = group.column("bucket").to_numpy()
        values, counts = group.column("v").to_numpy(), group.column("count").to_numpy()
        out: dict[str, list] = {"pos": [], "bucket": [], "place": [], "v": []}
        for bucket in np.unique(buckets):
            here = buckets == bucket
            v, inverse = np.unique(values[here], return_inverse=True)
            after = np.cumsum(np.bincount(inverse, weights=counts[here]))
            wanted_here = places[(pos, int(bucket))]
            out["v"].extend(v[np.searchsorted(after, np.asarray(wanted_here), side="right")])
            out["place"].extend(wanted_here)
            out["pos"].extend([pos] * len(wanted_here))
            out["bucket"].extend([int(bucket)] * len(wanted_here))
        return pa.table(out, schema=_RANKED_SCHEMA)

    # A task per shard of the ranges (a call per range costs more than ranking it).
    shards = int(scores.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    found = (
        scores.mapInArrow(distinct, "pos long, bucket long, v double, count long")
        .groupBy("pos", (F.col("bucket") % F.lit(shards)).alias("shard"))
        .applyInArrow(rank, "pos long, bucket long, place long, v double")
        .collect()
    )
    return {(int(p), int(b), int(place)): float(v) for p, b, place, v in found}


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

    Events read here are shuffled into consecutive ranges of user ids
    (``load_events_spark(..., user_ranges=True)``), as is best for a log passed in:
    each partition's features are then scored where they are computed, cut into
    local scoring's chunks, with no other shuffle of the users than that of the
    chunks' pieces. With ``as_of`` given, the features are computed in the same pass
    that cleans each partition, and the events are never kept
    (``derive=features_of_partitions(as_of, model.feature_config)``; pass such a log
    to score it at that ``as_of``). A log shuffled by hash is scored through
    :func:`score_features_spark`, which numbers the users in id order first.

    The log is checked against the training log as local scoring checks it
    (:func:`segmentkit.io.spark.check_spark_input`): ``as_of`` past the log's end,
    trained columns missing, key events spelled otherwise, a log that starts too late
    for the model's features (:meth:`SegmentationModel.check_history`) are refused;
    key events never seen and tenures cut by a later start are warned about.

    Examples
    --------
    >>> scores = score_spark(segmentkit.load("models/demo"), spark.read.parquet("events/"))
    ... # doctest: +SKIP
    """
    cutoff = to_timestamp(as_of) if as_of is not None else None
    given = events.columns if isinstance(events, SparkEventLog) else columns or model.columns
    check_revenue_read_as_trained(model.columns, given)
    if isinstance(events, SparkEventLog):
        log = events
    else:
        # With as_of known, the features are computed as the log is cleaned (one pass);
        # without, as_of is read from the clean log, which is kept for them.
        derive = features_of_partitions(cutoff, model.feature_config) if cutoff else None
        log = load_events_spark(
            events,
            columns or model.columns,
            as_of=cutoff,
            user_ranges=True,
            derive=derive,
            key_events=trained_key_events(model),
        )
    try:
        for message in check_spark_input(log, model.metadata.input_schema):
            warnings.warn(message, SegmentkitWarning, stacklevel=2)
        snapshot = cutoff if cutoff is not None else default_as_of_spark(log)
        for message in model.check_history(log.report.first_event, snapshot):
            warnings.warn(message, SegmentkitWarning, stacklevel=2)
        if log.partition_users:
            _check_log_covers(log.as_of, snapshot)
            return _score_log(model, log, snapshot, model.metadata.model_version)
        features = build_features_spark(log, snapshot, model.feature_config)
        if trained_order_value(model.metadata.feature_reference) is not None:
            _check_order_values(features.select(F.col(ORDER_VALUE).alias("v")), model)
        return score_features_spark(model, features, snapshot, model.metadata.model_version)
    finally:
        if log is not events:  # loaded here: the kept events are no longer needed
            log.release()


def trained_key_events(model: SegmentationModel) -> list[str]:
    """Return the key events the model's training log held (checked in the log to score)."""
    schema = model.metadata.input_schema or {}
    return [str(name) for name in schema.get("key_events_seen", [])]


def with_run_columns(scored: DataFrame, as_of: dt.datetime, model_version: str) -> DataFrame:
    """Add ``as_of`` (naive UTC timestamp) and ``model_version``, as local scoring does."""
    stamp = F.expr(f"TIMESTAMP_NTZ '{as_of.isoformat(sep=' ')}'")
    return scored.withColumn("as_of", stamp).withColumn("model_version", F.lit(model_version))
