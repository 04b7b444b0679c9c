"""Training on Spark: distributed features, a stratified sample fitted on the driver.

Validation and features run distributed over every user. The models are fitted
on the driver from a sample of users: the sample's events are collected and the
local training job (:func:`segmentkit.pipeline.train_model`) runs on them, so a
model trained here is the model local training would fit on those users. Since a
user's features and labels depend on that user's events only, the sample's
features equal the distributed features of the same users. Nothing else
collected to the driver grows with the number of users.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from segmentkit.config import ColumnMap, Config
from segmentkit.errors import ConfigError
from segmentkit.features.spark_engine import build_features_spark
from segmentkit.io.events import to_timestamp
from segmentkit.io.spark import (
    SparkEventLog,
    SparkEventSource,
    default_as_of_spark,
    load_events_spark,
)
from segmentkit.training import TrainingResult, train_model

__all__ = ["SparkTrainingResult", "stratified_sample", "train_model_spark"]

Progress = Callable[[str], contextlib.AbstractContextManager[Any]]
_HASH_SPACE = float(2**63)


@contextlib.contextmanager
def _silent(_: str) -> Iterator[None]:
    yield


@dataclasses.dataclass
class SparkTrainingResult:
    """A training run on Spark.

    Attributes
    ----------
    result : TrainingResult
        The local training run on the sample; its ``report`` is the data-quality
        report of the whole log (not of the sample).
    features : pyspark.sql.DataFrame
        Features of every user (lazy), for distributed scoring.
    sample : dict
        Aggregates of the sample: users per stratum in the population and the sample.
    """

    result: TrainingResult
    features: DataFrame
    sample: dict[str, Any]


def _strata(config: Config) -> dict[str, Any]:
    """Behavioral strata: recent activity x buyer x new user (8 cells)."""
    short = min(config.features.windows)
    return {
        "active": F.col(f"events_{short}d") > 0,
        "buyer": F.col("orders") > 0,
        "new": F.col("tenure_days") < short,
    }


def stratified_sample(
    features: DataFrame, strata: dict[str, Any], size: int, seed: int
) -> tuple[DataFrame, dict[str, Any]]:
    """Users of a proportional stratified sample of about ``size`` users.

    Each stratum keeps the same share of its users, those with the smallest seeded
    hash of their id (deterministic, whatever the partitioning); the cut is an
    approximate quantile per stratum (relative error 1e-4), so the sample holds
    ``size`` users to within a fraction of a percent.

    Returns
    -------
    (DataFrame, dict)
        ``user_id`` of the sampled users, and per stratum its population and sample sizes.
    """
    key = F.lit(0)
    for bit, condition in enumerate(strata.values()):
        key = key + F.when(condition, 1 << bit).otherwise(0)
    # xxhash64 is signed: shift to [0, 2^64) and scale to [0, 1).
    unit = (
        F.xxhash64(F.col("user_id").cast("string"), F.lit(seed)).cast("double") + _HASH_SPACE
    ) / (2 * _HASH_SPACE)
    keyed = features.select("user_id", key.alias("_sk_stratum"), unit.alias("_sk_unit"))
    population = dict(keyed.groupBy("_sk_stratum").count().collect())
    total = sum(population.values())
    share = min(1.0, size / total) if total else 0.0
    if share >= 1.0:
        sampled = keyed
    else:
        cuts = dict(
            keyed.groupBy("_sk_stratum")
            .agg(F.percentile_approx("_sk_unit", share, 10_000))
            .collect()
        )
        condition = F.lit(False)
        for stratum, cut in cuts.items():
            condition = condition | ((F.col("_sk_stratum") == stratum) & (F.col("_sk_unit") <= cut))
        sampled = keyed.where(condition)
    counts = dict(sampled.groupBy("_sk_stratum").count().collect())
    names = list(strata)
    table = {
        "+".join(n for b, n in enumerate(names) if stratum >> b & 1) or "none": {
            "population": int(population[stratum]),
            "sample": int(counts.get(stratum, 0)),
        }
        for stratum in sorted(population)
    }
    summary = {
        "population": int(total),
        "sample": int(sum(counts.values())),
        "strata": table,
    }
    return sampled.select("user_id"), summary


def _sample_events(log: SparkEventLog, users: DataFrame) -> pd.DataFrame:
    """Events of the sampled users on the driver, in the contract's columns."""
    rows = log.frame.join(F.broadcast(users), "user_id").toPandas()
    events = pd.DataFrame(
        {
            "user_id": rows["user_id"],
            "timestamp": pd.to_datetime(rows["ts_us"].astype("int64"), unit="us"),
            "event": rows["event"],
            "revenue": rows["revenue"].astype("float64"),
        }
    )
    if log.has_session_id:
        events["session_id"] = rows["session_id"]
    return events


def train_model_spark(
    config: Config,
    events: SparkEventLog | SparkEventSource,
    as_of: dt.date | dt.datetime | str | None = None,
    *,
    sample_users: int = 200_000,
    progress: Progress = _silent,
) -> SparkTrainingResult:
    """Train on Spark: validate and build features distributed, fit on a stratified sample.

    Parameters
    ----------
    config : Config
        All of ``params.yaml``.
    events : SparkEventLog, Spark DataFrame or paths
        The log; validated here unless it already is a ``SparkEventLog``.
    as_of : date-like, optional
        Snapshot; default ``config.data.as_of``, else the midnight after the last event.
    sample_users : int
        Users collected to the driver for fitting (the only thing there that grows
        with the data, up to this size).
    progress : callable
        ``progress(step_name)`` returns a context manager wrapping each long step.

    Returns
    -------
    SparkTrainingResult
    """
    if sample_users < 2:
        raise ConfigError(f"spark.sample_users: expected at least 2, got {sample_users}")
    requested = as_of if as_of is not None else config.data.as_of
    cutoff = to_timestamp(requested) if requested is not None else None
    with progress("Validating events on Spark"):
        log = (
            events
            if isinstance(events, SparkEventLog)
            else load_events_spark(
                events,
                config.data.columns,
                as_of=cutoff,
                on_invalid=config.data.on_invalid,
                min_users=2,
            )
        )
    snapshot = cutoff if cutoff is not None else default_as_of_spark(log)
    features = build_features_spark(log, snapshot, config.features)
    with progress(f"Stratified sample of {sample_users:,} users"):
        users, summary = stratified_sample(
            features, _strata(config), sample_users, config.segmentation.random_state
        )
        sample = _sample_events(log, users)
    # The sample is already clean and in the contract's columns.
    local_config = dataclasses.replace(
        config,
        data=dataclasses.replace(
            config.data,
            columns=ColumnMap(session_id="session_id" if log.has_session_id else None),
            as_of=None,
        ),
    )
    result = train_model(local_config, sample, snapshot, progress=progress)
    result.model.columns = config.data.columns
    result.model.metadata = dataclasses.replace(
        result.model.metadata,
        params=config.to_dict(),
        data_quality=log.report.to_dict(),
        training_sample=summary,
    )
    result.report = log.report
    return SparkTrainingResult(result=result, features=features, sample=summary)
