"""Drift verdicts calibrated against normal change, with named reasons and a recommendation.

Raw PSI between the champion's reference and a later snapshot fires on features
that move with the calendar alone: tenure and recency grow, cumulative counts
pile up, the pool of lapsed users widens. A verdict a person can act on compares
the change since the champion with the change *ageing alone* produces, measured
on the same log one refresh interval earlier ("the champion's reference
recomputed at the same distance"):

``aged_psi``
    ``PSI(reference, current) - PSI(reference, baseline)`` per feature, where the
    baseline is the feature table at ``champion_as_of - (as_of - champion_as_of)``.
``nonzero_psi``
    For features that are zero for many users (revenue, orders, counts of a rare
    event), the same calibrated PSI on the users with a non-zero value, on the
    champion snapshot's own quantile bins: a change in spend per buyer is
    diluted beyond notice in the whole-population bins.
``segment_share``
    Each champion segment's share now against the share ageing predicts (the
    reference share times the segment's trend over the previous interval); a
    segment falling to about zero *vanished*, one growing from about zero
    *appeared*; both are named.
``new_behaviour``
    Users who joined since the champion against those who joined in the interval
    before (the same age, so ageing cancels out): the share of them lying beyond
    the distance 99 % of their segment's users had at the champion's snapshot.
    A jump is a group of users whose behaviour no champion segment describes.
``newcomer_intake``
    How many users joined since the champion against the interval before (the
    same age): a surge or a collapse changes the population's mix even when each
    newcomer fits a segment. WARN only.
``event_vanished`` / ``event_appeared``
    Event types that stop (or start) being logged between the two intervals.
``history``
    The champion's snapshot recomputed from today's log against what the champion
    stored: a difference means the log's past was rewritten or reloaded.

A change in a feature or a segment's share may come with new users rather than
from the source: a group of newcomers who behave differently moves the
population's spend per buyer or events per active user although nobody already
there changed. :func:`newcomer_attribution` marks a result that fires on all
users but not on the *established* ones (users already there one interval
before each snapshot, compared the same way), who show at most half of the
change; :func:`decide` reports it as a new behaviour (retrain), not as a source
to check. A source problem (spend logged at half, an event lost) shows in the
established users too.

Sampling noise is allowed for: the PSI tests raise their thresholds by the PSI
two samples of one distribution reach by chance at these sizes
(:func:`psi_noise`), and segment shares must also move by several binomial
standard errors, so a refresh of a few hundred users is judged as such.

Every test is a pure function returning a :class:`~segmentkit.drift.DriftResult`;
:func:`decide` turns results into a :class:`Verdict` with findings in words and one
recommendation line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from segmentkit.drift._common import DriftResult, _judge
from segmentkit.drift.reference import FeatureReference, build_feature_reference
from segmentkit.drift.stats import population_stability_index, psi_test
from segmentkit.errors import ConfigError, DataValidationError
from segmentkit.serialization import to_jsonable

__all__ = [
    "ACTIONS",
    "Finding",
    "Verdict",
    "aged_psi_test",
    "decide",
    "event_mix_tests",
    "history_test",
    "new_behaviour_test",
    "newcomer_attribution",
    "newcomer_intake_test",
    "nonzero_psi_test",
    "nonzero_shift_test",
    "psi_noise",
    "segment_label",
    "segment_share_tests",
]

Status = Literal["OK", "WARN", "DRIFT"]
Action = Literal["no_action", "promote", "retrain", "check_source"]

_LEVEL = {"OK": 0, "WARN": 1, "DRIFT": 2}

#: Recommendation sentence of each action.
ACTIONS: Mapping[str, str] = {
    "no_action": "No action",
    "promote": "Promote the challenger",
    "retrain": "Retrain",
    "check_source": "Check the source",
}

#: Order in which findings are reported (and the first DRIFT one decides the action).
_KIND_ORDER = (
    "segment_vanished",
    "segment_appeared",
    "new_behaviour",
    "event_vanished",
    "segment_share",
    "nonzero_shift",
    "nonzero_psi",
    "aged_psi",
    "event_appeared",
    "newcomer_intake",
    "history",
    "auc_drop",
    "ari",
)

#: Binomial standard errors a segment's share must move by to count (beside the ratio).
SHARE_Z = 3.0

#: Users a segment must have held (vanished) or hold (appeared) at today's size for the
#: change to be beyond chance (Poisson: no user where 7 are expected has odds of 0.1 %).
SHARE_MIN_COUNT = 7

#: Share below which a segment counts as empty in ratios (keeps scores finite).
_SHARE_FLOOR = 1e-4
#: Smallest share of users a feature must have at zero for :func:`nonzero_psi_test` to run.
ZERO_INFLATED_SHARE = 0.3
#: Largest share of negative values (refunds) a feature may have for :func:`nonzero_psi_test`.
SIGNED_SHARE = 0.05


def segment_label(segment: Any, names: Sequence[str] | Mapping[Any, str] | None) -> str:
    """``"id · name"`` for a segment id (just the id when no name is known).

    Examples
    --------
    >>> segment_label(2, ["Casual", "New", "Champions"])
    '2 · Champions'
    >>> segment_label("7", None)
    '7'
    """
    key = str(segment)
    if names is None:
        return key
    if isinstance(names, Mapping):
        name = names.get(key, names.get(segment))  # type: ignore[call-overload]
    else:
        try:
            index = int(key)
        except ValueError:
            index = -1
        name = names[index] if 0 <= index < len(names) else None
    return f"{key} · {name}" if name else key


def _check(warn: float | None, drift: float | None, what: str) -> None:
    for value in (warn, drift):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{what}: thresholds must be finite and >= 0, got {value!r}")
    if warn is not None and drift is not None and warn > drift:
        raise ConfigError(f"{what}: expected warn <= drift, got warn={warn}, drift={drift}")


def _values(values: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise DataValidationError(f"{what}: values are not numeric") from None
    return array[np.isfinite(array)]


#: Chance, per test, that sampling alone would cross a PSI threshold (see :func:`psi_noise`).
PSI_NOISE_LEVEL = 0.001


def psi_noise(n_bins: int, n_reference: int, n_current: int) -> float:
    """PSI two samples of one distribution exceed by chance with probability ``PSI_NOISE_LEVEL``.

    To second order PSI is a chi-square statistic: for bin shares estimated from
    ``n_reference`` and ``n_current`` users, ``PSI ~ chi2(n_bins - 1) * (1 /
    n_reference + 1 / n_current)``. The calibrated PSI tests add this allowance to
    their thresholds, so a refresh of a few hundred users is not judged as if it
    had the champion's thousands (about 0.15 at 200 against 2,000 users over 10
    bins; 0.03 at 2,000 against 2,000).

    Examples
    --------
    >>> round(psi_noise(10, 2000, 200), 3), round(psi_noise(10, 2000, 2000), 3)
    (0.153, 0.028)
    """
    if n_reference < 1 or n_current < 1:
        return 0.0
    return _chance_chi2(n_bins) * (1 / n_reference + 1 / n_current)


def _chance_chi2(n_bins: int) -> float:
    """Chi-square value over ``n_bins`` bins that chance exceeds with ``PSI_NOISE_LEVEL``."""
    from scipy.stats import chi2

    return float(chi2.ppf(1 - PSI_NOISE_LEVEL, n_bins - 1)) if n_bins >= 2 else 0.0


def _judged_beyond_noise(
    test: str,
    subject: str,
    score: float,
    warn: float | None,
    drift: float | None,
    noise: float,
    details: dict[str, Any],
) -> DriftResult:
    """Judge ``score`` against thresholds raised by ``noise`` (the nominal ones are kept)."""
    status = _judge(
        score, None if warn is None else warn + noise, None if drift is None else drift + noise
    )
    return DriftResult(test, subject, score, warn, drift, status, {**details, "noise": noise})


# --------------------------------------------------------------------------- features


def aged_psi_test(
    reference: FeatureReference,
    current_values: Any,
    baseline_values: Any = None,
    warn: float | None = 0.1,
    drift: float | None = 0.25,
) -> DriftResult:
    """PSI since the champion minus the PSI ageing alone produced over the same distance.

    Parameters
    ----------
    reference : FeatureReference
        The champion's bins at its snapshot.
    current_values : array-like
        The feature now.
    baseline_values : array-like, optional
        The feature one refresh interval before the champion's snapshot; None
        (the log does not reach back that far) leaves the raw PSI uncorrected.
    warn, drift : float or None
        Thresholds on the excess PSI (``>=``).

    Returns
    -------
    DriftResult
        ``test="aged_psi"``; ``score = max(raw - expected, 0)`` with ``raw_psi`` and
        ``expected_psi`` in the details.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> then = rng.uniform(0, 100, 5000)
    >>> ref = build_feature_reference(pd.DataFrame({"tenure_days": then}))["tenure_days"]
    >>> result = aged_psi_test(ref, then + 30, baseline_values=then - 30)
    >>> result.details["raw_psi"] > 0.25, result.status
    (True, 'OK')
    """
    _check(warn, drift, f"aged_psi {reference.name!r}")
    raw = psi_test(reference, current_values, None, None)
    expected = None
    if baseline_values is not None and _values(baseline_values, reference.name).size:
        expected = psi_test(reference, baseline_values, None, None).score
    score = max(raw.score - (expected or 0.0), 0.0)
    return _judged_beyond_noise(
        "aged_psi",
        reference.name,
        score,
        warn,
        drift,
        psi_noise(reference.n_bins, reference.n, raw.details["n"]),
        {
            "raw_psi": raw.score,
            "expected_psi": expected,
            "n": raw.details["n"],
            "reference_median": float(
                np.interp(0.5, np.linspace(0, 1, len(reference.quantiles)), reference.quantiles)
            ),
            "current_median": float(np.median(_values(current_values, reference.name))),
        },
    )


def nonzero_psi_test(
    name: str,
    then_values: Any,
    current_values: Any,
    baseline_values: Any = None,
    warn: float | None = 0.1,
    drift: float | None = 0.25,
    *,
    n_bins: int = 10,
    min_nonzero: int = 50,
) -> DriftResult | None:
    """Calibrated PSI of a zero-inflated feature among users with a positive value.

    Returns None when the feature is not zero-inflated (fewer than
    :data:`ZERO_INFLATED_SHARE` of ``then_values`` at zero), is signed (more than
    :data:`SIGNED_SHARE` negative, e.g. a trend; a few refunds are fine), or either
    side has fewer than ``min_nonzero`` positive values.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> spend = np.where(rng.random(4000) < 0.7, 0.0, rng.lognormal(3, 0.6, 4000))
    >>> nonzero_psi_test("revenue_30d", spend, spend * 0.5, spend).status
    'DRIFT'
    """
    _check(warn, drift, f"nonzero_psi {name!r}")
    then = _values(then_values, name)
    now = _values(current_values, name)
    if (
        then.size == 0
        or (then == 0).mean() < ZERO_INFLATED_SHARE
        or (then < 0).mean() > SIGNED_SHARE
    ):
        return None
    then_pos, now_pos = then[then > 0], now[now > 0]
    if then_pos.size < min_nonzero or now_pos.size < min_nonzero:
        return None
    reference = build_feature_reference(pd.DataFrame({name: then_pos}), n_bins=n_bins)[name]
    raw = psi_test(reference, now_pos, None, None).score
    expected = None
    if baseline_values is not None:
        base = _values(baseline_values, name)
        base_pos = base[base > 0]
        if base_pos.size >= min_nonzero:
            expected = psi_test(reference, base_pos, None, None).score
    score = max(raw - (expected or 0.0), 0.0)
    return _judged_beyond_noise(
        "nonzero_psi",
        name,
        score,
        warn,
        drift,
        psi_noise(reference.n_bins, int(then_pos.size), int(now_pos.size)),
        {
            "raw_psi": raw,
            "expected_psi": expected,
            "n_then": int(then_pos.size),
            "n_now": int(now_pos.size),
            "median_then": float(np.median(then_pos)),
            "median_now": float(np.median(now_pos)),
        },
    )


def nonzero_shift_test(
    name: str,
    then_values: Any,
    current_values: Any,
    baseline_values: Any = None,
    warn: float = math.log(1.25),
    drift: float = math.log(1.5),
    *,
    z_warn: float = 3.0,
    z_drift: float = 4.0,
    min_nonzero: int = 50,
) -> DriftResult | None:
    """Shift of the typical positive value (e.g. spend per buyer) beyond its ageing trend.

    With ``m`` the mean of ``ln(x)`` over positive values, the change since the
    champion ``m_now - m_then`` is compared with the change over the interval
    before, ``m_then - m_base`` (zero without a baseline): ``score = |(m_now -
    m_then) - (m_then - m_base)|``, a log ratio (``ln 2`` when values halve); the
    previous change counts only when it exceeds two standard errors. It must
    be large in practice (``warn``, ``drift``: 1.25x and 1.5x) and beyond sampling
    noise (``z_warn``, ``z_drift`` standard errors) to count. Runs on the features
    :func:`nonzero_psi_test` runs on (None otherwise).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> spend = np.where(rng.random(4000) < 0.7, 0.0, rng.lognormal(3, 0.6, 4000))
    >>> result = nonzero_shift_test("revenue_30d", spend, spend * 0.5, spend)
    >>> result.status, round(result.details["ratio"], 2)
    ('DRIFT', 0.5)
    """
    then = _values(then_values, name)
    now = _values(current_values, name)
    if (
        then.size == 0
        or (then == 0).mean() < ZERO_INFLATED_SHARE
        or (then < 0).mean() > SIGNED_SHARE
    ):
        return None
    logs_then, logs_now = np.log(then[then > 0]), np.log(now[now > 0])
    if logs_then.size < min_nonzero or logs_now.size < min_nonzero:
        return None
    variance = logs_now.var() / logs_now.size + logs_then.var() / logs_then.size
    trend = 0.0
    if baseline_values is not None:
        base = _values(baseline_values, name)
        logs_base = np.log(base[base > 0])
        if logs_base.size >= min_nonzero:
            previous = float(logs_then.mean() - logs_base.mean())
            previous_variance = logs_then.var() / logs_then.size + logs_base.var() / logs_base.size
            # Correct for ageing only when the previous interval shows a real trend:
            # subtracting a noisy estimate of no trend would only add its noise.
            if abs(previous) > 2 * math.sqrt(previous_variance):
                trend = previous
                variance += previous_variance + 2 * logs_then.var() / logs_then.size
    change = float(logs_now.mean() - logs_then.mean())
    score = abs(change - trend)
    se = math.sqrt(variance)
    status = _judge(score, max(warn, z_warn * se), max(drift, z_drift * se))
    return DriftResult(
        test="nonzero_shift",
        subject=name,
        score=score,
        warn_threshold=warn,
        drift_threshold=drift,
        status=status,
        details={
            "ratio": math.exp(change),
            "expected_ratio": math.exp(trend),
            "standard_error": se,
            "geometric_mean_then": math.exp(float(logs_then.mean())),
            "geometric_mean_now": math.exp(float(logs_now.mean())),
            "n_then": int(logs_then.size),
            "n_now": int(logs_now.size),
        },
    )


def history_test(
    reference: FeatureReference,
    recomputed_values: Any,
    warn: float | None = 0.02,
    drift: float | None = 0.1,
) -> DriftResult:
    """PSI between what the champion stored and its snapshot recomputed from today's log.

    The same log at the same as_of gives the same features, so any difference
    means events before the champion's snapshot were added, removed or changed.
    When the log holds fewer (or more) users than the champion saw, the thresholds
    allow for the sampling difference alone (a 200-user extract of a 2,000-user log
    differs by chance), as :func:`psi_noise` does for independent samples.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> x = np.arange(1000.0)
    >>> ref = build_feature_reference(pd.DataFrame({"orders": x}))["orders"]
    >>> history_test(ref, x).status, history_test(ref, x[x > 400]).status
    ('OK', 'DRIFT')
    """
    _check(warn, drift, f"history {reference.name!r}")
    result = psi_test(reference, recomputed_values, None, None)
    n = int(result.details["n"])
    # A log holding part of the champion's users (an extract) differs from the stored
    # reference by sampling alone: the finite-population form of psi_noise, zero when
    # the user counts agree (the same log must give the same features).
    noise = _chance_chi2(reference.n_bins) * abs(1 / max(n, 1) - 1 / max(reference.n, 1))
    return _judged_beyond_noise(
        "history",
        reference.name,
        result.score,
        warn,
        drift,
        noise,
        {"n": n, "reference_n": reference.n},
    )


# --------------------------------------------------------------------------- segments


def _shares(labels: Any, n_segments: int) -> np.ndarray:
    codes = np.asarray(labels, dtype=np.int64).ravel()
    if codes.size == 0:
        return np.zeros(n_segments)
    return np.bincount(codes, minlength=n_segments)[:n_segments] / codes.size


def segment_share_tests(
    reference_shares: Sequence[float],
    current_labels: Any,
    names: Sequence[str] | None = None,
    *,
    then_labels: Any = None,
    baseline_labels: Any = None,
    min_share: float = 0.02,
    gone_share: float = 0.005,
    warn_ratio: float = 1.5,
    drift_ratio: float = 2.0,
    max_trend: float = 2.0,
    z: float = SHARE_Z,
) -> list[DriftResult]:
    """Judge each champion segment's share now against the share ageing predicts.

    The expected share is ``reference_share * trend`` where ``trend`` is the
    segment's share at the champion's snapshot over its share one interval
    before, both recomputed from today's log (``then_labels``,
    ``baseline_labels``), clipped to ``[1/max_trend, max_trend]``; it is 1
    without them. On a small log the trend is noisy: its standard error (of the log
    ratio of two binomial shares) times the expected share widens the tolerance of
    the comparison, in quadrature with the share's own binomial error.

    A segment that held at least ``min_share`` and now holds less than
    ``gone_share`` *vanished*; one that held less than ``gone_share`` and now
    holds at least ``min_share`` *appeared*: both are DRIFT, when the share
    concerned comes to :data:`SHARE_MIN_COUNT` users at today's size. Otherwise the score is
    ``max(current, expected) / min(current, expected)``, judged against
    ``warn_ratio`` and ``drift_ratio`` when the larger share reaches ``min_share``
    and the difference exceeds ``z`` standard errors (binomial among today's users,
    and the trend's; a segment of 10 users out of 200 halves by chance).

    Parameters
    ----------
    reference_shares : sequence of float
        The champion's share of each segment id at training.
    current_labels : array-like of int
        The champion's segment of each user now.
    names : sequence of str, optional
        Segment names by id, for subjects ``"id · name"``.

    Returns
    -------
    list of DriftResult
        ``test="segment_share"``, one per segment id, ``details["change"]`` one of
        ``"vanished"``, ``"appeared"``, ``"shrank"``, ``"grew"``, ``"steady"``.

    Examples
    --------
    >>> import numpy as np
    >>> now = np.r_[np.zeros(700, int), np.ones(298, int), np.full(2, 2)]
    >>> [r.details["change"] for r in segment_share_tests([0.5, 0.3, 0.2], now)]
    ['steady', 'steady', 'vanished']
    """
    if not 0 <= gone_share < min_share <= 1:
        raise ConfigError(
            "segment shares: expected 0 <= gone_share < min_share <= 1, "
            f"got {gone_share}, {min_share}"
        )
    if not 1 <= warn_ratio <= drift_ratio:
        raise ConfigError(
            "segment shares: expected 1 <= warn_ratio <= drift_ratio, "
            f"got {warn_ratio}, {drift_ratio}"
        )
    reference = np.asarray(reference_shares, dtype=float)
    n_segments = max(reference.size, int(np.max(current_labels, initial=-1)) + 1)
    reference = np.r_[reference, np.zeros(n_segments - reference.size)]
    current = _shares(current_labels, n_segments)
    n_users = max(int(np.asarray(current_labels).size), 1)
    trend = np.ones(n_segments)
    trend_se = np.zeros(n_segments)
    if then_labels is not None and baseline_labels is not None:
        then, base = _shares(then_labels, n_segments), _shares(baseline_labels, n_segments)
        n_then = max(int(np.asarray(then_labels).size), 1)
        n_base = max(int(np.asarray(baseline_labels).size), 1)
        both = (then > 0) & (base > 0)
        safe_then, safe_base = np.where(both, then, 1.0), np.where(both, base, 1.0)
        ratio = np.where(both, safe_then / safe_base, 1.0)
        # Standard error of the log ratio of two binomial shares: a trend within
        # two of them is noise (a small log), and correcting for it adds noise.
        se = np.sqrt(
            (1 - safe_then) / (n_then * safe_then) + (1 - safe_base) / (n_base * safe_base)
        )
        # Measured on a small log the trend is noisy, not absent: it is applied, and its
        # standard error widens the tolerance of the comparison below. (Dropping a trend
        # within two errors of 1 expected no ageing at all: on a 600-user extract of a
        # steady log whose lapsed segment grows by a third an interval, that warned.)
        trend = np.clip(np.where(both, ratio, 1.0), 1.0 / max_trend, max_trend)
        trend_se = np.where(both, se, 0.0)
    results = []
    for seg in range(n_segments):
        ref, now = float(reference[seg]), float(current[seg])
        expected = ref * float(trend[seg])
        # Vanished or appeared only where chance cannot do it: a 2% segment has no user
        # among 200 in one refresh of 60, so at least SHARE_MIN_COUNT users are needed.
        if ref >= min_share and now < gone_share and ref * n_users >= SHARE_MIN_COUNT:
            change, status, score = "vanished", "DRIFT", ref / max(now, _SHARE_FLOOR)
        elif ref < gone_share and now >= min_share and now * n_users >= SHARE_MIN_COUNT:
            change, status, score = "appeared", "DRIFT", now / max(ref, _SHARE_FLOOR)
        else:
            low, high = sorted((now, expected))
            score = high / max(low, _SHARE_FLOOR) if high > 0 else 1.0
            spread = math.sqrt(
                min(max(expected, now), 1.0) * (1 - min(expected, 1.0)) / n_users
                + (expected * float(trend_se[seg])) ** 2
            )
            judged = high >= min_share and abs(now - expected) >= z * spread
            status = _judge(score, warn_ratio, drift_ratio) if judged else "OK"
            change = "steady" if status == "OK" else ("grew" if now > expected else "shrank")
        results.append(
            DriftResult(
                test="segment_share",
                subject=segment_label(seg, names),
                score=score,
                warn_threshold=warn_ratio,
                drift_threshold=drift_ratio,
                status=status,  # type: ignore[arg-type]
                details={
                    "segment": str(seg),
                    "change": change,
                    "reference_share": ref,
                    "expected_share": expected,
                    "current_share": now,
                    "trend": float(trend[seg]),
                },
            )
        )
    return results


def new_behaviour_test(
    segmenter: Any,
    then_features: pd.DataFrame,
    newcomers_then: pd.DataFrame,
    newcomers_now: pd.DataFrame,
    names: Sequence[str] | None = None,
    *,
    quantile: float = 0.99,
    warn: float = 0.05,
    drift: float = 0.10,
    min_users: int = 20,
) -> DriftResult:
    """Share of recent joiners no champion segment describes, now vs one interval earlier.

    A user *misfits* when its distance to its nearest champion centroid exceeds
    the ``quantile`` of that distance among the segment's users at the champion's
    snapshot (``then_features``). Newcomers now and newcomers then have the same
    age, so ageing cancels out of ``score = misfit share now - misfit share then``.

    Parameters
    ----------
    segmenter : Segmenter
        The champion's fitted segmenter (``transform`` gives centroid distances).
    then_features : pandas.DataFrame
        All users at the champion's snapshot.
    newcomers_then, newcomers_now : pandas.DataFrame
        Users whose first event fell in the interval before the champion's
        snapshot, and in the interval before now.
    names : sequence of str, optional
        Segment names by id.
    quantile : float, default 0.99
        Distance quantile per segment beyond which a user misfits.
    warn, drift : float
        Thresholds on the excess misfit share.
    min_users : int, default 20
        Fewest misfit newcomers now, and fewest newcomers then, for a WARN or DRIFT
        (without a baseline the test is reported but not judged).

    Returns
    -------
    DriftResult
        ``test="new_behaviour"``, details: counts, the nearest segment of most misfits
        and the features where they differ most from the population (median ratios).
    """
    _check(warn, drift, "new_behaviour")
    if not 0.5 <= quantile < 1:
        raise ConfigError(f"new_behaviour: quantile must be in [0.5, 1), got {quantile}")
    columns = list(segmenter.feature_names_in_)
    distances = segmenter.transform(then_features[columns])
    nearest = distances.argmin(axis=1)
    nearest_distance = distances.min(axis=1)
    limit = np.full(distances.shape[1], np.inf)
    for seg in np.unique(nearest):
        limit[seg] = np.quantile(nearest_distance[nearest == seg], quantile)

    def misfits(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if len(frame) == 0:
            return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
        d = segmenter.transform(frame[columns])
        seg = d.argmin(axis=1)
        return d.min(axis=1) > limit[seg], seg

    then_mask, _ = misfits(newcomers_then)
    now_mask, now_seg = misfits(newcomers_now)
    share_then = float(then_mask.mean()) if then_mask.size else 0.0
    share_now = float(now_mask.mean()) if now_mask.size else 0.0
    score = max(share_now - share_then, 0.0)
    n_misfit = int(now_mask.sum())
    # Judged only with enough users on both sides: too few newcomers before the
    # champion give no baseline to compare with (reported, not judged).
    judged = n_misfit >= min_users and then_mask.size >= min_users
    status = _judge(score, warn, drift) if judged else "OK"
    details: dict[str, Any] = {
        "newcomers_then": int(then_mask.size),
        "newcomers_now": int(now_mask.size),
        "misfit_share_then": share_then,
        "misfit_share_now": share_now,
        "misfits_now": n_misfit,
        "quantile": quantile,
        "judged": judged,
    }
    if n_misfit:
        nearest_seg = int(np.bincount(now_seg[now_mask]).argmax())
        details["nearest_segment"] = segment_label(nearest_seg, names)
        group = newcomers_now.loc[now_mask, columns].median()
        population = then_features[columns].median()
        contrast = []
        for col in columns:
            g, p = float(group[col]), float(population[col])
            if p > 0 and g >= 0:
                ratio = g / p
                if ratio > 0:
                    contrast.append((abs(math.log(ratio)), col, ratio))
        contrast.sort(reverse=True)
        details["distinct_features"] = [
            {"feature": col, "ratio_to_population": ratio} for _, col, ratio in contrast[:3]
        ]
    return DriftResult(
        test="new_behaviour",
        subject="newcomers",
        score=score,
        warn_threshold=warn,
        drift_threshold=drift,
        status=status,
        details=details,
    )


# --------------------------------------------------------------------------- events


#: Intake of new users, now against the interval before, that counts as a change
#: (either way) when the ratio is that far from 1 even ``INTAKE_Z`` standard errors
#: of the counts closer to it (an extract of a few hundred users varies by chance).
INTAKE_RATIO_WARN = 1.5
INTAKE_Z = 2.0


def newcomer_intake_test(
    newcomers_then: int,
    newcomers_now: int,
    *,
    ratio_warn: float = INTAKE_RATIO_WARN,
    z: float = INTAKE_Z,
    min_users: int = 20,
) -> DriftResult:
    """How many users joined since the champion against how many joined in the interval before.

    Both groups have the same age at their snapshot, so ageing cancels out. A
    surge (a new acquisition channel, a campaign) or a collapse (sign-ups no
    longer tracked) changes the population's mix even when each newcomer behaves
    like the earlier ones, which no feature or segment test sees when the
    newcomers spread over the segments: it is a WARN (never DRIFT; the champion's
    segments still describe these users, and :func:`new_behaviour_test` says when
    they do not). ``score`` is the larger of the ratio and its inverse; it counts
    when ``|ln ratio| - z * se >= ln ratio_warn``, with ``se`` the standard error
    of the log ratio of two Poisson counts.

    Examples
    --------
    >>> newcomer_intake_test(300, 310).status, newcomer_intake_test(300, 720).status
    ('OK', 'WARN')
    """
    _check(ratio_warn, None, "newcomer_intake")
    then, now = _count_of(newcomers_then), _count_of(newcomers_now)
    judged = min(then, now) >= min_users
    ratio = (now + 0.5) / (then + 0.5)
    score = max(ratio, 1 / ratio)
    se = math.sqrt(1 / (now + 0.5) + 1 / (then + 0.5))
    beyond_noise = abs(math.log(ratio)) - z * se >= math.log(ratio_warn)
    status: Status = "WARN" if judged and beyond_noise else "OK"
    return DriftResult(
        test="newcomer_intake",
        subject="newcomers",
        score=score,
        warn_threshold=ratio_warn,
        drift_threshold=None,
        status=status,
        details={
            "newcomers_then": then,
            "newcomers_now": now,
            "ratio": now / then if then else math.inf,
            "standard_error": se,
            "judged": judged,
        },
    )


def _count_of(value: Any) -> int:
    count = int(value)
    if count < 0:
        raise DataValidationError(f"newcomer_intake: counts must be >= 0, got {count}")
    return count


def event_mix_tests(
    counts_then: Mapping[str, int],
    counts_now: Mapping[str, int],
    *,
    min_share: float = 0.005,
    gone_ratio: float = 0.1,
) -> list[DriftResult]:
    """Event types that stopped or started being logged between two equal intervals.

    An event holding at least ``min_share`` of the events then and less than
    ``gone_ratio`` of that share now *vanished* (DRIFT: a key event that
    disappears breaks every feature built on it). One absent then and holding at
    least ``min_share`` now *appeared* (WARN: features do not use it yet).

    Examples
    --------
    >>> then = {"page_view": 900, "add_to_cart": 100}
    >>> now = {"page_view": 950, "add_to_cart": 2, "wishlist": 60}
    >>> [(r.test, r.subject, r.status) for r in event_mix_tests(then, now)]
    [('event_vanished', 'add_to_cart', 'DRIFT'), ('event_appeared', 'wishlist', 'WARN')]
    """
    total_then = sum(counts_then.values())
    total_now = sum(counts_now.values())
    if total_then <= 0 or total_now <= 0:
        return []
    results = []
    for event in sorted(set(counts_then) | set(counts_now)):
        then = counts_then.get(event, 0) / total_then
        now = counts_now.get(event, 0) / total_now
        details = {
            "share_then": then,
            "share_now": now,
            "count_then": int(counts_then.get(event, 0)),
            "count_now": int(counts_now.get(event, 0)),
        }
        if then >= min_share and now < gone_ratio * then:
            results.append(
                DriftResult(
                    "event_vanished", event, now / then, gone_ratio, gone_ratio, "DRIFT", details
                )
            )
        elif then == 0 and now >= min_share:
            results.append(
                DriftResult("event_appeared", event, now, min_share, None, "WARN", details)
            )
    return results


def event_mix_psi(counts_then: Mapping[str, int], counts_now: Mapping[str, int]) -> float:
    """PSI of the event-type mix between two intervals (informational)."""
    events = sorted(set(counts_then) | set(counts_now))
    a = np.array([counts_then.get(e, 0) for e in events], dtype=float)
    b = np.array([counts_now.get(e, 0) for e in events], dtype=float)
    if a.sum() == 0 or b.sum() == 0:
        return math.nan
    return population_stability_index(a / a.sum(), b / b.sum())


# --------------------------------------------------------------------------- attribution


def _established_summary(result: DriftResult) -> dict[str, Any]:
    d = result.details
    keys = (
        "ratio",
        "expected_ratio",
        "raw_psi",
        "expected_psi",
        "current_share",
        "expected_share",
        "n",
        "n_now",
    )
    summary = {key: d[key] for key in keys if key in d}
    return {"score": result.score, "status": result.status, **summary}


def _change(result: DriftResult) -> float:
    """Size of the change a result measured, zero for none (share ratios are >= 1)."""
    if result.test == "segment_share":
        return math.log(max(result.score, 1.0))
    return max(result.score, 0.0)


def newcomer_attribution(
    result: DriftResult, established: DriftResult | None, max_share: float = 0.5
) -> DriftResult:
    """Mark a change found on all users but hardly on those already there as carried by newcomers.

    ``established`` is the same test on users with at least one interval of
    tenure at each snapshot (and the baseline), so it sees what happened to the
    people the champion already knew. When ``result`` is WARN or DRIFT while
    ``established`` is OK *and* shows at most ``max_share`` of the change (an OK
    just under the threshold on fewer users is no evidence that those users did
    not change), the change came with the users who joined since:
    ``details["carried_by"] = "newcomers"`` and ``details["established"]`` holds
    the established result's score and status. The status is kept (a change
    this large still matters); :func:`decide` names it a new behaviour.

    Parameters
    ----------
    result : DriftResult
        The test on all users.
    established : DriftResult or None
        The same test on established users (None: it could not run, e.g. too few
        users; the result is returned unchanged).
    max_share : float, default 0.5
        Largest fraction of the change (score; log ratio for segment shares) the
        established users may show.

    Returns
    -------
    DriftResult

    Raises
    ------
    ConfigError
        If ``max_share`` is not in ``[0, 1]``.
    DataValidationError
        If the two results are not the same test on the same subject.

    Examples
    --------
    >>> all_users = DriftResult("nonzero_shift", "events_30d", 0.6, 0.2, 0.4, "DRIFT", {})
    >>> old_users = DriftResult("nonzero_shift", "events_30d", 0.01, 0.2, 0.4, "OK", {})
    >>> newcomer_attribution(all_users, old_users).details["carried_by"]
    'newcomers'
    >>> warned = DriftResult("nonzero_shift", "events_30d", 0.3, 0.2, 0.4, "WARN", {})
    >>> just_under = DriftResult("nonzero_shift", "events_30d", 0.19, 0.2, 0.4, "OK", {})
    >>> "carried_by" in newcomer_attribution(warned, just_under).details
    False
    """
    if not 0 <= max_share <= 1:
        raise ConfigError(f"newcomer_attribution: max_share must be in [0, 1], got {max_share}")
    if result.status == "OK" or established is None or established.status != "OK":
        return result
    if (established.test, established.subject) != (result.test, result.subject):
        raise DataValidationError(
            f"newcomer_attribution: {established.test} on {established.subject!r} does not "
            f"match {result.test} on {result.subject!r}"
        )
    if _change(established) > max_share * _change(result):
        return result
    details = {
        **result.details,
        "carried_by": "newcomers",
        "established": _established_summary(established),
    }
    return replace(result, details=details)


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Finding:
    """One reason behind a verdict, in words.

    Attributes
    ----------
    kind : str
        The test that found it (``segment_vanished``, ``nonzero_psi``, ...).
    subject : str
        What it is about: ``"2 · Champions"``, a feature, an event.
    status : {"WARN", "DRIFT"}
    message : str
        One sentence a person reads.
    action : {"promote", "retrain", "check_source"}
        What this finding alone would call for.
    """

    kind: str
    subject: str
    status: Status
    message: str
    action: Action


@dataclass(frozen=True)
class Verdict:
    """Status, named findings and one recommendation.

    Attributes
    ----------
    status : {"OK", "WARN", "DRIFT"}
    findings : tuple of Finding
        Most important first.
    action : {"no_action", "promote", "retrain", "check_source"}
    recommendation : str
        ``"<action sentence>: <reason>"``, e.g. ``"Check the source of event
        add_to_cart: it made up 10.3% of events ... and 0.0% since"``.
    """

    status: Status
    findings: tuple[Finding, ...] = ()
    action: Action = "no_action"
    recommendation: str = "No action: nothing changed beyond what ageing alone explains."
    results: tuple[DriftResult, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (findings and recommendation; results are in the report)."""
        data = to_jsonable(replace(self, results=()))
        del data["results"]
        return data


