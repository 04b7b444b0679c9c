"""Helpers of the review notebooks, on small hand-made inputs."""

from __future__ import annotations

import datetime as dt
import doctest
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from sklearn.exceptions import NotFittedError

from segmentkit.drift import DriftReport, DriftResult
from segmentkit.errors import ConfigError, DataValidationError, InsufficientDataError
from segmentkit.io.events import load_events
from segmentkit.models.propensity import PropensityModel
from segmentkit.models.segmentation import Segmenter
from segmentkit.report import review
from segmentkit.report.review import (
    OutcomeWindow,
    latest_drift_report,
    lift_features,
    observed_outcomes,
    outcome_window,
    sample_indices,
    scaled_features,
    segment_counts,
    segment_outcomes,
    segment_table,
    status_counts,
)

E2 = math.e**2 - 1  # log1p(E2) == 2


@pytest.fixture(scope="module")
def segmenter():
    # visits is logged: log1p gives 0, 0, 2, 2 (mean 1, std 1); spend is not: mean 2, std 1.
    X = pd.DataFrame({"visits": [0.0, 0.0, E2, E2], "spend": [1.0, 3.0, 1.0, 3.0]})
    return Segmenter(k=2, n_bootstrap=0, log_features=["visits"], random_state=0).fit(X)


# ----------------------------------------------------------------------------- scaled features


def test_scaled_features_hand_computed(segmenter):
    table = pd.DataFrame(
        {"spend": [1.0, 3.0, 1.0, 3.0], "user_id": list("abcd"), "visits": [0.0, 0.0, E2, E2]}
    )  # other column order and an extra column
    expected = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    np.testing.assert_allclose(scaled_features(segmenter, table), expected, atol=1e-12)
    # an array is read in training order
    np.testing.assert_allclose(
        scaled_features(segmenter, table[["visits", "spend"]].to_numpy()), expected, atol=1e-12
    )


def test_scaled_features_is_the_space_segment_distances_are_measured_in():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "orders": rng.poisson(2.0, 300).astype(float),
            "revenue": rng.lognormal(3.0, 1.0, 300),
            "trend": rng.normal(0.0, 1.0, 300),
        }
    )
    seg = Segmenter(k=3, n_bootstrap=0, random_state=0).fit(X)
    Z = scaled_features(seg, X)
    distances = np.linalg.norm(Z[:, None, :] - seg.cluster_centers_[None, :, :], axis=2)
    np.testing.assert_allclose(distances, seg.transform(X), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(np.argmin(distances, axis=1), seg.predict(X))


def test_scaled_features_errors(segmenter):
    with pytest.raises(DataValidationError, match=r"lacks column\(s\) \['spend'\]"):
        scaled_features(segmenter, pd.DataFrame({"visits": [1.0]}))
    with pytest.raises(DataValidationError, match="expects 2 columns"):
        scaled_features(segmenter, np.ones((3, 3)))
    with pytest.raises(DataValidationError, match="numeric"):
        scaled_features(segmenter, pd.DataFrame({"visits": ["x"], "spend": [1.0]}))
    with pytest.raises(NotFittedError):
        scaled_features(Segmenter(), np.ones((2, 2)))


# ----------------------------------------------------------------------------- samples


def test_sample_indices_keeps_everything_without_a_smaller_size():
    np.testing.assert_array_equal(sample_indices(4, None), [0, 1, 2, 3])
    np.testing.assert_array_equal(sample_indices(4, 4), [0, 1, 2, 3])
    np.testing.assert_array_equal(sample_indices(4, 10), [0, 1, 2, 3])
    assert sample_indices(0, 5).size == 0


def test_sample_indices_is_a_sorted_seeded_sample_without_replacement():
    rows = sample_indices(1000, 50, seed=3)
    assert rows.size == 50 and np.unique(rows).size == 50
    assert np.all(np.diff(rows) > 0)
    assert rows.min() >= 0 and rows.max() < 1000
    np.testing.assert_array_equal(rows, sample_indices(1000, 50, seed=3))
    assert not np.array_equal(rows, sample_indices(1000, 50, seed=4))


@pytest.mark.parametrize(
    ("n", "size", "match"),
    [
        (10, 0, "sample size"),
        (10, -1, "sample size"),
        (10, 2.5, "sample size"),
        (10, True, "sample size"),
        (-1, 5, "non-negative"),
    ],
    ids=["zero", "negative", "float", "bool", "negative-n"],
)
def test_sample_indices_errors(n, size, match):
    with pytest.raises(ConfigError, match=match):
        sample_indices(n, size)


# ----------------------------------------------------------------------------- segment tables


def test_segment_counts_hand_example():
    counts = segment_counts(np.array([2, 0, 2, 2]), ["A", "B", "C"])
    expected = pd.DataFrame(
        {"name": ["A", "B", "C"], "size": [1, 0, 3], "share": [0.25, 0.0, 0.75]},
        index=pd.RangeIndex(3, name="segment"),
    )
    assert_frame_equal(counts, expected)


@pytest.mark.parametrize(
    ("ids", "error", "match"),
    [
        ([], InsufficientDataError, "no users"),
        ([0, 3], DataValidationError, r"0\.\.2"),
        ([-1, 0], DataValidationError, r"0\.\.2"),
        ([0.0, 1.0], DataValidationError, "integers"),
    ],
    ids=["empty", "too-large", "negative", "floats"],
)
def test_segment_counts_errors(ids, error, match):
    with pytest.raises(error, match=match):
        segment_counts(np.asarray(ids), ["A", "B", "C"])


def test_segment_table_lists_names_descriptions_and_training_figures(segmenter):
    table = segment_table(segmenter)
    assert list(table.columns) == ["name", "description", "share", "users", "stability"]
    profiles = segmenter.profiles_
    assert table["name"].tolist() == list(segmenter.segment_names_)
    assert table["description"].tolist() == list(segmenter.segment_descriptions_)
    assert table["users"].tolist() == [2, 2]
    assert table["share"].tolist() == [0.5, 0.5]
    assert table.index.equals(profiles.index)


def test_lift_features_leave_out_difference_lifts():
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {
            "recency_days": rng.exponential(10.0, 200),
            "activity_trend": rng.normal(0.0, 1.0, 200),
            "orders": rng.poisson(1.0, 200).astype(float),
        }
    )
    seg = Segmenter(k=2, n_bootstrap=0, random_state=0).fit(X)
    assert lift_features(seg) == ["recency_days", "orders"]
    # the trend's profile "lift" is a signed difference, which a ratio scale cannot show
    assert (seg.profiles_["lift_activity_trend"] < 0).any()


