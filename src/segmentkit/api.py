"""The Python API: what each ``segmentkit`` command does, as functions.

:func:`train`, :func:`score`, :func:`refresh` and :func:`segments` run the same code
as the commands of the same name (the CLI only parses arguments and prints), and
:func:`load` opens a saved model from a bundle path or an MLflow URI.

Events may be a Parquet or CSV path or glob, a pandas DataFrame or a DuckDB
relation; params a ``params.yaml`` path, a dict of overrides of the built-in
defaults, or a :class:`~segmentkit.config.Config`. MLflow is imported only when a
run is tracked (by :mod:`segmentkit.tracking`, the one module that talks to it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from segmentkit.bundle.model import UNSAVED_VERSION, SegmentationModel
from segmentkit.bundle.storage import load_bundle
from segmentkit.config import ColumnMap, Config, load_config
from segmentkit.errors import BundleError, ConfigError, DataValidationError, SegmentkitWarning
from segmentkit.io.events import DataQualityReport, EventSource
from segmentkit.text import is_mlflow_uri
from segmentkit.version import __version__

if TYPE_CHECKING:
    from segmentkit.drift import DriftReport
    from segmentkit.tracking import RegisteredRun
    from segmentkit.training import TrainingResult

__all__ = [
    "RefreshResult",
    "TrainResult",
    "champion_model",
    "is_mlflow_uri",
    "load",
    "load_and_score",
    "load_params",
    "read_scores",
    "refresh",
    "resolve_events",
    "score",
    "segments",
    "train",
]

Params = str | Path | Mapping[str, Any] | Config | None
Progress = Callable[[str], contextlib.AbstractContextManager[Any]]
ModelRef = SegmentationModel | str | Path


@contextlib.contextmanager
def _silent(_: str) -> Iterator[None]:
    yield


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
    if is_mlflow_uri(text):
        from segmentkit.tracking import download_bundle

        return load_bundle(download_bundle(text, tracking_uri=tracking_uri))
    return load_bundle(text)


def load_params(params: Params = None) -> Config:
    """Return the configuration ``params`` stands for.

    Parameters
    ----------
    params : str, Path, mapping, Config or None
        A ``params.yaml`` path; a nested dict applied over the built-in defaults
        (``{"segmentation": {"k": 5}}``); a :class:`Config` (returned as is); or
        ``None``: ``./params.yaml`` when it exists, else the built-in defaults (as
        the CLI does).

    Raises
    ------
    ConfigError
        The file is missing or invalid, a key is unknown or a value has the wrong type.

    Examples
    --------
    >>> load_params({"segmentation": {"k": 5}}).segmentation.k
    5
    """
    if isinstance(params, Config):
        return params
    if params is None:
        default = Path("params.yaml")
        return load_config(default if default.is_file() else None)
    if isinstance(params, str | Path):
        return load_config(params)
    if isinstance(params, Mapping):
        return load_config(overrides=dict(params))
    raise ConfigError(
        f"params: expected a params.yaml path, a dict or a Config, got {type(params).__name__}"
    )


def resolve_events(
    config: Config, events: EventSource | None = None, notify: Callable[[str], None] | None = None
) -> EventSource:
    """Return the event source to use: ``events``, else ``data.events``, else the demo log.

    The demo log (``data.demo``) is generated on first use and reused afterwards;
    ``notify`` (if given) receives a one-line message saying so.
    """
    if events is not None:
        return events
    if config.data.events:
        return config.data.events
    from segmentkit.io.synth import ensure_demo_log

    demo = config.data.demo
    if notify is not None:
        notify(
            f"no events given: using demo data ({demo.users} users, {demo.days} days) "
            f"at {demo.path}"
        )
    return str(ensure_demo_log(demo.users, demo.days, demo.seed, demo.path))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced.

    Attributes
    ----------
    model : SegmentationModel
        The fitted model, ready to score (``segmentkit.score(result.model, events)``).
    as_of : datetime.datetime
        The snapshot: features used only events strictly before it.
    segments : pandas.DataFrame
        One row per segment id (index ``segment``): ``name, description, share, users,
        stability`` at training (see :func:`segments`).
    evaluation : pandas.DataFrame
        Out-of-time metrics, tidy ``target, model, metric, value``; ``model`` is a
        family (``logistic``, ``hgb``), a baseline (``recency``, ``rfm``) or ``model``
        for the chosen family. Empty without propensity targets.
    data_quality : DataQualityReport
        What validation removed from the log (counts only).
    bundle_path : Path or None
        Bundle directory the model was saved to; ``None`` when not tracked.
    run : RegisteredRun or None
        MLflow run and registered model version; ``None`` when not tracked.
    training : TrainingResult
        Every intermediate result, including user-level features and segment
        labels (in memory only; never logged).
    report_html : Path or None
        The self-contained HTML report (``reports/train-<as_of>/report.html``).
    """

    model: SegmentationModel
    as_of: dt.datetime
    segments: pd.DataFrame
    evaluation: pd.DataFrame
    data_quality: DataQualityReport
    bundle_path: Path | None
    run: RegisteredRun | None
    training: TrainingResult
    report_html: Path | None = None

    @property
    def run_id(self) -> str | None:
        """MLflow run id, or ``None`` when the run was not tracked."""
        return self.run.run_id if self.run is not None else None

    @property
    def model_version(self) -> str:
        """The bundle version written in every score row (``unsaved`` until saved)."""
        return self.model.metadata.model_version or UNSAVED_VERSION

    def compare(self, metric: str = "roc_auc") -> pd.DataFrame:
        """One out-of-time metric per target: the chosen model beside the baselines.

        Returns
        -------
        pandas.DataFrame
            Columns ``target, model, recency, rfm, bgnbd`` (those present), one row per target.
        """
        rows = self.evaluation[self.evaluation["metric"] == metric]
        table = rows.pivot(index="target", columns="model", values="value")
        columns = [c for c in ("model", "recency", "rfm", "bgnbd") if c in table.columns]
        table = table[columns].reset_index()
        table.columns.name = None
        return table