def _f(value: Any, spec: str) -> str:
    """Format a number for a sentence: ``n/a`` when it is missing or not finite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{number:{spec}}" if math.isfinite(number) else "n/a"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%" if math.isfinite(value) else "n/a"


def _segment_share_words(r: DriftResult) -> str:
    d = r.details
    return (
        f"segment {r.subject} {d.get('change', 'changed')}: {_pct(d['reference_share'])} of "
        f"users at the champion's snapshot, {_pct(d['current_share'])} now (ageing alone "
        f"would give about {_pct(d['expected_share'])})"
    )


def _new_behaviour_words(r: DriftResult) -> str:
    d = r.details
    features = ", ".join(
        f"{f['feature']} {_f(f['ratio_to_population'], '.1f')}x"
        for f in d.get("distinct_features", [])
    )
    return (
        f"a new behaviour group: {d['misfits_now']} of {d['newcomers_now']} users who joined "
        f"since the champion ({_pct(d['misfit_share_now'])}, against "
        f"{_pct(d['misfit_share_then'])} of the previous newcomers) fit no champion segment "
        f"(nearest: {d.get('nearest_segment', 'n/a')}; {features} of the population median)"
    )


def _event_vanished_words(r: DriftResult) -> str:
    return (
        f"event {r.subject} disappeared from the log: {_pct(r.details['share_then'])} of "
        f"events in the interval before the champion's snapshot, "
        f"{_pct(r.details['share_now'])} since"
    )


def _event_appeared_words(r: DriftResult) -> str:
    return (
        f"event {r.subject} appeared in the log ({_pct(r.details['share_now'])} of events "
        "since the champion)"
    )


def _nonzero_psi_words(r: DriftResult) -> str:
    d = r.details
    return (
        f"{r.subject} changed among users with a non-zero value: median "
        f"{_f(d['median_then'], '.4g')} at the champion's snapshot, "
        f"{_f(d['median_now'], '.4g')} now "
        f"(PSI {_f(d['raw_psi'], '.2f')}, ageing alone {_f(d['expected_psi'] or 0, '.2f')})"
    )


def _nonzero_shift_words(r: DriftResult) -> str:
    d = r.details
    return (
        f"{r.subject} among users with a non-zero value moved {_f(d['ratio'], '.2f')}x since the "
        f"champion (geometric mean {_f(d['geometric_mean_then'], '.4g')} -> "
        f"{_f(d['geometric_mean_now'], '.4g')}; ageing alone {_f(d['expected_ratio'], '.2f')}x)"
    )


def _aged_psi_words(r: DriftResult) -> str:
    d = r.details
    return (
        f"{r.subject} drifted beyond ageing: PSI {_f(d['raw_psi'], '.2f')} since the champion, "
        f"{_f(d['expected_psi'] or 0, '.2f')} from ageing alone "
        f"(median {_f(d['reference_median'], '.4g')} "
        f"-> {_f(d['current_median'], '.4g')})"
    )


def _history_words(r: DriftResult) -> str:
    text = (
        f"{r.subject} at the champion's snapshot differs when recomputed from today's log "
        f"(PSI {_f(r.score, '.2f')}): events before that date were added, removed or changed"
    )
    starts = _log_starts(r.details)
    if starts is None:
        return text
    return (
        f"{text} (the log now starts on {starts[0]}, the champion's training log on "
        f"{starts[1]}: its oldest events are missing, as in a rolling export)"
    )


def _log_starts(details: Mapping[str, Any]) -> tuple[str, str] | None:
    """Days today's log and the champion's began, when today's begins later (else None)."""
    first, champion_first = details.get("log_first_event"), details.get("champion_first_event")
    if not first or not champion_first:
        return None
    return str(first)[:10], str(champion_first)[:10]


