"""BundleMetadata: the typed facts a bundle carries beside its fitted objects.

Every module that needs a fact about a trained model (its snapshot, the feature
reference for drift, the segment shares, the evaluation) reads a field of this class
instead of a key of a free-form dict, and :mod:`segmentkit.serialization` writes and
reads it as ``metadata.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segmentkit.config import ColumnMap, FeatureConfig
from segmentkit.drift.reference import FeatureReference
from segmentkit.errors import BundleError
from segmentkit.serialization import from_jsonable, to_jsonable

__all__ = ["BundleMetadata", "redact_uri", "without_credentials"]

# scheme://, then user:password@ (before the first "/"), the path, and ?query or #fragment;
# a URI ends at whitespace or a quote (params lists are logged as JSON text).
_URI_SECRETS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s\"']*@)?"
    r"(?P<rest>[^?#\s\"']*)(?P<query>[?#][^\s\"']*)?"
)


def redact_uri(text: str) -> str:
    """Hide the credentials a URI may carry: its ``user:password@`` and its query string.

    Event logs can be read from URIs (``s3://``, ``https://``); a presigned URL holds
    its signature in the query and some URIs hold a password. Neither goes to MLflow.

    Examples
    --------
    >>> redact_uri("https://me:token@host/events.parquet?X-Amz-Signature=abc")
    'https://***@host/events.parquet?***'
    >>> redact_uri("data/events.parquet")
    'data/events.parquet'
    """

    def hide(match: re.Match[str]) -> str:
        userinfo = "***@" if match["userinfo"] else ""
        query = f"{match['query'][0]}***" if match["query"] else ""
        return f"{match['scheme']}{userinfo}{match['rest']}{query}"

    return _URI_SECRETS.sub(hide, text)


def without_credentials(value: Any) -> Any:
    """Return nested params with :func:`redact_uri` applied to every string in them."""
    if isinstance(value, str):
        return redact_uri(value)
    if isinstance(value, Mapping):
        return {key: without_credentials(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(without_credentials(item) for item in value)
    return value


@dataclass(frozen=True)
class BundleMetadata:
    """Facts about a trained model, stored as ``metadata.json`` in its bundle.

    Attributes
    ----------
    as_of : str
        Training snapshot (ISO 8601): features used only events before it.
    params : dict
        All of ``params.yaml`` as trained (JSON-safe).
    feature_names : tuple of str
        Feature columns the models take, in order.
    feature_reference : dict of str to FeatureReference
        Training distribution of each feature, for drift on refresh.
    segment_names : tuple of str
        Name of each segment id.
    segment_shares : dict of str to float
        Share of training users per segment id.
    data_fingerprint : str
        Digest of the training log's aggregate shape (never of user rows).
    data_quality : dict
        The training log's DataQualityReport.
    propensity_evaluation : tuple of dict
        Out-of-time metrics of each propensity target's chosen model.
    propensity_choice : dict of str to str
        Model family chosen per target.
    propensity_deciles, propensity_calibration : tuple of dict
        Out-of-time lift by decile and calibration bins of every propensity model
        and baseline (aggregate rows), for the HTML report.
    input_schema : dict
        What the training input held (columns, key events seen), checked at scoring.
    model_version : str
        The bundle version directory it was saved as (``v-<time>-...``), written in
        every score row and tagged on the MLflow run; empty until saved.
    training_sample : dict
        When the models were fitted on a sample of users (Spark training): population
        and sample sizes per stratum (aggregates only); empty when fitted on every user.
    format_version, versions, propensity_targets, saved_at, feature_config, columns
        Written by :func:`~segmentkit.bundle.save_bundle`.
    """

    as_of: str
    params: dict[str, Any] = field(default_factory=dict)
    feature_names: tuple[str, ...] = ()
    feature_reference: dict[str, FeatureReference] = field(default_factory=dict)
    segment_names: tuple[str, ...] = ()
    segment_shares: dict[str, float] = field(default_factory=dict)
    data_fingerprint: str = ""
    data_quality: dict[str, Any] = field(default_factory=dict)
    propensity_evaluation: tuple[dict[str, Any], ...] = ()
    propensity_choice: dict[str, str] = field(default_factory=dict)
    propensity_deciles: tuple[dict[str, Any], ...] = ()
    propensity_calibration: tuple[dict[str, Any], ...] = ()
    input_schema: dict[str, Any] = field(default_factory=dict)
    model_version: str = ""
    training_sample: dict[str, Any] = field(default_factory=dict)
    format_version: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    propensity_targets: tuple[str, ...] = ()
    saved_at: str = ""
    feature_config: FeatureConfig | None = None
    columns: ColumnMap | None = None

    def to_json(self) -> str:
        """Return the metadata as indented, key-sorted JSON."""
        return json.dumps(to_jsonable(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "metadata.json") -> BundleMetadata:
        """Read metadata written by :meth:`to_json`.

        Raises
        ------
        BundleError
            The text is not JSON, or a field is missing or malformed.
        """
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # ValueError also covers integers too long to parse; RecursionError, deep nesting.
            reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise BundleError(f"{where} is not valid JSON: {reason}") from None
        return from_jsonable(cls, data, what=where, error=BundleError)
