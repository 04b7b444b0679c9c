"""Small helpers behind the review notebooks (``notebooks/1.0-…`` and ``2.0-…``).

The notebooks only call the package; the few steps they need that are not a
model, a drift test or a figure live here as small functions: the segmenter's
clustering space for a UMAP map, a seeded sample of rows, segment tables, the
snapshot whose outcomes are already known, observed outcomes by segment, and
finding the latest refresh report. Nothing here reads or writes files, imports
MLflow or draws.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from segmentkit.config import TargetConfig
from segmentkit.errors import ConfigError, DataValidationError, InsufficientDataError
from segmentkit.io.events import EventLog, to_timestamp

__all__ = [
    "OutcomeWindow",
    "latest_drift_report",
    "lift_features",
    "observed_outcomes",
    "outcome_window",
    "sample_indices",
    "scaled_features",
    "segment_counts",
    "segment_outcomes",
    "segment_table",
    "status_counts",
]

_REPORT_DIR = re.compile(r"^refresh-(\d{4}-\d{2}-\d{2})$")


def scaled_features(segmenter: Any, features: Any) -> np.ndarray:
    """Place users in the space the segmenter clusters in.

    Heavy-tailed columns (``segmenter.log_columns_``) get ``sign(x) * log1p(|x|)``,
    then every column is standardized with the fitted ``center_`` and ``scale_``.
    Distances between rows here are the distances k-means used, so this is the
    input for a UMAP map of the segments.

    Parameters
    ----------
    segmenter : Segmenter
        A fitted :class:`~segmentkit.models.segmentation.Segmenter`.
    features : pandas.DataFrame or array-like of shape (n_users, n_features)
        A feature table holding the segmenter's columns (others, e.g. ``user_id``,
        are ignored), or an array with its columns in training order.

    Returns
    -------
    numpy.ndarray of shape (n_users, n_features)
        Float64 coordinates, columns in training order.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the segmenter is not fitted.
    DataValidationError
        If a training column is missing, the array has the wrong number of
        columns, or a value is not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> from segmentkit.models.segmentation import Segmenter
    >>> X = np.array([[0.0, 1.0], [0.0, 3.0], [10.0, 1.0], [10.0, 3.0]])
    >>> seg = Segmenter(k=2, n_bootstrap=0, log_features=False, random_state=0).fit(X)
    >>> scaled_features(seg, X)
    array([[-1., -1.],
           [-1.,  1.],
           [ 1., -1.],
           [ 1.,  1.]])
    """
    check_is_fitted(segmenter, ["log_columns_", "center_", "scale_"])
    names = getattr(segmenter, "feature_names_in_", None)
    if isinstance(features, pd.DataFrame) and names is not None:
        missing = [str(c) for c in names if c not in features.columns]
        if missing:
            raise DataValidationError(
                f"feature table lacks column(s) {missing} that the segmenter was fitted on"
            )
        frame = features[list(names)]
    else:
        frame = features
    try:
        values = np.asarray(frame, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataValidationError("features must be numeric") from None
    if values.ndim != 2 or values.shape[1] != segmenter.n_features_in_:
        raise DataValidationError(
            f"features have shape {values.shape}; the segmenter expects "
            f"{segmenter.n_features_in_} columns"
        )
    if not isinstance(frame, pd.DataFrame) and names is not None:
        # An array is read in training order; name its columns as sklearn expects.
        frame = pd.DataFrame(values, columns=names)
    return segmenter.scaled_features(frame if isinstance(frame, pd.DataFrame) else values)


def sample_indices(n: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Positions of a uniform random sample of rows, without replacement, in order.

    Parameters
    ----------
    n : int
        Number of rows to sample from.
    size : int or None
        Sample size; None, or a size of at least ``n``, keeps every row.
    seed : int, default 0
        Seed of :func:`numpy.random.default_rng` (same seed, same sample).

    Returns
    -------
    numpy.ndarray of int64
        Sorted row positions.

    Raises
    ------
    ConfigError
        If ``n`` is negative or ``size`` is not a positive integer.

    Examples
    --------
    >>> sample_indices(5, None)
    array([0, 1, 2, 3, 4])
    >>> len(sample_indices(1000, 10, seed=1))
    10
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ConfigError(f"n: expected a non-negative integer, got {n!r}")
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1
    ):
        raise ConfigError(f"sample size: expected a positive integer or None, got {size!r}")
    if size is None or size >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=int(size), replace=False)).astype(np.int64)


def segment_counts(segment_ids: Any, names: Sequence[str]) -> pd.DataFrame:
    """Users per segment id, as a table for :func:`segmentkit.report.plots.segment_sizes`.

    Parameters
    ----------
    segment_ids : array-like of int
        Segment id of every user (e.g. the ``segment_id`` column of a scoring).
    names : sequence of str
        Name of every segment id (e.g. ``segmenter.segment_names_``); ids without
        users get a row of size 0.

    Returns
    -------
    pandas.DataFrame
        Index ``segment`` (0 .. len(names) - 1), columns ``name, size, share``.

    Raises
    ------
    DataValidationError
        If an id is not an integer in ``0 .. len(names) - 1``.
    InsufficientDataError
        If there are no users.

    Examples
    --------
    >>> segment_counts([0, 1, 1, 1], ["Casual", "Loyal", "New"])  # doctest: +NORMALIZE_WHITESPACE
             name  size  share
    segment
    0      Casual     1   0.25
    1       Loyal     3   0.75
    2         New     0   0.00
    """
    ids = np.asarray(segment_ids).ravel()
    if ids.size == 0:
        raise InsufficientDataError("no users to count segments of")
    if not np.issubdtype(ids.dtype, np.integer):
        raise DataValidationError(f"segment ids must be integers, got dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() >= len(names):
        raise DataValidationError(
            f"segment ids must lie in 0..{len(names) - 1} (one per name), "
            f"got {int(ids.min())}..{int(ids.max())}"
        )
    sizes = np.bincount(ids, minlength=len(names)).astype(np.int64)
    return pd.DataFrame(
        {"name": [str(n) for n in names], "size": sizes, "share": sizes / ids.size},
        index=pd.RangeIndex(len(names), name="segment"),
    )


def segment_table(segmenter: Any) -> pd.DataFrame:
    """Names and descriptions of a fitted segmenter's segments, with size and stability.

    Parameters
    ----------
    segmenter : Segmenter
        A fitted :class:`~segmentkit.models.segmentation.Segmenter`.

    Returns
    -------
    pandas.DataFrame
        Index ``segment``; columns ``name, description, share, users, stability``
        (share and users at training; stability is the mean bootstrap Jaccard).
    """
    profiles = segmenter.profiles_
    return profiles[["name", "description", "share", "size", "stability"]].rename(
        columns={"size": "users"}
    )


def lift_features(segmenter: Any) -> list[str]:
    """Features whose profile lift is a ratio, for :func:`segmentkit.report.plots.profile_heatmap`.

    ``Segmenter.profiles_`` gives signed, zero-centred features such as
    ``activity_trend`` a lift that is a difference of means, not a ratio; the
    heatmap reads every lift as a ratio (log scale, negative values shown as
    n/a), so those features are left out.

    Parameters
    ----------
    segmenter : Segmenter
        A fitted :class:`~segmentkit.models.segmentation.Segmenter` fitted on a DataFrame.

    Returns
    -------
    list of str
        Training feature names in order, without the difference-lift features.
    """
    # The segmentation module keeps this list private; see the module docstring there.
    from segmentkit.models.naming import DIFFERENCE_FEATURES

    check_is_fitted(segmenter, "feature_names_in_")
    # Profiles cover the features segments were found on (constant or duplicated
    # columns, e.g. of a transaction log, are left out).
    used = getattr(segmenter, "features_used_", segmenter.feature_names_in_)
    return [str(c) for c in used if c not in DIFFERENCE_FEATURES]


@dataclass(frozen=True)
class OutcomeWindow:
    """A snapshot whose propensity outcomes are already in the log.

    Attributes
    ----------
    snapshot : datetime.datetime
        Features and scores are taken at this time.
    label_end : datetime.datetime
        Outcomes are read from events in ``[snapshot, snapshot + horizon)``, all
        before this bound (the end of the log).
    out_of_time : bool
        True when ``snapshot`` is at or after the model's ``as_of``: the model saw
        none of these outcomes. False when the window overlaps the model's own
        training labels (an in-sample view).
    """

    snapshot: dt.datetime
    label_end: dt.datetime
    out_of_time: bool


def outcome_window(
    as_of: dt.date | dt.datetime | str,
    horizon_days: int,
    data_end: dt.date | dt.datetime | str,
    model_as_of: dt.date | dt.datetime | str,
) -> OutcomeWindow:
    """Choose the snapshot at which to compare predicted and observed outcomes.

    The review snapshot ``as_of`` is used when its outcome window
    ``[as_of, as_of + horizon)`` has ended by ``data_end``; otherwise the snapshot
    one horizon earlier, ``as_of - horizon``, whose outcomes end at ``as_of``.

    Parameters
    ----------
    as_of : date-like
        Snapshot under review.
    horizon_days : int
        Longest horizon of the propensity targets.
    data_end : date-like
        End of the event log (e.g. :func:`segmentkit.io.events.default_as_of`).
    model_as_of : date-like
        The model's training snapshot (its ``metadata.as_of``).

    Returns
    -------
    OutcomeWindow

    Raises
    ------
    ConfigError
        If ``horizon_days`` is not a positive integer.
    InsufficientDataError
        If even ``as_of - horizon`` has no complete window (``data_end < as_of``).

    Examples
    --------
    >>> outcome_window("2024-12-02", 30, "2025-01-01", "2024-12-02")
    OutcomeWindow(snapshot=datetime.datetime(2024, 12, 2, 0, 0), label_end=datetime.datetime(2025, 1, 1, 0, 0), out_of_time=True)
    >>> outcome_window("2025-01-01", 30, "2025-01-01", "2025-01-01").snapshot
    datetime.datetime(2024, 12, 2, 0, 0)
    """  # noqa: E501
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or horizon_days < 1:
        raise ConfigError(f"horizon_days: expected a positive integer, got {horizon_days!r}")
    review, end, trained = to_timestamp(as_of), to_timestamp(data_end), to_timestamp(model_as_of)
    horizon = dt.timedelta(days=horizon_days)
    snapshot = review if review + horizon <= end else review - horizon
    if snapshot + horizon > end:
        raise InsufficientDataError(
            f"the log ends at {end:%Y-%m-%d}, before the snapshot {review:%Y-%m-%d}: "
            f"no {horizon_days}-day outcome window is complete"
        )
    return OutcomeWindow(snapshot=snapshot, label_end=end, out_of_time=snapshot >= trained)


def observed_outcomes(
    propensity: Mapping[str, Any], log: EventLog, window: OutcomeWindow
) -> pd.DataFrame:
    """Label every user of ``window.snapshot`` with each target's observed outcome.

    Parameters
    ----------
    propensity : mapping of str to PropensityModel
        The model's propensity models (``SegmentationModel.propensity``); each
        one's ``kind``, ``event`` and ``horizon_days`` define its outcome.
    log : EventLog
        The event log, covering ``window.label_end``.
    window : OutcomeWindow
        From :func:`outcome_window`.

    Returns
    -------
    pandas.DataFrame
        Long table ``target, user_id, label`` (0/1, or a count for count targets).

    Raises
    ------
    DataValidationError
        If a target's window ends after ``window.label_end``.
    """
    from segmentkit.models.labels import build_labels

    frames = []
    for name, model in propensity.items():
        target = TargetConfig(name=str(name), kind=model.kind, event=model.event)
        labels = build_labels(
            log, window.snapshot, target, int(model.horizon_days), as_of=window.label_end
        )
        frames.append(labels.assign(target=str(name))[["target", "user_id", "label"]])
    if not frames:
        return pd.DataFrame({"target": [], "user_id": [], "label": []})
    return pd.concat(frames, ignore_index=True)


def segment_outcomes(
    scores: pd.DataFrame,
    outcomes: pd.DataFrame,
    segment_col: str = "segment_id",
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Observed outcome and mean prediction per target and segment.

    Parameters
    ----------
    scores : pandas.DataFrame
        ``SegmentationModel.score_features`` output: ``user_id``, the segment
        column and ``p_<target>`` (or ``expected_<target>`` for counts).
    outcomes : pandas.DataFrame
        ``target, user_id, label`` from :func:`observed_outcomes`.
    segment_col : str, default "segment_id"
        Column of ``scores`` holding the segment.
    names : sequence of str, optional
        Name of each integer segment id (e.g. ``segmenter.segment_names_``): adds a
        ``name`` column after ``segment``.

    Returns
    -------
    pandas.DataFrame
        ``target, segment, [name,] users, observed, mean_predicted`` (users with
        both a score and an outcome), the table
        :func:`segmentkit.report.plots.outcome_by_segment` draws. Targets in order of first
        appearance, segments sorted.

    Raises
    ------
    DataValidationError
        If a column is missing, including a target's score column, or a segment
        id has no name.

    Examples
    --------
    >>> import pandas as pd
    >>> scores = pd.DataFrame({"user_id": ["a", "b", "c"], "segment_name": ["X", "X", "Y"],
    ...                        "p_churn": [0.2, 0.4, 0.9]})
    >>> outcomes = pd.DataFrame({"target": "churn", "user_id": ["a", "b", "c"],
    ...                          "label": [0, 1, 1]})
    >>> segment_outcomes(scores, outcomes, segment_col="segment_name")
      target segment  users  observed  mean_predicted
    0  churn       X      2       0.5             0.3
    1  churn       Y      1       1.0             0.9
    """
    for frame, columns, what in (
        (scores, ["user_id", segment_col], "scores"),
        (outcomes, ["target", "user_id", "label"], "outcomes"),
    ):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"{what}: missing column(s) {missing}; columns present: {list(frame.columns)}"
            )
    columns = ["target", "segment", "users", "observed", "mean_predicted"]
    tables = []
    for target in dict.fromkeys(outcomes["target"].astype(str)):
        score_col = next(
            (c for c in (f"p_{target}", f"expected_{target}") if c in scores.columns), None
        )
        if score_col is None:
            raise DataValidationError(
                f"scores: no column p_{target} or expected_{target} for target {target!r}"
            )
        labels = outcomes.loc[outcomes["target"].astype(str) == target, ["user_id", "label"]]
        joined = scores[["user_id", segment_col, score_col]].merge(labels, on="user_id")
        table = (
            joined.groupby(segment_col, sort=True)
            .agg(
                users=("label", "size"),
                observed=("label", "mean"),
                mean_predicted=(score_col, "mean"),
            )
            .reset_index()
            .rename(columns={segment_col: "segment"})
        )
        table.insert(0, "target", target)
        tables.append(table[columns])
    out = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)
    if names is not None:
        try:
            named = [str(names[int(s)]) for s in out["segment"]]
        except (IndexError, TypeError, ValueError):
            raise DataValidationError(
                f"names: {len(names)} names do not cover segment ids "
                f"{sorted(out['segment'].unique().tolist())}"
            ) from None
        out.insert(2, "name", named)
    return out


