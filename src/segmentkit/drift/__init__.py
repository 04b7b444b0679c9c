"""Drift tests run when a model is refreshed.

Every test is a pure function: it takes what the champion stored at training
(the *reference*) and what the new snapshot holds (the *current* data) and
returns a frozen result holding a score, the thresholds it was judged against
and a status:

``OK``
    The score is on the safe side of the warning threshold (or the test has no
    thresholds and is informational). Nothing to do.
``WARN``
    The score crossed the warning threshold but not the drift threshold: read the
    report before promoting the challenger.
``DRIFT``
    The score crossed the drift threshold. The refresh exits with code 3.

Scores where larger is worse (PSI, share PSI, AUC drop) reach a status when
``score >= threshold``; the adjusted Rand index, where smaller is worse, when
``score < threshold``. A report's status is the worst status of its parts
(``OK < WARN < DRIFT``).

The module does no I/O: :class:`DriftReport` renders itself as a JSON-safe dict,
a Markdown summary and a flat dict of aggregate metrics, and the caller writes
or logs them.
"""

from segmentkit.drift._common import DriftResult
from segmentkit.drift.agreement import (
    GONE,
    MIN_JACCARD,
    NEW_USER,
    AgreementResult,
    MigrationResult,
    SegmentMatch,
    migration_matrix,
    segment_agreement,
)
from segmentkit.drift.backtest import BacktestResult, CalibrationBin, propensity_backtest
from segmentkit.drift.reference import N_QUANTILES, FeatureReference, build_feature_reference
from segmentkit.drift.report import DRIFT_EXIT_CODE, DriftReport, run_drift_tests
from segmentkit.drift.stats import (
    FEATURE_TESTS,
    PSI_EPSILON,
    StatTest,
    population_stability_index,
    psi_test,
    share_psi_test,
    wasserstein_test,
)

__all__ = [
    "DRIFT_EXIT_CODE",
    "FEATURE_TESTS",
    "GONE",
    "MIN_JACCARD",
    "NEW_USER",
    "N_QUANTILES",
    "PSI_EPSILON",
    "AgreementResult",
    "BacktestResult",
    "CalibrationBin",
    "DriftReport",
    "DriftResult",
    "FeatureReference",
    "MigrationResult",
    "SegmentMatch",
    "StatTest",
    "build_feature_reference",
    "migration_matrix",
    "population_stability_index",
    "propensity_backtest",
    "psi_test",
    "run_drift_tests",
    "segment_agreement",
    "share_psi_test",
    "wasserstein_test",
]
