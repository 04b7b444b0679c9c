"""Command line: ``segmentkit demo-data | features | ...``.

Each command parses its arguments, reads its section of ``params.yaml``, calls
the package's functions and writes outputs. Errors a user can cause are printed
on one line and exit with code 2 (set ``SEGMENTKIT_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from segmentkit.config import Config, load_config
from segmentkit.errors import SegmentkitError

app = typer.Typer(
    name="segmentkit",
    help="Behavioral user segmentation: features, segments, propensities, drift.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

EXIT_USAGE = 2

ParamsOption = Annotated[
    Path | None,
    typer.Option("--params", help="params.yaml (default: ./params.yaml if present)."),
]
EventsOption = Annotated[
    str | None,
    typer.Option("--events", help="Event log path or glob (default: params, else demo data)."),
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="Snapshot date YYYY-MM-DD (default: params, else day after the last event)."
    ),
]


def _config(params: Path | None) -> Config:
    if params is None and Path("params.yaml").is_file():
        params = Path("params.yaml")
    return load_config(params)


def _events_path(cfg: Config, events: str | None) -> str:
    """Return the events source: the argument, params' `data.events`, or generated demo data."""
    if events:
        return events
    if cfg.data.events:
        return cfg.data.events
    from segmentkit.io.synth import ensure_demo_log

    demo = cfg.data.demo
    typer.echo(
        f"no events given: using demo data ({demo.users} users, {demo.days} days) at {demo.path}"
    )
    return str(ensure_demo_log(demo.users, demo.days, demo.seed, demo.path))


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option("--out", help="Events file (.parquet or .csv).")],
    users: Annotated[int, typer.Option("--users", help="Number of users.")] = 20_000,
    days: Annotated[int, typer.Option("--days", help="Days the log spans.")] = 240,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Generate a demo event log with planted archetypes (truth written beside it)."""
    from segmentkit.io.synth import generate_events, write_demo_log

    log = generate_events(users, days, seed=seed)
    events_path, truth_path = write_demo_log(log, out)
    typer.echo(
        f"wrote {len(log.events):,} events of {len(log.archetypes):,} users to {events_path} "
        f"(archetypes in {truth_path}; log ends before {log.end})"
    )


@app.command("features")
def features(
    out: Annotated[Path, typer.Option("--out", help="Feature table (.parquet or .csv).")],
    events: EventsOption = None,
    as_of: AsOfOption = None,
    params: ParamsOption = None,
) -> None:
    """Build the as-of feature table, one row per user."""
    from segmentkit.features import build_features
    from segmentkit.io.events import (
        check_output_path,
        default_as_of,
        load_events,
        to_timestamp,
        write_table,
    )

    check_output_path(out)
    cfg = _config(params)
    source = _events_path(cfg, events)
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
    typer.echo(
        f"features of {len(table):,} users as of {snapshot:%Y-%m-%d} written to {out} "
        f"({report.rows_clean:,} events used; dropped: {report.duplicate_rows} duplicates, "
        f"{report.null_user_id + report.null_timestamp} with null ids/timestamps; "
        f"{report.at_or_after_as_of} at or after as_of)"
    )


@contextlib.contextmanager
def _progress(name: str) -> Iterator[None]:
    """Show a long step: a spinner on a terminal, start and end lines in logs."""
    start = time.perf_counter()
    if sys.stdout.isatty():
        from rich.console import Console

        with Console().status(f"{name} ..."):
            yield
    else:
        typer.echo(f"{name} ...")
        yield
    typer.echo(f"  {name}: done in {time.perf_counter() - start:.1f} s")


@app.command("train")
def train(
    params: ParamsOption = None,
    events: EventsOption = None,
    as_of: AsOfOption = None,
    promote: Annotated[
        bool, typer.Option("--promote", help="Give the new version the champion alias.")
    ] = False,
) -> None:
    """Train segments and propensity models, save the bundle, log and register the run."""
    from segmentkit.training import train_model

    cfg = _config(params)
    source = _events_path(cfg, events)
    result = train_model(cfg, source, as_of, progress=_progress)
    bundle_root = Path(cfg.tracking.models_dir) / cfg.tracking.registered_model
    registered = _save_and_log(cfg, result, bundle_root, promote, command="train")
    _print_training_summary(result)
    _print_registered(bundle_root, registered)


def _save_and_log(
    cfg: Config,
    result: Any,
    bundle_root: Path,
    promote: bool,
    command: str,
    extra_metrics: dict[str, float] | None = None,
    documents: dict[str, Any] | None = None,
    texts: dict[str, str] | None = None,
) -> Any:
    """Save the bundle, then log the run and register the model (the I/O edge of train/refresh)."""
    from segmentkit import tracking
    from segmentkit.bundle import live_version, save_bundle
    from segmentkit.report.training import training_figures

    with _progress("Saving the bundle"):
        save_bundle(result.model, bundle_root)
    _quiet_mlflow()
    with _progress("Logging to MLflow"):
        registered = tracking.log_training_run(
            tracking_uri=tracking.resolve_tracking_uri(cfg.tracking.tracking_uri),
            experiment=cfg.tracking.experiment,
            model_name=cfg.tracking.registered_model,
            bundle_dir=live_version(bundle_root),
            input_columns=tracking.input_schema(
                result.features[["user_id", *result.model.feature_names]]
            ),
            params=cfg.to_dict(),
            metrics={**result.metrics(), **(extra_metrics or {})},
            tables=result.tables(),
            documents={**result.documents(), **(documents or {})},
            figures=training_figures(result),
            promote_to_champion=promote,
            tags={"segmentkit.as_of": f"{result.as_of:%Y-%m-%d}", "segmentkit.command": command},
            texts=texts,
        )
    import matplotlib.pyplot as plt

    plt.close("all")
    return registered


def _quiet_mlflow() -> None:
    """Silence MLflow's INFO chatter (it configures its loggers when imported)."""
    import mlflow  # noqa: F401 - imported so that its logger setup runs first

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _print_registered(bundle_root: Path, registered: Any) -> None:
    typer.echo(
        f"bundle: {bundle_root}\nrun {registered.run_id} registered as "
        f"{registered.model_name} version {registered.model_version} "
        f"(alias {registered.alias}) at {registered.tracking_uri}"
    )


