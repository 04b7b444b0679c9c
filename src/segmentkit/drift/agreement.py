"""Champion vs challenger agreement and the migration of users between segments."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from segmentkit.drift._common import (
    DriftResult,
    Status,
    _check_thresholds,
    _count,
    _from_json,
    _judge,
    _label_codes,
    _read_result,
)
from segmentkit.errors import (
    DataValidationError,
    InsufficientDataError,
)
from segmentkit.serialization import from_jsonable, to_jsonable
from segmentkit.text import natural_key

#: Smallest Jaccard for a champion and a challenger segment to count as the same segment.
MIN_JACCARD = 0.1


#: Row of the migration matrix for users absent from the previous snapshot.
NEW_USER = "(new user)"


#: Column of the migration matrix for users absent from the current snapshot.
GONE = "(gone)"


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

    def __post_init__(self) -> None:
        _count(self.n_users, "n_users")

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
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgreementResult:
        """Rebuild a result written by :meth:`to_dict`.

        Raises
        ------
        DataValidationError
            If a key is missing or a value is malformed.
        """
        return _read_result(cls, data, "segment agreement")


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
    matches.sort(key=lambda m: natural_key(m.champion))
    appeared = sorted(
        (str(chal_ids[j]) for j in range(len(chal_ids)) if j not in matched_b), key=natural_key
    )
    vanished = sorted(
        (str(champ_ids[i]) for i in range(len(champ_ids)) if i not in matched_a), key=natural_key
    )
    ari = float(adjusted_rand_score(champ_codes, chal_codes))
    return AgreementResult(
        ari=ari,
        jaccard=dict(sorted(per_segment.items(), key=lambda kv: natural_key(kv[0]))),
        matches=tuple(matches),
        appeared=tuple(appeared),
        vanished=tuple(vanished),
        n_users=int(champion.size),
        warn_threshold=ari_warn,
        drift_threshold=ari_drift,
        status=_judge(ari, ari_warn, ari_drift, higher_is_worse=False),
    )


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

    def __post_init__(self) -> None:
        for name in _MIGRATION_COUNTS:
            _count(getattr(self, name), name)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-safe values: the matrix as rows, columns and counts."""
        matrix = {
            "rows": list(self.counts.index),
            "columns": list(self.counts.columns),
            "counts": self.counts.to_numpy().tolist(),
        }
        figures = {name: getattr(self, name) for name in (*_MIGRATION_COUNTS, "stayed_share")}
        return to_jsonable({**matrix, **figures})

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
            share = d.get("stayed_share")
            return cls(
                counts=_count_matrix(d["rows"], d["columns"], d["counts"]),
                stayed_share=None
                if share is None
                else from_jsonable(float, share, "migration matrix.stayed_share"),
                **{name: d[name] for name in _MIGRATION_COUNTS},
            )

        return _from_json("migration matrix", data, build)


#: The user counts of a :class:`MigrationResult` besides its matrix.
_MIGRATION_COUNTS = ("n_users", "n_new", "n_gone", "n_both", "n_stayed")


def _count_matrix(rows: Any, columns: Any, cells: Any) -> pd.DataFrame:
    """Read the migration matrix from its JSON form: string labels, int64 counts."""
    rows = [str(r) for r in rows]
    columns = [str(c) for c in columns]
    cells = [[_count(v, "counts") for v in row] for row in cells]
    if len(cells) != len(rows) or any(len(row) != len(columns) for row in cells):
        raise DataValidationError(
            f"migration matrix: counts are not {len(rows)} rows x {len(columns)} columns"
        )
    values = np.asarray(cells, dtype=np.int64).reshape(len(rows), len(columns))
    return pd.DataFrame(values, index=rows, columns=columns)


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
