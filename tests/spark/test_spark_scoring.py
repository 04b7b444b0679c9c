"""Scoring on Spark gives exactly the local scores: segments, probabilities, percentiles, buckets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark", reason="the Spark extra is not installed")

from segmentkit.config import load_config
from segmentkit.io.synth import generate_events
from segmentkit.training import train_model

PARAMS = """
segmentation:
  k: 4
  n_bootstrap: 2
  bootstrap_sample: 500
  silhouette_sample: 500
propensity:
  min_positives: 20
  targets:
    - {name: churn, kind: inactivity}
    - {name: purchases, kind: count, event: purchase}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("spark-score")
    (root / "params.yaml").write_text(PARAMS)
    config = load_config(root / "params.yaml")
    events = generate_events(900, 200, seed=4).events
    path = root / "events.parquet"
    events.to_parquet(path)
    result = train_model(config, str(path))
    return result.model, path, result.as_of


def assert_same_scores(local: pd.DataFrame, distributed: pd.DataFrame) -> None:
    assert list(distributed.columns) == list(local.columns)
    local = local.sort_values("user_id", kind="stable").reset_index(drop=True)
    distributed = distributed.sort_values("user_id", kind="stable").reset_index(drop=True)
    for column in local.columns:
        np.testing.assert_array_equal(
            distributed[column].to_numpy(
                dtype=object
                if local[column].dtype == object or "str" in str(local[column].dtype)
                else None
            ),
            local[column].to_numpy(
                dtype=object
                if local[column].dtype == object or "str" in str(local[column].dtype)
                else None
            ),
            err_msg=column,
        )


@pytest.mark.parametrize("as_of", [None, "2024-11-20"])
def test_spark_scores_equal_local_scores(spark, trained, as_of):
    from segmentkit.spark.scoring import score_spark

    model, path, _ = trained
    local = model.score(str(path), as_of=as_of)
    distributed = score_spark(model, str(path), as_of=as_of).toPandas()
    assert_same_scores(local, distributed)
    # Percentiles are over the whole population: many distinct values, top at 100.
    assert distributed["p_churn_percentile"].max() == 100
    assert distributed["p_churn_percentile"].nunique() > 50


def cached_frames(spark) -> int:
    """Frames in Spark's cache (DataFrame.persist) plus persisted RDDs."""
    jvm_session = spark._jsparkSession
    manager = jvm_session.sharedState().cacheManager()
    return (0 if manager.isEmpty() else 1) + spark.sparkContext._jsc.getPersistentRDDs().size()


def test_scoring_keeps_only_its_result_cached_and_that_is_released(clean_spark, trained):
    from segmentkit.spark.scoring import score_spark

    spark = clean_spark
    model, path, _ = trained
    assert cached_frames(spark) == 0
    scores = score_spark(model, str(path))
    # Computed once, here: the result is cached, the intermediate frames are gone.
    assert scores.storageLevel.useMemory
    assert spark.sparkContext._jsc.getPersistentRDDs().size() == 1
    assert scores.count() == model.score(str(path)).shape[0]
    scores.unpersist(blocking=True)
    assert cached_frames(spark) == 0


def test_percentiles_span_partitions_with_ties(spark):
    from segmentkit.scoring import percentile_rank
    from segmentkit.spark.scoring import with_percentile

    rng = np.random.default_rng(0)
    values = np.round(rng.random(3000), 2)  # many ties
    frame = spark.createDataFrame(pd.DataFrame({"id": np.arange(3000), "p": values}))
    out = with_percentile(frame, "p", buckets=5).toPandas().sort_values("id")
    np.testing.assert_array_equal(out["p_percentile"].to_numpy(), percentile_rank(values))


def test_several_columns_ranked_from_the_same_passes(spark):
    from segmentkit.scoring import percentile_rank
    from segmentkit.spark.scoring import with_percentiles

    rng = np.random.default_rng(1)
    first = np.round(rng.random(2000), 1)  # ten values: ranges full of ties
    second = rng.exponential(size=2000)
    frame = spark.createDataFrame(pd.DataFrame({"id": np.arange(2000), "a": first, "b": second}))
    out = with_percentiles(frame, ["a", "b"], buckets=7).toPandas().sort_values("id")
    np.testing.assert_array_equal(out["a_percentile"].to_numpy(), percentile_rank(first))
    np.testing.assert_array_equal(out["b_percentile"].to_numpy(), percentile_rank(second))
    bad = spark.createDataFrame(pd.DataFrame({"a": [0.1, 0.2], "b": [0.5, np.nan]}))
    with pytest.raises(ValueError, match="'b' contain NaN"):
        with_percentiles(bad, ["a", "b"])


