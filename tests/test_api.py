"""The Python API: segmentkit.train / score / refresh / segments / read_scores.

Small demo logs and fixed k keep these fast; the tracked run (bundle + MLflow) is one
module fixture shared by the tests that need it.
"""

from __future__ import annotations

import datetime as dt
import re

import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import segmentkit
from segmentkit.api import load_params
from segmentkit.bundle import live_version
from segmentkit.config import Config
from segmentkit.errors import ConfigError, DataValidationError
from segmentkit.io.synth import generate_events

END = dt.datetime(2025, 1, 1)
PARAMS = {
    "segmentation": {"k": 4, "random_state": 0},
    "propensity": {"targets": [{"name": "churn", "kind": "inactivity"}]},
}


@pytest.fixture(scope="module")
def events():
    return generate_events(900, 240, seed=3).events


@pytest.fixture(scope="module")
def result(events):
    return segmentkit.train(events, params=PARAMS, as_of=END, track=False)


# --------------------------------------------------------------------------- params


def test_params_as_path_dict_config_or_default(tmp_path, monkeypatch):
    path = tmp_path / "p.yaml"
    path.write_text("segmentation: {k: 5}\n")
    assert load_params(path).segmentation.k == 5
    assert load_params(str(path)).segmentation.k == 5
    assert load_params({"segmentation": {"k": 6}}).segmentation.k == 6
    config = Config()
    assert load_params(config) is config
    monkeypatch.chdir(tmp_path)
    assert load_params(None) == Config()  # no ./params.yaml: built-in defaults
    (tmp_path / "params.yaml").write_text("segmentation: {k: 7}\n")
    assert load_params(None).segmentation.k == 7  # like the CLI


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (42, "expected a params.yaml path, a dict or a Config, got int"),
        ({"segmentation": {"kk": 3}}, "unknown key"),
        ("missing.yaml", "params file not found"),
    ],
    ids=["wrong-type", "unknown-key", "missing-file"],
)
def test_bad_params_are_config_errors(params, message, events):
    with pytest.raises(ConfigError, match=message):
        segmentkit.train(events, params=params, track=False)


# --------------------------------------------------------------------------- train


def test_train_result_is_typed_and_documented(result):
    assert isinstance(result, segmentkit.TrainResult)
    assert result.as_of == END
    assert result.bundle_path is None and result.run is None and result.run_id is None
    assert result.model_version == "unsaved"
    table = result.segments
    assert table.index.name == "segment"
    assert list(table.index) == [0, 1, 2, 3]
    assert list(table.columns) == ["name", "description", "share", "users", "stability"]
    assert table["share"].sum() == pytest.approx(1.0)
    assert table["users"].sum() == result.data_quality.users
    assert table["name"].is_unique
    assert list(result.evaluation.columns) == ["target", "model", "metric", "value"]
    compared = result.compare("roc_auc")
    assert list(compared.columns) == ["target", "model", "recency", "rfm", "bgnbd"]
    assert compared["target"].tolist() == ["churn"]
    assert compared.columns.name is None


@pytest.mark.parametrize("kind", ["path", "dataframe", "duckdb-relation"])
def test_events_as_path_dataframe_or_duckdb_relation(kind, events, result, tmp_path):
    if kind == "path":
        source = tmp_path / "events.parquet"
        events.to_parquet(source)
    elif kind == "dataframe":
        source = events
    else:
        source = duckdb.connect().from_df(events)
    again = segmentkit.train(source, params=PARAMS, as_of=END, track=False)
    # Same data, params and seed: the same model.
    pd.testing.assert_frame_equal(again.segments, result.segments)
    pd.testing.assert_frame_equal(
        segmentkit.score(again.model, events, as_of=END),
        segmentkit.score(result.model, events, as_of=END),
    )


