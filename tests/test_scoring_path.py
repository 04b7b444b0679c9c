"""The path of ``segmentkit score``: light imports, the model loaded beside the log, one table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import segmentkit
from segmentkit import api
from segmentkit.bundle import SegmentationModel, live_version, save_bundle
from segmentkit.bundle import storage as bundle_storage
from segmentkit.bundle.metadata import BundleMetadata
from segmentkit.bundle.storage import MANIFEST, METADATA, open_bundle
from segmentkit.cli import main
from segmentkit.config import ColumnMap, FeatureConfig
from segmentkit.errors import BundleError, DataValidationError, SegmentkitWarning
from segmentkit.features import build_features
from segmentkit.io.events import describe_input, load_events
from segmentkit.models.propensity import PropensityModel
from segmentkit.models.segmentation import Segmenter
from segmentkit.scoring import frame_of_columns, percentile_rank

AS_OF = "2024-04-01"
FEATURES = FeatureConfig(windows=(7, 30), key_events=("purchase",))
SRC = Path(segmentkit.__file__).resolve().parents[1]


def _python(code: str) -> str:
    """Standard output of ``code`` run by a fresh interpreter on these sources."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def bundle(two_behaviours_log, tmp_path_factory) -> Path:
    """A saved model of the two planted groups: segments, boosted churn and count models."""
    features = build_features(two_behaviours_log, AS_OF, FEATURES)
    X = features[[c for c in features.columns if c != "user_id"]]
    rng = np.random.default_rng(0)
    segmenter = Segmenter(k=2, n_bootstrap=2, random_state=0).fit(X)
    churn = PropensityModel("churn", "inactivity", family="hgb", random_state=0, n_threads=1)
    buys = PropensityModel("buys", "count", event="purchase", family="hgb", random_state=0)
    propensity = {
        "churn": churn.fit(X, rng.integers(0, 2, len(X))),
        "buys": buys.set_params(n_threads=1).fit(X, rng.poisson(2.0, len(X))),
    }
    schema = describe_input(load_events(two_behaviours_log), FEATURES.key_events)
    model = SegmentationModel(
        segmenter,
        propensity,
        FEATURES,
        metadata=BundleMetadata(as_of=AS_OF, input_schema=schema),
    )
    return save_bundle(model, tmp_path_factory.mktemp("score-path") / "m")


def _edit_metadata(root: Path, edit) -> None:
    """Change metadata.json as another release would write it, with a matching manifest."""
    live = live_version(root)
    meta = json.loads((live / METADATA).read_text())
    edit(meta)
    (live / METADATA).write_text(json.dumps(meta))
    lines = [
        f"{bundle_storage._sha256(p)}  {p.name}"
        for p in sorted(live.iterdir())
        if p.is_file() and p.name != MANIFEST
    ]
    (live / MANIFEST).write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- imports


def test_the_score_path_starts_without_the_heavy_libraries():
    # Everything the CLI imports before it starts loading the model in the background.
    heavy = _python(
        "import sys, segmentkit.cli, segmentkit.api, segmentkit.bundle, segmentkit.scoring, "
        "segmentkit.features, segmentkit.io.events\n"
        "names = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(names & {'sklearn', 'scipy', 'skops', 'mlflow', 'pytest', 'numba', "
        "'matplotlib'}))"
    )
    assert heavy == "[]"


@pytest.mark.parametrize(
    "first",
    ["import segmentkit.refresh", "import segmentkit; segmentkit.refresh"],
    ids=["submodule-first", "function-first"],
)
def test_segmentkit_refresh_is_the_function_whatever_is_imported_first(first):
    out = _python(
        f"{first}\n"
        "import importlib, segmentkit, segmentkit.api\n"
        "module = importlib.import_module('segmentkit.refresh')\n"
        "print(segmentkit.refresh is segmentkit.api.refresh, module.__name__)"
    )
    assert out.split() == ["True", "segmentkit.refresh"]


def test_every_public_name_resolves():
    assert set(segmentkit.__all__) <= set(dir(segmentkit))
    for name in segmentkit.__all__:
        assert getattr(segmentkit, name) is not None
    assert segmentkit.SegmentationModel is SegmentationModel
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = segmentkit.no_such_name


# --------------------------------------------------------------------------- load and score


