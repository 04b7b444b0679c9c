"""The calibrated checks of a refresh: which feature tests judge, and which only report."""

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pandas as pd

from segmentkit.config import DriftConfig
from segmentkit.drift import DriftResult
from segmentkit.drift.checks import _feature_tests, _with_log_start
from segmentkit.drift.markdown import _status
from segmentkit.drift.reference import build_feature_reference
from segmentkit.report.html import _drift_status


def _one_cohort_a_quarter_on() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tenure of one cohort at the champion's snapshot, a quarter later and before.

    A fifth of the cohort arrived on its first day (ties at the bottom bin), as
    arrivals bunch in a launch; the rest over the next three months.
    """
    rng = np.random.default_rng(0)
    then = np.r_[np.full(1000, 365.0), rng.integers(366, 456, 4000).astype(float)]
    return then, then + 91, then - 91


def test_tenure_is_reported_not_judged():
    then, now, baseline = _one_cohort_a_quarter_on()
    for name in ("tenure_days", "recency_days"):
        reference = build_feature_reference(pd.DataFrame({name: then}))[name]
        (result,) = _feature_tests(reference, then, now, baseline, DriftConfig())
        # Both moves are the same shift, but the shifted copies land in bins of unequal
        # reference shares: PSI 8.67 since the champion against 6.64 from ageing.
        assert result.test == "aged_psi"
        assert result.details["raw_psi"] > result.details["expected_psi"] + 1.0
        if name == "tenure_days":
            assert (result.warn_threshold, result.drift_threshold) == (None, None)
            assert result.status == "OK"
            assert _status(result) == _drift_status(result) == "not judged"
        else:
            # Any other feature moving so is judged, and this one would be DRIFT.
            assert result.status == "DRIFT"
            assert _status(result) == _drift_status(result) == "DRIFT"


def _log_starting(day: str) -> SimpleNamespace:
    return SimpleNamespace(first_event=day + "T00:00:00")


def test_history_tests_that_fired_say_the_log_starts_after_the_champions():
    fired = DriftResult("history", "tenure_days", 8.3, 0.1, 0.25, "DRIFT", {"n": 5})
    quiet = DriftResult("history", "orders", 0.0, 0.1, 0.25, "OK", {"n": 5})
    history = {"tenure_days": fired, "orders": quiet}
    champion_first = dt.datetime(1997, 1, 1)
    marked = _with_log_start(history, _log_starting("1997-07-01"), champion_first)
    assert marked["tenure_days"].details == {
        "n": 5,
        "log_first_event": "1997-07-01T00:00:00",
        "champion_first_event": "1997-01-01T00:00:00",
    }
    assert marked["orders"] is quiet  # nothing to explain
    # The same start, an earlier one, or no stored start: nothing added.
    for log, first in (
        (_log_starting("1997-01-01"), champion_first),
        (_log_starting("1996-12-01"), champion_first),
        (_log_starting("1997-07-01"), None),
    ):
        assert _with_log_start(history, log, first) == history
