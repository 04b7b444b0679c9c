"""Scoring refuses a log that lacks a column the model was trained with."""

from __future__ import annotations

import warnings

import pytest

from segmentkit.config import FeatureConfig
from segmentkit.errors import DataValidationError, SegmentkitWarning
from segmentkit.io.synth import generate_events

FEATURES = FeatureConfig(windows=(30,), key_events=("purchase", "add_to_cart"))


@pytest.fixture(scope="module")
def trained(segments_model):
    demo = generate_events(n_users=150, n_days=60, seed=2)
    return segments_model(demo.events, demo.end, FEATURES), demo


@pytest.mark.parametrize("column", ["revenue", "session_id"])
def test_score_refuses_a_log_without_a_trained_column(trained, column):
    model, demo = trained
    with pytest.raises(DataValidationError, match=rf"trained with column\(s\) {column}"):
        model.score(demo.events.drop(columns=[column]), as_of=demo.end)


def test_score_warns_when_a_key_event_never_occurs(trained):
    model, demo = trained
    events = demo.events[demo.events["event"] != "add_to_cart"]
    with pytest.warns(SegmentkitWarning, match=r"\['add_to_cart'\]"):
        scores = model.score(events, as_of=demo.end)
    assert len(scores) > 0


def test_score_of_a_matching_log_is_silent(trained):
    model, demo = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error", SegmentkitWarning)
        assert len(model.score(demo.events, as_of=demo.end)) > 0
