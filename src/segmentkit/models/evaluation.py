"""Out-of-time evaluation of propensity scores: metrics, lift by decile, calibration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kendalltau
from sklearn.metrics import mean_poisson_deviance

from segmentkit.text import slug

_N_BINS = 10
_BASELINE_NAMES = ("recency", "rfm", "bgnbd")
_TRACKED_BASELINE_METRICS = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "poisson_deviance",
    "concordance",
    "predicted_total",
    "total_ratio",
)


_CALIBRATION_COLUMNS = [
    "target",
    "model",
    "bin",
    "lower",
    "upper",
    "users",
    "mean_predicted",
    "observed",
]


def _decile_groups(p: np.ndarray) -> np.ndarray:
    """Decile 1 = highest scores; ties broken by row order (rows sorted by user)."""
    order = np.argsort(-p, kind="stable")
    groups = np.empty(p.size, dtype=np.int64)
    groups[order] = np.arange(p.size) * _N_BINS // p.size + 1
    return groups


def _decile_table(y: np.ndarray, p: np.ndarray, order: np.ndarray | None = None) -> pd.DataFrame:
    """Users, mean score, observed rate and lift per decile (as :func:`_decile_groups`).

    ``order`` is ``np.argsort(-p, kind="stable")`` when the caller has it: the deciles
    are runs of that order, summed with one ``np.add.reduceat`` (a pandas group-by
    per call was most of the evaluation's time at 100k users).
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if order is None:
        order = np.argsort(-p, kind="stable")
    # Position i of the order falls in decile i * 10 // n + 1: each decile is one run.
    position_decile = np.arange(p.size) * _N_BINS // p.size
    starts = np.flatnonzero(np.diff(position_decile, prepend=-1))
    users = np.diff(np.append(starts, p.size))
    base = y.mean()
    observed = np.add.reduceat(y[order], starts) / users
    table = pd.DataFrame(
        {
            "decile": position_decile[starts] + 1,
            "users": users,
            "mean_predicted": np.add.reduceat(p[order], starts) / users,
            "observed": observed,
        }
    )
    table["lift"] = observed / base if base > 0 else np.nan
    return table


def _ranking_metrics(y: np.ndarray, order: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """ROC AUC and average precision of 0/1 ``y`` from scores sorted by ``order`` (descending).

    The same numbers as scikit-learn's ``roc_auc_score`` and
    ``average_precision_score`` (tied scores form one threshold), from the one sort
    the decile table needs; NaN when ``y`` holds one class.

    Examples
    --------
    >>> y = np.array([0, 1, 1, 0, 1]); p = np.array([0.1, 0.8, 0.4, 0.4, 0.9])
    >>> auc, ap = _ranking_metrics(y, np.argsort(-p, kind="stable"), p)
    >>> from sklearn.metrics import roc_auc_score, average_precision_score
    >>> bool(np.isclose(auc, roc_auc_score(y, p)))
    True
    >>> bool(np.isclose(ap, average_precision_score(y, p)))
    True
    """
    hits = np.asarray(y, dtype=np.int64)[order]
    positives = int(hits.sum())
    negatives = hits.size - positives
    if positives == 0 or negatives == 0:
        return float("nan"), float("nan")
    sorted_p = p[order]
    # Last row of every run of tied scores: one threshold each.
    last = np.flatnonzero(np.append(sorted_p[1:] != sorted_p[:-1], True))
    tps = np.cumsum(hits)[last]
    fps = last + 1 - tps
    tps_before = np.concatenate(([0], tps[:-1]))
    fps_before = np.concatenate(([0], fps[:-1]))
    # Trapezoids in exact integers: twice the area under (fps, tps).
    twice_area = int(np.sum((fps - fps_before) * (tps + tps_before)))
    auc = twice_area / (2.0 * positives * negatives)
    average_precision = float(np.sum((tps - tps_before) / positives * (tps / (tps + fps))))
    return float(auc), average_precision


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Return the standard error of a ROC AUC (Hanley and McNeil 1982).

    Examples
    --------
    >>> round(auc_standard_error(0.8, 43, 257), 3)
    0.042
    >>> round(auc_standard_error(0.8, 2400, 17600), 3)
    0.006
    """
    if positives < 1 or negatives < 1:
        return float("nan")
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc**2 / (1.0 + auc)
    variance = (
        auc * (1.0 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    ) / (positives * negatives)
    return float(np.sqrt(max(variance, 0.0)))


def _tied_pairs(values: np.ndarray) -> float:
    _, sizes = np.unique(values, return_counts=True)
    sizes = sizes.astype(float)
    return float(np.sum(sizes * (sizes - 1.0) / 2.0))


def count_concordance(counts: Any, scores: Any) -> float:
    """Share of user pairs with different counts that the scores order the same way.

    Harrell's C for counts (the ROC AUC when counts are 0 or 1): a pair whose scores
    tie counts one half. Unlike Spearman's coefficient it gives nothing for tying
    users: with most counts zero, a score with many ties (frequency alone) gains on
    Spearman's coefficient without ranking anyone better. Computed from Kendall's
    tau-b, in O(n log n): (1 + Somers' D of the scores given the counts) / 2.

    Parameters
    ----------
    counts : array-like
        Realized counts.
    scores : array-like
        Predicted counts (or any score, higher = more).

    Returns
    -------
    float
        In [0, 1]; 0.5 when every score ties; NaN when every count is the same.

    Examples
    --------
    >>> count_concordance([0, 0, 1, 2, 0, 3], [0.1, 0.3, 0.2, 0.5, 0.3, 0.4])
    0.75
    >>> round(count_concordance([0, 1, 2], [5.0, 5.0, 7.0]), 4)  # one tied pair of three
    0.8333
    """
    counts = np.asarray(counts, dtype=float)
    scores = np.asarray(scores, dtype=float)
    pairs = counts.size * (counts.size - 1) / 2.0
    untied_counts = pairs - _tied_pairs(counts)
    untied_scores = pairs - _tied_pairs(scores)
    if untied_counts <= 0:
        return float("nan")
    if untied_scores <= 0:
        return 0.5
    tau_b = kendalltau(counts, scores).statistic
    # tau_b = (concordant - discordant) / sqrt(untied_counts * untied_scores)
    somers_d = tau_b * np.sqrt(untied_counts * untied_scores) / untied_counts
    return float(0.5 + 0.5 * somers_d)


def _calibration_table(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    edges = np.linspace(0.0, 1.0, _N_BINS + 1)
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, _N_BINS - 1)
    frame = pd.DataFrame({"bin": bins, "y": y, "p": p})
    table = frame.groupby("bin").agg(
        users=("y", "size"), mean_predicted=("p", "mean"), observed=("y", "mean")
    )
    table = table.reset_index()
    table.insert(1, "lower", edges[table["bin"].to_numpy()])
    table.insert(2, "upper", edges[table["bin"].to_numpy() + 1])
    return table


def _metrics(y: np.ndarray, p: np.ndarray, kind: str, *, report: bool = False) -> dict[str, float]:
    """Out-of-time metrics of scores ``p`` against outcomes ``y`` (see PropensityEvaluation).

    One descending sort of ``p`` serves the decile lift, ROC AUC and average
    precision; the scalar losses are direct formulas (scikit-learn's input checks cost
    more than the sums on the evaluation's 100k+ rows, and these are called per model
    and candidate). ``report``: also the count concordance, which only the reported
    models need (about 0.5 s at 1M users; the candidates compared at selection skip it).
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="stable")
    deciles = _decile_table(y, p, order)
    top = float(deciles.loc[deciles["decile"] == 1, "lift"].iloc[0])
    out: dict[str, float] = {"users": float(y.size), "base_rate": float(y.mean())}
    if kind == "count":
        hit = (y > 0).astype(int)
        out.update(
            poisson_deviance=float(mean_poisson_deviance(y, np.clip(p, 1e-9, None))),
            predicted_total=float(p.sum()),
            actual_total=float(y.sum()),
            total_ratio=float(p.sum() / y.sum()) if y.sum() > 0 else np.nan,
            roc_auc=_ranking_metrics(hit, order, p)[0],
            lift_top_decile=top,
        )
        if report:
            out["concordance"] = count_concordance(y, p)
        return out
    roc_auc, pr_auc = _ranking_metrics(y, order, p)
    clipped = np.clip(p, 1e-12, 1 - 1e-12)
    out.update(
        roc_auc=roc_auc,
        pr_auc=pr_auc,
        brier=float(np.mean((y - p) ** 2)),
        log_loss=float(-np.mean(y * np.log(clipped) + (1.0 - y) * np.log(1.0 - clipped))),
        predicted_total=float(p.sum()),
        actual_total=float(y.sum()),
        lift_top_decile=top,
    )
    return out


def _selection_metric(kind: str) -> str:
    return "poisson_deviance" if kind == "count" else "log_loss"


@dataclass(frozen=True)
class PropensityEvaluation:
    """Out-of-time evaluation of every target, model and baseline (aggregates only).

    ``model`` values are the chosen family (``logistic``, ``hgb``, either with
    ``+bgnbd``, or ``complement`` for a churn derived from a purchase model), the
    baselines (``recency``, ``rfm``, ``bgnbd``), ``1-p(<event target>)`` for churn
    targets when the log has other events, and ``model`` itself for the chosen
    family (a copy of its rows).

    Attributes
    ----------
    metrics : pandas.DataFrame
        Tidy ``target, model, metric, value``. Binary targets: users, base_rate,
        roc_auc, pr_auc, brier, log_loss, predicted_total, actual_total,
        lift_top_decile. Counts: users, base_rate (mean count), poisson_deviance,
        predicted_total, actual_total, total_ratio, roc_auc (of any event),
        lift_top_decile, concordance (:func:`count_concordance`: how well the
        predicted counts rank the realized ones, ties neutral).
    deciles : pandas.DataFrame
        ``target, model, decile, users, mean_predicted, observed, lift``; decile 1
        holds the highest scores, lift = observed / base rate.
    calibration : pandas.DataFrame
        ``target, model, bin, lower, upper, users, mean_predicted, observed`` over
        ten equal-width probability bins (binary targets; empty bins omitted).
    snapshots : pandas.DataFrame
        ``target, role, snapshot, label_end, users, positives, rate`` for every
        snapshot used (role ``evaluation``, ``backtest`` or ``final``).
    segments : pandas.DataFrame or None
        ``target, segment, users, observed, mean_predicted`` on the evaluation
        snapshot (chosen model, out of time), when segment labels were given.
    selection : pandas.DataFrame or None
        ``target, model, metric, value`` of every candidate on the *selection*
        snapshot (one horizon before the evaluation snapshot), where the choice was
        made. The reported ``metrics`` come from a later snapshot the choice never saw.
    totals : pandas.DataFrame or None
        ``target, predicted_total, lower, upper, actual_total`` on the evaluation
        snapshot: the chosen model's expected total with its 90% interval.
    notes : tuple of str
        Plain-language findings for the report (derived churn, churn against
        1 - p(purchase) and recency, a choice that could not be nested).
    nested : bool
        Whether every target's choice was made on the selection snapshot.
    """

    metrics: pd.DataFrame
    deciles: pd.DataFrame
    calibration: pd.DataFrame
    snapshots: pd.DataFrame
    segments: pd.DataFrame | None = None
    selection: pd.DataFrame | None = None
    totals: pd.DataFrame | None = None
    notes: tuple[str, ...] = ()
    nested: bool = True

    def summary(self, metric: str = "roc_auc") -> pd.DataFrame:
        """Return one metric as a ``target x model`` table."""
        rows = self.metrics[self.metrics["metric"] == metric]
        return rows.pivot(index="target", columns="model", values="value")

    def tracking_metrics(self) -> dict[str, float]:
        """Flat aggregate metrics for a tracking run.

        ``propensity/<target>/<metric>`` for the chosen model (as reported),
        ``propensity/<target>/baseline/<model>/<metric>`` for every baseline and
        comparison model (BG/NBD, RFM, recency, 1 - p(purchase)) on the main
        metrics, and ``propensity/<target>/total_lower|total_upper`` for the 90%
        interval of the expected total.

        Examples
        --------
        >>> table = pd.DataFrame({"target": ["buy", "buy"], "model": ["model", "1-p(x)"],
        ...                       "metric": ["roc_auc", "roc_auc"], "value": [0.8, 0.7]})
        >>> empty = pd.DataFrame()
        >>> PropensityEvaluation(table, empty, empty, empty).tracking_metrics()
        {'propensity/buy/roc_auc': 0.8, 'propensity/buy/baseline/1_p_x/roc_auc': 0.7}
        """
        out: dict[str, float] = {}
        for row in self.metrics.itertuples(index=False):
            if pd.isna(row.value):
                continue
            if row.model == "model":
                out[f"propensity/{row.target}/{row.metric}"] = float(row.value)
            elif (
                row.model in _BASELINE_NAMES or row.model.startswith("1-p(")
            ) and row.metric in _TRACKED_BASELINE_METRICS:
                name = slug(row.model)
                out[f"propensity/{row.target}/baseline/{name}/{row.metric}"] = float(row.value)
        if self.totals is not None:
            for row in self.totals.itertuples(index=False):
                out[f"propensity/{row.target}/total_lower"] = float(row.lower)
                out[f"propensity/{row.target}/total_upper"] = float(row.upper)
        return out