def _intake_words(r: DriftResult) -> str:
    d = r.details
    way = "more" if d["newcomers_now"] >= d["newcomers_then"] else "fewer"
    return (
        f"{d['newcomers_now']} users joined since the champion against "
        f"{d['newcomers_then']} in the interval before ({_f(d['ratio'], '.2f')}x, "
        f"{way}): the population's mix is changing (a new acquisition channel or campaign, "
        "or sign-ups no longer logged)"
    )


def _auc_drop_words(r: DriftResult) -> str:
    return (
        f"the champion's {r.subject} model lost {_f(r.score, '.3f')} ROC AUC on outcomes now known"
    )


def _ari_words(r: DriftResult) -> str:
    return f"the challenger's segments agree with the champion's only at ARI {_f(r.score, '.2f')}"


#: Per test: the sentence of a judged result and the action it alone calls for.
_FINDING_WORDS: dict[str, tuple[Callable[[DriftResult], str], Action]] = {
    "segment_share": (_segment_share_words, "promote"),
    "new_behaviour": (_new_behaviour_words, "retrain"),
    "event_vanished": (_event_vanished_words, "check_source"),
    "event_appeared": (_event_appeared_words, "check_source"),
    "nonzero_psi": (_nonzero_psi_words, "check_source"),
    "nonzero_shift": (_nonzero_shift_words, "check_source"),
    "aged_psi": (_aged_psi_words, "check_source"),
    "history": (_history_words, "check_source"),
    "auc_drop": (_auc_drop_words, "retrain"),
    "newcomer_intake": (_intake_words, "retrain"),
    "ari": (_ari_words, "promote"),
}

