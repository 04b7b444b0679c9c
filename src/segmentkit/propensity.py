"""Propensity models: labels from the log, calibrated models, out-of-time evaluation, scores.

A target asks a question about the ``horizon`` after a snapshot time ``T0``:

``inactivity``
    churn: 1 when the user has no event at all in ``[T0, T0 + horizon)``.
``event``
    conversion: 1 when the named event occurs in ``[T0, T0 + horizon)``.
``count``
    the number of the named event in ``[T0, T0 + horizon)``.

The users of a snapshot are those with at least one event before ``T0`` (the rows
of :func:`segmentkit.features.build_features` at ``T0``). Every query is bounded
by ``as_of``: no event at or after it is ever read, whatever the log holds.

Layout in time (``h`` = horizon, ``s`` = snapshot step, ``n`` = snapshots)::

    evaluation snapshot  T_eval = as_of - h                 labels end at as_of
    backtest training    T_eval - h, T_eval - h - s, ...    labels end by T_eval
    final training       as_of - h, as_of - h - s, ...      (n snapshots each)

Each candidate family is fitted on the backtest snapshots and judged on the
evaluation snapshot (log loss for probabilities, Poisson deviance for counts);
the winner is refitted on the final snapshots. Baselines (recency alone and the
RFM quintile score) go through exactly the same fitting and calibration.

Calibration (see :class:`PropensityModel`) is out of time too: a copy of the
model fitted on all but the latest training snapshot predicts the latest one,
and a Platt (or isotonic) map of its raw scores onto the observed labels is
applied to the model refitted on all snapshots. Class imbalance is handled by
``class_weight="balanced"`` in the candidates; calibration restores probabilities.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression, PoissonRegressor
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    mean_poisson_deviance,
    roc_auc_score,
)
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from segmentkit.config import FeatureConfig, PropensityConfig, TargetConfig
from segmentkit.data import EventLog, to_timestamp
from segmentkit.errors import ConfigError, DataValidationError, InsufficientDataError
from segmentkit.features import build_features
from segmentkit.hgb_runtime import raw_predict as hgb_raw_predict
from segmentkit.parallel import thread_map

__all__ = [
    "BUCKETS",
    "CANDIDATES",
    "CHUNK_ROWS",
    "FAMILIES",
    "PropensityEvaluation",
    "PropensityModel",
    "PropensityResult",
    "SnapshotPlan",
    "build_labels",
    "build_training_set",
    "feature_matrix",
    "fit_propensity",
    "labels_from_codes",
    "map_feature_chunks",
    "percentile_rank",
    "plan_snapshots",
    "row_chunks",
    "score_propensity",
]

FAMILIES: tuple[str, ...] = ("logistic", "hgb", "recency", "rfm")
"""Model families a :class:`PropensityModel` can hold."""
CANDIDATES: tuple[str, ...] = ("logistic", "hgb")
"""Families competing for a target; the others are baselines."""
BASELINES: tuple[str, ...] = ("recency", "rfm")
BUCKETS: tuple[str, ...] = ("Low", "Medium", "High")
# Rows scored at once: small enough to reuse memory, large enough to amortize calls
# (and not a power of two: column-major chunks would then alias in the CPU caches).
CHUNK_ROWS = 50_000
_KINDS = ("inactivity", "event", "count")
# Features the baselines read: R, F, M.
_RECENCY = "recency_days"
_FREQUENCY = "active_days_total"
_MONETARY = "revenue_total"
_N_BINS = 10
_CALIBRATION_COLUMNS = [
    "target",
    "model",
    "bin",
    "lower",
    "upper",
    "users",
    "mean_predicted",
    "observed",
]


# ---------------------------------------------------------------------------
# Snapshots and labels
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotPlan:
    """Snapshot times of one target, latest first.

    Attributes
    ----------
    horizon_days : int
        Label window length.
    evaluation : datetime.datetime
        ``T_eval = as_of - horizon``; its labels end at ``as_of``.
    backtest : tuple of datetime.datetime
        Training snapshots of the out-of-time evaluation; labels end by ``T_eval``.
    final : tuple of datetime.datetime
        Training snapshots of the final model; labels end by ``as_of``.
    """

    horizon_days: int
    evaluation: dt.datetime
    backtest: tuple[dt.datetime, ...]
    final: tuple[dt.datetime, ...]


def plan_snapshots(
    as_of: dt.date | dt.datetime | str,
    horizon_days: int,
    n_snapshots: int,
    step_days: int,
    first_event: dt.datetime | None = None,
) -> SnapshotPlan:
    """Lay out the evaluation, backtest and final training snapshots.

    Snapshots at or before ``first_event`` (no user would have features) are left
    out; the rest are kept, so a short log trains on fewer snapshots.

    Parameters
    ----------
    as_of : date-like
        Scoring time; every label window ends at or before it.
    horizon_days, n_snapshots, step_days : int
        From :class:`segmentkit.config.PropensityConfig` (or the target's horizon).
    first_event : datetime.datetime, optional
        Time of the earliest event in the log.

    Returns
    -------
    SnapshotPlan

    Raises
    ------
    InsufficientDataError
        If not even one backtest training snapshot falls after ``first_event``.

    Examples
    --------
    >>> plan = plan_snapshots("2025-01-01", 30, 2, 30)
    >>> [t.date().isoformat() for t in plan.final]
    ['2024-12-02', '2024-11-02']
    >>> plan.evaluation.date().isoformat(), [t.date().isoformat() for t in plan.backtest]
    ('2024-12-02', ['2024-11-02', '2024-10-03'])
    """
    if horizon_days <= 0 or n_snapshots <= 0 or step_days <= 0:
        raise ConfigError(
            "propensity: horizon_days, n_snapshots and snapshot_step_days must be positive, "
            f"got {horizon_days}, {n_snapshots}, {step_days}"
        )
    end = to_timestamp(as_of)
    h = dt.timedelta(days=horizon_days)
    step = dt.timedelta(days=step_days)
    evaluation = end - h
    final = [end - h - k * step for k in range(n_snapshots)]
    backtest = [evaluation - h - k * step for k in range(n_snapshots)]
    if first_event is not None:
        final = [t for t in final if t > first_event]
        backtest = [t for t in backtest if t > first_event]
        if not backtest:
            raise InsufficientDataError(
                f"the event log is too short for a {horizon_days}-day horizon: out-of-time "
                f"evaluation needs events before {(evaluation - h).isoformat(sep=' ')} "
                f"(as_of {end.isoformat(sep=' ')} minus twice the horizon) to train on and "
                f"[{evaluation.isoformat(sep=' ')}, {end.isoformat(sep=' ')}) to evaluate on, "
                f"but the first event is at {first_event.isoformat(sep=' ')}"
            )
    return SnapshotPlan(horizon_days, evaluation, tuple(backtest), tuple(final))


def _ts(value: dt.datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _slug(name: str) -> str:
    slug = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    return slug or "event"


def _check_target(target: TargetConfig) -> None:
    if target.kind not in _KINDS:
        raise ConfigError(
            f"propensity.targets.{target.name}: kind must be one of {list(_KINDS)}, "
            f"got {target.kind!r}"
        )
    if target.kind in ("event", "count") and not target.event:
        raise ConfigError(
            f"propensity.targets.{target.name}: kind {target.kind!r} needs an `event` name"
        )
    if target.horizon_days is not None and target.horizon_days <= 0:
        raise ConfigError(
            f"propensity.targets.{target.name}: horizon_days must be positive, "
            f"got {target.horizon_days}"
        )


def build_labels(
    log: EventLog,
    t0: dt.date | dt.datetime | str,
    target: TargetConfig,
    horizon_days: int,
    as_of: dt.date | dt.datetime | str | None = None,
) -> pd.DataFrame:
    """Label every user with an event before ``t0`` from events in ``[t0, t0 + horizon)``.

    Parameters
    ----------
    log : EventLog
        Clean log from :func:`segmentkit.data.load_events`.
    t0 : date-like
        Snapshot time.
    target : TargetConfig
        What to label (``inactivity``, ``event`` or ``count``).
    horizon_days : int
        Length of the label window.
    as_of : date-like, optional
        Upper bound of what may be read (defaults to ``t0 + horizon``); the window
        must end at or before it.

    Returns
    -------
    pandas.DataFrame
        ``user_id`` and ``label`` (int64), sorted by ``user_id``.

    Raises
    ------
    DataValidationError
        If the window ends after ``as_of`` or after the log's own cut-off.

    Examples
    --------
    >>> import pandas as pd
    >>> from segmentkit.data import load_events
    >>> log = load_events(pd.DataFrame({
    ...     "user_id": ["a", "b", "b"],
    ...     "timestamp": ["2024-01-01", "2024-01-01", "2024-01-05"],
    ...     "event": ["view", "view", "purchase"]}))
    >>> churn = TargetConfig(name="churn", kind="inactivity")
    >>> build_labels(log, "2024-01-03", churn, 7).to_dict("list")
    {'user_id': ['a', 'b'], 'label': [1, 0]}
    """
    _check_target(target)
    start = to_timestamp(t0)
    end = start + dt.timedelta(days=horizon_days)
    bound = to_timestamp(as_of) if as_of is not None else end
    if end > bound:
        raise DataValidationError(
            f"label window [{start}, {end}) ends after as_of {bound}: its labels are not known yet"
        )
    if log.as_of is not None and end > log.as_of:
        raise DataValidationError(
            f"label window [{start}, {end}) ends after the cut-off {log.as_of} the log was "
            "loaded with: events in between are missing"
        )
    in_window = f"timestamp >= {_ts(start)}"
    if target.kind == "inactivity":
        label = f"CAST(count(*) FILTER (WHERE {in_window}) = 0 AS BIGINT)"
    else:
        hit = f"{in_window} AND event = {_literal(str(target.event))}"
        count = f"count(*) FILTER (WHERE {hit})"
        label = count if target.kind == "count" else f"CAST({count} > 0 AS BIGINT)"
    frame = log.con.execute(
        f"""
        SELECT user_id, {label} AS label
        FROM {log.table}
        WHERE timestamp < {_ts(end)} AND timestamp < {_ts(bound)}
        GROUP BY user_id
        HAVING min(timestamp) < {_ts(start)}
        ORDER BY user_id
        """
    ).df()
    frame["label"] = frame["label"].astype(np.int64)
    return frame.reset_index(drop=True)


def build_training_set(
    log: EventLog,
    snapshots: Sequence[dt.datetime],
    target: TargetConfig,
    horizon_days: int,
    feature_config: FeatureConfig | None = None,
    as_of: dt.date | dt.datetime | str | None = None,
    *,
    _cache: dict[dt.datetime, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Stack features and labels of several snapshots.

    Parameters
    ----------
    log : EventLog
        Clean log.
    snapshots : sequence of datetime.datetime
        Snapshot times ``T0``.
    target : TargetConfig
        What to label.
    horizon_days : int
        Label window length.
    feature_config : FeatureConfig, optional
        Passed to :func:`segmentkit.features.build_features`.
    as_of : date-like, optional
        Upper bound of what may be read.

    Returns
    -------
    pandas.DataFrame
        ``snapshot`` (the ``T0``), ``user_id``, the feature columns and ``label``,
        ordered by snapshot (latest first) then ``user_id``.
    """
    frames = []
    for t0 in snapshots:
        t0 = to_timestamp(t0)
        if _cache is not None and t0 in _cache:
            features = _cache[t0]
        else:
            features = build_features(log, t0, feature_config)
            if _cache is not None:
                _cache[t0] = features
        labels = build_labels(log, t0, target, horizon_days, as_of)
        frame = features.merge(labels, on="user_id", how="inner", validate="one_to_one")
        if len(frame) != len(features):  # pragma: no cover - same user definition both sides
            raise DataValidationError(f"labels and features at {t0} cover different users")
        frame.insert(0, "snapshot", pd.Timestamp(t0))
        frames.append(frame)
    if not frames:
        raise InsufficientDataError("no snapshot to build a training set from")
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


def _monotonic(names: Sequence[str], kind: str, event: str | None) -> list[int]:
    """Monotonic constraints per feature, only where the direction is known.

    Recent activity counts (``active_days_*d``, ``events_*d``, ``sessions_*d``) lower
    churn and raise conversion; recency raises churn and lowers conversion; the
    count of the target's own event raises its conversion. Everything else
    (tenure, totals, revenue, trend, gaps) is left free.
    """
    sign = 1 if kind == "inactivity" else -1
    windowed = re.compile(r"^(active_days|events|sessions)_\d+d$")
    own = f"{_slug(event)}_events" if event else None
    constraints = []
    for name in names:
        if name == _RECENCY:
            constraints.append(sign)
        elif windowed.match(name):
            constraints.append(-sign)
        elif kind != "inactivity" and name == own:
            constraints.append(1)
        else:
            constraints.append(0)
    return constraints


def _base_estimator(
    family: str, kind: str, event: str | None, names: Sequence[str] | None, random_state: Any
) -> BaseEstimator:
    """Return the unfitted estimator of a family (inputs are numpy arrays)."""
    classify = kind != "count"
    if family in ("hgb", "recency", "rfm"):
        needed = {"hgb": [], "recency": [_RECENCY], "rfm": [_RECENCY, _FREQUENCY, _MONETARY]}
        if names is None:
            raise ValueError(
                f"PropensityModel(family={family!r}) needs X as a DataFrame with named feature "
                "columns"
            )
        missing = [n for n in needed[family] if n not in names]
        if missing:
            raise DataValidationError(
                f"PropensityModel(family={family!r}) needs feature column(s) {missing}"
            )
    if family == "logistic":
        # arcsinh is a signed log: ~x near 0, ~sign(x) * ln(2|x|) in the tails.
        model = (
            LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
            if classify
            else PoissonRegressor(alpha=1e-3, max_iter=1000)
        )
        return Pipeline(
            [
                ("signed_log", FunctionTransformer(np.arcsinh)),
                ("scale", StandardScaler()),
                ("model", model),
            ]
        )
    if family == "hgb":
        common = {
            # Scoring cost grows with trees x depth. Depth-5 trees at rate 0.2 match the
            # out-of-time accuracy of unbounded (depth ~17) trees at 0.1 on the demo with
            # about half the trees, and bounded depth lets segmentkit.hgb_runtime score
            # them branch-free (benchmarks/scoring.py).
            "learning_rate": 0.2,
            "max_iter": 200,
            "max_depth": 5,
            "max_leaf_nodes": 31,
            "min_samples_leaf": 40,
            "l2_regularization": 1.0,
            "monotonic_cst": _monotonic(names, kind, event),
            "early_stopping": True,
            "validation_fraction": 0.15,
            # scikit-learn's default; every tree kept after the best one costs scoring time.
            "n_iter_no_change": 10,
            "random_state": random_state,
        }
        if classify:
            return HistGradientBoostingClassifier(class_weight="balanced", **common)
        return HistGradientBoostingRegressor(loss="poisson", **common)
    final = LogisticRegression(max_iter=1000) if classify else PoissonRegressor(alpha=0.0)
    if family == "recency":
        select = ColumnTransformer(
            [("recency", FunctionTransformer(np.log1p), [names.index(_RECENCY)])]
        )
        return Pipeline([("select", select), ("scale", StandardScaler()), ("model", final)])
    if family == "rfm":
        # Input is the summed R, F, M quintile score (see PropensityModel._design).
        return final
    raise ConfigError(f"PropensityModel: family must be one of {list(FAMILIES)}, got {family!r}")


def _raw_score(estimator: BaseEstimator, X: np.ndarray, classify: bool) -> np.ndarray:
    # Boosted trees: the same numbers as decision_function / predict (log link for
    # Poisson), several times faster on large X.
    if isinstance(estimator, HistGradientBoostingClassifier):
        return hgb_raw_predict(estimator, X)
    if isinstance(estimator, HistGradientBoostingRegressor) and estimator.loss == "poisson":
        return np.exp(hgb_raw_predict(estimator, X))
    if classify:
        return np.asarray(estimator.decision_function(X), dtype=float)
    return np.asarray(estimator.predict(X), dtype=float)


def _quintile_edges(column: np.ndarray) -> np.ndarray:
    return np.quantile(column, [0.2, 0.4, 0.6, 0.8])


def _rfm_score(X: np.ndarray, columns: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Return the summed quintile score R (recent is high) + F + M, each 0..4, as a column."""
    recency = edges.shape[1] - np.searchsorted(edges[0], X[:, columns[0]], side="right")
    frequency = np.searchsorted(edges[1], X[:, columns[1]], side="right")
    monetary = np.searchsorted(edges[2], X[:, columns[2]], side="right")
    return (recency + frequency + monetary).astype(float).reshape(-1, 1)


class PropensityModel(BaseEstimator):
    """Calibrated propensity model of one target.

    Parameters
    ----------
    target : str
        Target name; output columns are ``p_<target>`` or ``expected_<target>``.
    kind : {"inactivity", "event", "count"}
        Binary targets (probabilities) or a count (expected number).
    event : str, optional
        Event name of ``event`` and ``count`` targets (for documentation and the
        monotonic constraint on its own count feature).
    horizon_days : int
        Label window the model was trained for.
    family : {"logistic", "hgb", "recency", "rfm"}
        ``logistic``: arcsinh (signed log) of every feature, standardized, then an
        L2-regularized logistic regression with balanced class weights (a Poisson
        regression for counts). ``hgb``: HistGradientBoosting with balanced class
        weights (Poisson loss for counts) and monotonic constraints where the
        direction is known. ``recency``: one-feature model on log1p(recency_days).
        ``rfm``: the summed R (recency, reversed), F (active days), M (revenue) quintile
        score (0-12, quintile edges from the training rows) into a one-feature model.
    calibration : {"sigmoid", "isotonic"}
        Map of raw scores to probabilities (binary targets). Counts are calibrated
        by one multiplicative factor so that predicted and observed totals match.
    high_share, medium_share : float
        Shares of the latest training snapshot put in the High and Medium buckets;
        the resulting score cut-offs are frozen at fit time.
    random_state : int, optional
        Seed of the boosting validation split and the cross-validation fallback.
    n_threads : int, optional
        OpenMP/BLAS threads used while fitting (via threadpoolctl, restored
        afterwards); ``None`` keeps the libraries' default. Scoring uses every core. On a busy
        machine with few cores, 1 avoids oversubscription (measured here: a boosting
        fit 100x slower with 2 OpenMP threads on 2 loaded cores than with 1).

    Attributes
    ----------
    estimator_ : estimator
        The family's pipeline fitted on all training rows.
    rfm_columns_, rfm_edges_ : numpy.ndarray or None
        Column positions of R, F, M and their quintile edges (``rfm`` family only).
    calibrator_ : LogisticRegression, IsotonicRegression or None
        Fitted on out-of-time raw scores (``None`` for counts).
    scale_ : float
        Multiplier of expected counts (1.0 for binary targets).
    calibration_mode_ : str
        ``"latest_snapshot"`` (out of time) or ``"cross_validated"`` (one snapshot only).
    calibration_rows_ : int
        Rows the calibration was fitted on.
    bucket_thresholds_ : numpy.ndarray
        Score cut-offs ``[medium, high]``: High when score >= high, Medium when >= medium.
    training_rows_ : int
    training_mean_ : float
        Rows and mean label of the training set.
    feature_names_in_ : numpy.ndarray
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"recency_days": rng.exponential(20, 400),
    ...                   "events_30d": rng.poisson(3, 400).astype(float)})
    >>> y = (rng.random(400) < 1 / (1 + np.exp(2 - X["recency_days"] / 10))).astype(int)
    >>> model = PropensityModel("churn", "inactivity", random_state=0).fit(X, y)
    >>> p = model.predict(X)
    >>> bool(0 < p.min() and p.max() < 1), model.bucket(p).value_counts().index.tolist()
    (True, ['Low', 'Medium', 'High'])
    """

    def __init__(
        self,
        target: str = "target",
        kind: str = "inactivity",
        event: str | None = None,
        horizon_days: int = 30,
        family: str = "logistic",
        calibration: str = "sigmoid",
        high_share: float = 0.2,
        medium_share: float = 0.3,
        random_state: int | None = None,
        n_threads: int | None = None,
    ):
        self.target = target
        self.kind = kind
        self.event = event
        self.horizon_days = horizon_days
        self.family = family
        self.calibration = calibration
        self.high_share = high_share
        self.medium_share = medium_share
        self.random_state = random_state
        self.n_threads = n_threads

    @property
    def output_name(self) -> str:
        """Name of the score column: ``p_<target>`` or ``expected_<target>``."""
        prefix = "expected" if self.kind == "count" else "p"
        return f"{prefix}_{self.target}"

    def _check_params(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {list(_KINDS)}, got {self.kind!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {list(FAMILIES)}, got {self.family!r}")
        if self.calibration not in ("sigmoid", "isotonic"):
            raise ValueError(
                f"calibration must be 'sigmoid' or 'isotonic', got {self.calibration!r}"
            )
        shares = (self.high_share, self.medium_share)
        if not (self.high_share > 0 and self.medium_share >= 0 and sum(shares) < 1):
            raise ValueError(
                "expected 0 < high_share, 0 <= medium_share and high_share + medium_share < 1, "
                f"got {self.high_share} and {self.medium_share}"
            )

    def fit(self, X: Any, y: Any, snapshot: Any = None) -> PropensityModel:
        """Fit the model and its calibration.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_rows, n_features)
            Feature columns only (no ``user_id``), named as by ``build_features``.
        y : array-like of shape (n_rows,)
            0/1 labels, or non-negative counts for ``kind="count"``.
        snapshot : array-like of shape (n_rows,), optional
            Snapshot of each row (any sortable values; later = larger). With two or
            more snapshots the calibration is fitted out of time on the latest one
            from a copy trained on the others; otherwise on 3-fold out-of-fold scores.

        Returns
        -------
        self
        """
        with threadpool_limits(limits=self.n_threads):
            return self._fit(X, y, snapshot)

    def _fit(self, X: Any, y: Any, snapshot: Any) -> PropensityModel:
        self._check_params()
        X, y = validate_data(self, X, y, y_numeric=True)
        y = np.asarray(y, dtype=float)
        classify = self.kind != "count"
        if classify and not np.isin(y, (0.0, 1.0)).all():
            raise ValueError(f"kind {self.kind!r} expects 0/1 labels")
        if not classify and ((y < 0).any() or (y != np.round(y)).any()):
            raise ValueError("kind 'count' expects non-negative integer counts")
        if classify and np.unique(y).size < 2:
            raise ValueError("y holds a single class: a propensity model needs both")
        names = list(getattr(self, "feature_names_in_", [])) or None
        base = _base_estimator(self.family, self.kind, self.event, names, self.random_state)
        if self.family == "rfm":
            # Quintile edges come from all training rows (features only, no labels).
            self.rfm_columns_ = np.array(
                [names.index(c) for c in (_RECENCY, _FREQUENCY, _MONETARY)]
            )
            self.rfm_edges_ = np.vstack([_quintile_edges(X[:, c]) for c in self.rfm_columns_])
        else:
            self.rfm_columns_ = None
            self.rfm_edges_ = None
        design = self._design(X)

        if snapshot is not None:
            snapshot = np.asarray(snapshot)
            if snapshot.shape != (X.shape[0],):
                raise ValueError(f"snapshot must have shape ({X.shape[0]},), got {snapshot.shape}")
        latest = snapshot == np.max(snapshot) if snapshot is not None else None
        cal_y = None
        if latest is not None and 0 < latest.sum() < latest.size:
            older = ~latest
            if not classify or np.unique(y[older]).size == 2:
                early = clone(base).fit(design[older], y[older])
                raw = _raw_score(early, design[latest], classify)
                cal_y = y[latest]
                self.calibration_mode_ = "latest_snapshot"
        if cal_y is None:
            folds = (
                StratifiedKFold(3, shuffle=True, random_state=self.random_state)
                if classify
                else KFold(3, shuffle=True, random_state=self.random_state)
            )
            method = "decision_function" if classify else "predict"
            raw = cross_val_predict(clone(base), design, y, cv=folds, method=method)
            cal_y = y
            self.calibration_mode_ = "cross_validated"
        self.calibration_rows_ = int(cal_y.size)

        if classify:
            if self.calibration == "sigmoid":
                calibrator = LogisticRegression(C=1e4, max_iter=1000)
                calibrator.fit(raw.reshape(-1, 1), cal_y.astype(int))
            else:
                calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
                calibrator.fit(raw, cal_y)
            self.calibrator_ = calibrator
            self.scale_ = 1.0
        else:
            self.calibrator_ = None
            total = float(np.sum(raw))
            self.scale_ = float(np.sum(cal_y) / total) if total > 0 else 1.0

        self.estimator_ = clone(base).fit(design, y)
        self.training_rows_ = int(y.size)
        self.training_mean_ = float(np.mean(y))
        reference = self._predict_array(X[latest] if latest is not None else X)
        high = np.quantile(reference, 1.0 - self.high_share)
        medium = np.quantile(reference, 1.0 - self.high_share - self.medium_share)
        self.bucket_thresholds_ = np.array([medium, high], dtype=float)
        return self

    def _predict_array(self, X: np.ndarray) -> np.ndarray:
        # n_threads bounds fitting (many small fits oversubscribe a busy machine);
        # scoring large batches uses every core.
        return self._predict_raw(X)

    def _design(self, X: np.ndarray) -> np.ndarray:
        if self.rfm_edges_ is None:
            return X
        return _rfm_score(X, self.rfm_columns_, self.rfm_edges_)

    def _predict_raw(self, X: np.ndarray) -> np.ndarray:
        classify = self.kind != "count"
        raw = _raw_score(self.estimator_, self._design(X), classify)
        if not classify:
            return raw * self.scale_
        if isinstance(self.calibrator_, IsotonicRegression):
            return np.asarray(self.calibrator_.predict(raw), dtype=float)
        return self.calibrator_.predict_proba(raw.reshape(-1, 1))[:, 1]

    def predict(self, X: Any) -> np.ndarray:
        """Return calibrated probabilities (binary targets) or expected counts.

        Parameters
        ----------
        X : pandas.DataFrame
            The same feature columns, in the same order, as in ``fit``.

        Returns
        -------
        numpy.ndarray of shape (n_rows,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self._predict_array(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return ``[1 - p, p]`` per row (binary targets only)."""
        if self.kind == "count":
            raise AttributeError("predict_proba is not available for kind='count'")
        p = self.predict(X)
        return np.column_stack([1.0 - p, p])

    def bucket(self, scores: Any) -> pd.Series:
        """Return Low/Medium/High for scores of this model, by the cut-offs frozen in fit.

        Parameters
        ----------
        scores : array-like
            Output of :meth:`predict`.

        Returns
        -------
        pandas.Series
            Ordered categorical with categories ``Low < Medium < High``.
        """
        codes = self._bucket_codes(scores)
        return pd.Series(pd.Categorical.from_codes(codes, categories=BUCKETS, ordered=True))

    def _bucket_codes(self, scores: Any) -> np.ndarray:
        check_is_fitted(self)
        return np.searchsorted(self.bucket_thresholds_, np.asarray(scores, dtype=float), "right")


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


def _decile_groups(p: np.ndarray) -> np.ndarray:
    """Decile 1 = highest scores; ties broken by row order (rows sorted by user)."""
    order = np.argsort(-p, kind="stable")
    groups = np.empty(p.size, dtype=np.int64)
    groups[order] = np.arange(p.size) * _N_BINS // p.size + 1
    return groups


def _decile_table(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    groups = _decile_groups(p)
    base = y.mean()
    frame = pd.DataFrame({"decile": groups, "y": y, "p": p})
    table = frame.groupby("decile").agg(
        users=("y", "size"), mean_predicted=("p", "mean"), observed=("y", "mean")
    )
    table["lift"] = table["observed"] / base if base > 0 else np.nan
    return table.reset_index()


def _calibration_table(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    edges = np.linspace(0.0, 1.0, _N_BINS + 1)
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, _N_BINS - 1)
    frame = pd.DataFrame({"bin": bins, "y": y, "p": p})
    table = frame.groupby("bin").agg(
        users=("y", "size"), mean_predicted=("p", "mean"), observed=("y", "mean")
    )
    table = table.reset_index()
    table.insert(1, "lower", edges[table["bin"].to_numpy()])
    table.insert(2, "upper", edges[table["bin"].to_numpy() + 1])
    return table


def _metrics(y: np.ndarray, p: np.ndarray, kind: str) -> dict[str, float]:
    deciles = _decile_table(y, p)
    top = float(deciles.loc[deciles["decile"] == 1, "lift"].iloc[0])
    out: dict[str, float] = {"users": float(y.size), "base_rate": float(y.mean())}
    if kind == "count":
        hit = (y > 0).astype(int)
        out.update(
            poisson_deviance=float(mean_poisson_deviance(y, np.clip(p, 1e-9, None))),
            predicted_total=float(p.sum()),
            actual_total=float(y.sum()),
            total_ratio=float(p.sum() / y.sum()) if y.sum() > 0 else np.nan,
            roc_auc=float(roc_auc_score(hit, p)) if 0 < hit.sum() < hit.size else np.nan,
            lift_top_decile=top,
        )
        return out
    both = 0 < y.sum() < y.size
    out.update(
        roc_auc=float(roc_auc_score(y, p)) if both else np.nan,
        pr_auc=float(average_precision_score(y, p)) if both else np.nan,
        brier=float(brier_score_loss(y, p)),
        log_loss=float(log_loss(y, np.clip(p, 1e-12, 1 - 1e-12), labels=[0, 1])),
        predicted_total=float(p.sum()),
        actual_total=float(y.sum()),
        lift_top_decile=top,
    )
    return out


def _selection_metric(kind: str) -> str:
    return "poisson_deviance" if kind == "count" else "log_loss"


# ---------------------------------------------------------------------------
# Fitting and evaluation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PropensityEvaluation:
    """Out-of-time evaluation of every target, model and baseline (aggregates only).

    ``model`` values are the families (``logistic``, ``hgb``, ``recency``, ``rfm``)
    and ``model`` itself for the chosen family (a copy of its rows).

    Attributes
    ----------
    metrics : pandas.DataFrame
        Tidy ``target, model, metric, value``. Binary targets: users, base_rate,
        roc_auc, pr_auc, brier, log_loss, predicted_total, actual_total,
        lift_top_decile. Counts: users, base_rate (mean count), poisson_deviance,
        predicted_total, actual_total, total_ratio, roc_auc (of any event),
        lift_top_decile.
    deciles : pandas.DataFrame
        ``target, model, decile, users, mean_predicted, observed, lift``; decile 1
        holds the highest scores, lift = observed / base rate.
    calibration : pandas.DataFrame
        ``target, model, bin, lower, upper, users, mean_predicted, observed`` over
        ten equal-width probability bins (binary targets; empty bins omitted).
    snapshots : pandas.DataFrame
        ``target, role, snapshot, label_end, users, positives, rate`` for every
        snapshot used (role ``evaluation``, ``backtest`` or ``final``).
    segments : pandas.DataFrame or None
        ``target, segment, users, observed, mean_predicted`` on the evaluation
        snapshot (chosen model, out of time), when segment labels were given.
    """

    metrics: pd.DataFrame
    deciles: pd.DataFrame
    calibration: pd.DataFrame
    snapshots: pd.DataFrame
    segments: pd.DataFrame | None = None

    def summary(self, metric: str = "roc_auc") -> pd.DataFrame:
        """Return one metric as a ``target x model`` table."""
        rows = self.metrics[self.metrics["metric"] == metric]
        return rows.pivot(index="target", columns="model", values="value")


@dataclass(frozen=True)
class PropensityResult:
    """Fitted models, their evaluation and the family chosen per target."""

    models: dict[str, PropensityModel]
    evaluation: PropensityEvaluation
    choice: dict[str, str]


def _first_event(log: EventLog, as_of: dt.datetime) -> dt.datetime:
    first = log.con.execute(
        f"SELECT min(timestamp) FROM {log.table} WHERE timestamp < {_ts(as_of)}"
    ).fetchone()[0]
    if first is None:
        raise InsufficientDataError(f"the event log has no event before as_of {as_of}")
    return first


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    X = frame.drop(columns=["snapshot", "user_id", "label"])
    snapshot = frame["snapshot"].to_numpy().astype("datetime64[s]").astype(np.int64)
    return X, frame["label"].to_numpy(), snapshot


def _check_positives(
    frame: pd.DataFrame, target: TargetConfig, role: str, minimum: int, horizon: int
) -> None:
    positive = int((frame["label"] > 0).sum())
    negative = int(len(frame) - positive)
    what = {"inactivity": "churned users", "event": "converting users", "count": "users with"}
    noun = what[target.kind] + (f" {target.event!r}" if target.kind == "count" else "")
    when = ", ".join(sorted({t.date().isoformat() for t in frame["snapshot"]}))
    if positive < minimum:
        raise InsufficientDataError(
            f"target {target.name!r}: {positive} positive(s) ({noun} within {horizon} days) in "
            f"the {role} snapshot(s) {when}; at least min_positives = {minimum} are needed"
        )
    if target.kind != "count" and negative < minimum:
        raise InsufficientDataError(
            f"target {target.name!r}: only {negative} negative(s) in the {role} snapshot(s) "
            f"{when}; at least min_positives = {minimum} of each class are needed"
        )


def _snapshot_rows(frame: pd.DataFrame, name: str, role: str, horizon: int) -> list[dict]:
    rows = []
    for t0, part in frame.groupby("snapshot", sort=False):
        rows.append(
            {
                "target": name,
                "role": role,
                "snapshot": t0,
                "label_end": t0 + pd.Timedelta(days=horizon),
                "users": len(part),
                "positives": int((part["label"] > 0).sum()),
                "rate": float(part["label"].mean()),
            }
        )
    return rows


def fit_propensity(
    log: EventLog,
    as_of: dt.date | dt.datetime | str,
    feature_config: FeatureConfig | None = None,
    config: PropensityConfig | None = None,
    *,
    segments: pd.DataFrame | None = None,
    candidates: Sequence[str] = CANDIDATES,
    n_threads: int | None = None,
) -> PropensityResult:
    """Fit, evaluate out of time and choose a calibrated model per target.

    Parameters
    ----------
    log : EventLog
        Clean log (it may hold events at or after ``as_of``: they are never read).
    as_of : date-like
        Scoring time. Label windows end at or before it.
    feature_config : FeatureConfig, optional
        Feature settings, passed to :func:`segmentkit.features.build_features`.
    config : PropensityConfig
        Targets, horizon, snapshot layout, ``min_positives`` and ``random_state``.
    segments : pandas.DataFrame, optional
        ``user_id, segment``: adds per-segment observed rate and mean out-of-time
        score on the evaluation snapshot to the evaluation.
    candidates : sequence of str
        Families competing per target (a subset of :data:`FAMILIES`).
    n_threads : int, optional
        Passed to every :class:`PropensityModel` (see there).

    Returns
    -------
    PropensityResult

    Raises
    ------
    ConfigError
        No targets, or an invalid target or candidate.
    DataValidationError
        ``as_of`` is after the log's cut-off, or ``segments`` lacks its columns.
    InsufficientDataError
        The log is too short for one backtest snapshot, or a target has fewer
        than ``min_positives`` positives (or negatives) in a snapshot set.
    """
    config = config or PropensityConfig()
    if not config.targets:
        raise ConfigError("propensity.targets: no target to fit")
    unknown = [c for c in candidates if c not in FAMILIES]
    if unknown or not candidates:
        raise ConfigError(f"candidates: expected some of {list(FAMILIES)}, got {list(candidates)}")
    end = to_timestamp(as_of)
    if log.as_of is not None and log.as_of < end:
        raise DataValidationError(
            f"as_of {end} is after the cut-off {log.as_of} the log was loaded with: "
            "events in between are missing"
        )
    if segments is not None:
        missing = [c for c in ("user_id", "segment") if c not in segments.columns]
        if missing:
            raise DataValidationError(
                f"segments: missing column(s) {missing}; columns present: {list(segments.columns)}"
            )
    for target in config.targets:
        _check_target(target)
    first = _first_event(log, end)
    cache: dict[dt.datetime, pd.DataFrame] = {}
    models: dict[str, PropensityModel] = {}
    choice: dict[str, str] = {}
    metric_rows: list[dict] = []
    decile_frames, calibration_frames, snapshot_rows, segment_frames = [], [], [], []

    for target in config.targets:
        horizon = target.horizon_days or config.horizon_days
        plan = plan_snapshots(
            end, horizon, config.n_snapshots, config.snapshot_step_days, first_event=first
        )

        def build(times: Sequence[dt.datetime], target=target, horizon=horizon) -> pd.DataFrame:
            return build_training_set(
                log, times, target, horizon, feature_config, end, _cache=cache
            )

        backtest, evaluation, final = (
            build(plan.backtest),
            build([plan.evaluation]),
            build(plan.final),
        )
        for frame, role in ((backtest, "backtest"), (evaluation, "evaluation"), (final, "final")):
            _check_positives(frame, target, role, config.min_positives, horizon)
            snapshot_rows += _snapshot_rows(frame, target.name, role, horizon)

        def make(family: str, target=target, horizon=horizon) -> PropensityModel:
            return PropensityModel(
                target=target.name,
                kind=target.kind,
                event=target.event,
                horizon_days=horizon,
                family=family,
                random_state=config.random_state,
                n_threads=n_threads,
            )

        X_bt, y_bt, s_bt = _split(backtest)
        X_ev, y_ev, _ = _split(evaluation)
        scores: dict[str, np.ndarray] = {}
        for family in dict.fromkeys((*candidates, *BASELINES)):
            fitted = make(family).fit(X_bt, y_bt, snapshot=s_bt)
            scores[family] = fitted.predict(X_ev)
        results = {family: _metrics(y_ev, p, target.kind) for family, p in scores.items()}
        key = _selection_metric(target.kind)
        ranked = list(dict.fromkeys(candidates))
        best = min(ranked, key=lambda fam: (results[fam][key], ranked.index(fam)))
        choice[target.name] = best

        rows, deciles, calib = _report(target, y_ev, scores, results, best)
        metric_rows += rows
        decile_frames += deciles
        calibration_frames += calib
        if segments is not None:
            segment_frames.append(_segment_table(evaluation, scores[best], segments, target.name))

        X_fin, y_fin, s_fin = _split(final)
        models[target.name] = make(best).fit(X_fin, y_fin, snapshot=s_fin)

    evaluation_result = PropensityEvaluation(
        metrics=pd.DataFrame(metric_rows, columns=["target", "model", "metric", "value"]),
        deciles=pd.concat(decile_frames, ignore_index=True),
        calibration=(
            pd.concat(calibration_frames, ignore_index=True)
            if calibration_frames
            else pd.DataFrame(columns=_CALIBRATION_COLUMNS)
        ),
        snapshots=pd.DataFrame(snapshot_rows),
        segments=pd.concat(segment_frames, ignore_index=True) if segment_frames else None,
    )
    return PropensityResult(models=models, evaluation=evaluation_result, choice=choice)


def _report(
    target: TargetConfig,
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    results: dict[str, dict[str, float]],
    best: str,
) -> tuple[list[dict], list[pd.DataFrame], list[pd.DataFrame]]:
    """Return metric rows, decile tables and calibration tables of one target."""
    rows, deciles, calibration = [], [], []
    for family in ("model", *results):
        source = best if family == "model" else family
        rows += [
            {"target": target.name, "model": family, "metric": metric, "value": value}
            for metric, value in results[source].items()
        ]
        tables = [(_decile_table(y, scores[source]), deciles)]
        if target.kind != "count":
            tables.append((_calibration_table(y, scores[source]), calibration))
        for table, bucket in tables:
            table.insert(0, "model", family)
            table.insert(0, "target", target.name)
            bucket.append(table)
    return rows, deciles, calibration


def _segment_table(
    evaluation: pd.DataFrame, scores: np.ndarray, segments: pd.DataFrame, name: str
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"user_id": evaluation["user_id"], "observed": evaluation["label"], "p": scores}
    )
    labels = segments[["user_id", "segment"]].drop_duplicates("user_id")
    joined = frame.merge(labels, on="user_id", how="inner")
    table = joined.groupby("segment", sort=True, observed=True).agg(
        users=("p", "size"), observed=("observed", "mean"), mean_predicted=("p", "mean")
    )
    table = table.reset_index()
    table.insert(0, "target", name)
    return table


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


def score_propensity(
    models: Mapping[str, PropensityModel],
    features: pd.DataFrame,
    chunk_size: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """Score users with fitted propensity models.

    Parameters
    ----------
    models : mapping of str to PropensityModel
        E.g. ``PropensityResult.models``.
    features : pandas.DataFrame
        ``user_id`` and the feature columns, e.g. ``build_features(log, as_of, cfg)``.
    chunk_size : int
        Rows converted to a float64 matrix at once (bounds memory).

    Returns
    -------
    pandas.DataFrame
        ``user_id``, then per target ``p_<target>`` (``expected_<target>`` for counts),
        ``<that>_percentile`` (0-100: the share of scored users with a score at or
        below this one) and ``<that>_bucket`` (Low/Medium/High by the
        cut-offs frozen at training time).

    Raises
    ------
    DataValidationError
        If ``user_id`` or a feature column a model needs is missing.
    """
    if "user_id" not in features.columns:
        raise DataValidationError(
            f"features: missing column 'user_id'; columns present: {list(features.columns)}"
        )
    # Models that read the same columns share one matrix per chunk of rows.
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, model in models.items():
        check_is_fitted(model)
        needed = list(model.feature_names_in_)
        missing = [c for c in needed if c not in features.columns]
        if missing:
            raise DataValidationError(
                f"features: model {name!r} needs column(s) {missing} that are missing"
            )
        groups.setdefault(tuple(needed), []).append(name)
    scores = {name: np.empty(len(features)) for name in models}
    for columns, names in groups.items():

        def score_chunk(rows: slice, X: np.ndarray | None, columns=columns, names=names) -> None:
            for name in names:
                # Non-finite input goes through predict, which names the problem.
                scores[name][rows] = (
                    models[name].predict(features.iloc[rows][list(columns)])
                    if X is None
                    else models[name]._predict_array(X)
                )

        map_feature_chunks(features, columns, score_chunk, chunk_size)
    return _score_table(models, features["user_id"], scores)


def _score_table(
    models: Mapping[str, PropensityModel], user_id: pd.Series, scores: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """Assemble :func:`score_propensity`'s table from each model's scores."""
    out = {"user_id": user_id.reset_index(drop=True)}
    percentiles = dict(
        zip(models, thread_map(percentile_rank, [scores[n] for n in models]), strict=True)
    )
    for name, model in models.items():
        column = model.output_name
        out[column] = scores[name]
        out[f"{column}_percentile"] = percentiles[name]
        out[f"{column}_bucket"] = labels_from_codes(BUCKETS, model._bucket_codes(scores[name]))
    return pd.DataFrame(out)


def row_chunks(n_rows: int, chunk_size: int = CHUNK_ROWS) -> list[slice]:
    """Consecutive row slices of at most ``chunk_size`` rows.

    Examples
    --------
    >>> row_chunks(5, 2)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    return [slice(a, min(a + chunk_size, n_rows)) for a in range(0, n_rows, chunk_size)]


def map_feature_chunks(
    features: pd.DataFrame,
    columns: Sequence[str],
    score_chunk: Callable[[slice, np.ndarray | None], None],
    chunk_size: int = CHUNK_ROWS,
) -> None:
    """Call ``score_chunk(rows, X)`` for every chunk of rows, side by side on the cores.

    ``X`` is :func:`feature_matrix` of the chunk: ``features[columns]`` as float64, or
    ``None`` when the chunk holds a missing or infinite value.
    """
    arrays = [features[name].to_numpy() for name in columns]
    thread_map(
        lambda rows: score_chunk(rows, feature_matrix(arrays, rows)),
        row_chunks(len(features), chunk_size),
    )


def feature_matrix(arrays: Sequence[np.ndarray], rows: slice) -> np.ndarray | None:
    """Rows of the feature columns as a float64 matrix, or ``None`` if any is not finite.

    ``None`` lets the caller take the validating path that names the problem. The
    matrix is filled column by column in column-major order: pandas' own conversion
    of mixed integer and float columns interleaves row by row and is several times
    slower, and a chunk of rows small enough to reuse memory avoids faulting in a
    whole-table copy.
    """
    start, stop, _ = rows.indices(len(arrays[0]) if arrays else 0)
    X = np.empty((stop - start, len(arrays)), dtype=np.float64, order="F")
    for j, values in enumerate(arrays):
        X[:, j] = values[start:stop]
    return X if np.isfinite(X).all() else None


def labels_from_codes(labels: Sequence[str], codes: np.ndarray) -> pd.Series:
    """``labels[codes]`` as a column of pandas' default string dtype.

    With Arrow-backed strings (pandas 3) the column is gathered by Arrow, without one
    Python object per row.

    Examples
    --------
    >>> labels_from_codes(["Low", "High"], np.array([1, 0, 1])).tolist()
    ['High', 'Low', 'High']
    """
    default = pd.Series(["x"]).dtype
    codes = np.asarray(codes, dtype=np.intp)
    if isinstance(default, pd.StringDtype) and default.storage == "pyarrow":
        import pyarrow as pa

        return pd.Series(pa.array(list(labels), pa.large_string()).take(codes), dtype=default)
    return pd.Series(np.asarray(labels, dtype=object)[codes])


def percentile_rank(scores: np.ndarray) -> np.ndarray:
    """Share of scores at or below each one, in percent (NaN stays NaN).

    The same numbers as ``pandas.Series(scores).rank(method="max", pct=True) * 100``,
    from one sort instead of a rank with tie bookkeeping.

    Examples
    --------
    >>> percentile_rank(np.array([0.2, 0.1, 0.2, 0.4])).tolist()
    [75.0, 25.0, 75.0, 100.0]
    """
    scores = np.asarray(scores, dtype=np.float64)
    valid = np.flatnonzero(~np.isnan(scores))
    order = valid[np.argsort(scores[valid], kind="stable")]
    ordered = scores[order]
    out = np.full(scores.shape, np.nan)
    # Searching the sorted scores in sorted order walks memory once.
    out[order] = np.searchsorted(ordered, ordered, side="right") / ordered.size * 100.0
    return out
