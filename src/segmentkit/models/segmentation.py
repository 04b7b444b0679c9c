"""Behavioral segments: transform, cluster, choose k by stability, name, align ids.

:class:`Segmenter` is a scikit-learn estimator over the feature table (numeric
columns, no ``user_id``). Inside ``fit`` it

1. log-transforms heavy-tailed columns and standardizes every column;
2. clusters with k-means (default), a Gaussian mixture or HDBSCAN;
3. with ``k="auto"`` scores every k in ``k_range`` on a subsample and applies the
   selection rule below;
4. names each segment from its centroid profile relative to the population;
5. optionally aligns segment ids to a reference model, so an id keeps its meaning
   after a refresh.

Features
--------
Columns that carry nothing of their own are left out of clustering and profiles
(:attr:`Segmenter.dropped_features_` says which and why): constant columns,
exact duplicates of an earlier column, and, in a transaction log (every user has
``distinct_events <= 1``: one event type, or ``event: null``), the columns that
are constant or repeat order counts by construction (see
:func:`segmentkit.io.transactions.transaction_redundant_features`).

Choosing k
----------
With ``k="auto"`` every k in ``k_range`` is fitted on a subsample of at most
``bootstrap_sample`` users; the largest k whose segments are all stable
(bootstrap Jaccard >= ``min_stability``, as in Hennig's ``clusterboot``),
separated from their nearest segment by a density dip, and at least
``min_share`` of users (and :data:`MIN_SEGMENT_USERS` users) wins. Why, and the
fallbacks, are in :mod:`segmentkit.models.k_selection`. Every candidate's scores
and the reason it was or was not chosen are kept in :attr:`Segmenter.selection_`.
When the chosen segments are not separated (one continuous population: k-means
cuts it the same way on every resample, but no density dip lies between the
pieces) :attr:`Segmenter.segments_separated_` is False and a
:class:`StabilityWarning` says so; it also says when no k met the rule.

Input
-----
A column that is not numeric (an id, a text column), a NaN or an infinite value
is refused with a :class:`~segmentkit.errors.DataValidationError` naming the
column and its first rows (by the table's index); so is a table whose columns
differ from the ones the model was fitted on.

Naming
------
Names come from what members did, on interpretable per-user quantities (new,
recent, fading or long lapsed against the window and the user's own gap
between visits, top 20 % by spend, buyers, frequency rank): see
:mod:`segmentkit.models.naming`. The evidence is part of
:attr:`Segmenter.profiles_`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from segmentkit.errors import (
    ConfigError,
    DataValidationError,
    InsufficientDataError,
    SegmentkitWarning,
)
from segmentkit.io.transactions import (
    constant_or_duplicate_columns,
    transaction_redundant_features,
)
from segmentkit.models.clustering import (
    _ALGORITHMS,
    _count_distinct,
    _distances,
    _hdbscan,
    _heavy_tailed,
    _nearest,
    _refine,
    _signed_log,
    _subsample,
)
from segmentkit.models.k_selection import (
    VALLEY_RATIO,
    _silhouette,
    _stability,
    _stability_hdbscan,
    _table,
    partition,
    record_stability,
    search_k,
    valley_ratios,
)
from segmentkit.models.naming import (
    EVIDENCE_COLUMNS,
    _feature_labels,
    _lifts,
    describe_segment,
    name_segments,
    segment_evidence,
    strongest_feature_name,
)

#: Fewest users a segment found with ``k="auto"`` may hold (on top of ``min_share``):
#: the profile, name and stability of a handful of users are not something to act
#: on, and on a small table ``min_share`` alone allows segments of one or two users.
MIN_SEGMENT_USERS = 10


def separation_note(segmenter: Any) -> str | None:
    """One sentence for readers when the segments are cuts through one population, else None.

    Said by ``segmentkit train``, ``segmentkit segments`` and the HTML report; models
    saved before :attr:`Segmenter.segments_separated_` existed say nothing.

    Examples
    --------
    >>> class Fitted:
    ...     segments_separated_ = False
    >>> separation_note(Fitted())[:40]
    'no density dip separates these segments:'
    """
    if getattr(segmenter, "segments_separated_", True) is not False:
        return None
    return (
        "no density dip separates these segments: they are stable cuts through one "
        "continuous population (ranges of behaviour), not distinct groups; names are relative"
    )


#: A refitted segment keeps its reference name unless its rule-based name changed
#: or its centroid moved more than this many standard units (Euclidean, reference space).
RENAME_SHIFT = 1.5


class StabilityWarning(SegmentkitWarning):
    """The segments found fall short of the k rule (unstable, too small or not separated)."""


class Segmenter(ClusterMixin, TransformerMixin, BaseEstimator):
    """Find, name and align behavioral segments in a feature table.

    Parameters
    ----------
    algorithm : {"kmeans", "gmm", "hdbscan"}, default="kmeans"
        Clustering method. ``"gmm"`` is a full-covariance Gaussian mixture and adds
        :meth:`predict_proba`. ``"hdbscan"`` chooses its own number of segments
        (``k`` must be ``"auto"``; ``k_range`` is ignored), is fitted on a
        subsample of ``bootstrap_sample`` users with ``min_cluster_size =
        max(5, ceil(min_share * n))``, and assigns noise points and new users to
        the nearest cluster centroid.
    k : "auto" or int, default="auto"
        Number of segments, or ``"auto"`` to choose it by the rule in the module
        docstring.
    k_range : tuple of int, default=(3, 10)
        Inclusive range of k searched when ``k="auto"``.
    n_bootstrap : int, default=20
        Bootstrap resamples for the stability of each candidate (0 skips stability;
        Jaccards are then NaN and every candidate is eligible on share alone).
    bootstrap_sample : int, default=20000
        Size of the subsample used to score candidates and bootstraps.
    min_stability : float, default=0.75
        Minimum mean Jaccard every segment needs for k to be eligible.
    min_share : float, default=0.02
        Minimum share of the smallest segment for k to be eligible; with
        ``k="auto"`` a segment also needs :data:`MIN_SEGMENT_USERS` users.
    silhouette_sample : int, default=2000
        Users (of the subsample) on which the silhouette is computed (for every
        candidate k; it costs the square of this number, and serves the report
        and the fallback rule, so a few thousand users are enough).
    log_features : "auto", bool or sequence, default="auto"
        Columns to log-transform: ``"auto"`` decides per column from the data
        (sample skewness above :data:`SKEW_THRESHOLD`), ``True``/``False`` all or
        none, or a sequence of column names or indices. Logged columns use
        ``sign(x) * log1p(|x|)``, which is ``log1p`` on non-negative data.
    random_state : int, RandomState instance or None, default=None
        Seed for subsampling, bootstraps and the clustering.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Segment id of every training user.
    n_segments_ : int
        Number of segment ids (ids are ``0 .. n_segments_ - 1``; after alignment to
        a reference with more segments, ids missing from this fit have size 0).
    k_ : int
        Number of segments found in this fit.
    k_rule_met_ : bool
        Whether the chosen k met the selection rule (always True for a fixed k).
    segments_separated_ : bool
        Whether every chosen segment is separated from its nearest one by a
        density dip (valley ratio <= ``VALLEY_RATIO``); False means the segments
        are cuts through one continuous population.
    log_columns_ : ndarray of bool
        Which columns were log-transformed.
    center_, scale_ : ndarray
        Standardization of the (logged) columns.
    cluster_centers_ : ndarray of shape (n_segments_, n_features_used)
        Segment centroids in the transformed space of the used features (rows of
        absent ids are inf).
    feature_mask_ : ndarray of bool
        Which input columns segments are found on (see :attr:`features_used_`).
    dropped_features_ : dict
        Input columns left out, with the reason ("constant", "duplicate",
        "transaction log").
    transaction_log_ : bool
        Whether the table came from a transaction log (one event type).
    segment_evidence_ : ndarray of shape (n_segments_, n_evidence)
        The naming evidence per segment (columns
        :data:`~segmentkit.models.naming.EVIDENCE_COLUMNS`).
    segment_names_, segment_descriptions_ : list of str
        Name and one-line description per segment id.
    segment_stability_ : ndarray
        Mean bootstrap Jaccard per segment id.
    segment_sizes_ : ndarray of int
        Training users per segment id.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of str
        Column names seen in fit (only when X was a DataFrame).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(c, 0.3, size=(40, 2)) for c in (0, 5, 10)])
    >>> seg = Segmenter(k=3, n_bootstrap=5, random_state=0).fit(X)
    >>> seg.n_segments_, sorted(np.bincount(seg.labels_).tolist())
    (3, [40, 40, 40])
    >>> seg.transform(X[:1]).shape
    (1, 3)
    """

    def __init__(
        self,
        algorithm: str = "kmeans",
        k: int | str = "auto",
        k_range: tuple[int, int] = (3, 10),
        n_bootstrap: int = 20,
        bootstrap_sample: int = 20000,
        min_stability: float = 0.75,
        min_share: float = 0.02,
        silhouette_sample: int = 2000,
        log_features: str | bool | Sequence[str | int] = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.k = k
        self.k_range = k_range
        self.n_bootstrap = n_bootstrap
        self.bootstrap_sample = bootstrap_sample
        self.min_stability = min_stability
        self.min_share = min_share
        self.silhouette_sample = silhouette_sample
        self.log_features = log_features
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: None = None, reference: Segmenter | None = None) -> Segmenter:
        """Fit segments on a feature table.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Numeric feature table, one row per user, without ``user_id``.
        y : None
            Ignored.
        reference : Segmenter, optional
            A fitted model whose segment ids (and names, where the profile did not
            clearly change) this fit takes over by optimal centroid matching.

        Returns
        -------
        Segmenter
            The fitted estimator.
        """
        self._check_params()
        X = self._validated(X, reset=True)
        n = X.shape[0]
        if n < 2:
            raise InsufficientDataError(
                f"segmentation needs at least 2 users, found 1 sample (n_samples = {n})"
            )
        if not np.ptp(X, axis=0).any():
            raise InsufficientDataError(
                f"all {n} users have identical features: there are no segments to find"
            )
        if reference is not None:
            _check_reference(reference, self)
        rng = check_random_state(self.random_state)

        self._fit_feature_mask(X)
        self.log_columns_ = self._decide_log_columns(X)
        logged = _signed_log(X, self.log_columns_)
        self.center_ = logged.mean(axis=0)
        scale = logged.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        Z = ((logged - self.center_) / self.scale_)[:, self.feature_mask_]

        n_distinct = _count_distinct(Z)
        sub = _subsample(n, self.bootstrap_sample, rng)
        boot = [np.unique(rng.randint(0, sub.size, sub.size)) for _ in range(self.n_bootstrap)]
        # Many small fits run fastest single-threaded (thread start-up and
        # oversubscription dominate); only the full-data refit uses every thread.
        if self.algorithm == "hdbscan":
            with threadpool_limits(limits=1):
                labels, centers, mixture, jaccards, table, rule_met = self._fit_hdbscan(
                    Z, sub, boot, rng
                )
        else:
            ks = self._candidate_ks(n, n_distinct)
            labels, centers, mixture, jaccards, table, rule_met = self._fit_partition(
                Z, sub, boot, ks, rng
            )
        self.k_ = int(centers.shape[0])
        self.k_rule_met_ = bool(rule_met)
        valley = table["valley_ratio"][table["chosen"].index(True)]
        # NaN (not measured) is not separated.
        self.segments_separated_ = bool(valley <= VALLEY_RATIO)

        # Canonical ids: largest segment first; then, with a reference, its ids.
        sizes = np.bincount(labels, minlength=self.k_)
        order = np.lexsort((np.arange(self.k_), -sizes))
        ids = np.empty(self.k_, dtype=np.intp)
        ids[order] = np.arange(self.k_)
        if reference is not None:
            ids = _align_ids(ids, X, labels, reference)
        n_ids = int(ids.max()) + 1
        self.n_segments_ = n_ids
        self.segment_ids_ = ids  # cluster index -> segment id
        self.labels_ = ids[labels].astype(np.intp)
        self.cluster_centers_ = np.full((n_ids, Z.shape[1]), np.inf)
        self.cluster_centers_[ids] = centers
        self.mixture_ = mixture
        self.segment_stability_ = np.full(n_ids, np.nan)
        self.segment_stability_[ids] = jaccards
        self._selection = table

        self._fit_profiles(X, Z, n_ids)
        self._fit_names(reference, X)
        return self

    def fit_predict(self, X: Any, y: None = None, reference: Segmenter | None = None) -> np.ndarray:
        """Fit and return the segment id of every user (see :meth:`fit`).

        Returns
        -------
        ndarray of shape (n_samples,)
            Segment ids.
        """
        return self.fit(X, y, reference=reference).labels_

    def scaled_features(self, X: Any) -> np.ndarray:
        """Return ``X`` in the space the segments are found in.

        Heavy-tailed columns get ``sign(x) * log1p(|x|)``, then every column is
        standardized with the fitted center and scale. Distances here are the ones
        clustering used, so this is the input for a 2-D map (e.g. UMAP) of segments.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Feature table with the training columns.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        return self._transform_features(self._validated(X, reset=False))

    # -------------------------------------------------------------- predict
    def predict(self, X: Any) -> np.ndarray:
        """Assign users to segments.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Feature table with the training columns.

        Returns
        -------
        ndarray of shape (n_samples,)
            Segment ids (nearest centroid for k-means and HDBSCAN, most probable
            component for the Gaussian mixture).
        """
        return self._assign(self.scaled_features(X))

    def _assign(self, Z: np.ndarray) -> np.ndarray:
        """Segment ids of rows already in the scaled space (see :meth:`scaled_features`)."""
        if self.mixture_ is not None:
            return self.segment_ids_[self.mixture_.predict(Z)].astype(np.intp)
        return _nearest(Z, self.cluster_centers_)

    @available_if(lambda self: self.algorithm == "gmm")
    def predict_proba(self, X: Any) -> np.ndarray:
        """Segment membership probabilities (Gaussian mixture only).

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Feature table with the training columns.

        Returns
        -------
        ndarray of shape (n_samples, n_segments_)
            Column ``i`` is the probability of segment id ``i``.
        """
        Z = self.scaled_features(X)
        proba = self.mixture_.predict_proba(Z)
        out = np.zeros((Z.shape[0], self.n_segments_))
        out[:, self.segment_ids_] = proba
        return out

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distance of every user to every segment centroid.

        Distances are measured in the transformed (logged, standardized) space.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Feature table with the training columns.

        Returns
        -------
        ndarray of shape (n_samples, n_segments_)
            Column ``i`` is the distance to segment id ``i`` (inf for an id absent
            from this fit).
        """
        Z = self.scaled_features(X)
        return _distances(Z, self.cluster_centers_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the :meth:`transform` columns: ``segment_distance_<id>``.

        Parameters
        ----------
        input_features : ignored
            Present for API compatibility.

        Returns
        -------
        ndarray of str
            One name per segment id.
        """
        check_is_fitted(self)
        return np.asarray([f"segment_distance_{i}" for i in range(self.n_segments_)], dtype=object)

    @property
    def features_used_(self) -> np.ndarray:
        """Names of the columns segments are found on and profiled by."""
        check_is_fitted(self)
        return _feature_labels(self)[self.feature_mask_]

    # ---------------------------------------------------------- properties
    @property
    def selection_(self) -> pd.DataFrame:
        """Every candidate k with its scores, one row each.

        Columns: ``k, min_jaccard, mean_jaccard, jaccards`` (per-segment list, by
        size on the subsample; NaN / empty for a k never bootstrapped because the
        rule was decided without it), ``silhouette, min_segment_silhouette,
        valley_ratio`` (the worst segment's density dip against its nearest
        segment; <= 0.5 is separated), ``min_share, eligible, chosen`` and
        ``rule`` (why the k was or was not chosen).
        """
        check_is_fitted(self)
        return pd.DataFrame(self._selection)

    @property
    def profiles_(self) -> pd.DataFrame:
        """One row per segment id: name, size, share, stability, evidence, medians, lifts.

        The evidence columns are what the name was decided on (share of members
        new, recent, fading, long lapsed, in the top 20 % by spend, buyers; mean
        value and frequency ranks; recent activity against the population's).
        Medians and lifts cover the used features only (:attr:`features_used_`).

        ``lift_<feature>`` is the segment mean divided by the population mean; when
        the population mean is 0 it is the ratio of medians instead, and NaN when
        that is 0 too. For ``activity_trend`` (signed, centred on 0) the lift is
        the difference of means.
        """
        check_is_fitted(self)
        names = self.features_used_
        frame = pd.DataFrame(
            {
                "name": self.segment_names_,
                "description": self.segment_descriptions_,
                "size": self.segment_sizes_,
                "share": self.segment_sizes_ / self.segment_sizes_.sum(),
                "stability": self.segment_stability_,
            }
        )
        medians = pd.DataFrame(self.segment_medians_, columns=[f"median_{c}" for c in names])
        lifts = pd.DataFrame(self.segment_lifts_, columns=[f"lift_{c}" for c in names])
        evidence = pd.DataFrame(self.segment_evidence_, columns=list(EVIDENCE_COLUMNS))
        out = pd.concat([frame, evidence, medians, lifts], axis=1)
        out.index = pd.RangeIndex(self.n_segments_, name="segment")
        return out

    # ------------------------------------------------------------ internals
    def _validated(self, X: Any, reset: bool) -> np.ndarray:
        """``X`` as a float array, or a :class:`DataValidationError` naming columns and rows.

        Non-numeric columns (an id, a text column) and missing or infinite values
        are refused with the columns and the first rows concerned; scikit-learn's
        own refusals (columns missing, extra or reordered against fit, wrong
        width) keep their message as a :class:`DataValidationError`.
        """
        if isinstance(X, pd.DataFrame):
            _check_numeric_columns(X)
        try:
            out = validate_data(
                self,
                X,
                dtype=np.float64,
                ensure_min_samples=1,
                reset=reset,
                ensure_all_finite=False,
            )
        except DataValidationError:
            raise
        except ValueError as exc:
            raise DataValidationError(f"feature table: {exc}") from exc
        _check_finite(out, X)
        return out

    def _check_params(self) -> None:
        if self.algorithm not in _ALGORITHMS:
            raise ConfigError(f"algorithm: expected one of {_ALGORITHMS}, got {self.algorithm!r}")
        if self.k != "auto":
            if not isinstance(self.k, numbers.Integral) or isinstance(self.k, bool) or self.k < 2:
                raise ConfigError(f"k: expected 'auto' or an integer >= 2, got {self.k!r}")
            if self.algorithm == "hdbscan":
                raise ConfigError(
                    "k: hdbscan chooses its own number of segments; use k='auto' with it"
                )
        try:
            low, high = (int(v) for v in self.k_range)
        except (TypeError, ValueError):
            raise ConfigError(f"k_range: expected (low, high), got {self.k_range!r}") from None
        if not 2 <= low <= high:
            raise ConfigError(f"k_range: expected 2 <= low <= high, got {self.k_range!r}")
        for name, value, lo in (
            ("n_bootstrap", self.n_bootstrap, 0),
            ("bootstrap_sample", self.bootstrap_sample, 2),
            ("silhouette_sample", self.silhouette_sample, 2),
        ):
            if not isinstance(value, numbers.Integral) or value < lo:
                raise ConfigError(f"{name}: expected an integer >= {lo}, got {value!r}")
        for name, value in (("min_stability", self.min_stability), ("min_share", self.min_share)):
            if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
                raise ConfigError(f"{name}: expected a number in [0, 1], got {value!r}")

    def _decide_log_columns(self, X: np.ndarray) -> np.ndarray:
        spec = self.log_features
        n_features = X.shape[1]
        if isinstance(spec, str):
            if spec != "auto":
                raise ConfigError(
                    f"log_features: expected 'auto', a bool or column list, got {spec!r}"
                )
            return _heavy_tailed(X)
        if isinstance(spec, bool | np.bool_):
            return np.full(n_features, bool(spec))
        mask = np.zeros(n_features, dtype=bool)
        names = list(_feature_labels(self))
        for item in spec:
            if isinstance(item, str):
                if item not in names:
                    raise ConfigError(f"log_features: no column {item!r}; columns are {names}")
                mask[names.index(item)] = True
            elif isinstance(item, numbers.Integral) and 0 <= item < n_features:
                mask[int(item)] = True
            else:
                raise ConfigError(f"log_features: {item!r} is not a column of the table")
        return mask

    def _transform_features(self, X: np.ndarray) -> np.ndarray:
        used = self.feature_mask_
        logged = _signed_log(X[:, used], self.log_columns_[used])
        return (logged - self.center_[used]) / self.scale_[used]

    def _fit_feature_mask(self, X: np.ndarray) -> None:
        """Leave out columns that carry nothing of their own (constant, duplicated)."""
        names = [str(c) for c in _feature_labels(self)]
        dropped: dict[str, str] = {}
        for j in np.flatnonzero(constant_or_duplicate_columns(X)):
            dropped[names[j]] = "constant" if not np.ptp(X[:, j]) > 0 else "duplicate"
        events = names.index("distinct_events") if "distinct_events" in names else None
        self.transaction_log_ = bool(events is not None and (X[:, events] <= 1).all())
        if self.transaction_log_:
            for name in transaction_redundant_features(names):
                dropped.setdefault(name, "transaction log")
        mask = np.array([name not in dropped for name in names])
        if not mask.any():  # pragma: no cover - fit rejects tables without variation
            mask[:] = True
        self.feature_mask_ = mask
        self.dropped_features_ = dropped

    def _min_share(self, n: int) -> float:
        """Smallest segment share ``k="auto"`` accepts: ``min_share`` and MIN_SEGMENT_USERS."""
        if self.k != "auto":
            return float(self.min_share)
        return max(float(self.min_share), MIN_SEGMENT_USERS / n)

    def _warn_if_not_separated(
        self, rows: list[dict[str, Any]], chosen: int, rule_met: bool
    ) -> None:
        """Say when ``k="auto"`` found no k whose segments are separated groups."""
        if self.k != "auto" or not rule_met:
            return  # a fixed k is the user's call; an unmet rule has its own warning
        valley = next(r["valley_ratio"] for r in rows if r["k"] == chosen)
        if valley <= VALLEY_RATIO:
            return
        measured = [r["valley_ratio"] for r in rows if not math.isnan(r["valley_ratio"])]
        best = min(measured) if measured else math.nan
        warnings.warn(
            f"no k in {tuple(self.k_range)} gives segments separated from their neighbours "
            f"(lowest density dip between neighbouring segments {best:.2f}; separated is <= "
            f"{VALLEY_RATIO}): the k={chosen} segments are stable cuts through one continuous "
            "population, not distinct groups of users; read them as ranges of behaviour, "
            "and their names as relative",
            StabilityWarning,
            stacklevel=4,
        )

    def _candidate_ks(self, n: int, n_distinct: int) -> list[int]:
        if self.k != "auto":
            k = int(self.k)
            if n < k:
                raise InsufficientDataError(f"k={k} segments need at least {k} users, found {n}")
            if n_distinct < k:
                raise InsufficientDataError(
                    f"k={k} segments need at least {k} distinct users, found {n_distinct}"
                )
            return [k]
        low, high = (int(v) for v in self.k_range)
        if n_distinct <= low:  # the silhouette needs k < number of users scored
            raise InsufficientDataError(
                f"k='auto' with k_range=({low}, {high}) needs at least {low + 1} distinct users, "
                f"found {n_distinct}"
            )
        if n < low * MIN_SEGMENT_USERS:
            raise InsufficientDataError(
                f"k='auto' with k_range=({low}, {high}) needs at least {low * MIN_SEGMENT_USERS} "
                f"users ({low} segments of at least {MIN_SEGMENT_USERS} users), found {n}; "
                "use more users or set a fixed k"
            )
        # No k can give every segment MIN_SEGMENT_USERS users beyond n // MIN_SEGMENT_USERS.
        ks = [k for k in range(low, high + 1) if k < n_distinct and k * MIN_SEGMENT_USERS <= n]
        return ks

    def _fit_partition(
        self,
        Z: np.ndarray,
        sub: np.ndarray,
        boot: list[np.ndarray],
        ks: list[int],
        rng: np.random.RandomState,
    ) -> tuple[np.ndarray, np.ndarray, Any, np.ndarray, dict[str, list], bool]:
        Zs = Z[sub]
        whole = sub.size == Z.shape[0]
        min_share = self._min_share(Z.shape[0])
        rows: list[dict[str, Any]] = []
        fits = {}
        distinct_s = _count_distinct(Zs)
        for k in ks:
            seed = int(rng.randint(np.iinfo(np.int32).max))
            if distinct_s <= k and len(ks) > 1:
                continue
            with threadpool_limits(limits=1):
                labels_s, centers_s, mixture_s = partition(self.algorithm, Zs, k, seed)
            shares = np.bincount(labels_s, minlength=k) / labels_s.size
            sil = worst_sil = math.nan
            valleys = np.full(k, np.nan)
            if shares.min() >= min_share or self.k != "auto":
                # A candidate with a too-small segment can never be chosen: skip its scores.
                with threadpool_limits(limits=1):
                    sil, worst_sil = _silhouette(Zs, labels_s, self.silhouette_sample, seed)
                valleys = valley_ratios(Zs, labels_s, centers_s)
            fits[k] = (labels_s, centers_s, mixture_s, seed, np.argsort(-shares, kind="stable"))
            rows.append(
                {
                    "k": k,
                    "min_jaccard": math.nan,
                    "mean_jaccard": math.nan,
                    "jaccards": [],
                    "silhouette": sil,
                    "min_segment_silhouette": worst_sil,
                    "valley_ratio": float(np.nanmax(valleys))
                    if np.isfinite(valleys).any()
                    else math.nan,
                    "min_share": float(shares.min()),
                    "bootstrapped": False,
                }
            )
        jaccards: dict[int, np.ndarray] = {}

        def stability(k: int) -> np.ndarray:
            labels_s, _, _, seed, order = fits[k]
            with threadpool_limits(limits=1):
                jaccards[k] = _stability(self.algorithm, Zs, labels_s, k, boot, seed)
            return jaccards[k][order]  # reported by segment size

        if self.k == "auto":
            chosen, rule_met, how = search_k(rows, stability, self.min_stability, min_share)
        else:
            chosen, rule_met, how = rows[0]["k"], True, "chosen: fixed k"
            record_stability(rows[0], stability(chosen))
        if not rule_met and self.k == "auto":
            floor = f" ({MIN_SEGMENT_USERS} users)" if min_share > self.min_share else ""
            warnings.warn(
                f"no k in {self.k_range} gave segments with bootstrap Jaccard >= "
                f"{self.min_stability} and share >= {min_share:.3g}{floor}; using k={chosen}, "
                "the most stable candidate",
                StabilityWarning,
                stacklevel=3,
            )
        table = _table(rows, chosen, how, self.min_stability, min_share)
        self._warn_if_not_separated(rows, chosen, rule_met)
        labels_s, centers_s, mixture_s, seed, _ = fits[chosen]
        jac = jaccards[chosen]
        if whole:
            labels = np.empty(Z.shape[0], dtype=np.intp)
            labels[sub] = labels_s
            return labels, centers_s, mixture_s, jac, table, rule_met
        labels, centers, mixture = _refine(self.algorithm, Z, centers_s, mixture_s, seed)
        with threadpool_limits(limits=1):
            jac = _stability(self.algorithm, Zs, labels[sub], chosen, boot, seed)
        return labels, centers, mixture, jac, table, rule_met

    def _fit_hdbscan(
        self, Z: np.ndarray, sub: np.ndarray, boot: list[np.ndarray], rng: np.random.RandomState
    ) -> tuple[np.ndarray, np.ndarray, None, np.ndarray, dict[str, list], bool]:
        Zs = Z[sub]
        min_size = max(5, math.ceil(self.min_share * sub.size))
        labels_s, centers = _hdbscan(Zs, min_size)
        k = centers.shape[0]
        if k < 2:
            raise InsufficientDataError(
                f"hdbscan found {k} cluster(s) in {sub.size} users "
                f"(min_cluster_size={min_size}); no segments to report"
            )
        labels = _nearest(Z, centers)
        labels[sub] = labels_s
        jac = _stability_hdbscan(Zs, labels_s, k, boot, min_size)
        shares = np.bincount(labels, minlength=k) / labels.size
        seed = int(rng.randint(np.iinfo(np.int32).max))
        sil, worst_sil = _silhouette(Zs, labels_s, self.silhouette_sample, seed)
        row = {
            "k": k,
            "silhouette": sil,
            "min_segment_silhouette": worst_sil,
            "valley_ratio": float(np.nanmax(valley_ratios(Zs, labels_s, centers))),
            "min_share": float(shares.min()),
        }
        record_stability(row, jac[np.argsort(-shares, kind="stable")])
        # HDBSCAN finds density-separated clusters itself: its rule is stability and share.
        rule_met = bool(
            (math.isnan(row["min_jaccard"]) or row["min_jaccard"] >= self.min_stability)
            and row["min_share"] >= self._min_share(Z.shape[0])
        )
        if not rule_met:
            warnings.warn(
                f"hdbscan segments do not meet the rule (Jaccard >= {self.min_stability}, "
                f"share >= {self.min_share})",
                StabilityWarning,
                stacklevel=3,
            )
        how = "chosen: hdbscan" + ("" if rule_met else " (rule not met)")
        table = _table([row], k, how, self.min_stability, self._min_share(Z.shape[0]))
        return labels, centers, None, jac, table, rule_met

    def _fit_profiles(self, X: np.ndarray, Z: np.ndarray, n_ids: int) -> None:
        labels = self.labels_
        Xu = X[:, self.feature_mask_]
        n_features = Xu.shape[1]
        self.segment_sizes_ = np.bincount(labels, minlength=n_ids).astype(np.int64)
        self.population_mean_ = Xu.mean(axis=0)
        self.population_median_ = np.median(Xu, axis=0)
        self.segment_medians_ = np.full((n_ids, n_features), np.nan)
        means = np.full((n_ids, n_features), np.nan)
        self.segment_z_ = np.full((n_ids, n_features), np.nan)
        order = np.argsort(labels, kind="stable")
        bounds = np.r_[0, np.cumsum(self.segment_sizes_)]
        for s in range(n_ids):
            rows = order[bounds[s] : bounds[s + 1]]
            if rows.size == 0:
                continue
            self.segment_medians_[s] = np.median(Xu[rows], axis=0)
            means[s] = Xu[rows].mean(axis=0)
            self.segment_z_[s] = Z[rows].mean(axis=0)
        self.segment_lifts_ = _lifts(
            means,
            self.segment_medians_,
            self.population_mean_,
            self.population_median_,
            self.features_used_,
        )
        # Naming evidence reads every column (recency, gaps, orders), used or not.
        evidence = segment_evidence(X, labels, list(_feature_labels(self)), n_ids)
        self.segment_evidence_ = evidence.to_numpy(dtype=float)

    def _fit_names(self, reference: Segmenter | None, X: np.ndarray) -> None:
        used = list(self.features_used_)
        present = self.segment_sizes_ > 0
        evidence = pd.DataFrame(self.segment_evidence_, columns=list(EVIDENCE_COLUMNS))
        fallback = [
            strongest_feature_name(self.segment_z_[s], used) if present[s] else ""
            for s in range(self.n_segments_)
        ]
        kinds, names = name_segments(evidence, fallback, present)
        if reference is not None:
            names = self._inherit_names(reference, X, kinds, names, present)
        self.segment_kinds_ = kinds
        self.segment_names_ = names
        self.segment_descriptions_ = [
            describe_segment(
                evidence.iloc[s],
                self.segment_lifts_[s],
                self.segment_z_[s],
                used,
                transaction_log=self.transaction_log_,
            )
            if present[s]
            else "absent in this fit"
            for s in range(self.n_segments_)
        ]

    def _inherit_names(
        self,
        reference: Segmenter,
        X: np.ndarray,
        kinds: list[str],
        names: list[str],
        present: np.ndarray,
    ) -> list[str]:
        """Keep the reference's name where a segment kept its kind and barely moved."""
        names = list(names)
        ref_z = reference._transform_features(X)  # this table in the reference's space
        inherited = set()
        for s in range(min(self.n_segments_, reference.n_segments_)):
            if not present[s]:
                names[s] = reference.segment_names_[s]
                inherited.add(s)
                continue
            if reference.segment_sizes_[s] == 0:
                continue
            rows = self.labels_ == s
            shift = float(np.linalg.norm(ref_z[rows].mean(axis=0) - reference.cluster_centers_[s]))
            if kinds[s] == reference.segment_kinds_[s] and shift <= RENAME_SHIFT:
                names[s] = reference.segment_names_[s]
                inherited.add(s)
        taken = {names[s] for s in inherited}
        for s in range(len(names)):
            if s in inherited or not names[s]:
                continue
            base, n = names[s], 2
            while names[s] in taken:
                names[s] = f"{base} {n}"
                n += 1
            taken.add(names[s])
        return names


