"""segmentkit: behavioral user segmentation from event logs.

Build as-of features, find stable segments, score propensities and watch drift.
"""

# The submodule segmentkit.refresh is imported before the function of the same name is
# bound below: importing a submodule for the first time sets it as an attribute of the
# package, which would otherwise replace segmentkit.refresh (the function) later on.
import segmentkit.refresh as _refresh_module  # noqa: F401
from segmentkit.api import (
    RefreshResult,
    TrainResult,
    load,
    read_scores,
    refresh,
    score,
    segments,
    train,
)
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
from segmentkit.project import Project, find_project
from segmentkit.version import __version__

__all__ = [
    "BundleError",
    "Config",
    "ConfigError",
    "DataQualityReport",
    "DataValidationError",
    "EventLog",
    "InsufficientDataError",
    "Project",
    "RefreshResult",
    "SegmentationModel",
    "Segmenter",
    "SegmentkitError",
    "TrainResult",
    "__version__",
    "build_features",
    "describe_features",
    "feature_names",
    "find_project",
    "load",
    "load_config",
    "load_events",
    "read_scores",
    "refresh",
    "score",
    "segments",
    "train",
]
