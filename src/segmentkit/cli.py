"""Command line: ``segmentkit demo-data | features | train | score | refresh | segments``.

A thin layer over :mod:`segmentkit.api`: each command parses its arguments, calls
the function of the same name and prints a short summary. Errors a user can cause
are printed on one line and exit with code 2 (set ``SEGMENTKIT_DEBUG=1`` for the
traceback).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from segmentkit.config import ColumnMap, Config, FeatureConfig
from segmentkit.errors import ConfigError, SegmentkitError, SegmentkitWarning

if TYPE_CHECKING:
    import pandas as pd

    from segmentkit.api import TrainResult
    from segmentkit.io.events import DataQualityReport

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_DRIFT = 3
EXIT_CODES_HELP = (
    "Exit codes: 0 success (refresh: OK or WARN); 1 internal or system error; "
    "2 input error (arguments, params.yaml, event log or model); 3 refresh found DRIFT."
)

app = typer.Typer(
    name="segmentkit",
    help="Behavioral user segmentation: features, segments, propensities, drift.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    # Plain click-style help: flags read "--promote / --no-promote", with no type column.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ParamsOption = Annotated[
    Path | None,
    typer.Option("--params", help="params.yaml (default: ./params.yaml if present)."),
]
EventsOption = Annotated[
    str | None,
    typer.Option(
        "--events",
        help="Event log: a Parquet or CSV file, glob or directory (default: params, else "
        "demo data).",
    ),
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="duckdb (embedded, default) or spark (pip install 'segmentkit[spark]'; "
        "events: Parquet or CSV paths, globs, directories or URIs; output: a Parquet "
        "dataset).",
    ),
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="Snapshot date YYYY-MM-DD (default: params, else day after the last event)."
    ),
]

QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print errors only: no progress, no summary.")
]


def _version(value: bool) -> None:
    if value:
        from segmentkit.version import __version__

        typer.echo(f"segmentkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Behavioral user segmentation: features, segments, propensities, drift."""


class _Output:
    """What a command prints: progress of long steps and summary lines, unless quiet.

    On a terminal a step shows a spinner with the elapsed time; in logs (not a
    terminal) it prints a start line and a line with its duration.
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._active = False

    def echo(self, message: str = "") -> None:
        if not self.quiet:
            typer.echo(message)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.quiet or self._active:  # nested steps show as part of the outer one
            yield
            return
        self._active = True
        start = time.perf_counter()
        try:
            if sys.stdout.isatty():
                from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

                columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
                with Progress(*columns, transient=True) as bar:
                    bar.add_task(name, total=None)
                    yield
            else:
                typer.echo(f"{name} ...")
                yield
        finally:
            self._active = False
        typer.echo(f"  {name}: done in {time.perf_counter() - start:.1f} s")


def _config(params: Path | None) -> Config:
    from segmentkit.api import load_params

    return load_params(params)


def _events_path(cfg: Config, events: str | None, out: _Output | None = None) -> str:
    """Return the events source: the argument, params' `data.events`, or generated demo data."""
    from segmentkit.api import resolve_events

    return str(resolve_events(cfg, events or None, notify=(out or _Output()).echo))


@app.command("demo-data", short_help="Write a demo event log with planted archetypes.")
def demo_data(
    out: Annotated[Path, typer.Option("--out", help="Events file (.parquet or .csv).")],
    users: Annotated[int, typer.Option("--users", help="Number of users.")] = 20_000,
    days: Annotated[int, typer.Option("--days", help="Days the log spans.")] = 240,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    scenario: Annotated[
        str,
        typer.Option(
            "--scenario",
            help="Planted population: default, small_vip, new_users, seasonal, transactions "
            "or overlap.",
        ),
    ] = "default",
    lifecycle: Annotated[
        str,
        typer.Option(
            "--lifecycle",
            help="span: each archetype lives in set fractions of the span (planted "
            "calendar shifts); hazard: users arrive over the span and lapse at a constant "
            "rate (no calendar cliff).",
        ),
    ] = "span",
) -> None:
    """Generate a demo event log with planted archetypes (truth written beside it)."""
    from segmentkit.io.synth import generate_events, write_demo_log

    log = generate_events(users, days, seed=seed, scenario=scenario, lifecycle=lifecycle)
    events_path, truth_path = write_demo_log(log, out)
    typer.echo(
        f"wrote {len(log.events):,} events of {len(log.archetypes):,} users "
        f"(scenario {log.scenario}) to {events_path} "
        f"(archetypes in {truth_path}; log ends before {log.end})"
    )