#: Finding kinds of a segment-share result by the change it saw.
_SEGMENT_CHANGE_KINDS = {"vanished": "segment_vanished", "appeared": "segment_appeared"}


def _established_words(result: DriftResult) -> str:
    e = result.details.get("established", {})
    if "ratio" in e:
        return f"{e['ratio']:.2f}x, ageing alone {e.get('expected_ratio', 1.0):.2f}x"
    if "current_share" in e:
        return f"{_pct(e['current_share'])}, ageing alone {_pct(e.get('expected_share', 0.0))}"
    if "raw_psi" in e:
        return f"PSI {e['raw_psi']:.2f}, ageing alone {e.get('expected_psi') or 0:.2f}"
    return f"score {e.get('score', math.nan):.3g}"


def _newcomer_words(result: DriftResult) -> str:
    words, _ = _FINDING_WORDS[result.test]
    return (
        f"users who joined since the champion changed the population: {words(result)}; "
        f"among users already there at the champion's snapshot it moved within ageing "
        f"({_established_words(result)})"
    )


def _plain_words(result: DriftResult) -> str:
    return f"{result.test} on {result.subject}: {result.score:.3g}"


def _words(describe: Callable[[DriftResult], str], result: DriftResult) -> str:
    """Return the sentence of ``result``, or its bare score when the sentence cannot be made.

    A drift.json written by another version, or edited by hand, may lack a detail
    the sentence needs: the report still renders.
    """
    try:
        return describe(result)
    except (KeyError, TypeError, ValueError, AttributeError):
        return _plain_words(result)


