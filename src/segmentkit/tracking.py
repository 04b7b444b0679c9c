"""MLflow at the edge: runs, params, metrics, artifacts, pyfunc model, registry aliases.

This is the only module (with the CLI) that imports mlflow. Everything logged is
an aggregate: params, metrics, report tables and figures. No user id or raw row
is ever sent. The pyfunc model is logged *from code* (no pickled Python object),
with the skops bundle as its artifact.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from segmentkit.bundle.metadata import redact_uri
from segmentkit.errors import BundleError, SegmentkitError, TrackingError

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
    "redact_uri",
    "resolve_tracking_uri",
    "run_name",
    "synthetic_input_example",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
#: MLflow's HTTP settings, read by MLflow on every request.
TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_TIMEOUT"
RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
BACKOFF_ENV = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
#: Run tag holding the bundle version directory a run logged.
VERSION_TAG = "segmentkit.model_version"

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


def sqlite_path(tracking_uri: str) -> Path | None:
    """Return the database file of a ``sqlite:///`` tracking URI (``None`` for other stores).

    Examples
    --------
    >>> sqlite_path("sqlite:///mlflow.db"), sqlite_path("http://host:5000")
    (PosixPath('mlflow.db'), None)
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    name = tracking_uri[len(prefix) :].split("?", 1)[0]
    return Path(name) if name and name != ":memory:" else None


def _store_uri(tracking_uri: str) -> str:
    """Make a relative ``sqlite:///`` store absolute (in the current directory).

    MLflow caches one store per URI string: a relative URI would keep pointing at the
    database of the directory it was first used in, after the process moved elsewhere.
    """
    path = sqlite_path(tracking_uri)
    if path is None or path.is_absolute():
        return tracking_uri
    query = tracking_uri.partition("?")[2]
    absolute = f"sqlite:///{path.resolve()}"
    return f"{absolute}?{query}" if query else absolute


