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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segmentkit.bundle import SegmentationModel, live_version, load_bundle, save_bundle
from segmentkit.config import ColumnMap
from segmentkit.data import to_timestamp
from segmentkit.errors import DataValidationError
from segmentkit.spark_engine import (
    SparkEventLog,
    SparkEventSource,
    build_features_spark,
    default_as_of_spark,
    load_events_spark,
)

__all__ = ["bundle_files", "score_features_spark", "score_spark", "with_percentile"]

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


def _score_batches(
    batches: Iterator[pd.DataFrame], files: Any, columns: list[str]
) -> Iterator[pd.DataFrame]:
    model = _worker_model(files.value)
    for batch in batches:
        scored = model.score_features(batch)
        yield scored[columns]


def score_features_spark(model: SegmentationModel, features: DataFrame) -> DataFrame:
    """Score a Spark feature table (``user_id`` and the model's feature columns).

    Returns
    -------
    pyspark.sql.DataFrame
        The columns of :meth:`SegmentationModel.score_features`: ``user_id,
        segment_id, segment_name`` and per target the score, its percentile over
        all scored users, and its bucket.
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
    scored = features.select("user_id", *model.feature_names).mapInPandas(
        lambda batches: _score_batches(batches, files, columns), schema
    )
    outputs = _output_columns(model)
    if not outputs:
        return scored
    # Percentiles read the scores once more per target: keep them rather than score again.
    scored = scored.persist()
    ordered = ["user_id", "segment_id", "segment_name"]
    for score, bucket in outputs:
        scored = with_percentile(scored, score)
        ordered += [score, f"{score}_percentile", bucket]
    return scored.select(*ordered)


def with_percentile(frame: DataFrame, column: str, partitions: int | None = None) -> DataFrame:
    """Add ``<column>_percentile``: the share of rows with a value at or below, in percent.

    Exactly :func:`segmentkit.propensity.percentile_rank` over the whole frame (NaN
    stays NaN), computed without bringing the scores together: rows are range
    partitioned by value (equal values always share a partition), each partition
    counts its rows, the driver adds those few counts into offsets, and each row's
    rank is its partition's offset plus its rank inside the partition.

    Parameters
    ----------
    frame : pyspark.sql.DataFrame
        Any frame with a double ``column``.
    column : str
        Column to rank.
    partitions : int, optional
        Range partitions (default: ``spark.sql.shuffle.partitions``).
    """
    spark = frame.sparkSession
    partitions = partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    value = F.col(f"`{column}`")
    ranged = frame.repartitionByRange(partitions, value).withColumn(
        "_sk_partition", F.spark_partition_id()
    )
    counts = dict(
        ranged.where(~F.isnan(value) & value.isNotNull())
        .groupBy("_sk_partition")
        .count()
        .collect()
    )
    offsets: dict[int, int] = {}
    total = 0
    for pid in sorted(counts):
        offsets[pid] = total
        total += int(counts[pid])
    schema = T.StructType(
        [*ranged.schema.fields, T.StructField(f"{column}_percentile", T.DoubleType(), True)]
    )

    def rank_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        frames = list(batches)
        if not frames:
            return
        part = pd.concat(frames, ignore_index=True)
        values = part[column].to_numpy(dtype=np.float64)
        valid = ~np.isnan(values)
        ordered = np.sort(values[valid], kind="stable")
        out = np.full(len(part), np.nan)
        if ordered.size:
            offset = offsets[int(part["_sk_partition"].iloc[0])]
            local = np.searchsorted(ordered, values[valid], side="right")
            out[valid] = (offset + local) / total * 100.0
        part[f"{column}_percentile"] = out
        yield part

    return ranged.mapInPandas(rank_partition, schema).drop("_sk_partition")


def score_spark(
    model: SegmentationModel,
    events: SparkEventLog | SparkEventSource,
    as_of: dt.date | dt.datetime | str | None = None,
    columns: ColumnMap | None = None,
) -> DataFrame:
    """Score users of a Spark event log at ``as_of`` (default: midnight after the last event).

    The Spark counterpart of :meth:`SegmentationModel.score`: the same users and
    the same values (segment ids and names, scores, percentiles, buckets).

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
    snapshot = cutoff if cutoff is not None else default_as_of_spark(log)
    features = build_features_spark(log, snapshot, model.feature_config)
    return score_features_spark(model, features)
