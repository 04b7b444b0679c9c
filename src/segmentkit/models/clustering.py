"""Clustering primitives shared by the segmenter and k selection.

Transforms, fits and nearest centres.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.mixture import GaussianMixture

#: A column is log-transformed by ``log_features="auto"`` when its sample skewness
#: exceeds this (for columns with negative values: when ``|skewness|`` does).
SKEW_THRESHOLD = 1.0


#: k-means restarts on the (sub)sample; a full-data fit starts from that solution.
KMEANS_N_INIT = 4


_ALGORITHMS = ("kmeans", "gmm", "hdbscan")


# ------------------------------------------------------------- clustering
def _cluster(
    algorithm: str, Z: np.ndarray, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray, GaussianMixture | None]:
    """Fit ``k`` clusters; return labels, centers and the mixture (gmm only)."""
    if algorithm == "gmm":
        gm = GaussianMixture(
            n_components=k, covariance_type="full", n_init=2, reg_covar=1e-4, random_state=seed
        ).fit(Z)
        return gm.predict(Z).astype(np.intp), gm.means_.copy(), gm
    km = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed).fit(Z)
    return km.labels_.astype(np.intp), km.cluster_centers_.copy(), None


def _refine(
    algorithm: str, Z: np.ndarray, centers: np.ndarray, mixture: GaussianMixture | None, seed: int
) -> tuple[np.ndarray, np.ndarray, GaussianMixture | None]:
    """Fit on all rows, starting from the subsample solution."""
    k = centers.shape[0]
    if algorithm == "gmm":
        gm = GaussianMixture(
            n_components=k,
            covariance_type="full",
            reg_covar=1e-4,
            weights_init=mixture.weights_,
            means_init=mixture.means_,
            precisions_init=mixture.precisions_,
            random_state=seed,
        ).fit(Z)
        return gm.predict(Z).astype(np.intp), gm.means_.copy(), gm
    km = KMeans(n_clusters=k, init=centers, n_init=1, random_state=seed).fit(Z)
    return km.labels_.astype(np.intp), km.cluster_centers_.copy(), None


def _hdbscan(Z: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """HDBSCAN labels with noise sent to the nearest cluster centroid."""
    raw = HDBSCAN(min_cluster_size=min_size, store_centers="centroid", copy=True).fit(Z)
    centers = raw.centroids_ if raw.labels_.max() >= 0 else np.empty((0, Z.shape[1]))
    if centers.shape[0] == 0:
        return np.zeros(Z.shape[0], dtype=np.intp), centers
    labels = raw.labels_.astype(np.intp)
    noise = labels < 0
    if noise.any():
        labels[noise] = _nearest(Z[noise], centers)
    return labels, centers


# --------------------------------------------------------------- geometry
def _distances(Z: np.ndarray, centers: np.ndarray) -> np.ndarray:
    finite = np.isfinite(centers).all(axis=1)
    out = np.full((Z.shape[0], centers.shape[0]), np.inf)
    c = centers[finite]
    sq = (Z**2).sum(axis=1)[:, None] - 2.0 * Z @ c.T + (c**2).sum(axis=1)[None, :]
    out[:, finite] = np.sqrt(np.maximum(sq, 0.0))
    return out


def _nearest(Z: np.ndarray, centers: np.ndarray) -> np.ndarray:
    out = np.empty(Z.shape[0], dtype=np.intp)
    step = 100_000
    for start in range(0, Z.shape[0], step):
        out[start : start + step] = np.argmin(_distances(Z[start : start + step], centers), axis=1)
    return out


def _signed_log(X: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)`` on the masked columns of a copy of ``X``."""
    out = np.array(X, dtype=np.float64, copy=True)
    columns = np.flatnonzero(mask)
    if columns.size == 0:
        return out
    # In row blocks that stay in cache, whatever the memory layout of X.
    step = 8192
    for start in range(0, out.shape[0], step):
        block = out[start : start + step]
        values = block[:, columns]
        block[:, columns] = np.sign(values) * np.log1p(np.abs(values))
    return out


def _heavy_tailed(X: np.ndarray) -> np.ndarray:
    """Columns whose sample skewness exceeds the threshold (|skew| if signed)."""
    mean = X.mean(axis=0)
    centred = X - mean
    var = (centred**2).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        skew = np.where(var > 0, (centred**3).mean(axis=0) / np.maximum(var, 1e-300) ** 1.5, 0.0)
    signed = (X < 0).any(axis=0)
    return np.where(signed, np.abs(skew) > SKEW_THRESHOLD, skew > SKEW_THRESHOLD)


def _count_distinct(Z: np.ndarray) -> int:
    return int(np.unique(Z, axis=0).shape[0]) if Z.shape[0] <= 200_000 else Z.shape[0]


def _subsample(n: int, size: int, rng: np.random.RandomState) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(rng.choice(n, size, replace=False))
