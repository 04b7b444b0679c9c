"""Event logs with and without planted changes, to check drift verdicts against.

A drift verdict is only useful if it stays quiet when behaviour did not change
and names the cause when it did. These pure functions build the logs that check
both: a *steady* log, where users keep arriving and every cohort behaves like the
one before (so the only change between two snapshots is the calendar), and
transformations that plant one change after a given time:

- :func:`drop_users`: a group of users vanishes from the log;
- :func:`scale_revenue`: spend changes by a factor (e.g. halves);
- :func:`drop_event`: an event stops being logged;
- :func:`add_behaviour_group`: a new group of users with a behaviour no cohort had.

They take and return event DataFrames (``user_id, timestamp, event, revenue,
session_id``); nothing is read or written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import pandas as pd

from segmentkit.errors import ConfigError
from segmentkit.synth import Archetype, generate_events

__all__ = [
    "DEAL_HUNTER",
    "add_behaviour_group",
    "drop_event",
    "drop_users",
    "scale_revenue",
    "steady_log",
]

#: A behaviour none of the demo archetypes has: many short, search-and-cart sessions
#: with frequent small orders.
DEAL_HUNTER = Archetype(
    "deal_hunter",
    1.0,
    (0.0, 0.0),
    (1.0, 1.0),
    sessions_per_day=1.2,
    events_per_session=7.0,
    purchase_per_session=0.35,
    order_value=9.0,
    browse_mix=(0.10, 0.45, 0.15, 0.28, 0.02),
)


def _plain(events: pd.DataFrame) -> pd.DataFrame:
    """Events with plain string user ids and event names (categoricals concatenate badly)."""
    out = events.copy()
    out["user_id"] = out["user_id"].astype(str)
    out["event"] = out["event"].astype(str)
    return out


def steady_log(
    users_per_cohort: int,
    cohort_days: int,
    n_cohorts: int,
    step_days: int,
    end: dt.date,
    seed: int = 0,
) -> pd.DataFrame:
    """A log where a new cohort of users starts every ``step_days`` and behaves like the last.

    Each cohort is a demo log (:func:`segmentkit.synth.generate_events`) spanning
    ``cohort_days``; cohort ``i`` starts ``step_days`` after cohort ``i - 1``, and
    events at or after ``end`` are cut. Between two snapshots far enough from the
    first cohort the process is the same; only the calendar moved (users age, the
    pool of lapsed users grows).

    Parameters
    ----------
    users_per_cohort, cohort_days, n_cohorts, step_days : int
        Cohort size and span, number of cohorts, days between cohort starts.
    end : datetime.date
        First day after the log.
    seed : int
        Cohort ``i`` uses seed ``seed * 1000 + i``.

    Returns
    -------
    pandas.DataFrame
        Events sorted by timestamp; user ids are prefixed with the cohort (``c3-u0000012``).

    Raises
    ------
    ConfigError
        If a count or span is not positive.

    Examples
    --------
    >>> log = steady_log(20, 60, 3, 30, dt.date(2025, 1, 1), seed=1)
    >>> bool(log["timestamp"].max() < pd.Timestamp("2025-01-01"))
    True
    >>> sorted(log["user_id"].str.split("-").str[0].unique())
    ['c0', 'c1', 'c2']
    """
    for name, value in (
        ("users_per_cohort", users_per_cohort),
        ("cohort_days", cohort_days),
        ("n_cohorts", n_cohorts),
        ("step_days", step_days),
    ):
        if value < 1:
            raise ConfigError(f"steady_log: {name} must be at least 1, got {value}")
    first_start = pd.Timestamp(end) - pd.Timedelta(days=step_days * (n_cohorts - 1) + 1)
    frames = []
    for i in range(n_cohorts):
        cohort_end = (first_start + pd.Timedelta(days=step_days * i + cohort_days)).date()
        cohort = _plain(
            generate_events(users_per_cohort, cohort_days, seed=seed * 1000 + i, end=cohort_end).events
        )
        cohort["user_id"] = f"c{i}-" + cohort["user_id"]
        frames.append(cohort)
    events = pd.concat(frames, ignore_index=True)
    events = events[events["timestamp"] < pd.Timestamp(end)]
    return events.sort_values("timestamp", kind="stable").reset_index(drop=True)


def drop_users(events: pd.DataFrame, users: Iterable[object]) -> pd.DataFrame:
    """Remove every event of ``users`` (a group that disappears from the source)."""
    out = _plain(events)
    gone = {str(u) for u in users}
    return out[~out["user_id"].isin(gone)].reset_index(drop=True)


def scale_revenue(events: pd.DataFrame, factor: float, since: dt.datetime) -> pd.DataFrame:
    """Multiply the revenue of events at or after ``since`` by ``factor``."""
    out = _plain(events)
    after = out["timestamp"] >= pd.Timestamp(since)
    out.loc[after, "revenue"] = out.loc[after, "revenue"] * factor
    return out


def drop_event(events: pd.DataFrame, event: str, since: dt.datetime) -> pd.DataFrame:
    """Remove ``event`` rows at or after ``since`` (the event stopped being logged).

    Raises
    ------
    ConfigError
        If the log has no such event.
    """
    out = _plain(events)
    if not (out["event"] == event).any():
        raise ConfigError(f"drop_event: the log has no {event!r} events")
    gone = (out["event"] == event) & (out["timestamp"] >= pd.Timestamp(since))
    return out[~gone].reset_index(drop=True)


def add_behaviour_group(
    events: pd.DataFrame,
    n_users: int,
    since: dt.datetime,
    until: dt.datetime,
    seed: int = 0,
    archetype: Archetype = DEAL_HUNTER,
) -> pd.DataFrame:
    """Add ``n_users`` new users behaving as ``archetype``, active from ``since`` to ``until``.

    Raises
    ------
    ConfigError
        If ``n_users < 1`` or the window is shorter than 30 days (the generator's minimum).
    """
    days = (pd.Timestamp(until) - pd.Timestamp(since)).days
    if n_users < 1:
        raise ConfigError(f"add_behaviour_group: n_users must be at least 1, got {n_users}")
    if days < 30:
        raise ConfigError(f"add_behaviour_group: the window must span 30 days or more, got {days}")
    group = _plain(
        generate_events(
            n_users, days, seed=seed, end=pd.Timestamp(until).date(), archetypes=(archetype,)
        ).events
    )
    group["user_id"] = f"{archetype.name}-" + group["user_id"]
    group["session_id"] = group["session_id"] + int(np.asarray(events["session_id"]).max()) + 1
    out = pd.concat([_plain(events), group], ignore_index=True)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)