@app.command("features", short_help="Write the as-of feature table.")
def features(
    out: Annotated[Path, typer.Option("--out", help="Feature table (.parquet or .csv).")],
    events: EventsOption = None,
    as_of: AsOfOption = None,
    params: ParamsOption = None,
    quiet: QuietOption = False,
    engine: EngineOption = "duckdb",
) -> None:
    """Build the as-of feature table, one row per user."""
    if _engine(engine) == "spark":
        _features_on_spark(out, events, as_of, params, _Output(quiet))
        return
    from segmentkit.features import build_features
    from segmentkit.io.events import (
        check_output_path,
        check_output_target,
        default_as_of,
        load_events,
        to_timestamp,
        write_table,
    )

    check_output_path(out)
    output = _Output(quiet)
    cfg = _config(params)
    source = _events_path(cfg, events, output)
    check_output_target(out, source)
    cutoff = as_of or cfg.data.as_of
    log = load_events(
        source,
        cfg.data.columns,
        as_of=to_timestamp(cutoff) if cutoff is not None else None,
        on_invalid=cfg.data.on_invalid,
    )
    snapshot = to_timestamp(cutoff) if cutoff is not None else default_as_of(log)
    table = build_features(log, snapshot, cfg.features)
    write_table(table, out)
    report = log.report
    output.echo(
        f"features of {len(table):,} users as of {snapshot:%Y-%m-%d} written to {out} "
        f"({_rows_used(report)})"
    )


PromoteOption = Annotated[
    bool,
    typer.Option(
        "--promote/--no-promote",
        help="Give the new version the champion alias (default: only the first version).",
    ),
]


@app.command("train", short_help="Train, save, log and register a model.", epilog=EXIT_CODES_HELP)
def train(
    params: ParamsOption = None,
    events: EventsOption = None,
    as_of: AsOfOption = None,
    promote: PromoteOption = False,
    quiet: QuietOption = False,
    engine: EngineOption = "duckdb",
    scores_out: Annotated[
        str | None,
        typer.Option(
            "--scores", help="With --engine spark: also score every user into this Parquet path."
        ),
    ] = None,
) -> None:
    """Train segments and propensity models, save the bundle, log and register the run."""
    from segmentkit import api

    output = _Output(quiet)
    if _engine(engine) == "spark":
        _train_on_spark(params, events, as_of, promote, scores_out, output)
        return
    if scores_out is not None:
        raise ConfigError("--scores is for --engine spark (locally, run `segmentkit score`)")
    cfg = _config(params)
    source = _events_path(cfg, events, output)
    result = api.train(source, cfg, as_of, promote=promote, progress=output.step)
    output.echo(_training_summary(result))
    output.echo()
    output.echo(_where_it_went(result))
    if result.report_html is not None:
        output.echo(f"html:    {result.report_html}")
    output.echo(
        "next:    segmentkit score --model "
        f"models:/{cfg.tracking.registered_model}@{result.run.alias} "
        f"{'' if events is None else f'--events {events} '}--out scores.parquet"
    )


