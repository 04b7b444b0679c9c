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
from segmentkit.io.synth import Archetype, generate_events

__all__ = [
    "DEAL_HUNTER",
    "PLANTED",
    "VARIANTS",
    "add_behaviour_group",
    "add_new_users",
    "calibration_table",
    "drop_event",
    "drop_users",
    "extract_users",
    "planted_scenarios",
    "repeat_sessions",
    "scale_revenue",
    "steady_log",
    "valuable_segment",
    "variant_scenarios",
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
    """Build a log where a new cohort starts every ``step_days`` and behaves like the last.

    Each cohort is a demo log (:func:`segmentkit.io.synth.generate_events`) spanning
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
    >>> sorted(log["user_id"].str.split("-").str[0].unique())  # c2 starts on the last day
    ['c0', 'c1']
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
            generate_events(
                users_per_cohort, cohort_days, seed=seed * 1000 + i, end=cohort_end
            ).events
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


def add_new_users(
    events: pd.DataFrame, n_users: int, since: dt.datetime, until: dt.datetime, seed: int = 0
) -> pd.DataFrame:
    """Add ``n_users`` demo users (the usual archetype mix) joining from ``since`` to ``until``.

    An acquisition channel bringing more of the same kind of users.

    Raises
    ------
    ConfigError
        If ``n_users < 1`` or the window is shorter than 30 days.
    """
    days = (pd.Timestamp(until) - pd.Timestamp(since)).days
    if n_users < 1:
        raise ConfigError(f"add_new_users: n_users must be at least 1, got {n_users}")
    if days < 30:
        raise ConfigError(f"add_new_users: the window must span 30 days or more, got {days}")
    group = _plain(generate_events(n_users, days, seed=seed, end=pd.Timestamp(until).date()).events)
    group["user_id"] = "joined-" + group["user_id"]
    group["session_id"] = group["session_id"] + int(np.asarray(events["session_id"]).max()) + 1
    out = pd.concat([_plain(events), group], ignore_index=True)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


def repeat_sessions(
    events: pd.DataFrame, since: dt.datetime, until: dt.datetime, seed: int = 0
) -> pd.DataFrame:
    """Every session from ``since`` on happens twice (again 1-5 hours later): a peak season.

    Events pushed to ``until`` or later are dropped.
    """
    out = _plain(events)
    recent = out[out["timestamp"] >= pd.Timestamp(since)]
    sessions = recent["session_id"].unique()
    delay = pd.Series(np.random.default_rng(seed).integers(1, 6, sessions.size), index=sessions)
    again = recent.copy()
    again["timestamp"] = again["timestamp"] + pd.to_timedelta(
        again["session_id"].map(delay), unit="h"
    )
    again = again[again["timestamp"] < pd.Timestamp(until)]
    again["session_id"] = again["session_id"] + int(out["session_id"].max()) + 1
    out = pd.concat([out, again], ignore_index=True)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


def extract_users(events: pd.DataFrame, n_users: int, seed: int = 0) -> pd.DataFrame:
    """Every event of ``n_users`` users drawn at random: a small extract of the same log."""
    out = _plain(events)
    users = out["user_id"].drop_duplicates()
    chosen = users.sample(min(n_users, users.size), random_state=seed)
    return out[out["user_id"].isin(chosen)].reset_index(drop=True)


#: Planted changes of :func:`planted_scenarios`, with the test that must name each.
PLANTED: dict[str, str] = {
    "segment_vanishes": "segment_vanished|segment_share",
    "spend_halves": "nonzero_shift|nonzero_psi|aged_psi",
    "new_behaviour_group": "new_behaviour",
    "key_event_disappears": "event_vanished",
}


#: Variants of :func:`variant_scenarios`: ``"OK"`` (nothing changed that matters), or
#: the least status and the tests one of which must come first.
VARIANTS: dict[str, str] = {
    "more_users": "OK",
    "extract_200_users": "OK",
    "extract_600_users": "OK",
    "acquisition_surge": "WARN:newcomer_intake|segment_share",
    "seasonal_peak": "DRIFT:nonzero_shift|nonzero_psi|aged_psi|new_behaviour",
    "price_doubles": "DRIFT:nonzero_shift|nonzero_psi|aged_psi",
    "search_not_logged": "DRIFT:event_vanished",
    "page_view_not_logged": "DRIFT:event_vanished",
}


def variant_scenarios(
    events: pd.DataFrame,
    n_champion_users: int,
    champion_as_of: dt.datetime,
    as_of: dt.datetime,
    *,
    more_users: pd.DataFrame | None = None,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Return one log per :data:`VARIANTS` key: what real logs do between two refreshes.

    ``more_users`` is a log of other users of the same process (e.g. a second
    :func:`steady_log` with another seed) added to ``events`` for ``"more_users"``;
    the acquisition surge adds a fifth of ``n_champion_users`` new users after the
    champion; a price change doubles revenue; a tracking bug stops logging one event.
    """
    out = {
        "extract_200_users": extract_users(events, 200, seed),
        "extract_600_users": extract_users(events, 600, seed),
        "acquisition_surge": add_new_users(
            events, max(n_champion_users // 5, 1), champion_as_of, as_of, seed=seed
        ),
        "seasonal_peak": repeat_sessions(events, champion_as_of, as_of, seed=seed),
        "price_doubles": scale_revenue(events, 2.0, champion_as_of),
        "search_not_logged": drop_event(events, "search", champion_as_of),
        "page_view_not_logged": drop_event(events, "page_view", champion_as_of),
    }
    if more_users is not None:
        extra = _plain(more_users)
        extra["user_id"] = "more-" + extra["user_id"]
        extra["session_id"] = extra["session_id"] + int(np.asarray(events["session_id"]).max()) + 1
        both = pd.concat([_plain(events), extra], ignore_index=True)
        out["more_users"] = both.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return out


def valuable_segment(features: pd.DataFrame, labels: np.ndarray, min_share: float = 0.05) -> int:
    """Return the segment with the highest median ``revenue_total`` holding ``min_share``.

    Raises
    ------
    ConfigError
        If no segment holds ``min_share`` of users.
    """
    labels = np.asarray(labels)
    shares = np.bincount(labels) / labels.size
    medians = pd.Series(features["revenue_total"].to_numpy()).groupby(labels).median()
    eligible = [
        int(s) for s in medians.sort_values(ascending=False).index if shares[s] >= min_share
    ]
    if not eligible:
        raise ConfigError(f"no segment holds {min_share:.0%} of users")
    return eligible[0]


def planted_scenarios(
    events: pd.DataFrame,
    champion_features: pd.DataFrame,
    champion_labels: np.ndarray,
    champion_as_of: dt.datetime,
    as_of: dt.datetime,
    *,
    seed: int = 0,
    key_event: str = "add_to_cart",
    new_group_share: float = 0.15,
) -> dict[str, tuple[pd.DataFrame, str | None]]:
    """Return the unchanged log and one log per planted change, with the segment concerned.

    Changes: the users of the most valuable segment (see :func:`valuable_segment`)
    vanish from the log; revenue halves from ``champion_as_of`` on; a group of new
    users (``new_group_share`` of the champion's users) with a behaviour no cohort
    had joins between the two snapshots; ``key_event`` stops being logged at
    ``champion_as_of``.

    Returns
    -------
    dict of str to (DataFrame, segment id as str or None)
        Keys ``"unchanged"`` and those of :data:`PLANTED`.
    """
    victim = valuable_segment(champion_features, champion_labels)
    users = champion_features["user_id"].to_numpy()[np.asarray(champion_labels) == victim]
    n_new = max(int(new_group_share * len(champion_features)), 1)
    return {
        "unchanged": (events, None),
        "segment_vanishes": (drop_users(events, users), str(victim)),
        "spend_halves": (scale_revenue(events, 0.5, champion_as_of), None),
        "new_behaviour_group": (
            add_behaviour_group(events, n_new, champion_as_of, as_of, seed=seed),
            None,
        ),
        "key_event_disappears": (drop_event(events, key_event, champion_as_of), None),
    }


_LEVELS = {"OK": 0, "WARN": 1, "DRIFT": 2}


def calibration_table(
    seeds: Iterable[int],
    scenarios: Iterable[str] | None = None,
    *,
    users_per_cohort: int = 300,
    cohort_days: int = 180,
    n_cohorts: int = 10,
    interval_days: int = 30,
    end: dt.date = dt.date(2025, 1, 1),
) -> pd.DataFrame:
    """Refresh verdicts of a champion on steady logs with and without planted changes.

    For each seed: a steady log (:func:`steady_log`, cohorts every ``interval_days``),
    a champion trained ``interval_days`` before ``end`` (small settings: k in 3..8,
    5 bootstrap refits, no propensity), then the calibrated checks and verdict of a
    refresh at ``end`` on each scenario of :func:`planted_scenarios`.

    Returns
    -------
    pandas.DataFrame
        One row per (seed, scenario): ``status``, ``action``, the first finding's
        ``kind`` and ``subject``, ``expected`` (the kinds that must come first, or
        ``"OK"``) and ``correct`` (unchanged -> OK; planted -> DRIFT named right).
    """
    from segmentkit.config import load_config
    from segmentkit.drift.checks import calibrated_checks
    from segmentkit.drift.verdict import decide, segment_label
    from segmentkit.features import build_features
    from segmentkit.io.events import load_events
    from segmentkit.training import train_model

    config = load_config(
        None,
        {
            "segmentation": {
                "k_range": [3, 8],
                "n_bootstrap": 5,
                "bootstrap_sample": 3000,
                "silhouette_sample": 2000,
            },
            "propensity": {"targets": []},
        },
    )
    as_of = pd.Timestamp(end).to_pydatetime()
    champion_as_of = as_of - dt.timedelta(days=interval_days)
    rows = []
    for seed in seeds:
        events = steady_log(users_per_cohort, cohort_days, n_cohorts, interval_days, end, seed=seed)
        champion = train_model(config, events, champion_as_of)
        model = champion.model
        segmenter = model.segmenter
        reference = model.metadata.feature_reference
        planted = planted_scenarios(
            events, champion.features, champion.segments, champion_as_of, as_of, seed=seed
        )
        wanted = set(PLANTED) | {"unchanged"} if scenarios is None else set(scenarios)
        if wanted & set(VARIANTS):
            more = steady_log(
                max(users_per_cohort // 10, 1),
                cohort_days,
                n_cohorts,
                interval_days,
                end,
                seed=seed + 7777,
            )
            variants = variant_scenarios(
                events, len(champion.features), champion_as_of, as_of, more_users=more, seed=seed
            )
            planted |= {name: (frame, None) for name, frame in variants.items()}
        for name, (log_frame, segment) in planted.items():
            if name not in wanted:
                continue
            log = load_events(log_frame, config.data.columns)
            checks = calibrated_checks(
                log=log,
                segmenter=segmenter,
                reference=reference,
                reference_shares=model.metadata.segment_shares,
                segment_names=list(segmenter.segment_names_),
                feature_config=model.feature_config,
                champion_as_of=champion_as_of,
                as_of=as_of,
                current=build_features(log, as_of, config.features),
                config=config.drift,
            )
            verdict = decide(checks.results)
            top = verdict.findings[0] if verdict.findings else None
            expected = PLANTED.get(name, VARIANTS.get(name, "OK"))
            if expected == "OK":
                correct = verdict.status == "OK"
            elif name in VARIANTS:
                least, kinds = expected.split(":")
                correct = (
                    _LEVELS[verdict.status] >= _LEVELS[least]
                    and top is not None
                    and top.kind in kinds.split("|")
                )
            else:
                correct = (
                    verdict.status == "DRIFT"
                    and top is not None
                    and top.kind in expected.split("|")
                    and (
                        segment is None
                        or top.subject == segment_label(segment, segmenter.segment_names_)
                    )
                )
            rows.append(
                {
                    "seed": seed,
                    "scenario": name,
                    "status": verdict.status,
                    "action": verdict.action,
                    "kind": None if top is None else top.kind,
                    "subject": None if top is None else top.subject,
                    "expected": expected,
                    "correct": bool(correct),
                }
            )
    return pd.DataFrame(rows)