@app.command("refresh")
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
        bool, typer.Option("--promote", help="Move the champion alias to the challenger.")
    ] = False,
    reports_dir: Annotated[
        Path, typer.Option("--reports", help="Directory for the drift report.")
    ] = Path("reports"),
) -> None:
    """Compare the new snapshot with the champion, train an aligned challenger, report drift.

    Exit code 0 for OK and WARN, 3 for DRIFT, 2 for errors.
    """
    import json

    import segmentkit
    from segmentkit.errors import BundleError
    from segmentkit.refresh import refresh_model

    cfg = _config(params)
    source = _events_path(cfg, events)
    name = cfg.tracking.registered_model
    with _progress("Loading the champion"):
        if model is not None:
            champion = segmentkit.load(model, tracking_uri=cfg.tracking.tracking_uri)
        else:
            try:
                champion = segmentkit.load(
                    f"models:/{name}@champion", tracking_uri=cfg.tracking.tracking_uri
                )
            except BundleError:
                champion = segmentkit.load(Path(cfg.tracking.models_dir) / name)
    result = refresh_model(champion, cfg, source, as_of, progress=_progress)
    report = result.report
    out_dir = reports_dir / f"refresh-{result.as_of:%Y-%m-%d}"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "drift.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    markdown = report.to_markdown()
    (out_dir / "drift.md").write_text(markdown, encoding="utf-8")
    bundle_root = Path(cfg.tracking.models_dir) / (name if promote else f"{name}-challenger")
    registered = _save_and_log(
        cfg,
        result.challenger,
        bundle_root,
        promote,
        command="refresh",
        extra_metrics=report.metrics(),
        documents={"drift_report": report.to_dict()},
        texts={"drift.md": markdown},
    )
    _print_registered(bundle_root, registered)
    typer.echo(f"drift report: {out_dir / 'drift.md'}")
    typer.echo(f"drift status: {report.status}")
    raise typer.Exit(report.exit_code)


def _print_training_summary(result: Any) -> None:
    segmenter = result.model.segmenter
    profiles = segmenter.profiles_
    typer.echo(f"\n{segmenter.n_segments_} segments as of {result.as_of:%Y-%m-%d}:")
    for seg_id, (name, desc) in enumerate(
        zip(segmenter.segment_names_, segmenter.segment_descriptions_, strict=True)
    ):
        row = profiles.iloc[seg_id]
        typer.echo(f"  [{seg_id}] {row['share']:6.1%}  {name}: {desc}")
    if result.propensity is not None:
        summary = result.propensity.evaluation.summary("roc_auc")
        columns = [c for c in ("model", "recency", "rfm") if c in summary.columns]
        typer.echo("\nout-of-time ROC AUC (model vs baselines):")
        typer.echo(summary[columns].round(3).to_string())


@app.command("score")
def score(
    model: Annotated[str, typer.Option("--model", help="Bundle path or models:/NAME@ALIAS.")],
    out: Annotated[Path, typer.Option("--out", help="Scores (.parquet or .csv).")],
    events: EventsOption = None,
    as_of: AsOfOption = None,
    params: ParamsOption = None,
) -> None:
    """Score every user of an event log with a saved model."""
    import segmentkit
    from segmentkit.io.events import check_output_path, write_table

    check_output_path(out)
    cfg = _config(params)
    source = _events_path(cfg, events)
    with _progress(f"Loading {model}"):
        loaded = segmentkit.load(model, tracking_uri=cfg.tracking.tracking_uri)
    with _progress("Scoring"):
        scores = loaded.score(source, as_of=as_of)
    write_table(scores, out)
    typer.echo(f"scored {len(scores):,} users with {model}: {out}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; one-line errors, exit code 2 for errors a user can fix."""
    debug = os.environ.get("SEGMENTKIT_DEBUG") == "1"
    # The CLI's own progress lines are enough: no MLflow download progress bars.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        code = app(args=argv, standalone_mode=False)
    except SegmentkitError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except (OSError, MemoryError) as exc:
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:
        # Typer vendors its own click: recognise its usage errors by shape, not by class.
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
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