@app.command("refresh", short_help="Drift report and aligned challenger.", epilog=EXIT_CODES_HELP)
def refresh(
    params: ParamsOption = None,
    events: EventsOption = None,
    as_of: AsOfOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Champion: bundle path or models:/NAME@ALIAS (default: registry, else models/).",
        ),
    ] = None,
    promote: Annotated[
        bool,
        typer.Option("--promote/--no-promote", help="Move the champion alias to the challenger."),
    ] = False,
    reports_dir: Annotated[
        Path, typer.Option("--reports", help="Directory for the drift report.")
    ] = Path("reports"),
    quiet: QuietOption = False,
) -> None:
    """Compare the new snapshot with the champion, train an aligned challenger, report drift.

    Exit code 0 for OK and WARN, 3 for DRIFT, 2 for errors.
    """
    from segmentkit import api

    output = _Output(quiet)
    cfg = _config(params)
    source = _events_path(cfg, events, output)
    result = api.refresh(
        source,
        cfg,
        as_of,
        champion=model,
        promote=promote,
        reports_dir=reports_dir,
        progress=output.step,
    )
    output.echo(_training_summary(result.challenger))
    output.echo()
    output.echo(_where_it_went(result.challenger, report=result.report_path))
    if result.report_html is not None:
        output.echo(f"html:    {result.report_html}")
    if result.status != "OK" and not promote:
        output.echo(f"next:    read {result.report_path} before promoting the challenger")
    elif not promote:
        output.echo("next:    segmentkit refresh --promote (the challenger becomes champion)")
    # The verdict closes the output: status, then what to do about it.
    output.echo(f"drift status: {result.status} (exit code {result.exit_code})")
    output.echo(f"recommendation: {result.report.verdict.recommendation}")
    raise typer.Exit(result.exit_code)


def format_table(frame: pd.DataFrame, indent: str = "  ") -> str:
    """Render a flat table as aligned text: one header line, numbers right, text left.

    Examples
    --------
    >>> import pandas as pd
    >>> print(format_table(pd.DataFrame({"target": ["churn"], "model": [0.8123]})))
      target  model
      churn   0.812
    """
    import pandas as pd

    cells: dict[str, list[str]] = {}
    numeric: dict[str, bool] = {}
    for column in frame.columns:
        values = frame[column]
        numeric[column] = pd.api.types.is_numeric_dtype(values)
        if pd.api.types.is_float_dtype(values):
            cells[column] = ["n/a" if pd.isna(v) else f"{v:.3f}" for v in values]
        else:
            cells[column] = [str(v) for v in values]
    widths = {c: max([len(str(c)), *map(len, cells[c])]) for c in frame.columns}

    def line(texts: dict[str, str]) -> str:
        parts = [
            texts[c].rjust(widths[c]) if numeric[c] else texts[c].ljust(widths[c])
            for c in frame.columns
        ]
        return (indent + "  ".join(parts)).rstrip()

    rows = [line({c: str(c) for c in frame.columns})]
    rows += [line({c: cells[c][i] for c in frame.columns}) for i in range(len(frame))]
    return "\n".join(rows)


def _segment_lines(table: pd.DataFrame) -> str:
    shown = table.reset_index().rename(columns={"segment": "id"})
    shown["share"] = shown["share"].map(lambda v: f"{v:6.1%}")
    shown["stability"] = shown["stability"].round(2)
    return format_table(shown[["id", "share", "users", "stability", "name", "description"]])


def _separation_note(segmenter: Any) -> str | None:
    """``note: ...`` when the segments are cuts through one continuous population."""
    from segmentkit.models.segmentation import separation_note

    note = separation_note(segmenter)
    return None if note is None else f"note: {note}"