def test_nan_scores_are_refused_as_locally(spark):
    from segmentkit.spark.scoring import with_percentile

    frame = spark.createDataFrame(pd.DataFrame({"id": [0, 1], "p": [0.5, np.nan]}))
    with pytest.raises(ValueError, match="NaN"):
        with_percentile(frame, "p")


@pytest.mark.slow
def test_training_on_spark_fits_a_stratified_sample_and_scores_everyone(spark, trained, tmp_path):
    from segmentkit.spark.scoring import score_features_spark
    from segmentkit.spark.training import train_model_spark

    _, path, _ = trained
    (tmp_path / "params.yaml").write_text(PARAMS)
    config = load_config(tmp_path / "params.yaml")
    run = train_model_spark(config, str(path), sample_users=600)
    sample = run.sample
    assert abs(sample["sample"] - 600) <= 6
    for cell in sample["strata"].values():  # proportional allocation, cell by cell
        assert abs(cell["sample"] - cell["population"] * 600 / sample["population"]) <= 3
    assert run.result.report.users == sample["population"]
    assert len(run.result.features) == sample["sample"]
    scores = score_features_spark(run.result.model, run.features).toPandas()
    assert len(scores) == sample["population"]
    again = train_model_spark(config, str(path), sample_users=600)
    assert sorted(again.result.features["user_id"]) == sorted(run.result.features["user_id"])


def test_a_log_keeping_its_features_scores_as_local_only_at_its_own_as_of(spark, trained):
    from segmentkit.errors import DataValidationError
    from segmentkit.features.spark_engine import features_of_partitions
    from segmentkit.io.events import to_timestamp
    from segmentkit.io.spark import load_events_spark
    from segmentkit.spark.scoring import score_spark

    model, path, _ = trained
    as_of = to_timestamp("2024-11-20")
    log = load_events_spark(
        str(path),
        model.columns,
        as_of=as_of,
        user_ranges=True,
        derive=features_of_partitions(as_of, model.feature_config),
    )
    try:
        scores = score_spark(model, log, as_of=as_of)
        assert_same_scores(model.score(str(path), as_of=as_of), scores.toPandas())
        scores.unpersist()
        # Its features are those at as_of: scoring at another date is refused.
        with pytest.raises(DataValidationError, match="keeps derived tables"):
            score_spark(model, log, as_of="2024-11-19")
    finally:
        log.release()


def local_refusal(model, events, as_of=None) -> str:
    from segmentkit.errors import DataValidationError

    with pytest.raises(DataValidationError) as refused:
        model.score(events, as_of=as_of)
    return str(refused.value)


def test_an_as_of_past_the_logs_end_is_refused_as_locally(spark, trained):
    from segmentkit.errors import DataValidationError
    from segmentkit.spark.scoring import score_spark

    model, path, _ = trained
    last = pd.read_parquet(path, columns=["timestamp"])["timestamp"].max()
    # Far past the log's end (it has events every day): local scoring refuses it.
    late = f"{(last + pd.Timedelta(days=40)):%Y-%m-%d}"
    expected = local_refusal(model, str(path), late)
    assert "it ends before as_of" in expected
    with pytest.raises(DataValidationError) as refused:
        score_spark(model, str(path), as_of=late)
    assert str(refused.value) == expected


def test_a_log_starting_too_late_is_refused_or_warned_as_locally(spark, trained, tmp_path):
    import warnings

    from segmentkit.errors import DataValidationError, SegmentkitWarning
    from segmentkit.spark.scoring import score_spark

    model, path, as_of = trained
    events = pd.read_parquet(path)
    extract = tmp_path / "extract.parquet"
    events[events["timestamp"] >= pd.Timestamp(as_of) - pd.Timedelta(days=20)].to_parquet(extract)
    expected = local_refusal(model, str(extract))
    assert "an extract of recent events only?" in expected
    with pytest.raises(DataValidationError) as refused:
        score_spark(model, str(extract))
    assert str(refused.value) == expected
    # A rolling export reaching back past the windows: scored, with the same warning.
    rolling = tmp_path / "rolling.parquet"
    events[events["timestamp"] >= pd.Timestamp(as_of) - pd.Timedelta(days=120)].to_parquet(rolling)
    said = {}
    for engine, run in (("local", model.score), ("spark", lambda p: score_spark(model, p))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SegmentkitWarning)
            scored = run(str(rolling))
        if engine == "spark":
            scored.unpersist()
        said[engine] = [str(w.message) for w in caught if "tenure" in str(w.message)]
    assert len(said["local"]) == 1 and said["spark"] == said["local"]


