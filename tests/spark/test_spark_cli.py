"""`segmentkit features|score|train --engine spark` on a Parquet glob: the local outputs, as Parquet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark", reason="the Spark extra is not installed")

from segmentkit.cli import main
from segmentkit.io.synth import generate_events

PARAMS = """
segmentation:
  k: 3
  n_bootstrap: 2
  bootstrap_sample: 400
  silhouette_sample: 400
propensity:
  min_positives: 20
  targets:
    - {name: churn, kind: inactivity}
spark:
  sample_users: 500
tracking:
  registered_model: sk-spark-test
"""


def run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("spark-cli")
    events = generate_events(700, 200, seed=9).events
    (root / "events").mkdir()
    half = len(events) // 2
    events.iloc[:half].to_parquet(root / "events" / "part-0.parquet")
    events.iloc[half:].to_parquet(root / "events" / "part-1.parquet")
    (root / "params.yaml").write_text(PARAMS)
    return root


@pytest.fixture
def in_workdir(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    return workdir


def sorted_frame(frame):
    return frame.sort_values("user_id", kind="stable").reset_index(drop=True)


def assert_same_scores(distributed, local, name):
    assert list(distributed.columns) == list(local.columns)
    for column in local.columns:
        kind = str if local[column].dtype.kind in "OT" else local[column].dtype
        np.testing.assert_array_equal(
            distributed[column].astype(kind).to_numpy(),
            local[column].astype(kind).to_numpy(),
            err_msg=f"{name}: {column}",
        )


def test_features_on_spark_equal_local_features(spark, in_workdir, capsys):
    glob = str(in_workdir / "events" / "*.parquet")
    assert run(["features", "--events", glob, "--out", "local.parquet"], capsys)[0] == 0
    code, out, err = run(
        ["features", "--events", glob, "--out", "spark.parquet", "--engine", "spark"], capsys
    )
    assert code == 0, err
    assert "written to spark.parquet" in out
    pd.testing.assert_frame_equal(
        sorted_frame(pd.read_parquet("spark.parquet")),
        sorted_frame(pd.read_parquet("local.parquet")),
        check_dtype=False,
        check_exact=False,
        rtol=1e-12,
    )


def test_features_on_spark_at_an_as_of_equal_local_features(spark, in_workdir, capsys):
    # With --as-of the Spark engine computes the features while it validates (one pass).
    glob = str(in_workdir / "events" / "*.parquet")
    as_of = ["--as-of", "2024-10-01"]
    assert run(["features", "--events", glob, *as_of, "--out", "local.parquet"], capsys)[0] == 0
    code, out, err = run(
        ["features", "--events", glob, *as_of, "--out", "spark.parquet", "--engine", "spark"],
        capsys,
    )
    assert code == 0, err
    assert "as of 2024-10-01 written to spark.parquet" in out
    local = sorted_frame(pd.read_parquet("local.parquet"))
    assert 0 < len(local) < 700  # a snapshot inside the log, not everyone yet
    pd.testing.assert_frame_equal(
        sorted_frame(pd.read_parquet("spark.parquet")),
        local,
        check_dtype=False,
        check_exact=False,
        rtol=1e-12,
    )


@pytest.mark.slow
def test_train_and_score_on_spark(clean_spark, in_workdir, capsys):
    spark = clean_spark
    glob = str(in_workdir / "events" / "*.parquet")
    code, out, err = run(
        ["train", "--events", glob, "--engine", "spark", "--scores", "all.parquet"], capsys
    )
    assert code == 0, err
    assert "stratified sample of" in out
    # The HTML report, as local training writes it (and says where).
    html = next((in_workdir / "reports").glob("train-*/report.html"))
    assert f"html:    {html.relative_to(in_workdir)}" in out
    assert "<svg" in html.read_text(encoding="utf-8")
    bundle = str(in_workdir / "models" / "sk-spark-test")
    assert run(["score", "--model", bundle, "--events", glob, "--out", "l.parquet"], capsys)[0] == 0
    code, _, err = run(
        ["score", "--model", bundle, "--events", glob, "--out", "s.parquet", "--engine", "spark"],
        capsys,
    )
    assert code == 0, err
    local = sorted_frame(pd.read_parquet("l.parquet"))
    for name in ("s.parquet", "all.parquet"):
        assert_same_scores(sorted_frame(pd.read_parquet(name)), local, name)
    # With --as-of, Spark scores from features computed while it validates (one pass).
    as_of = ["--as-of", "2024-12-01"]
    score = ["score", "--model", bundle, "--events", glob, *as_of]
    assert run([*score, "--out", "l2.parquet"], capsys)[0] == 0
    code, _, err = run([*score, "--out", "s2.parquet", "--engine", "spark"], capsys)
    assert code == 0, err
    local_at = sorted_frame(pd.read_parquet("l2.parquet"))
    assert str(local_at["as_of"].iloc[0]).startswith("2024-12-01")
    assert_same_scores(sorted_frame(pd.read_parquet("s2.parquet")), local_at, "s2.parquet")
    assert spark.sparkContext._jsc.getPersistentRDDs().size() == 0  # nothing left cached

    # The registered pyfunc scores a Spark DataFrame through spark_udf without a
    # result_type: its signature declares every output column and type.
    import mlflow.pyfunc

    import segmentkit
    from segmentkit.spark import build_features

    names = segmentkit.load(bundle).feature_names
    features = build_features(glob, local["as_of"].iloc[0])
    udf = mlflow.pyfunc.spark_udf(spark, "models:/sk-spark-test@champion", env_manager="local")
    applied = features.select(udf(*["user_id", *names]).alias("out")).select("out.*")
    out_frame = sorted_frame(applied.toPandas())
    # Everything that depends on one user only equals local scoring (percentiles are
    # ranks within each batch the UDF sees, hence left out; `segmentkit score` ranks all).
    per_user = [c for c in out_frame.columns if not c.endswith("_percentile")]
    assert {"user_id", "segment_id", "segment_name", "p_churn", "p_churn_bucket"} <= set(per_user)
    for column in per_user:
        np.testing.assert_array_equal(
            out_frame[column].to_numpy(), local[column].to_numpy(), err_msg=column
        )


def test_unknown_engine_is_a_one_line_error(in_workdir, capsys):
    code, _, err = run(["features", "--out", "x.parquet", "--engine", "polars"], capsys)
    assert code == 2
    assert err.strip() == "error: --engine: expected 'duckdb' or 'spark', got 'polars'"


def test_scores_option_needs_the_spark_engine(in_workdir, capsys):
    code, _, err = run(["train", "--scores", "x.parquet"], capsys)
    assert code == 2 and "--scores is for --engine spark" in err


def test_an_unreadable_as_of_on_spark_is_a_one_line_error(spark, in_workdir, capsys):
    glob = str(in_workdir / "events" / "*.parquet")
    command = ["features", "--events", glob, "--as-of", "soon", "--out", "x.parquet"]
    code, _, err = run([*command, "--engine", "spark"], capsys)
    assert code == 2
    assert err.strip().startswith("error: as_of: expected an ISO 8601 date or datetime")
    assert err.strip().endswith("got 'soon'") and len(err.strip().splitlines()) == 1
    assert not (in_workdir / "x.parquet").exists()


@pytest.mark.parametrize(
    ("events", "out", "why"),
    [
        ("events/*.parquet", "events/part-0.parquet", "is or holds the events"),
        ("events/part-1.parquet", "./events/part-1.parquet", "is or holds the events"),
        ("events/*.parquet", "events/scores.parquet", "is inside the events"),
        ("lake.parquet/part-0.parquet", "lake.parquet", "is or holds the events"),
        ("lake.parquet", "lake.parquet/scores.parquet", "is inside the events"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["score", "--model", "no-such-model", "--out"],
        ["features", "--out"],
        ["train", "--no-promote", "--scores"],
    ],
    ids=["score", "features", "train-scores"],
)
def test_spark_commands_refuse_an_output_that_is_or_holds_or_joins_the_log(
    in_workdir, capsys, events, out, why, command
):
    lake = in_workdir / "lake.parquet"
    lake.mkdir(exist_ok=True)
    (lake / "part-0.parquet").write_bytes((in_workdir / "events" / "part-0.parquet").read_bytes())
    before = sorted(p.name for p in (in_workdir / "events").iterdir())
    # Refused before the model is even looked for, and before any Spark work.
    code, _, err = run([*command, out, "--events", events, "--engine", "spark"], capsys)
    assert code == 2
    assert err.startswith("error: output ") and why in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in (in_workdir / "events").iterdir()) == before
    assert [p.name for p in lake.iterdir()] == ["part-0.parquet"]


def test_an_existing_spark_output_dataset_may_be_replaced(in_workdir):
    from segmentkit.io.spark import check_spark_output_target

    (in_workdir / "old-scores.parquet").mkdir(exist_ok=True)
    glob = str(in_workdir / "events" / "*.parquet")
    assert check_spark_output_target("old-scores.parquet", glob) == "old-scores.parquet"
    # Another file system: compared as written.
    with pytest.raises(Exception, match="is inside the events"):
        check_spark_output_target("s3://lake/events/x.parquet", "s3://lake/events")
    assert check_spark_output_target("s3://lake/scores.parquet", "s3://lake/events")