def _training_summary(result: TrainResult) -> str:
    lines = [
        f"{len(result.segments)} segments as of {result.as_of:%Y-%m-%d}:",
        _segment_lines(result.segments),
    ]
    separation = _separation_note(result.model.segmenter)
    if separation:
        lines.append(separation)
    if len(result.evaluation):
        lines += ["", "out-of-time ROC AUC, model vs baselines:", format_table(result.compare())]
        # What the table alone would hide (a derived churn, a churn model that loses to
        # 1 - p(purchase), optimistic metrics, where the level comes from): as in the report.
        propensity = result.training.propensity
        notes = propensity.evaluation.notes if propensity is not None else ()
        if notes:
            lines += ["", "notes:", *(f"  - {note}" for note in notes)]
    else:
        # Without params.yaml the built-in defaults name no target: say so, not nothing.
        lines += [
            "",
            "no propensity model: no propensity.targets are configured (the built-in "
            "defaults, used without --params or a ./params.yaml, name none; see the README's "
            "params.yaml for churn, purchase and purchase-count targets)",
        ]
    return "\n".join(lines)


def _where_it_went(result: TrainResult, report: Path | None = None) -> str:
    """Bundle, MLflow run (and how to browse it), reports."""
    run = result.run
    lines = [f"bundle:  {result.bundle_path} (version {result.model_version})"]
    if run is not None:
        lines.append(
            f"MLflow:  run {run.run_id} registered as {run.model_name} version "
            f"{run.model_version} (alias {run.alias}) at {run.tracking_uri}"
        )
        browse = (
            f"open {run.tracking_uri}"
            if run.tracking_uri.startswith(("http://", "https://"))
            else f"mlflow ui --backend-store-uri {run.tracking_uri}"
        )
        lines.append(f"         browse it: {browse}")
    if report is not None:
        lines.append(f"report:  {report}")
    if run is not None:
        lines.append(f"reports: {run.artifact_uri}/reports (tables) and /figures of the run")
    return "\n".join(lines)


@contextlib.contextmanager
def _rare_collections() -> Iterator[None]:
    """Run the cyclic garbage collector's young collections 140 times less often.

    Loading a model imports scikit-learn, scipy and skops (a few hundred thousand
    objects), and with the default thresholds the collector walks the survivors
    again and again: measured, a fifth of the CPU of loading a bundle (0.4 s), which
    a scoring job spends while DuckDB wants both cores. The work in between makes
    few reference cycles (column arrays, not rows). The previous thresholds are
    restored afterwards.
    """
    previous = gc.get_threshold()
    gc.set_threshold(100_000, 50, 1_000)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


@app.command("score", short_help="Score users with a saved model.", epilog=EXIT_CODES_HELP)
def score(
    model: Annotated[str, typer.Option("--model", help="Bundle path or models:/NAME@ALIAS.")],
    out: Annotated[Path, typer.Option("--out", help="Scores (.parquet or .csv).")],
    events: EventsOption = None,
    as_of: AsOfOption = None,
    params: ParamsOption = None,
    quiet: QuietOption = False,
    engine: EngineOption = "duckdb",
) -> None:
    """Score every user of an event log with a saved model.

    Columns: user_id, segment_id, segment_name, per target (by name) p_<target> or
    expected_<target>, <that>_percentile (integer 0-100) and <that>_bucket, then
    as_of and model_version; the same in Parquet and CSV.
    """
    if _engine(engine) == "spark":
        _score_on_spark(model, out, events, as_of, params, _Output(quiet))
        return
    from segmentkit import api
    from segmentkit.io.events import check_output_path, check_output_target, write_table

    check_output_path(out)
    output = _Output(quiet)
    cfg = _config(params)
    # Scores of the demo log are no scores of anyone: say so even with --quiet.
    source = str(api.resolve_events(cfg, events or None, notify=_warn))
    check_output_target(out, source)
    columns = _mapped_columns(cfg)
    with _rare_collections():
        loaded, scores = api.load_and_score(
            model,
            source,
            as_of=as_of,
            tracking_uri=cfg.tracking.tracking_uri,
            progress=output.step,
            columns=columns,
        )
        with output.step(f"Writing {out}"):
            write_table(scores, out)
    snapshot = scores["as_of"].iloc[0] if len(scores) else None
    output.echo(
        f"scored {len(scores):,} users with {model} (version "
        f"{loaded.metadata.model_version or 'unsaved'}"
        f"{f', as of {snapshot:%Y-%m-%d}' if snapshot is not None else ''}): {out}"
    )


