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

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, brier_score_loss, roc_auc_score

from segmentkit.config import DriftConfig
from segmentkit.errors import (
    BundleError,
    ConfigError,
    DataValidationError,
    InsufficientDataError,
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

Status = Literal["OK", "WARN", "DRIFT"]

#: Proportion that replaces an empty bin (on either side) before the PSI log ratio.
#: Without it one empty bin makes PSI infinite; with 1e-4 a bin that holds 1 % of
#: one side and nothing of the other adds about 0.046 to PSI.
PSI_EPSILON = 1e-4
#: Number of reference quantiles (0 %, 1 %, ..., 100 %) kept for Wasserstein.
N_QUANTILES = 101
#: Smallest Jaccard for a champion and a challenger segment to count as the same segment.
MIN_JACCARD = 0.1
#: Row of the migration matrix for users absent from the previous snapshot.
NEW_USER = "(new user)"
#: Column of the migration matrix for users absent from the current snapshot.
GONE = "(gone)"
#: Exit code of a refresh whose report status is ``DRIFT``.
DRIFT_EXIT_CODE = 3

_LEVEL: dict[str, int] = {"OK": 0, "WARN": 1, "DRIFT": 2}


# --------------------------------------------------------------------------- helpers


def _worst(statuses: Iterable[str]) -> Status:
    worst: Status = "OK"
    for status in statuses:
        if _LEVEL[status] > _LEVEL[worst]:
            worst = status  # type: ignore[assignment]
    return worst


def _check_thresholds(
    warn: float | None, drift: float | None, what: str, *, higher_is_worse: bool = True
) -> None:
    for name, value in (("warn", warn), ("drift", drift)):
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"{what}: {name} threshold must be a finite number, got {value!r}")
    if warn is None or drift is None:
        return
    if higher_is_worse and warn > drift:
        raise ConfigError(f"{what}: expected warn <= drift, got warn={warn}, drift={drift}")
    if not higher_is_worse and warn < drift:
        raise ConfigError(f"{what}: expected warn >= drift, got warn={warn}, drift={drift}")


def _judge(
    score: float, warn: float | None, drift: float | None, *, higher_is_worse: bool = True
) -> Status:
    """Status of ``score``: ``>= threshold`` when larger is worse, ``< threshold`` otherwise."""

    def crossed(threshold: float | None) -> bool:
        if threshold is None:
            return False
        return score >= threshold if higher_is_worse else score < threshold

    if crossed(drift):
        return "DRIFT"
    if crossed(warn):
        return "WARN"
    return "OK"


def _json_safe(value: Any) -> Any:
    """Plain Python values only: numpy scalars unwrapped, NaN and infinities as None."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer | int):
        return int(value)
    if isinstance(value, np.floating | float):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _natural_key(label: str) -> tuple[int, float, str]:
    """Sort integer-like labels numerically and before the others."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _finite_values(values: Any, subject: str) -> tuple[np.ndarray, int]:
    """Values as floats without NaN or infinities, and how many were dropped."""
    try:
        array = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise DataValidationError(f"feature {subject!r}: current values are not numeric") from None
    finite = np.isfinite(array)
    kept = array[finite]
    if kept.size == 0:
        raise InsufficientDataError(
            f"feature {subject!r}: no finite current values (got {array.size} values)"
        )
    return kept, int(array.size - kept.size)


def _label_codes(labels: Any, what: str) -> tuple[np.ndarray, list[str]]:
    """Codes into a list of distinct labels as strings (``1`` and ``"1"`` are one label)."""
    codes, uniques = pd.factorize(np.asarray(labels, dtype=object).ravel(), use_na_sentinel=True)
    if (codes < 0).any():
        raise DataValidationError(f"{what}: {int((codes < 0).sum())} missing segment labels")
    names = sorted({str(u) for u in uniques}, key=_natural_key)
    position = {name: i for i, name in enumerate(names)}
    remap = np.array([position[str(u)] for u in uniques], dtype=np.int64)
    return remap[codes], names