@dataclass(frozen=True)
class RefreshResult:
    """What :func:`refresh` produced.

    Attributes
    ----------
    challenger : TrainResult
        The model trained on the new snapshot, its segment ids aligned to the champion's.
    report : DriftReport
        Every drift test against the champion; ``report.status`` is OK, WARN or DRIFT.
    champion_as_of, as_of : datetime.datetime
        The champion's training snapshot and the new one.
    report_path : Path or None
        The Markdown drift report (``drift.json`` beside it); ``None`` if not written.
    report_html : Path or None
        The HTML report beside it (verdict, migration matrix, segments, charts).
    """

    challenger: TrainResult
    report: DriftReport
    champion_as_of: dt.datetime
    as_of: dt.datetime
    report_path: Path | None
    report_html: Path | None = None

    @property
    def status(self) -> str:
        """OK, WARN or DRIFT: the worst of the drift tests."""
        return self.report.status

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this status: 0 for OK and WARN, 3 for DRIFT."""
        return self.report.exit_code


# --------------------------------------------------------------------------- train


def train(
    events: EventSource | None = None,
    params: Params = None,
    as_of: dt.date | dt.datetime | str | None = None,
    *,
    promote: bool = False,
    track: bool = True,
    progress: Progress | None = None,
    reports_dir: str | Path | None = "reports",
) -> TrainResult:
    """Build features, fit segments and propensity models; save, log and register them.

    This is ``segmentkit train``.

    Parameters
    ----------
    events : str, Path, pandas.DataFrame or duckdb.DuckDBPyRelation, optional
        The event log; default ``params`` → ``data.events``, else the demo log.
    params : str, Path, dict or Config, optional
        See :func:`load_params`.
    as_of : date-like, optional
        Snapshot; default ``data.as_of``, else the midnight after the last event.
    promote : bool
        Give the new registered version the ``champion`` alias (the first version
        always gets it; later ones get ``challenger`` unless promoted).
    track : bool
        Save the bundle under ``tracking.models_dir``, log and register an MLflow
        run and write ``<reports_dir>/train-<as_of>/report.html``, as the CLI does.
        ``False`` fits in memory only: nothing is written.
    progress : callable, optional
        ``progress(step_name)`` returns a context manager wrapping each long step.
    reports_dir : str or Path, optional
        Where the HTML report goes when tracked (default ``reports``).

    Returns
    -------
    TrainResult

    Raises
    ------
    SegmentkitError
        Invalid params, events that break the data contract, or too little data.

    Examples
    --------
    >>> import segmentkit
    >>> result = segmentkit.train("events.parquet", params="params.yaml")  # doctest: +SKIP
    >>> result.segments[["name", "share"]]  # doctest: +SKIP
    """
    from segmentkit.training import train_model

    config = load_params(params)
    step = progress or _silent
    source = resolve_events(config, events)
    training = train_model(config, source, as_of, progress=step)
    bundle_root = run = html = None
    if track:
        bundle_root = Path(config.tracking.models_dir) / config.tracking.registered_model
        run = _publish(
            config, training, bundle_root, promote, command="train", progress=step, source=source
        )
        out_dir = Path(reports_dir or "reports") / f"train-{training.as_of:%Y-%m-%d}"
        html = _write_html_report(training.model, run, out_dir, step)
    return dataclasses.replace(_train_result(training, bundle_root, run), report_html=html)


def _write_html_report(
    model: SegmentationModel,
    run: RegisteredRun | None,
    out_dir: Path,
    progress: Progress,
    refresh_report: DriftReport | None = None,
    title: str = "Segment report",
) -> Path:
    """Write ``report.html`` into ``out_dir`` and attach it to the run (the I/O edge)."""
    from segmentkit.report.html import model_report, render_html

    facts = []
    if run is not None:
        what = "Challenger registered as" if refresh_report is not None else "Registered as"
        facts = [
            (what, f"{run.model_name} version {run.model_version} (alias {run.alias})"),
            ("MLflow run", run.run_id),
        ]
    with progress("Writing the HTML report"):
        text = render_html(model_report(model, title=title, facts=facts, refresh=refresh_report))
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "report.html"
        path.write_text(text, encoding="utf-8")
        if run is not None:
            import segmentkit.tracking as tracking

            tracking.log_report(run.run_id, text, run.tracking_uri)
    import matplotlib.pyplot as plt

    plt.close("all")
    return path


def _train_result(
    training: TrainingResult, bundle_path: Path | None, run: RegisteredRun | None
) -> TrainResult:
    if training.propensity is not None:
        evaluation = training.propensity.evaluation.metrics.reset_index(drop=True)
    else:
        evaluation = pd.DataFrame(
            {
                "target": pd.Series(dtype=str),
                "model": pd.Series(dtype=str),
                "metric": pd.Series(dtype=str),
                "value": pd.Series(dtype=float),
            }
        )
    return TrainResult(
        model=training.model,
        as_of=training.as_of,
        segments=segments(training.model),
        evaluation=evaluation,
        data_quality=training.report,
        bundle_path=bundle_path,
        run=run,
        training=training,
    )


def _publish(
    config: Config,
    result: TrainingResult,
    bundle_root: Path,
    promote: bool,
    command: str,
    progress: Progress,
    extra_metrics: Mapping[str, float] | None = None,
    documents: Mapping[str, Any] | None = None,
    texts: Mapping[str, str] | None = None,
    source: Any = None,
) -> RegisteredRun:
    """Stage the bundle, log and register it, then make it live (the I/O edge of train/refresh).

    Nothing goes live (local ``CURRENT``, registry alias) before MLflow has the run and
    the registered version; on any failure the previous model stays live and the run
    is marked FAILED (see :func:`segmentkit.tracking.publish_bundle`). Only ``train``
    may give a first version the ``champion`` alias; ``refresh`` needs ``promote``.
    The model's ``metadata.model_version`` is set to the bundle version, which is
    also tagged on the run, so a score file leads back to its registered version.
    """
    from segmentkit.bundle import live_version
    from segmentkit.report.training import training_figures

    with progress("Saving the bundle and logging to MLflow"):
        import segmentkit.tracking as tracking

        _quiet_mlflow_logs()
        as_of = f"{result.as_of:%Y-%m-%d}"
        params = config.to_dict()
        dataset = None
        if isinstance(source, str | Path):
            params["data"]["events"] = str(source)  # the log actually read, demo data included
            dataset = {
                "source": str(source),
                "name": Path(str(source)).name,
                "digest": result.model.metadata.data_fingerprint,
            }
        inputs = tracking.input_schema(result.features[["user_id", *result.model.feature_names]])
        example = tracking.synthetic_input_example(result.model.metadata.feature_reference, inputs)
        outputs = tracking.input_schema(result.model.score_features(example))
        track = config.tracking
        registered = tracking.publish_bundle(
            result.model,
            bundle_root,
            tracking_uri=tracking.resolve_tracking_uri(track.tracking_uri),
            experiment=track.experiment,
            model_name=track.registered_model,
            input_columns=inputs,
            params=params,
            metrics={**result.metrics(), **(extra_metrics or {})},
            tables=result.tables(),
            documents={**result.documents(), **(documents or {})},
            figures=training_figures(result),
            promote_to_champion=promote,
            first_version_is_champion=command == "train",
            request_timeout_s=track.request_timeout_s,
            request_retries=track.request_retries,
            lock_timeout_s=track.store_lock_timeout_s,
            tags={
                "segmentkit.as_of": as_of,
                "segmentkit.command": command,
                "segmentkit.version": __version__,
            },
            texts=dict(texts) if texts else None,
            run_name=tracking.run_name(command, as_of, result.model.segmenter.n_segments_),
            dataset=dataset,
            output_columns=outputs,
            input_example=example,
        )
        version = live_version(bundle_root).name
        result.model.metadata = dataclasses.replace(result.model.metadata, model_version=version)
    import matplotlib.pyplot as plt

    plt.close("all")
    return registered


def _quiet_mlflow_logs() -> None:
    """Silence MLflow's INFO chatter (after :mod:`segmentkit.tracking` imported mlflow)."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- score


