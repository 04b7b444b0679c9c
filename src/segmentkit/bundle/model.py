"""SegmentationModel: the fitted segmenter, propensity models and metadata, ready to score."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from segmentkit.config import ColumnMap, FeatureConfig
from segmentkit.errors import DataValidationError, SegmentkitWarning
from segmentkit.features import build_features
from segmentkit.io.events import EventSource, check_input, load_events, to_timestamp
from segmentkit.scoring import (
    CHUNK_ROWS,
    frame_of_columns,
    labels_from_codes,
    map_feature_chunks,
    propensity_columns,
)

if TYPE_CHECKING:
    # Imported when first needed: it pulls in the drift tests (scikit-learn), which a
    # scoring job loads in the background while it validates the log.
    from segmentkit.bundle.metadata import BundleMetadata

# model_version of a model that was never saved as a bundle.
UNSAVED_VERSION = "unsaved"


#: How many times the training log's typical order value a scored log's may be (or a
#: fraction as small) before its revenue is taken for another unit or currency.
REVENUE_UNIT_RATIO = 30.0
#: The order-value feature whose typical value tells revenue's unit.
ORDER_VALUE = "avg_order_value"
#: Fewest buyers, on each side, whose order values are compared (the feature reference's
#: privacy floor, ``segmentkit.drift.reference.MIN_GROUP``).
FEWEST_BUYERS = 20


def _typical_positive(quantiles: Sequence[float], n: int) -> float | None:
    """Median of the values above 0, from quantiles at ``linspace(0, 1, len)`` of ``n``.

    None with fewer than :data:`FEWEST_BUYERS` values above 0 (too few to say).

    Examples
    --------
    >>> _typical_positive([0.0, 0.0, 10.0, 20.0, 30.0], 100)
    20.0
    """
    levels = np.linspace(0.0, 1.0, len(quantiles))
    values = np.asarray(quantiles, dtype=float)
    above = values > 0
    if not above.any():
        return None
    first = float(levels[int(np.argmax(above))])
    if n * (1.0 - first) < FEWEST_BUYERS:
        return None
    return float(np.interp(first + (1.0 - first) / 2.0, levels, values))


def check_revenue_unit(features: pd.DataFrame, reference: Mapping[str, Any]) -> None:
    """Refuse to score a log whose order values are of another scale than training's.

    Revenue in cents where training had units, or in another currency, makes every
    buyer a big spender: value segments and scores confidently wrong, and nothing
    else in the log looks amiss. The typical order value (the median
    ``avg_order_value`` of users with an order) of the scored users is compared with
    the training log's (see :func:`check_order_value_scale`).

    Raises
    ------
    DataValidationError
        Naming both typical values and their ratio.
    """
    if ORDER_VALUE not in features:
        return
    values = features[ORDER_VALUE].to_numpy(dtype=float, na_value=np.nan)
    values = values[np.isfinite(values) & (values > 0)]
    scored = float(np.median(values)) if values.size else None
    check_order_value_scale(scored, int(values.size), reference)


def trained_order_value(reference: Mapping[str, Any]) -> float | None:
    """Return the training log's typical order value from the stored reference (None: unknown).

    The median ``avg_order_value`` of its buyers; ``None`` for a model trained without
    revenue or with fewer than :data:`FEWEST_BUYERS` buyers (nothing to compare with).
    """
    stored = reference.get(ORDER_VALUE)
    if stored is None:
        return None
    # Read by name: importing the drift package would load scipy on the score path.
    quantiles, n = (
        (stored["quantiles"], stored["n"])
        if isinstance(stored, Mapping)
        else (stored.quantiles, stored.n)
    )
    return _typical_positive(quantiles, int(n))


def check_order_value_scale(
    scored: float | None, buyers: int, reference: Mapping[str, Any]
) -> None:
    """Compare the scored users' typical order value with the training log's (every engine).

    ``scored`` is the median ``avg_order_value`` of the ``buyers`` scored users with an
    order. The training side comes from its stored quantiles; a ratio beyond
    :data:`REVENUE_UNIT_RATIO` either way is refused. Models trained without revenue,
    and logs with fewer than :data:`FEWEST_BUYERS` buyers on either side, are not
    checked. ``reference`` holds :class:`~segmentkit.drift.reference.FeatureReference`
    objects or their JSON (a bundle opened, not loaded).

    Raises
    ------
    DataValidationError
        Naming both typical values and their ratio.
    """
    trained = trained_order_value(reference)
    if trained is None or scored is None or buyers < FEWEST_BUYERS:
        return
    ratio = scored / trained
    if 1.0 / REVENUE_UNIT_RATIO <= ratio <= REVENUE_UNIT_RATIO:
        return
    times = f"{ratio:,.0f} times" if ratio > 1 else f"1/{1 / ratio:,.0f} of"
    raise DataValidationError(
        f"revenue: the scored users' typical order value is {times} the training log's "
        f"({scored:,.2f} against {trained:,.2f}, medians of {ORDER_VALUE} among buyers): "
        "revenue in another unit or currency (cents for units)? Every value segment and "
        "score would be confidently wrong; give revenue in the training log's unit, or "
        "train on this log"
    )


#: Share of the training users whose tenure was longer than a scored log's history
#: from which scoring warns that their tenure is cut.
CUT_TENURE_SHARE = 0.05
#: Days a scored log's history may fall short of what it needs: a partial day at each
#: end (a log of whole days cut at a time of day, a first event just after midnight).
HISTORY_SLACK_DAYS = 1.0
#: The feature whose stored quantiles tell how long the training users had been active.
TENURE = "tenure_days"


def trained_start(as_of: str | None, data_quality: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return where training stood, as :func:`check_history_for_scoring` takes it.

    From a bundle's metadata, loaded or opened: the training snapshot and the training
    log's first event (``data_quality.first_event``), ``None`` where not kept.

    Examples
    --------
    >>> trained_start("2025-01-01T00:00:00", {"first_event": "2024-05-06T02:06:49"})
    {'trained_as_of': '2025-01-01T00:00:00', 'trained_first_event': '2024-05-06T02:06:49'}
    """
    return {
        "trained_as_of": as_of or None,
        "trained_first_event": (data_quality or {}).get("first_event"),
    }


