"""The calibrated drift checks of a refresh: what they need from the log, and the verdict.

:func:`calibrated_checks` builds the three feature tables the checks compare (the
champion's snapshot recomputed, the same distance before it, and now), counts
events per type in the two intervals, runs the pure tests of
:mod:`segmentkit.drift.verdict` and returns their results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from segmentkit.config import DriftConfig, FeatureConfig
from segmentkit.drift._common import DriftResult
from segmentkit.drift.reference import FeatureReference
from segmentkit.drift.verdict import (
    aged_psi_test,
    event_mix_psi,
    event_mix_tests,
    history_test,
    new_behaviour_test,
    nonzero_psi_test,
    nonzero_shift_test,
    segment_share_tests,
)
from segmentkit.features import build_features

__all__ = ["CalibratedChecks", "calibrated_checks", "event_counts"]

#: Fewest users the baseline snapshot needs to calibrate against (else raw PSI is used).
MIN_BASELINE_USERS = 50


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
        PSI thresholds.

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
    baseline_as_of = champion_as_of - interval if days > 0 else None
    baseline = None
    if baseline_as_of is not None:
        table = build_features(log, baseline_as_of, feature_config)
        if len(table) >= MIN_BASELINE_USERS:
            baseline = table
        else:
            baseline_as_of = None
    results: list[DriftResult] = []
    for name, ref in reference.items():
        if name not in current.columns:
            continue
        base_values = None if baseline is None else baseline[name].to_numpy(dtype=float)
        results.append(
            aged_psi_test(
                ref,
                current[name].to_numpy(dtype=float),
                base_values,
                config.psi_warn,
                config.psi_drift,
            )
        )
        nonzero = nonzero_psi_test(
            name,
            then[name].to_numpy(dtype=float),
            current[name].to_numpy(dtype=float),
            base_values,
            config.psi_warn,
            config.psi_drift,
        )
        if nonzero is not None:
            results.append(nonzero)
        shift = nonzero_shift_test(
            name,
            then[name].to_numpy(dtype=float),
            current[name].to_numpy(dtype=float),
            base_values,
        )
        if shift is not None:
            results.append(shift)
        results.append(
            history_test(ref, then[name].to_numpy(dtype=float), config.psi_warn, config.psi_drift)
        )
    shares = [float(reference_shares.get(str(i), 0.0)) for i in range(segmenter.n_segments_)]
    current_labels = segmenter.predict(current[names])
    then_labels = segmenter.predict(then[names]) if len(then) else None
    baseline_labels = None if baseline is None else segmenter.predict(baseline[names])
    results += segment_share_tests(
        shares,
        current_labels,
        segment_names,
        then_labels=then_labels if baseline_labels is not None else None,
        baseline_labels=baseline_labels,
    )
    if days > 0 and len(then):
        newcomers_then = (
            then[then["tenure_days"] < days] if "tenure_days" in then else then.iloc[:0]
        )
        newcomers_now = (
            current[current["tenure_days"] < days] if "tenure_days" in current else current.iloc[:0]
        )
        results.append(
            new_behaviour_test(segmenter, then, newcomers_then, newcomers_now, segment_names)
        )
    mix_psi = float("nan")
    if days > 0:
        counts_then = event_counts(log, champion_as_of - interval, champion_as_of)
        counts_now = event_counts(log, champion_as_of, as_of)
        results += event_mix_tests(counts_then, counts_now)
        mix_psi = event_mix_psi(counts_then, counts_now)
    return CalibratedChecks(
        results=tuple(results),
        interval_days=days,
        baseline_as_of=baseline_as_of,
        event_mix_psi=mix_psi,
        n_then=len(then),
        n_baseline=0 if baseline is None else len(baseline),
    )
