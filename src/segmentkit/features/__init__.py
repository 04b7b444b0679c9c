"""As-of features: one catalogue of definitions, and the engines that compute it.

:mod:`segmentkit.features.definitions` declares every feature (name, order,
documentation); :mod:`segmentkit.features.duckdb_engine` computes them in DuckDB.
Another engine goes beside it and implements the same catalogue.
"""

from segmentkit.features.definitions import FeatureSpec, describe_features, feature_names
from segmentkit.features.duckdb_engine import build_features, build_features_many

__all__ = [
    "FeatureSpec",
    "build_features",
    "build_features_many",
    "describe_features",
    "feature_names",
]
