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

    selection snapshot   T_sel = as_of - 2h                 labels end at T_eval
    selection training   T_sel - h, T_sel - h - s, ...      labels end by T_sel
    evaluation snapshot  T_eval = as_of - h                 labels end at as_of
    backtest training    T_eval - h, T_eval - h - s, ...    labels end by T_eval
    final training       as_of - h, as_of - h - s, ...      (n snapshots each)

Each candidate (:data:`CANDIDATES`) is fitted on the selection training snapshots (a
stratified sample of at most ``selection_rows_max`` rows) and judged on the selection
snapshot (log loss for probabilities, Poisson deviance for counts; of the candidates
within one standard error of the best, the simplest family is kept). Only the winner
is then fitted on the backtest snapshots and *reported* on the evaluation snapshot,
which played no part in the choice, beside the baselines (recency alone, the
tie-aware RFM quintile score and BG/NBD) fitted and calibrated the same way; then it
is refitted on the final snapshots. A log too short for a selection snapshot (or for
two selection training snapshots, so that candidates are calibrated out of time) falls
back to choosing on the evaluation snapshot, and the evaluation notes say so. BG/NBD
inputs are fitted on the users of the snapshot a model scores (``population``).

On a log with one event type, an ``inactivity`` target is the complement of the
``event`` target on that event: it is derived (``family="complement"``) rather than
trained. On other logs it is reported beside ``1 - p(<event>)`` and recency.