def _model(model: ModelRef, tracking_uri: str | None = None) -> SegmentationModel:
    if isinstance(model, SegmentationModel):
        return model
    if isinstance(model, str | Path):
        return load(model, tracking_uri=tracking_uri)
    raise BundleError(
        f"model: expected a SegmentationModel, a bundle path or a models:/ URI, "
        f"got {type(model).__name__}"
    )


def score(
    model: ModelRef,
    events: EventSource,
    as_of: dt.date | dt.datetime | str | None = None,
    *,
    tracking_uri: str | None = None,
    columns: ColumnMap | None = None,
) -> pd.DataFrame:
    """Score every user of an event log: segment and propensities as of a snapshot.

    This is ``segmentkit score``; see :meth:`SegmentationModel.score` for the
    columns, their order and dtypes.

    Parameters
    ----------
    model : SegmentationModel, str or Path
        A model, a bundle path or an MLflow URI (``models:/NAME@champion``).
    events : str, Path, pandas.DataFrame or duckdb.DuckDBPyRelation
        The event log, with the columns the model was trained on.
    as_of : date-like, optional
        Snapshot; default the midnight after the last event.
    tracking_uri : str, optional
        For MLflow URIs (default ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``).
    columns : ColumnMap, optional
        Column names of ``events`` (default: the training log's). The log must still
        hold every column role the model was trained with.

    Returns
    -------
    pandas.DataFrame
        One row per user.
    """
    return load_and_score(model, events, as_of, tracking_uri=tracking_uri, columns=columns)[1]