# ----------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(
    ("as_of", "data_end", "model_as_of", "snapshot", "out_of_time"),
    [
        ("2024-12-02", "2025-01-01", "2024-12-02", "2024-12-02", True),  # window just complete
        ("2024-12-02", "2025-02-01", "2024-11-01", "2024-12-02", True),
        ("2025-01-01", "2025-01-01", "2025-01-01", "2024-12-02", False),  # model's own labels
        ("2025-03-02", "2025-03-02", "2025-01-01", "2025-01-31", True),  # later review snapshot
        ("2025-01-10", "2025-01-10", "2025-01-01", "2024-12-11", False),  # overlaps training
    ],
    ids=["exact", "covered", "in-sample", "later-review", "overlap"],
)
def test_outcome_window_hand_cases(as_of, data_end, model_as_of, snapshot, out_of_time):
    window = outcome_window(as_of, 30, data_end, model_as_of)
    assert window == OutcomeWindow(
        snapshot=dt.datetime.fromisoformat(snapshot),
        label_end=dt.datetime.fromisoformat(data_end),
        out_of_time=out_of_time,
    )


def test_outcome_window_errors():
    with pytest.raises(InsufficientDataError, match="ends at 2024-12-01, before the snapshot"):
        outcome_window("2024-12-10", 30, "2024-12-01", "2024-12-10")
    for horizon in (0, -5, 2.5, True):
        with pytest.raises(ConfigError, match="horizon_days"):
            outcome_window("2024-12-10", horizon, "2025-01-01", "2024-12-10")


@pytest.fixture
def outcome_log():
    rows = [
        ("a", "2024-01-01 10:00", "view"),
        ("a", "2024-01-05 10:00", "purchase"),
        ("a", "2024-01-06 10:00", "purchase"),
        ("b", "2024-01-02 10:00", "view"),
        ("b", "2024-01-12 10:00", "purchase"),  # after the 7-day window
        ("c", "2024-01-04 10:00", "view"),  # first seen after the snapshot
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "timestamp", "event"])
    return load_events(frame)


def test_observed_outcomes_hand_log(outcome_log):
    models = {
        "churn": PropensityModel("churn", "inactivity", horizon_days=7),
        "purchases": PropensityModel("purchases", "count", event="purchase", horizon_days=7),
    }
    window = OutcomeWindow(dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 13), out_of_time=True)
    outcomes = observed_outcomes(models, outcome_log, window)
    expected = pd.DataFrame(
        {
            "target": ["churn", "churn", "purchases", "purchases"],
            "user_id": ["a", "b", "a", "b"],
            "label": np.array([0, 1, 2, 0], dtype=np.int64),
        }
    )
    assert_frame_equal(outcomes, expected)