@app.command("segments", short_help="Print the segment table of a model.", epilog=EXIT_CODES_HELP)
def segments(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Bundle path or models:/NAME@ALIAS (default: registry champion, else models/).",
        ),
    ] = None,
    params: ParamsOption = None,
) -> None:
    """Print the segment table of a saved model: id, share, users, stability, name, description."""
    from segmentkit import api

    cfg = _config(params)
    loaded = api.champion_model(cfg, model, local_fallback=True)
    typer.echo(
        f"{len(loaded.segmenter.segment_names_)} segments of the model trained as of "
        f"{loaded.metadata.as_of[:10]} (version {loaded.metadata.model_version or 'unsaved'}):"
    )
    typer.echo(_segment_lines(api.segments(loaded)))
    separation = _separation_note(loaded.segmenter)
    if separation:
        typer.echo(separation)


@app.command("report", short_help="Write a self-contained HTML report.", epilog=EXIT_CODES_HELP)
def report(
    model: Annotated[str, typer.Option("--model", help="Bundle path or models:/NAME@ALIAS.")],
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
    refresh_dir: Annotated[
        Path | None,
        typer.Option("--refresh", help="A refresh's report directory (with drift.json)."),
    ] = None,
    params: ParamsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Write a self-contained HTML report of a model (and of a refresh against it)."""
    import json

    from segmentkit import api
    from segmentkit.drift import DriftReport
    from segmentkit.errors import DataValidationError
    from segmentkit.report.html import model_report, render_html

    output = _Output(quiet)
    if out.suffix.lower() not in (".html", ".htm"):
        raise DataValidationError(f"--out must end in .html, got {out}")
    cfg = _config(params)
    drift = None
    title = "Segment report"
    if refresh_dir is not None:
        path = refresh_dir / "drift.json"
        if not path.is_file():
            raise DataValidationError(f"--refresh {refresh_dir}: no drift.json in that directory")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataValidationError(f"{path} is not valid JSON: {exc}") from None
        drift = DriftReport.from_dict(data)
        title = f"Segment report with the refresh in {refresh_dir.name}"
    with output.step(f"Loading {model}"):
        loaded = api.load(model, tracking_uri=cfg.tracking.tracking_uri)
    text = render_html(model_report(loaded, title=title, facts=[("Model", model)], refresh=drift))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    output.echo(f"report: {out}")


def _engine(name: str) -> str:
    if name not in ("duckdb", "spark"):
        raise ConfigError(f"--engine: expected 'duckdb' or 'spark', got {name!r}")
    return name


def _spark_log(
    cfg: Config,
    events: str | None,
    as_of: str | None,
    output: _Output,
    *,
    columns: ColumnMap | None = None,
    min_users: int = 1,
    user_ranges: bool = False,
    feature_config: FeatureConfig | None = None,
    key_events: Sequence[str] = (),
) -> tuple[Any, Any]:
    """Start (or join) a Spark session and validate the log there: ``(sks, log)``.

    ``sks`` is :mod:`segmentkit.spark`, imported only here (pyspark is optional);
    ``columns`` defaults to params' mapping; ``user_ranges`` shuffles users into
    consecutive id ranges (scoring: each partition then holds whole scoring chunks).
    With ``as_of`` and ``feature_config`` given, each partition is cleaned and its
    features computed in one pass, and the log keeps only the features.
    ``key_events`` are counted in the validating scan (scoring checks them against
    the training log).
    """
    try:
        from segmentkit import spark as sks
    except ImportError as exc:
        raise ConfigError(f"--engine spark: {exc}") from None
    with output.step("Starting Spark"):
        session = sks.get_session()
    source = _events_path(cfg, events, output)
    derive = None
    if as_of is not None and feature_config is not None:
        from segmentkit.io.events import to_timestamp

        derive = sks.features_of_partitions(to_timestamp(as_of), feature_config)
    with output.step("Validating events"):
        log = sks.load_events(
            source,
            columns or cfg.data.columns,
            as_of=as_of,
            on_invalid=cfg.data.on_invalid,
            min_users=min_users,
            spark=session,
            user_ranges=user_ranges,
            derive=derive,
            key_events=key_events,
        )
    return sks, log


def _spark_output_source(cfg: Config, events: str | None, out: str | Path, output: _Output) -> str:
    """Resolve the events source; refuse an output dataset that would delete or join it.

    Checked before any Spark work (:func:`segmentkit.io.spark.check_spark_output_target`).
    """
    try:
        from segmentkit.io.spark import check_spark_output_target
    except ImportError as exc:
        raise ConfigError(f"--engine spark: {exc}") from None
    source = _events_path(cfg, events, output)
    check_spark_output_target(out, source)
    return source


def _features_on_spark(
    out: Path, events: str | None, as_of: str | None, params: Path | None, output: _Output
) -> None:
    """``features --engine spark``: distributed validation and features, a Parquet dataset out."""
    cfg = _config(params)
    source = _spark_output_source(cfg, events, out, output)
    sks, log = _spark_log(cfg, source, as_of or cfg.data.as_of, output, feature_config=cfg.features)
    try:
        snapshot = log.as_of or sks.default_as_of(log)
        with output.step("Features"):
            if log.derived is not None:  # computed while validating
                sks.write_parquet(sks.derived_frame(log), out)
            else:
                sks.write_parquet(sks.build_features(log, snapshot, cfg.features), out)
    finally:
        log.release()  # what the log keeps on the executors (events or features)
    report = log.report
    output.echo(
        f"features of {report.users:,} users as of {snapshot:%Y-%m-%d} written to {out} "
        f"({_rows_used(report)})"
    )


def _rows_used(report: DataQualityReport) -> str:
    """Say what the features used and what validation dropped (both engines' ``features``)."""
    return (
        f"{report.rows_clean:,} events used; dropped: {report.duplicate_rows} duplicates, "
        f"{report.null_user_id + report.null_timestamp + report.null_event} with null ids, "
        f"timestamps or events, {report.stray_timestamp} with stray dates; "
        f"{report.at_or_after_as_of} at or after as_of"
    )


def _score_on_spark(
    model: str,
    out: Path,
    events: str | None,
    as_of: str | None,
    params: Path | None,
    output: _Output,
) -> None:
    """``score --engine spark``: every user scored distributed, a Parquet dataset out."""
    from segmentkit import api
    from segmentkit.io.events import check_revenue_read_as_trained

    try:
        from segmentkit.spark.scoring import trained_key_events
    except ImportError as exc:
        raise ConfigError(f"--engine spark: {exc}") from None
    cfg = _config(params)
    source = _spark_output_source(cfg, events, out, output)
    with output.step(f"Loading {model}"):
        loaded = api.load(model, tracking_uri=cfg.tracking.tracking_uri)
    # As local scoring: params' data.columns when set, else the model's column mapping,
    # and as_of only from the command line.
    columns = _mapped_columns(cfg) or loaded.columns
    # score_spark checks this too, but only after the Spark pass over the log.
    check_revenue_read_as_trained(loaded.columns, columns)
    sks, log = _spark_log(
        cfg,
        source,
        as_of,
        output,
        columns=columns,
        user_ranges=True,
        feature_config=loaded.feature_config,
        key_events=trained_key_events(loaded),
    )
    with output.step("Scoring"):
        try:
            scores = sks.score(loaded, log, as_of=log.as_of)
            try:
                sks.write_parquet(scores, out)
            finally:
                scores.unpersist()
        finally:
            log.release()  # the events kept on the executors
    output.echo(
        f"scored {log.report.users:,} users with {model} (version "
        f"{loaded.metadata.model_version or 'unsaved'}) on Spark: {out}"
    )


def _train_on_spark(
    params: Path | None,
    events: str | None,
    as_of: str | None,
    promote: bool,
    scores_out: str | None,
    output: _Output,
) -> None:
    """``train --engine spark``: features distributed, models fitted on a stratified sample.

    Publishing is the local command's: the bundle, the MLflow run and the HTML report.
    """
    from segmentkit import api

    cfg = _config(params)
    if scores_out is not None:
        events = _spark_output_source(cfg, events, scores_out, output)
    sks, log = _spark_log(cfg, events, as_of or cfg.data.as_of, output, min_users=2)
    try:
        run = sks.train_model(
            cfg, log, log.as_of, sample_users=cfg.spark.sample_users, progress=output.step
        )
        bundle_root = Path(cfg.tracking.models_dir) / cfg.tracking.registered_model
        registered = api._publish(
            cfg, run.result, bundle_root, promote, command="train", progress=output.step
        )
        html = api._write_html_report(
            run.result.model,
            registered,
            Path("reports") / f"train-{run.result.as_of:%Y-%m-%d}",
            output.step,
        )
        result = dataclasses.replace(
            api._train_result(run.result, bundle_root, registered), report_html=html
        )
        output.echo(
            f"fitted on a stratified sample of {run.sample['sample']:,} of "
            f"{run.sample['population']:,} users"
        )
        output.echo(_training_summary(result))
        output.echo()
        output.echo(_where_it_went(result))
        output.echo(f"html:    {result.report_html}")
        if scores_out is not None:
            with output.step("Scoring every user"):
                from segmentkit.bundle import live_version

                scores = sks.score_features(
                    result.model, run.features, run.result.as_of, live_version(bundle_root).name
                )
                try:
                    sks.write_parquet(scores, scores_out)
                finally:
                    scores.unpersist()
            output.echo(f"scores of {run.sample['population']:,} users: {scores_out}")
    finally:
        log.release()  # the events kept on the executors


def _mapped_columns(cfg: Config) -> ColumnMap | None:
    """Return params' data.columns when it maps a column, else None.

    Scoring reads the log with the model's column names unless params.yaml maps its own.
    """
    return cfg.data.columns if cfg.data.columns != ColumnMap() else None


def _warn(message: str) -> None:
    """Give ``message`` as a segmentkit warning (one ``warning:`` line, even when quiet)."""
    warnings.warn(message, SegmentkitWarning, stacklevel=2)


def _show_warning(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
    """Print a segmentkit warning as one ``warning:`` line (others as Python would)."""
    if issubclass(category, SegmentkitWarning):
        typer.echo(f"warning: {message}", err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, *args[:2]))


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; one-line errors, exit code 2 for errors a user can fix."""
    debug = os.environ.get("SEGMENTKIT_DEBUG") == "1"
    # The CLI's own progress lines are enough: no MLflow download progress bars.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code = app(args=argv, standalone_mode=False)
    except SegmentkitError as exc:
        if debug:
            raise
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)  # always one line
        sys.exit(EXIT_USAGE)
    except (OSError, MemoryError) as exc:
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_INTERNAL)
    except Exception as exc:
        # Typer vendors its own click: recognise its usage errors by shape, not by class.
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `segmentkit`: show the help
            typer.echo(exc.format_message())
            sys.exit(EXIT_OK)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            typer.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(EXIT_USAGE)
        if type(exc).__name__ == "Abort":
            typer.echo("error: aborted", err=True)
            sys.exit(EXIT_USAGE)
        if debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else ""
        typer.echo(
            f"error: internal error ({type(exc).__name__}: {message}); "
            "rerun with SEGMENTKIT_DEBUG=1 for the traceback",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
