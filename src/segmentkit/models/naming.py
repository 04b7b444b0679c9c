"""Segment names from behaviour, in words a marketer uses.

Names come from what the members of a segment did, measured on interpretable
per-user quantities of the feature table, not from centroid ranks:

* **new**: tenure under one activity window (the shortest ``<w>d`` window, 30
  days by default);
* **recent**: active within one window;
* **long lapsed**: inactive for at least three windows *and* at least twice the
  user's own typical gap between active days (``median_gap_days``), so a user
  who visits every two months is not lapsed after 70 days;
* **fading**: inactive for more than one window and more than twice the typical
  gap, but not long lapsed;
* **top value**: in the population's top 20 % by net spend (``revenue_total``,
  else ``orders``);
* **buyer**: at least one order;
* **value / frequency rank**: mean percentile rank in the population;
* **recent activity ratio**: the segment's mean activity in the last window
  divided by the population's.

Every segment gets these as evidence (:func:`segment_evidence`), and the first
rule that holds names it (:func:`rule_name`):

=====================  =======================================================
New                    most members are new
Hibernating            most members are long lapsed ("Lapsed top spenders"
                       when most were also in the top 20 % by value)
At risk                most members are fading or lapsed, and they were
                       valuable (mean value or frequency rank >= 0.5)
About to sleep         most members are fading or lapsed, low value
Champions              most members are in the top 20 % by value
Loyal                  frequent (mean frequency rank >= 0.75) with recent
                       activity not far below the population's (ratio >= 0.8),
                       most members buy; "Frequent browsers" when most do not
Occasional buyers      the rest, most members buy
Casual browsers        the rest, most members do not buy
=====================  =======================================================

A rule whose quantities the table lacks is skipped (a table without spend has no
Champions; without recency, nobody is lapsed). Segments sharing a name get a
qualifier in words, on the quantity where they differ most ("Hibernating
(higher value)" and "Hibernating (lower value)"), never a feature name; the
choice depends only on behaviour, so the same behaviour gets the same name
whatever the segment ids or the resample.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DIFFERENCE_FEATURES",
    "EVIDENCE_COLUMNS",
    "FEATURE_WORDS",
    "describe_segment",
    "feature_words",
    "name_segments",
    "rule_name",
    "segment_evidence",
]

#: Fraction of members that makes a property the segment's ("most members").
MAJORITY = 0.5
#: Population share counted as top value.
TOP_VALUE_SHARE = 0.2
#: Long lapsed = inactive for at least this many windows (and two typical gaps).
LAPSED_WINDOWS = 3
#: Loyal needs a mean frequency rank of at least this ...
LOYAL_FREQUENCY_RANK = 0.75
#: ... and recent activity at least this fraction of the population's.
LOYAL_RECENT_RATIO = 0.8
#: Features whose lift is a difference (they can be negative), not a ratio.
DIFFERENCE_FEATURES = ("activity_trend",)
#: Window (days) assumed when the table has no ``<name>_<w>d`` column.
DEFAULT_WINDOW = 30

_RECENCY = ("recency_days",)
_TENURE = ("tenure_days",)
_GAP = ("median_gap_days",)
_FREQUENCY = ("active_days_total", "sessions_total", "events_total", "orders")
_VALUE = ("revenue_total", "orders")
_BUYER = ("orders", "purchase_events", "revenue_total")

#: Plain words for feature names, used in descriptions.
FEATURE_WORDS: dict[str, str] = {
    "recency_days": "days since last activity",
    "tenure_days": "tenure",
    "events_total": "events",
    "sessions_total": "sessions",
    "active_days_total": "active days",
    "distinct_events": "kinds of action",
    "events_per_session": "actions per visit",
    "purchase_events": "purchases",
    "add_to_cart_events": "add-to-carts",
    "revenue_total": "spend",
    "orders": "orders",
    "avg_order_value": "order value",
    "activity_trend": "activity trend",
    "median_gap_days": "days between visits",
}

#: Words that differ in a transaction log (every event is a purchase row: an
#: order, an invoice line or a refund; no visits, no browsing), so a description
#: never names behaviour the log does not have.
TRANSACTION_WORDS: dict[str, str] = {
    "recency_days": "days since last purchase",
    "events_total": "transactions",
    "active_days_total": "days with a purchase",
    "events_per_session": "transactions per day",
    "median_gap_days": "days between purchases",
}
_TRANSACTION_WINDOW_WORDS = {"active_days": "days with a purchase", "events": "transactions"}

EVIDENCE_COLUMNS = (
    "share_new",
    "share_recent",
    "share_fading",
    "share_long_lapsed",
    "share_top_value",
    "share_buyers",
    "value_rank",
    "frequency_rank",
    "recent_activity_ratio",
    "typical_recency_days",
    "typical_tenure_days",
)

# Qualifiers for segments that share a name: evidence column, then the words for
# the highest, middle and lowest value.
_QUALIFIERS = (
    ("value_rank", "higher value", "mid value", "lower value"),
    ("frequency_rank", "more frequent", "moderately frequent", "less frequent"),
    ("share_buyers", "buyers", "some buyers", "browsers"),
    ("typical_recency_days", "longer lapsed", "lapsed", "more recent"),
    ("typical_tenure_days", "longer-standing", "established", "newer"),
)


def _first(features: Sequence[str], candidates: Sequence[str]) -> int | None:
    for name in candidates:
        if name in features:
            return list(features).index(name)
    return None


def _window(features: Sequence[str]) -> int:
    windows = [int(m.group(1)) for f in features if (m := re.search(r"_(\d+)d$", f))]
    return min(windows) if windows else DEFAULT_WINDOW


def _recent_activity_column(features: Sequence[str], window: int) -> int | None:
    return _first(
        features,
        [f"active_days_{window}d", f"sessions_{window}d", f"events_{window}d"],
    )


def _percentile_rank(values: np.ndarray) -> np.ndarray:
    """Mid-rank percentile in [0, 1] (ties share their mean rank)."""
    order = pd.Series(values).rank(method="average").to_numpy()
    return (order - 0.5) / values.size


def segment_evidence(
    X: np.ndarray, labels: np.ndarray, features: Sequence[str], n_segments: int
) -> pd.DataFrame:
    """Per-segment shares and ranks the naming rules read.

    Parameters
    ----------
    X : ndarray of shape (n_users, n_features)
        Raw (untransformed) feature table.
    labels : ndarray of shape (n_users,)
        Segment id of every user.
    features : sequence of str
        Column names of ``X``.
    n_segments : int
        Number of segment ids (ids without members get NaN rows).

    Returns
    -------
    DataFrame
        One row per segment id, columns :data:`EVIDENCE_COLUMNS` (NaN where the
        table lacks the quantity).

    Examples
    --------
    >>> X = np.array([[2.0, 5.0], [3.0, 9.0], [200.0, 300.0], [150.0, 250.0]])
    >>> ev = segment_evidence(X, np.array([0, 0, 1, 1]), ["recency_days", "tenure_days"], 2)
    >>> ev[["share_new", "share_long_lapsed"]].to_numpy().tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    features = list(features)
    n = X.shape[0]
    window = _window(features)
    col = {
        "recency": _first(features, _RECENCY),
        "tenure": _first(features, _TENURE),
        "gap": _first(features, _GAP),
        "frequency": _first(features, _FREQUENCY),
        "value": _first(features, _VALUE),
        "buyer": _first(features, _BUYER),
        "recent": _recent_activity_column(features, window),
    }
    nan = np.full(n, np.nan)

    def column(role: str) -> np.ndarray | None:
        j = col[role]
        return None if j is None else X[:, j].astype(float)

    recency, tenure, gap = column("recency"), column("tenure"), column("gap")
    per_user: dict[str, np.ndarray] = {}
    per_user["share_new"] = nan if tenure is None else (tenure < window).astype(float)
    if recency is None:
        for key in ("share_recent", "share_fading", "share_long_lapsed"):
            per_user[key] = nan
    else:
        typical = np.zeros(n) if gap is None else np.nan_to_num(gap)
        if tenure is not None:
            # With one active day the gap column holds the tenure: no typical gap.
            typical = np.where(typical >= tenure, 0.0, typical)
        overdue = (recency >= window) & (recency > 2.0 * typical)
        long_lapsed = overdue & (recency >= LAPSED_WINDOWS * window)
        per_user["share_recent"] = (recency < window).astype(float)
        per_user["share_fading"] = (overdue & ~long_lapsed).astype(float)
        per_user["share_long_lapsed"] = long_lapsed.astype(float)
    value = column("value")
    if value is None or not np.ptp(value) > 0:
        per_user["share_top_value"] = nan
        per_user["value_rank"] = nan
    else:
        rank = _percentile_rank(value)
        per_user["value_rank"] = rank
        # Top 20 % by value; ties at the cut-off count in, zero spend never does.
        cut = np.quantile(value, 1.0 - TOP_VALUE_SHARE)
        per_user["share_top_value"] = ((value >= cut) & (value > 0)).astype(float)
    buyer = column("buyer")
    per_user["share_buyers"] = nan if buyer is None else (buyer > 0).astype(float)
    frequency = column("frequency")
    per_user["frequency_rank"] = nan if frequency is None else _percentile_rank(frequency)
    per_user["typical_recency_days"] = nan if recency is None else recency
    per_user["typical_tenure_days"] = nan if tenure is None else tenure

    recent = column("recent")
    pop_recent = np.nan if recent is None else float(recent.mean())
    rows = []
    for s in range(n_segments):
        members = labels == s
        if not members.any():
            rows.append(dict.fromkeys(EVIDENCE_COLUMNS, np.nan))
            continue
        row = {}
        for key in EVIDENCE_COLUMNS:
            if key == "recent_activity_ratio":
                row[key] = (
                    np.nan
                    if recent is None or not pop_recent > 0
                    else float(recent[members].mean() / pop_recent)
                )
            elif key.startswith("typical_"):
                row[key] = float(np.median(per_user[key][members]))
            else:
                row[key] = float(per_user[key][members].mean())
        rows.append(row)
    return pd.DataFrame(rows, columns=list(EVIDENCE_COLUMNS))