# -------------------------------------------------------------- validation
#: Rows quoted in an error about a feature table.
_ROWS_SHOWN = 5


def _row_labels(X: Any, rows: np.ndarray) -> str:
    """Name the first of ``rows`` by the table's own index (positions for an array)."""
    index = X.index if isinstance(X, pd.DataFrame) else None
    shown = [str(index[r]) if index is not None else str(r) for r in rows[:_ROWS_SHOWN]]
    more = f" and {rows.size - _ROWS_SHOWN} more" if rows.size > _ROWS_SHOWN else ""
    return ", ".join(shown) + more


def _check_numeric_columns(X: pd.DataFrame) -> None:
    """Refuse columns holding values that are not numbers (an id, a text column)."""
    for name in X.columns:
        column = X[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue
        numbers_ = pd.to_numeric(column, errors="coerce")
        bad = np.flatnonzero(numbers_.isna().to_numpy() & column.notna().to_numpy())
        if bad.size:
            samples = ", ".join(repr(v) for v in column.iloc[bad[:3]].tolist())
            raise DataValidationError(
                f"feature table: column {name!r} is not numeric ({bad.size} of {len(column)} "
                f"rows, e.g. rows {_row_labels(X, bad)}: {samples}); segments are found on "
                "numeric features only: drop id and text columns (e.g. "
                "table.drop(columns='user_id'))"
            )


def _check_finite(values: np.ndarray, X: Any) -> None:
    """Refuse NaN and infinite values, naming the columns and their first rows."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    names = getattr(X, "columns", None)
    parts = []
    for j in np.flatnonzero(bad.any(axis=0)):
        rows = np.flatnonzero(bad[:, j])
        kinds = " and ".join(
            word
            for word, hit in (
                ("NaN", np.isnan(values[rows, j]).any()),
                ("inf", np.isinf(values[rows, j]).any()),
            )
            if hit
        )
        name = repr(str(names[j])) if names is not None else f"{j} (position)"
        noun = "row" if rows.size == 1 else "rows"
        parts.append(f"column {name}: {kinds} in {rows.size} {noun} ({_row_labels(X, rows)})")
    raise DataValidationError(
        "feature table has missing (NaN) or infinite (inf) values, which segments cannot "
        "place: " + "; ".join(parts) + ". Fill or drop those rows first"
    )


# -------------------------------------------------------------- alignment
def _check_reference(reference: Any, model: Segmenter) -> None:
    if not isinstance(reference, Segmenter):
        raise ConfigError(f"reference: expected a fitted Segmenter, got {type(reference).__name__}")
    check_is_fitted(reference)
    if reference.n_features_in_ != model.n_features_in_:
        raise ConfigError(
            f"reference was fitted on {reference.n_features_in_} features, "
            f"this table has {model.n_features_in_}"
        )
    ref_names = getattr(reference, "feature_names_in_", None)
    new_names = getattr(model, "feature_names_in_", None)
    if ref_names is not None and new_names is not None and list(ref_names) != list(new_names):
        raise ConfigError(
            f"reference was fitted on columns {list(ref_names)}, this table has {list(new_names)}"
        )


def _align_ids(
    ids: np.ndarray, X: np.ndarray, labels: np.ndarray, reference: Segmenter
) -> np.ndarray:
    """Map each new cluster to a reference id by optimal centroid matching."""
    k = ids.size
    ref_Z = reference._transform_features(X)
    new_centers = np.vstack([ref_Z[labels == c].mean(axis=0) for c in range(k)])
    ref_present = np.flatnonzero(reference.segment_sizes_ > 0)
    cost = _distances(new_centers, reference.cluster_centers_[ref_present])
    rows, cols = linear_sum_assignment(cost)
    out = np.full(k, -1, dtype=np.intp)
    out[rows] = ref_present[cols]
    unmatched = np.flatnonzero(out < 0)
    # Unmatched clusters follow the reference ids, in canonical (size) order.
    unmatched = unmatched[np.argsort(ids[unmatched], kind="stable")]
    out[unmatched] = reference.n_segments_ + np.arange(unmatched.size)
    return out
