"""Exceptions raised by segmentkit.

Every error a user can cause derives from :class:`SegmentkitError`; the CLI prints
its message on one line and exits with code 2.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "ConfigError",
    "DataValidationError",
    "InsufficientDataError",
    "SegmentkitError",
    "SegmentkitWarning",
    "TrackingError",
]


class SegmentkitError(Exception):
    """Base class of the errors segmentkit reports to its users."""


class ConfigError(SegmentkitError, ValueError):
    """``params.yaml`` or an argument holds an invalid setting."""


class DataValidationError(SegmentkitError, ValueError):
    """The event log breaks the data contract."""


class InsufficientDataError(SegmentkitError, ValueError):
    """Too few users, events or positives for the requested model."""


class BundleError(SegmentkitError):
    """A model bundle cannot be saved or is refused on load."""


class TrackingError(SegmentkitError):
    """The MLflow tracking store failed, refused or did not answer in time."""


class SegmentkitWarning(UserWarning):
    """Something a user should know that does not stop the run (the CLI prints one line)."""