def _at_least(value: float, threshold: float) -> bool:
    return bool(not np.isnan(value) and value >= threshold)


def rule_name(evidence: pd.Series) -> str | None:
    """Name one segment from its evidence (first rule that holds; None if none can).

    Examples
    --------
    >>> ev = pd.Series({"share_new": 0.1, "share_long_lapsed": 0.8, "share_fading": 0.1,
    ...                 "share_top_value": 0.0, "value_rank": 0.3, "frequency_rank": 0.2})
    >>> rule_name(ev)
    'Hibernating'
    """
    ev = {key: float(evidence.get(key, np.nan)) for key in EVIDENCE_COLUMNS}
    if _at_least(ev["share_new"], MAJORITY):
        return "New"
    if _at_least(ev["share_long_lapsed"], MAJORITY):
        if _at_least(ev["share_top_value"], MAJORITY):
            return "Lapsed top spenders"
        return "Hibernating"
    inactive = np.nansum([ev["share_fading"], ev["share_long_lapsed"]])
    has_recency = not np.isnan(ev["share_fading"])
    if has_recency and inactive >= MAJORITY:
        valuable = _at_least(ev["value_rank"], 0.5) or _at_least(ev["frequency_rank"], 0.5)
        return "At risk" if valuable else "About to sleep"
    if _at_least(ev["share_top_value"], MAJORITY):
        return "Champions"
    knows_buyers = not np.isnan(ev["share_buyers"])
    buyers = _at_least(ev["share_buyers"], MAJORITY)
    recent_ok = np.isnan(ev["recent_activity_ratio"]) or ev["recent_activity_ratio"] >= (
        LOYAL_RECENT_RATIO
    )
    if _at_least(ev["frequency_rank"], LOYAL_FREQUENCY_RANK) and recent_ok:
        return "Loyal" if buyers or not knows_buyers else "Frequent browsers"
    if knows_buyers:
        return "Occasional buyers" if buyers else "Casual browsers"
    if not np.isnan(ev["frequency_rank"]):
        return "Occasional"
    return None


