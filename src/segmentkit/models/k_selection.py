"""Choosing the number of segments: stability, separation, share, silhouette.

The rule (:func:`choose_k`) keeps small distinct groups. Each candidate k is
fitted once on a subsample and scored:

* **separation** (:func:`valley_ratios`): for every segment, the users of it and
  of its nearest segment are projected on the line joining the two centres; the
  density of the projections must dip between the two peaks to at most
  :data:`VALLEY_RATIO` of the lower peak. A cut through one group (k too
  large) has no dip, ratio about 1; a distinct group, however small, has one;
* **stability** per segment, as in Hennig's ``clusterboot`` (mean over
  bootstrap resamples of the best Jaccard with a resample's segment);
* **smallest share**; and the **silhouette** (mean and worst segment's mean),
  reported and used only as a fallback.

The largest k whose segments are all stable (``min_stability``), separated and
at least ``min_share`` of users wins. Why the largest: a stable, separated
segment is a real group whatever its size, while the mean silhouette is
dominated by the large segments and prefers folding a small, valuable group
into a big neighbour (the failure this rule replaces). Why separation: stability
alone accepts reproducible cuts through one elongated group (k-means cuts a
skewed group the same way on every resample). When no k separates every
segment (heavily overlapping behaviour), the stable k with the best
silhouette is used, preferring the smallest k within
:data:`SILHOUETTE_TOLERANCE`; when no k is stable either, the most stable k
whose segments are all above the minimum share (any k when none is), and the
rule is reported as not met.

Bootstraps are the expensive part, so :func:`search_k` computes them lazily: it
scores every k's separation and share on one fit each, then bootstraps
candidates from the largest separated k down and stops at the first stable one.
Its choice equals :func:`choose_k` on the fully scored table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.metrics import silhouette_samples

from segmentkit.models.clustering import _cluster, _count_distinct

__all__ = [
    "SILHOUETTE_TOLERANCE",
    "VALLEY_RATIO",
    "choose_k",
    "merged_cell_centers",
    "partition",
    "record_stability",
    "search_k",
    "valley_ratios",
]

#: Fallback rule: silhouettes within this absolute distance of the best count as
#: a tie, and the smallest k among them is chosen.
SILHOUETTE_TOLERANCE = 0.02
#: A segment is separated from its nearest segment when the density of users
#: along the line joining their centres dips, between the two peaks, to at most
#: this fraction of the lower peak (1.0 = no dip: two halves of one group).
VALLEY_RATIO = 0.5
#: k-means restarts per fit in :func:`partition` (candidates and bootstraps alike).
#: A small distinct group is the lowest-inertia solution but only some restarts
#: find it (about 3 in 10 on the small_vip scenario): 8 restarts miss it rarely.
PARTITION_RESTARTS = 8
#: Cells of the fine k-means that :func:`merged_cell_centers` merges into k starting
#: centres (one more start, which finds a small group that random starts miss).
MERGE_CELLS = 15
#: Rows the fine cells are fitted on (a seeded sample): a group of 3 % still has about
#: 120 of them, and the cells cost a sixth of a full-size fit of 15 clusters.
MERGE_SAMPLE = 4000
#: Solutions whose inertia is within this fraction of the lowest one are ties, broken
#: by density separation (:func:`partition`).
NEAR_TIE = 0.005
#: Grid points of the 1-D density in :func:`valley_ratios`.
_GRID = 256

_CHOSEN_SEPARATED = "chosen: largest k with every segment stable, separated and above min share"
_CHOSEN_SILHOUETTE = "chosen: no k separates every segment; best silhouette among stable k"
_CHOSEN_FALLBACK = "chosen: no k is stable; the most stable k (rule not met)"


# ---------------------------------------------------------------- selection
def _stable(row: dict[str, Any], min_stability: float) -> bool:
    return math.isnan(row["min_jaccard"]) or row["min_jaccard"] >= min_stability


def _separated(row: dict[str, Any]) -> bool:
    valley = row.get("valley_ratio", math.nan)
    return not math.isnan(valley) and valley <= VALLEY_RATIO


def _eligible(row: dict[str, Any], min_stability: float, min_share: float) -> bool:
    """Meets the main rule: stable, separated, smallest share large enough."""
    return bool(_stable(row, min_stability) and _separated(row) and row["min_share"] >= min_share)


def choose_k(
    rows: list[dict[str, Any]], min_stability: float, min_share: float
) -> tuple[int, bool, str]:
    """Apply the k-selection rule (module docstring) to fully scored candidates.

    Parameters
    ----------
    rows : list of dict
        One dict per candidate with keys ``k, min_jaccard, silhouette, min_share``
        and ``valley_ratio`` (the worst segment's, see :func:`valley_ratios`). A
        NaN ``min_jaccard`` (no bootstraps) counts as stable.
    min_stability, min_share : float
        Thresholds of the rule.

    Returns
    -------
    tuple of (int, bool, str)
        The chosen k, whether the rule was met, and which branch chose it.

    Examples
    --------
    A small distinct group at k=5 lowers the mean silhouette a little; k=6 cuts a
    group in two (no density dip):

    >>> rows = [dict(k=4, min_jaccard=0.99, silhouette=0.43, min_share=0.19, valley_ratio=0.06),
    ...         dict(k=5, min_jaccard=0.85, silhouette=0.42, min_share=0.04, valley_ratio=0.08),
    ...         dict(k=6, min_jaccard=0.80, silhouette=0.34, min_share=0.04, valley_ratio=1.0)]
    >>> choose_k(rows, 0.75, 0.02)[:2]
    (5, True)
    """
    eligible = [r for r in rows if _eligible(r, min_stability, min_share)]
    if eligible:
        return max(r["k"] for r in eligible), True, _CHOSEN_SEPARATED
    stable = [r for r in rows if _stable(r, min_stability) and r["min_share"] >= min_share]
    if stable:
        best = max(_nan_to(r["silhouette"], -1.0) for r in stable)
        close = [r for r in stable if _nan_to(r["silhouette"], -1.0) >= best - SILHOUETTE_TOLERANCE]
        return min(r["k"] for r in close), True, _CHOSEN_SILHOUETTE
    # Segments below the minimum share are what the rule refuses first: only when
    # every candidate has one is the most stable of them used.
    pool = [r for r in rows if r["min_share"] >= min_share] or rows
    ranked = sorted(pool, key=lambda r: (-_nan_to(r["min_jaccard"], -1.0), r["k"]))
    return ranked[0]["k"], False, _CHOSEN_FALLBACK


def search_k(
    rows: list[dict[str, Any]],
    stability: Callable[[int], np.ndarray],
    min_stability: float,
    min_share: float,
) -> tuple[int, bool, str]:
    """:func:`choose_k` with bootstraps computed only where they can change the answer.

    Parameters
    ----------
    rows : list of dict
        Candidates scored on one fit each (``k, silhouette, min_share,
        valley_ratio``). Rows whose stability is computed get ``min_jaccard``,
        ``mean_jaccard`` and ``jaccards`` filled in place; the others keep NaN
        and are marked ``bootstrapped=False``.
    stability : callable
        ``stability(k)`` returns the per-segment mean Jaccards of candidate k.
    min_stability, min_share : float
        Thresholds of the rule.

    Returns
    -------
    tuple of (int, bool, str)
        As :func:`choose_k` on the fully scored table.
    """
    by_k = {r["k"]: r for r in rows}
    for r in rows:
        r.setdefault("bootstrapped", False)

    def evaluate(k: int) -> dict[str, Any]:
        row = by_k[k]
        if not row["bootstrapped"]:
            record_stability(row, stability(k))
        return row

    share_ok = [r for r in rows if r["min_share"] >= min_share]
    for r in sorted((r for r in share_ok if _separated(r)), key=lambda r: -r["k"]):
        if _stable(evaluate(r["k"]), min_stability):
            return r["k"], True, _CHOSEN_SEPARATED
    # Fallback: best silhouette among stable k, smallest k within the tolerance.
    ranked = sorted(share_ok, key=lambda r: (-_nan_to(r["silhouette"], -1.0), r["k"]))
    best = None
    for r in ranked:
        sil = _nan_to(r["silhouette"], -1.0)
        if best is not None and sil < best - SILHOUETTE_TOLERANCE:
            break
        if _stable(evaluate(r["k"]), min_stability) and best is None:
            best = sil
    if best is not None:
        close = [
            r
            for r in share_ok
            if r["bootstrapped"]
            and _stable(r, min_stability)
            and _nan_to(r["silhouette"], -1.0) >= best - SILHOUETTE_TOLERANCE
        ]
        return min(r["k"] for r in close), True, _CHOSEN_SILHOUETTE
    for r in rows:
        evaluate(r["k"])
    return choose_k(rows, min_stability, min_share)


def record_stability(row: dict[str, Any], jaccards: np.ndarray) -> None:
    """Store a candidate's per-segment Jaccards (and their min and mean) in its row."""
    row["min_jaccard"] = float(np.min(jaccards)) if jaccards.size else math.nan
    row["mean_jaccard"] = float(np.mean(jaccards)) if jaccards.size else math.nan
    row["jaccards"] = [round(float(v), 4) for v in jaccards]
    row["bootstrapped"] = True


def _nan_to(value: float, fill: float) -> float:
    return fill if math.isnan(value) else value


def _reason(
    row: dict[str, Any], chosen: int, how: str, min_stability: float, min_share: float
) -> str:
    """One line saying why a candidate was or was not chosen."""
    if row["k"] == chosen:
        return how
    if row["min_share"] < min_share:
        return f"a segment below min share ({row['min_share']:.1%} < {min_share:.1%})"
    if not _separated(row):
        valley = row.get("valley_ratio", math.nan)
        if math.isnan(valley):
            return "separation not measured"
        return f"not separated: two neighbouring segments without a density dip ({valley:.2f})"
    if not row.get("bootstrapped", True):
        return "not bootstrapped: a larger k qualified first"
    if not _stable(row, min_stability):
        return f"unstable: min Jaccard {row['min_jaccard']:.2f}"
    if how == _CHOSEN_SEPARATED:
        return "qualifies, but a larger k does too"
    return "not chosen"


def _table(
    rows: list[dict[str, Any]], chosen: int, how: str, min_stability: float, min_share: float
) -> dict[str, list]:
    keys = [
        "k",
        "min_jaccard",
        "mean_jaccard",
        "jaccards",
        "silhouette",
        "min_segment_silhouette",
        "valley_ratio",
        "min_share",
    ]
    table: dict[str, list] = {key: [r.get(key, math.nan) for r in rows] for key in keys}
    # A candidate never bootstrapped has no verdict (None) on stability.
    table["eligible"] = [
        _eligible(r, min_stability, min_share) if r.get("bootstrapped", True) else None
        for r in rows
    ]
    table["chosen"] = [r["k"] == chosen for r in rows]
    table["rule"] = [_reason(r, chosen, how, min_stability, min_share) for r in rows]
    return table


# ------------------------------------------------------------- separation
def valley_ratios(Z: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Density dip between each segment and its nearest segment, as a ratio.

    Members of segment ``a`` and of its nearest segment ``b`` (by centre
    distance) are projected on the line from centre ``a`` (0) to centre ``b``
    (1); the assignment boundary between the two is exactly at 0.5 on it. The
    density of the projections (Gaussian kernel, bandwidth by Silverman's rule on
    the smaller segment's robust spread) should have a peak (its highest local
    maximum) on each side of 0.5; the ratio is the lowest density between the
    two peaks over the lower one. A k-means cut through one group gives about 1
    (one side has no peak of its own, or only a noise bump); a distinct group,
    however small, gives a clear dip, even where the large neighbour's tail
    is denser at the boundary than the small group's peak.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Points in the clustering space.
    labels : ndarray of shape (n_samples,)
        Cluster index of every point, ``0 .. k - 1``.
    centers : ndarray of shape (k, n_features)
        Cluster centres.

    Returns
    -------
    ndarray of shape (k,)
        Ratio per cluster, in [0, 1] (NaN where it cannot be measured).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> two = np.r_[rng.normal(0, 1, (300, 2)), rng.normal(6, 1, (30, 2))]
    >>> lab = (two[:, 0] > 3).astype(int)
    >>> cen = np.vstack([two[lab == c].mean(axis=0) for c in (0, 1)])
    >>> bool(valley_ratios(two, lab, cen).max() < 0.5)
    True
    >>> one = rng.normal(0, 1, (400, 2))
    >>> lab = (one[:, 0] > 0).astype(int)
    >>> cen = np.vstack([one[lab == c].mean(axis=0) for c in (0, 1)])
    >>> bool(valley_ratios(one, lab, cen).min() > 0.8)
    True
    """
    k = centers.shape[0]
    out = np.full(k, np.nan)
    if k < 2:
        return out
    gaps = ((centers[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(gaps, np.inf)
    for a in range(k):
        out[a] = _pair_valley(Z, labels, centers, a, int(np.argmin(gaps[a])))
    return out


def _pair_valley(Z: np.ndarray, labels: np.ndarray, centers: np.ndarray, a: int, b: int) -> float:
    direction = centers[b] - centers[a]
    norm = float(direction @ direction)
    in_a, in_b = labels == a, labels == b
    if norm == 0 or in_a.sum() < 2 or in_b.sum() < 2:
        return math.nan
    ta = (Z[in_a] - centers[a]) @ direction / norm
    tb = (Z[in_b] - centers[a]) @ direction / norm
    spread = min(_robust_sd(ta), _robust_sd(tb))
    bandwidth = max(0.9 * spread * min(ta.size, tb.size) ** (-0.2), 1e-3)
    t = np.r_[ta, tb]
    lo, hi = np.quantile(t, [0.001, 0.999])
    grid = np.linspace(min(lo, -0.25) - 3 * bandwidth, max(hi, 1.25) + 3 * bandwidth, _GRID)
    step = grid[1] - grid[0]
    bins = np.clip(np.rint((t - grid[0]) / step).astype(np.intp), 0, _GRID - 1)
    counts = np.bincount(bins, minlength=_GRID).astype(float)
    half = int(np.ceil(4 * bandwidth / step))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * step / bandwidth) ** 2)
    density = np.convolve(counts, kernel, mode="same")
    # Each side's peak is its highest local maximum: a side whose density only
    # falls away from the boundary has no peak of its own (no dip, ratio 1).
    rising = np.r_[False, density[1:] > density[:-1]]
    falling = np.r_[density[:-1] >= density[1:], False]
    peaks = rising & falling
    left = grid < 0.5
    if not (peaks & left).any() or not (peaks & ~left).any():
        return 1.0
    peak_a = int(np.argmax(np.where(peaks & left, density, -np.inf)))
    peak_b = int(np.argmax(np.where(peaks & ~left, density, -np.inf)))
    lower = min(density[peak_a], density[peak_b])
    valley = density[peak_a : peak_b + 1].min()
    return float(valley / lower)


def _robust_sd(values: np.ndarray) -> float:
    q25, q75 = np.quantile(values, [0.25, 0.75])
    sd = float(values.std())
    iqr = float(q75 - q25) / 1.349
    return min(sd, iqr) if iqr > 0 else sd


# ------------------------------------------------------------ partitions
def partition(
    algorithm: str, Z: np.ndarray, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Fit ``k`` clusters: the best of :data:`PARTITION_RESTARTS` k-means runs and one more.

    A small distinct group is often the lowest-inertia solution but found by only
    some restarts, hence more restarts than scikit-learn's default, and one more
    run started from merged fine cells (:func:`merged_cell_centers`), which finds
    it where random starts rarely do (a group of 3 % of users: 1 start in 13-20).

    Runs within :data:`NEAR_TIE` of the lowest inertia are ties: there the
    objective cannot choose between, say, isolating a 3 % group and cutting a
    large group in two (0.04-0.17 % apart on the small_vip scenario at 3 %, and
    either may win on a bootstrap resample, which made the small group unstable).
    Among ties the run whose segments are best separated from their nearest
    neighbours (lowest largest :func:`valley_ratios`) is kept, then the lower
    inertia. The same procedure refits the bootstrap resamples, so stability
    measures it. Other algorithms fit as usual.

    Returns
    -------
    tuple
        Labels, centres and the mixture (Gaussian mixture only, else None).
    """
    if algorithm != "kmeans":
        return _cluster(algorithm, Z, k, seed)
    rng = np.random.RandomState(seed)
    runs = [
        KMeans(n_clusters=k, n_init=1, random_state=int(rng.randint(np.iinfo(np.int32).max)))
        for _ in range(PARTITION_RESTARTS)
    ]
    start = merged_cell_centers(Z, k, seed)
    if start is not None:
        runs.append(KMeans(n_clusters=k, init=start, n_init=1, random_state=seed))
    fits = [run.fit(Z) for run in runs]
    labels, centers = best_of_runs(
        Z, [(fit.inertia_, fit.labels_.astype(np.intp), fit.cluster_centers_) for fit in fits]
    )
    return labels, centers.copy(), None


def best_of_runs(
    Z: np.ndarray, runs: list[tuple[float, np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Return the labels and centres of the best k-means run (see :func:`partition`).

    The lowest inertia wins, except among runs within :data:`NEAR_TIE` of it, where
    the best separated run (lowest largest :func:`valley_ratios`) wins, then the
    lower inertia. Runs of equal inertia are one partition (in another label order).

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
    runs : list of (inertia, labels, centres)
    """
    runs = sorted(runs, key=lambda run: run[0])
    best = runs[0][0]
    ties: list[tuple[float, np.ndarray, np.ndarray]] = []
    for run in runs:
        if run[0] <= best * (1 + NEAR_TIE) and all(
            run[0] - tie[0] > 1e-9 * abs(best) for tie in ties
        ):
            ties.append(run)
    if len(ties) == 1:
        return runs[0][1], runs[0][2]
    separation = [_worst_valley(Z, labels, centers) for _, labels, centers in ties]
    _, labels, centers = ties[int(np.argmin(separation))]  # argmin: lowest inertia among equals
    return labels, centers


def _worst_valley(Z: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> float:
    """Return the largest valley ratio of a partition (1 where none can be measured)."""
    valleys = valley_ratios(Z, labels, centers)
    return float(np.nanmax(valleys)) if np.isfinite(valleys).any() else 1.0


def merged_cell_centers(Z: np.ndarray, k: int, seed: int) -> np.ndarray | None:
    """Return k starting centres: fine k-means cells merged by Ward's criterion.

    Random k-means starts (k-means++) rarely put a centre in a small group lying
    beside a large one. Cut into :data:`MERGE_CELLS` cells first, the small group
    gets cells of its own; merging, again and again, the pair of cells whose union
    adds the least within-cluster sum of squares (Ward: ``n_a n_b / (n_a + n_b)
    |c_a - c_b|^2``) joins the cells of each large group long before a distant
    small group. The cells are fitted on at most :data:`MERGE_SAMPLE` rows: they only
    place the starting centres, which the k-means run then fits on every row.

    Returns
    -------
    ndarray of shape (k, n_features) or None
        None where there are too few distinct points for more cells than k.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Z = np.r_[rng.normal(0, 1, (500, 2)), rng.normal([0, 8], 1, (500, 2)),
    ...           rng.normal([5, 4], 0.3, (15, 2))]
    >>> sorted(np.round(merged_cell_centers(Z, 3, 0)).astype(int).tolist())
    [[0, 0], [0, 8], [5, 4]]
    """
    if Z.shape[0] > MERGE_SAMPLE:
        Z = Z[np.random.RandomState(seed).choice(Z.shape[0], MERGE_SAMPLE, replace=False)]
    cells = min(MERGE_CELLS, _count_distinct(Z))
    if cells <= k:
        return None
    fine = KMeans(n_clusters=cells, n_init=1, random_state=seed).fit(Z)
    sizes = np.bincount(fine.labels_, minlength=cells).astype(float)
    centers, sizes = fine.cluster_centers_[sizes > 0], sizes[sizes > 0]
    while len(sizes) > k:
        gaps = ((centers[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        cost = sizes[:, None] * sizes[None, :] / (sizes[:, None] + sizes[None, :]) * gaps
        np.fill_diagonal(cost, np.inf)
        a, b = np.unravel_index(int(np.argmin(cost)), cost.shape)
        total = sizes[a] + sizes[b]
        centers[a] = (centers[a] * sizes[a] + centers[b] * sizes[b]) / total
        sizes[a] = total
        centers, sizes = np.delete(centers, b, axis=0), np.delete(sizes, b)
    return centers if len(sizes) == k else None


# -------------------------------------------------------------- stability
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
        lb, _, _ = partition(algorithm, Zs[rows], k, seed + 1 + b)
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


def _silhouette(Z: np.ndarray, labels: np.ndarray, sample: int, seed: int) -> tuple[float, float]:
    """Mean silhouette and the lowest per-segment mean, on at most ``sample`` rows."""
    if np.unique(labels).size < 2:
        return math.nan, math.nan
    if Z.shape[0] > sample:
        rows = np.sort(np.random.RandomState(seed).choice(Z.shape[0], sample, replace=False))
        Z, labels = Z[rows], labels[rows]
        if np.unique(labels).size < 2:
            return math.nan, math.nan
    values = silhouette_samples(Z, labels)
    sums = np.bincount(labels, weights=values)
    counts = np.bincount(labels)
    present = counts > 0
    return float(values.mean()), float((sums[present] / counts[present]).min())
