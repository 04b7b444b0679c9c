"""segmentkit: behavioral user segmentation from event logs.

Build as-of features, find stable segments, score propensities and watch drift.
"""

import importlib
import sys
import types
from typing import Any

from segmentkit.config import Config, load_config
from segmentkit.errors import (
    BundleError,
    ConfigError,
    DataValidationError,
    InsufficientDataError,
    SegmentkitError,
)
from segmentkit.project import Project, find_project
from segmentkit.version import __version__

# The module of every other public name, imported on first use: `import segmentkit`
# (and so every command of the CLI) starts without scikit-learn, SciPy, numba and
# skops, so a scoring job can load them in the background while it reads the log.
_LAZY = {
    "RefreshResult": "segmentkit.api",
    "TrainResult": "segmentkit.api",
    "load": "segmentkit.api",
    "read_scores": "segmentkit.api",
    "refresh": "segmentkit.api",
    "score": "segmentkit.api",
    "segments": "segmentkit.api",
    "train": "segmentkit.api",
    "SegmentationModel": "segmentkit.bundle",
    "build_features": "segmentkit.features",
    "describe_features": "segmentkit.features",
    "feature_names": "segmentkit.features",
    "DataQualityReport": "segmentkit.io.events",
    "EventLog": "segmentkit.io.events",
    "load_events": "segmentkit.io.events",
    "Segmenter": "segmentkit.models.segmentation",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'segmentkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """The package module, whose attribute ``refresh`` is always the API function."""

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing the submodule segmentkit.refresh for the first time binds it as the
        # package attribute of the same name, which is the function: keep the function
        # (the module is sys.modules["segmentkit.refresh"], or importlib.import_module).
        if name == "refresh" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