def check_history_for_scoring(
    first_event: str | None,
    snapshot: dt.datetime,
    windows: Sequence[int],
    trained_as_of: str | None,
    trained_first_event: str | None,
    reference: Mapping[str, Any] | None = None,
) -> list[str]:
    """Refuse a log to score that starts too late for the model's features (shared by engines).

    Features describe a user by everything before the snapshot: an extract of the
    last two weeks makes every user look new, cuts the 90-day counts at two weeks and
    scores them all, confidently wrong, without a sign. A log that starts later than
    the training log did lacks events that happened; it is refused when it does not
    reach back as far as the longest feature window (or as far as the training
    log's start, when that is nearer the snapshot). A log that starts later but
    reaches back far enough gets a warning when :data:`CUT_TENURE_SHARE` or more of
    the training users had been active longer than it reaches (from the stored
    quantiles of ``tenure_days``, aged to the snapshot): their tenure is cut (a
    rolling export). A log that starts where the training log did, or earlier, is
    whole (a snapshot early in a young log is short, and true); bundles that do not
    record where their training log started are not checked.

    Parameters
    ----------
    first_event : str, optional
        The scored log's first event before ``snapshot`` (ISO 8601); ``None``: none.
    snapshot : datetime.datetime
        The scoring snapshot.
    windows : sequence of int
        The model's feature windows, in days.
    trained_as_of, trained_first_event : str, optional
        The training snapshot and the training log's first event (ISO 8601).
    reference : mapping, optional
        The model's feature reference: :class:`~segmentkit.drift.reference.FeatureReference`
        objects or their JSON.

    Returns
    -------
    list of str
        The warning about cut tenures, if any.

    Raises
    ------
    DataValidationError
        Naming where both logs start, how far back the log reaches, the windows, and
        how far back it must reach.

    Examples
    --------
    >>> check_history_for_scoring("2024-12-17T08:00:00", dt.datetime(2025, 1, 1), [30, 90],
    ...                           "2024-12-01T00:00:00", "2024-05-06T02:06:49")
    Traceback (most recent call last):
    ...
    segmentkit.errors.DataValidationError: the log to score starts on 2024-12-17T08:00:00, ...
    """
    if first_event is None or not trained_as_of or not trained_first_event:
        return []
    day = dt.timedelta(days=1)
    first, trained_first = to_timestamp(first_event), to_timestamp(trained_first_event)
    later = (first - trained_first) / day
    if later <= HISTORY_SLACK_DAYS:
        return []
    history = (snapshot - first) / day
    needed = min(max(windows, default=0), (snapshot - trained_first) / day)
    if history + HISTORY_SLACK_DAYS < needed:
        raise DataValidationError(
            f"the log to score starts on {first_event}, {later:.1f} days after the training "
            f"log did ({trained_first_event}), and reaches back {history:.1f} days before "
            f"as_of {snapshot:%Y-%m-%d}; the model counts behaviour over up to "
            f"{max(windows)} days (features.windows {sorted(windows)}): every user's "
            f"counts over them, tenure and recency would be cut at {history:.1f} days, and "
            "the scores confidently wrong (an extract of recent events only?); give a log "
            f"that reaches back at least {needed:.0f} days before as_of"
        )
    stored = (reference or {}).get(TENURE)
    if stored is None:
        return []
    quantiles = np.asarray(
        stored["quantiles"] if isinstance(stored, Mapping) else stored.quantiles, dtype=float
    )
    if len(quantiles) < 2:
        return []
    # A training user of tenure t is t + (snapshot - training as_of) days old at the snapshot.
    aged = (snapshot - to_timestamp(trained_as_of)) / day
    reached = history + HISTORY_SLACK_DAYS - aged
    older = 1.0 - float(np.interp(reached, quantiles, np.linspace(0.0, 1.0, len(quantiles))))
    if older < CUT_TENURE_SHARE:
        return []
    return [
        f"the log to score starts on {first_event}, {later:.1f} days after the training log "
        f"did ({trained_first_event}), and reaches back {history:.1f} days before as_of "
        f"{snapshot:%Y-%m-%d}: about {older:.0%} of the training users had been active "
        f"longer, so the tenure of such users is cut at {history:.1f} days and they are "
        "scored and segmented as newer than they are (a rolling export?); give the log from "
        "its start for their tenure"
    ]


