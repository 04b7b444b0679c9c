"""Shared fixtures of the bundle tests."""

from __future__ import annotations

import pytest

from segmentkit.bundle.metadata import BundleMetadata
from segmentkit.bundle.model import SegmentationModel
from segmentkit.config import FeatureConfig
from segmentkit.drift.reference import build_feature_reference
from segmentkit.features import build_features, feature_names
from segmentkit.io.events import describe_input, load_events
from segmentkit.models.segmentation import Segmenter


def _segments_model(events, end, features: FeatureConfig) -> SegmentationModel:
    log = load_events(events)
    table = build_features(log, end, features)
    names = feature_names(features)
    return SegmentationModel(
        segmenter=Segmenter(k=3, n_bootstrap=2, random_state=0).fit(table[names]),
        propensity={},
        feature_config=features,
        metadata=BundleMetadata(
            as_of=end.isoformat(),
            input_schema=describe_input(log, features.key_events),
            feature_reference=build_feature_reference(table[["user_id", *names]]),
            data_quality={"first_event": log.first_event},
        ),
    )


@pytest.fixture(scope="session")
def segments_model():
    """Build a segments-only model of a log as of ``end``, with what scoring checks.

    Called as ``segments_model(events, end, features)``: three segments, no propensity,
    and the metadata training records (input schema, feature reference, first event).
    """
    return _segments_model
