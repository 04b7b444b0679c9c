"""The training job as a function: snapshot resolution, fingerprint, result aggregates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmentkit.config import load_config
from segmentkit.errors import InsufficientDataError
from segmentkit.io.events import load_events
from segmentkit.models.segmentation import Segmenter
from segmentkit.training import (
    data_fingerprint,
    load_snapshot,
    make_segmenter,
    train_model,
)

CONFIG = load_config(
    overrides={
        "data": {"columns": {"session_id": None}},
        "segmentation": {"k": 2, "n_bootstrap": 2},
        "propensity": {"targets": []},
    }
)


def test_load_snapshot_defaults_to_midnight_after_last_event(two_behaviours):
    log, snapshot = load_snapshot(CONFIG, two_behaviours)
    assert snapshot == pd.Timestamp("2024-03-31").to_pydatetime()
    assert log.report.users == 80


def test_load_snapshot_excludes_events_at_or_after_as_of(two_behaviours):
    log, snapshot = load_snapshot(CONFIG, two_behaviours, as_of="2024-03-15")
    assert snapshot == pd.Timestamp("2024-03-15").to_pydatetime()
    latest = log.con.execute(f"SELECT max(timestamp) FROM {log.table}").fetchone()[0]
    assert latest < snapshot


def test_load_snapshot_with_too_few_users_says_how_many(two_behaviours):
    one_user = two_behaviours.query("user_id == 'busy0'")
    with pytest.raises(InsufficientDataError, match="1"):
        load_snapshot(CONFIG, one_user, min_users=2)


def test_data_fingerprint_ignores_row_order_but_not_content(two_behaviours):
    events = two_behaviours
    columns = CONFIG.data.columns
    base = data_fingerprint(load_events(events, columns))
    shuffled = events.sample(frac=1.0, random_state=0)
    assert data_fingerprint(load_events(shuffled, columns)) == base
    changed = events.copy()
    changed.loc[changed.index[1], "revenue"] += 1.0
    assert data_fingerprint(load_events(changed, columns)) != base


def test_make_segmenter_carries_every_segmentation_param():
    config = load_config(overrides={"segmentation": {"k": 4, "k_range": [2, 6], "min_share": 0.05}})
    segmenter = make_segmenter(config)
    assert isinstance(segmenter, Segmenter)
    assert (segmenter.k, segmenter.k_range, segmenter.min_share) == (4, (2, 6), 0.05)
    assert segmenter.random_state == config.segmentation.random_state


@pytest.fixture(scope="module")
def result(two_behaviours_log):
    return train_model(CONFIG, two_behaviours_log)


def test_train_model_separates_the_planted_groups(result):
    users = result.features["user_id"].to_numpy()
    busy = np.char.startswith(users.astype(str), "busy")
    assert len(set(result.segments[busy])) == 1
    assert len(set(result.segments[~busy])) == 1
    assert result.segments[busy][0] != result.segments[~busy][0]


def test_train_model_metadata_is_aggregate_and_consistent(result):
    metadata = result.model.metadata
    assert metadata.as_of == "2024-03-31T00:00:00"
    assert metadata.segment_names == tuple(result.model.segmenter.segment_names_)
    assert sorted(metadata.segment_shares) == ["0", "1"]
    assert sum(metadata.segment_shares.values()) == pytest.approx(1.0)
    assert set(metadata.feature_reference) == set(metadata.feature_names)
    assert metadata.propensity_evaluation == ()


def test_result_metrics_count_users_and_shares(result):
    metrics = result.metrics()
    assert metrics["data/users"] == 80
    assert metrics["segments/k"] == 2
    assert metrics["segments/min_share"] == pytest.approx(0.5)
    assert {"time/loading_s", "time/segmentation_s"} <= set(metrics)


def test_result_tables_and_documents_without_propensity(result):
    tables = result.tables()
    assert set(tables) == {"segment_profiles", "k_selection"} or set(tables) == {"segment_profiles"}
    assert len(tables["segment_profiles"]) == 2
    documents = result.documents()
    assert documents["data_quality"]["users"] == 80
    # Views and purchases: not a transaction table. The log has no add_to_cart event, so
    # that count is constant and reported as dropped, like every other dropped column.
    assert documents["segment_features"]["transaction_log"] is False
    assert documents["segment_features"]["dropped"]["add_to_cart_events"] == "constant"
    assert set(documents["segment_features"]["dropped"]) == set(
        result.model.segmenter.dropped_features_
    )
    names = [d["name"] for d in documents["segments"].values()]
    assert names == list(result.model.segmenter.segment_names_)


def test_train_model_refuses_a_log_too_short_for_the_horizon_before_segmenting(
    two_behaviours_log, monkeypatch
):
    # The log spans 2024-01-01 00:00 to as_of 2024-03-31: 90 days, so a 45-day horizon
    # puts the backtest snapshot on the first event (no history) and 44 days is the most.
    config = load_config(
        overrides={
            "data": {"columns": {"session_id": None}},
            "segmentation": {"k": 2, "n_bootstrap": 2},
            "propensity": {
                "horizon_days": 45,
                "targets": [{"name": "churn", "kind": "inactivity"}],
            },
        }
    )

    def segmenting(*args, **kwargs):
        raise AssertionError("segmentation ran before the refusal")

    monkeypatch.setattr(Segmenter, "fit", segmenting)
    with pytest.raises(InsufficientDataError, match=r"at most 44 day\(s\)"):
        train_model(config, two_behaviours_log)


ALONGSIDE = load_config(
    overrides={
        "segmentation": {"k_range": [2, 4], "n_bootstrap": 3, "bootstrap_sample": 1500},
        "propensity": {
            "n_threads": 1,
            "targets": [
                {"name": "churn", "kind": "inactivity"},
                {"name": "purchase", "kind": "event", "event": "purchase"},
            ],
        },
    }
)


@pytest.fixture(scope="module")
def demo_log():
    from segmentkit.io.synth import generate_events

    return generate_events(1500, 240, seed=3).events


def test_segmentation_beside_the_propensity_models_gives_the_same_result(demo_log, monkeypatch):
    from segmentkit.parallel import usable_cores

    if usable_cores() < 2:
        pytest.skip("one core: segmentation always runs first")
    alongside = train_model(ALONGSIDE, demo_log)
    assert "segmentation_alongside" in alongside.timings
    monkeypatch.setattr("segmentkit.training.usable_cores", lambda: 1)
    first = train_model(ALONGSIDE, demo_log)
    assert "segmentation_alongside" not in first.timings
    np.testing.assert_array_equal(alongside.segments, first.segments)
    assert alongside.model.segmenter.segment_names_ == first.model.segmenter.segment_names_
    assert alongside.propensity.choice == first.propensity.choice
    pd.testing.assert_frame_equal(
        alongside.propensity.evaluation.metrics, first.propensity.evaluation.metrics
    )


def test_a_segmentation_error_wins_over_a_propensity_error_raised_meanwhile(
    two_behaviours_log, monkeypatch
):
    from segmentkit.errors import ConfigError

    config = load_config(
        overrides={
            "data": {"columns": {"session_id": None}},
            "propensity": {"n_threads": 1, "targets": [{"name": "churn", "kind": "inactivity"}]},
        }
    )

    def propensity_fails(*args, **kwargs):
        raise ConfigError("propensity failed")

    def segmentation_fails(*args, **kwargs):
        raise InsufficientDataError("segmentation failed")

    monkeypatch.setattr("segmentkit.models.propensity_training.fit_propensity", propensity_fails)
    with pytest.raises(ConfigError, match="propensity failed"):
        train_model(config, two_behaviours_log)
    monkeypatch.setattr(Segmenter, "fit", segmentation_fails)
    # Segmentation ran first before it ran alongside: its error is the one reported.
    with pytest.raises(InsufficientDataError, match="segmentation failed"):
        train_model(config, two_behaviours_log)


def test_segmentation_alongside_starts_after_the_snapshot_features_are_built(demo_log, monkeypatch):
    # The one-pass snapshot build holds the most memory: segmentation, which holds
    # its own, starts once it is done.
    from segmentkit import training
    from segmentkit.models import propensity_training
    from segmentkit.parallel import usable_cores

    if usable_cores() < 2:
        pytest.skip("one core: segmentation always runs first")
    order = []
    build, segment = propensity_training.features_at, training._fit_segmenter

    def building(*args, **kwargs):
        order.append("features")
        return build(*args, **kwargs)

    def segmenting(*args, **kwargs):
        order.append("segmentation")
        return segment(*args, **kwargs)

    monkeypatch.setattr(propensity_training, "features_at", building)
    monkeypatch.setattr(training, "_fit_segmenter", segmenting)
    result = train_model(ALONGSIDE, demo_log)
    assert "segmentation_alongside" in result.timings
    assert order[0] == "features" and order.count("segmentation") == 1