def features_to_score(
    events: EventSource,
    columns: ColumnMap,
    feature_config: FeatureConfig,
    input_schema: Mapping[str, Any] | None,
    as_of: dt.date | dt.datetime | str | None = None,
    trained_columns: ColumnMap | None = None,
    reference: Mapping[str, Any] | None = None,
    trained_as_of: str | None = None,
    trained_first_event: str | None = None,
) -> tuple[pd.DataFrame, dt.datetime, list[str]]:
    """Validate a log against a model's input and build its features for scoring.

    Everything :meth:`SegmentationModel.score` does before the model itself is
    needed; it takes only what a bundle's metadata holds, so it can run while the
    fitted objects load.

    Parameters
    ----------
    events : str, Path, pandas.DataFrame or duckdb.DuckDBPyRelation
        The event log.
    columns : ColumnMap
        Column mapping of ``events``.
    feature_config : FeatureConfig
        The model's feature settings.
    input_schema : mapping, optional
        The model's :attr:`BundleMetadata.input_schema`.
    as_of : date-like, optional
        Snapshot (default: midnight after the last event).
    trained_columns : ColumnMap, optional
        The model's own mapping: revenue must be read as it was (its ``revenue_events``
        and ``refund_events``).
    reference : mapping, optional
        The model's feature reference (:attr:`BundleMetadata.feature_reference`, or its
        JSON): revenue must be of the training log's scale
        (:func:`check_revenue_unit`).
    trained_as_of, trained_first_event : str, optional
        The training snapshot and the training log's first event: the log must reach
        back far enough (:func:`check_history_for_scoring`).

    Returns
    -------
    features : pandas.DataFrame
        One row per user.
    snapshot : datetime.datetime
        The snapshot the features are at.
    notes : list of str
        Warnings to give (key events of the training log that never occur, tenures
        cut by a log that starts later than the training log).

    Raises
    ------
    DataValidationError
        The log breaks the data contract or lacks a column the model was trained with.
    """
    from segmentkit.io.events import check_revenue_read_as_trained, default_as_of

    check_revenue_read_as_trained(trained_columns, columns)
    cutoff = to_timestamp(as_of) if as_of is not None else None
    log = load_events(events, columns, as_of=cutoff)
    notes = check_input(log, input_schema)
    snapshot = cutoff if cutoff is not None else default_as_of(log)
    notes += check_history_for_scoring(
        log.first_event,
        snapshot,
        feature_config.windows,
        trained_as_of,
        trained_first_event,
        reference,
    )
    features = build_features(log, snapshot, feature_config)
    check_revenue_unit(features, reference or {})
    return features, snapshot, notes