def test_load_and_score_equals_load_then_score(bundle, two_behaviours_log):
    loaded, scores = api.load_and_score(bundle, two_behaviours_log, as_of=AS_OF)
    expected = api.load(bundle).score(two_behaviours_log, as_of=AS_OF)
    assert_frame_equal(scores, expected, check_exact=True)
    assert_frame_equal(api.score(str(bundle), two_behaviours_log, as_of=AS_OF), expected)
    assert loaded.metadata.model_version == live_version(bundle).name
    assert list(scores.columns) == [
        "user_id",
        "segment_id",
        "segment_name",
        *("expected_buys", "expected_buys_percentile", "expected_buys_bucket"),
        *("p_churn", "p_churn_percentile", "p_churn_bucket"),
        "as_of",
        "model_version",
    ]
    assert sorted(scores["user_id"]) == sorted(two_behaviours_log["user_id"].unique())


def test_warm_up_leaves_the_scores_as_they_are(bundle, two_behaviours_log):
    expected = api.load(bundle).score(two_behaviours_log, as_of=AS_OF)
    model = api.load(bundle)
    params = {name: m.get_params() for name, m in model.propensity.items()}
    model.warm_up()
    assert {name: m.get_params() for name, m in model.propensity.items()} == params
    assert_frame_equal(model.score(two_behaviours_log, as_of=AS_OF), expected, check_exact=True)


def test_a_model_object_is_scored_as_is(bundle, two_behaviours_log):
    model = api.load(bundle)
    loaded, scores = api.load_and_score(model, two_behaviours_log, as_of=AS_OF)
    assert loaded is model
    assert_frame_equal(scores, model.score(two_behaviours_log, as_of=AS_OF), check_exact=True)


def test_a_broken_bundle_is_reported_before_a_broken_log(bundle, two_behaviours_log, tmp_path):
    root = save_bundle(api.load(bundle), tmp_path / "old")
    _edit_metadata(root, lambda meta: meta["versions"].update({"scikit-learn": "0.24.2"}))
    broken_log = two_behaviours_log.drop(columns=["event"])
    with pytest.raises(BundleError, match="saved with scikit-learn 0.24.2"):
        api.load_and_score(root, broken_log, as_of=AS_OF)


def test_a_broken_log_is_reported_when_the_bundle_is_sound(bundle, two_behaviours_log):
    with pytest.raises(DataValidationError, match="event"):
        api.load_and_score(bundle, two_behaviours_log.drop(columns=["event"]), as_of=AS_OF)


def test_a_key_event_missing_from_the_log_still_warns(bundle, two_behaviours_log):
    views = two_behaviours_log[two_behaviours_log["event"] != "purchase"]
    with pytest.warns(SegmentkitWarning, match=r"\['purchase'\] occurred in the training log"):
        api.load_and_score(bundle, views, as_of=AS_OF)


def test_a_model_that_is_not_a_path_or_model_is_refused(two_behaviours_log):
    with pytest.raises(BundleError, match="got int"):
        api.load_and_score(3, two_behaviours_log)


def test_cli_score_reports_each_step(bundle, two_behaviours_log, tmp_path, capsys):
    log = tmp_path / "events.parquet"
    two_behaviours_log.to_parquet(log)
    out = tmp_path / "scores.parquet"
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "--model", str(bundle), "--events", str(log), "--out", str(out)])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for step in ("Checking the log and building features", "Scoring", f"Writing {out}"):
        assert f"{step}" in printed
    written = pd.read_parquet(out)
    expected = api.score(bundle, two_behaviours_log)
    assert_frame_equal(written, expected, check_exact=True)


# --------------------------------------------------------------------------- open_bundle


def test_open_bundle_reads_the_settings_scoring_needs(bundle):
    opened = open_bundle(bundle)
    assert opened.directory == live_version(bundle)
    assert opened.columns == ColumnMap()
    assert opened.feature_config == FEATURES
    assert opened.input_schema["key_events_seen"] == ["purchase"]
    assert "segmenter.skops" in opened.listed


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda meta: meta.pop("columns"), "lacks feature_config or columns"),
        (lambda meta: meta.update({"feature_config": None}), "lacks feature_config or columns"),
        (
            lambda meta: meta["feature_config"].update({"windows": ["x"]}),
            r"feature_config.windows\[0\]: expected an integer",
        ),
        (lambda meta: meta.update({"input_schema": [1]}), "input_schema: expected an object"),
        (lambda meta: meta.update({"format_version": 1}), "format version 1"),
        (
            lambda meta: meta.update({"data_quality": {"first_event": "last spring"}}),
            r"data_quality.first_event: expected an ISO time or null, got 'last spring'",
        ),
        (
            lambda meta: meta.update({"data_quality": {"first_event": 20240101}}),
            r"data_quality.first_event: expected an ISO time or null, got '20240101'",
        ),
        (lambda meta: meta.update({"data_quality": []}), "data_quality: expected an object"),
    ],
    ids=[
        "no-columns",
        "null-feature-config",
        "bad-window",
        "schema-not-object",
        "old-format",
        "first-event-text",
        "first-event-number",
        "data-quality-list",
    ],
)
def test_open_bundle_refuses_unusable_metadata(bundle, tmp_path, edit, message):
    root = save_bundle(api.load(bundle), tmp_path / "m")
    _edit_metadata(root, edit)
    with pytest.raises(BundleError, match=message):
        open_bundle(root)


