"""Chunked, parallel scoring of feature tables: propensity scores, percentiles, buckets, labels."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from segmentkit.errors import DataValidationError
from segmentkit.parallel import thread_map

if TYPE_CHECKING:
    from segmentkit.models.propensity import PropensityModel

# Rows scored at once: small enough to reuse memory, large enough to amortize calls
# (and not a power of two: column-major chunks would then alias in the CPU caches).
CHUNK_ROWS = 50_000


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
        ``user_id``, then per target in name order ``p_<target>``
        (``expected_<target>`` for counts), ``<that>_percentile`` (int64, 0-100: the
        whole percent of scored users with a score at or below this one) and
        ``<that>_bucket`` (Low/Medium/High by the cut-offs frozen at training time).

    Raises
    ------
    DataValidationError
        If ``user_id`` or a feature column a model needs is missing.
    """
    if "user_id" not in features.columns:
        raise DataValidationError(
            f"features: missing column 'user_id'; columns present: {list(features.columns)}"
        )
    columns = {"user_id": features["user_id"].reset_index(drop=True)}
    columns.update(propensity_columns(models, features, chunk_size))
    return frame_of_columns(columns)


def propensity_columns(
    models: Mapping[str, PropensityModel],
    features: pd.DataFrame,
    chunk_size: int = CHUNK_ROWS,
) -> dict[str, np.ndarray | pd.Series]:
    """Return the columns of :func:`score_propensity` after ``user_id``, by name, in order.

    Raises
    ------
    DataValidationError
        If a feature column a model needs is missing.
    """
    from sklearn.utils.validation import check_is_fitted

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
    return _score_columns(models, scores)


def _score_columns(
    models: Mapping[str, PropensityModel], scores: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray | pd.Series]:
    """Score, percentile and bucket columns of each model, from its scores (not copied)."""
    from segmentkit.models.propensity import BUCKETS

    out: dict[str, np.ndarray | pd.Series] = {}
    # Name order: a saved bundle lists its targets sorted, so this order survives a reload.
    names = sorted(models)
    percentiles = dict(
        zip(names, thread_map(percentile_rank, [scores[n] for n in names]), strict=True)
    )
    for name in names:
        model = models[name]
        column = model.output_name
        out[column] = scores[name]
        out[f"{column}_percentile"] = percentiles[name]
        out[f"{column}_bucket"] = labels_from_codes(BUCKETS, model._bucket_codes(scores[name]))
    return out


def frame_of_columns(columns: Mapping[str, np.ndarray | pd.Series]) -> pd.DataFrame:
    """Return a DataFrame holding ``columns`` as they are, in order, with a default index.

    Each column stays its own array: pandas' default for a dict copies every column
    into one two-dimensional block per dtype, which for a million scored users costs
    more than the scoring of some models. Series must have a default index.

    Examples
    --------
    >>> frame_of_columns({"a": np.array([1, 2]), "b": pd.Series(["x", "y"])}).shape
    (2, 2)
    """
    return pd.DataFrame(dict(columns), copy=False)


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
    """Whole percent of scores at or below each one (int64, 0-100).

    ``floor(100 * k / n)`` for a score with ``k`` of the ``n`` scores at or below it,
    in exact integer arithmetic: the highest score gets 100, and ``>= 90`` selects
    the users whose score is above at least 90 % of the others (ties share the
    higher rank, as ``pandas.Series.rank(method="max")``).

    Raises
    ------
    ValueError
        If a score is NaN.

    Examples
    --------
    >>> percentile_rank(np.array([0.2, 0.1, 0.2, 0.4])).tolist()
    [75, 25, 75, 100]
    >>> percentile_rank(np.array([0.3, 0.1, 0.2])).tolist()
    [100, 33, 66]
    """
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError("percentile_rank: scores contain NaN")
    # Tied scores get the same rank in any order, so the sort need not be stable
    # (numpy's default sort is several times faster on floats).
    order = np.argsort(scores)
    ordered = scores[order]
    out = np.empty(scores.shape, dtype=np.int64)
    out[order] = _count_at_or_below_sorted(ordered) * 100 // max(ordered.size, 1)
    return out


def _count_at_or_below_sorted(ordered: np.ndarray) -> np.ndarray:
    """For each value of a sorted array, how many values are at or below it (int64).

    One pass over runs of equal values (a binary search per value would cost
    ``log n`` cache misses each).

    Examples
    --------
    >>> _count_at_or_below_sorted(np.array([0.1, 0.2, 0.2, 0.4])).tolist()
    [1, 3, 3, 4]
    """
    n = ordered.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # One past the last position of each run of equal values.
    run_ends = np.append(np.flatnonzero(ordered[1:] != ordered[:-1]) + 1, n).astype(np.int64)
    return np.repeat(run_ends, np.diff(run_ends, prepend=0))