def _finding(result: DriftResult) -> Finding | None:
    """Return a judged result in words (None for OK results)."""
    if result.status == "OK":
        return None
    if result.details.get("carried_by") == "newcomers" and result.test in _FINDING_WORDS:
        return Finding(
            "new_behaviour",
            result.subject,
            result.status,
            _words(_newcomer_words, result),
            "retrain",
        )
    if result.test not in _FINDING_WORDS:
        return Finding(result.test, result.subject, result.status, _plain_words(result), "retrain")
    words, action = _FINDING_WORDS[result.test]
    kind, subject = result.test, result.subject
    if kind == "segment_share":
        kind = _SEGMENT_CHANGE_KINDS.get(str(result.details.get("change", "changed")), kind)
    elif kind == "new_behaviour":
        subject = "newcomers"
    return Finding(kind, subject, result.status, _words(words, result), action)


def _recommendation(action: Action, finding: Finding | None) -> str:
    if finding is None:
        return "No action: nothing changed beyond what ageing alone explains."
    if action == "no_action":
        return f"No action needed now; keep an eye on this: {finding.message}."
    if action == "check_source":
        what = {"event_vanished": "event", "event_appeared": "event"}.get(finding.kind, "feature")
        return f"Check the source of {what} {finding.subject}, then retrain: {finding.message}."
    if action == "promote":
        return (
            "Promote the challenger (trained on the new snapshot) after reviewing it: "
            f"{finding.message}."
        )
    text = f"Retrain (review the challenger, or train with new settings): {finding.message}."
    if finding.kind == "new_behaviour" and finding.subject != "newcomers":
        # A change only newcomers carry can still be a logging change that only
        # reaches new users (a new app version): say where to look if unexpected.
        text += " If newcomers should behave like earlier ones, check how their events are logged."
    return text


