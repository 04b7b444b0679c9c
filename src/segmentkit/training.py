"""The training job as a function: events in, fitted model and aggregate reports out.

No MLflow and no file writing here: the CLI saves the bundle and logs the run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from segmentkit.bundle import SegmentationModel
from segmentkit.bundle.metadata import BundleMetadata
from segmentkit.config import Config, PropensityConfig
from segmentkit.errors import SegmentkitWarning
from segmentkit.features import build_features, feature_names
from segmentkit.io.events import (
    DataQualityReport,
    EventLog,
    EventSource,
    default_as_of,
    describe_input,
    key_events_notes,
    load_events,
    to_timestamp,
)
from segmentkit.models.evaluation import auc_standard_error
from segmentkit.parallel import in_background, usable_cores

__all__ = [
    "TrainingResult",
    "data_fingerprint",
    "evidence_notes",
    "load_snapshot",
    "make_segmenter",
    "train_model",
]

#: A reported ROC AUC whose standard error reaches this is flagged: its second decimal
#: is then not known, and neither is a difference of a few points to a baseline.
AUC_SE_NOTE = 0.01

Progress = Callable[[str], contextlib.AbstractContextManager[Any]]


@contextlib.contextmanager
def _silent(_: str) -> Iterator[None]:
    yield


@dataclass
class TrainingResult:
    """Everything one training run produced.

    ``features`` and ``segments`` are user-level and stay in memory (and in the
    bundle's scoring path); only :meth:`tables`, :meth:`metrics` and
    :meth:`documents` are aggregates fit for MLflow.
    """

    model: SegmentationModel
    report: DataQualityReport
    as_of: dt.datetime
    features: pd.DataFrame
    segments: np.ndarray
    propensity: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    #: How little the propensity evaluation saw, in words (see :func:`evidence_notes`).
    evidence: tuple[str, ...] = ()

    def tables(self) -> dict[str, pd.DataFrame]:
        """Aggregate tables: k selection, segment profiles, propensity evaluation."""
        segmenter = self.model.segmenter
        tables = {
            "segment_profiles": segmenter.profiles_.reset_index(),
        }
        if getattr(segmenter, "selection_", None) is not None:
            tables["k_selection"] = segmenter.selection_
        if self.propensity is not None:
            evaluation = self.propensity.evaluation
            tables["propensity_metrics"] = evaluation.metrics
            tables["propensity_deciles"] = evaluation.deciles
            tables["propensity_calibration"] = evaluation.calibration
            tables["propensity_snapshots"] = evaluation.snapshots
            if evaluation.segments is not None:
                tables["propensity_by_segment"] = evaluation.segments
            if evaluation.selection is not None and len(evaluation.selection):
                tables["propensity_selection"] = evaluation.selection
            if evaluation.totals is not None:
                tables["propensity_totals"] = evaluation.totals
        return tables

    def metrics(self) -> dict[str, float]:
        """Flat aggregate metrics for the tracking run."""
        segmenter = self.model.segmenter
        shares = np.bincount(self.segments, minlength=segmenter.n_segments_) / len(self.segments)
        out = {
            "data/rows_clean": self.report.rows_clean,
            "data/users": self.report.users,
            "data/duplicate_rows": self.report.duplicate_rows,
            "data/null_rows": self.report.null_user_id
            + self.report.null_timestamp
            + self.report.null_event,
            "data/stray_rows": self.report.stray_timestamp,
            "segments/k": segmenter.n_segments_,
            "segments/min_share": float(shares.min()),
        }
        # Whether k's rule held and the segments are separated groups (1) or cuts
        # through one population (0): what a reader of the run should know first.
        for key, attribute in (("k_rule_met", "k_rule_met_"), ("separated", "segments_separated_")):
            value = getattr(segmenter, attribute, None)
            if value is not None:
                out[f"segments/{key}"] = float(bool(value))
        profiles = segmenter.profiles_
        if "stability" in profiles.columns and profiles["stability"].notna().any():
            out["segments/min_stability"] = float(profiles["stability"].min())
        if self.propensity is not None:
            out.update(self.propensity.evaluation.tracking_metrics())
        out.update({f"time/{k}_s": v for k, v in self.timings.items()})
        return out

    def documents(self) -> dict[str, Any]:
        """JSON documents: data-quality report, segment names, features left out of clustering."""
        segmenter = self.model.segmenter
        notes = list(self.propensity.evaluation.notes) if self.propensity is not None else []
        return {
            "propensity_notes": notes,
            "evidence_notes": list(self.evidence),
            "data_quality": self.report.to_dict(),
            "segment_features": {
                "transaction_log": bool(getattr(segmenter, "transaction_log_", False)),
                "dropped": dict(getattr(segmenter, "dropped_features_", {})),
            },
            "segments": {
                str(i): {"name": name, "description": desc}
                for i, (name, desc) in enumerate(
                    zip(segmenter.segment_names_, segmenter.segment_descriptions_, strict=True)
                )
            },
        }


def make_segmenter(config: Config) -> Any:
    """Build an unfitted Segmenter from ``params.yaml`` → ``segmentation``."""
    from segmentkit.models.segmentation import Segmenter

    seg = config.segmentation
    return Segmenter(
        algorithm=seg.algorithm,
        k=seg.k,
        k_range=tuple(seg.k_range),
        n_bootstrap=seg.n_bootstrap,
        bootstrap_sample=seg.bootstrap_sample,
        min_stability=seg.min_stability,
        min_share=seg.min_share,
        silhouette_sample=seg.silhouette_sample,
        random_state=seg.random_state,
    )


def _fit_segmenter(
    segmenter: Any, features: pd.DataFrame, reference: Any | None
) -> tuple[Any, float]:
    """Fit ``segmenter`` on one OpenMP/BLAS thread; return it and the seconds it took."""
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        segmenter.fit(features, reference=reference)
    return segmenter, time.perf_counter() - start


def data_fingerprint(log: EventLog) -> str:
    """Order-independent fingerprint of the clean log (an aggregate hash, no rows)."""
    value = log.con.execute(
        f"SELECT count(*), bit_xor(hash(user_id, timestamp, event, revenue)) FROM {log.table}"
    ).fetchall()[0]
    return f"{value[0]}-{int(value[1] or 0):016x}"


def load_snapshot(
    config: Config,
    events: EventSource | EventLog,
    as_of: dt.date | dt.datetime | str | None = None,
    min_users: int = 1,
) -> tuple[EventLog, dt.datetime]:
    """Validate ``events`` (unless already an EventLog) and resolve the snapshot time.

    The snapshot is ``as_of``, else ``config.data.as_of``, else the midnight after the
    last event; events at or after it are excluded while loading.
    """
    requested = as_of if as_of is not None else config.data.as_of
    cutoff = to_timestamp(requested) if requested is not None else None
    if isinstance(events, EventLog):
        log = events
    else:
        log = load_events(
            events,
            config.data.columns,
            as_of=cutoff,
            on_invalid=config.data.on_invalid,
            min_users=min_users,
        )
    return log, cutoff if cutoff is not None else default_as_of(log)


def train_model(
    config: Config,
    events: EventSource | EventLog,
    as_of: dt.date | dt.datetime | str | None = None,
    *,
    reference: SegmentationModel | None = None,
    progress: Progress = _silent,
    extra_snapshots: Sequence[dt.datetime] = (),
) -> TrainingResult:
    """Load, build features, fit the Segmenter and every propensity target.

    Parameters
    ----------
    config : Config
        All of ``params.yaml``.
    events : event source or EventLog
        The log; validated here unless it already is an ``EventLog``.
    as_of : date-like, optional
        Snapshot; default ``config.data.as_of``, else the midnight after the last event.
    reference : SegmentationModel, optional
        A previous model (the champion) whose segment ids the new segments align to.
    progress : callable
        ``progress(step_name)`` returns a context manager wrapping each long step.
    extra_snapshots : sequence of datetime, optional
        Snapshot times whose feature tables the caller needs too (a refresh's drift
        checks): built in the propensity models' pass over the log and returned in
        ``result.propensity.extra_features`` (not built when there is no target).

    Returns
    -------
    TrainingResult
    """
    from segmentkit.drift import build_feature_reference
    from segmentkit.models.labels import check_history
    from segmentkit.models.propensity_training import check_target_events, fit_propensity

    timings: dict[str, float] = {}

    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        start = time.perf_counter()
        with progress(name):
            yield
        timings[name.split(" ")[0].lower()] = time.perf_counter() - start

    with step("Loading and validating events"):
        log, snapshot = load_snapshot(config, events, as_of, min_users=2)
    # A log without a target's event, or too short for the targets, is refused before
    # segmentation's work.
    check_target_events(log, config.propensity.targets)
    check_history(snapshot, log.first_event, config.propensity)
    with step("Features as of " + f"{snapshot:%Y-%m-%d}"):
        features = build_features(log, snapshot, config.features)
    names = feature_names(config.features)
    segmenter = make_segmenter(config)
    reference_segmenter = reference.segmenter if reference is not None else None
    n_threads = config.propensity.n_threads
    # With fits side by side (one thread each), segmentation runs single-threaded on a
    # pool worker beside the propensity models (which need nothing from it): it fills
    # the core their single-threaded stretches leave idle, and their fits queue on the
    # other worker meanwhile. Otherwise the fits use every core: it runs first, as is.
    alongside = (
        bool(config.propensity.targets)
        and n_threads is not None
        and 2 * n_threads <= usable_cores()
    )
    started: list[Future[tuple[Any, float]]] = []

    def start_segmentation() -> None:
        # Once the propensity step's snapshot features are built: beside the fits, not
        # beside the one-pass feature build (at 1M users the two peaks together took
        # the training's peak RSS from 2.5 to 3.2 GiB).
        if not started:
            started.append(
                in_background(_fit_segmenter, segmenter, features[names], reference_segmenter)
            )

    with contextlib.ExitStack() as scope:
        if alongside:
            # BLAS threads are one process-wide setting that every fit's and the
            # segmentation's threadpool_limits set and then restore: held at n_threads
            # here, no interleaving of those leaves the main thread's BLAS work (BG/NBD
            # inputs, metrics) on a thread count that depends on scheduling.
            scope.enter_context(threadpool_limits(limits=n_threads, user_api="blas"))
        else:
            with step("Segmentation"):
                segmenter.fit(features[names], reference=reference_segmenter)
        propensity = None
        try:
            if config.propensity.targets:
                with step("Propensity models"):
                    propensity = fit_propensity(
                        log,
                        snapshot,
                        config.features,
                        config.propensity,
                        n_threads=n_threads,
                        as_of_features=features,
                        extra_snapshots=extra_snapshots,
                        after_snapshot_features=start_segmentation if alongside else None,
                    )
        except Exception:
            if alongside:  # segmentation's error, if any, as when it ran first
                start_segmentation()
                started[0].result()
            raise
        if alongside:
            start_segmentation()  # in case the propensity step never built features
            # Timed as the wait it adds; its own run time (beside the propensity models)
            # as segmentation_alongside.
            with step("Segmentation"):
                segmenter, timings["segmentation_alongside"] = started[0].result()
    segments = np.asarray(segmenter.labels_, dtype=np.int64)
    shares = np.bincount(segments, minlength=segmenter.n_segments_) / len(segments)
    metadata = BundleMetadata(
        as_of=snapshot.isoformat(),
        params=config.to_dict(),
        data_fingerprint=data_fingerprint(log),
        data_quality=log.report.to_dict(),
        feature_names=tuple(names),
        feature_reference=build_feature_reference(features[names], n_bins=config.drift.n_bins),
        segment_names=tuple(segmenter.segment_names_),
        segment_shares={str(i): float(s) for i, s in enumerate(shares)},
        propensity_evaluation=(
            tuple(
                propensity.evaluation.metrics.query("model == 'model'")
                .drop(columns=["model"])
                .to_dict("records")
            )
            if propensity is not None
            else ()
        ),
        propensity_choice=dict(propensity.choice) if propensity is not None else {},
        propensity_deciles=(
            tuple(propensity.evaluation.deciles.to_dict("records"))
            if propensity is not None
            else ()
        ),
        propensity_calibration=(
            tuple(propensity.evaluation.calibration.to_dict("records"))
            if propensity is not None
            else ()
        ),
        input_schema=describe_input(log, config.features.key_events),
    )
    model = SegmentationModel(
        segmenter=segmenter,
        propensity=dict(propensity.models) if propensity is not None else {},
        feature_config=config.features,
        columns=config.data.columns,
        metadata=metadata,
    )
    evidence: tuple[str, ...] = ()
    if propensity is not None:
        evaluation = propensity.evaluation
        evidence = tuple(
            evidence_notes(evaluation.snapshots, evaluation.metrics, config.propensity)
        )
        for note in evidence:
            warnings.warn(note, SegmentkitWarning, stacklevel=2)
    notes = [
        *key_events_notes(log, config.features.key_events),
        *window_notes(config.features.windows, log.first_event, snapshot),
        *heavy_user_notes(features),
    ]
    for note in notes:
        warnings.warn(note, SegmentkitWarning, stacklevel=2)
    return TrainingResult(
        model=model,
        report=log.report,
        as_of=snapshot,
        features=features,
        segments=segments,
        propensity=propensity,
        timings=timings,
        evidence=evidence,
    )


def window_notes(
    windows: Sequence[int], first_event: str | None, snapshot: dt.datetime
) -> list[str]:
    """Say which feature windows reach back before the log's first event.

    Such a window holds every event of every user: its counts repeat the totals, and
    the segments see no recent behaviour (a 9-day log, such as Taobao's, with the
    default windows of 30 and 90 days).

    Examples
    --------
    >>> import datetime as dt
    >>> window_notes([7, 30, 90], "2017-11-25T00:00:00", dt.datetime(2017, 12, 4))[0][:59]
    'features.windows [30, 90] reach back before the first event'
    >>> window_notes([7], "2017-11-25T00:00:00", dt.datetime(2017, 12, 4))
    []
    """
    if first_event is None:
        return []
    history = (snapshot - dt.datetime.fromisoformat(first_event)) / dt.timedelta(days=1)
    longer = [w for w in windows if w > history]
    if not longer:
        return []
    return [
        f"features.windows {longer} reach back before the first event ({history:.1f} days "
        "before as_of): their features count every event of every user, as the totals do; "
        "windows within the log (e.g. "
        f"{sorted({max(1, int(history // 4)), max(1, int(history // 2))})}) tell recent "
        "behaviour apart"
    ]


#: Share of all events above which one user id is said to dominate the log...
HEAVY_USER_SHARE = 0.05
#: ...when it also holds this many times the events of the median user.
HEAVY_USER_RATIO = 100


def heavy_user_notes(features: pd.DataFrame) -> list[str]:
    """Name user ids that hold a large share of the log's events, far beyond any person.

    A placeholder id for anonymous traffic (``0``, ``guest``), a bot or a shared
    account makes one "user" of many: it stays in every feature, segment and label,
    and its activity lifts the averages that segment names are told against. Said,
    not refused: a very heavy real user is possible. Ids with at least
    :data:`HEAVY_USER_SHARE` of the events and :data:`HEAVY_USER_RATIO` times the
    median user's, the three heaviest.

    Examples
    --------
    >>> table = pd.DataFrame({"user_id": ["0", *map(str, range(1, 200))],
    ...                       "events_total": [50_000] + [10] * 199})
    >>> heavy_user_notes(table)[0][:70]
    "user id '0' holds 96.2% of the training users' events (50,000, 5,000x "
    """
    if "events_total" not in features or len(features) < 2:
        return []
    events = features["events_total"].to_numpy(dtype=float)
    total, median = float(events.sum()), float(np.median(events))
    if total <= 0:
        return []
    heavy = (events >= HEAVY_USER_SHARE * total) & (events >= HEAVY_USER_RATIO * max(median, 1.0))
    top = np.argsort(-events[heavy], kind="stable")[:3]
    ids, counts = features["user_id"].to_numpy()[heavy][top], events[heavy][top]
    return [
        f"user id {str(user)!r} holds {count / total:.1%} of the training users' events "
        f"({count:,.0f}, {count / max(median, 1.0):,.0f}x the median user's {median:,.0f}): a "
        "placeholder id for anonymous traffic, a bot or a shared account? It is one user in "
        "every feature, segment and label, and lifts the averages segments are described "
        "against; if it stands for many people, give its rows a null user id (they are then "
        "dropped and counted)"
        for user, count in zip(ids, counts, strict=True)
    ]


def evidence_notes(
    snapshots: pd.DataFrame, metrics: pd.DataFrame, config: PropensityConfig
) -> list[str]:
    """Say, per target, when the propensity evaluation rests on little data.

    Parameters
    ----------
    snapshots : pandas.DataFrame
        ``target, role, snapshot, users, positives`` of every snapshot used
        (:attr:`PropensityEvaluation.snapshots`).
    metrics : pandas.DataFrame
        Tidy ``target, model, metric, value`` (the chosen model's rows as ``model``).
    config : PropensityConfig
        ``n_snapshots``, the number of training snapshots asked for.

    Returns
    -------
    list of str
        A sentence when a short log left fewer training snapshots than
        ``n_snapshots`` (out-of-time backtest or final model), and one when the
        reported out-of-time ROC AUC has a standard error of at least
        :data:`AUC_SE_NOTE` (few users or few positives).

    Examples
    --------
    >>> snaps = pd.DataFrame({"target": ["buy"] * 3, "role": ["backtest", "evaluation", "final"],
    ...     "snapshot": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-02-01"]),
    ...     "users": [250, 300, 300], "positives": [40, 43, 43]})
    >>> auc = pd.DataFrame({"target": ["buy"], "model": ["model"], "metric": ["roc_auc"],
    ...     "value": [0.8]})
    >>> first, second = evidence_notes(snaps, auc, PropensityConfig(n_snapshots=3))
    >>> first[:64]
    "target 'buy': the log is too short for the 3 training snapshots "
    >>> second[second.index("from"):]  # doctest: +ELLIPSIS
    'from 300 users (43 positives) has a standard error of about 0.042; ...'
    """
    notes = []
    for target, rows in snapshots.groupby("target", sort=False):
        backtest = rows[rows["role"] == "backtest"]
        final = rows[rows["role"] == "final"]
        if min(len(backtest), len(final)) < config.n_snapshots:
            notes.append(
                f"target {target!r}: the log is too short for the {config.n_snapshots} training "
                f"snapshots asked for (propensity.n_snapshots): the out-of-time evaluation "
                f"trained on {len(backtest)} ({int(backtest['users'].sum())} users, "
                f"{int(backtest['positives'].sum())} positives), the final model on "
                f"{len(final)} ({int(final['users'].sum())} users, "
                f"{int(final['positives'].sum())} positives)"
            )
        evaluation = rows[rows["role"] == "evaluation"]
        auc = metrics[
            (metrics["target"] == target)
            & (metrics["model"] == "model")
            & (metrics["metric"] == "roc_auc")
        ]["value"]
        if len(evaluation) != 1 or len(auc) != 1 or not np.isfinite(auc.iloc[0]):
            continue
        users, positives = int(evaluation["users"].iloc[0]), int(evaluation["positives"].iloc[0])
        error = auc_standard_error(float(auc.iloc[0]), positives, users - positives)
        if error >= AUC_SE_NOTE:
            notes.append(
                f"target {target!r}: out-of-time ROC AUC {auc.iloc[0]:.3f} from {users} users "
                f"({positives} positives) has a standard error of about {error:.3f}; "
                "differences to the baselines of that size are noise"
            )
    return notes