def load_and_score(
    model: ModelRef,
    events: EventSource,
    as_of: dt.date | dt.datetime | str | None = None,
    *,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
    columns: ColumnMap | None = None,
) -> tuple[SegmentationModel, pd.DataFrame]:
    """Load a model and score an event log with it, the two side by side.

    A bundle's files are verified and its metadata read first (milliseconds); the
    fitted objects are then built in a background thread (importing scikit-learn
    and skops, loading each file and :meth:`~SegmentationModel.warm_up`, a few
    core-seconds, mostly Python) while the log is validated and its features are
    built (DuckDB, which releases the GIL).
    The result is the one of :func:`load` followed by :func:`score`, and so are
    the errors: a broken bundle is reported before a broken log.

    Parameters
    ----------
    model, events, as_of, tracking_uri, columns
        As :func:`score`.
    progress : callable, optional
        ``progress(step_name)`` returns a context manager wrapping each step: reading
        the log (while the model loads), then scoring.

    Returns
    -------
    model : SegmentationModel
        The loaded model.
    scores : pandas.DataFrame
        :func:`score`'s table.
    """
    from concurrent.futures import ThreadPoolExecutor

    from segmentkit.bundle.model import features_to_score, trained_start
    from segmentkit.bundle.storage import open_bundle

    step = progress or _silent
    if isinstance(model, SegmentationModel):
        with step("Scoring"):
            return model, model.score(events, as_of=as_of, columns=columns)
    if not isinstance(model, str | Path):
        _model(model)  # raises the error naming the type
    text = str(model)
    if is_mlflow_uri(text):
        from segmentkit.tracking import download_bundle

        with step(f"Downloading {text}"):
            text = str(download_bundle(text, tracking_uri=tracking_uri))
    opened = open_bundle(text)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="segmentkit-load") as pool:
        loading = pool.submit(_load_warm, opened)
        try:
            with step("Checking the log and building features (the model loads meanwhile)"):
                features, snapshot, notes = features_to_score(
                    events,
                    columns or opened.columns,
                    opened.feature_config,
                    opened.input_schema,
                    as_of,
                    trained_columns=opened.columns,
                    reference=opened.raw.get("feature_reference"),
                    **trained_start(opened.raw.get("as_of"), opened.raw.get("data_quality")),
                )
        except Exception:
            failed = loading.exception()
            if failed is not None:
                raise failed from None
            raise
        with step("Loading the model (rest)"):
            loaded = loading.result()
    for message in notes:
        warnings.warn(message, SegmentkitWarning, stacklevel=2)
    with step("Scoring"):
        return loaded, loaded._scores_at(features, snapshot)