@contextlib.contextmanager
def bounded_requests(timeout_s: int = 10, retries: int = 1) -> Iterator[None]:
    """Bound every MLflow HTTP request made inside the block (restored afterwards).

    MLflow reads ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (default 120 s) and
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` (default 7, with exponential backoff) on each
    request: a server that never answers holds a run for minutes. Values the user
    set in the environment are kept.
    """
    wanted = {TIMEOUT_ENV: str(timeout_s), RETRIES_ENV: str(retries), BACKOFF_ENV: "1"}
    added = [name for name in wanted if name not in os.environ]
    os.environ.update({name: wanted[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Hide MLflow's and alembic's INFO lines inside the block (levels restored after)."""
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# What MLflow's registry prints with ``print`` on every registration; the CLI reports
# the registered version itself, and these lines ignored ``--quiet``.
_REGISTRY_NOTICES = (
    "Successfully registered model ",
    "Registered model ",
    "Created version ",
)


@contextlib.contextmanager
def registry_notices_hidden() -> Iterator[None]:
    """Drop MLflow's registration notices from stderr inside the block, keep the rest.

    Everything else written to stderr in the block (warnings included) is written
    out unchanged when the block ends.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        kept = [
            line
            for line in captured.getvalue().splitlines(keepends=True)
            if not line.startswith(_REGISTRY_NOTICES)
        ]
        if kept:
            sys.stderr.write("".join(kept))


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in lowered:
        timeout = os.environ.get(TIMEOUT_ENV, "120")
        attempts = int(os.environ.get(RETRIES_ENV, "7")) + 1
        return (
            f"no answer within {timeout} s ({attempts} attempt(s); raise "
            f"tracking.request_timeout_s or {TIMEOUT_ENV} for a slow server)"
        )
    if "connection refused" in lowered or "failed to establish" in lowered:
        return "connection refused"
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def tracking_errors(tracking_uri: str, action: str) -> Iterator[None]:
    """Turn MLflow, HTTP, database and file errors into one-line :class:`TrackingError`."""
    try:
        yield
    except SegmentkitError:
        raise
    except (mlflow.exceptions.MlflowException, OSError, TimeoutError) as exc:
        raise TrackingError(f"{action} at {tracking_uri} failed: {_reason(exc)}") from exc
    except Exception as exc:
        # requests and SQLAlchemy errors, without importing either here.
        module = type(exc).__module__.split(".")[0]
        if module in ("requests", "urllib3", "sqlalchemy", "alembic"):
            raise TrackingError(f"{action} at {tracking_uri} failed: {_reason(exc)}") from exc
        raise


@contextlib.contextmanager
def store_lock(tracking_uri: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold an exclusive lock on a sqlite tracking store (no-op for other stores).

    Two runs creating or migrating a fresh sqlite store at once make one of them
    fail inside alembic; with the lock the second waits (up to ``timeout_s``)
    and then publishes normally. The lock file sits beside the database.
    """
    database = sqlite_path(tracking_uri)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks
        fcntl = None
    if database is None or fcntl is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    lock_path = database.with_name(database.name + ".lock")
    with lock_path.open("a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TrackingError(
                        f"the MLflow store {tracking_uri} stayed busy for {timeout_s:.0f} s "
                        f"(another run holds {lock_path}); try again later"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested params to ``section.key`` strings for ``mlflow.log_params``.

    Credentials in URIs are hidden (:func:`redact_uri`).

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
            text = json.dumps(value) if isinstance(value, list | tuple) else str(value)
            flat[name] = redact_uri(text)
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
    stored :class:`~segmentkit.drift.FeatureReference`; the user ids are made up
    (``example-1``..., or -1, -2... when ``types`` says the ids are integers: MLflow
    checks the example against the signature). Columns typed ``long`` in ``types``
    (see :func:`input_schema`) are rounded to integers so the example matches the
    signature.
    """
    import numpy as np

    if (types or {}).get("user_id") == "long":
        ids: list[Any] = [-(i + 1) for i in range(len(levels))]
    else:
        ids = [f"example-{i + 1}" for i in range(len(levels))]
    rows: dict[str, Any] = {"user_id": ids}
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
        source = resolve_dataset_source(redact_uri(dataset["source"]))
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
    mlflow.set_tracking_uri(_store_uri(tracking_uri))
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
    first_version_is_champion: bool = True,
    activate: Callable[[], None] | None = None,
    tags: Mapping[str, str] | None = None,
    texts: Mapping[str, str] | None = None,
    run_name: str | None = None,
    dataset: Mapping[str, str] | None = None,
    output_columns: Mapping[str, str] | None = None,
    input_example: pd.DataFrame | None = None,
    request_timeout_s: int = 10,
    request_retries: int = 1,
    lock_timeout_s: float = 600.0,
) -> RegisteredRun:
    """Log one training run, log the bundle as a pyfunc model, register it, then go live.

    Order matters: the run is logged and the version registered first; only then
    does the alias move and ``activate`` (which switches the local bundle) run. If
    anything fails, the alias is put back, the run is marked FAILED and the error
    propagates, so the previous model stays live everywhere.

    The version gets ``champion`` with ``promote_to_champion``, or when
    ``first_version_is_champion`` and the model has no champion yet; otherwise
    ``challenger``.

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
    first_version_is_champion : bool
        Give the first version of a model ``champion`` (``train``); ``refresh`` passes
        False so that only ``--promote`` ever moves the champion.
    activate : callable, optional
        Called once the version is registered and aliased (e.g. switch the local
        bundle's ``CURRENT``); if it raises, the alias is restored.
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
    request_timeout_s, request_retries : int
        Bound of each HTTP request to a tracking server (see :func:`bounded_requests`).
    lock_timeout_s : float
        Longest wait for another run publishing to the same sqlite store.

    Raises
    ------
    TrackingError
        The tracking store failed or did not answer (one line naming the URI).
    """
    with (
        bounded_requests(request_timeout_s, request_retries),
        tracking_errors(tracking_uri, "publishing the model"),
        quiet_mlflow(),
        store_lock(tracking_uri, lock_timeout_s),
    ):
        mlflow.set_tracking_uri(_store_uri(tracking_uri))
        mlflow.set_experiment(experiment)
        with (
            mlflow.start_run(run_name=run_name) as run,
            tempfile.TemporaryDirectory() as tmp,
        ):
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
            with warnings.catch_warnings(), registry_notices_hidden():
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
            if promote_to_champion or (
                first_version_is_champion and _alias_version(client, model_name, CHAMPION) is None
            ):
                alias = CHAMPION
            _go_live(client, model_name, alias, version, activate)
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


def _go_live(
    client: MlflowClient,
    model_name: str,
    alias: str,
    version: str,
    activate: Callable[[], None] | None,
) -> None:
    """Move ``alias`` to ``version`` and run ``activate``; on failure put the alias back."""
    previous = _alias_version(client, model_name, alias)
    client.set_registered_model_alias(model_name, alias, version)
    try:
        if activate is not None:
            activate()
    except BaseException:
        with contextlib.suppress(Exception):
            if previous is None:
                client.delete_registered_model_alias(model_name, alias)
            else:
                client.set_registered_model_alias(model_name, alias, previous)
        raise


def _alias_version(client: MlflowClient, model_name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def publish_bundle(model: Any, bundle_root: Path, **log_arguments: Any) -> RegisteredRun:
    """Stage the bundle, log and register it, and only then make it live locally.

    The new version directory is written beside the live one; the run, the pyfunc
    model and the registered version are logged from it; then the alias moves and
    ``CURRENT`` switches. On any failure the staged version is removed, the alias
    restored and the run marked FAILED: the previous model stays live everywhere.

    Parameters
    ----------
    model : SegmentationModel
        The fitted model.
    bundle_root : Path
        Local bundle directory (``models/<name>``).
    **log_arguments
        Passed to :func:`log_training_run` (everything but ``bundle_dir`` and ``activate``).

    Returns
    -------
    RegisteredRun
    """
    from segmentkit.bundle.storage import activate_version, discard_version, stage_version

    try:
        version_dir = stage_version(model, bundle_root)
    except OSError as exc:
        raise BundleError(
            f"saving the bundle under {bundle_root} failed ({exc}); the previous model stays live"
        ) from exc
    # The bundle version is tagged on the run: a score file leads back to it.
    tags = {**dict(log_arguments.pop("tags", None) or {}), VERSION_TAG: version_dir.name}
    try:
        return log_training_run(
            bundle_dir=version_dir,
            activate=lambda: activate_version(bundle_root, version_dir),
            tags=tags,
            **log_arguments,
        )
    except BaseException:
        discard_version(bundle_root, version_dir)
        raise


def promote(model_name: str, version: str, tracking_uri: str | None = None) -> None:
    """Move the ``champion`` alias to ``version``."""
    store = resolve_tracking_uri(tracking_uri)
    with bounded_requests(), tracking_errors(store, "promoting"), quiet_mlflow():
        mlflow.set_tracking_uri(_store_uri(store))
        MlflowClient().set_registered_model_alias(model_name, CHAMPION, str(version))


def download_bundle(
    uri: str,
    dst: str | Path | None = None,
    tracking_uri: str | None = None,
    *,
    request_timeout_s: int = 10,
    request_retries: int = 1,
) -> Path:
    """Download the bundle carried by a logged model (``models:/NAME@ALIAS``, ``runs:/...``).

    Only ``models:/`` and ``runs:/`` URIs are resolved, through the tracking store;
    MLflow would fetch or copy anything an ``http://``, ``s3://`` or ``file://`` URI
    names. Without ``dst`` the download goes to a temporary directory, removed when
    the download fails or the process ends.

    Raises
    ------
    BundleError
        The URI is of another kind or does not resolve, or the model carries no
        segmentkit bundle.
    """
    _check_model_uri(uri)
    store = resolve_tracking_uri(tracking_uri)
    database = sqlite_path(store)
    if database is not None and not database.is_file():
        # Opening a sqlite store creates it: a load must not leave an empty store behind.
        raise BundleError(
            f"cannot load model {_shown(uri)}: there is no MLflow store at {store} "
            f"({database} does not exist); run `segmentkit train` first, pass --model PATH, or set "
            "MLFLOW_TRACKING_URI"
        )
    own_target = dst is None
    target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="segmentkit-"))
    try:
        local = _download(uri, target, store, request_timeout_s, request_retries)
        candidates = [p.parent for p in local.rglob("MANIFEST.sha256")]
        if not candidates:
            raise BundleError(f"model {_shown(uri)} carries no segmentkit bundle")
    except BaseException:
        if own_target:
            shutil.rmtree(target, ignore_errors=True)
        raise
    if own_target:
        # The bundle is read into memory when loaded; the copy goes when the process ends.
        atexit.register(shutil.rmtree, target, True)
    return candidates[0]


#: Model URIs segmentkit resolves through the tracking store. Anything else
#: (``http://``, ``s3://``, ``file://``, ...) would make MLflow fetch or copy
#: whatever it names, unchecked.
_MODEL_URI_SCHEMES = ("models:/", "runs:/")


def _shown(uri: str, limit: int = 200) -> str:
    """Return the URI as a message shows it: cut when very long."""
    return uri if len(uri) <= limit else f"{uri[:limit]}... ({len(uri):,} characters)"


def _check_model_uri(uri: str) -> None:
    """Refuse a model URI other than ``models:/...`` and ``runs:/...``."""
    if not uri.startswith(_MODEL_URI_SCHEMES):
        hint = (
            "pass the bundle directory as a path"
            if uri.startswith("file:")
            else "download the bundle yourself and pass its directory"
        )
        raise BundleError(
            f"cannot load model {_shown(uri)}: segmentkit loads a model from a bundle path, "
            f"a models:/ URI (models:/NAME@ALIAS, models:/NAME/VERSION) or runs:/RUN_ID/PATH "
            f"only; {hint}"
        )


def _download(
    uri: str, target: Path, store: str, request_timeout_s: int, request_retries: int
) -> Path:
    """Download a model URI's artifacts into ``target`` (errors as :class:`BundleError`)."""
    try:
        with (
            bounded_requests(request_timeout_s, request_retries),
            tracking_errors(store, f"loading model {_shown(uri)}"),
            quiet_mlflow(),
        ):
            mlflow.set_tracking_uri(_store_uri(store))
            try:
                return Path(
                    mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target))
                )
            except mlflow.exceptions.MlflowException as exc:
                if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or (
                    "not found" in str(exc).lower()
                ):
                    raise BundleError(
                        f"cannot load model {_shown(uri)}: {_reason(exc)} (in {store})"
                    ) from None
                raise
    except TrackingError as exc:
        raise BundleError(str(exc)) from None
