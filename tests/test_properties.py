"""Property-based tests: random logs never crash loading, features or scoring.

Any failure is a :class:`SegmentkitError` (a clear input error), never another
exception; and events at or after the snapshot never change a user's features.
Example counts are bounded so the file runs in seconds.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from segmentkit import SegmentationModel, Segmenter, SegmentkitError, build_features, load_events
from segmentkit.config import FeatureConfig

AS_OF = dt.datetime(2024, 3, 1)
START = dt.datetime(2023, 11, 1)
FEATURES = FeatureConfig(windows=(7, 30), key_events=("purchase",))
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

users = st.sampled_from(["a", "b", "c", "d", "e", "f"])
times = st.datetimes(min_value=START, max_value=AS_OF - dt.timedelta(seconds=1))
events = st.sampled_from(["view", "purchase", "add_to_cart", "refund"])
revenues = st.one_of(
    st.none(),
    st.floats(min_value=-500, max_value=5000, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e12, 0.0]),
)
sessions = st.one_of(st.none(), st.integers(min_value=0, max_value=5))


@st.composite
def logs(draw, min_rows=1, max_rows=25, times=times):
    """A raw event log: any mix of users, times, names, revenues (hostile ones too), nulls."""
    n = draw(st.integers(min_rows, max_rows))
    rows = [
        (
            draw(st.one_of(users, st.none()) if draw(st.booleans()) else users),
            draw(times),
            draw(st.one_of(events, st.none())),
            draw(revenues),
            draw(sessions),
        )
        for _ in range(n)
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "timestamp", "event", "revenue", "session_id"])
    frame["revenue"] = frame["revenue"].astype("float64")
    frame["session_id"] = frame["session_id"].astype("Int64")
    return frame


@pytest.fixture(scope="module")
def model():
    """A small fitted model (segmenter only) to score the random logs with."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(60):
        for _ in range(rng.integers(1, 12)):
            when = START + dt.timedelta(days=float(rng.uniform(0, 120)))
            event = rng.choice(["view", "purchase", "add_to_cart"])
            rows.append((f"u{user}", when, event, 20.0 if event == "purchase" else None, None))
    log = pd.DataFrame(rows, columns=["user_id", "timestamp", "event", "revenue", "session_id"])
    features = build_features(load_events(log), AS_OF, FEATURES)
    names = [c for c in features.columns if c != "user_id"]
    segmenter = Segmenter(k=3, n_bootstrap=2, random_state=0).fit(features[names])
    return SegmentationModel(segmenter=segmenter, propensity={}, feature_config=FEATURES)


@PROPERTY
@given(raw=logs())
def test_random_logs_load_featurize_and_score_or_fail_cleanly(model, raw):
    try:
        scores = model.score(raw, as_of=AS_OF)
    except SegmentkitError:
        return
    clean = raw.dropna(subset=["user_id"])
    assert set(scores["user_id"]) <= set(clean["user_id"])
    assert scores["segment_id"].between(0, model.segmenter.n_segments_ - 1).all()


@PROPERTY
@given(
    raw=logs(),
    later=logs(times=st.datetimes(min_value=AS_OF, max_value=AS_OF + dt.timedelta(days=60))),
)
def test_events_at_or_after_the_snapshot_never_change_features(raw, later):
    try:
        before = build_features(load_events(raw, as_of=AS_OF), AS_OF, FEATURES)
    except SegmentkitError:
        return
    after = build_features(
        load_events(pd.concat([raw, later], ignore_index=True), as_of=AS_OF), AS_OF, FEATURES
    )
    assert_frame_equal(before, after)
