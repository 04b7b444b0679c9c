"""segmentkit: behavioral user segmentation from event logs.

Build as-of features, find stable segments, score propensities and watch drift.
"""

from segmentkit.api import load
from segmentkit.bundle import SegmentationModel
from segmentkit.config import Config, load_config
from segmentkit.errors import (
    BundleError,
    ConfigError,
    DataValidationError,
    InsufficientDataError,
    SegmentkitError,
)
from segmentkit.features import build_features, describe_features, feature_names
from segmentkit.io.events import DataQualityReport, EventLog, load_events
from segmentkit.models.segmentation import Segmenter
from segmentkit.version import __version__

__all__ = [
    "BundleError",
    "Config",
    "ConfigError",
    "DataQualityReport",
    "DataValidationError",
    "EventLog",
    "InsufficientDataError",
    "SegmentationModel",
    "Segmenter",
    "SegmentkitError",
    "__version__",
    "build_features",
    "describe_features",
    "feature_names",
    "load",
    "load_config",
    "load_events",
]