def _load_warm(opened: Any) -> SegmentationModel:
    """Build an opened bundle's model and do its once-per-process scoring work."""
    from segmentkit.bundle.storage import load_opened

    model = load_opened(opened)
    model.warm_up()
    return model


def read_scores(path: str | Path) -> pd.DataFrame:
    """Read a score file written by ``segmentkit score`` (Parquet or CSV) with its dtypes.

    Parquet keeps every dtype. A CSV is read back to the same frame: floats
    exactly, ``as_of`` as a timestamp, text as strings; ``user_id`` comes back as
    integers when every id is written as a plain integer, else as strings.

    Raises
    ------
    DataValidationError
        The file does not exist or is neither ``.parquet`` nor ``.csv``.
    """
    from segmentkit.io.events import check_output_path

    path = check_output_path(path)
    if not path.is_file():
        raise DataValidationError(f"score file not found: {path}")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    converted = {}
    for column in frame.columns:
        values = frame[column]
        if column == "user_id":
            plain = values.str.fullmatch(r"0|-?[1-9][0-9]*").all()
            converted[column] = values.astype("int64") if plain else values
        elif column == "as_of":
            converted[column] = pd.to_datetime(values).astype("datetime64[us]")
        elif column == "segment_id" or column.endswith("_percentile"):
            converted[column] = values.astype("int64")
        elif column.startswith(("p_", "expected_")) and not column.endswith("_bucket"):
            converted[column] = pd.to_numeric(values).astype("float64")
        else:
            converted[column] = values
    return pd.DataFrame(converted)


def segments(model: ModelRef, *, tracking_uri: str | None = None) -> pd.DataFrame:
    """Return the segment table of a model: what ``segmentkit segments`` prints.

    Returns
    -------
    pandas.DataFrame
        Index ``segment`` (the id scores carry); columns ``name, description, share,
        users, stability`` (share and users at training; stability is the mean
        bootstrap Jaccard).
    """
    from segmentkit.report.review import segment_table

    return segment_table(_model(model, tracking_uri).segmenter)


# --------------------------------------------------------------------------- refresh