def _metric_key(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", text)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _number(value: Any) -> float:
    """Read a JSON number as a float; None (how ``to_dict`` writes NaN) becomes NaN."""
    if isinstance(value, bool) or not (value is None or isinstance(value, int | float)):
        raise TypeError(f"expected a number, got {value!r}")
    return math.nan if value is None else float(value)


def _optional_number(value: Any) -> float | None:
    """Read a JSON number as a float, or None (an unset threshold stays unset)."""
    return None if value is None else _number(value)


def _count(value: Any) -> int:
    """Read a JSON integer (a count of users or rows)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"expected a non-negative integer, got {value!r}")
    return value


def _status_of(value: Any) -> Status:
    if value not in _LEVEL:
        raise ValueError(f"unknown status {value!r}; expected one of {list(_LEVEL)}")
    return value


def _from_json(what: str, data: Any, build: Callable[[Mapping[str, Any]], Any]) -> Any:
    """Run ``build(data)``; turn a missing key or a bad value into a DataValidationError."""
    if not isinstance(data, Mapping):
        raise DataValidationError(f"{what}: expected a JSON object, got {type(data).__name__}")
    try:
        return build(data)
    except DataValidationError:
        raise
    except KeyError as exc:
        raise DataValidationError(f"{what}: missing key {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise DataValidationError(f"{what} is malformed: {exc}") from None


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DriftResult:
    """Outcome of one drift test.

    Attributes
    ----------
    test : str
        Test name, e.g. ``"psi"``, ``"wasserstein"``, ``"share_psi"``, ``"ari"``.
    subject : str
        What was tested: a feature name, ``"segments"``, a target name.
    score : float
        The test statistic.
    warn_threshold, drift_threshold : float or None
        Thresholds the score was judged against (None: not judged).
    status : {"OK", "WARN", "DRIFT"}
        Verdict.
    details : dict
        JSON-safe extras (sample sizes, per-bin or per-segment proportions, ...).
    """

    test: str
    subject: str
    score: float
    warn_threshold: float | None
    drift_threshold: float | None
    status: Status
    details: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def drifted(self) -> bool:
        """Whether the status is ``DRIFT``."""
        return self.status == "DRIFT"

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-safe values."""
        return _json_safe(
            {
                "test": self.test,
                "subject": self.subject,
                "score": self.score,
                "warn_threshold": self.warn_threshold,
                "drift_threshold": self.drift_threshold,
                "status": self.status,
                "details": self.details,
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftResult:
        """Rebuild a result written by :meth:`to_dict` (a None score reads back as NaN).

        Raises
        ------
        DataValidationError
            If a key is missing or a value is malformed.
        """
        subject = data.get("subject", "?") if isinstance(data, Mapping) else "?"
        return _from_json(
            f"drift result {subject!r}",
            data,
            lambda d: cls(
                test=str(d["test"]),
                subject=str(d["subject"]),
                score=_number(d["score"]),
                warn_threshold=_optional_number(d.get("warn_threshold")),
                drift_threshold=_optional_number(d.get("drift_threshold")),
                status=_status_of(d["status"]),
                details=dict(d.get("details") or {}),
            ),
        )


# --------------------------------------------------------------------------- reference


@dataclass(frozen=True)
class FeatureReference:
    """Distribution of one feature at training time, kept in the model bundle.

    PSI bins are ``(-inf, e0], (e0, e1], ..., (e_last, +inf)`` where ``edges``
    holds the interior cut points ``e0 < e1 < ...``: the reference quantiles at
    ``1/n_bins, ..., (n_bins-1)/n_bins`` (inverted-CDF method, so every edge is an
    observed value) with ties removed. A discrete or skewed
    feature therefore gets fewer bins (a constant one gets ``(-inf, c], (c, +inf)``),
    and current values outside the reference range land in the outer bins.

    Attributes
    ----------
    name : str
        Feature name.
    edges : tuple of float
        Interior bin edges, strictly increasing.
    proportions : tuple of float
        Share of the reference data in each bin (``len(edges) + 1`` values).
    quantiles : tuple of float
        Reference quantiles at ``linspace(0, 1, len(quantiles))`` (for Wasserstein).
    mean, std : float
        Reference mean and population standard deviation.
    n : int
        Number of finite reference values.
    """

    name: str
    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    quantiles: tuple[float, ...]
    mean: float
    std: float
    n: int

    def __post_init__(self) -> None:
        if len(self.proportions) != len(self.edges) + 1:
            raise ValueError(
                f"feature {self.name!r}: {len(self.edges)} edges need "
                f"{len(self.edges) + 1} proportions, got {len(self.proportions)}"
            )
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"feature {self.name!r}: edges must be strictly increasing")
        if len(self.quantiles) < 2:
            raise ValueError(f"feature {self.name!r}: need at least 2 quantiles")
        if abs(sum(self.proportions) - 1.0) > 1e-6 or min(self.proportions) < 0:
            raise ValueError(f"feature {self.name!r}: proportions must be >= 0 and sum to 1")

    @property
    def n_bins(self) -> int:
        """Number of PSI bins."""
        return len(self.proportions)

    @property
    def bin_edges(self) -> np.ndarray:
        """All bin edges, with ``-inf`` and ``+inf`` at the ends."""
        return np.concatenate([[-np.inf], np.asarray(self.edges, dtype=float), [np.inf]])

    def bin_index(self, values: Any) -> np.ndarray:
        """Bin of each value: ``i`` such that ``edges[i-1] < value <= edges[i]``."""
        return np.searchsorted(np.asarray(self.edges, dtype=float), values, side="left")

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe values that :meth:`from_dict` reads back."""
        return {
            "name": self.name,
            "edges": [float(e) for e in self.edges],
            "proportions": [float(p) for p in self.proportions],
            "quantiles": [float(q) for q in self.quantiles],
            "mean": float(self.mean),
            "std": float(self.std),
            "n": int(self.n),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureReference:
        """Rebuild a reference written by :meth:`to_dict`.

        Raises
        ------
        BundleError
            If a key is missing or a value is malformed.
        """
        name = data.get("name", "?") if isinstance(data, Mapping) else "?"
        try:
            return cls(
                name=str(data["name"]),
                edges=tuple(float(e) for e in data["edges"]),
                proportions=tuple(float(p) for p in data["proportions"]),
                quantiles=tuple(float(q) for q in data["quantiles"]),
                mean=float(data["mean"]),
                std=float(data["std"]),
                n=int(data["n"]),
            )
        except KeyError as exc:
            raise BundleError(f"feature reference {name!r}: missing key {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise BundleError(f"feature reference {name!r} is malformed: {exc}") from None


def _reference_of(name: str, values: np.ndarray, n_bins: int) -> FeatureReference:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise InsufficientDataError(f"feature {name!r}: no finite reference values")
    # Observed values as cut points (inverted CDF): no empty bins between the
    # values of a discrete feature, and each edge's mass stays in the bin it closes.
    cuts = np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1)[1:-1], method="inverted_cdf")
    edges = np.unique(cuts)
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=edges.size + 1)
    quantiles = np.quantile(finite, np.linspace(0.0, 1.0, N_QUANTILES))
    return FeatureReference(
        name=name,
        edges=tuple(float(e) for e in edges),
        proportions=tuple(float(c) for c in counts / finite.size),
        quantiles=tuple(float(q) for q in quantiles),
        mean=float(finite.mean()),
        std=float(finite.std()),
        n=int(finite.size),
    )


def build_feature_reference(
    features: pd.DataFrame, n_bins: int = 10, *, exclude: Sequence[str] = ("user_id",)
) -> dict[str, FeatureReference]:
    """Summarize every numeric feature for later drift tests.

    Parameters
    ----------
    features : pandas.DataFrame
        Feature table at training time (e.g. from :func:`segmentkit.build_features`).
    n_bins : int, default 10
        Number of quantile bins for PSI before ties are merged.
    exclude : sequence of str, default ("user_id",)
        Columns never summarized, even when numeric. Non-numeric columns are skipped.

    Returns
    -------
    dict of str to FeatureReference
        In column order. ``{k: v.to_dict() for k, v in ...}`` is JSON-serializable.

    Raises
    ------
    ConfigError
        If ``n_bins < 2``.
    InsufficientDataError
        If the table has no rows, no numeric feature, or a feature has no finite value.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "orders": [0, 0, 1, 3]})
    >>> ref = build_feature_reference(table, n_bins=4)["orders"]
    >>> ref.edges, ref.proportions
    ((0.0, 1.0), (0.5, 0.25, 0.25))
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 2:
        raise ConfigError(f"drift.n_bins: expected an integer >= 2, got {n_bins!r}")
    if len(features) == 0:
        raise InsufficientDataError("cannot build a feature reference from an empty table")
    skipped = set(exclude)
    references: dict[str, FeatureReference] = {}
    for column in features.columns:
        name = str(column)
        if name in skipped or not pd.api.types.is_numeric_dtype(features[column]):
            continue
        values = features[column].to_numpy(dtype=float, na_value=np.nan)
        references[name] = _reference_of(name, values, int(n_bins))
    if not references:
        raise InsufficientDataError(
            f"no numeric feature column to summarize among {[str(c) for c in features.columns]}"
        )
    return references


