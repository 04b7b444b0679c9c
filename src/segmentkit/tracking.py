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
    "log_report",
    "log_training_run",
    "promote",
    "resolve_tracking_uri",
    "run_name",
    "synthetic_input_example",
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


def _signature(
    schema: Mapping[str, str], outputs: Mapping[str, str] | None = None
) -> ModelSignature:
    def spec(columns: Mapping[str, str]) -> Schema:
        return Schema([ColSpec(kind, name) for name, kind in columns.items()])

    return ModelSignature(inputs=spec(schema), outputs=spec(outputs) if outputs else None)


def run_name(command: str, as_of: str, k: int | None = None) -> str:
    """Readable run name: ``train-<as_of>-k<k>`` or ``refresh-<as_of>``.

    Examples
    --------
    >>> run_name("train", "2025-01-01", 5), run_name("refresh", "2025-02-01")
    ('train-2025-01-01-k5', 'refresh-2025-02-01')
    """
    return f"{command}-{as_of}" + (f"-k{k}" if command == "train" and k is not None else "")


def synthetic_input_example(
    reference: Mapping[str, Any],
    types: Mapping[str, str] | None = None,
    levels: tuple[float, ...] = (0.1, 0.5, 0.9),
) -> pd.DataFrame:
    """Input rows made of training quantiles, one row per level (no real user's row).

    Each column of row ``i`` is that feature's ``levels[i]`` quantile, read from the
    stored :class:`~segmentkit.drift.FeatureReference`; the user ids are made up.
    Columns typed ``long`` in ``types`` (see :func:`input_schema`) are rounded to
    integers so the example matches the signature.
    """
    import numpy as np

    rows: dict[str, Any] = {"user_id": [f"example-{i + 1}" for i in range(len(levels))]}
    for name, ref in reference.items():
        quantiles = np.asarray(ref.quantiles, dtype=float)
        grid = np.linspace(0.0, 1.0, quantiles.size)
        rows[name] = [float(np.interp(level, grid, quantiles)) for level in levels]
    example = pd.DataFrame(rows)
    for name, kind in (types or {}).items():
        if kind == "long" and name in example:
            example[name] = example[name].round().astype("int64")
    return example


def _log_dataset(dataset: Mapping[str, str]) -> None:
    """Log the training input by source and digest only (no rows, no profile)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # source-type guessing warns about future defaults
        source = resolve_dataset_source(dataset["source"])
    mlflow.log_input(
        MetaDataset(source=source, name=dataset.get("name"), digest=dataset.get("digest")),
        context="training",
    )


def log_report(
    run_id: str, html_text: str, tracking_uri: str, path: str = "reports/report.html"
) -> str:
    """Attach the HTML report to a run and link it from the run's description.

    Returns the artifact URI of the report.
    """
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    client.log_text(run_id, html_text, path)
    uri = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{path}"
    client.set_tag(run_id, "segmentkit.report", uri)
    client.set_tag(
        run_id,
        "mlflow.note.content",
        f"Segment report: [{path}]({uri}) (open the artifact, or download it and open it "
        "in a browser).",
    )
    return uri


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
    run_name: str | None = None,
    dataset: Mapping[str, str] | None = None,
    output_columns: Mapping[str, str] | None = None,
    input_example: pd.DataFrame | None = None,
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
    run_name : str, optional
        E.g. from :func:`run_name`.
    dataset : mapping, optional
        ``source`` (path or URI), ``name`` and ``digest`` of the training input,
        logged with ``mlflow.log_input`` (no rows).
    output_columns : mapping of str to str, optional
        Output columns of the pyfunc model and their types (the signature's outputs).
    input_example : DataFrame, optional
        Synthetic input rows (e.g. :func:`synthetic_input_example`); never real users.
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(dict(tags or {}))
        if dataset is not None:
            _log_dataset(dataset)
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
            # Only a synthetic example, if any: real rows would be user-level data.
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                artifacts={"bundle": str(bundle_dir)},
                signature=_signature(input_columns, output_columns),
                input_example=input_example,
                registered_model_name=model_name,
            )
        version = str(info.registered_model_version)
        client = MlflowClient()
        alias = CHALLENGER
        if promote_to_champion or not _has_alias(client, model_name, CHAMPION):
            alias = CHAMPION
        client.set_registered_model_alias(model_name, alias, version)
        mlflow.set_tags({"segmentkit.alias": alias, "segmentkit.registered_version": version})
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