def champion_model(
    config: Config,
    model: ModelRef | None = None,
    tracking_uri: str | None = None,
    *,
    local_fallback: bool = False,
) -> SegmentationModel:
    """Return the model a refresh compares against.

    ``model`` if given (a model, bundle path or URI); else the registry's
    ``models:/<registered_model>@champion``; with ``local_fallback`` (read-only uses
    such as ``segmentkit segments``), else the local bundle ``<models_dir>/<name>``. A
    refresh never falls back: it compares against (and may replace) the registered
    champion.

    Raises
    ------
    BundleError
        No champion is registered (says what to run) or the model cannot be loaded.
    """
    uri = tracking_uri or config.tracking.tracking_uri
    if model is not None:
        return _model(model, uri)
    name = config.tracking.registered_model
    try:
        return load(f"models:/{name}@champion", tracking_uri=uri)
    except BundleError as exc:
        if local_fallback:
            return load(Path(config.tracking.models_dir) / name)
        advice = (
            ""
            if "segmentkit train" in str(exc)
            else "; run `segmentkit train` to register one, or pass --model PATH"
        )
        raise BundleError(f"refresh needs a champion: {exc}{advice}") from None


def refresh(
    events: EventSource | None = None,
    params: Params = None,
    as_of: dt.date | dt.datetime | str | None = None,
    *,
    champion: ModelRef | None = None,
    promote: bool = False,
    track: bool = True,
    reports_dir: str | Path | None = "reports",
    progress: Progress | None = None,
) -> RefreshResult:
    """Compare a new snapshot with the champion, train an aligned challenger, test drift.

    This is ``segmentkit refresh``.

    Parameters
    ----------
    events, params, as_of
        As in :func:`train`; the log must cover the champion's snapshot and the new one.
    champion : SegmentationModel, str or Path, optional
        Default: the registry's champion (see :func:`champion_model`).
    promote : bool
        Save the challenger over the champion's bundle and give it the ``champion``
        alias (else it is saved to ``<models_dir>/<name>-challenger``).
    track : bool
        Save and register the challenger, logging the drift report with its run.
        ``False`` computes in memory only.
    reports_dir : str or Path, optional
        Where ``refresh-<as_of>/drift.{json,md}`` and ``report.html`` are written;
        ``None`` writes nothing.
    progress : callable, optional
        As in :func:`train`.

    Returns
    -------
    RefreshResult
        ``exit_code`` is what the CLI exits with: 0 (OK, WARN) or 3 (DRIFT).
    """
    from segmentkit.refresh import check_reports_dir, refresh_model

    config = load_params(params)
    step = progress or _silent
    source = resolve_events(config, events)
    if reports_dir is not None:
        # Before any work: reports written into the event log would be read as events.
        check_reports_dir(reports_dir, source)
    with step("Loading the champion"):
        reference = champion_model(config, champion)
    result = refresh_model(reference, config, source, as_of, progress=step)
    report = result.report
    markdown = report.to_markdown(
        list(reference.segmenter.segment_names_),
        list(result.challenger.model.segmenter.segment_names_),
        champion_as_of=f"{result.champion_as_of:%Y-%m-%d}",
        as_of=f"{result.as_of:%Y-%m-%d}",
        interval_days=(result.as_of - result.champion_as_of).days,
    )
    report_path = None
    if reports_dir is not None:
        out_dir = Path(reports_dir) / f"refresh-{result.as_of:%Y-%m-%d}"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "drift.json").write_text(
            json.dumps(report.to_dict(), indent=2), encoding="utf-8"
        )
        report_path = out_dir / "drift.md"
        report_path.write_text(markdown, encoding="utf-8")
    bundle_root = run = html = None
    if track:
        name = config.tracking.registered_model
        bundle_root = Path(config.tracking.models_dir) / (name if promote else f"{name}-challenger")
        run = _publish(
            config,
            result.challenger,
            bundle_root,
            promote,
            command="refresh",
            progress=step,
            extra_metrics=report.metrics(),
            documents={"drift_report": report.to_dict()},
            texts={"drift.md": markdown},
            source=source,
        )
    if report_path is not None:
        html = _write_html_report(
            reference,
            run,
            report_path.parent,
            step,
            refresh_report=report,
            title=f"Refresh {result.as_of:%Y-%m-%d} against the champion of "
            f"{result.champion_as_of:%Y-%m-%d}",
        )
    return RefreshResult(
        challenger=_train_result(result.challenger, bundle_root, run),
        report=report,
        champion_as_of=result.champion_as_of,
        as_of=result.as_of,
        report_path=report_path,
        report_html=html,
    )