def decide(results: Sequence[DriftResult]) -> Verdict:
    """Turn judged results into a verdict: findings most important first and one recommendation.

    Findings are ordered by status (DRIFT first) and then by kind: vanished and
    appeared segments, new behaviour groups (including feature and share changes
    carried by newcomers, see :func:`newcomer_attribution`), vanished events,
    segment shares, feature values, the log's history, backtests, agreement. The
    first DRIFT finding decides the action; with only warnings the action is
    ``no_action``.

    Examples
    --------
    >>> r = DriftResult("event_vanished", "add_to_cart", 0.0, 0.1, 0.1, "DRIFT",
    ...                 {"share_then": 0.1, "share_now": 0.0, "count_then": 10, "count_now": 0})
    >>> decide([r]).recommendation.split(":")[0]
    'Check the source of event add_to_cart, then retrain'
    >>> decide([]).status
    'OK'
    """
    findings = [f for f in (_finding(r) for r in results) if f is not None]

    def order(f: Finding) -> tuple[int, int, bool]:
        kind = _KIND_ORDER.index(f.kind) if f.kind in _KIND_ORDER else len(_KIND_ORDER)
        # Among new-behaviour findings, the group itself before the changes it carries.
        return (-_LEVEL[f.status], kind, f.subject != "newcomers")

    findings.sort(key=order)
    if not findings:
        return Verdict("OK", (), "no_action", _recommendation("no_action", None), tuple(results))
    top = findings[0]
    status: Status = top.status
    action: Action = top.action if status == "DRIFT" else "no_action"
    recommendation = _recommendation(action, top)
    rewritten = [f.subject for f in findings if f.kind == "history" and f.status == "DRIFT"]
    if status == "DRIFT" and rewritten and top.kind != "history":
        # A past that changed explains most other findings: the source comes first.
        action = "check_source"
        shown = ", ".join(rewritten[:3]) + (", ..." if len(rewritten) > 3 else "")
        starts = next((_log_starts(r.details) for r in results if r.test == "history"), None)
        if starts is None:
            recommendation = (
                "Check the source of the log: its history before the champion's snapshot "
                f"changed ({shown}), and {top.message}."
            )
        else:
            recommendation = (
                f"Check the source of the log: it now starts on {starts[0]}, the champion's "
                f"training log on {starts[1]}, so its oldest events are missing (as in a "
                "rolling export) and its history before the champion's snapshot changed "
                f"({shown}). Refresh on a log reaching back to {starts[1]}, or train a new "
                f"champion on this one. Also: {top.message}."
            )
    return Verdict(status, tuple(findings), action, recommendation, tuple(results))
