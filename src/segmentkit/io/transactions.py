"""Transaction tables: detection, and the features they make redundant.

A transaction table (a shop's order lines, mapped with ``event: null`` or with a
single event name) is an event log where every event is an order. Several
features are then constant or duplicated by construction: ``distinct_events``
is 1, ``events_per_session`` is about 1, the count of the one key event repeats
``events_total`` and every other key event count is 0, and sessions are orders
(or orders minutes apart). Clustering on them double-counts order frequency and
profile tables repeat it; :func:`transaction_redundant_features` lists them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["TRANSACTION_LOG_ATTR", "is_transaction_log", "transaction_redundant_features"]

#: Key of ``DataFrame.attrs`` where a feature table can record the log's kind.
TRANSACTION_LOG_ATTR = "transaction_log"


def is_transaction_log(table: pd.DataFrame) -> bool:
    """Whether a table comes from a transaction log (a single event type).

    Parameters
    ----------
    table : DataFrame
        An event log (with an ``event`` column), or a feature table (with
        ``distinct_events``, or ``attrs["transaction_log"]`` set by whoever built
        it).

    Returns
    -------
    bool
        True when the log has at most one event type: an ``event`` column with
        at most one distinct value, or a feature table where every user has
        ``distinct_events <= 1``. False when the table cannot tell.

    Examples
    --------
    >>> is_transaction_log(pd.DataFrame({"event": ["purchase", "purchase"]}))
    True
    >>> is_transaction_log(pd.DataFrame({"distinct_events": [1, 3]}))
    False
    """
    flag = table.attrs.get(TRANSACTION_LOG_ATTR)
    if flag is not None:
        return bool(flag)
    if "event" in table.columns:
        return bool(table["event"].nunique(dropna=True) <= 1)
    if "distinct_events" in table.columns and len(table):
        return bool((pd.to_numeric(table["distinct_events"]) <= 1).all())
    return False


def transaction_redundant_features(features: Sequence[str]) -> list[str]:
    """Features that carry no information of their own in a transaction log.

    Parameters
    ----------
    features : sequence of str
        Feature names of the table.

    Returns
    -------
    list of str
        ``distinct_events`` (constant), ``events_per_session`` (about 1), every
        key-event count ``<event>_events`` (equal to ``events_total`` or 0), and
        ``sessions_total`` / ``sessions_<w>d`` (orders again), in table order.

    Examples
    --------
    >>> transaction_redundant_features(
    ...     ["recency_days", "events_total", "sessions_total", "sessions_30d",
    ...      "distinct_events", "purchase_events", "orders"])
    ['sessions_total', 'sessions_30d', 'distinct_events', 'purchase_events']
    """
    by_name = ("distinct_events", "events_per_session", "sessions_total")
    return [
        name
        for name in features
        if name in by_name or re.fullmatch(r"sessions_\d+d|.+_events", name)
    ]


def constant_or_duplicate_columns(X: np.ndarray) -> np.ndarray:
    """Mask of columns that are constant, or equal to an earlier column.

    Examples
    --------
    >>> constant_or_duplicate_columns(np.array([[1.0, 5.0, 1.0], [2.0, 5.0, 2.0]])).tolist()
    [False, True, True]
    """
    n_features = X.shape[1]
    drop = ~(np.ptp(X, axis=0) > 0) if X.shape[0] else np.ones(n_features, dtype=bool)
    for j in range(n_features):
        if drop[j]:
            continue
        for i in range(j):
            if not drop[i] and np.array_equal(X[:, i], X[:, j]):
                drop[j] = True
                break
    return drop
