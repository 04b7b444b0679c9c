"""Backtest of the champion's propensities once their horizon has elapsed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, roc_auc_score

from segmentkit.drift._common import (
    DriftResult,
    Status,
    _check_thresholds,
    _count,
    _judge,
    _read_result,
)
from segmentkit.errors import (
    DataValidationError,
    InsufficientDataError,
)
from segmentkit.serialization import to_jsonable


@dataclass(frozen=True)
class CalibrationBin:
    """Users of one score decile: mean predicted probability vs observed rate."""

    n: int
    mean_predicted: float
    observed_rate: float

    def __post_init__(self) -> None:
        _count(self.n, "n")


@dataclass(frozen=True)
class BacktestResult:
    """The champion's propensity scores judged against outcomes now known.

    Attributes
    ----------
    target : str
        Propensity target name.
    n : int
        Users with a score and an outcome.
    auc, brier : float
        ROC AUC and Brier score now.
    training_auc, training_brier : float
        The same at training.
    predicted_total, observed_total : float
        Sum of predicted probabilities and number of positive outcomes.
    calibration : tuple of CalibrationBin
        Ten equal-count bins by predicted score, lowest first.
    warn_threshold, drift_threshold : float
        AUC drops that give WARN / DRIFT (``>=``).
    status : {"OK", "WARN", "DRIFT"}
        Verdict from :attr:`auc_drop`.
    """

    target: str
    n: int
    auc: float
    brier: float
    training_auc: float
    training_brier: float
    predicted_total: float
    observed_total: float
    calibration: tuple[CalibrationBin, ...]
    warn_threshold: float | None
    drift_threshold: float | None
    status: Status

    def __post_init__(self) -> None:
        _count(self.n, "n")

    @property
    def auc_drop(self) -> float:
        """``training_auc - auc`` (positive when the model got worse)."""
        return self.training_auc - self.auc

    @property
    def brier_change(self) -> float:
        """``brier - training_brier`` (positive when the model got worse)."""
        return self.brier - self.training_brier

    @property
    def result(self) -> DriftResult:
        """The AUC-drop verdict as a :class:`DriftResult`."""
        return DriftResult(
            "auc_drop",
            self.target,
            self.auc_drop,
            self.warn_threshold,
            self.drift_threshold,
            self.status,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-safe values, with the derived AUC drop and Brier change."""
        derived = {"auc_drop": self.auc_drop, "brier_change": self.brier_change}
        return {**to_jsonable(self), **to_jsonable(derived)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BacktestResult:
        """Rebuild a result written by :meth:`to_dict`.

        ``auc_drop`` and ``brier_change`` are derived, so their stored values are
        not read.

        Raises
        ------
        DataValidationError
            If a key is missing or a value is malformed.
        """
        target = data.get("target", "?") if isinstance(data, Mapping) else "?"
        return _read_result(cls, data, f"backtest {target!r}")


def propensity_backtest(
    target: str,
    scores: Any,
    outcomes: Any,
    training_auc: float,
    training_brier: float,
    warn_drop: float | None = 0.05,
    drift_drop: float | None = 0.1,
    *,
    n_bins: int = 10,
) -> BacktestResult:
    """Score the champion's old predictions against the outcomes now observed.

    Parameters
    ----------
    target : str
        Target name, used in messages and metric names.
    scores : array-like
        Predicted probabilities in [0, 1], made at the old snapshot.
    outcomes : array-like
        Observed 0/1 outcomes of the same users over the horizon.
    training_auc, training_brier : float
        The model's AUC and Brier score at training.
    warn_drop, drift_drop : float or None
        AUC drops (``training_auc - auc``) that give WARN / DRIFT.
    n_bins : int, default 10
        Equal-count calibration bins by predicted score.

    Raises
    ------
    DataValidationError
        If lengths differ, scores are outside [0, 1] or not finite, outcomes are
        not 0/1, or training figures are out of range.
    InsufficientDataError
        If there are no users, or all outcomes are of one class (AUC is undefined).
    """
    _check_thresholds(warn_drop, drift_drop, f"backtest {target!r}")
    p = np.asarray(scores, dtype=float).ravel()
    y_raw = np.asarray(outcomes, dtype=float).ravel()
    if p.size != y_raw.size:
        raise DataValidationError(f"backtest {target!r}: {p.size} scores but {y_raw.size} outcomes")
    if p.size == 0:
        raise InsufficientDataError(f"backtest {target!r}: no users with a score and an outcome")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise DataValidationError(f"backtest {target!r}: scores must be probabilities in [0, 1]")
    if not np.all(np.isin(y_raw, (0.0, 1.0))):
        raise DataValidationError(f"backtest {target!r}: outcomes must be 0 or 1")
    for name, value in (("training_auc", training_auc), ("training_brier", training_brier)):
        if not (math.isfinite(value) and 0 <= value <= 1):
            raise DataValidationError(f"backtest {target!r}: {name} must be in [0, 1]")
    y = y_raw.astype(np.int64)
    positives = int(y.sum())
    if positives in (0, y.size):
        kind = "positive (1)" if positives else "negative (0)"
        raise InsufficientDataError(
            f"backtest {target!r}: all {y.size} outcomes are {kind}; AUC needs both classes"
        )
    auc = float(roc_auc_score(y, p))
    brier = float(brier_score_loss(y, p))
    order = np.argsort(p, kind="stable")
    bins = [
        CalibrationBin(int(idx.size), float(p[idx].mean()), float(y[idx].mean()))
        for idx in np.array_split(order, min(n_bins, p.size))
    ]
    status = _judge(training_auc - auc, warn_drop, drift_drop)
    return BacktestResult(
        target=target,
        n=int(p.size),
        auc=auc,
        brier=brier,
        training_auc=float(training_auc),
        training_brier=float(training_brier),
        predicted_total=float(p.sum()),
        observed_total=float(positives),
        calibration=tuple(bins),
        warn_threshold=warn_drop,
        drift_threshold=drift_drop,
        status=status,
    )