def latest_drift_report(paths: Iterable[str | Path]) -> Path:
    """Pick the newest refresh report among ``reports/refresh-<YYYY-MM-DD>/drift.json`` paths.

    Parameters
    ----------
    paths : iterable of str or Path
        Candidate ``drift.json`` files, e.g. ``Path("reports").glob("refresh-*/drift.json")``.
        Paths whose folder is not named ``refresh-<date>`` are ignored.

    Returns
    -------
    pathlib.Path
        The one with the latest date in its folder name.

    Raises
    ------
    InsufficientDataError
        If no path names a ``refresh-<date>`` folder.

    Examples
    --------
    >>> latest_drift_report(["reports/refresh-2025-01-01/drift.json",
    ...                      "reports/refresh-2025-02-01/drift.json",
    ...                      "reports/other/drift.json"]).as_posix()
    'reports/refresh-2025-02-01/drift.json'
    """
    dated = []
    for path in map(Path, paths):
        match = _REPORT_DIR.match(path.parent.name)
        if match is None:
            continue
        try:
            day = dt.date.fromisoformat(match.group(1))
        except ValueError:
            continue
        dated.append((day, path.as_posix(), path))
    if not dated:
        raise InsufficientDataError(
            "no drift report found (expected reports/refresh-<YYYY-MM-DD>/drift.json): "
            "run `segmentkit refresh` first, or pass the path of a drift.json"
        )
    return max(dated)[2]