def name_segments(
    evidence: pd.DataFrame, fallback: Sequence[str], present: Sequence[bool] | None = None
) -> tuple[list[str], list[str]]:
    """Rule names and unique display names for every segment.

    Parameters
    ----------
    evidence : DataFrame
        Output of :func:`segment_evidence` (rows of absent segments are NaN).
    fallback : sequence of str
        Name to use where no rule applies (e.g. for a table without any known
        behavioural column).
    present : sequence of bool, optional
        Which segments have members (default: rows with any evidence).

    Returns
    -------
    kinds : list of str
        The rule's name per segment ("" for absent segments).
    names : list of str
        Unique names: a shared rule name gets a qualifier in words.

    Examples
    --------
    >>> ev = pd.DataFrame({"share_long_lapsed": [0.9, 0.8], "value_rank": [0.7, 0.2]})
    >>> name_segments(ev, ["a", "b"])[1]
    ['Hibernating (higher value)', 'Hibernating (lower value)']
    """
    evidence = evidence.reindex(columns=list(EVIDENCE_COLUMNS))
    if present is None:
        present = evidence.notna().any(axis=1).to_numpy()
    kinds = [
        (rule_name(evidence.iloc[s]) or fallback[s]) if present[s] else ""
        for s in range(len(evidence))
    ]
    names = list(kinds)
    for kind in sorted(set(kinds) - {""}):
        group = [s for s in range(len(kinds)) if kinds[s] == kind]
        if len(group) < 2:
            continue
        for s, word in zip(group, _qualify(evidence.iloc[group]), strict=True):
            names[s] = f"{kind} ({word})"
    # Identical evidence everywhere: fall back to numbers, in behaviour order.
    seen: dict[str, int] = {}
    for s, name in enumerate(names):
        if name and name in seen:
            seen[name] += 1
            names[s] = f"{name} {seen[name]}"
        else:
            seen[name] = 1
    return kinds, names


