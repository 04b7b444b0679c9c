"""Choosing the number of segments: bootstrap stability, silhouette and smallest share."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.cluster import HDBSCAN
from sklearn.metrics import silhouette_score

from segmentkit.models.clustering import _cluster, _count_distinct

#: Silhouettes within this absolute distance of the best count as a tie; the
#: smallest k among them is chosen.
SILHOUETTE_TOLERANCE = 0.02


# ---------------------------------------------------------------- selection
def choose_k(
    rows: list[dict[str, Any]], min_stability: float, min_share: float
) -> tuple[int, bool]:
    """Apply the k-selection rule to scored candidates.

    Parameters
    ----------
    rows : list of dict
        One dict per candidate with keys ``k, min_jaccard, silhouette, min_share``.
    min_stability, min_share : float
        Thresholds of the rule.

    Returns
    -------
    tuple of (int, bool)
        The chosen k and whether it met the rule.

    Examples
    --------
    >>> rows = [dict(k=3, min_jaccard=0.9, silhouette=0.50, min_share=0.2),
    ...         dict(k=4, min_jaccard=0.8, silhouette=0.51, min_share=0.1),
    ...         dict(k=5, min_jaccard=0.6, silhouette=0.70, min_share=0.1)]
    >>> choose_k(rows, 0.75, 0.02)
    (3, True)
    """
    eligible = [r for r in rows if _eligible(r, min_stability, min_share)]
    if eligible:
        best = max(r["silhouette"] for r in eligible)
        close = [r for r in eligible if r["silhouette"] >= best - SILHOUETTE_TOLERANCE]
        return min(r["k"] for r in close), True
    ranked = sorted(rows, key=lambda r: (-_nan_to(r["min_jaccard"], -1.0), r["k"]))
    return ranked[0]["k"], False


def _eligible(row: dict[str, Any], min_stability: float, min_share: float) -> bool:
    stable = math.isnan(row["min_jaccard"]) or row["min_jaccard"] >= min_stability
    return bool(stable and row["min_share"] >= min_share)


def _nan_to(value: float, fill: float) -> float:
    return fill if math.isnan(value) else value


def _table(
    rows: list[dict[str, Any]], chosen: int, min_stability: float, min_share: float
) -> dict[str, list]:
    keys = ["k", "min_jaccard", "mean_jaccard", "jaccards", "silhouette", "min_share"]
    table: dict[str, list] = {key: [r[key] for r in rows] for key in keys}
    table["eligible"] = [_eligible(r, min_stability, min_share) for r in rows]
    table["chosen"] = [r["k"] == chosen for r in rows]
    return table


def _stability(
    algorithm: str, Zs: np.ndarray, labels: np.ndarray, k: int, boot: list[np.ndarray], seed: int
) -> np.ndarray:
    """Mean over resamples of each cluster's best Jaccard with a bootstrap cluster."""
    if not boot:
        return np.full(k, np.nan)
    scores = []
    for b, rows in enumerate(boot):
        if rows.size < 1000 and _count_distinct(Zs[rows]) <= k:
            continue  # too few distinct users in this resample to form k clusters
        lb, _, _ = _cluster(algorithm, Zs[rows], k, seed + 1 + b)
        scores.append(_best_jaccard(labels[rows], lb, k, k))
    return _nanmean_rows(scores, k)


def _stability_hdbscan(
    Zs: np.ndarray, labels: np.ndarray, k: int, boot: list[np.ndarray], min_size: int
) -> np.ndarray:
    if not boot:
        return np.full(k, np.nan)
    scores = []
    for rows in boot:
        raw = HDBSCAN(min_cluster_size=min_size, copy=True).fit(Zs[rows])
        lb = raw.labels_
        kb = int(lb.max()) + 1
        if kb == 0:
            scores.append(np.zeros(k))
            continue
        # Bootstrap noise is its own "cluster" that matches nothing: index kb, dropped.
        lb = np.where(lb < 0, kb, lb)
        scores.append(_best_jaccard(labels[rows], lb, k, kb + 1, drop_last=True))
    return _nanmean_rows(scores, k)


def _best_jaccard(
    original: np.ndarray, boot: np.ndarray, k: int, kb: int, drop_last: bool = False
) -> np.ndarray:
    """For each original cluster, max Jaccard with any bootstrap cluster (NaN if absent)."""
    counts = np.bincount(original * kb + boot, minlength=k * kb).reshape(k, kb)
    size_a = counts.sum(axis=1, keepdims=True)
    size_b = counts.sum(axis=0, keepdims=True)
    union = size_a + size_b - counts
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(union > 0, counts / union, 0.0)
    if drop_last:
        jac = jac[:, :-1]
    best = jac.max(axis=1) if jac.shape[1] else np.zeros(k)
    return np.where(size_a[:, 0] > 0, best, np.nan)


def _nanmean_rows(scores: list[np.ndarray], k: int) -> np.ndarray:
    if not scores:
        return np.full(k, np.nan)
    stacked = np.vstack(scores)
    counts = np.sum(~np.isnan(stacked), axis=0)
    sums = np.nansum(stacked, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _silhouette(Z: np.ndarray, labels: np.ndarray, sample: int, seed: int) -> float:
    if np.unique(labels).size < 2:
        return math.nan
    if Z.shape[0] > sample:
        rows = np.sort(np.random.RandomState(seed).choice(Z.shape[0], sample, replace=False))
        Z, labels = Z[rows], labels[rows]
        if np.unique(labels).size < 2:
            return math.nan
    return float(silhouette_score(Z, labels))