# --------------------------------------------------------------------------- stat tests


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
    return DriftResult(
        test="psi",
        subject=reference.name,
        score=score,
        warn_threshold=warn,
        drift_threshold=drift,
        status=_judge(score, warn, drift),
        details={
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
    cur_q = np.quantile(values, levels)
    distance = float(np.trapezoid(np.abs(cur_q - ref_q), levels))
    unit = reference.std if reference.std > 0 else 1.0
    score = distance / unit
    return DriftResult(
        test="wasserstein",
        subject=reference.name,
        score=score,
        warn_threshold=warn,
        drift_threshold=drift,
        status=_judge(score, warn, drift),
        details={
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
    segments = sorted(set(ref) | set(names), key=_natural_key)
    expected = [ref.get(s, 0.0) for s in segments]
    actual = [counts.get(s, 0) / codes.size for s in segments]
    score = population_stability_index(expected, actual)
    return DriftResult(
        test="share_psi",
        subject="segments",
        score=score,
        warn_threshold=warn,
        drift_threshold=drift,
        status=_judge(score, warn, drift),
        details={
            "n": int(codes.size),
            "epsilon": PSI_EPSILON,
            "segments": [
                {"segment": s, "reference_share": e, "current_share": a}
                for s, e, a in zip(segments, expected, actual, strict=True)
            ],
        },
    )


# --------------------------------------------------------------------------- agreement


@dataclass(frozen=True)
class SegmentMatch:
    """A champion segment and the challenger segment matched to it."""

    champion: str
    challenger: str
    jaccard: float
    centroid_shift: float | None = None


@dataclass(frozen=True)
class AgreementResult:
    """How well the challenger's segments reproduce the champion's on the same users.

    Attributes
    ----------
    ari : float
        Adjusted Rand index between the two labelings.
    jaccard : dict of str to float
        Per champion segment, Jaccard with its matched challenger segment (0 if none).
    matches : tuple of SegmentMatch
        Matched pairs with Jaccard >= ``min_jaccard``.
    appeared : tuple of str
        Challenger segments matched to no champion segment.
    vanished : tuple of str
        Champion segments matched to no challenger segment.
    n_users : int
        Users compared.
    warn_threshold, drift_threshold : float or None
        ARI thresholds (status when ``ari < threshold``).
    status : {"OK", "WARN", "DRIFT"}
        Verdict from the ARI.
    """

    ari: float
    jaccard: dict[str, float]
    matches: tuple[SegmentMatch, ...]
    appeared: tuple[str, ...]
    vanished: tuple[str, ...]
    n_users: int
    warn_threshold: float | None
    drift_threshold: float | None
    status: Status

    @property
    def result(self) -> DriftResult:
        """The ARI verdict as a :class:`DriftResult`."""
        return DriftResult(
            "ari", "segments", self.ari, self.warn_threshold, self.drift_threshold, self.status
        )

    @property
    def centroid_shift_max(self) -> float | None:
        """Largest centroid shift among matched pairs (None without centroids)."""
        shifts = [m.centroid_shift for m in self.matches if m.centroid_shift is not None]
        return max(shifts) if shifts else None

    def with_thresholds(self, warn: float | None, drift: float | None) -> AgreementResult:
        """Return a copy judged against other ARI thresholds."""
        _check_thresholds(warn, drift, "ari", higher_is_worse=False)
        status = _judge(self.ari, warn, drift, higher_is_worse=False)
        return replace(self, warn_threshold=warn, drift_threshold=drift, status=status)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-safe values."""
        return _json_safe(
            {
                "ari": self.ari,
                "jaccard": self.jaccard,
                "matches": [
                    {
                        "champion": m.champion,
                        "challenger": m.challenger,
                        "jaccard": m.jaccard,
                        "centroid_shift": m.centroid_shift,
                    }
                    for m in self.matches
                ],
                "appeared": list(self.appeared),
                "vanished": list(self.vanished),
                "n_users": self.n_users,
                "warn_threshold": self.warn_threshold,
                "drift_threshold": self.drift_threshold,
                "status": self.status,
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgreementResult:
        """Rebuild a result written by :meth:`to_dict`.

        Raises
        ------
        DataValidationError
            If a key is missing or a value is malformed.
        """

        def build(d: Mapping[str, Any]) -> AgreementResult:
            return cls(
                ari=_number(d["ari"]),
                jaccard={str(k): _number(v) for k, v in d["jaccard"].items()},
                matches=tuple(
                    SegmentMatch(
                        champion=str(m["champion"]),
                        challenger=str(m["challenger"]),
                        jaccard=_number(m["jaccard"]),
                        centroid_shift=_optional_number(m.get("centroid_shift")),
                    )
                    for m in d["matches"]
                ),
                appeared=tuple(str(s) for s in d["appeared"]),
                vanished=tuple(str(s) for s in d["vanished"]),
                n_users=_count(d["n_users"]),
                warn_threshold=_optional_number(d.get("warn_threshold")),
                drift_threshold=_optional_number(d.get("drift_threshold")),
                status=_status_of(d["status"]),
            )

        return _from_json("segment agreement", data, build)


def _centroid_of(centroids: Any, label: Any, which: str) -> np.ndarray:
    if isinstance(centroids, Mapping):
        for key in (label, str(label)):
            if key in centroids:
                return np.asarray(centroids[key], dtype=float).ravel()
        raise DataValidationError(f"{which} centroids have no entry for segment {label!r}")
    array = np.asarray(centroids, dtype=float)
    if array.ndim != 2:
        raise DataValidationError(f"{which} centroids must be a 2-D array or a mapping")
    try:
        row = int(label)
    except (TypeError, ValueError):
        raise DataValidationError(
            f"{which} centroids given as an array need integer segment ids, got {label!r}"
        ) from None
    if not 0 <= row < array.shape[0]:
        raise DataValidationError(
            f"{which} centroids have {array.shape[0]} rows, no row for segment {label!r}"
        )
    return array[row]


def _centroid_shift(a: np.ndarray, b: np.ndarray, scale: np.ndarray | None) -> float:
    if a.shape != b.shape:
        raise DataValidationError(f"centroids differ in length: {a.size} vs {b.size} features")
    diff = a - b
    if scale is not None:
        if scale.shape != diff.shape:
            raise DataValidationError(f"scale has {scale.size} values for {diff.size} features")
        diff = diff / scale
    return float(np.linalg.norm(diff) / math.sqrt(diff.size))


def segment_agreement(
    champion_labels: Any,
    challenger_labels: Any,
    champion_centroids: Any = None,
    challenger_centroids: Any = None,
    scale: Any = None,
    *,
    ari_warn: float | None = 0.8,
    ari_drift: float | None = 0.6,
    min_jaccard: float = MIN_JACCARD,
) -> AgreementResult:
    """Compare the champion's and the challenger's segments of the same users.

    Segments are paired by an optimal one-to-one matching that maximizes the
    total Jaccard index ``|A ∩ B| / |A ∪ B|`` computed from the contingency table
    (:func:`scipy.optimize.linear_sum_assignment`); the labels themselves need
    not agree. A pair with Jaccard below ``min_jaccard`` is not a match: its
    champion segment *vanished* and its challenger segment *appeared*.

    Parameters
    ----------
    champion_labels, challenger_labels : array-like
        Segment of each user, same users in the same order.
    champion_centroids, challenger_centroids : mapping or 2-D array, optional
        Centroids by segment (a 2-D array is indexed by integer segment id), in a
        standardized feature space unless ``scale`` is given.
    scale : array-like, optional
        Per-feature scale dividing centroid differences (e.g. reference stds).
    ari_warn, ari_drift : float or None
        ARI thresholds (status when ``ari < threshold``).
    min_jaccard : float, default 0.1
        Floor below which a matched pair does not count.

    Returns
    -------
    AgreementResult
        The centroid shift of a matched pair is ``||(c_champion - c_challenger) / scale||
        / sqrt(n_features)``: a root-mean-square shift in standard units.

    Raises
    ------
    DataValidationError
        If the label arrays differ in length or hold missing values, or centroids
        are missing for a matched segment or differ in shape.
    InsufficientDataError
        If there are no labels.

    Examples
    --------
    >>> result = segment_agreement([0, 0, 1, 1, 2], [5, 5, 7, 7, 9])
    >>> result.ari, result.jaccard
    (1.0, {'0': 1.0, '1': 1.0, '2': 1.0})
    """
    _check_thresholds(ari_warn, ari_drift, "ari", higher_is_worse=False)
    champion = np.asarray(champion_labels, dtype=object).ravel()
    challenger = np.asarray(challenger_labels, dtype=object).ravel()
    if champion.size != challenger.size:
        raise DataValidationError(
            f"champion and challenger labels differ in length: {champion.size} vs "
            f"{challenger.size} (they must label the same users in the same order)"
        )
    if champion.size == 0:
        raise InsufficientDataError("no users to compare champion and challenger segments on")
    if pd.isna(champion).any() or pd.isna(challenger).any():
        raise DataValidationError("champion or challenger labels hold missing values")
    champ_codes, champ_ids = pd.factorize(champion, sort=False)
    chal_codes, chal_ids = pd.factorize(challenger, sort=False)
    table = np.zeros((len(champ_ids), len(chal_ids)), dtype=np.int64)
    np.add.at(table, (champ_codes, chal_codes), 1)
    sizes_a = table.sum(axis=1, keepdims=True)
    sizes_b = table.sum(axis=0, keepdims=True)
    jaccard = table / (sizes_a + sizes_b - table)
    rows, cols = linear_sum_assignment(jaccard, maximize=True)

    scale_arr = None if scale is None else np.asarray(scale, dtype=float).ravel()
    if scale_arr is not None and (not np.all(np.isfinite(scale_arr)) or np.any(scale_arr <= 0)):
        raise DataValidationError("scale must hold finite positive values")
    with_centroids = champion_centroids is not None and challenger_centroids is not None

    per_segment = {str(label): 0.0 for label in champ_ids}
    matches: list[SegmentMatch] = []
    matched_a: set[int] = set()
    matched_b: set[int] = set()
    for i, j in zip(rows, cols, strict=True):
        score = float(jaccard[i, j])
        per_segment[str(champ_ids[i])] = score
        if score < min_jaccard:
            continue
        matched_a.add(int(i))
        matched_b.add(int(j))
        shift = None
        if with_centroids:
            shift = _centroid_shift(
                _centroid_of(champion_centroids, champ_ids[i], "champion"),
                _centroid_of(challenger_centroids, chal_ids[j], "challenger"),
                scale_arr,
            )
        matches.append(SegmentMatch(str(champ_ids[i]), str(chal_ids[j]), score, shift))
    matches.sort(key=lambda m: _natural_key(m.champion))
    appeared = sorted(
        (str(chal_ids[j]) for j in range(len(chal_ids)) if j not in matched_b), key=_natural_key
    )
    vanished = sorted(
        (str(champ_ids[i]) for i in range(len(champ_ids)) if i not in matched_a), key=_natural_key
    )
    ari = float(adjusted_rand_score(champ_codes, chal_codes))
    return AgreementResult(
        ari=ari,
        jaccard=dict(sorted(per_segment.items(), key=lambda kv: _natural_key(kv[0]))),
        matches=tuple(matches),
        appeared=tuple(appeared),
        vanished=tuple(vanished),
        n_users=int(champion.size),
        warn_threshold=ari_warn,
        drift_threshold=ari_drift,
        status=_judge(ari, ari_warn, ari_drift, higher_is_worse=False),
    )


# --------------------------------------------------------------------------- migration


@dataclass(frozen=True, eq=False)
class MigrationResult:
    """Users moving between segments from the previous snapshot to the current one.

    Attributes
    ----------
    counts : pandas.DataFrame
        Rows: previous segment, then :data:`NEW_USER`; columns: current segment,
        then :data:`GONE`. Labels are strings. The total is ``n_users``.
    n_users : int
        Users in either snapshot.
    n_new, n_gone : int
        Users only in the current / only in the previous snapshot.
    n_both, n_stayed : int
        Users in both snapshots, and those of them in the same segment.
    stayed_share : float or None
        ``n_stayed / n_both`` (None when no user is in both).
    """

    counts: pd.DataFrame
    n_users: int
    n_new: int
    n_gone: int
    n_both: int
    n_stayed: int
    stayed_share: float | None

    @property
    def shares(self) -> pd.DataFrame:
        """Row shares of :attr:`counts` (an empty row gives zeros)."""
        totals = self.counts.sum(axis=1).replace(0, 1)
        return self.counts.div(totals, axis=0)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-safe values."""
        return _json_safe(
            {
                "rows": list(self.counts.index),
                "columns": list(self.counts.columns),
                "counts": self.counts.to_numpy().tolist(),
                "n_users": self.n_users,
                "n_new": self.n_new,
                "n_gone": self.n_gone,
                "n_both": self.n_both,
                "n_stayed": self.n_stayed,
                "stayed_share": self.stayed_share,
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MigrationResult:
        """Rebuild a result written by :meth:`to_dict` (labels as strings, counts as int64).

        Raises
        ------
        DataValidationError
            If a key is missing, a value is malformed, or the counts do not form a
            ``rows x columns`` matrix of non-negative integers.
        """

        def build(d: Mapping[str, Any]) -> MigrationResult:
            rows = [str(r) for r in d["rows"]]
            cols = [str(c) for c in d["columns"]]
            cells = [[_count(v) for v in row] for row in d["counts"]]
            if len(cells) != len(rows) or any(len(row) != len(cols) for row in cells):
                raise DataValidationError(
                    f"migration matrix: counts are not {len(rows)} rows x {len(cols)} columns"
                )
            counts = pd.DataFrame(
                np.asarray(cells, dtype=np.int64).reshape(len(rows), len(cols)),
                index=rows,
                columns=cols,
            )
            return cls(
                counts=counts,
                n_users=_count(d["n_users"]),
                n_new=_count(d["n_new"]),
                n_gone=_count(d["n_gone"]),
                n_both=_count(d["n_both"]),
                n_stayed=_count(d["n_stayed"]),
                stayed_share=_optional_number(d.get("stayed_share")),
            )

        return _from_json("migration matrix", data, build)


def _segment_codes(series: pd.Series, which: str) -> tuple[np.ndarray, list[str]]:
    if not isinstance(series, pd.Series):
        raise DataValidationError(f"{which} segments must be a pandas Series indexed by user_id")
    if series.index.has_duplicates:
        dupes = series.index[series.index.duplicated()].unique()[:5].tolist()
        raise DataValidationError(f"{which} segments list some users twice, e.g. {dupes}")
    codes, names = _label_codes(series.to_numpy(dtype=object), f"{which} segments")
    clash = {NEW_USER, GONE} & set(names)
    if clash:
        raise DataValidationError(f"{which} segments use a reserved label: {sorted(clash)}")
    return codes, names


def migration_matrix(previous: pd.Series, current: pd.Series) -> MigrationResult:
    """Count users by previous segment and current segment.

    Parameters
    ----------
    previous, current : pandas.Series
        Segment by user, indexed by user id (unique). Users only in ``current``
        are counted in the :data:`NEW_USER` row; users only in ``previous`` in
        the :data:`GONE` column.

    Returns
    -------
    MigrationResult
        Every user of the union is counted exactly once (checked).

    Raises
    ------
    DataValidationError
        If an argument is not a Series, repeats a user, holds missing labels or
        uses a reserved label.

    Examples
    --------
    >>> import pandas as pd
    >>> prev = pd.Series({"a": 0, "b": 0, "c": 1})
    >>> cur = pd.Series({"a": 0, "b": 1, "d": 1})
    >>> migration_matrix(prev, cur).counts
                0  1  (gone)
    0           1  1       0
    1           0  0       1
    (new user)  0  1       0
    """
    prev_codes, prev_names = _segment_codes(previous, "previous")
    cur_codes, cur_names = _segment_codes(current, "current")
    users = previous.index.union(current.index)
    rows = [*prev_names, NEW_USER]
    cols = [*cur_names, GONE]
    # every user starts as new (last row) and gone (last column), then gets its segments
    row_of = np.full(len(users), len(prev_names), dtype=np.int64)
    col_of = np.full(len(users), len(cur_names), dtype=np.int64)
    row_of[users.get_indexer(previous.index)] = prev_codes
    col_of[users.get_indexer(current.index)] = cur_codes
    cells = np.bincount(row_of * len(cols) + col_of, minlength=len(rows) * len(cols))
    counts = pd.DataFrame(cells.reshape(len(rows), len(cols)), index=rows, columns=cols)
    n_users = len(users)
    n_new = int(counts.loc[NEW_USER].sum())
    n_gone = int(counts[GONE].sum())
    # conservation: every user in exactly one cell, each snapshot's users in its own margin
    total = int(counts.to_numpy().sum())
    if (total, n_users - n_new, n_users - n_gone) != (n_users, len(previous), len(current)):
        raise AssertionError(
            f"migration matrix counts {total} users ({n_users - n_new} previous, "
            f"{n_users - n_gone} current), expected {n_users} ({len(previous)} previous, "
            f"{len(current)} current)"
        )
    n_both = n_users - n_new - n_gone
    common = [s for s in rows if s in cols]
    n_stayed = int(sum(counts.at[s, s] for s in common))
    return MigrationResult(
        counts=counts,
        n_users=n_users,
        n_new=n_new,
        n_gone=n_gone,
        n_both=n_both,
        n_stayed=n_stayed,
        stayed_share=n_stayed / n_both if n_both else None,
    )


# --------------------------------------------------------------------------- backtest


@dataclass(frozen=True)
class CalibrationBin:
    """Users of one score decile: mean predicted probability vs observed rate."""

    n: int
    mean_predicted: float
    observed_rate: float


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
        """Return the result as JSON-safe values."""
        return _json_safe(
            {
                "target": self.target,
                "n": self.n,
                "auc": self.auc,
                "brier": self.brier,
                "training_auc": self.training_auc,
                "training_brier": self.training_brier,
                "auc_drop": self.auc_drop,
                "brier_change": self.brier_change,
                "predicted_total": self.predicted_total,
                "observed_total": self.observed_total,
                "calibration": [
                    {"n": b.n, "mean_predicted": b.mean_predicted, "observed_rate": b.observed_rate}
                    for b in self.calibration
                ],
                "warn_threshold": self.warn_threshold,
                "drift_threshold": self.drift_threshold,
                "status": self.status,
            }
        )

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

        def build(d: Mapping[str, Any]) -> BacktestResult:
            return cls(
                target=str(d["target"]),
                n=_count(d["n"]),
                auc=_number(d["auc"]),
                brier=_number(d["brier"]),
                training_auc=_number(d["training_auc"]),
                training_brier=_number(d["training_brier"]),
                predicted_total=_number(d["predicted_total"]),
                observed_total=_number(d["observed_total"]),
                calibration=tuple(
                    CalibrationBin(
                        _count(b["n"]), _number(b["mean_predicted"]), _number(b["observed_rate"])
                    )
                    for b in d["calibration"]
                ),
                warn_threshold=_optional_number(d.get("warn_threshold")),
                drift_threshold=_optional_number(d.get("drift_threshold")),
                status=_status_of(d["status"]),
            )

        return _from_json(f"backtest {target!r}", data, build)


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


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class DriftReport:
    """Everything the refresh compared, with one overall status.

    Attributes
    ----------
    features : tuple of DriftResult
        Per-feature results (PSI and Wasserstein), in reference order.
    share : DriftResult or None
        Segment-mix PSI.
    agreement : AgreementResult or None
        Champion vs challenger on the same users.
    migration : MigrationResult or None
        Users moving between segments (informational: no status).
    backtests : tuple of BacktestResult
        Propensity backtests of the champion.
    n_current : int or None
        Rows of the current feature table.
    """

    features: tuple[DriftResult, ...] = ()
    share: DriftResult | None = None
    agreement: AgreementResult | None = None
    migration: MigrationResult | None = field(default=None, compare=False)
    backtests: tuple[BacktestResult, ...] = ()
    n_current: int | None = None

    def results(self) -> list[DriftResult]:
        """Every judged result (features, share, ARI, backtests) as DriftResults."""
        out = list(self.features)
        if self.share is not None:
            out.append(self.share)
        if self.agreement is not None:
            out.append(self.agreement.result)
        out += [b.result for b in self.backtests]
        return out

    @property
    def status(self) -> Status:
        """Worst status of the parts (``OK < WARN < DRIFT``)."""
        return _worst(r.status for r in self.results())

    @property
    def exit_code(self) -> int:
        """0 for OK and WARN, :data:`DRIFT_EXIT_CODE` (3) for DRIFT."""
        return DRIFT_EXIT_CODE if self.status == "DRIFT" else 0

    def feature_results(self, test: str) -> list[DriftResult]:
        """Feature results of one test (e.g. ``"psi"``)."""
        return [r for r in self.features if r.test == test]

    def metrics(self) -> dict[str, float]:
        """Flat aggregate metrics named ``drift/...`` (no user-level values).

        Names: ``drift/status`` (0 OK, 1 WARN, 2 DRIFT), ``drift/<test>/<feature>``,
        ``drift/psi_max``, ``drift/features_warn``, ``drift/features_drift``,
        ``drift/share_psi``, ``drift/ari``, ``drift/jaccard/<segment>``,
        ``drift/jaccard_min``, ``drift/segments_appeared``, ``drift/segments_vanished``,
        ``drift/centroid_shift/<segment>``, ``drift/centroid_shift_max``,
        ``drift/migration/{stayed_share,new_users,gone_users,users}``,
        ``drift/backtest/<target>/{auc,auc_drop,brier,brier_change}``.
        """
        out: dict[str, float] = {"drift/status": float(_LEVEL[self.status])}
        if self.n_current is not None:
            out["drift/n_current"] = float(self.n_current)
        for r in self.features:
            out[_metric_key(f"drift/{r.test}/{r.subject}")] = float(r.score)
        psi = self.feature_results("psi")
        if psi:
            out["drift/psi_max"] = max(float(r.score) for r in psi)
            out["drift/features_warn"] = float(sum(r.status == "WARN" for r in psi))
            out["drift/features_drift"] = float(sum(r.status == "DRIFT" for r in psi))
        if self.share is not None:
            out["drift/share_psi"] = float(self.share.score)
        if self.agreement is not None:
            a = self.agreement
            out["drift/ari"] = a.ari
            for seg, value in a.jaccard.items():
                out[_metric_key(f"drift/jaccard/{seg}")] = float(value)
            if a.jaccard:
                out["drift/jaccard_min"] = min(a.jaccard.values())
            out["drift/segments_appeared"] = float(len(a.appeared))
            out["drift/segments_vanished"] = float(len(a.vanished))
            for m in a.matches:
                if m.centroid_shift is not None:
                    out[_metric_key(f"drift/centroid_shift/{m.champion}")] = m.centroid_shift
            if a.centroid_shift_max is not None:
                out["drift/centroid_shift_max"] = a.centroid_shift_max
        if self.migration is not None:
            mig = self.migration
            if mig.stayed_share is not None:
                out["drift/migration/stayed_share"] = mig.stayed_share
            out["drift/migration/new_users"] = float(mig.n_new)
            out["drift/migration/gone_users"] = float(mig.n_gone)
            out["drift/migration/users"] = float(mig.n_users)
        for b in self.backtests:
            key = _metric_key(f"drift/backtest/{b.target}")
            out[f"{key}/auc"] = b.auc
            out[f"{key}/auc_drop"] = b.auc_drop
            out[f"{key}/brier"] = b.brier
            out[f"{key}/brier_change"] = b.brier_change
        return {k: v for k, v in out.items() if math.isfinite(v)}

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-safe values (no numpy types, None for NaN)."""
        return _json_safe(
            {
                "status": self.status,
                "exit_code": self.exit_code,
                "n_current": self.n_current,
                "features": [r.to_dict() for r in self.features],
                "share": None if self.share is None else self.share.to_dict(),
                "agreement": None if self.agreement is None else self.agreement.to_dict(),
                "migration": None if self.migration is None else self.migration.to_dict(),
                "backtests": [b.to_dict() for b in self.backtests],
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        """Rebuild a report written by :meth:`to_dict`, e.g. a refresh's ``drift.json``.

        The overall status is recomputed from the parts and must equal the stored
        one, so a hand-edited or truncated file is refused rather than misread.

        Raises
        ------
        DataValidationError
            If a key is missing, a value is malformed, or the stored status differs
            from the status of the parts.

        Examples
        --------
        >>> report = DriftReport(features=(DriftResult("psi", "x", 0.3, 0.1, 0.25, "DRIFT"),))
        >>> DriftReport.from_dict(report.to_dict()).status
        'DRIFT'
        """

        def build(d: Mapping[str, Any]) -> DriftReport:
            stored = _status_of(d["status"])
            report = cls(
                features=tuple(DriftResult.from_dict(f) for f in d["features"]),
                share=None if d.get("share") is None else DriftResult.from_dict(d["share"]),
                agreement=(
                    None
                    if d.get("agreement") is None
                    else AgreementResult.from_dict(d["agreement"])
                ),
                migration=(
                    None
                    if d.get("migration") is None
                    else MigrationResult.from_dict(d["migration"])
                ),
                backtests=tuple(BacktestResult.from_dict(b) for b in d.get("backtests") or ()),
                n_current=None if d.get("n_current") is None else _count(d["n_current"]),
            )
            if report.status != stored:
                raise DataValidationError(
                    f"drift report: stored status {stored} differs from the status of its "
                    f"parts ({report.status})"
                )
            return report

        return _from_json("drift report", data, build)

    def to_markdown(self) -> str:
        """Return a readable Markdown summary of the report."""
        lines = [
            "# Drift report",
            "",
            f"**Status: {self.status}** (exit code {self.exit_code})",
            "",
        ]
        counts = {s: sum(r.status == s for r in self.results()) for s in _LEVEL}
        lines += [
            f"Tests: {counts['OK']} OK, {counts['WARN']} WARN, {counts['DRIFT']} DRIFT.",
            "",
        ]
        lines += self._features_md()
        lines += self._share_md()
        lines += self._agreement_md()
        lines += self._migration_md()
        lines += self._backtest_md()
        return "\n".join(lines).rstrip() + "\n"

    def _features_md(self) -> list[str]:
        psi = self.feature_results("psi")
        if not psi:
            return []
        wass = {r.subject: r for r in self.feature_results("wasserstein")}
        rows = []
        for r in sorted(psi, key=lambda r: (-r.score, r.subject)):
            w = wass.get(r.subject)
            rows.append(
                [
                    f"`{r.subject}`",
                    _fmt(r.score),
                    r.status,
                    "n/a" if w is None else _fmt(w.score),
                    "n/a" if w is None else _fmt(w.details.get("distance")),
                ]
            )
        first = psi[0]
        return [
            "## Features",
            "",
            f"PSI over reference quantile bins (WARN >= {_fmt(first.warn_threshold, 2)}, "
            f"DRIFT >= {_fmt(first.drift_threshold, 2)}); Wasserstein-1 in reference "
            "standard deviations and in feature units.",
            "",
            *_md_table(["feature", "PSI", "status", "Wasserstein (std)", "Wasserstein"], rows),
            "",
        ]

    def _share_md(self) -> list[str]:
        if self.share is None:
            return []
        s = self.share
        rows = [
            [
                d["segment"],
                _fmt(d["reference_share"]),
                _fmt(d["current_share"]),
                f"{d['current_share'] - d['reference_share']:+.3f}",
            ]
            for d in s.details.get("segments", [])
        ]
        return [
            "## Segment shares",
            "",
            f"Share PSI {_fmt(s.score)}: **{s.status}** "
            f"(WARN >= {_fmt(s.warn_threshold, 2)}, DRIFT >= {_fmt(s.drift_threshold, 2)}).",
            "",
            *_md_table(["segment", "reference", "current", "change"], rows),
            "",
        ]

    def _agreement_md(self) -> list[str]:
        if self.agreement is None:
            return []
        a = self.agreement
        rows = [
            [m.champion, m.challenger, _fmt(m.jaccard), _fmt(m.centroid_shift)] for m in a.matches
        ]
        lines = [
            "## Champion vs challenger",
            "",
            f"Adjusted Rand index {_fmt(a.ari)} on {a.n_users} users: **{a.status}** "
            f"(WARN < {_fmt(a.warn_threshold, 2)}, DRIFT < {_fmt(a.drift_threshold, 2)}).",
            "",
            *_md_table(["champion", "challenger", "Jaccard", "centroid shift (std)"], rows),
            "",
        ]
        if a.appeared:
            lines += [f"Appeared (challenger only): {', '.join(a.appeared)}", ""]
        if a.vanished:
            lines += [f"Vanished (champion only): {', '.join(a.vanished)}", ""]
        return lines

    def _migration_md(self) -> list[str]:
        if self.migration is None:
            return []
        m = self.migration
        header = ["previous \\ current", *[str(c) for c in m.counts.columns]]
        rows = [
            [str(idx), *[int(v) for v in row]]
            for idx, row in zip(m.counts.index, m.counts.to_numpy(), strict=True)
        ]
        stayed = "n/a" if m.stayed_share is None else f"{m.stayed_share:.1%}"
        return [
            "## Migration",
            "",
            f"{m.n_users} users: {m.n_both} in both snapshots ({stayed} stayed in their "
            f"segment), {m.n_new} new, {m.n_gone} gone.",
            "",
            *_md_table(header, rows),
            "",
        ]

    def _backtest_md(self) -> list[str]:
        if not self.backtests:
            return []
        rows = [
            [
                b.target,
                b.n,
                _fmt(b.training_auc),
                _fmt(b.auc),
                f"{b.auc_drop:+.3f}",
                _fmt(b.training_brier),
                _fmt(b.brier),
                f"{b.predicted_total:.0f} / {b.observed_total:.0f}",
                b.status,
            ]
            for b in self.backtests
        ]
        header = [
            "target",
            "users",
            "AUC (training)",
            "AUC (now)",
            "AUC drop",
            "Brier (training)",
            "Brier (now)",
            "predicted / observed",
            "status",
        ]
        return ["## Propensity backtest", "", *_md_table(header, rows), ""]


# --------------------------------------------------------------------------- runner


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


def run_drift_tests(
    reference: Mapping[str, FeatureReference],
    current_features: pd.DataFrame,
    reference_shares: Mapping[Hashable, float] | None = None,
    current_labels: Any = None,
    config: DriftConfig | None = None,
    agreement: AgreementResult | None = None,
    migration: MigrationResult | None = None,
    backtests: Sequence[BacktestResult] = (),
    *,
    tests: Sequence[str] = ("psi", "wasserstein"),
) -> DriftReport:
    """Run the registered feature tests and the segment-mix test, and gather a report.

    Parameters
    ----------
    reference : mapping of str to FeatureReference
        What the champion stored at training (see :func:`build_feature_reference`).
    current_features : pandas.DataFrame
        Feature table of the new snapshot; must hold every reference feature.
    reference_shares : mapping of segment to float, optional
        Segment shares at training.
    current_labels : array-like, optional
        Champion's segment of each current user (needed with ``reference_shares``).
    config : DriftConfig, optional
        Thresholds (defaults: ``DriftConfig()``).
    agreement : AgreementResult, optional
        From :func:`segment_agreement`; re-judged with ``config.ari_warn/ari_drift``.
    migration : MigrationResult, optional
        From :func:`migration_matrix`.
    backtests : sequence of BacktestResult
        From :func:`propensity_backtest`.
    tests : sequence of str, default ("psi", "wasserstein")
        Names in :data:`FEATURE_TESTS` to run on every feature.

    Returns
    -------
    DriftReport

    Raises
    ------
    ConfigError
        If a test name is unknown or thresholds are inconsistent.
    DataValidationError
        If a reference feature is missing from ``current_features``, or only one of
        ``reference_shares`` and ``current_labels`` is given.
    InsufficientDataError
        If ``current_features`` has no rows.
    """
    config = config or DriftConfig()
    unknown = [t for t in tests if t not in FEATURE_TESTS]
    if unknown:
        raise ConfigError(f"unknown drift test(s) {unknown}; known: {sorted(FEATURE_TESTS)}")
    if not isinstance(current_features, pd.DataFrame):
        raise DataValidationError("current_features must be a pandas DataFrame")
    if len(current_features) == 0:
        raise InsufficientDataError("the current feature table is empty: nothing to test")
    missing = [name for name in reference if name not in current_features.columns]
    if missing:
        raise DataValidationError(
            f"reference feature(s) {missing} missing from the current feature table "
            f"(columns: {[str(c) for c in current_features.columns]})"
        )
    if (reference_shares is None) != (current_labels is None):
        raise DataValidationError("reference_shares and current_labels must be given together")

    results: list[DriftResult] = []
    for name, ref in reference.items():
        column = current_features[name]
        if not (pd.api.types.is_numeric_dtype(column) or column.isna().all()):
            raise DataValidationError(f"feature {name!r} is not numeric in the current table")
        values = column.to_numpy(dtype=float, na_value=np.nan)
        for test_name in tests:
            stat = FEATURE_TESTS[test_name]
            warn, drift = stat.thresholds(config)
            results.append(stat.func(ref, values, warn, drift))

    share = None
    if reference_shares is not None:
        share = share_psi_test(
            reference_shares, current_labels, config.share_psi_warn, config.share_psi_drift
        )
    if agreement is not None:
        agreement = agreement.with_thresholds(config.ari_warn, config.ari_drift)
    return DriftReport(
        features=tuple(results),
        share=share,
        agreement=agreement,
        migration=migration,
        backtests=tuple(backtests),
        n_current=len(current_features),
    )