#: Recency qualifiers for segments whose members mostly are not lapsed.
_NOT_LAPSED = {"longer lapsed": "less recent", "lapsed": "recent"}


def _qualify(group: pd.DataFrame) -> list[str]:
    """Words telling apart segments that share a name, on the first clear difference.

    Quantities are tried in a fixed order (value, frequency, buyers, recency,
    tenure); a difference is clear when ranks or shares differ by at least
    0.15, or medians of days by a factor of at least 2. The highest gets the
    first word, the lowest the last, any others the middle one. "Lapsed" is
    said only of segments whose members mostly are (fading or long lapsed):
    two groups of Champions bought 2 and 8 weeks ago are "more" and "less
    recent", not lapsed.

    Examples
    --------
    >>> group = pd.DataFrame({"typical_recency_days": [56.0, 16.0],
    ...                       "share_fading": [0.1, 0.0], "share_long_lapsed": [0.0, 0.0]})
    >>> _qualify(group.reindex(columns=list(EVIDENCE_COLUMNS)))
    ['less recent', 'more recent']
    """
    for column, *words in _QUALIFIERS:
        values = group[column].to_numpy(dtype=float)
        if not np.isnan(values).any() and _clear_difference(column, values):
            order = np.argsort(-values, kind="stable")
            out = [words[1]] * len(group)
            out[order[0]], out[order[-1]] = words[0], words[2]
            if column == "typical_recency_days":
                inactive = np.nansum(group[["share_fading", "share_long_lapsed"]], axis=1)
                out = [
                    _NOT_LAPSED.get(word, word) if inactive[i] < MAJORITY else word
                    for i, word in enumerate(out)
                ]
            return out
    return [str(i + 1) for i in range(len(group))]


def _clear_difference(column: str, values: np.ndarray) -> bool:
    if column.startswith("typical_"):
        return bool(np.log1p(values.max()) - np.log1p(values.min()) >= np.log(2.0))
    return bool(values.max() - values.min() >= 0.15)


def describe_segment(
    evidence: pd.Series,
    lifts: np.ndarray,
    z: np.ndarray,
    features: Sequence[str],
    transaction_log: bool = False,
) -> str:
    """One line a marketer can read: the deciding facts, then the strongest lifts.

    With ``transaction_log`` features are worded as purchases (see
    :func:`feature_words`).

    Examples
    --------
    >>> ev = pd.Series({"share_long_lapsed": 0.82})
    >>> describe_segment(ev, np.array([0.2]), np.array([-1.5]), ["revenue_total"])
    '82% inactive for 3+ windows; spend 80% below average'
    """
    facts = []
    for key, text in (
        ("share_new", "{:.0%} joined within one window"),
        ("share_long_lapsed", "{:.0%} inactive for 3+ windows"),
        ("share_fading", "{:.0%} fading"),
        ("share_top_value", "{:.0%} in the top 20% by spend"),
    ):
        value = float(evidence.get(key, np.nan))
        if _at_least(value, MAJORITY):
            facts.append(text.format(value))
    parts: list[str] = []
    said: list[float] = []
    for j in np.argsort(-np.abs(np.nan_to_num(z)), kind="stable"):
        if len(parts) == 3:
            break
        lift = float(lifts[j])
        # A lift that repeats one already said tells nothing new: where a segment holds
        # nearly all of a window's activity (the recent buyers of a one-cohort log),
        # every count of that window is 1 / share times the average.
        if features[j] not in DIFFERENCE_FEATURES and np.isfinite(lift):
            if any(_same_lift(lift, other) for other in said):
                continue
            said.append(lift)
        parts.append(_phrase(features[j], lift, float(z[j]), transaction_log))
    head = ", ".join(facts)
    tail = ", ".join(parts)
    return f"{head}; {tail}" if head and tail else head or tail


#: Lifts below this (a twentieth of the average) all say "almost none".
_ALMOST_NONE = 0.05


