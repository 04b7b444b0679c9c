"""The calibrated drift checks of a refresh: what they need from the log, and the verdict.

:func:`calibrated_checks` builds the three feature tables the checks compare (the
champion's snapshot recomputed, the same distance before it, and now), counts
events per type in the two intervals, runs the pure tests of
:mod:`segmentkit.drift.verdict` and returns their results. Feature and segment
share tests that fire are run again on the *established* users (tenure of at
least one interval at each snapshot) to tell a change that came with newcomers
from one in the source (:func:`~segmentkit.drift.verdict.newcomer_attribution`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from segmentkit.config import DriftConfig, FeatureConfig
from segmentkit.drift._common import DriftResult
from segmentkit.drift.reference import FeatureReference, build_feature_reference
from segmentkit.drift.verdict import (
    aged_psi_test,
    event_mix_psi,
    event_mix_tests,
    history_test,
    new_behaviour_test,
    newcomer_attribution,
    newcomer_intake_test,
    nonzero_psi_test,
    nonzero_shift_test,
    segment_share_tests,
)
from segmentkit.features import build_features

__all__ = ["CalibratedChecks", "calibrated_checks", "event_counts"]

#: Column telling established users (tenure of at least one interval) from newcomers.
TENURE = "tenure_days"


@dataclass(frozen=True)
class CalibratedChecks:
    """Results of the calibrated checks and the facts they were computed from."""

    results: tuple[DriftResult, ...]
    interval_days: int
    baseline_as_of: dt.datetime | None
    event_mix_psi: float
    n_then: int
    n_baseline: int


def event_counts(log: Any, start: dt.datetime, end: dt.datetime) -> dict[str, int]:
    """Events per type with ``start <= timestamp < end`` (an aggregate query on the clean log)."""
    rows = log.con.execute(
        f"SELECT CAST(event AS VARCHAR), count(*) FROM {log.table} "
        "WHERE timestamp >= ? AND timestamp < ? GROUP BY 1",
        [start, end],
    ).fetchall()
    return {str(event): int(count) for event, count in rows}


def _column(frame: pd.DataFrame | None, name: str) -> np.ndarray | None:
    return None if frame is None else frame[name].to_numpy(dtype=float)


def _feature_tests(
    reference: FeatureReference,
    then: np.ndarray,
    now: np.ndarray,
    baseline: np.ndarray | None,
    config: DriftConfig,
) -> list[DriftResult]:
    """Run the value tests of one feature: PSI beyond ageing, and among non-zero values.

    Tenure is reported without a status: users already there age by exactly the
    interval, and arrivals have tests of their own (newcomer intake, new behaviour),
    so its move beyond ageing says nothing more. Where one cohort's tenure moves past
    every bin of the reference, its PSI compares two shifted copies of one shape:
    CDNOW's log refreshed a quarter on gave PSI 8.39 against 8.27 from ageing alone,
    a WARN on nothing.
    """
    name = reference.name
    if name == TENURE:
        return [aged_psi_test(reference, now, baseline, None, None)]
    results = [aged_psi_test(reference, now, baseline, config.psi_warn, config.psi_drift)]
    nonzero = nonzero_psi_test(
        name,
        then,
        now,
        baseline,
        config.psi_warn,
        config.psi_drift,
        n_bins=config.n_bins,
        min_nonzero=config.nonzero_min_users,
    )
    shift = nonzero_shift_test(
        name,
        then,
        now,
        baseline,
        math.log(config.value_shift_warn),
        math.log(config.value_shift_drift),
        z_warn=config.value_shift_z_warn,
        z_drift=config.value_shift_z_drift,
        min_nonzero=config.nonzero_min_users,
    )
    return results + [r for r in (nonzero, shift) if r is not None]


def _established(frame: pd.DataFrame | None, days: int) -> pd.DataFrame | None:
    """Users with at least ``days`` of tenure (None without a tenure column or a frame)."""
    if frame is None or TENURE not in frame.columns or days <= 0:
        return None
    return frame[frame[TENURE].to_numpy(dtype=float) >= days]


def _attributed(
    results: list[DriftResult], established: list[DriftResult], max_share: float
) -> list[DriftResult]:
    by_key = {(r.test, r.subject): r for r in established}
    return [newcomer_attribution(r, by_key.get((r.test, r.subject)), max_share) for r in results]


def _with_log_start(
    history: dict[str, DriftResult], log: Any, champion_first_event: dt.datetime | None
) -> dict[str, DriftResult]:
    """Add where both logs start to the history tests that fired, when today's starts later.

    A rolling export ("the last 12 months") drops the oldest events: every feature
    counted from a user's first event, and every user seen only then, differs at the
    champion's snapshot. The history tests catch it; this names the cause.
    """
    first = log.first_event
    if champion_first_event is None or first is None:
        return history
    first, champion_first = pd.Timestamp(first), pd.Timestamp(champion_first_event)
    if first <= champion_first:
        return history
    starts = {
        "log_first_event": first.isoformat(),
        "champion_first_event": champion_first.isoformat(),
    }
    return {
        name: r if r.status == "OK" else replace(r, details={**r.details, **starts})
        for name, r in history.items()
    }


def baseline_snapshot(champion_as_of: dt.datetime, as_of: dt.datetime) -> dt.datetime | None:
    """Snapshot one refresh interval before the champion's: the "no change" baseline.

    The calibrated checks compare the move from it to ``champion_as_of`` with the
    move from ``champion_as_of`` to ``as_of`` (ageing alone moves both alike).

    Examples
    --------
    >>> baseline_snapshot(dt.datetime(2024, 6, 1), dt.datetime(2024, 7, 1))
    datetime.datetime(2024, 5, 2, 0, 0)
    >>> baseline_snapshot(dt.datetime(2024, 6, 1), dt.datetime(2024, 6, 1)) is None
    True
    """
    interval = as_of - champion_as_of
    days = max(round(interval / dt.timedelta(days=1)), 0)
    return champion_as_of - interval if days > 0 else None


def calibrated_checks(
    *,
    log: Any,
    segmenter: Any,
    reference: Mapping[str, FeatureReference],
    reference_shares: Mapping[str, float],
    segment_names: Sequence[str],
    feature_config: FeatureConfig,
    champion_as_of: dt.datetime,
    as_of: dt.datetime,
    current: pd.DataFrame,
    then: pd.DataFrame | None = None,
    config: DriftConfig | None = None,
    baseline: pd.DataFrame | None = None,
    champion_first_event: dt.datetime | None = None,
) -> CalibratedChecks:
    """Run every calibrated check of a refresh.

    Parameters
    ----------
    log : EventLog
        The clean log covering both snapshots.
    segmenter : Segmenter
        The champion's segmenter.
    reference, reference_shares, segment_names
        What the champion stored at training.
    feature_config : FeatureConfig
        The champion's feature settings.
    champion_as_of, as_of : datetime
        The two snapshots; the interval between them is also the ageing distance.
    current : pandas.DataFrame
        Features now (``user_id`` and the champion's features).
    then : pandas.DataFrame, optional
        Features at ``champion_as_of`` recomputed from ``log`` (built if not given).
    config : DriftConfig, optional
        Thresholds (``params.yaml`` → ``drift``).
    baseline : pandas.DataFrame, optional
        Features at :func:`baseline_snapshot` recomputed from ``log`` (built if not
        given).
    champion_first_event : datetime, optional
        First event of the champion's training log: where today's log starts later
        (a rolling export), the history tests that fire say so.

    Returns
    -------
    CalibratedChecks
    """
    config = config or DriftConfig()
    names = list(segmenter.feature_names_in_)
    interval = as_of - champion_as_of
    days = max(round(interval / dt.timedelta(days=1)), 0)
    if then is None:
        then = build_features(log, champion_as_of, feature_config)
    baseline_as_of = baseline_snapshot(champion_as_of, as_of)
    table, baseline = baseline, None
    if baseline_as_of is not None:
        if table is None:
            table = build_features(log, baseline_as_of, feature_config)
        if len(table) >= config.min_baseline_users:
            baseline = table
        else:
            baseline_as_of = None
    # The same comparisons on users already there one interval before each snapshot.
    then_old, now_old = _established(then, days), _established(current, days)
    base_old = _established(baseline, days)
    if base_old is not None and len(base_old) < config.min_baseline_users:
        base_old = None
    features = [name for name in reference if name in current.columns]
    history = {
        name: history_test(reference[name], _column(then, name), config.psi_warn, config.psi_drift)
        for name in features
    }
    history = _with_log_start(history, log, champion_first_event)
    # Telling newcomers from users already there compares both on the champion's
    # snapshot recomputed from today's log: only meaningful when that past is the
    # one the champion stored (a rewritten past is a source problem by itself).
    compare_old = (
        then_old is not None
        and now_old is not None
        and min(len(then_old), len(now_old)) >= config.min_baseline_users
        and all(r.status == "OK" for r in history.values())
    )
    results: list[DriftResult] = []
    for name in features:
        ref = reference[name]
        found = _feature_tests(
            ref, _column(then, name), _column(current, name), _column(baseline, name), config
        )
        if compare_old and any(r.status != "OK" for r in found):
            old_ref = build_feature_reference(then_old[[name]], n_bins=config.n_bins)[name]
            found = _attributed(
                found,
                _feature_tests(
                    old_ref,
                    _column(then_old, name),
                    _column(now_old, name),
                    _column(base_old, name),
                    config,
                ),
                config.newcomer_max_established_share,
            )
        results += [*found, history[name]]
    n_segments = segmenter.n_segments_
    shares = [float(reference_shares.get(str(i), 0.0)) for i in range(n_segments)]
    then_labels = segmenter.predict(then[names]) if len(then) else None
    baseline_labels = None if baseline is None else segmenter.predict(baseline[names])

    def share_tests(
        reference_mix: Sequence[float], now: Any, before: Any, base: Any
    ) -> list[DriftResult]:
        return segment_share_tests(
            reference_mix,
            now,
            segment_names,
            then_labels=before if base is not None else None,
            baseline_labels=base,
            min_share=config.share_min,
            gone_share=config.share_gone,
            warn_ratio=config.share_ratio_warn,
            drift_ratio=config.share_ratio_drift,
            max_trend=config.share_max_trend,
        )

    shares_found = share_tests(
        shares, segmenter.predict(current[names]), then_labels, baseline_labels
    )
    if compare_old and any(r.status != "OK" for r in shares_found):
        old_then_labels = segmenter.predict(then_old[names])
        old_mix = np.bincount(old_then_labels, minlength=n_segments)[:n_segments] / len(then_old)
        shares_found = _attributed(
            shares_found,
            share_tests(
                list(old_mix),
                segmenter.predict(now_old[names]),
                old_then_labels,
                None if base_old is None else segmenter.predict(base_old[names]),
            ),
            config.newcomer_max_established_share,
        )
    results += shares_found
    if days > 0 and len(then):
        newcomers_then = then[then[TENURE] < days] if TENURE in then else then.iloc[:0]
        newcomers_now = current[current[TENURE] < days] if TENURE in current else current.iloc[:0]
        results.append(
            new_behaviour_test(
                segmenter,
                then,
                newcomers_then,
                newcomers_now,
                segment_names,
                quantile=config.new_behaviour_quantile,
                warn=config.new_behaviour_warn,
                drift=config.new_behaviour_drift,
                min_users=config.new_behaviour_min_users,
            )
        )
        results.append(
            newcomer_intake_test(
                len(newcomers_then), len(newcomers_now), min_users=config.new_behaviour_min_users
            )
        )
    mix_psi = float("nan")
    if days > 0:
        counts_then = event_counts(log, champion_as_of - interval, champion_as_of)
        counts_now = event_counts(log, champion_as_of, as_of)
        results += event_mix_tests(
            counts_then,
            counts_now,
            min_share=config.event_min_share,
            gone_ratio=config.event_gone_ratio,
        )
        mix_psi = event_mix_psi(counts_then, counts_now)
    return CalibratedChecks(
        results=tuple(results),
        interval_days=days,
        baseline_as_of=baseline_as_of,
        event_mix_psi=mix_psi,
        n_then=len(then),
        n_baseline=0 if baseline is None else len(baseline),
    )
