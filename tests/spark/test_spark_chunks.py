"""Scoring a log shuffled into user ranges: chunks cut across partitions, as locally;
the model shipped to the executors as its bundle, saved once per model object."""

from __future__ import annotations

import gc
import itertools

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark", reason="the Spark extra is not installed")

from segmentkit.bundle import load_bundle, save_bundle
from segmentkit.config import load_config
from segmentkit.features import build_features
from segmentkit.io.events import default_as_of, load_events
from segmentkit.io.synth import generate_events
from segmentkit.training import train_model

pytestmark = pytest.mark.slow

PARAMS = """
segmentation:
  k: 3
  n_bootstrap: 2
  bootstrap_sample: 300
  silhouette_sample: 300
propensity:
  min_positives: 10
  targets:
    - {name: churn, kind: inactivity}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("spark-chunks")
    (root / "params.yaml").write_text(PARAMS)
    events = generate_events(500, 120, seed=11).events
    path = root / "events.parquet"
    events.to_parquet(path)
    result = train_model(load_config(root / "params.yaml"), str(path))
    return result.model, path


def test_user_ranges_are_consecutive_and_counted(spark, trained):
    from pyspark.sql import functions as F

    from segmentkit.io.spark import load_events_spark

    _, path = trained
    log = load_events_spark(str(path), user_ranges=True, spark=spark)
    try:
        assert sum(log.partition_users) == log.report.users
        ranges = (
            log.frame.groupBy(F.spark_partition_id().alias("part"))
            .agg(F.min("user_id"), F.max("user_id"), F.countDistinct("user_id"))
            .orderBy("part")
            .collect()
        )
        assert len(ranges) > 1
        assert [int(r[3]) for r in ranges] == [n for n in log.partition_users if n]
        for before, after in itertools.pairwise(ranges):
            assert before[2] < after[1]  # partition i's users all precede partition i+1's
    finally:
        log.release()


def test_chunks_cut_across_partitions_give_the_local_chunks_scores(spark, trained, monkeypatch):
    from segmentkit.spark import scoring

    model, path = trained
    # Chunks of 37 users: most straddle two partitions (or more) of the range shuffle.
    monkeypatch.setattr(scoring, "CHUNK_ROWS", 37)
    log = load_events(str(path))
    as_of = default_as_of(log)
    features = build_features(log, as_of, model.feature_config)
    local = model.score_features(features, chunk_size=37)
    distributed = scoring.score_spark(model, str(path)).toPandas()
    distributed = distributed.sort_values("user_id", kind="stable").reset_index(drop=True)
    local = local.sort_values("user_id", kind="stable").reset_index(drop=True)
    for column in local.columns:
        expected, got = local[column].to_numpy(), distributed[column].to_numpy()
        if local[column].dtype.kind in "fi":
            np.testing.assert_array_equal(got.astype(local[column].dtype), expected, column)
        else:
            assert list(pd.Series(got).astype(str)) == list(pd.Series(expected).astype(str))


def test_a_model_is_saved_once_to_ship_it_and_forgotten_with_it(trained, tmp_path, monkeypatch):
    from segmentkit.spark import scoring

    # A copy of its own, so that the test can drop it (the fixture's model lives on).
    model = load_bundle(save_bundle(trained[0], tmp_path / "copy"))
    saves = []
    save = scoring.save_bundle
    monkeypatch.setattr(scoring, "save_bundle", lambda m, p: saves.append(p) or save(m, p))

    files = scoring.bundle_files(model)
    assert scoring.bundle_files(model) is files
    assert len(saves) == 1
    # What the workers load goes through the bundle's checks (checksums, allowlist).
    shipped = scoring._worker_model(files)
    assert shipped.feature_names == model.feature_names
    assert "MANIFEST.sha256" in files

    key = id(model)
    del model
    gc.collect()
    assert key not in scoring._SHIPPED
