"""Time-split training data: snapshot plans, labels from the log, stacked training sets."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from segmentkit.config import FeatureConfig, PropensityConfig, TargetConfig
from segmentkit.errors import ConfigError, DataValidationError, InsufficientDataError
from segmentkit.features import build_features, build_features_many
from segmentkit.io.events import EventLog, to_timestamp
from segmentkit.text import sql_literal, sql_timestamp

_KINDS = ("inactivity", "event", "count")


@dataclass(frozen=True)
class SnapshotPlan:
    """Snapshot times of one target, latest first.

    Attributes
    ----------
    horizon_days : int
        Label window length.
    evaluation : datetime.datetime
        ``T_eval = as_of - horizon``; its labels end at ``as_of``.
    backtest : tuple of datetime.datetime
        Training snapshots of the out-of-time evaluation; labels end by ``T_eval``.
    final : tuple of datetime.datetime
        Training snapshots of the final model; labels end by ``as_of``.
    """

    horizon_days: int
    evaluation: dt.datetime
    backtest: tuple[dt.datetime, ...]
    final: tuple[dt.datetime, ...]


def plan_snapshots(
    as_of: dt.date | dt.datetime | str,
    horizon_days: int,
    n_snapshots: int,
    step_days: int,
    first_event: dt.datetime | None = None,
) -> SnapshotPlan:
    """Lay out the evaluation, backtest and final training snapshots.

    Snapshots at or before ``first_event`` (no user would have features) are left
    out; the rest are kept, so a short log trains on fewer snapshots.

    Parameters
    ----------
    as_of : date-like
        Scoring time; every label window ends at or before it.
    horizon_days, n_snapshots, step_days : int
        From :class:`segmentkit.config.PropensityConfig` (or the target's horizon).
    first_event : datetime.datetime, optional
        Time of the earliest event in the log.

    Returns
    -------
    SnapshotPlan

    Raises
    ------
    InsufficientDataError
        If not even one backtest training snapshot falls after ``first_event``.

    Examples
    --------
    >>> plan = plan_snapshots("2025-01-01", 30, 2, 30)
    >>> [t.date().isoformat() for t in plan.final]
    ['2024-12-02', '2024-11-02']
    >>> plan.evaluation.date().isoformat(), [t.date().isoformat() for t in plan.backtest]
    ('2024-12-02', ['2024-11-02', '2024-10-03'])
    """
    if horizon_days <= 0 or n_snapshots <= 0 or step_days <= 0:
        raise ConfigError(
            "propensity: horizon_days, n_snapshots and snapshot_step_days must be positive, "
            f"got {horizon_days}, {n_snapshots}, {step_days}"
        )
    end = to_timestamp(as_of)
    h = dt.timedelta(days=horizon_days)
    step = dt.timedelta(days=step_days)
    evaluation = end - h
    final = [end - h - k * step for k in range(n_snapshots)]
    backtest = [evaluation - h - k * step for k in range(n_snapshots)]
    if first_event is not None:
        final = [t for t in final if t > first_event]
        backtest = [t for t in backtest if t > first_event]
        if not backtest:
            raise InsufficientDataError(
                f"the event log is too short for a {horizon_days}-day horizon: out-of-time "
                f"evaluation needs events before {(evaluation - h).isoformat(sep=' ')} "
                f"(as_of {end.isoformat(sep=' ')} minus twice the horizon) to train on and "
                f"[{evaluation.isoformat(sep=' ')}, {end.isoformat(sep=' ')}) to evaluate on, "
                f"but the first event is at {first_event.isoformat(sep=' ')}: "
                f"{_longest_horizon_hint(end - first_event)}"
            )
    return SnapshotPlan(horizon_days, evaluation, tuple(backtest), tuple(final))


def _longest_horizon_hint(span: dt.timedelta) -> str:
    """Say which horizon a log spanning ``span`` before ``as_of`` can be evaluated at."""
    # A backtest snapshot needs as_of - 2 * horizon strictly after the first event.
    longest = math.ceil(span / dt.timedelta(days=1) / 2) - 1
    if longest < 1:
        return "the log is too short for any horizon; propensity needs a longer log"
    return (
        f"this log allows a horizon of at most {longest} day(s) "
        "(propensity.horizon_days, or a target's horizon_days), or a longer log"
    )


def check_history(
    as_of: dt.date | dt.datetime | str,
    first_event: dt.datetime | str | None,
    config: PropensityConfig,
) -> None:
    """Refuse, before any work, a log too short for every target's out-of-time evaluation.

    Parameters
    ----------
    as_of : date-like
        Scoring time.
    first_event : datetime or ISO string, optional
        Time of the earliest event in the log; ``None`` (no event) is left to the
        fit to report.
    config : PropensityConfig
        The targets and their snapshot layout.

    Raises
    ------
    InsufficientDataError
        If a target's horizon leaves no backtest training snapshot after the first
        event (the message names the longest horizon the log allows).

    Examples
    --------
    >>> from segmentkit.config import PropensityConfig, TargetConfig
    >>> config = PropensityConfig(targets=(TargetConfig(name="churn", kind="inactivity"),))
    >>> check_history("2025-01-01", "2024-11-02 00:15:54", config)
    Traceback (most recent call last):
    ...
    segmentkit.errors.InsufficientDataError: the event log is too short for a 30-day \
horizon: ... this log allows a horizon of at most 29 day(s) ...
    """
    if first_event is None:
        return
    first = to_timestamp(first_event)
    for target in config.targets:
        horizon = target.horizon_days or config.horizon_days
        plan_snapshots(
            as_of, horizon, config.n_snapshots, config.snapshot_step_days, first_event=first
        )


def _check_target(target: TargetConfig) -> None:
    if target.kind not in _KINDS:
        raise ConfigError(
            f"propensity.targets.{target.name}: kind must be one of {list(_KINDS)}, "
            f"got {target.kind!r}"
        )
    if target.kind in ("event", "count") and not target.event:
        raise ConfigError(
            f"propensity.targets.{target.name}: kind {target.kind!r} needs an `event` name"
        )
    if target.horizon_days is not None and target.horizon_days <= 0:
        raise ConfigError(
            f"propensity.targets.{target.name}: horizon_days must be positive, "
            f"got {target.horizon_days}"
        )


def build_labels(
    log: EventLog,
    t0: dt.date | dt.datetime | str,
    target: TargetConfig,
    horizon_days: int,
    as_of: dt.date | dt.datetime | str | None = None,
    population: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Label every user with an event before ``t0`` from events in ``[t0, t0 + horizon)``.

    Parameters
    ----------
    log : EventLog
        Clean log from :func:`segmentkit.io.events.load_events`.
    t0 : date-like
        Snapshot time.
    target : TargetConfig
        What to label: ``inactivity`` (1 when the user has no event at all in the
        window), ``event`` (1 when the event occurs) or ``count`` (how many purchase
        *occasions*: distinct timestamps of the event, so the lines of one order,
        which share the user and the time, count once, and so do a date-only log's
        purchases of one day). For ``event`` and ``count``, rows with negative
        revenue (refunds, cancelled invoices) are not occurrences of the event.
    horizon_days : int
        Length of the label window.
    as_of : date-like, optional
        Upper bound of what may be read (defaults to ``t0 + horizon``); the window
        must end at or before it.
    population : pandas.DataFrame, optional
        ``user_id`` of the users with an event before ``t0`` (see
        :func:`build_label_table`).

    Returns
    -------
    pandas.DataFrame
        ``user_id`` and ``label`` (int64), sorted by ``user_id``.

    Raises
    ------
    DataValidationError
        If the window ends after ``as_of`` or after the log's own cut-off.

    Examples
    --------
    >>> import pandas as pd
    >>> from segmentkit.io.events import load_events
    >>> log = load_events(pd.DataFrame({
    ...     "user_id": ["a", "b", "b"],
    ...     "timestamp": ["2024-01-01", "2024-01-01", "2024-01-05"],
    ...     "event": ["view", "view", "purchase"]}))
    >>> churn = TargetConfig(name="churn", kind="inactivity")
    >>> build_labels(log, "2024-01-03", churn, 7).to_dict("list")
    {'user_id': ['a', 'b'], 'label': [1, 0]}
    """
    frame = build_label_table(log, t0, [(target, horizon_days)], as_of, population)
    return frame.rename(columns={"label_0": "label"})


def build_label_table(
    log: EventLog,
    t0: dt.date | dt.datetime | str,
    targets: Sequence[tuple[TargetConfig, int]],
    as_of: dt.date | dt.datetime | str | None = None,
    population: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Label every user with an event before ``t0`` for several targets in one scan.

    Parameters
    ----------
    log : EventLog
        Clean log.
    t0 : date-like
        Snapshot time.
    targets : sequence of (TargetConfig, int)
        Each target with its horizon in days.
    as_of : date-like, optional
        Upper bound of what may be read (defaults to the latest window's end); every
        window must end at or before it.
    population : pandas.DataFrame, optional
        ``user_id`` of every user with an event before ``t0``, when the caller has
        them (the feature table at ``t0``): only the label windows' rows are then read
        (a window is a fraction of the log) instead of every row before its end.

    Returns
    -------
    pandas.DataFrame
        ``user_id`` and ``label_<i>`` (int64) for the i-th target, sorted by ``user_id``.

    Raises
    ------
    DataValidationError
        If a window ends after ``as_of`` or after the log's own cut-off.
    """
    start = to_timestamp(t0)
    labels = []
    ends = []
    # A user without a row in any window: inactive (1), no event (0), a zero count.
    no_event = []
    for index, (target, horizon_days) in enumerate(targets):
        _check_target(target)
        end = start + dt.timedelta(days=horizon_days)
        bound = to_timestamp(as_of) if as_of is not None else end
        if end > bound:
            raise DataValidationError(
                f"label window [{start}, {end}) ends after as_of {bound}: its labels are not "
                "known yet"
            )
        if log.as_of is not None and end > log.as_of:
            raise DataValidationError(
                f"label window [{start}, {end}) ends after the cut-off {log.as_of} the log was "
                "loaded with: events in between are missing"
            )
        window = f"timestamp >= {sql_timestamp(start)} AND timestamp < {sql_timestamp(end)}"
        if target.kind == "inactivity":
            label = f"CAST(count(*) FILTER (WHERE {window}) = 0 AS BIGINT)"
        else:
            # A refund or cancellation (negative revenue) is not an occurrence of the
            # event; rows of one user and event at the same time are one occasion (the
            # lines of one order, or one day's purchases in a date-only log).
            hit = (
                f"{window} AND event = {sql_literal(str(target.event))} "
                "AND NOT coalesce(revenue < 0, false)"
            )
            if target.kind == "count":
                label = f"count(DISTINCT timestamp) FILTER (WHERE {hit})"
            else:
                label = f"CAST(count(*) FILTER (WHERE {hit}) > 0 AS BIGINT)"
        labels.append(f"{label} AS label_{index}")
        ends.append(end)
        no_event.append(int(target.kind == "inactivity"))
    if population is None:
        # The users before t0, then the labels from the window's rows only: the count's
        # distinct timestamps are then sought in the window, not in the whole history.
        filled = ", ".join(
            f"coalesce(w.label_{i}, {value}) AS label_{i}" for i, value in enumerate(no_event)
        )
        frame = log.con.execute(
            f"""
            SELECT p.user_id, {filled}
            FROM (
                SELECT DISTINCT user_id FROM {log.table}
                WHERE timestamp < {sql_timestamp(start)}
            ) AS p
            LEFT JOIN (
                SELECT user_id, {", ".join(labels)}
                FROM {log.table}
                WHERE timestamp >= {sql_timestamp(start)} AND timestamp < {sql_timestamp(max(ends))}
                GROUP BY user_id
            ) AS w USING (user_id)
            ORDER BY p.user_id
            """
        ).df()
    else:
        frame = _window_labels(log, start, max(ends), labels, no_event, population)
    return frame.astype({f"label_{i}": np.int64 for i in range(len(ends))}).reset_index(drop=True)


def _window_labels(
    log: EventLog,
    start: dt.datetime,
    end: dt.datetime,
    labels: Sequence[str],
    no_event: Sequence[int],
    population: pd.DataFrame,
) -> pd.DataFrame:
    """Label ``population`` from the rows in ``[start, end)`` only (see build_label_table).

    ``labels[i]`` is the SQL of ``label_<i>``; a user without a row in ``[start, end)``
    gets ``no_event[i]``.
    """
    name = f"_population_{id(population):x}"
    filled = ", ".join(
        f"coalesce(w.label_{i}, {value}) AS label_{i}" for i, value in enumerate(no_event)
    )
    # DuckDB 2 refuses a registration while a result is left open (a fetchone() that
    # read the only row but not the end); a new statement closes it.
    log.con.execute("SELECT 1").fetchall()
    log.con.register(name, population[["user_id"]])
    try:
        return log.con.execute(
            f"""
            SELECT p.user_id, {filled}
            FROM {name} AS p
            LEFT JOIN (
                SELECT user_id, {", ".join(labels)}
                FROM {log.table}
                WHERE timestamp >= {sql_timestamp(start)} AND timestamp < {sql_timestamp(end)}
                GROUP BY user_id
            ) AS w USING (user_id)
            ORDER BY p.user_id
            """
        ).df()
    finally:
        log.con.unregister(name)


def build_training_set(
    log: EventLog,
    snapshots: Sequence[dt.datetime],
    target: TargetConfig,
    horizon_days: int,
    feature_config: FeatureConfig | None = None,
    as_of: dt.date | dt.datetime | str | None = None,
    *,
    _cache: dict[Any, pd.DataFrame] | None = None,
    _other_targets: Sequence[tuple[TargetConfig, int]] = (),
) -> pd.DataFrame:
    """Stack features and labels of several snapshots.

    Parameters
    ----------
    log : EventLog
        Clean log.
    snapshots : sequence of datetime.datetime
        Snapshot times ``T0``.
    target : TargetConfig
        What to label.
    horizon_days : int
        Label window length.
    feature_config : FeatureConfig, optional
        Passed to :func:`segmentkit.features.build_features`.
    as_of : date-like, optional
        Upper bound of what may be read.

    Returns
    -------
    pandas.DataFrame
        ``snapshot`` (the ``T0``), ``user_id``, the feature columns and ``label``,
        ordered by snapshot (latest first) then ``user_id``.
    """
    frames = []
    times = [to_timestamp(t0) for t0 in snapshots]
    tables = features_at(log, times, feature_config, _cache)
    for t0 in times:
        features = tables[t0]
        labels = _cached_labels(
            log, t0, target, horizon_days, as_of, _cache, _other_targets, population=features
        )
        frame = _join_labels(features, labels)
        if len(frame) != len(features):  # pragma: no cover - same user definition both sides
            raise DataValidationError(f"labels and features at {t0} cover different users")
        frame.insert(0, "snapshot", pd.Timestamp(t0))
        frames.append(frame)
    if not frames:
        raise InsufficientDataError("no snapshot to build a training set from")
    return pd.concat(frames, ignore_index=True)


def _join_labels(features: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Append ``labels``' ``label`` to ``features`` by ``user_id``.

    Both tables come sorted by ``user_id`` over the same users, so the label column is
    usually appended as it is (a join on a million string keys costs about a second,
    and a snapshot is joined once per target and role); otherwise by a join.

    Examples
    --------
    >>> features = pd.DataFrame({"user_id": ["a", "b"], "x": [1.0, 2.0]})
    >>> _join_labels(features, pd.DataFrame({"user_id": ["b", "a"], "label": [1, 0]}))
      user_id    x  label
    0       a  1.0      0
    1       b  2.0      1
    """
    users = features["user_id"].to_numpy()
    if len(labels) == len(features) and np.array_equal(labels["user_id"].to_numpy(), users):
        return features.assign(label=labels["label"].to_numpy())
    return features.merge(labels, on="user_id", how="inner", validate="one_to_one")


def features_at(
    log: EventLog,
    times: Sequence[dt.datetime],
    feature_config: FeatureConfig | None = None,
    cache: dict[Any, pd.DataFrame] | None = None,
) -> dict[dt.datetime, pd.DataFrame]:
    """Feature tables at several snapshot times, the missing ones from one pass over the log.

    Parameters
    ----------
    log : EventLog
        Clean log.
    times : sequence of datetime.datetime
        Snapshot times (repeats allowed).
    feature_config : FeatureConfig, optional
        Passed to :func:`segmentkit.features.build_features_many`.
    cache : dict, optional
        Tables already built, by time; the new ones are added to it.

    Returns
    -------
    dict
        The table of every time in ``times``.
    """
    cache = {} if cache is None else cache
    times = [to_timestamp(t) for t in times]
    missing = [t for t in dict.fromkeys(times) if t not in cache]
    if len(missing) == 1:
        cache[missing[0]] = build_features(log, missing[0], feature_config)
    elif missing:
        # One scan and one user-day aggregation serve every snapshot (issue 15).
        cache.update(zip(missing, build_features_many(log, missing, feature_config), strict=True))
    return {t: cache[t] for t in times}


#: Length of the seasonal cycle looked for (days): the same season a year earlier.
SEASON_DAYS = 365


def season_snapshots(
    t: dt.date | dt.datetime | str,
    horizon_days: int,
    first_event: dt.datetime | None = None,
    period_days: int = SEASON_DAYS,
) -> tuple[dt.datetime, dt.datetime] | None:
    """Return the snapshots one period before the scored and the latest labeled ones.

    A model scoring ``[t, t + h)`` takes its level from the latest labeled snapshot
    ``t - h``; how much the level moved from ``t - h - P`` to ``t - P`` (the same
    step a year earlier) is the seasonal part of the step it is about to take. Both
    label windows end by ``t``, so nothing at or after ``t`` is read. None when the
    log does not reach back before ``t - h - P``.

    Examples
    --------
    >>> [d.date().isoformat() for d in season_snapshots("2024-12-01", 30)]
    ['2023-12-02', '2023-11-02']
    >>> season_snapshots("2024-12-01", 30, first_event=dt.datetime(2024, 1, 1)) is None
    True
    """
    end = to_timestamp(t)
    period = dt.timedelta(days=period_days)
    earlier = end - dt.timedelta(days=horizon_days) - period
    if first_event is not None and first_event >= earlier:
        return None
    return end - period, earlier


def _cached_labels(
    log: EventLog,
    t0: dt.datetime,
    target: TargetConfig,
    horizon_days: int,
    as_of: Any,
    cache: dict[Any, pd.DataFrame] | None,
    other_targets: Sequence[tuple[TargetConfig, int]],
    population: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Labels of one target at ``t0``; a miss labels ``other_targets`` in the same scan.

    ``population`` (the feature table at ``t0``) spares reading rows before ``t0``.
    """
    if cache is None:
        return build_labels(log, t0, target, horizon_days, as_of, population)

    def key(target: TargetConfig, horizon: int) -> tuple:
        return ("labels", t0, target.kind, target.event, horizon, as_of)

    if key(target, horizon_days) not in cache:
        wanted = list(dict.fromkeys([(target, horizon_days), *other_targets]))
        wanted = [(t, h) for t, h in wanted if key(t, h) not in cache]
        table = build_label_table(log, t0, wanted, as_of, population)
        for index, (other, horizon) in enumerate(wanted):
            cache[key(other, horizon)] = table[["user_id", f"label_{index}"]].rename(
                columns={f"label_{index}": "label"}
            )
    return cache[key(target, horizon_days)]
