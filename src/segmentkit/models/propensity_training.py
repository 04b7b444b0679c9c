"""Fitting every propensity target from a log.

Stacked snapshots, candidates judged out of time, the winner refitted, baselines
beside it, and a report whose figures come from a snapshot the choice never saw.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from segmentkit.config import FeatureConfig, PropensityConfig, TargetConfig
from segmentkit.errors import ConfigError, DataValidationError, InsufficientDataError
from segmentkit.features import feature_names
from segmentkit.io.events import (
    EventLog,
    distinct_event_names,
    other_spellings,
    respelled_names,
    to_timestamp,
)
from segmentkit.models.evaluation import (
    _CALIBRATION_COLUMNS,
    PropensityEvaluation,
    _calibration_table,
    _decile_table,
    _metrics,
    _selection_metric,
)
from segmentkit.models.labels import (
    SEASON_DAYS,
    SnapshotPlan,
    _check_target,
    build_training_set,
    features_at,
    plan_snapshots,
    season_snapshots,
)
from segmentkit.models.propensity import (
    _NO_LEVEL,
    _SEASON,
    _TREND,
    BASELINES,
    FAMILIES,
    PropensityModel,
    fit_bgnbd_params,
    shift_level,
)
from segmentkit.parallel import thread_map, usable_cores
from segmentkit.text import quoted_names, sql_literal, sql_timestamp


class LevelVerdict(NamedTuple):
    """Whether the seasonal step won out of time, why, and on how many snapshots."""

    use: bool
    text: str
    tested: int

    @property
    def rejected(self) -> bool:
        """Lost on enough snapshots (three or more) to overrule one selection snapshot."""
        return not self.use and self.tested >= _VERDICT_MIN_TESTS


# Snapshots a level rule must be tested on before its verdict counts.
_VERDICT_MIN_TESTS = 3
#: A seasonal step is measured a year before the scored period, on customers no
#: older than the log then was. Where fewer than this share of the users scored now
#: are that young (see :func:`_season_base_share`), one snapshot's win (selection or
#: evaluation) does not choose it: only the history's verdict over several does.
SEASON_MIN_YOUNG_SHARE = 0.05


@dataclass(frozen=True)
class PropensityResult:
    """Fitted models, their evaluation and the family chosen per target."""

    models: dict[str, PropensityModel]
    evaluation: PropensityEvaluation
    choice: dict[str, str]
    #: Feature tables at the ``extra_snapshots`` the caller asked for, by time.
    extra_features: dict[dt.datetime, pd.DataFrame] = field(default_factory=dict)


def _first_event(log: EventLog, as_of: dt.datetime) -> dt.datetime:
    first = log.con.execute(
        f"SELECT min(timestamp) FROM {log.table} WHERE timestamp < {sql_timestamp(as_of)}"
    ).fetchall()[0][0]
    if first is None:
        raise InsufficientDataError(f"the event log has no event before as_of {as_of}")
    return first


def _season_base_share(
    tenure_days: np.ndarray, end: dt.datetime, first: dt.datetime
) -> tuple[float, float]:
    """Share of the users scored at ``end`` as young as any customer a year earlier.

    The seasonal step into ``[end, end + h)`` is the move of the level a year earlier
    (:func:`segmentkit.models.labels.season_snapshots`), measured on customers at most
    ``end - P - first`` days old. Where nobody scored now is that young (a single
    cohort a year after it arrived, as in CDNOW's log), that move is how behaviour
    changes in a customer's first months as much as the season, and one snapshot where
    the step helped proves little: on CDNOW scored over June 1998 a step of +1.17 on
    the log-odds scale won the selection snapshot and predicted 1.9 x the realized
    total. (Within one cohort, age and calendar move together; only a step that keeps
    predicting the level's moves over several snapshots is a season.)

    Returns
    -------
    share : float
        Share of ``tenure_days`` at most the oldest age a year earlier.
    oldest_days : float
        That age, in days (negative when the log does not reach a year back).

    Examples
    --------
    >>> end, first = dt.datetime(2025, 1, 1), dt.datetime(2023, 7, 1)
    >>> _season_base_share(np.array([10.0, 100.0, 300.0, 500.0]), end, first)
    (0.5, 185.0)
    """
    period = dt.timedelta(days=SEASON_DAYS)
    oldest_days = (end - period - first) / dt.timedelta(days=1)
    if len(tenure_days) == 0:
        return 0.0, oldest_days
    return float(np.mean(np.asarray(tenure_days) <= oldest_days)), oldest_days


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    X = frame.drop(columns=["snapshot", "user_id", "label"])
    snapshot = frame["snapshot"].to_numpy().astype("datetime64[s]").astype(np.int64)
    return X, frame["label"].to_numpy(), snapshot


def _check_positives(
    frame: pd.DataFrame, target: TargetConfig, role: str, minimum: int, horizon: int
) -> None:
    positive = int((frame["label"] > 0).sum())
    negative = int(len(frame) - positive)
    what = {"inactivity": "churned users", "event": "converting users", "count": "users with"}
    noun = what[target.kind] + (f" {target.event!r}" if target.kind == "count" else "")
    # Unique first: iterating a Timestamp column row by row costs seconds at 1M rows.
    when = ", ".join(sorted({t.date().isoformat() for t in frame["snapshot"].drop_duplicates()}))
    # What a user can change: the window, the threshold, or the target itself.
    remedy = (
        f"give a longer log or more users, a longer horizon_days for {target.name!r}, a lower "
        f"propensity.min_positives, or drop {target.name!r} from propensity.targets"
    )
    if positive < minimum:
        raise InsufficientDataError(
            f"target {target.name!r}: {positive} positive(s) ({noun} within {horizon} days) in "
            f"the {role} snapshot(s) {when}; at least min_positives = {minimum} are needed: "
            f"{remedy}" + _one_day_users_hint(frame, target)
        )
    if target.kind != "count" and negative < minimum:
        raise InsufficientDataError(
            f"target {target.name!r}: only {negative} negative(s) in the {role} snapshot(s) "
            f"{when}; at least min_positives = {minimum} of each class are needed: {remedy}"
        )


def _one_day_users_hint(frame: pd.DataFrame, target: TargetConfig) -> str:
    """Point out a user id that names an order: no user of the log came back on another day.

    Olist's orders give each order its own ``customer_id`` (the person is
    ``customer_unique_id``): mapped as the user, nobody ever returns, and no purchase
    target can have positives.

    Examples
    --------
    >>> from segmentkit.config import TargetConfig
    >>> frame = pd.DataFrame({"active_days_total": [1, 1, 1], "label": [0, 0, 0]})
    >>> _one_day_users_hint(frame, TargetConfig("purchase", "event", "purchase"))[:46]
    ' (no user of the log was active on two days: i'
    """
    days = frame.get("active_days_total")
    if target.kind == "inactivity" or days is None or len(days) == 0 or days.max() > 1:
        return ""
    return (
        " (no user of the log was active on two days: is data.columns.user_id an id per person, "
        "or one per order, as Olist's customer_id?)"
    )


def _snapshot_rows(frame: pd.DataFrame, name: str, role: str, horizon: int) -> list[dict]:
    rows = []
    for t0, part in frame.groupby("snapshot", sort=False):
        rows.append(
            {
                "target": name,
                "role": role,
                "snapshot": t0,
                "label_end": t0 + pd.Timedelta(days=horizon),
                "users": len(part),
                "positives": int((part["label"] > 0).sum()),
                "rate": float(part["label"].mean()),
            }
        )
    return rows


def fit_propensity(
    log: EventLog,
    as_of: dt.date | dt.datetime | str,
    feature_config: FeatureConfig | None = None,
    config: PropensityConfig | None = None,
    *,
    segments: pd.DataFrame | None = None,
    candidates: Sequence[str] | None = None,
    n_threads: int | None = None,
    selection_rows_max: int | None = None,
    training_rows_max: int | None = None,
    as_of_features: pd.DataFrame | None = None,
    extra_snapshots: Sequence[dt.date | dt.datetime | str] = (),
    after_snapshot_features: Callable[[], object] | None = None,
) -> PropensityResult:
    """Fit, evaluate out of time and choose a calibrated model per target.

    Parameters
    ----------
    log : EventLog
        Clean log (it may hold events at or after ``as_of``: they are never read).
    as_of : date-like
        Scoring time. Label windows end at or before it.
    feature_config : FeatureConfig, optional
        Feature settings, passed to :func:`segmentkit.features.build_features`.
    config : PropensityConfig
        Targets, horizon, snapshot layout, ``min_positives`` and ``random_state``.
    segments : pandas.DataFrame, optional
        ``user_id, segment``: adds per-segment observed rate and mean out-of-time
        score on the evaluation snapshot to the evaluation.
    candidates : sequence of str, optional
        Families competing per target (some of :data:`FAMILIES`, optionally with
        ``+bgnbd``); defaults to ``config.candidates``.
    n_threads : int, optional
        Passed to every :class:`PropensityModel` (see there).
    selection_rows_max : int, optional
        Candidates are compared on at most this many selection training rows, a
        sample stratified by snapshot and label; the winner on the training rows below.
        Defaults to ``config.selection_rows_max``.
    training_rows_max : int, optional
        The winner and the baselines are fitted on at most this many rows, a sample
        stratified the same way (default ``config.training_rows_max``; None = every
        row). Evaluation always scores every user.
    as_of_features : pandas.DataFrame, optional
        The feature table at ``as_of`` built with ``feature_config``, when the caller
        has it (training builds it for the segments): the final models' BG/NBD inputs
        are fitted on its users, and it is reused instead of built again.
    extra_snapshots : sequence of date-like, optional
        Further snapshot times (at or before ``as_of``) whose feature tables the caller
        needs too (a refresh's drift checks): built in the same pass over the log as
        the training snapshots and returned in ``PropensityResult.extra_features``.
    after_snapshot_features : callable, optional
        Called with no argument once every snapshot's features are built, before the
        first label or fit: training starts the segmentation there, so that it runs
        beside the fits but not beside the one-pass feature build, the step that holds
        the most memory.

    Returns
    -------
    PropensityResult

    Raises
    ------
    ConfigError
        No targets, or an invalid target or candidate.
    DataValidationError
        ``as_of`` is after the log's cut-off, ``segments`` lacks its columns, or
        ``as_of_features`` lacks ``user_id`` or a feature column.
    InsufficientDataError
        The log is too short for one backtest snapshot, or a target has fewer
        than ``min_positives`` positives (or negatives) in a snapshot set.
    """
    config = config or PropensityConfig()
    candidates = tuple(config.candidates if candidates is None else candidates)
    if selection_rows_max is None:
        selection_rows_max = config.selection_rows_max
    if not config.targets:
        raise ConfigError("propensity.targets: no target to fit")
    allowed = [*FAMILIES, *(f"{f}+bgnbd" for f in FAMILIES if f not in ("bgnbd", "complement"))]
    unknown = [c for c in candidates if c not in allowed or c == "complement"]
    if unknown or not candidates:
        raise ConfigError(
            f"propensity.candidates: expected some of {[c for c in allowed if c != 'complement']}, "
            f"got {list(candidates)}"
        )
    end = to_timestamp(as_of)
    if log.as_of is not None and log.as_of < end:
        raise DataValidationError(
            f"as_of {end} is after the cut-off {log.as_of} the log was loaded with: "
            "events in between are missing"
        )
    if segments is not None:
        missing = [c for c in ("user_id", "segment") if c not in segments.columns]
        if missing:
            raise DataValidationError(
                f"segments: missing column(s) {missing}; columns present: {list(segments.columns)}"
            )
    for target in config.targets:
        _check_target(target)
    check_target_events(log, config.targets)
    rows_max = training_rows_max if training_rows_max is not None else config.training_rows_max
    rows_max = rows_max if rows_max is not None else np.iinfo(np.int64).max
    first = _first_event(log, end)
    features_used = feature_config or FeatureConfig()
    single_event = _single_event(log, end)
    cache: dict[Any, pd.DataFrame] = {}
    if as_of_features is not None:
        expected = ["user_id", *feature_names(features_used)]
        missing = [c for c in expected if c not in as_of_features.columns]
        if missing:
            raise DataValidationError(
                f"as_of_features: missing column(s) {missing}; expected the feature table "
                "at as_of built with feature_config"
            )
        cache[end] = as_of_features
    models: dict[str, PropensityModel] = {}
    choice: dict[str, str] = {}
    metric_rows: list[dict] = []
    selection_rows: list[dict] = []
    total_rows: list[dict] = []
    notes: list[str] = []
    nested_all = True
    decile_frames, calibration_frames, snapshot_rows, segment_frames = [], [], [], []
    # Event and count targets first: a churn target may be derived from a purchase model.
    report_scores: dict[tuple[str | None, int], tuple[np.ndarray, str]] = {}
    ordered = sorted(config.targets, key=lambda t: t.kind == "inactivity")
    # Every target's labels at a snapshot come from one scan of the log.
    label_targets = [(t, t.horizon_days or config.horizon_days) for t in ordered]

    # Every snapshot the plans name is built in one pass over the log, before any fit,
    # with the population at as_of: the users the final models score.
    planned = _planned_snapshots(ordered, config, end, first, features_used)
    extra = [to_timestamp(t) for t in extra_snapshots]
    late = [t for t in extra if t > end]
    if late:
        raise DataValidationError(
            f"extra_snapshots: {[t.isoformat(sep=' ') for t in late]} are after as_of "
            f"{end.isoformat(sep=' ')}: their features would read events the fit may not"
        )
    features_at(log, [*planned, end, *extra], feature_config, cache)
    if after_snapshot_features is not None:
        after_snapshot_features()
    young_share, young_days = _season_base_share(
        cache[end]["tenure_days"].to_numpy(dtype=float), end, first
    )
    # Where nobody scored now is as young as the customers of a year earlier, one
    # snapshot cannot tell a seasonal step from how behaviour changes with age: the
    # step then needs the history's verdict over several snapshots.
    season_one_snapshot = young_share >= SEASON_MIN_YOUNG_SHARE
    young_base = (
        f"a year before the scored period every customer was at most {young_days:.0f} days "
        f"old, and {young_share:.1%} of the users scored now are that young (under "
        f"{SEASON_MIN_YOUNG_SHARE:.0%}): one snapshot cannot tell the season from how "
        "behaviour changes in a customer's first months"
    )
    bgnbd_fits: dict[dt.datetime, np.ndarray] = {}

    def bgnbd_at(when: dt.datetime) -> np.ndarray:
        """Return the BG/NBD of the users scored at ``when``: one fit for every target.

        BG/NBD is unsupervised (features only, nothing after ``when``), so it is fitted
        on the population a model scores, as a BG/NBD fitted on the history up to that
        date is, and every candidate and baseline of every target scoring that
        population shares it (all its users, not a target's stratified sample).
        """
        if when not in bgnbd_fits:
            table = features_at(log, [when], feature_config, cache)[when]
            bgnbd_fits[when] = fit_bgnbd_params(table)
        return bgnbd_fits[when]

    for target in ordered:
        horizon = target.horizon_days or config.horizon_days
        plan = plan_snapshots(
            end,
            horizon,
            config.n_snapshots,
            config.snapshot_step_days,
            first_event=first,
        )
        # The choice between candidates is made one horizon earlier than the snapshot
        # whose metrics are reported, so the reported quality is not the winner's luck.
        try:
            selection_plan = plan_snapshots(
                plan.evaluation, horizon, config.n_snapshots, config.snapshot_step_days,
                first_event=first,
            )  # fmt: skip
        except InsufficientDataError:
            selection_plan = None
        selection_plan = _calibrated_out_of_time(selection_plan, config.n_snapshots)

        def build(times: Sequence[dt.datetime], target=target, horizon=horizon) -> pd.DataFrame:
            return build_training_set(
                log, times, target, horizon, feature_config, end, _cache=cache,
                _other_targets=label_targets,
            )  # fmt: skip

        # Fits grow with rows, scoring hardly: past a few hundred thousand stacked rows
        # a stratified sample fits as well as everything (benchmarks/train.py). Only the
        # sample of a stacked training frame is kept (at 1M users each holds millions of
        # rows); the evaluation scores every user.
        frames = {}
        for role, times in (
            ("backtest", plan.backtest),
            ("evaluation", [plan.evaluation]),
            ("final", plan.final),
        ):
            frame = build(times)
            _check_positives(frame, target, role, config.min_positives, horizon)
            snapshot_rows += _snapshot_rows(frame, target.name, role, horizon)
            if role != "evaluation":
                frame = _stratified_sample(frame, rows_max, config.random_state)
            frames[role] = frame
            del frame
        evaluation = frames["evaluation"]

        def season(
            model: PropensityModel, t: dt.datetime, horizon=horizon, build=None
        ) -> float | None:
            """Seasonal step of the model's level into [t, t + h), from a year earlier."""
            times = season_snapshots(t, horizon, first_event=first)
            if times is None:
                return None
            residuals = []
            for when in times:
                X_year, y_year, _ = _split(build([when]))
                residuals.append(model.level_residual(X_year, y_year))
            return residuals[0] - residuals[1]

        # A seasonal level is offered where it can be checked out of time: the log must
        # reach a year and a horizon before the selection snapshot.
        season_checked = (
            selection_plan is not None
            and season_snapshots(selection_plan.evaluation, horizon, first_event=first) is not None
        )

        def make(
            name: str,
            scored_at: dt.datetime | None = None,
            target=target,
            horizon=horizon,
            **extra: Any,
        ) -> PropensityModel:
            """Return the model of a candidate that scores the users at ``scored_at``."""
            family, level = _parse_variant(name)
            family, _, variant = family.partition("+")
            if "bgnbd" in (family, variant):
                extra["bgnbd_params"] = bgnbd_at(scored_at)
            return PropensityModel(
                target=target.name,
                kind=target.kind,
                event=target.event,
                horizon_days=horizon,
                family=family,
                random_state=config.random_state,
                n_threads=n_threads,
                bgnbd_features=variant == "bgnbd",
                relevel=level != "none",
                level_trend=level == "trend",
                **extra,
            )

        X_bt, y_bt, s_bt = _split(frames.pop("backtest"))
        X_ev, y_ev, _ = _split(evaluation)
        X_fin, y_fin, s_fin = _split(frames.pop("final"))
        key = _selection_metric(target.kind)
        ranked = list(dict.fromkeys(candidates))
        source = (
            report_scores.get((single_event, horizon))
            if target.kind == "inactivity" and single_event is not None
            else None
        )
        scores: dict[str, np.ndarray] = {}
        fitted: dict[str, PropensityModel] = {}
        level_risk = final_level_risk = None
        history_all: dict[dt.datetime, float] = {}  # residual levels up to the evaluation
        on_history = False  # whether the seasonal verdict over the history chose the level
        if source is not None:
            # One event type: no event = no purchase, so churn is 1 - p(purchase).
            best = "complement"
            scores[best] = 1.0 - source[0]
            fitted[best] = make("complement", source=models[source[1]]).fit(
                X_bt, y_bt, snapshot=s_bt
            )
            notes.append(
                f"{target.name}: the log has one event type ({single_event!r}), so inactivity "
                f"is the complement of {source[1]!r}: derived as 1 - p({source[1]}), not trained"
            )
        elif selection_plan is not None:
            sel_train = build(selection_plan.backtest)
            sel_eval = build([selection_plan.evaluation])
            _check_positives(sel_train, target, "selection", config.min_positives, horizon)
            snapshot_rows += _snapshot_rows(sel_eval, target.name, "selection", horizon)
            # Candidates are compared on a stratified sample: only the winner is fitted
            # on every row (issue 15: the comparison, not the final fit, is what grows).
            X_st, y_st, s_st = _split(
                _stratified_sample(sel_train, selection_rows_max, config.random_state)
            )
            del sel_train
            X_se, y_se, _ = _split(sel_eval)
            chosen = {}
            row_losses: dict[str, np.ndarray] = {}
            variants = []
            X_array = np.asarray(X_se, dtype=float)
            season_sel = {}
            # Independent fits: side by side where two fits' threads fit the cores.
            # BG/NBD inputs fitted on the users they score: the selection snapshot's.
            sel_scored = selection_plan.evaluation
            if any("bgnbd" in name for name in ranked):
                bgnbd_at(sel_scored)  # once, before the threads
            # Costliest first: two workers taking the queue in that order finish together
            # (list scheduling), not with a boosted fit left alone at the end.
            by_cost = _costliest_first(ranked)
            fitted_candidates = dict(
                zip(
                    by_cost,
                    _map_fits(
                        lambda name, t, X, y, s, make=make: make(name, t).fit(X, y, snapshot=s),
                        [(name, sel_scored, X_st, y_st, s_st) for name in by_cost],
                        n_threads,
                    ),
                    strict=True,
                )
            )
            for name in ranked:
                candidate = fitted_candidates[name]
                # The level taken from the latest training snapshot is kept only where it
                # helps out of time: some logs drift on in the same direction, and the
                # model's own extrapolation from the features is then closer.
                levels = [(name, "latest"), (f"{name}{_NO_LEVEL}", "none")]
                # A linear trend of the level across snapshots (PropensityModel's
                # level_trend) is not offered: measured on the demo logs, the slope of a
                # candidate fitted for this choice and that of the final model differed
                # tenfold, so a win here said little about the trend applied later.
                if season_checked:
                    season_sel[name] = season(candidate, selection_plan.evaluation, build=build)
                    if season_sel[name] is not None:
                        levels.append((f"{name}{_SEASON}", "season"))
                for variant, level in levels:
                    p = _variant_scores(candidate, X_array, level, season_sel.get(name))
                    chosen[variant] = _metrics(y_se, p, target.kind)
                    row_losses[variant] = _row_loss(y_se, p, target.kind).astype(np.float32)
                    variants.append(variant)
                    selection_rows += [
                        {"target": target.name, "model": variant, "metric": m, "value": v}
                        for m, v in chosen[variant].items()
                    ]
            best = min(variants, key=lambda fam: (chosen[fam][key], variants.index(fam)))
            best = _simplest_within_noise(best, variants, row_losses)
            family_sel = _parse_variant(best)[0]
            best = _keep_level(
                best, fitted_candidates, X_array, y_se, chosen, key, season_sel.get(family_sel)
            )
            # One selection snapshot says little about a season (it may fall where the
            # level is flat): the seasonal step is judged on every month it can be.
            # The residual level of the selection candidate at every snapshot one
            # horizon apart, up to the reported (evaluation) snapshot: the choice and
            # the reported interval see those up to the selection snapshot only.
            warmup = max(features_used.windows)
            step = min(config.snapshot_step_days, horizon)
            history = _residual_history(
                fitted_candidates[family_sel],
                _level_test_times(plan.evaluation, horizon, first, warmup, step),
                _season_test_times(plan.evaluation, horizon, first, warmup, step),
                horizon,
                build,
            )
            history_all = history
            seen = {t: r for t, r in history.items() if t <= selection_plan.evaluation}
            verdict = _season_verdict(seen, horizon)
            if verdict is not None:
                notes.append(f"{target.name}: {verdict.text}")
                on_history = verdict.use
                if verdict.use:
                    best = f"{family_sel}{_SEASON}"
                elif verdict.rejected and _parse_variant(best)[1] == "season":
                    # The selection snapshot's win is one draw; the history's verdict
                    # over several snapshots overrules it.
                    best = min(
                        (family_sel, f"{family_sel}{_NO_LEVEL}"), key=lambda v: chosen[v][key]
                    )
            if not season_one_snapshot and not on_history and _parse_variant(best)[1] == "season":
                best = min((family_sel, f"{family_sel}{_NO_LEVEL}"), key=lambda v: chosen[v][key])
                notes.append(
                    f"{target.name}: seasonal step not used: it won on the selection snapshot "
                    f"only, and {young_base}"
                )
            seasonal = _parse_variant(best)[1] == "season"
            # No trend rule: the selection candidate's residual level drifts with the
            # population's ageing (its tenure extrapolation), which a model refitted on
            # recent snapshots does not share; measured on a stationary seasonal test
            # log, a trend judged on that history won on 13 snapshots and then moved the
            # count level by +0.80 (predicted total 2.2 x realized, 0.96 without it).
            level_risk = _level_risk(seen, horizon, seasonal)
            final_level_risk = _level_risk(history, horizon, seasonal)
        else:
            nested_all = False
            for name in ranked:
                fitted[name] = make(name, plan.evaluation).fit(X_bt, y_bt, snapshot=s_bt)
                scores[name] = fitted[name].predict(X_ev)
            interim = {n: _metrics(y_ev, scores[n], target.kind) for n in ranked}
            best = min(ranked, key=lambda fam: (interim[fam][key], ranked.index(fam)))
            losses = {n: _row_loss(y_ev, scores[n], target.kind) for n in ranked}
            best = _simplest_within_noise(best, ranked, losses)
            notes.append(
                f"{target.name}: the log is too short to choose the model one horizon before "
                "the reported snapshot (on two or more training snapshots); the reported "
                "metrics are those the choice was made on (optimistic)"
            )
        # The winner's backtest model and its final model are independent fits of about
        # the same size, and the baselines small ones beside them: with threads to spare
        # they run side by side, the two large ones first (each fit's own calibration
        # pair then runs inline on its thread), the same models either way.
        jobs: dict[str, tuple] = {}
        if best != "complement":
            jobs["final"] = (best, X_fin, y_fin, s_fin, end)
            if best not in scores:
                jobs["backtest"] = (best, X_bt, y_bt, s_bt, plan.evaluation)
        for name in BASELINES:
            if name not in scores and name != best:
                jobs[name] = (name, X_bt, y_bt, s_bt, plan.evaluation)
        for job in jobs.values():
            if "bgnbd" in job[0]:  # fitted here once, not on the workers
                bgnbd_at(job[-1])
        fits = dict(
            zip(
                jobs,
                _map_fits(
                    lambda name, X, y, s, t, make=make: make(name, t).fit(X, y, snapshot=s),
                    list(jobs.values()),
                    n_threads,
                ),
                strict=True,
            )
        )
        for name in dict.fromkeys((best, *BASELINES)):
            if name not in scores:
                fitted[name] = fits["backtest"] if name == best else fits[name]
                if _parse_variant(name)[1] == "season":
                    shift = season(fitted[name], plan.evaluation, build=build)
                    fitted[name].set_params(level_shift=shift or 0.0)
                scores[name] = fitted[name].predict(X_ev)
        complement = None
        if target.kind == "inactivity" and best != "complement":
            match = next(
                (v for (ev, h), v in report_scores.items() if h == horizon and ev is not None),
                None,
            )
            if match is not None:
                complement = f"1-p({match[1]})"
                scores[complement] = 1.0 - match[0]
        results = {name: _metrics(y_ev, p, target.kind, report=True) for name, p in scores.items()}
        choice[target.name] = best

        rows, deciles, calib = _report(target, y_ev, scores, results, best)
        metric_rows += rows
        decile_frames += deciles
        calibration_frames += calib
        if complement is not None:
            notes.append(_churn_verdict(target.name, results, best, complement))
        if level_risk is not None and best != "complement":
            fitted[best].set_params(level_risk=level_risk[0], level_risk_moves=level_risk[1])
        total, lower, upper = fitted[best].expected_total(scores[best])
        total_rows.append(
            {
                "target": target.name,
                "predicted_total": total,
                "lower": lower,
                "upper": upper,
                "actual_total": float(np.sum(y_ev)),
            }
        )
        if segments is not None:
            segment_frames.append(_segment_table(evaluation, scores[best], segments, target.name))

        # Where the log reaches a year before the evaluation snapshot but not before the
        # selection snapshot, the seasonal step could not compete in the choice; the
        # evaluation snapshot, the latest out of time, judges it for the final model
        # (the reported model keeps the level it was chosen with, so the report stays
        # that of a choice made without the evaluation snapshot).
        final_level = best
        no_season = None
        on_evaluation_only = (
            not season_checked
            and best != "complement"
            and _parse_variant(best)[1] in ("latest", "none")
            and season_snapshots(plan.evaluation, horizon, first_event=first) is not None
        )
        if on_evaluation_only and not season_one_snapshot:
            no_season = f"no seasonal term: {young_base}"
        elif on_evaluation_only:
            reported = fitted[best]
            step = season(reported, plan.evaluation, build=build)
            if step is not None:
                # The seasonal level: the latest labeled snapshot's level moved by the step.
                latest_bt = s_bt == s_bt.max()
                latest_level = reported.level_residual(X_bt[latest_bt], y_bt[latest_bt])
                stepped = shift_level(
                    reported._predict_raw(np.asarray(X_ev, dtype=float), "none"),
                    latest_level + step,
                    target.kind,
                )
                use, text = _latest_season_verdict(
                    y_ev, scores[best], stepped, step, target.kind, horizon
                )
                notes.append(f"{target.name}: {text}")
                if use:
                    final_level = f"{_parse_variant(best)[0]}{_SEASON}"
                    seasonal_risk = _level_risk(history_all, horizon, True)
                    if seasonal_risk is not None:
                        final_level_risk = seasonal_risk
        choice[target.name] = final_level

        if best == "complement":
            models[target.name] = make("complement", source=models[source[1]]).fit(
                X_fin, y_fin, snapshot=s_fin
            )
        else:
            models[target.name] = fits["final"]
            if final_level != best and not models[target.name].relevel:
                # Fitted at its own level: the seasonal one starts from the latest.
                latest_fin = s_fin == s_fin.max()
                models[target.name].relevel_to(X_fin[latest_fin], y_fin[latest_fin])
            if _parse_variant(final_level)[1] == "season":
                shift = season(models[target.name], end, build=build)
                models[target.name].set_params(level_shift=shift or 0.0)
        if final_level_risk is not None and best != "complement":
            models[target.name].set_params(
                level_risk=final_level_risk[0], level_risk_moves=final_level_risk[1]
            )
        if best != "complement":
            notes.append(
                _level_note(
                    target.name,
                    final_level,
                    models[target.name],
                    season_checked,
                    horizon,
                    on_history,
                    on_evaluation=final_level != best,
                    no_season=no_season,
                )
            )
        if target.kind == "event":
            report_scores.setdefault((target.event, horizon), (scores[best], target.name))

    evaluation_result = PropensityEvaluation(
        metrics=pd.DataFrame(metric_rows, columns=["target", "model", "metric", "value"]),
        deciles=pd.concat(decile_frames, ignore_index=True),
        calibration=(
            pd.concat(calibration_frames, ignore_index=True)
            if calibration_frames
            else pd.DataFrame(columns=_CALIBRATION_COLUMNS)
        ),
        snapshots=pd.DataFrame(snapshot_rows),
        segments=pd.concat(segment_frames, ignore_index=True) if segment_frames else None,
        selection=pd.DataFrame(selection_rows, columns=["target", "model", "metric", "value"]),
        totals=pd.DataFrame(total_rows),
        notes=tuple(notes),
        nested=nested_all,
    )
    order = [t.name for t in config.targets]
    return PropensityResult(
        models={name: models[name] for name in order},
        evaluation=evaluation_result,
        choice={name: choice[name] for name in order},
        extra_features={t: cache[t] for t in extra},
    )


def _map_fits(fit: Callable[..., Any], jobs: list[tuple], n_threads: int | None) -> list[Any]:
    """Run ``fit(*job)`` for every job: side by side when twice ``n_threads`` fits the cores.

    With ``n_threads=None`` a fit may use every core, so the jobs run one after the other.
    """
    if n_threads is not None and 2 * n_threads <= usable_cores():
        # BLAS threads are one process-wide setting, which each fit's threadpool_limits
        # sets and restores: held here, the order in which the fits end cannot leave
        # the caller's later BLAS work on another thread count.
        with threadpool_limits(limits=n_threads, user_api="blas"):
            return thread_map(fit, *zip(*jobs, strict=True)) if jobs else []
    return [fit(*job) for job in jobs]


# Relative fitting cost of the families (CPU seconds of one candidate at 100k selection
# rows, benchmarks/train.py): boosted trees about twice a logistic model, BG/NBD inputs
# a little more, the BG/NBD and score baselines next to nothing.
_FIT_COST = {"hgb": 20, "logistic": 9, "bgnbd": 1, "rfm": 1, "recency": 1}


def _costliest_first(names: Sequence[str]) -> list[str]:
    """``names`` ordered by expected fitting cost, costliest first (ties keep their order).

    Examples
    --------
    >>> _costliest_first(["logistic", "hgb", "logistic+bgnbd", "hgb+bgnbd", "bgnbd"])
    ['hgb+bgnbd', 'hgb', 'logistic+bgnbd', 'logistic', 'bgnbd']
    """

    def cost(name: str) -> int:
        family, _, variant = _parse_variant(name)[0].partition("+")
        return _FIT_COST.get(family, 1) + (1 if variant == "bgnbd" else 0)

    return sorted(names, key=lambda name: -cost(name))


def _planned_snapshots(
    targets: Sequence[TargetConfig],
    config: PropensityConfig,
    end: dt.datetime,
    first: dt.datetime,
    features_used: FeatureConfig,
) -> list[dt.datetime]:
    """Every training, evaluation, selection and level-history snapshot of the targets' plans.

    Plans that cannot be laid out are skipped here: :func:`fit_propensity` raises
    their error where it lays them out itself.
    """
    times: list[dt.datetime] = []
    for target in targets:
        horizon = target.horizon_days or config.horizon_days
        try:
            plan = plan_snapshots(
                end, horizon, config.n_snapshots, config.snapshot_step_days, first_event=first
            )
            times += [*plan.backtest, plan.evaluation, *plan.final]
            selection = _calibrated_out_of_time(
                plan_snapshots(
                    plan.evaluation, horizon, config.n_snapshots, config.snapshot_step_days,
                    first_event=first,
                ),
                config.n_snapshots,
            )  # fmt: skip
            if selection is not None:
                times += [*selection.backtest, selection.evaluation]
        except InsufficientDataError:
            continue
        # The past snapshots the level rules are judged on (fit_propensity's history).
        warmup = max(features_used.windows)
        step = min(config.snapshot_step_days, horizon)
        times += _history_needed(
            _level_test_times(plan.evaluation, horizon, first, warmup, step),
            _season_test_times(plan.evaluation, horizon, first, warmup, step),
            horizon,
        )
        # A seasonal level's step into the scored period (used when that level is chosen),
        # and into the evaluation snapshot's period (where the step is judged on it).
        times += list(season_snapshots(end, horizon, first_event=first) or ())
        times += list(season_snapshots(plan.evaluation, horizon, first_event=first) or ())
    return list(dict.fromkeys(times))


def _calibrated_out_of_time(plan: SnapshotPlan | None, n_snapshots: int) -> SnapshotPlan | None:
    """Return the selection plan when its candidates' calibration can be fitted out of time.

    With one training snapshot (a long horizon on a short log: at 90 days on a one-year
    log, the log's first days) every candidate is calibrated by cross-validation on
    that snapshot, and the selection's log loss then rewards a model that says little
    over one whose calibration did not survive the year's first weeks (measured: a
    boosted model with AUC 0.51 beat BG/NBD with AUC 0.69 on a log drawn from BG/NBD).
    None then, when the plan asks for two or more snapshots: the choice is made on the
    evaluation snapshot.

    Examples
    --------
    >>> import datetime as dt
    >>> plan = plan_snapshots("2024-07-01", 90, 3, 30, first_event=dt.datetime(2023, 11, 20))
    >>> len(plan.backtest), _calibrated_out_of_time(plan, 3) is plan
    (2, True)
    >>> short = plan_snapshots("2024-07-01", 90, 3, 30, first_event=dt.datetime(2023, 12, 20))
    >>> len(short.backtest), _calibrated_out_of_time(short, 3) is None
    (1, True)
    >>> _calibrated_out_of_time(short, 1) is short  # one snapshot asked for: as planned
    True
    """
    if plan is None or len(plan.backtest) < min(2, n_snapshots):
        return None
    return plan


def _parse_variant(name: str) -> tuple[str, str]:
    """Split a candidate name into its family and level: latest, none, trend or season.

    Examples
    --------
    >>> _parse_variant("hgb+bgnbd-trend"), _parse_variant("logistic")
    (('hgb+bgnbd', 'trend'), ('logistic', 'latest'))
    """
    for suffix, level in ((_NO_LEVEL, "none"), (_TREND, "trend"), (_SEASON, "season")):
        if name.endswith(suffix):
            return name.removesuffix(suffix), level
    return name, "latest"


def _variant_scores(
    model: PropensityModel, X: np.ndarray, level: str, season: float | None
) -> np.ndarray:
    """Scores of a fitted candidate at one level (``season``: latest plus the seasonal step)."""
    if level == "season":
        return shift_level(model._predict_raw(X, "latest"), season or 0.0, model.kind)
    return model._predict_raw(X, level)


def _row_loss(y: np.ndarray, p: np.ndarray, kind: str) -> np.ndarray:
    """Per-row log loss (Poisson deviance for counts): the terms of the selection metric."""
    if kind == "count":
        mu = np.clip(p, 1e-9, None)
        ratio = np.where(y > 0, y / mu, 1.0)
        return 2.0 * (y * np.log(ratio) - (y - mu))
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


# Past snapshots on which the level rules are judged: each costs a feature build (two
# more for the seasonal step), so the history is bounded.
_LEVEL_HISTORY = 8


# Families from the fewest fitted parameters to the most: between candidates whose
# selection losses differ by less than noise, the simpler one is kept.
_SIMPLICITY: tuple[str, ...] = (
    "recency",
    "rfm",
    "bgnbd",
    "logistic",
    "logistic+bgnbd",
    "hgb",
    "hgb+bgnbd",
)


def _simplest_within_noise(best: str, variants: Sequence[str], losses: dict) -> str:
    """Return the variant of the simplest family whose loss is within noise of ``best``'s.

    A variant is within noise when its mean per-row loss on the selection snapshot
    exceeds the best one's by at most one standard error of the paired difference (the
    one-standard-error rule, as for :func:`_keep_level`); among those of the simplest
    family (:data:`_SIMPLICITY`), the lowest loss wins. On a plain purchase log a
    feature model that only ties BG/NBD is noise fitted on top of it.

    Examples
    --------
    >>> base = np.array([0.5, 0.2, 0.9, 0.1])
    >>> losses = {"hgb": base, "bgnbd": base + [0.01, -0.01, 0.02, -0.01], "logistic": base + 1}
    >>> _simplest_within_noise("hgb", ["hgb", "bgnbd", "logistic"], losses)
    'bgnbd'
    """
    reference = np.asarray(losses[best], dtype=float)
    close = []
    for variant in variants:
        diff = np.asarray(losses[variant], dtype=float) - reference
        se = float(np.std(diff, ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
        if float(np.mean(diff)) <= se:
            close.append(variant)

    def rank(variant: str) -> int:
        family = _parse_variant(variant)[0]
        return _SIMPLICITY.index(family) if family in _SIMPLICITY else len(_SIMPLICITY)

    simplest = min(rank(v) for v in close)
    pool = [v for v in close if rank(v) == simplest]
    return min(pool, key=lambda v: (float(np.mean(losses[v])), list(variants).index(v)))


def _keep_level(
    best: str,
    candidates: dict[str, PropensityModel],
    X: np.ndarray,
    y: np.ndarray,
    results: dict[str, dict[str, float]],
    key: str,
    season: float | None,
) -> str:
    """Keep a trend or seasonal level only when it beats the plain levels beyond noise.

    Those levels add an estimate (a slope, a seasonal step) to the model; a win smaller
    than one standard error of the paired per-row difference on the selection snapshot
    is not evidence, and the better of the latest-snapshot level and none is kept
    instead (the one-standard-error rule).
    """
    family, level = _parse_variant(best)
    if level not in ("trend", "season"):
        return best
    plain = min((family, f"{family}{_NO_LEVEL}"), key=lambda v: results[v][key])
    model = candidates[family]
    kind = model.kind
    gain = _row_loss(y, _variant_scores(model, X, _parse_variant(plain)[1], season), kind)
    gain = gain - _row_loss(y, _variant_scores(model, X, level, season), kind)
    standard_error = float(np.std(gain, ddof=1) / np.sqrt(gain.size)) if gain.size > 1 else 0.0
    return best if float(np.mean(gain)) > standard_error else plain


def _season_test_times(
    latest: dt.datetime,
    horizon: int,
    first: dt.datetime,
    warmup_days: int,
    step_days: int | None = None,
    most: int = _LEVEL_HISTORY,
) -> list[dt.datetime]:
    """Snapshots (``latest``, ``step_days`` earlier, ...) whose seasonal step can be measured.

    A snapshot ``t`` qualifies when the log reaches ``warmup_days`` (the longest
    feature window) before ``t - h - P`` (``P`` = :data:`SEASON_DAYS`): the step
    ``t - h -> t`` and the same step a year earlier are then both labeled by
    ``latest + h``, on features that see their whole windows (in the log's first
    weeks every user is new, and the level moves for that reason alone). At most
    ``most`` snapshots, latest first.

    Examples
    --------
    >>> import datetime as dt
    >>> times = _season_test_times(dt.datetime(2025, 6, 1), 30, dt.datetime(2024, 1, 1), 30)
    >>> [t.date().isoformat() for t in times]
    ['2025-06-01', '2025-05-02', '2025-04-02', '2025-03-03']
    """
    since = to_timestamp(first) + dt.timedelta(days=warmup_days)
    return _snapshots_back(
        latest,
        step_days or horizon,
        most,
        lambda t: season_snapshots(t, horizon, first_event=since) is not None,
    )


def _level_test_times(
    latest: dt.datetime,
    horizon: int,
    first: dt.datetime,
    warmup_days: int,
    step_days: int | None = None,
    most: int = _LEVEL_HISTORY,
) -> list[dt.datetime]:
    """Snapshots (``latest``, ``step_days`` earlier, ...) whose level move can be measured.

    ``step_days`` defaults to the horizon (moves that do not overlap); the snapshot
    step of the training snapshots (shorter than a long horizon) gives more moves,
    which overlap.

    A snapshot ``t`` qualifies when ``t - h`` falls ``warmup_days`` (the longest
    feature window) after the log's first event. At most ``most``, latest first.

    Examples
    --------
    >>> import datetime as dt
    >>> times = _level_test_times(dt.datetime(2024, 6, 1), 30, dt.datetime(2024, 1, 1), 90)
    >>> [t.date().isoformat() for t in times]
    ['2024-06-01', '2024-05-02']
    """
    since = to_timestamp(first) + dt.timedelta(days=warmup_days)
    return _snapshots_back(
        latest, step_days or horizon, most, lambda t: t - dt.timedelta(days=horizon) >= since
    )


def _snapshots_back(
    latest: dt.datetime, step_days: int, most: int, qualifies: Callable[[dt.datetime], bool]
) -> list[dt.datetime]:
    """``latest``, ``step_days`` earlier, ... while they qualify; at most ``most``."""
    times: list[dt.datetime] = []
    t = to_timestamp(latest)
    while len(times) < most and qualifies(t):
        times.append(t)
        t = t - dt.timedelta(days=step_days)
    return times


def _history_needed(
    times: Sequence[dt.datetime], season_times: Sequence[dt.datetime], horizon: int
) -> list[dt.datetime]:
    """Snapshots whose levels the moves into ``times`` (and a year earlier) compare, sorted.

    Examples
    --------
    >>> import datetime as dt
    >>> days = _history_needed([dt.datetime(2025, 3, 1)], [], 30)
    >>> [d.date().isoformat() for d in days]
    ['2025-01-30', '2025-03-01']
    """
    step = dt.timedelta(days=horizon)
    needed = {when for t in times for when in (t, t - step)}
    for t in season_times:
        year, year_before = season_snapshots(t, horizon)
        needed |= {t, t - step, year, year_before}
    return sorted(needed)


def _residual_history(
    model: PropensityModel,
    times: Sequence[dt.datetime],
    season_times: Sequence[dt.datetime],
    horizon: int,
    build,
) -> dict[dt.datetime, float]:
    """Level residual of ``model`` at every snapshot the level moves at ``times`` need.

    The move into ``t`` is measured from ``t - h``; for ``season_times`` the same
    move a year earlier too.
    """
    residuals = {}
    for when in _history_needed(times, season_times, horizon):
        X, y, _ = _split(build([when]))
        # A snapshot without positives (or negatives) has no finite level: left out.
        if len(y) and y.mean() > 0 and (model.kind == "count" or y.mean() < 1):
            residual = model.level_residual(X, y)
            if np.isfinite(residual):
                residuals[when] = residual
    return residuals


def _season_verdict(residuals: dict[dt.datetime, float], horizon: int) -> LevelVerdict | None:
    """Whether the seasonal step predicts the level's monthly moves better than none.

    At every test snapshot ``t`` (from :func:`_season_test_times`) the level of the
    scored period comes from the latest labeled snapshot ``t - h``; its error is the
    move of the model's residual level ``r(t) - r(t - h)``. The seasonal step adds the
    move a year earlier, ``r(t - P) - r(t - h - P)``. The step is used when it lowers
    the mean squared error by more than one standard error of the paired difference
    (the one-standard-error rule, as for :func:`_keep_level`), on at least three
    snapshots. None when no snapshot can be tested.

    Examples
    --------
    >>> import datetime as dt
    >>> day = lambda n: dt.datetime(2024, 1, 1) + dt.timedelta(days=n)
    >>> season = lambda n: 0.5 * np.cos(2 * np.pi * n / 365)
    >>> _season_verdict({day(n): season(n) for n in range(0, 800, 5)}, 30)[0]
    True
    >>> noise = np.random.default_rng(0).normal(0.0, 0.1, 160)
    >>> _season_verdict({day(5 * i): r for i, r in enumerate(noise)}, 30)[0]
    False
    >>> _season_verdict({day(n): 0.0 for n in range(0, 300, 5)}, 30) is None
    True
    """
    tested = []
    period = dt.timedelta(days=SEASON_DAYS)
    step = dt.timedelta(days=horizon)
    for t in sorted(residuals, reverse=True):
        keys = (t, t - step, t - period, t - step - period)
        if all(k in residuals for k in keys):
            move = residuals[t] - residuals[t - step]
            tested.append((move, move - (residuals[t - period] - residuals[t - step - period])))
    if not tested:
        return None
    moves = np.array(tested)
    gain = moves[:, 0] ** 2 - moves[:, 1] ** 2
    standard_error = float(np.std(gain, ddof=1) / np.sqrt(gain.size)) if gain.size > 1 else np.inf
    use = gain.size >= _VERDICT_MIN_TESTS and float(np.mean(gain)) > standard_error
    rms = np.sqrt(np.mean(moves**2, axis=0))
    text = (
        f"seasonal step {'used' if use else 'not used'}: over {gain.size} past snapshot(s), "
        f"the level's move into the next {horizon} days had RMS {rms[0]:.3f} (link scale) "
        f"from the latest labeled level, {rms[1]:.3f} with the step a year earlier"
    )
    return LevelVerdict(use, text, int(gain.size))


def _latest_season_verdict(
    y: np.ndarray,
    plain: np.ndarray,
    seasonal: np.ndarray,
    step: float,
    kind: str,
    horizon: int,
) -> tuple[bool, str]:
    """Whether the seasonal level beats the chosen one on the evaluation snapshot.

    ``plain`` are the reported model's predictions on the evaluation snapshot at the
    level it was chosen with (the latest labeled one, or its own), ``seasonal`` at the
    latest labeled level moved by ``step``, the move of its residual level a year
    earlier (:func:`segmentkit.models.labels.season_snapshots`). The seasonal level is
    used when it lowers the per-row loss (log loss, Poisson deviance for counts) by
    more than one standard error of the paired difference, the rule that judges a
    level on the selection snapshot (:func:`_keep_level`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p, risen = np.full(4000, 0.2), np.full(4000, 0.4)
    >>> y = (rng.random(4000) < 0.4).astype(float)  # the level rose, as a year earlier
    >>> _latest_season_verdict(y, p, risen, 0.98, "event", 90)[0]
    True
    >>> flat = (rng.random(4000) < 0.2).astype(float)
    >>> _latest_season_verdict(flat, p, risen, 0.98, "event", 90)[0]
    False
    """
    plain_loss = _row_loss(y, plain, kind)
    step_loss = _row_loss(y, seasonal, kind)
    gain = plain_loss - step_loss
    standard_error = float(np.std(gain, ddof=1) / np.sqrt(gain.size)) if gain.size > 1 else np.inf
    use = float(np.mean(gain)) > standard_error
    loss = "Poisson deviance" if kind == "count" else "log loss"
    text = (
        f"seasonal step {'used' if use else 'not used'} by the final model: the selection "
        f"snapshot is too early to measure it; on the evaluation snapshot the latest labeled "
        f"level moved by the step a year earlier ({step:+.3f} on the link scale over "
        f"{horizon} days) gave {loss} {float(np.mean(step_loss)):.4f} against "
        f"{float(np.mean(plain_loss)):.4f} at the chosen level"
    )
    return use, text


def _level_risk(
    residuals: dict[dt.datetime, float], horizon: int, seasonal: bool
) -> tuple[float, int] | None:
    """RMS move of the level beyond the features over one horizon, and how many moves.

    The error of the level rule in use across the log's history: the move of the
    model's residual level from ``t - h`` to ``t``, less the same move a year earlier
    when the level takes the seasonal step. It sizes the level part of the expected
    total's interval (:meth:`PropensityModel.expected_total`); the training snapshots
    alone (two or three moves) understate it where the level moves with the season.
    The second value, the number of moves, is the interval's Student t degrees of
    freedom (an RMS of few moves is a noisy scale). Where snapshots closer than one
    horizon make the moves overlap (a 90-day horizon, a 30-day step) their effective
    number is smaller (two moves 30 days apart: 1.4 for a level moving by independent
    steps); it is not used: measured on the benchmark's logs at 90 days, it made count
    intervals up to 12 times the total wide where the plain number already covered.
    None with fewer than two moves measured.

    Examples
    --------
    >>> import datetime as dt
    >>> day = lambda n: dt.datetime(2024, 1, 1) + dt.timedelta(days=n)
    >>> risk, moves = _level_risk({day(0): 0.0, day(30): 0.1, day(60): -0.1}, 30, False)
    >>> round(risk, 4), moves
    (0.1581, 2)
    """
    step = dt.timedelta(days=horizon)
    period = dt.timedelta(days=SEASON_DAYS)
    moves = []
    for t in residuals:
        if t - step not in residuals:
            continue
        move = residuals[t] - residuals[t - step]
        if seasonal:
            if t - period not in residuals or t - step - period not in residuals:
                continue
            move -= residuals[t - period] - residuals[t - step - period]
        moves.append(move)
    if len(moves) < 2:
        return None
    return float(np.sqrt(np.mean(np.square(moves)))), len(moves)


def _level_note(
    name: str,
    best: str,
    model: PropensityModel,
    season_checked: bool,
    horizon: int,
    on_history: bool = True,
    on_evaluation: bool = False,
    no_season: str | None = None,
) -> str:
    """Say how the chosen model sets its level for the scored period, and why not by season.

    ``no_season`` says why no seasonal term was offered when the log is long enough for
    one (default: the log is too short to check one out of time).
    """
    _, level = _parse_variant(best)
    how = {
        "none": "the model's own level (the latest snapshot's level lost out of time)",
        "latest": "the level of the latest labeled snapshot",
        "trend": (
            "the latest labeled snapshot's level moved on by its trend across snapshots "
            f"({model.level_trend_ * horizon:+.3f} on the link scale over {horizon} days)"
        ),
        "season": (
            "the latest labeled snapshot's level moved by the seasonal step of the model's "
            f"residual level a year earlier ({model.level_shift:+.3f} on the link scale)"
        ),
    }[level]
    where = (
        "every past snapshot where the step can be measured"
        if level == "season" and on_history
        else "the evaluation snapshot (the reported model keeps the latest labeled level)"
        if on_evaluation
        else "the selection snapshot"
    )
    text = f"{name}: level of the scored period from {how}, chosen on {where}"
    if not season_checked and not on_evaluation:
        text += "; " + (
            no_season
            or f"no seasonal term: a year-over-year index checked out of time needs the log "
            f"to reach {SEASON_DAYS} + 3 x {horizon} days before as_of"
        )
    return text


def _stratified_sample(frame: pd.DataFrame, max_rows: int, seed: int | None) -> pd.DataFrame:
    """Return about ``max_rows`` rows, the same share of every (snapshot, positive) group.

    Every group keeps at least one row.

    Examples
    --------
    >>> frame = pd.DataFrame({"snapshot": [1] * 12 + [2] * 8, "label": [0, 1] * 10})
    >>> sample = _stratified_sample(frame, 10, seed=0)
    >>> len(sample), sample.groupby(["snapshot", "label"]).size().tolist()
    (10, [3, 3, 2, 2])
    """
    if len(frame) <= max_rows:
        return frame
    rng = np.random.default_rng(seed)
    groups = frame.groupby(["snapshot", frame["label"] > 0], sort=True).indices
    share = max_rows / len(frame)
    keep = [
        rng.choice(rows, size=max(1, int(rows.size * share)), replace=False)
        for rows in groups.values()
    ]
    return frame.iloc[np.sort(np.concatenate(keep))]


def check_target_events(log: EventLog, targets: Sequence[TargetConfig]) -> None:
    """Refuse a target whose event never occurs in the log: every label would be 0.

    Without this, a log calling its purchases ``order`` failed later on "0 positives in
    the backtest snapshots", which sends people to the log's length, not to the name.
    """
    names = sorted(map(str, distinct_event_names(log)))
    for target in targets:
        if target.kind not in ("event", "count"):
            continue
        if target.event in names:
            _check_one_spelling(log, target, other_spellings(str(target.event), names))
            continue
        # The same name in other capitals, blanks or separators ('Add-To-Cart').
        respelled = respelled_names([str(target.event)], names).get(str(target.event))
        hint = (
            f"; did you mean {respelled!r}? (event names must match exactly)" if respelled else ""
        )
        raise ConfigError(
            f"propensity.targets.{target.name}: event {target.event!r} does not occur in the "
            f"log, so every label would be 0; the log's events are {quoted_names(names, 20)}"
            f"{hint}. Set the target's `event` in params.yaml to the log's name for it"
        )


def _check_one_spelling(log: EventLog, target: TargetConfig, others: Sequence[str]) -> None:
    """Refuse a target event that the log also spells otherwise (two sources merged).

    Labels count the exact name only: with ``Purchase`` beside ``purchase`` (a tracker
    renamed, two exports concatenated) part of the purchases would be labelled 0 and
    the model would learn a wrong rate without a word.
    """
    if not others:
        return
    spelled = [str(target.event), *others]
    rows = dict(
        log.con.execute(
            f"SELECT event, count(*) FROM {log.table} WHERE event IN "
            f"({', '.join(sql_literal(name) for name in spelled)}) GROUP BY ALL"
        ).fetchall()
    )
    counted = ", ".join(f"{name!r} {rows.get(name, 0):,}" for name in spelled)
    raise ConfigError(
        f"propensity.targets.{target.name}: the log spells event {target.event!r} in "
        f"{len(spelled)} ways (rows: {counted}); labels would count only {target.event!r}. "
        "Give the log one spelling (e.g. lower-case its event column)"
    )


def _single_event(log: EventLog, as_of: dt.datetime) -> str | None:
    """Return the event name when the log holds one event type before ``as_of``, else None."""
    before = sql_timestamp(as_of)
    names = log.con.execute(
        f"SELECT DISTINCT event FROM {log.table} WHERE timestamp < {before} LIMIT 2"
    ).fetchall()
    return str(names[0][0]) if len(names) == 1 else None


def _churn_verdict(name: str, results: dict, best: str, complement: str) -> str:
    """Say whether the inactivity model beats 1 - p(purchase) and recency out of time."""
    own = results[best]
    rivals = {m: results[m] for m in (complement, "recency") if m in results}
    beaten = [
        m for m, r in rivals.items()
        if own["roc_auc"] <= r["roc_auc"] or own["log_loss"] >= r["log_loss"]
    ]  # fmt: skip
    figures = ", ".join(
        f"{m} AUC {r['roc_auc']:.3f} / log loss {r['log_loss']:.3f}" for m, r in rivals.items()
    )
    head = (
        f"{name}: the inactivity model (AUC {own['roc_auc']:.3f} / log loss {own['log_loss']:.3f})"
    )
    if beaten:
        return f"{head} does NOT beat {', '.join(beaten)} out of time ({figures})"
    return f"{head} beats {', '.join(rivals)} out of time ({figures})"


def _report(
    target: TargetConfig,
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    results: dict[str, dict[str, float]],
    best: str,
) -> tuple[list[dict], list[pd.DataFrame], list[pd.DataFrame]]:
    """Return metric rows, decile tables and calibration tables of one target."""
    rows, deciles, calibration = [], [], []
    for family in ("model", *results):
        source = best if family == "model" else family
        rows += [
            {"target": target.name, "model": family, "metric": metric, "value": value}
            for metric, value in results[source].items()
        ]
        tables = [(_decile_table(y, scores[source]), deciles)]
        if target.kind != "count":
            tables.append((_calibration_table(y, scores[source]), calibration))
        for table, bucket in tables:
            table.insert(0, "model", family)
            table.insert(0, "target", target.name)
            bucket.append(table)
    return rows, deciles, calibration


def _segment_table(
    evaluation: pd.DataFrame, scores: np.ndarray, segments: pd.DataFrame, name: str
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"user_id": evaluation["user_id"], "observed": evaluation["label"], "p": scores}
    )
    labels = segments[["user_id", "segment"]].drop_duplicates("user_id")
    joined = frame.merge(labels, on="user_id", how="inner")
    table = joined.groupby("segment", sort=True, observed=True).agg(
        users=("p", "size"), observed=("observed", "mean"), mean_predicted=("p", "mean")
    )
    table = table.reset_index()
    table.insert(0, "target", name)
    return table