def test_observed_outcomes_refuses_a_window_past_the_label_end(outcome_log):
    models = {"churn": PropensityModel("churn", "inactivity", horizon_days=7)}
    window = OutcomeWindow(dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 8), out_of_time=True)
    with pytest.raises(DataValidationError, match="ends after as_of"):
        observed_outcomes(models, outcome_log, window)


def test_observed_outcomes_without_targets_is_empty(outcome_log):
    window = OutcomeWindow(dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 13), out_of_time=True)
    assert observed_outcomes({}, outcome_log, window).empty


@pytest.fixture
def scored():
    return pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "segment_id": [1, 0, 1, 1],
            "p_churn": [0.2, 0.5, 0.6, 0.9],
            "expected_buys": [1.0, 0.0, 3.0, 2.0],
        }
    )


def test_segment_outcomes_hand_example(scored):
    outcomes = pd.DataFrame(
        {
            "target": ["churn"] * 3 + ["buys"] * 2,
            "user_id": ["a", "b", "c", "a", "c"],  # d has no outcome: left out
            "label": [0, 1, 1, 2, 0],
        }
    )
    table = segment_outcomes(scored, outcomes, names=["Loyal", "Casual"])
    expected = pd.DataFrame(
        {
            "target": ["churn", "churn", "buys"],
            "segment": [0, 1, 1],
            "name": ["Loyal", "Casual", "Casual"],
            "users": [1, 2, 2],
            "observed": [1.0, 0.5, 1.0],
            "mean_predicted": [0.5, 0.4, 2.0],
        }
    )
    assert_frame_equal(table, expected)


def test_segment_outcomes_errors(scored):
    outcomes = pd.DataFrame({"target": ["churn"], "user_id": ["a"], "label": [1]})
    with pytest.raises(DataValidationError, match="no column p_sales or expected_sales"):
        segment_outcomes(scored, outcomes.assign(target="sales"))
    with pytest.raises(DataValidationError, match=r"outcomes: missing column\(s\) \['label'\]"):
        segment_outcomes(scored, outcomes.drop(columns="label"))
    with pytest.raises(DataValidationError, match=r"scores: missing column\(s\) \['segment_x'\]"):
        segment_outcomes(scored, outcomes, segment_col="segment_x")
    with pytest.raises(DataValidationError, match="1 names do not cover segment ids"):
        segment_outcomes(scored, outcomes, names=["Loyal"])


# ----------------------------------------------------------------------------- drift reports


def test_latest_drift_report_picks_the_latest_dated_folder():
    paths = [
        "reports/refresh-2025-01-31/drift.json",
        Path("reports/refresh-2025-03-01/drift.json"),
        "reports/refresh-2025-02-15/drift.json",
        "reports/refresh-2025-13-01/drift.json",  # not a date
        "reports/refresh-latest/drift.json",
        "elsewhere/drift.json",
    ]
    assert latest_drift_report(paths) == Path("reports/refresh-2025-03-01/drift.json")


def test_latest_drift_report_without_reports_says_what_to_run():
    with pytest.raises(InsufficientDataError, match="run `segmentkit refresh`"):
        latest_drift_report(["reports/other/drift.json"])
    with pytest.raises(InsufficientDataError):
        latest_drift_report([])


def test_status_counts_by_test_and_status():
    report = DriftReport(
        features=(
            DriftResult("psi", "a", 0.3, 0.1, 0.25, "DRIFT"),
            DriftResult("wasserstein", "a", 1.0, None, None, "OK"),
            DriftResult("psi", "b", 0.15, 0.1, 0.25, "WARN"),
            DriftResult("psi", "c", 0.0, 0.1, 0.25, "OK"),
        ),
        share=DriftResult("share_psi", "segments", 0.01, 0.1, 0.25, "OK"),
    )
    expected = pd.DataFrame(
        {"OK": [1, 1, 1], "WARN": [1, 0, 0], "DRIFT": [1, 0, 0]},
        index=pd.Index(["psi", "wasserstein", "share_psi"], name="test"),
    )
    assert_frame_equal(status_counts(report), expected)


def test_status_counts_of_an_empty_report():
    counts = status_counts(DriftReport())
    assert counts.empty and list(counts.columns) == ["OK", "WARN", "DRIFT"]


def test_doctests():
    failures, tried = doctest.testmod(review)
    assert tried > 0
    assert failures == 0