Calibration (see :class:`PropensityModel`) is out of time too: a copy of the
model fitted on all but the latest training snapshot predicts the latest one,
and a Platt (or isotonic) map of its raw scores onto the observed labels is
applied to the model refitted on all snapshots; one offset then sets the level of the
refitted model on the latest snapshot (kept only where it beats no level on the
selection snapshot; where the log reaches a year and a horizon before that snapshot,
the seasonal step of the model's residual level a year earlier competes too, judged on
every past snapshot where it can be measured, see :meth:`PropensityModel.level_residual`;
where the log reaches a year before the evaluation snapshot only, the final model takes
the step when it beats the chosen level on that snapshot; the RMS error of the level
rule over those snapshots sizes the expected total's interval, ``level_risk``). Class
imbalance is handled by ``class_weight="balanced"`` in the candidates; calibration
restores probabilities.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import norm
from scipy.stats import t as student_t
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression, PoissonRegressor
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import ClassifierTags, RegressorTags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from segmentkit.config import PROPENSITY_CANDIDATES
from segmentkit.errors import ConfigError, DataValidationError, InsufficientDataError
from segmentkit.models.bgnbd import BetaGeoModel, bgnbd_predictions, summary_from_features
from segmentkit.models.hgb_runtime import raw_predict as hgb_raw_predict
from segmentkit.models.labels import (
    _KINDS,
)
from segmentkit.models.transforms import ArcsinhTransformer, Log1pTransformer
from segmentkit.parallel import thread_map, usable_cores
from segmentkit.text import slug

FAMILIES: tuple[str, ...] = ("logistic", "hgb", "recency", "rfm", "bgnbd", "complement")


"""Model families a :class:`PropensityModel` can hold."""


CANDIDATES: tuple[str, ...] = PROPENSITY_CANDIDATES


"""Families competing for a target (``+bgnbd``: with the BG/NBD inputs).

``bgnbd`` competes too: where the log is a plain purchase process, BG/NBD itself can be
the best model, and the choice should be free to say so. The baselines are reported
beside the chosen model whatever wins.
"""


BASELINES: tuple[str, ...] = ("recency", "rfm", "bgnbd")


# Inputs a candidate gains with "+bgnbd", appended after the feature columns.
BGNBD_FEATURES: tuple[str, str] = ("bgnbd_log_odds_active", "bgnbd_log_expected")


_BGNBD_INPUTS = ("recency_days", "tenure_days", "active_days_total")


BUCKETS: tuple[str, ...] = ("Low", "Medium", "High")


# Suffix of a candidate judged without the latest-snapshot level (``relevel=False``).
_NO_LEVEL = "-nolevel"


# Suffix of a candidate whose level follows the trend across snapshots (``level_trend``).
_TREND = "-trend"


# Suffix of a candidate whose level takes the seasonal step measured a year earlier.
_SEASON = "-season"


# Rows per snapshot used to measure its level offset (a sample: the offset is a mean).
_LEVEL_ROWS = 20_000


_SECONDS_PER_DAY = 86_400.0


# Features the baselines read: R, F (the target event's own count when the table has it),
# M.
_RECENCY = "recency_days"


_FREQUENCY = "active_days_total"


_MONETARY = "revenue_total"


# Folds of the out-of-fold calibration used when there is no older snapshot to fit on.
_CALIBRATION_FOLDS = 3


# An isotonic calibration's probabilities are kept inside [eps, 1 - eps], so that its
# level can be moved on the log-odds like a sigmoid's.
_ISOTONIC_EPS = 1e-6


# Weight of the model's own score (through arctan, bounded and never flat) on the
# log-odds of an isotonic calibration: it orders the users inside a flat step of the
# map, and is far smaller than any step between two levels of it.
_TIE_BREAK = 1e-6


# Reference quantiles kept per RFM column: mid-ranks of ties are exact to 1/1000.
_RANK_GRID = 1001


def _monotonic(names: Sequence[str], kind: str, event: str | None) -> list[int]:
    """Monotonic constraints per feature, only where the direction is known.

    Recent activity counts (``active_days_*d``, ``events_*d``, ``sessions_*d``) lower
    churn and raise conversion; recency raises churn and lowers conversion; the
    count of the target's own event raises its conversion. Everything else
    (tenure, totals, revenue, trend, gaps) is left free.
    """
    sign = 1 if kind == "inactivity" else -1
    windowed = re.compile(r"^(active_days|events|sessions)_\d+d$")
    own = f"{slug(event)}_events" if event else None
    constraints = []
    for name in names:
        if name == _RECENCY:
            constraints.append(sign)
        elif windowed.match(name) or name in BGNBD_FEATURES:
            constraints.append(-sign)
        elif kind != "inactivity" and name == own:
            constraints.append(1)
        else:
            constraints.append(0)
    return constraints


def _base_estimator(
    family: str,
    kind: str,
    event: str | None,
    names: Sequence[str] | None,
    random_state: Any,
) -> BaseEstimator:
    """Return the unfitted estimator of a family (inputs are numpy arrays)."""
    classify = kind != "count"
    if family in ("hgb", "recency", "rfm", "bgnbd"):
        needed = {
            "hgb": [],
            "recency": [_RECENCY],
            "rfm": [_RECENCY, _FREQUENCY, _MONETARY],
            "bgnbd": list(_BGNBD_INPUTS),
        }
        if names is None:
            raise DataValidationError(
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
        signed_log = ArcsinhTransformer()
        if names is not None and BGNBD_FEATURES[0] in names:
            # The BG/NBD inputs are already on the link scale (log-odds, log count):
            # a linear model can then reproduce BG/NBD itself, and improve on it.
            own = [i for i, n in enumerate(names) if n in BGNBD_FEATURES]
            rest = [i for i, n in enumerate(names) if n not in BGNBD_FEATURES]
            signed_log = ColumnTransformer(
                [("signed_log", signed_log, rest), ("bgnbd", "passthrough", own)]
            )
        return Pipeline(
            [
                ("signed_log", signed_log),
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
            # Stop when 10 more trees improve the validation loss by less than 1e-4: the
            # last trees of a flat loss cost fitting and scoring time for nothing
            # (at 100k users 10-15% fewer trees, out-of-time metrics unchanged).
            "tol": 1e-4,
            "random_state": random_state,
        }
        if classify:
            # No class weights: any sample weight makes scikit-learn (<= 1.9) find the bin
            # edges with one weighted percentile per bin, each a full sort of the column
            # (scikit-learn#34248), which was 60% of training time; calibration sets the
            # level anyway.
            return HistGradientBoostingClassifier(**common)
        return HistGradientBoostingRegressor(loss="poisson", **common)
    final = LogisticRegression(max_iter=1000) if classify else PoissonRegressor(alpha=0.0)
    if family == "recency":
        select = ColumnTransformer([("recency", Log1pTransformer(), [names.index(_RECENCY)])])
        return Pipeline([("select", select), ("scale", StandardScaler()), ("model", final)])
    if family in ("rfm", "bgnbd"):
        # Input is one column built by PropensityModel._design: the summed R, F, M
        # quintile score, or the BG/NBD log-odds of activity (log expected count).
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


def _fit_pair(
    base: BaseEstimator,
    design: np.ndarray,
    y: np.ndarray,
    older: np.ndarray,
    n_threads: int | None,
    *,
    parallel: bool,
) -> tuple[BaseEstimator, BaseEstimator]:
    """Fit a copy of ``base`` on the ``older`` rows and another on every row.

    The two fits are independent (each its own clone, same seed), so running them
    on two threads gives the same models as one after the other. OpenMP thread
    limits are per thread, so each worker sets ``n_threads`` itself.
    """

    def fit(rows: np.ndarray | None) -> BaseEstimator:
        with threadpool_limits(limits=n_threads):
            if rows is None:
                return clone(base).fit(design, y)
            return clone(base).fit(design[rows], y[rows])

    if not parallel:
        return fit(older), fit(None)
    early, full = thread_map(fit, [older, None])
    return early, full


def fit_bgnbd_params(features: pd.DataFrame) -> np.ndarray:
    """Return activity BG/NBD ``r, alpha, a, b`` fitted on one snapshot's users.

    Unsupervised (features only: recency, tenure and active days), so one fit on the
    users scored at a date serves every target and every candidate that scores them
    (:func:`segmentkit.models.propensity_training.fit_propensity` hands it to them as
    ``bgnbd_params``).

    Parameters
    ----------
    features : pandas.DataFrame
        Feature table with ``recency_days``, ``tenure_days`` and ``active_days_total``.

    Returns
    -------
    numpy.ndarray of shape (4,)

    Raises
    ------
    DataValidationError
        If a column is missing.
    """
    missing = [c for c in _BGNBD_INPUTS if c not in features.columns]
    if missing:
        raise DataValidationError(
            f"BG/NBD inputs: missing feature column(s) {missing}; columns present: "
            f"{list(features.columns)}"
        )
    return _fit_bgnbd(features[list(_BGNBD_INPUTS)].to_numpy(dtype=np.float64))


def _fit_bgnbd(inputs: np.ndarray) -> np.ndarray:
    """Return activity BG/NBD ``r, alpha, a, b`` fitted on recency, tenure, active days."""
    frame = pd.DataFrame(inputs, columns=list(_BGNBD_INPUTS))
    fitted = BetaGeoModel().fit(summary_from_features(frame))
    return np.array([fitted.r_, fitted.alpha_, fitted.a_, fitted.b_])


def _check_bgnbd_params(params: Any) -> None:
    if params is None:
        return
    values = np.asarray(params, dtype=float)
    if values.shape != (4,) or not (np.isfinite(values).all() and (values > 0).all()):
        raise ConfigError(
            "PropensityModel: bgnbd_params must be None or four positive numbers "
            f"(r, alpha, a, b), got {params!r}"
        )


def _rank_reference(column: np.ndarray) -> np.ndarray:
    """Quantiles of a training column on a fine grid: the reference of :func:`_quintile`."""
    return np.quantile(column, np.linspace(0.0, 1.0, _RANK_GRID), method="inverted_cdf")


def _quintile(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Quintile 1..5 of values by their mid-rank in the reference: tied users share one.

    The mid-rank (average of the ranks a tie spans) keeps a heavily tied value, e.g.
    revenue 0 for most users, in the middle quintile of its block rather than pushing
    it to one end as quantile edges with a one-sided search do.
    """
    below = np.searchsorted(reference, values, side="left")
    upto = np.searchsorted(reference, values, side="right")
    share = (below + upto) / (2.0 * reference.size)
    return np.clip(np.ceil(share * 5.0), 1.0, 5.0)


def _rfm_score(X: np.ndarray, columns: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Return the summed quintile score R (recent is high) + F + M, each 1..5, as a column."""
    recency = 6.0 - _quintile(references[0], X[:, columns[0]])
    frequency = _quintile(references[1], X[:, columns[1]])
    monetary = _quintile(references[2], X[:, columns[2]])
    return (recency + frequency + monetary).reshape(-1, 1)


def _bgnbd_columns(
    X: np.ndarray, columns: np.ndarray, params: np.ndarray, horizon: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return expected active days, P(alive), P(active) over the horizon (activity BG/NBD)."""
    inputs = pd.DataFrame(X[:, columns], columns=list(_BGNBD_INPUTS))
    summary = summary_from_features(inputs)
    return bgnbd_predictions(
        params, summary["frequency"].to_numpy(), summary["recency"].to_numpy(),
        summary["T"].to_numpy(), horizon,
    )  # fmt: skip


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def _level_sd(y: np.ndarray, snapshot: np.ndarray | None) -> float:
    """Typical relative change of the label level from one snapshot to the next (RMS log ratio)."""
    if snapshot is None:
        return float("nan")
    times = np.unique(snapshot)
    levels = np.array([y[snapshot == t].mean() for t in times])
    if times.size < 2 or (levels <= 0).any():
        return float("nan")
    return float(np.sqrt(np.mean(np.diff(np.log(levels)) ** 2)))


def _level_offset(p: np.ndarray, y: np.ndarray, kind: str) -> float:
    """Return the shift that makes the mean prediction equal the observed mean.

    On the log-odds for probabilities (0 when either side is 0 or 1), on the log for counts.

    Examples
    --------
    >>> round(_level_offset(np.array([0.2, 0.2]), np.array([0, 1]), "event"), 4)
    1.3863
    >>> round(_level_offset(np.array([1.0, 1.0]), np.array([2, 4]), "count"), 4)
    1.0986
    """
    target = float(np.mean(y))
    if kind == "count":
        total = float(np.mean(p))
        return float(np.log(target / total)) if target > 0 and total > 0 else 0.0
    if not 0.0 < target < 1.0:
        return 0.0
    logit = _logit(p)
    return float(brentq(lambda d: float(np.mean(expit(logit + d))) - target, -20.0, 20.0))


def isotonic_probability(calibrator: IsotonicRegression, raw: np.ndarray) -> np.ndarray:
    """Return the probabilities of an isotonic map, strictly increasing in the raw score.

    The map sets the values; inside one of its flat steps the model's own score orders
    the users (at most ``1e-6`` on the log-odds), so the ranking, and the AUC, stay the
    model's instead of tying whole steps. Values are kept inside ``[1e-6, 1 - 1e-6]``
    so that a level offset on the log-odds moves every one of them.

    Examples
    --------
    >>> from sklearn.isotonic import IsotonicRegression
    >>> iso = IsotonicRegression(out_of_bounds="clip").fit([0, 1, 2, 3], [0, 1, 0, 1])
    >>> p = isotonic_probability(iso, np.array([0.0, 1.0, 2.0, 3.0]))
    >>> p.round(3).tolist(), bool(np.all(np.diff(p) > 0))
    ([0.0, 0.5, 0.5, 1.0], True)
    """
    p = np.clip(np.asarray(calibrator.predict(raw), dtype=float), _ISOTONIC_EPS, 1 - _ISOTONIC_EPS)
    return expit(_logit(p) + _TIE_BREAK * np.arctan(np.asarray(raw, dtype=float)))


def shift_level(p: np.ndarray, shift: float, kind: str) -> np.ndarray:
    """Move predictions by ``shift`` on the log-odds (probabilities) or the log (counts).

    Examples
    --------
    >>> shift_level(np.array([0.5, 2.0]), float(np.log(2.0)), "count").tolist()
    [1.0, 4.0]
    >>> round(float(shift_level(np.array([0.5]), float(np.log(3.0)), "event")[0]), 4)
    0.75
    """
    if not shift:
        return p
    if kind == "count":
        return p * float(np.exp(shift))
    return expit(_logit(p) + shift)


def _check_level_risk(level_risk: float | None) -> None:
    if level_risk is not None and not (np.isfinite(level_risk) and level_risk >= 0):
        raise ConfigError(
            f"PropensityModel: level_risk must be None or a finite number >= 0, got {level_risk!r}"
        )


def _check_level_risk_moves(moves: int | None) -> None:
    if moves is not None and (
        isinstance(moves, bool) or not isinstance(moves, (int, np.integer)) or moves < 1
    ):
        raise ConfigError(
            f"PropensityModel: level_risk_moves must be None or an integer >= 1, got {moves!r}"
        )


def _check_coverage(coverage: float) -> None:
    if not (np.isfinite(coverage) and 0.0 < coverage < 1.0):
        raise ConfigError(
            f"PropensityModel.expected_total: coverage must be strictly between 0 and 1, "
            f"got {coverage!r}"
        )


def level_quantile(coverage: float, moves: int | None) -> float:
    """Two-sided quantile of a level move measured as the RMS of ``moves`` past moves.

    The RMS of ``n`` moves whose mean is taken as 0 is a noisy estimate of their scale
    (``n`` degrees of freedom): a new move over that RMS follows Student's t with ``n``
    degrees of freedom, not the normal, so two or three moves give a wider interval.
    ``None`` (number unknown, e.g. a model saved before it was stored) keeps the normal.

    Examples
    --------
    >>> round(level_quantile(0.9, None), 4), round(level_quantile(0.9, 2), 4)
    (1.6449, 2.92)
    >>> round(level_quantile(0.9, 3), 4), round(level_quantile(0.9, 1000), 4)
    (2.3534, 1.6464)
    """
    upper = 0.5 + coverage / 2.0
    if moves is None:
        return float(norm.ppf(upper))
    return float(student_t.ppf(upper, df=moves))


def count_dispersion(y: np.ndarray, expected: np.ndarray) -> float:
    """Pearson dispersion of counts around their expectations, floored at 1.

    ``sum((y - mu)^2 / mu) / n`` over the rows with ``mu > 0``: the factor by which the
    variance of real counts exceeds the Poisson variance ``mu`` (overdispersion: some
    users buy in bursts). Measured out of time, it includes what the model misses per
    user. Floored at 1 (a Poisson variance is the least assumed); 1 without rows.

    Examples
    --------
    >>> count_dispersion(np.array([0, 2, 0, 6]), np.array([1.0, 1.0, 2.0, 4.0]))
    1.25
    >>> count_dispersion(np.array([1, 1]), np.array([1.0, 1.0]))
    1.0
    """
    y = np.asarray(y, dtype=float)
    expected = np.asarray(expected, dtype=float)
    rows = expected > 0
    if not rows.any():
        return 1.0
    pearson = np.square(y[rows] - expected[rows]) / expected[rows]
    return max(float(np.mean(pearson)), 1.0)


def _snapshot_days(snapshot: np.ndarray) -> np.ndarray:
    """Snapshot times in days: datetime64 values, or numbers taken as seconds."""
    if np.issubdtype(snapshot.dtype, np.datetime64):
        return snapshot.astype("datetime64[s]").astype(np.int64) / _SECONDS_PER_DAY
    return np.asarray(snapshot, dtype=float) / _SECONDS_PER_DAY


def _is_binary(model: PropensityModel) -> bool:
    """Whether the model's target is 0/1: only then does it have ``predict_proba``."""
    if model.kind == "count":
        raise AttributeError("predict_proba is not available for kind='count'")
    return True


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
    family : {"logistic", "hgb", "recency", "rfm", "bgnbd", "complement"}
        ``logistic``: arcsinh (signed log) of every feature, standardized, then an
        L2-regularized logistic regression with balanced class weights (a Poisson
        regression for counts). ``hgb``: HistGradientBoosting with balanced class
        weights (Poisson loss for counts) and monotonic constraints where the
        direction is known. ``recency``: one-feature model on log1p(recency_days).
        ``rfm``: the summed R (recency, reversed), F (the target event's own count if
        the table has it, else active days), M (revenue) quintile score (3-15; quintiles
        by mid-rank against the training rows, so tied users share a quintile) into a
        one-feature model. ``bgnbd``: BG/NBD of activity (fitted on ``population`` in
        :meth:`fit`, else the latest training snapshot's users) giving the log-odds of
        activity in the horizon (the log expected count for counts) into a one-feature
        model. ``complement``:
        ``1 - source.predict(X)``, no model of its own.
    calibration : {"sigmoid", "isotonic"}
        Map of raw scores to probabilities (binary targets): a Platt sigmoid, or an
        isotonic map (any monotone shape; inside its flat steps the raw score still
        orders the users, see :func:`isotonic_probability`). Either map's level is then
        set on the log-odds (``relevel``, ``level_shift``). Counts are calibrated
        by one multiplicative factor so that predicted and observed totals match.
    high_share, medium_share : float
        Shares of the latest training snapshot put in the High and Medium buckets;
        the resulting score cut-offs are frozen at fit time.
    random_state : int, optional
        Seed of the boosting validation split and the cross-validation fallback.
    bgnbd_features : bool
        Append ``bgnbd_log_odds_active`` and ``bgnbd_log_expected`` (activity BG/NBD,
        fitted as for ``bgnbd``) to the features.
    relevel : bool
        After calibration, shift the log-odds (scale counts) so the mean prediction on
        the latest training snapshot equals its observed level.
    level_trend : bool
        With ``relevel`` and three or more snapshots:
        extrapolate that shift by its linear trend across the training snapshots over
        ``horizon_days`` (the scored period starts one horizon after the latest labeled
        snapshot). ``snapshot`` values are then times: datetime64, or seconds.
    level_shift : float
        Expected change of the level from the latest labeled period to the scored one
        beyond what the features carry, known from elsewhere (e.g. the seasonal step
        a year earlier, see :meth:`level_residual`), on the log-odds (log for counts);
        added to the ``relevel`` shift when predicting (so it may be set after fit).
    level_risk : float, optional
        Typical move (RMS, on the log-odds, log for counts) of the level beyond what
        the features carry over one horizon, measured by the caller on a longer
        history than the training snapshots (see
        :func:`segmentkit.models.propensity_training.fit_propensity`); sizes the level
        part of :meth:`expected_total`'s interval instead of ``level_sd_``. It may be
        set after fit.
    level_risk_moves : int, optional
        How many measured moves ``level_risk`` is the RMS of: the level part of the
        interval then uses Student's t with that many degrees of freedom instead of the
        normal (:func:`level_quantile`). None keeps the normal (as for models saved
        before it was stored).
    source : PropensityModel, optional
        Fitted ``kind="event"`` model whose complement a ``complement`` model returns.
    n_threads : int, optional
        OpenMP/BLAS threads used while fitting (via threadpoolctl, restored
        afterwards); ``None`` keeps the libraries' default. Scoring uses every core. On a busy
        machine with few cores, 1 avoids oversubscription (measured here: a boosting
        fit 100x slower with 2 OpenMP threads on 2 loaded cores than with 1). When
        twice ``n_threads`` fits the usable cores, the calibration copy and the model
        are fitted side by side, each on its own thread with that limit (same models
        as one after the other).
    bgnbd_params : array-like of 4 floats, optional
        BG/NBD ``r, alpha, a, b`` for the ``bgnbd`` family and ``bgnbd_features``,
        fitted by the caller on the users the model will score (see
        :func:`fit_bgnbd_params`; ``fit_propensity`` fits them once per scoring date
        and hands them to every target and candidate). None fits them in :meth:`fit`,
        on ``population`` if given, else on the latest training snapshot's rows.

    Attributes
    ----------
    estimator_ : estimator
        The family's pipeline fitted on all training rows.
    rfm_columns_, rfm_edges_ : numpy.ndarray or None
        Column positions of R, F, M and their quintile edges (``rfm`` family only).
    bgnbd_columns_, bgnbd_params_ : numpy.ndarray or None
        Positions of recency, tenure and active days, and the BG/NBD ``r, alpha, a, b``
        (``bgnbd`` family or ``bgnbd_features`` only).
    level_offset_, level_factor_ : float
        Log-odds shift (binary) and factor (counts) set by ``relevel``; 0 and 1 when
        not releveled.
    level_trend_ : float
        Change per day of the log-odds shift (log factor for counts) across the
        training snapshots, by least squares; NaN without ``level_trend`` or when it
        cannot be measured.
    level_sd_ : float
        RMS relative change of the label level between consecutive training
        snapshots (NaN with one snapshot); sizes :meth:`expected_total`'s interval
        when ``level_risk`` is None.
    level_sd_moves_ : int
        How many snapshot-to-snapshot moves ``level_sd_`` is the RMS of (the Student t
        degrees of freedom of its part of the interval; 0 when not measured).
    count_dispersion_ : float
        Pearson dispersion (:func:`count_dispersion`) of the counts on the calibration
        rows (the latest snapshot, out of time) around the calibrated expectations; it
        scales the Poisson outcome noise of :meth:`expected_total`. 1.0 for 0/1 targets.
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

    # A model saved before this parameter existed has no instance value: the class one
    # (the default) keeps get_params, set_params and its old interval working.
    level_risk_moves: int | None = None

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
        bgnbd_features: bool = False,
        relevel: bool = True,
        source: PropensityModel | None = None,
        level_trend: bool = False,
        level_shift: float = 0.0,
        level_risk: float | None = None,
        bgnbd_params: Any = None,
        level_risk_moves: int | None = None,
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
        self.bgnbd_features = bgnbd_features
        self.relevel = relevel
        self.source = source
        self.level_trend = level_trend
        self.level_shift = level_shift
        self.level_risk = level_risk
        self.bgnbd_params = bgnbd_params
        self.level_risk_moves = level_risk_moves

    def __sklearn_tags__(self):
        """Return scikit-learn tags: a Poisson-like regressor for counts, 0/1 targets otherwise.

        A binary kind is not a scikit-learn classifier: ``predict`` returns P(y = 1),
        not labels, and there is no ``classes_``, so scorers and CV splitters must not
        treat it as one. Its targets are 0/1, which ``classifier_tags`` with
        ``multi_class=False`` says (the common checks then feed it two classes). A count
        is a regressor of non-negative integers; like ``PoissonRegressor`` it flags
        ``positive_only`` targets (zero is allowed, negative values are not).
        """
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        if self.kind == "count":
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
            tags.target_tags.positive_only = True
        else:
            tags.classifier_tags = ClassifierTags(multi_class=False)
        return tags

    @property
    def output_name(self) -> str:
        """Name of the score column: ``p_<target>`` or ``expected_<target>``."""
        prefix = "expected" if self.kind == "count" else "p"
        return f"{prefix}_{self.target}"

    def _check_params(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(
                f"PropensityModel: kind must be one of {list(_KINDS)}, got {self.kind!r}"
            )
        if self.family not in FAMILIES:
            raise ConfigError(
                f"PropensityModel: family must be one of {list(FAMILIES)}, got {self.family!r}"
            )
        if self.calibration not in ("sigmoid", "isotonic"):
            raise ConfigError(
                "PropensityModel: calibration must be 'sigmoid' or 'isotonic', "
                f"got {self.calibration!r}"
            )
        if not np.isfinite(self.level_shift):
            raise ConfigError(
                f"PropensityModel: level_shift must be a finite number, got {self.level_shift!r}"
            )
        _check_level_risk(self.level_risk)
        _check_level_risk_moves(self.level_risk_moves)
        _check_bgnbd_params(self.bgnbd_params)
        shares = (self.high_share, self.medium_share)
        if not (self.high_share > 0 and self.medium_share >= 0 and sum(shares) < 1):
            raise ConfigError(
                "PropensityModel: expected 0 < high_share, 0 <= medium_share and "
                f"high_share + medium_share < 1, got {self.high_share} and {self.medium_share}"
            )

    def fit(self, X: Any, y: Any, snapshot: Any = None, population: Any = None) -> PropensityModel:
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
        population : pandas.DataFrame, optional
            Features (no labels) of the users the model is about to score, e.g. the
            feature table at the scoring date. The unsupervised BG/NBD inputs
            (``bgnbd`` family, ``bgnbd_features``) are fitted on them, as a BG/NBD
            model fitted on the history up to that date is; by default on the latest
            training snapshot's users (a horizon or more earlier, a population with
            other drop-out estimates: a ranking unlike that date's BG/NBD). Not used
            when ``bgnbd_params`` is given.

        Returns
        -------
        self
        """
        with threadpool_limits(limits=self.n_threads):
            return self._fit(X, y, snapshot, population)

    def _fit(self, X: Any, y: Any, snapshot: Any, population: Any = None) -> PropensityModel:
        self._check_params()
        X, y = validate_data(self, X, y, y_numeric=True)
        y = np.asarray(y, dtype=float)
        if X.shape[0] < _CALIBRATION_FOLDS:
            raise InsufficientDataError(
                f"PropensityModel needs at least {_CALIBRATION_FOLDS} rows to calibrate, "
                f"got n_samples={X.shape[0]}"
            )
        classify = self.kind != "count"
        if classify and not np.isin(y, (0.0, 1.0)).all():
            bad = np.flatnonzero(~np.isin(y, (0.0, 1.0)))
            raise DataValidationError(
                f"PropensityModel: kind {self.kind!r} expects 0/1 labels; {bad.size} row(s) are "
                f"not, e.g. rows {bad[:5].tolist()} with {y[bad[:5]].tolist()}"
            )
        if not classify and ((y < 0).any() or (y != np.round(y)).any()):
            bad = np.flatnonzero((y < 0) | (y != np.round(y)))
            raise DataValidationError(
                "PropensityModel: kind 'count' expects non-negative integer counts; "
                f"{bad.size} row(s) are not, e.g. rows {bad[:5].tolist()} with "
                f"{y[bad[:5]].tolist()}"
            )
        if classify and np.unique(y).size < 2:
            raise InsufficientDataError(
                f"PropensityModel: every label is {int(y[0])}; a propensity model needs both "
                "classes"
            )
        names = list(getattr(self, "feature_names_in_", [])) or None
        if snapshot is not None:
            snapshot = np.asarray(snapshot)
            if snapshot.shape != (X.shape[0],):
                raise DataValidationError(
                    f"PropensityModel: snapshot must have shape ({X.shape[0]},), "
                    f"got {snapshot.shape}"
                )
        latest = snapshot == np.max(snapshot) if snapshot is not None else None
        self.level_sd_ = _level_sd(y, snapshot)
        self.level_sd_moves_ = (
            int(np.unique(snapshot).size - 1) if np.isfinite(self.level_sd_) else 0
        )
        self.count_dispersion_ = 1.0
        if self.family == "complement":
            return self._fit_complement(X, latest)
        if population is not None:
            population = validate_data(self, population, reset=False)
        self._fit_inputs(X, names, latest, population)
        model_names = names
        if self.bgnbd_features and names is not None:
            model_names = [*names, *BGNBD_FEATURES]
        base = _base_estimator(self.family, self.kind, self.event, model_names, self.random_state)
        design = self._design(X)

        cal_y = None
        estimator = None
        if latest is not None and 0 < latest.sum() < latest.size:
            older = ~latest
            if not classify or np.unique(y[older]).size == 2:
                early, estimator = _fit_pair(
                    base, design, y, older, self.n_threads, parallel=self._parallel_pair()
                )
                raw = _raw_score(early, design[latest], classify)
                cal_y = y[latest]
                self.calibration_mode_ = "latest_snapshot"
        if cal_y is None:
            if classify and np.bincount(y.astype(int)).min() < _CALIBRATION_FOLDS:
                zeros, ones = np.bincount(y.astype(int))
                raise InsufficientDataError(
                    f"cross-validated calibration needs at least {_CALIBRATION_FOLDS} rows of "
                    f"each class, got {zeros} labels 0 and {ones} labels 1"
                )
            folds = (
                StratifiedKFold(_CALIBRATION_FOLDS, shuffle=True, random_state=self.random_state)
                if classify
                else KFold(_CALIBRATION_FOLDS, shuffle=True, random_state=self.random_state)
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
            self.count_dispersion_ = count_dispersion(cal_y, self.scale_ * np.asarray(raw))

        self.estimator_ = estimator if estimator is not None else clone(base).fit(design, y)
        self.level_offset_ = 0.0
        self.level_factor_ = 1.0
        self.level_trend_ = float("nan")
        reference_rows = latest if latest is not None else np.ones(y.size, dtype=bool)
        if self.relevel:
            self._relevel(X[reference_rows], y[reference_rows])
            if self.level_trend and snapshot is not None:
                self.level_trend_ = self._measure_trend(X, y, snapshot)
        self.training_rows_ = int(y.size)
        self.training_mean_ = float(np.mean(y))
        self._set_buckets(self._predict_array(X[reference_rows]))
        return self

    def _parallel_pair(self) -> bool:
        """Whether the calibration copy and the model are fitted side by side.

        Only with a thread limit whose double fits the cores: each fit then keeps its
        limit and the two never oversubscribe (``n_threads=None`` lets the libraries
        use every core for one fit at a time instead).
        """
        return self.n_threads is not None and 2 * self.n_threads <= usable_cores()

    def _fit_inputs(
        self, X: np.ndarray, names: list[str] | None, latest: Any, population: Any = None
    ) -> None:
        """Fit what the design matrix needs: RFM references, BG/NBD parameters."""
        self.rfm_columns_ = None
        self.rfm_edges_ = None
        self.bgnbd_columns_ = None
        self.bgnbd_params_ = None
        if self.family == "rfm":
            own = f"{slug(self.event)}_events" if self.event else None
            frequency = own if self.kind != "inactivity" and own in names else _FREQUENCY
            self.rfm_columns_ = np.array([names.index(c) for c in (_RECENCY, frequency, _MONETARY)])
            # Rank references come from all training rows (features only, no labels).
            self.rfm_edges_ = np.vstack([_rank_reference(X[:, c]) for c in self.rfm_columns_])
        if self.family == "bgnbd" or self.bgnbd_features:
            missing = [c for c in _BGNBD_INPUTS if names is None or c not in names]
            if missing:
                raise DataValidationError(
                    f"PropensityModel(family={self.family!r}, bgnbd_features="
                    f"{self.bgnbd_features}) needs feature column(s) {missing}"
                )
            self.bgnbd_columns_ = np.array([names.index(c) for c in _BGNBD_INPUTS])
            if self.bgnbd_params is not None:
                self.bgnbd_params_ = np.asarray(self.bgnbd_params, dtype=float).copy()
            else:
                # Unsupervised: fitted on the population to score, else the latest snapshot's.
                rows = (
                    population if population is not None else X[latest] if latest is not None else X
                )
                self.bgnbd_params_ = _fit_bgnbd(rows[:, self.bgnbd_columns_])

    def _fit_complement(self, X: np.ndarray, latest: Any) -> PropensityModel:
        source = self.source
        if not isinstance(source, PropensityModel) or source.kind != "event":
            raise ConfigError(
                "PropensityModel: family 'complement' needs `source`, a fitted kind='event' model"
            )
        check_is_fitted(source)
        if list(source.feature_names_in_) != list(getattr(self, "feature_names_in_", [])):
            raise DataValidationError(
                "PropensityModel: family 'complement': X must have the source model's columns "
                f"{list(source.feature_names_in_)}"
            )
        self.estimator_ = None
        self.calibrator_ = None
        self.rfm_columns_ = self.rfm_edges_ = None
        self.bgnbd_columns_ = self.bgnbd_params_ = None
        self.scale_ = 1.0
        self.level_offset_ = 0.0
        self.level_factor_ = 1.0
        self.level_trend_ = float("nan")
        self.calibration_mode_ = "complement"
        self.calibration_rows_ = 0
        self.training_rows_ = source.training_rows_
        self.training_mean_ = 1.0 - source.training_mean_
        self._set_buckets(self._predict_array(X[latest] if latest is not None else X))
        return self

    def _relevel(self, X: np.ndarray, y: np.ndarray) -> None:
        """Match the mean prediction on the latest snapshot to its observed level.

        The calibration map was fitted on the scores of a model trained on the older
        snapshots; the final model, refitted on all of them, can score on another scale
        (different class mix, more trees). One offset on the log-odds (one factor for
        counts) restores the level of the most recent labeled period.
        """
        predicted = self._predict_raw(X, level="none")
        if self.kind == "count":
            self.level_factor_ = float(np.exp(_level_offset(predicted, y, self.kind)))
            return
        self.level_offset_ = _level_offset(predicted, y, self.kind)

    def _measure_trend(self, X: np.ndarray, y: np.ndarray, snapshot: np.ndarray) -> float:
        """Return the least-squares slope per day of the level offset across snapshots.

        Each snapshot's offset is measured on the model before any level (on a fixed
        sample of at most ``_LEVEL_ROWS`` rows: it is a mean). NaN with fewer than three
        snapshots.
        """
        times = np.unique(snapshot)
        if times.size < 3:
            return float("nan")
        rng = np.random.default_rng(0)
        offsets = []
        for t in times:
            rows = np.flatnonzero(snapshot == t)
            if rows.size > _LEVEL_ROWS:
                rows = np.sort(rng.choice(rows, _LEVEL_ROWS, replace=False))
            offsets.append(
                _level_offset(self._predict_raw(X[rows], level="none"), y[rows], self.kind)
            )
        days = _snapshot_days(times)
        return float(np.polyfit(days - days[-1], np.asarray(offsets), 1)[0])

    def _set_buckets(self, reference: np.ndarray) -> None:
        high = np.quantile(reference, 1.0 - self.high_share)
        medium = np.quantile(reference, 1.0 - self.high_share - self.medium_share)
        self.bucket_thresholds_ = np.array([medium, high], dtype=float)

    def _predict_array(self, X: np.ndarray) -> np.ndarray:
        # n_threads bounds fitting (many small fits oversubscribe a busy machine);
        # scoring large batches uses every core.
        return self._predict_raw(X)

    def _design(self, X: np.ndarray) -> np.ndarray:
        if self.rfm_edges_ is not None:
            return _rfm_score(X, self.rfm_columns_, self.rfm_edges_)
        if self.bgnbd_params_ is None:
            return X
        expected, _, active = _bgnbd_columns(
            X, self.bgnbd_columns_, self.bgnbd_params_, float(self.horizon_days)
        )
        if self.family == "bgnbd":
            if self.kind == "count":
                return np.log(expected + 1e-9).reshape(-1, 1)
            return _logit(active).reshape(-1, 1)
        return np.column_stack([X, _logit(active), np.log(expected + 1e-9)])

    def level_residual(self, X: Any, y: Any) -> float:
        """Return the level shift the model before any level needs to match ``y`` on ``X``.

        On the log-odds (log for counts). The difference of this residual between two
        snapshots is how much the level moved beyond what the features carry, e.g.
        into the season a year earlier: a value for ``level_shift``.

        Parameters
        ----------
        X : pandas.DataFrame
            Feature columns of one snapshot.
        y : array-like
            Its labels.

        Returns
        -------
        float
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return _level_offset(self._predict_raw(X, "none"), np.asarray(y, dtype=float), self.kind)

    def relevel_to(self, X: Any, y: Any) -> PropensityModel:
        """Set the level to the one observed on ``X, y`` and predict at it from now on.

        What ``relevel`` does in :meth:`fit` on the latest training snapshot, for a
        model fitted without it whose caller finds out of time that the latest labeled
        level (moved by ``level_shift``) serves better than the model's own.

        Parameters
        ----------
        X : pandas.DataFrame
            Feature columns of the latest labeled snapshot.
        y : array-like
            Its labels.

        Returns
        -------
        self
        """
        check_is_fitted(self)
        if self.family == "complement":
            raise ConfigError("PropensityModel: a complement model takes its source's level")
        X = validate_data(self, X, reset=False)
        self.relevel = True
        self._relevel(X, np.asarray(y, dtype=float))
        return self

    def _level_mode(self) -> str:
        if not self.relevel:
            return "none"
        return "trend" if self.level_trend else "latest"

    def _predict_raw(self, X: np.ndarray, level: str | None = None) -> np.ndarray:
        """Return predictions at a level of the model's own (``None``) or another.

        ``"none"``: no shift; ``"latest"``: shifted to the latest labeled snapshot (plus
        ``level_shift``); ``"trend"``: that, moved on by the trend across snapshots.
        """
        if self.family == "complement":
            return 1.0 - self.source._predict_raw(X, level)
        level = self._level_mode() if level is None else level
        shift = float(self.level_shift)
        if level == "trend" and np.isfinite(self.level_trend_):
            shift += self.level_trend_ * float(self.horizon_days)
        classify = self.kind != "count"
        raw = _raw_score(self.estimator_, self._design(X), classify)
        if not classify:
            factor = self.level_factor_ * np.exp(shift) if level != "none" else 1.0
            return raw * self.scale_ * factor
        if isinstance(self.calibrator_, IsotonicRegression):
            p = isotonic_probability(self.calibrator_, raw)
        else:
            p = self.calibrator_.predict_proba(raw.reshape(-1, 1))[:, 1]
        offset = self.level_offset_ + shift if level != "none" else 0.0
        if offset:
            p = expit(_logit(p) + offset)
        return p

    def expected_total(self, scores: Any, coverage: float = 0.9) -> tuple[float, float, float]:
        """Return the expected total of scored users (positives, or events) with an interval.

        The interval combines the outcome noise given the scores (Bernoulli; for counts
        Poisson scaled by ``count_dispersion_``) with the risk that the level moves
        between the latest labeled period and the scored one: with ``level_risk``, the
        totals at the level moved by -/+ k ``level_risk`` on the link scale
        (asymmetric); else how much the level moved between consecutive training
        snapshots (``level_sd_``, relative). k is Student's t quantile with as many
        degrees of freedom as moves measured (``level_risk_moves``,
        ``level_sd_moves_``), the normal one where that number is unknown.

        Parameters
        ----------
        scores : array-like
            Output of :meth:`predict` for the users to total.
        coverage : float
            Two-sided coverage of the interval, strictly between 0 and 1.

        Returns
        -------
        tuple of float
            ``total, lower, upper`` (``lower`` floored at 0).
        """
        check_is_fitted(self)
        _check_coverage(coverage)
        _check_level_risk(self.level_risk)
        # Models saved before these were stored keep the interval they had (normal
        # quantile, Poisson noise).
        risk_moves = self.level_risk_moves
        _check_level_risk_moves(risk_moves)
        p = np.asarray(scores, dtype=float)
        total = float(p.sum())
        if self.kind == "count":
            noise = getattr(self, "count_dispersion_", 1.0) * total
        else:
            noise = float(np.sum(p * (1.0 - p)))
        z = float(norm.ppf(0.5 + coverage / 2.0))
        if self.level_risk is not None:
            k = level_quantile(coverage, risk_moves)
            # The level moved by -/+ k level_risk on the link scale: asymmetric, and a
            # total of probabilities stays inside [0, n] however large the risk.
            down = total - float(shift_level(p, -k * self.level_risk, self.kind).sum())
            up = float(shift_level(p, k * self.level_risk, self.kind).sum()) - total
        else:
            level = 0.0 if not np.isfinite(self.level_sd_) else self.level_sd_
            sd_moves = getattr(self, "level_sd_moves_", 0) or None
            down = up = level_quantile(coverage, sd_moves) * total * level
        lower = total - np.sqrt(z**2 * noise + down**2)
        upper = total + np.sqrt(z**2 * noise + up**2)
        return total, max(float(lower), 0.0), float(upper)

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

    @available_if(_is_binary)
    def predict_proba(self, X: Any) -> np.ndarray:
        """Return ``[1 - p, p]`` per row (binary targets only).

        ``X`` is as for :meth:`predict`; the result has shape (n_rows, 2).
        """
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