def test_train_without_tracking_writes_nothing(events, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    segmentkit.train(events, params=PARAMS, as_of=END, track=False)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- score


def test_score_columns_order_and_dtypes(result, events):
    scores = segmentkit.score(result.model, events, as_of=END)
    assert list(scores.columns) == [
        "user_id",
        "segment_id",
        "segment_name",
        "p_churn",
        "p_churn_percentile",
        "p_churn_bucket",
        "as_of",
        "model_version",
    ]
    string = pd.Series(["x"]).dtype
    assert scores["user_id"].dtype == string
    assert scores["segment_id"].dtype == np.int64
    assert scores["segment_name"].dtype == string
    assert scores["p_churn"].dtype == np.float64
    assert scores["p_churn_percentile"].dtype == np.int64
    assert scores["p_churn_bucket"].dtype == string
    assert scores["as_of"].dtype == "datetime64[us]"
    assert scores["model_version"].dtype == string
    assert (scores["as_of"] == pd.Timestamp(END)).all()
    assert (scores["model_version"] == "unsaved").all()
    assert scores["user_id"].is_unique
    # Whole percents from the ranks: the top score is 100, order follows the scores.
    percentile = scores["p_churn_percentile"]
    assert percentile.between(0, 100).all() and percentile.max() == 100
    ranked = scores.sort_values("p_churn", kind="stable")
    assert ranked["p_churn_percentile"].is_monotonic_increasing
    rank = scores["p_churn"].rank(method="max").astype(np.int64)
    assert (percentile == rank * 100 // len(scores)).all()


def test_score_with_integer_user_ids(result, events):
    numeric = events.assign(user_id=events["user_id"].str[1:].astype(np.int64))
    scores = segmentkit.score(result.model, numeric, as_of=END)
    assert scores["user_id"].dtype == np.int64


@pytest.mark.slow
def test_a_timestamp_format_trains_and_travels_with_the_bundle(result, events, tmp_path):
    # The same log with epoch microseconds in a column of its own name: the same model,
    # and the bundle reads such logs when scoring without being told again.
    epoch = events.assign(
        ts_us=(events["timestamp"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(microseconds=1)
    ).drop(columns="timestamp")
    params = {
        **PARAMS,
        "data": {"columns": {"timestamp": "ts_us", "timestamp_format": "unix_us"}},
    }
    trained = segmentkit.train(epoch, params=params, as_of=END, track=False)
    from segmentkit.bundle import save_bundle

    root = save_bundle(trained.model, tmp_path / "bundle")
    scores = segmentkit.score(root, epoch, as_of=END).drop(columns="model_version")
    expected = segmentkit.score(result.model, events, as_of=END).drop(columns="model_version")
    pd.testing.assert_frame_equal(scores, expected)


@pytest.mark.slow
def test_a_unit_price_and_quantity_train_and_travel_with_the_bundle(result, events, tmp_path):
    # The same log as order lines give it: revenue = unit price x quantity (2 units of half
    # the amount, exact in binary). The same model, and the bundle multiplies when scoring.
    priced = events.assign(unit_price=events["revenue"] / 2, units=2).drop(columns="revenue")
    params = {**PARAMS, "data": {"columns": {"revenue": "unit_price", "quantity": "units"}}}
    trained = segmentkit.train(priced, params=params, as_of=END, track=False)
    from segmentkit.bundle import save_bundle

    root = save_bundle(trained.model, tmp_path / "bundle")
    scores = segmentkit.score(root, priced, as_of=END).drop(columns="model_version")
    expected = segmentkit.score(result.model, events, as_of=END).drop(columns="model_version")
    pd.testing.assert_frame_equal(scores, expected)
    with pytest.raises(DataValidationError, match=r"missing required column\(s\) quantity"):
        segmentkit.score(root, priced.drop(columns="units"), as_of=END)


def _trained_with_columns_scores_as(result, events, shaped, columns, tmp_path):
    """Train on ``shaped`` (``events`` exported otherwise) read with ``columns``; its saved
    bundle must score ``shaped`` as ``result``'s model scores ``events``."""
    from segmentkit.bundle import save_bundle

    trained = segmentkit.train(
        shaped, params={**PARAMS, "data": {"columns": columns}}, as_of=END, track=False
    )
    root = save_bundle(trained.model, tmp_path / "bundle")
    scores = segmentkit.score(root, shaped, as_of=END).drop(columns="model_version")
    expected = segmentkit.score(result.model, events, as_of=END).drop(columns="model_version")
    pd.testing.assert_frame_equal(scores, expected)
    return trained, root


@pytest.mark.slow
def test_a_price_on_every_event_trains_with_revenue_events_and_travels_with_the_bundle(
    result, events, tmp_path
):
    # The same log with a product price on every view and cart too (as REES46 gives it):
    # named revenue_events read the same model; the bundle masks again when scoring.
    paid = events["event"].isin(["purchase", "refund"])
    priced = events.assign(price=events["revenue"].where(paid, 19.99)).drop(columns="revenue")
    columns = {"revenue": "price", "revenue_events": ["purchase", "refund"]}
    with pytest.raises(DataValidationError, match=r"same amount recurs on rows of 6 events"):
        segmentkit.train(priced, params={**PARAMS, "data": {"columns": {"revenue": "price"}}})
    _trained_with_columns_scores_as(result, events, priced, columns, tmp_path)


@pytest.mark.slow
def test_positive_refunds_train_with_refund_events_and_travel_with_the_bundle(
    result, events, tmp_path
):
    # The same log with its refunds given as amounts above 0 (as GA4 exports them).
    positive = events.assign(revenue=events["revenue"].abs())
    with pytest.raises(DataValidationError, match=r"event\(s\) 'refund' have amounts above 0"):
        segmentkit.train(positive, params=PARAMS, as_of=END, track=False)
    columns = {"refund_events": ["refund"]}
    trained, root = _trained_with_columns_scores_as(result, events, positive, columns, tmp_path)
    # Scored with a mapping that reads the refunds otherwise: refused, bundle or in memory.
    from segmentkit.config import ColumnMap

    message = (
        r"^data\.columns\.refund_events: the model was trained with \['refund'\], this "
        r"mapping gives None; revenue would be read otherwise than the model learnt it"
    )
    for model in (root, trained.model):
        with pytest.raises(DataValidationError, match=message):
            segmentkit.score(model, positive, as_of=END, columns=ColumnMap())


@pytest.mark.slow
def test_a_headerless_csv_trains_and_its_names_travel_with_the_bundle(events, tmp_path):
    # A CSV without a header row (as Taobao's UserBehavior.csv): named in params, every
    # line is read; the bundle keeps the names, so `score` reads the file as training did.
    names = ["user", "when", "what", "amount", "session"]
    events.to_csv(tmp_path / "events.csv", header=False, index=False)
    mapping = dict(
        zip(["user_id", "timestamp", "event", "revenue", "session_id"], names, strict=True)
    )
    columns = {**mapping, "csv_header": names}
    trained = segmentkit.train(
        tmp_path / "events.csv",
        params={**PARAMS, "data": {"columns": columns}},
        as_of=END,
        track=False,
    )
    assert trained.data_quality.rows_read == len(events)
    from segmentkit.bundle import save_bundle

    root = save_bundle(trained.model, tmp_path / "bundle")
    scores = segmentkit.score(root, tmp_path / "events.csv", as_of=END)
    assert len(scores) == events["user_id"].nunique()
    # The same rows with their names, in Parquet, score alike: the names are the file's.
    named = pd.read_csv(tmp_path / "events.csv", header=None, names=names)
    named.to_parquet(tmp_path / "events.parquet")
    pd.testing.assert_frame_equal(
        scores, segmentkit.score(root, tmp_path / "events.parquet", as_of=END)
    )


def test_revenue_in_another_unit_is_refused_when_scoring(result, events, tmp_path):
    from segmentkit.bundle import save_bundle

    root = save_bundle(result.model, tmp_path / "bundle")
    cents = events.assign(revenue=events["revenue"] * 100)
    for model in (root, result.model):
        with pytest.raises(DataValidationError) as err:
            segmentkit.score(model, cents, as_of=END)
        # About 100 times: the training side is read from the stored quantiles.
        assert re.match(
            r"revenue: the scored users' typical order value is (9\d|10\d) times the "
            r"training log's \([\d,.]+ against [\d,.]+, medians of avg_order_value among "
            r"buyers\): revenue in another unit or currency \(cents for units\)\?",
            str(err.value),
        )
    # Twice the spending is a change to score (and for refresh to measure), not a unit.
    doubled = segmentkit.score(root, events.assign(revenue=events["revenue"] * 2), as_of=END)
    assert len(doubled) == events["user_id"].nunique()


def test_score_accepts_a_bundle_path_and_tags_its_version(result, events, tmp_path):
    from segmentkit.bundle import save_bundle

    root = save_bundle(result.model, tmp_path / "bundle")
    scores = segmentkit.score(root, events, as_of=END)
    assert (scores["model_version"] == live_version(root).name).all()
    in_memory = segmentkit.score(result.model, events, as_of=END)
    pd.testing.assert_frame_equal(
        scores.drop(columns="model_version"), in_memory.drop(columns="model_version")
    )


def test_score_file_reads_back_identically_from_csv_and_parquet(result, events, tmp_path):
    from segmentkit.io.events import write_table

    scores = segmentkit.score(result.model, events, as_of=END)
    for suffix in ("csv", "parquet"):
        path = write_table(scores, tmp_path / f"scores.{suffix}")
        pd.testing.assert_frame_equal(segmentkit.read_scores(path), scores, check_exact=True)
    text = (tmp_path / "scores.csv").read_text().splitlines()
    header = text[0].split(",")
    first = dict(zip(header, text[1].split(","), strict=True))
    assert first["p_churn_percentile"].isdigit()  # "37", never "37.0"
    assert first["as_of"] == "2025-01-01"


def test_read_scores_errors(tmp_path):
    with pytest.raises(DataValidationError, match="score file not found"):
        segmentkit.read_scores(tmp_path / "nope.csv")
    with pytest.raises(DataValidationError, match="expected a .parquet or .csv"):
        segmentkit.read_scores(tmp_path / "scores.xlsx")


def test_segments_of_a_model(result):
    pd.testing.assert_frame_equal(segmentkit.segments(result.model), result.segments)


def test_score_refuses_something_that_is_not_a_model(events):
    with pytest.raises(segmentkit.BundleError, match="expected a SegmentationModel"):
        segmentkit.score(42, events)


# --------------------------------------------------------------------------- refresh


def test_refresh_in_memory_writes_only_the_report(events, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old = END - dt.timedelta(days=30)
    champion = segmentkit.train(events, params=PARAMS, as_of=old, track=False).model
    refreshed = segmentkit.refresh(
        events, params=PARAMS, as_of=END, champion=champion, track=False, reports_dir="out"
    )
    assert isinstance(refreshed, segmentkit.RefreshResult)
    assert refreshed.status in {"OK", "WARN", "DRIFT"}
    assert refreshed.exit_code == (3 if refreshed.status == "DRIFT" else 0)
    assert refreshed.champion_as_of == old and refreshed.as_of == END
    assert refreshed.report_path.resolve() == tmp_path / "out" / "refresh-2025-01-01" / "drift.md"
    assert refreshed.report_path.read_text().startswith("#")
    assert (refreshed.report_path.parent / "drift.json").is_file()
    assert refreshed.challenger.run is None and refreshed.challenger.bundle_path is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --------------------------------------------------------------------------- tracked


@pytest.fixture(scope="module")
def tracked(events, tmp_path_factory):
    root = tmp_path_factory.mktemp("tracked")
    params = {
        **PARAMS,
        "tracking": {
            "registered_model": "sk-api",
            "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "models_dir": str(root / "models"),
        },
    }
    return segmentkit.train(events, params=params, as_of=END), root


@pytest.mark.slow
def test_tracked_train_saves_logs_and_registers(tracked, events):
    result, root = tracked
    assert result.bundle_path == root / "models" / "sk-api"
    assert result.model_version == live_version(result.bundle_path).name
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    client = MlflowClient()
    version = client.get_model_version_by_alias("sk-api", "champion")
    assert version.run_id == result.run_id
    assert result.run.model_version == str(version.version) and result.run.alias == "champion"
    run = client.get_run(result.run_id)
    # A score row leads back to the registered version through this tag.
    assert run.data.tags["segmentkit.model_version"] == result.model_version
    assert result.run.artifact_uri == run.info.artifact_uri
    scores = segmentkit.score(
        "models:/sk-api@champion", events, tracking_uri=result.run.tracking_uri
    )
    assert (scores["model_version"] == result.model_version).all()