def status_counts(report: Any) -> pd.DataFrame:
    """Count a drift report's judged results by test and status.

    Parameters
    ----------
    report : DriftReport
        From :func:`segmentkit.drift.run_drift_tests` or ``DriftReport.from_dict``.

    Returns
    -------
    pandas.DataFrame
        Index ``test`` (in order of appearance: ``psi``, ``wasserstein``,
        ``share_psi``, ``ari``, ``auc_drop``), columns ``OK, WARN, DRIFT``; an
        empty report gives an empty table.

    Examples
    --------
    >>> from segmentkit.drift import DriftReport, DriftResult
    >>> report = DriftReport(features=(
    ...     DriftResult("psi", "a", 0.3, 0.1, 0.25, "DRIFT"),
    ...     DriftResult("psi", "b", 0.0, 0.1, 0.25, "OK")))
    >>> status_counts(report)  # doctest: +NORMALIZE_WHITESPACE
          OK  WARN  DRIFT
    test
    psi    1     0      1
    """
    results = report.results()
    tests = list(dict.fromkeys(r.test for r in results))
    counts = {
        status: [sum(r.test == t and r.status == status for r in results) for t in tests]
        for status in ("OK", "WARN", "DRIFT")
    }
    return pd.DataFrame(counts, index=pd.Index(tests, name="test"), dtype=np.int64)
