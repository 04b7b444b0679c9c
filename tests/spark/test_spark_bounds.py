"""Range bounds of the user shuffle: from a few Parquet row groups, balanced on skewed ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pyspark", reason="the Spark extra is not installed")

PARTITIONS = 4


def skewed_events(order: str, integer_ids: bool = False) -> pd.DataFrame:
    """Events of 2,000 users, most of them from the users with the highest ids.

    ``order``: ``"user"`` (sorted by id, as a lake table bucketed by user) or
    ``"time"`` (as an append-only log).
    """
    rng = np.random.default_rng(3)
    users = np.arange(2_000)
    per_user = 1 + (60 * (users / users.size) ** 4).astype(int)
    ids = np.repeat(users, per_user)
    frame = pd.DataFrame(
        {
            "user_id": ids if integer_ids else [f"u{i:05d}" for i in ids],
            "timestamp": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 90 * 86_400, ids.size), unit="s"),
            "event": "visit",
        }
    )
    key = "user_id" if order == "user" else "timestamp"
    return frame.sort_values(key, kind="stable").reset_index(drop=True)


def write(frame: pd.DataFrame, path, row_group_size: int) -> str:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size)
    return str(path)


def event_shares(frame: pd.DataFrame, bounds: list) -> np.ndarray:
    """Share of the events in each range the bounds cut."""
    ids = frame["user_id"].to_numpy()
    ranges = np.searchsorted(np.asarray(bounds, dtype=ids.dtype), ids, side="left")
    return np.bincount(ranges, minlength=len(bounds) + 1) / len(ids)


def row_group_bounds(raw, events: pd.DataFrame) -> list:
    """Bounds of ``PARTITIONS`` ranges placed from the row-group sample of ``raw``'s ids."""
    from segmentkit.io.spark import _sample_size, parquet_user_sample, user_bounds

    sample = parquet_user_sample(raw, "user_id", _sample_size(PARTITIONS))
    assert sample is not None
    return user_bounds(raw.select("user_id"), len(events), PARTITIONS, sample)


def assert_balanced(events: pd.DataFrame, bounds: list) -> None:
    """Each range holds about a quarter of the events (a user's events are never split)."""
    shares = event_shares(events, bounds)
    assert shares.min() > 0.15 and shares.max() < 0.35, shares


@pytest.mark.parametrize(
    ("order", "row_group_size", "integer_ids"),
    [("user", 700, False), ("time", 700, False), ("user", 2_000, True), ("time", 20_000, True)],
)
def test_bounds_from_row_groups_balance_skewed_ids(
    spark, tmp_path, order, row_group_size, integer_ids
):
    from segmentkit.io.spark import _sample_size, parquet_user_sample

    events = skewed_events(order, integer_ids)
    path = write(events, tmp_path / "events.parquet", row_group_size)
    assert pq.read_metadata(path).num_row_groups >= 2
    raw = spark.read.parquet(path)
    sample = parquet_user_sample(raw, "user_id", _sample_size(PARTITIONS))
    assert sample is not None
    assert {type(v) for v in sample} == {int if integer_ids else str}
    bounds = row_group_bounds(raw, events)
    assert len(bounds) == PARTITIONS - 1
    assert_balanced(events, bounds)


def test_more_row_groups_than_are_read_still_balance_a_log_sorted_by_user(spark, tmp_path):
    from segmentkit.io import spark as spark_io

    events = skewed_events("user")
    path = write(events, tmp_path / "events.parquet", 250)
    assert pq.read_metadata(path).num_row_groups > spark_io._SAMPLE_ROW_GROUPS
    raw = spark.read.parquet(path)
    assert_balanced(events, row_group_bounds(raw, events))


def test_bounds_of_many_files_come_from_files_spread_over_them(spark, tmp_path):
    from segmentkit.io import spark as spark_io

    events = skewed_events("user")
    folder = tmp_path / "events"
    folder.mkdir()
    files = 2 * spark_io._SAMPLE_ROW_GROUPS
    cuts = np.linspace(0, len(events), files + 1).astype(int)
    for i in range(files):
        write(events.iloc[cuts[i] : cuts[i + 1]], folder / f"part-{i:03d}.parquet", 10_000)
    raw = spark.read.parquet(str(folder))
    # In path order (Spark lists files in no set order): the same files give the same sample.
    assert spark_io._local_parquet_files(raw) == sorted(str(p) for p in folder.iterdir())
    assert_balanced(events, row_group_bounds(raw, events))


def test_other_frames_are_sampled_by_spark_and_balanced_too(spark, tmp_path):
    from pyspark.sql import functions as F

    from segmentkit.io.spark import _sample_size, parquet_user_sample, user_bounds

    events = skewed_events("time")
    path = write(events, tmp_path / "events.parquet", 700)
    csv = tmp_path / "events.csv"
    events.to_csv(csv, index=False)
    filtered = spark.read.parquet(path).where(F.col("event") == "visit")
    size = _sample_size(PARTITIONS)
    assert parquet_user_sample(filtered, "user_id", size) is None  # not a plain read
    assert parquet_user_sample(spark.read.csv(str(csv), header=True), "user_id", size) is None
    assert parquet_user_sample(spark.read.parquet(path), "timestamp", size) is None  # not ids
    assert_balanced(events, user_bounds(filtered.select("user_id"), len(events), PARTITIONS))


def test_a_range_shuffle_of_a_log_sorted_by_user_is_balanced_and_exact(spark, tmp_path):
    from segmentkit.io.spark import load_events_spark

    events = skewed_events("user")
    path = write(events, tmp_path / "events.parquet", 700)
    with_partitions = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", str(PARTITIONS))
    try:
        log = load_events_spark(path, user_ranges=True, spark=spark)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", with_partitions)
    try:
        assert sum(log.partition_users) == events["user_id"].nunique()
        assert len(log.user_bounds) == PARTITIONS - 1
        assert_balanced(events, list(log.user_bounds))
        # Partition i holds exactly the users of range i.
        users = events.drop_duplicates("user_id")
        expected = np.bincount(
            np.searchsorted(np.asarray(log.user_bounds), users["user_id"], side="left"),
            minlength=PARTITIONS,
        )
        assert list(log.partition_users) == expected.tolist()
    finally:
        log.release()
