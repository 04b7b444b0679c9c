"""Distribution drift tests: PSI, Wasserstein, segment-share PSI, and their registry."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from segmentkit.config import DriftConfig
from segmentkit.drift._common import (
    DriftResult,
    _check_thresholds,
    _finite_values,
    _judged_result,
    _label_codes,
)
from segmentkit.drift.reference import FeatureReference, quantile_summary
from segmentkit.errors import (
    DataValidationError,
    InsufficientDataError,
)
from segmentkit.text import natural_key

#: Proportion that replaces an empty bin (on either side) before the PSI log ratio.
#: Without it one empty bin makes PSI infinite; with 1e-4 a bin that holds 1 % of
#: one side and nothing of the other adds about 0.046 to PSI.
PSI_EPSILON = 1e-4


def population_stability_index(
    expected: Sequence[float] | np.ndarray,
    actual: Sequence[float] | np.ndarray,
    epsilon: float = PSI_EPSILON,
) -> float:
    """PSI between two vectors of bin proportions.

    ``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` where every proportion below
    ``epsilon`` is first raised to ``epsilon`` (no renormalization).

    Examples
    --------
    >>> round(population_stability_index([0.5, 0.5], [0.25, 0.75]), 4)
    0.2747
    """
    e = np.maximum(np.asarray(expected, dtype=float), epsilon)
    a = np.maximum(np.asarray(actual, dtype=float), epsilon)
    if e.shape != a.shape:
        raise ValueError(f"expected and actual differ in length: {e.size} vs {a.size}")
    return float(np.sum((a - e) * np.log(a / e)))


def psi_test(
    reference: FeatureReference,
    current_values: Any,
    warn: float | None = 0.1,
    drift: float | None = 0.25,
) -> DriftResult:
    """Test a feature with the population stability index over the reference bins.

    Empty bins (on either side) count as :data:`PSI_EPSILON`. Non-finite current
    values are dropped and counted in ``details["n_missing"]``.

    Parameters
    ----------
    reference : FeatureReference
        Bins and proportions at training time.
    current_values : array-like
        The feature in the new snapshot.
    warn, drift : float or None
        PSI thresholds (``>=``); common practice is 0.1 and 0.25.

    Returns
    -------
    DriftResult
        ``test="psi"``, ``subject=reference.name``.

    Raises
    ------
    InsufficientDataError
        If no finite current value is left.
    """
    _check_thresholds(warn, drift, f"psi {reference.name!r}")
    values, n_missing = _finite_values(current_values, reference.name)
    counts = np.bincount(reference.bin_index(values), minlength=reference.n_bins)
    current = counts / values.size
    score = population_stability_index(reference.proportions, current)
    return _judged_result(
        "psi",
        reference.name,
        score,
        warn,
        drift,
        {
            "n": int(values.size),
            "n_missing": n_missing,
            "reference_proportions": list(reference.proportions),
            "current_proportions": [float(c) for c in current],
            "epsilon": PSI_EPSILON,
        },
    )


def wasserstein_test(
    reference: FeatureReference,
    current_values: Any,
    warn: float | None = None,
    drift: float | None = None,
) -> DriftResult:
    """Wasserstein-1 distance between the reference and current distributions.

    ``W1 = integral over u in [0, 1] of |Q_ref(u) - Q_cur(u)|``, computed by the
    trapezoid rule on the stored reference quantiles and the current quantiles at
    the same levels; a shift of every value by ``c`` gives ``W1 = |c|``.

    The score is ``W1 / reference.std`` (distance in reference standard
    deviations, comparable across features); for a constant reference it is
    ``W1`` itself. The raw distance is in ``details["distance"]``. Without
    thresholds the test is informational and its status is ``OK``.

    Raises
    ------
    InsufficientDataError
        If no finite current value is left.
    """
    _check_thresholds(warn, drift, f"wasserstein {reference.name!r}")
    values, n_missing = _finite_values(current_values, reference.name)
    ref_q = np.asarray(reference.quantiles, dtype=float)
    levels = np.linspace(0.0, 1.0, ref_q.size)
    # Summarized like the reference (tails clipped under its privacy floor).
    cur_q = quantile_summary(values, ref_q.size, reference.min_group)
    distance = float(np.trapezoid(np.abs(cur_q - ref_q), levels))
    unit = reference.std if reference.std > 0 else 1.0
    score = distance / unit
    return _judged_result(
        "wasserstein",
        reference.name,
        score,
        warn,
        drift,
        {
            "distance": distance,
            "reference_std": reference.std,
            "n": int(values.size),
            "n_missing": n_missing,
        },
    )


def share_psi_test(
    reference_shares: Mapping[Hashable, float],
    current_labels: Any,
    warn: float | None = 0.1,
    drift: float | None = 0.25,
) -> DriftResult:
    """PSI of the segment mix: reference shares vs the shares of ``current_labels``.

    Segments are matched by ``str(label)`` (JSON turns integer keys into strings).
    A segment present on one side only has share 0 on the other, counted as
    :data:`PSI_EPSILON`.

    Parameters
    ----------
    reference_shares : mapping of segment to float
        Share of each segment at training; non-negative, summing to 1.
    current_labels : array-like
        Segment of each user in the new snapshot.
    warn, drift : float or None
        PSI thresholds (``>=``).

    Raises
    ------
    DataValidationError
        If the reference shares are negative or do not sum to 1, or labels are missing.
    InsufficientDataError
        If there are no current labels.
    """
    _check_thresholds(warn, drift, "share_psi")
    ref = {str(k): float(v) for k, v in reference_shares.items()}
    if not ref:
        raise DataValidationError("reference segment shares are empty")
    if (
        any(not math.isfinite(v) or v < 0 for v in ref.values())
        or abs(sum(ref.values()) - 1) > 1e-3
    ):
        raise DataValidationError(
            f"reference segment shares must be >= 0 and sum to 1, got sum {sum(ref.values()):.4f}"
        )
    codes, names = _label_codes(current_labels, "current segment labels")
    if codes.size == 0:
        raise InsufficientDataError("no current segment labels to compare with the reference mix")
    counts = dict(zip(names, np.bincount(codes, minlength=len(names)).tolist(), strict=True))
    segments = sorted(set(ref) | set(names), key=natural_key)
    expected = [ref.get(s, 0.0) for s in segments]
    actual = [counts.get(s, 0) / codes.size for s in segments]
    score = population_stability_index(expected, actual)
    return _judged_result(
        "share_psi",
        "segments",
        score,
        warn,
        drift,
        {
            "n": int(codes.size),
            "epsilon": PSI_EPSILON,
            "segments": [
                {"segment": s, "reference_share": e, "current_share": a}
                for s, e, a in zip(segments, expected, actual, strict=True)
            ],
        },
    )


@dataclass(frozen=True)
class StatTest:
    """A feature drift test and the :class:`DriftConfig` fields holding its thresholds."""

    name: str
    func: Callable[[FeatureReference, Any, float | None, float | None], DriftResult]
    warn_setting: str | None = None
    drift_setting: str | None = None

    def thresholds(self, config: DriftConfig) -> tuple[float | None, float | None]:
        """Warn and drift thresholds read from ``config`` (None when unset)."""
        warn = getattr(config, self.warn_setting) if self.warn_setting else None
        drift = getattr(config, self.drift_setting) if self.drift_setting else None
        return warn, drift


#: Feature tests run by :func:`run_drift_tests`, by name.
FEATURE_TESTS: Mapping[str, StatTest] = MappingProxyType(
    {
        "psi": StatTest("psi", psi_test, "psi_warn", "psi_drift"),
        "wasserstein": StatTest("wasserstein", wasserstein_test),
    }
)
