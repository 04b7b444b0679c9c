"""segmentkit on Apache Spark: the same features and scores for logs beyond one machine.

Needs the extra: ``pip install 'segmentkit[spark]'`` (and Java). DuckDB stays the
default engine; use this one when the log lives in a Spark lake or does not fit
one machine (a local Spark session is several times slower than DuckDB).

Examples
--------
>>> from segmentkit import spark as sks  # doctest: +SKIP
>>> events = session.read.parquet("s3://lake/events/")  # doctest: +SKIP
>>> features = sks.build_features(events, "2025-01-01")  # doctest: +SKIP
>>> scores = sks.score(segmentkit.load("models:/segmentkit@champion"), events)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark import SparkConf
from pyspark.sql import DataFrame, SparkSession

from segmentkit.errors import DataValidationError
from segmentkit.features.spark_engine import build_features_spark as build_features
from segmentkit.features.spark_engine import features_of_partitions
from segmentkit.io.events import DataQualityReport
from segmentkit.io.spark import SparkEventLog, derived_frame
from segmentkit.io.spark import default_as_of_spark as default_as_of
from segmentkit.io.spark import load_events_spark as load_events
from segmentkit.spark.scoring import score_features_spark as score_features
from segmentkit.spark.scoring import score_spark as score
from segmentkit.spark.training import SparkTrainingResult
from segmentkit.spark.training import train_model_spark as train_model

__all__ = [
    "DataQualityReport",
    "SparkEventLog",
    "SparkTrainingResult",
    "build_features",
    "default_as_of",
    "derived_frame",
    "features_of_partitions",
    "get_session",
    "load_events",
    "score",
    "score_features",
    "train_model",
    "write_parquet",
]


def get_session(app_name: str = "segmentkit") -> SparkSession:
    """Return the active SparkSession, or start one (``local[*]`` unless a master is set).

    Under ``spark-submit`` the submitted master and settings apply. Python workers
    use this interpreter unless ``PYSPARK_PYTHON`` says otherwise.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if not SparkConf().contains("spark.master"):
        builder = builder.master("local[*]").config("spark.ui.showConsoleProgress", "false")
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def write_parquet(frame: DataFrame, out: str | Path) -> str:
    """Write ``frame`` as a Parquet dataset (a directory of part files) at ``out``.

    Any URI Spark writes to is accepted; an existing dataset there is replaced.
    """
    text = str(out)
    if not text.rstrip("/").endswith(".parquet") and "://" not in text:
        raise DataValidationError(f"output {text}: expected a .parquet path for the Spark engine")
    if "://" not in text:
        # The JVM resolves relative paths against its own working directory.
        text = str(Path(text).resolve())
    frame.write.mode("overwrite").parquet(text)
    return text