def _same_lift(lift: float, other: float) -> bool:
    """Whether two lifts say the same thing: within 2%, or both almost none.

    Examples
    --------
    >>> _same_lift(12.1, 12.08), _same_lift(0.01, 0.02), _same_lift(0.01, 0.2)
    (True, True, False)
    """
    if 0.0 <= lift < _ALMOST_NONE and 0.0 <= other < _ALMOST_NONE:
        return True
    return math.isclose(lift, other, rel_tol=0.02, abs_tol=1e-9)


def feature_words(feature: str, transaction_log: bool = False) -> str:
    """Plain words for a feature name ("revenue_90d" -> "spend, last 90 days").

    In a transaction log every event is a purchase row: ``transaction_log=True``
    says "transactions", "days with a purchase", "days between purchases"
    instead of events, active days and visits.

    Examples
    --------
    >>> feature_words("events_90d"), feature_words("events_90d", transaction_log=True)
    ('events, last 90 days', 'transactions, last 90 days')
    """
    if transaction_log and feature in TRANSACTION_WORDS:
        return TRANSACTION_WORDS[feature]
    if feature in FEATURE_WORDS:
        return FEATURE_WORDS[feature]
    match = re.fullmatch(r"(active_days|events|sessions|revenue)_(\d+)d", feature)
    if match:
        base = {"active_days": "active days", "events": "events", "sessions": "sessions",
                "revenue": "spend"}[match.group(1)]  # fmt: skip
        if transaction_log:
            base = _TRANSACTION_WINDOW_WORDS.get(match.group(1), base)
        return f"{base}, last {match.group(2)} days"
    if feature.endswith("_events"):
        return f"{feature[: -len('_events')].replace('_', ' ')} events"
    return feature.replace("_", " ")


#: Lifts within this distance of 1 read "about average" (a ratio printed as 1.0x says nothing).
_ABOUT_AVERAGE = 0.05


def _phrase(feature: str, lift: float, z: float = math.nan, transaction_log: bool = False) -> str:
    """Words for one lift; ``z`` (the standardized segment mean) signs a negative lift.

    A negative lift means the segment's mean and the population's have opposite
    signs: spend is negative where refunds exceed purchases.

    Examples
    --------
    >>> _phrase("revenue_30d", -0.02, -0.8)
    'spend, last 30 days below zero (refunds exceed purchases)'
    >>> _phrase("active_days_30d", 0.0), _phrase("orders", 1.02)
    ('no active days, last 30 days', 'orders about average')
    """
    label = feature_words(feature, transaction_log)
    if feature in DIFFERENCE_FEATURES:
        return f"{label} {lift:+.2f} vs average"
    if np.isnan(lift):
        return f"{label} n/a"
    if abs(lift - 1.0) < _ABOUT_AVERAGE:
        return f"{label} about average"
    if lift >= 1.0:
        return f"{label} {lift:.1f}x average"
    if lift >= 0.005:
        return f"{label} {1.0 - lift:.0%} below average"
    if lift > 0:  # would print as "100% below average"
        return f"almost no {label}"
    if lift == 0:
        return f"no {label}"
    if z > 0:  # the segment is above a population whose mean is below zero
        return f"{label} above zero, the average below"
    money = feature.startswith("revenue") or feature == "avg_order_value"
    return f"{label} below zero" + (" (refunds exceed purchases)" if money else "")


# ------------------------------------------------------------ profile helpers
def _feature_labels(model: Any) -> np.ndarray:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return np.asarray(names, dtype=object)
    return np.asarray([f"x{i}" for i in range(model.n_features_in_)], dtype=object)


def _lifts(
    means: np.ndarray,
    medians: np.ndarray,
    pop_mean: np.ndarray,
    pop_median: np.ndarray,
    features: Sequence[str],
) -> np.ndarray:
    """Segment mean / population mean; medians when the mean is 0; differences for trends."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = means / pop_mean
        by_median = np.where(pop_median != 0, medians / pop_median, np.nan)
    lifts = np.where(pop_mean != 0, ratio, by_median)
    for j, name in enumerate(features):
        if name in DIFFERENCE_FEATURES:
            lifts[:, j] = means[:, j] - pop_mean[j]
    return lifts


def strongest_feature_name(z: np.ndarray, features: Sequence[str]) -> str:
    """Name for a table without behavioural columns: its most distinctive feature."""
    j = int(np.argmax(np.abs(np.nan_to_num(z))))
    return f"{'High' if z[j] >= 0 else 'Low'} {features[j]}"