def test_frame_of_columns_keeps_each_array():
    values = np.arange(4.0)
    frame = frame_of_columns({"a": values, "b": pd.Series(list("wxyz"))})
    assert list(frame.columns) == ["a", "b"]
    assert np.shares_memory(frame["a"].to_numpy(), values)


@pytest.mark.parametrize("n_distinct", [1, 7, 10_000], ids=["one-value", "many-ties", "few-ties"])
def test_percentile_rank_matches_pandas_max_rank(n_distinct):
    rng = np.random.default_rng(n_distinct)
    scores = rng.integers(0, n_distinct, 5_000) / n_distinct
    scores[:3] = [-0.0, 0.0, np.inf]  # equal zeros tie; infinity ranks last
    ranks = pd.Series(scores).rank(method="max").to_numpy().astype(np.int64)
    np.testing.assert_array_equal(percentile_rank(scores), ranks * 100 // scores.size)


def test_percentile_rank_of_nothing_and_of_nan():
    assert percentile_rank(np.array([])).tolist() == []
    with pytest.raises(ValueError, match="NaN"):
        percentile_rank(np.array([0.1, np.nan]))


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("as_of", ["2024-05-26", "2099-01-01", "9999-12-31"])
def test_an_as_of_past_the_end_of_the_log_is_refused_by_every_scoring_path(
    bundle, two_behaviours_log, as_of
):
    # The log ends on 2024-03-30; its longest quiet spell is Jan 6 - Feb 29 (55 days):
    # 56 days without events from March 31 would call every user inactive since (and
    # 9999 crashed DuckDB).
    model = api.load(bundle)
    for score in (
        lambda: api.score(bundle, two_behaviours_log, as_of=as_of),
        lambda: api.score(model, two_behaviours_log, as_of=as_of),
        lambda: model.score(two_behaviours_log, as_of=as_of),
    ):
        with pytest.raises(DataValidationError, match="it ends before as_of.*as of 2024-03-31"):
            score()
    assert len(api.score(bundle, two_behaviours_log, as_of="2024-05-25T23:00")) == 80


def test_a_refused_score_in_a_real_process_is_one_line_and_writes_nothing(
    bundle, two_behaviours_log, tmp_path
):
    log = tmp_path / "events.parquet"
    two_behaviours_log.to_parquet(log)
    out = tmp_path / "scores.csv"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    args = ["score", "--model", str(bundle), "--events", str(log), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "segmentkit.cli", *args, "--as-of", "9999-12-31"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: as_of 9999-12-31 00:00 leaves")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.parquet"]


def test_score_reads_the_log_with_the_column_names_params_map(
    bundle, two_behaviours_log, tmp_path, capsys
):
    renamed = two_behaviours_log.rename(columns={"user_id": "customer", "event": "action"})
    log = tmp_path / "events.parquet"
    renamed.to_parquet(log)
    expected = api.score(bundle, two_behaviours_log, as_of=AS_OF)
    mapping = ColumnMap(user_id="customer", event="action")
    assert_frame_equal(api.score(bundle, renamed, as_of=AS_OF, columns=mapping), expected)
    with pytest.raises(DataValidationError, match=r"missing required column\(s\) user_id"):
        api.score(bundle, renamed, as_of=AS_OF)
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  columns:\n    user_id: customer\n    event: action\n")
    out = tmp_path / "scores.parquet"
    args = ["score", "--model", str(bundle), "--events", str(log), "--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--as-of", AS_OF, "--params", str(params), "-q"])
    assert exit_info.value.code == 0
    assert_frame_equal(pd.read_parquet(out), expected)
