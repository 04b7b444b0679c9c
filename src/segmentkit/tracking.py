"""MLflow at the edge: runs, params, metrics, artifacts, pyfunc model, registry aliases.

This is the only module (with the CLI) that imports mlflow. Everything logged is
an aggregate: params, metrics, report tables and figures. No user id or raw row
is ever sent. The pyfunc model is logged *from code* (no pickled Python object),
with the skops bundle as its artifact.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from segmentkit.errors import BundleError

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "RegisteredRun",
    "SegmentkitPyfunc",
    "download_bundle",
    "flatten_params",
    "input_schema",
    "log_training_run",
    "promote",
    "resolve_tracking_uri",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

_MODEL_CODE = '''"""segmentkit pyfunc model, logged from code (no pickle)."""
import mlflow
from segmentkit.tracking import SegmentkitPyfunc

mlflow.models.set_model(SegmentkitPyfunc())
'''


class SegmentkitPyfunc(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper: scores a feature DataFrame with the bundle it carries."""

    def load_context(self, context: Any) -> None:
        """Load the bundle from the model's artifacts (checksums verified)."""
        from segmentkit.bundle import load_bundle

        self.model = load_bundle(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Return ``user_id, segment_id, segment_name`` and propensity columns."""
        return self.model.score_features(pd.DataFrame(model_input))


@dataclass(frozen=True)
class RegisteredRun:
    """Where a training run landed."""

    run_id: str
    experiment_id: str
    model_name: str
    model_version: str
    alias: str
    tracking_uri: str
    # Where the run's reports/, figures/ and model artifacts are stored.
    artifact_uri: str = ""


def resolve_tracking_uri(configured: str | None = None) -> str:
    """Return the tracking URI: params, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested params to ``section.key`` strings for ``mlflow.log_params``.

    Examples
    --------
    >>> flatten_params({"a": {"b": 1, "c": [1, 2]}})
    {'a.b': '1', 'a.c': '[1, 2]'}
    """
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return flat


def input_schema(frame: pd.DataFrame) -> dict[str, str]:
    """Map a feature table's columns to MLflow column types (from dtypes only, no values)."""
    schema = {}
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_integer_dtype(dtype):
            schema[str(name)] = "long"
        elif pd.api.types.is_float_dtype(dtype):
            schema[str(name)] = "double"
        else:
            schema[str(name)] = "string"
    return schema


def _signature(schema: Mapping[str, str]) -> ModelSignature:
    return ModelSignature(inputs=Schema([ColSpec(kind, name) for name, kind in schema.items()]))


def log_training_run(
    *,
    tracking_uri: str,
    experiment: str,
    model_name: str,
    bundle_dir: Path,
    input_columns: Mapping[str, str],
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tables: Mapping[str, pd.DataFrame],
    documents: Mapping[str, Any],
    figures: Mapping[str, Any],
    promote_to_champion: bool = False,
    tags: Mapping[str, str] | None = None,
    texts: Mapping[str, str] | None = None,
) -> RegisteredRun:
    """Log one training run, log the bundle as a pyfunc model and register it.

    The first registered version gets the ``champion`` alias; later ones
    ``challenger`` unless ``promote_to_champion``.

    Parameters
    ----------
    tracking_uri, experiment, model_name : str
        Where to log and register.
    bundle_dir : Path
        A bundle version directory (with its manifest).
    input_columns : mapping of str to str
        Input columns of the pyfunc model and their MLflow types (its signature),
        e.g. from :func:`input_schema`.
    params, metrics : mapping
        Nested params (flattened here) and aggregate metrics.
    tables : mapping of str to DataFrame
        Aggregate tables, logged as CSV artifacts under ``reports/``.
    documents : mapping of str to JSON-able
        Logged as JSON artifacts under ``reports/``.
    figures : mapping of str to matplotlib Figure
        Logged as PNG under ``figures/``.
    promote_to_champion : bool
        Give this version the ``champion`` alias even if one exists.
    tags : mapping, optional
        Run tags.
    texts : mapping of str to str, optional
        Text artifacts by file name (e.g. a Markdown report), under ``reports/``.
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(dict(tags or {}))
        mlflow.log_params(flatten_params(params))
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        for name, table in tables.items():
            path = Path(tmp) / f"{name}.csv"
            table.to_csv(path, index=False)
            mlflow.log_artifact(str(path), artifact_path="reports")
        for name, document in documents.items():
            mlflow.log_dict(document, f"reports/{name}.json")
        for name, text in (texts or {}).items():
            mlflow.log_text(text, f"reports/{name}")
        for name, figure in figures.items():
            mlflow.log_figure(figure, f"figures/{name}.png")
        code = Path(tmp) / "segmentkit_model.py"
        code.write_text(_MODEL_CODE, encoding="utf-8")
        with warnings.catch_warnings():
            # No input example on purpose: it would be user-level data in the registry.
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                artifacts={"bundle": str(bundle_dir)},
                signature=_signature(input_columns),
                registered_model_name=model_name,
            )
        version = str(info.registered_model_version)
        client = MlflowClient()
        alias = CHALLENGER
        if promote_to_champion or not _has_alias(client, model_name, CHAMPION):
            alias = CHAMPION
        client.set_registered_model_alias(model_name, alias, version)
        mlflow.set_tag("segmentkit.alias", alias)
        return RegisteredRun(
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            model_name=model_name,
            model_version=version,
            alias=alias,
            tracking_uri=tracking_uri,
            artifact_uri=run.info.artifact_uri,
        )


def _has_alias(client: MlflowClient, model_name: str, alias: str) -> bool:
    try:
        client.get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException:
        return False
    return True


def promote(model_name: str, version: str, tracking_uri: str | None = None) -> None:
    """Move the ``champion`` alias to ``version``."""
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    MlflowClient().set_registered_model_alias(model_name, CHAMPION, str(version))


def download_bundle(
    uri: str, dst: str | Path | None = None, tracking_uri: str | None = None
) -> Path:
    """Download the bundle carried by a logged model (``models:/NAME@ALIAS``, ``runs:/...``).

    Raises
    ------
    BundleError
        The URI does not resolve, or the model carries no segmentkit bundle.
    """
    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="segmentkit-"))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target)))
    except mlflow.exceptions.MlflowException as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(f"cannot load model {uri}: {message}") from None
    candidates = [p.parent for p in local.rglob("MANIFEST.sha256")]
    if not candidates:
        raise BundleError(f"model {uri} carries no segmentkit bundle")
    return candidates[0]
