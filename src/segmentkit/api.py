"""The Python API: load a model from a bundle path or an MLflow URI."""

from __future__ import annotations

from pathlib import Path

from segmentkit.bundle.model import SegmentationModel
from segmentkit.bundle.storage import load_bundle


def load(uri: str | Path, tracking_uri: str | None = None) -> SegmentationModel:
    """Load a model from a bundle path or an MLflow URI such as ``models:/NAME@champion``.

    ``tracking_uri`` defaults to ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.

    Examples
    --------
    >>> import segmentkit
    >>> model = segmentkit.load("models:/segmentkit-demo@champion")  # doctest: +SKIP
    >>> scores = model.score("events.parquet", as_of="2025-01-01")  # doctest: +SKIP
    """
    text = str(uri)
    if "://" in text or text.startswith("models:/") or text.startswith("runs:/"):
        from segmentkit.tracking import download_bundle

        return load_bundle(download_bundle(text, tracking_uri=tracking_uri))
    return load_bundle(text)