def _empty_metadata() -> BundleMetadata:
    from segmentkit.bundle.metadata import BundleMetadata

    return BundleMetadata(as_of="")


@dataclass
class SegmentationModel:
    """Everything a refresh or a scoring job needs, fitted.

    Attributes
    ----------
    segmenter : Segmenter
        Fitted segmentation estimator.
    propensity : dict of str to PropensityModel
        Fitted propensity model per target name.
    feature_config : FeatureConfig
        Feature settings the models were trained with (scoring rebuilds features alike).
    columns : ColumnMap
        Column mapping of the training log (default for scoring).
    metadata : BundleMetadata
        Facts about training: as_of, params, versions, feature reference, segment shares.
    """

    segmenter: Any
    propensity: dict[str, Any]
    feature_config: FeatureConfig
    columns: ColumnMap = field(default_factory=ColumnMap)
    metadata: BundleMetadata = field(default_factory=_empty_metadata)

    @property
    def feature_names(self) -> list[str]:
        """Feature columns the segmenter expects, in order."""
        return [str(name) for name in self.segmenter.feature_names_in_]

    def score_features(self, features: pd.DataFrame, chunk_size: int = CHUNK_ROWS) -> pd.DataFrame:
        """Score a feature table: segment and every propensity column per user.

        Parameters
        ----------
        features : pandas.DataFrame
            ``user_id`` and the feature columns of :attr:`feature_names` (extra columns ignored).
        chunk_size : int
            Rows converted to a float64 matrix and scored at once, to bound memory.

        Returns
        -------
        pandas.DataFrame
            ``user_id, segment_id, segment_name`` and the propensity columns.
        """
        return frame_of_columns(self._score_columns(features, chunk_size))

    def _score_columns(
        self, features: pd.DataFrame, chunk_size: int = CHUNK_ROWS
    ) -> dict[str, np.ndarray | pd.Series]:
        """Return the columns of :meth:`score_features`, by name, in order (none copied)."""
        names = self.feature_names
        missing = [c for c in ["user_id", *names] if c not in features.columns]
        if missing:
            raise DataValidationError(
                f"feature table lacks column(s) {missing} that the model was trained on"
            )
        segmenter = self.segmenter
        segment = np.empty(len(features), dtype=np.intp)

        def assign_chunk(rows: slice, X: np.ndarray | None) -> None:
            segment[rows] = (
                segmenter.predict(features.iloc[rows][names])  # names the bad value
                if X is None
                else segmenter._assign(segmenter._transform_features(X))
            )

        # BLAS only multiplies by a handful of centroids here; its threads would keep
        # spinning after each product and take the cores from the scoring threads.
        with threadpool_limits(limits=1, user_api="blas"):
            map_feature_chunks(features, names, assign_chunk, chunk_size)
            scores = (
                propensity_columns(self.propensity, features, chunk_size) if self.propensity else {}
            )
        return {
            "user_id": features["user_id"].reset_index(drop=True),
            "segment_id": segment.astype(np.int64, copy=False),
            "segment_name": labels_from_codes(segmenter.segment_names_, segment),
            **scores,
        }

    def score(
        self,
        events: EventSource,
        as_of: dt.date | dt.datetime | str | None = None,
        columns: ColumnMap | None = None,
    ) -> pd.DataFrame:
        """Score users from an event log at ``as_of`` (default: midnight after the last event).

        The log must hold every column the model was trained with (see
        :func:`segmentkit.io.events.check_input`); a key event seen in training that
        never occurs gives a :class:`~segmentkit.errors.SegmentkitWarning`.

        Parameters
        ----------
        events : str, Path, pandas.DataFrame or duckdb.DuckDBPyRelation
            The event log.
        as_of : date-like, optional
            Snapshot: only events strictly before it are used.
        columns : ColumnMap, optional
            Column mapping of ``events`` (default: the training log's).

        Returns
        -------
        pandas.DataFrame
            One row per user, columns in this order:

            - ``user_id``: int64 when the log's ids are integers, else string;
            - ``segment_id`` (int64) and ``segment_name`` (string);
            - per propensity target, by name: ``p_<target>`` (float64 probability;
              ``expected_<target>`` for counts), ``<that>_percentile`` (int64, 0-100:
              the whole percent of scored users with a score at or below this one)
              and ``<that>_bucket`` (string: Low, Medium, High);
            - ``as_of`` (datetime64[us], the snapshot, UTC) and ``model_version``
              (string: the bundle version, ``unsaved`` for a model never saved).

        Raises
        ------
        DataValidationError
            The log breaks the data contract or lacks a column the model was trained with.

        Examples
        --------
        >>> model = load("models/segmentkit-demo")  # doctest: +SKIP
        >>> model.score("data/events.parquet", as_of="2025-01-01").head()  # doctest: +SKIP
        """
        features, snapshot, notes = features_to_score(
            events,
            columns or self.columns,
            self.feature_config,
            self.metadata.input_schema,
            as_of,
            trained_columns=self.columns,
            reference=self.metadata.feature_reference,
            **trained_start(self.metadata.as_of, self.metadata.data_quality),
        )
        for message in notes:
            warnings.warn(message, SegmentkitWarning, stacklevel=2)
        return self._scores_at(features, snapshot)

    def check_history(self, first_event: str | None, snapshot: dt.datetime) -> list[str]:
        """Check that a log to score reaches back far enough (:func:`check_history_for_scoring`).

        Returns
        -------
        list of str
            The warning about cut tenures, if any.
        """
        return check_history_for_scoring(
            first_event,
            snapshot,
            self.feature_config.windows,
            reference=self.metadata.feature_reference,
            **trained_start(self.metadata.as_of, self.metadata.data_quality),
        )

    def warm_up(self) -> None:
        """Do the once-per-process work of scoring now, on a few rows of zeros.

        The first scoring in a process lays out the boosted trees, loads the compiled
        kernels from numba's cache and starts the thread pools; a scoring job does this
        in the background while the log is validated. The model is not changed and
        later scores are the same with or without it.
        """
        # More rows than one block of the tree kernels, and a remainder: both kernels run.
        n_rows = 19
        zeros = {name: np.zeros(n_rows) for name in self.feature_names}
        self._score_columns(pd.DataFrame({"user_id": np.arange(n_rows), **zeros}))

    def _scores_at(self, features: pd.DataFrame, snapshot: dt.datetime) -> pd.DataFrame:
        """:meth:`score`'s table from the feature table at ``snapshot``."""
        columns = self._score_columns(features)
        n_rows = len(features)
        columns["as_of"] = np.full(n_rows, snapshot, dtype="datetime64[us]")
        version = self.metadata.model_version or UNSAVED_VERSION
        columns["model_version"] = labels_from_codes([version], np.zeros(n_rows, np.intp))
        return frame_of_columns(columns)
