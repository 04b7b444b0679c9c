"""Reference distributions stored at training, against which refreshes are compared."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from segmentkit.errors import (
    BundleError,
    ConfigError,
    InsufficientDataError,
)
from segmentkit.serialization import from_jsonable, to_jsonable

#: Number of reference quantiles (0 %, 1 %, ..., 100 %) kept for Wasserstein.
N_QUANTILES = 101

#: Fewest users that must share a stored value (bin edge or quantile): values held by
#: fewer users, and the tails beyond the MIN_GROUP-th smallest and largest values, are
#: never stored, so a feature reference cannot reveal one user's exact value.
MIN_GROUP = 20


@dataclass(frozen=True)
class FeatureReference:
    """Distribution of one feature at training time, kept in the model bundle.

    PSI bins are ``(-inf, e0], (e0, e1], ..., (e_last, +inf)`` where ``edges``
    holds the interior cut points ``e0 < e1 < ...``: the reference quantiles at
    ``1/n_bins, ..., (n_bins-1)/n_bins`` (inverted-CDF method, so every edge is an
    observed value) with ties removed; then, for privacy, edges with fewer than
    :data:`MIN_GROUP` users on a side are dropped and an edge held by fewer than
    :data:`MIN_GROUP` users moves to the middle of the gap above it (the reference
    data fall in the same bins). A discrete or skewed
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
    min_group : int
        Privacy floor the edges and quantiles were built with (1: raw values); current
        quantiles are summarized alike (:func:`quantile_summary`) before comparing.
    """

    name: str
    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    quantiles: tuple[float, ...]
    mean: float
    std: float
    n: int
    min_group: int = 1

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
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureReference:
        """Rebuild a reference written by :meth:`to_dict`.

        Raises
        ------
        BundleError
            If a key is missing or a value is malformed.
        """
        name = data.get("name", "?") if isinstance(data, Mapping) else "?"
        return from_jsonable(cls, data, f"feature reference {name!r}", BundleError)


def _shared_value(
    value: float, ordered: np.ndarray, min_group: int, upward: bool = True
) -> float | None:
    """``value`` if no user or at least ``min_group`` users hold it, else a value nobody holds.

    A rarely held value moves to the midpoint of the gap above it (``upward``; this bins
    the reference data exactly as the value did) or below it. ``None`` if there is no gap.
    """
    first = int(np.searchsorted(ordered, value, side="left"))
    stop = int(np.searchsorted(ordered, value, side="right"))
    if stop - first == 0 or stop - first >= min_group:
        return float(value)
    if upward and stop < ordered.size:
        neighbour = ordered[stop]
    elif not upward and first > 0:
        neighbour = ordered[first - 1]
    else:
        return None
    middle = (float(value) + float(neighbour)) / 2.0
    return middle if middle not in (float(value), float(neighbour)) else None


def _private_edges(ordered: np.ndarray, cuts: np.ndarray, min_group: int) -> np.ndarray:
    """Bin edges with at least ``min_group`` users on each side, none unique to a user."""
    edges = []
    for cut in np.unique(cuts):
        below = int(np.searchsorted(ordered, cut, side="right"))
        if below < min_group or ordered.size - below < min_group:
            continue  # an edge in the tail would single out its few users
        shared = _shared_value(float(cut), ordered, min_group)
        if shared is not None:
            edges.append(shared)
    return np.unique(np.asarray(edges, dtype=float))


def _private_quantiles(ordered: np.ndarray, levels: np.ndarray, min_group: int) -> np.ndarray:
    """Quantiles clipped to the ``min_group``-th smallest and largest values, none unique."""
    n = ordered.size
    if n < 2 * min_group:
        return np.full(levels.size, float(ordered.mean()))  # too few users for a private core
    low = _shared_value(float(ordered[min_group - 1]), ordered, min_group)
    high = _shared_value(float(ordered[n - min_group]), ordered, min_group, upward=False)
    low = float(ordered[min_group - 1]) if low is None else low
    high = float(ordered[n - min_group]) if high is None else high
    clipped = np.clip(np.quantile(ordered, levels), min(low, high), max(low, high))
    out = [_shared_value(float(q), ordered, min_group) for q in clipped]
    return np.asarray([float(low) if q is None else q for q in out])


def quantile_summary(values: Any, n_levels: int, min_group: int = 1) -> np.ndarray:
    """Quantiles at ``linspace(0, 1, n_levels)``, under the privacy floor ``min_group``.

    With ``min_group > 1`` the tails are clipped to the ``min_group``-th smallest and
    largest values and no quantile is a value fewer than ``min_group`` users hold. Drift
    tests summarize the current values the same way, so identical data compare equal.
    """
    ordered = np.sort(np.asarray(values, dtype=float))
    levels = np.linspace(0.0, 1.0, n_levels)
    if min_group > 1:
        return _private_quantiles(ordered, levels, min_group)
    return np.quantile(ordered, levels)


def _reference_of(
    name: str, values: np.ndarray, n_bins: int, min_group: int = MIN_GROUP
) -> FeatureReference:
    finite = np.sort(values[np.isfinite(values)])
    if finite.size == 0:
        raise InsufficientDataError(f"feature {name!r}: no finite reference values")
    # Observed values as cut points (inverted CDF): no empty bins between the
    # values of a discrete feature, and each edge's mass stays in the bin it closes.
    cuts = np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1)[1:-1], method="inverted_cdf")
    edges = _private_edges(finite, cuts, min_group) if min_group > 1 else np.unique(cuts)
    quantiles = quantile_summary(finite, N_QUANTILES, min_group)
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=edges.size + 1)
    return FeatureReference(
        name=name,
        edges=tuple(float(e) for e in edges),
        proportions=tuple(float(c) for c in counts / finite.size),
        quantiles=tuple(float(q) for q in quantiles),
        mean=float(finite.mean()),
        std=float(finite.std()),
        n=int(finite.size),
        min_group=int(max(min_group, 1)),
    )


def build_feature_reference(
    features: pd.DataFrame,
    n_bins: int = 10,
    *,
    exclude: Sequence[str] = ("user_id",),
    min_group: int = MIN_GROUP,
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
    min_group : int, default MIN_GROUP (20)
        Privacy floor: every stored edge and quantile is a value that no user or at
        least ``min_group`` users hold, with at least ``min_group`` users on each side;
        tail quantiles are clipped and tail edges dropped, so the reference (logged to
        MLflow) never carries one user's exact value. 1 keeps the raw quantiles.

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
    >>> ref = build_feature_reference(table, n_bins=4, min_group=1)["orders"]
    >>> ref.edges, ref.proportions
    ((0.0, 1.0), (0.5, 0.25, 0.25))

    With the default privacy floor, four users are too few to store any edge:

    >>> build_feature_reference(table, n_bins=4)["orders"].edges
    ()
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
        references[name] = _reference_of(name, values, int(n_bins), int(min_group))
    if not references:
        raise InsufficientDataError(
            f"no numeric feature column to summarize among {[str(c) for c in features.columns]}"
        )
    return references