def test_a_log_lacking_most_trained_events_is_refused_as_locally(spark, trained, tmp_path):
    from segmentkit.errors import DataValidationError
    from segmentkit.spark.scoring import score_spark

    model, path, _ = trained
    events = pd.read_parquet(path)
    purchases = tmp_path / "purchases.parquet"
    events[events["event"].isin(["purchase", "add_to_cart"])].to_parquet(purchases)
    expected = local_refusal(model, str(purchases))
    assert "an export of some events only?" in expected
    with pytest.raises(DataValidationError) as refused:
        score_spark(model, str(purchases))
    assert str(refused.value) == expected


def test_revenue_of_another_unit_is_refused_as_locally(spark, trained, tmp_path):
    from segmentkit.errors import DataValidationError
    from segmentkit.io.spark import load_events_spark
    from segmentkit.spark.scoring import score_spark

    model, path, _ = trained
    events = pd.read_parquet(path)
    events["revenue"] = events["revenue"] * 100  # cents for units
    cents = tmp_path / "cents.parquet"
    events.to_parquet(cents)
    expected = local_refusal(model, str(cents))
    assert expected.startswith("revenue: the scored users' typical order value is 99 times")
    # Scored where each partition's users are (the CLI's way) and from a feature table.
    with pytest.raises(DataValidationError) as refused:
        score_spark(model, str(cents))
    assert str(refused.value) == expected
    log = load_events_spark(str(cents), model.columns)
    try:
        assert not log.partition_users
        with pytest.raises(DataValidationError) as refused:
            score_spark(model, log)
        assert str(refused.value) == expected
    finally:
        log.release()


def test_key_events_spelled_otherwise_are_refused_as_locally(spark, trained, tmp_path):
    from segmentkit.errors import DataValidationError
    from segmentkit.spark.scoring import score_spark

    model, path, _ = trained
    events = pd.read_parquet(path)
    assert model.metadata.input_schema["key_events_seen"]  # what the training log held
    key = sorted(model.metadata.input_schema["key_events_seen"])[0]
    names = events["event"].astype(str)
    events["event"] = names.mask(names == key, key.upper())
    shouted = tmp_path / "shouted.parquet"
    events.to_parquet(shouted)
    expected = local_refusal(model, str(shouted))
    assert repr(key.upper()) in expected
    with pytest.raises(DataValidationError) as refused:
        score_spark(model, str(shouted))
    assert str(refused.value) == expected


def test_revenue_read_otherwise_than_in_training_is_refused_as_locally(spark, trained):
    from segmentkit.config import ColumnMap
    from segmentkit.errors import DataValidationError
    from segmentkit.spark.scoring import score_spark

    model, path, _ = trained
    counted = ColumnMap(revenue_events=("purchase",))
    with pytest.raises(DataValidationError) as local:
        model.score(str(path), columns=counted)
    with pytest.raises(DataValidationError) as theirs:
        score_spark(model, str(path), columns=counted)
    assert str(theirs.value) == str(local.value)
    assert str(local.value).startswith("data.columns.revenue_events: the model was trained with")


def test_score_on_spark_reads_data_columns_and_refuses_in_one_line_as_locally(
    spark, trained, tmp_path, monkeypatch, capsys
):
    from segmentkit.bundle import save_bundle
    from segmentkit.cli import main

    model, path, _ = trained
    bundle = str(save_bundle(model, tmp_path / "bundle"))
    # The log's own column names, mapped in params.yaml (both engines read them there).
    events = pd.read_parquet(path).rename(
        columns={"user_id": "customer", "timestamp": "at", "event": "action"}
    )
    events.to_parquet(tmp_path / "renamed.parquet")
    (tmp_path / "params.yaml").write_text(
        "data:\n  columns: {user_id: customer, timestamp: at, event: action}\n"
    )
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(["score", "--model", bundle, "--events", "renamed.parquet", *args])
        return exit_info.value.code, capsys.readouterr().err

    assert run("--out", "local.parquet")[0] == 0
    code, err = run("--out", "spark.parquet", "--engine", "spark")
    assert code == 0, err
    assert_same_scores(pd.read_parquet("local.parquet"), pd.read_parquet("spark.parquet"))
    late = f"{(events['at'].max() + pd.Timedelta(days=40)):%Y-%m-%d}"
    local_code, local_err = run("--out", "late.parquet", "--as-of", late)
    code, err = run("--out", "late.parquet", "--as-of", late, "--engine", "spark")
    assert (code, local_code) == (2, 2)
    assert err == local_err and len(err.strip().splitlines()) == 1
    assert "it ends before as_of" in err
    assert not (tmp_path / "late.parquet").exists()
