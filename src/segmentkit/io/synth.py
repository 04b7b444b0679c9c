"""Demo event-log generator: planted behavioral archetypes in named scenarios.

Every user belongs to one archetype (the ground truth a benchmark compares
segments with). Archetypes set a life cycle (start, end, decline, lapse) and
typical rates; every user then gets their own session rate, purchase
probability, order value and session depth, drawn around the archetype's with
lognormal spread (``sigma`` >= 0.5 on rates and order values), so spend is
heavy-tailed and archetypes overlap the way real users do. Sessions follow a
weekly cycle and an evening peak, plus the scenario's seasonality and base-rate
shift (thinning of a Poisson process, so the expected count is exact). The code
is vectorized with NumPy (a million users take seconds) and deterministic for a
given seed.

Scenarios (:data:`SCENARIOS`, ``segmentkit demo-data --scenario NAME``):

``default``
    Six archetypes of a shop with browsing and buying (the demo log).
``small_vip``
    Four large archetypes and a small (4 %) group that buys often at high
    order value: the group a k rule must not merge into its neighbour.
``new_users``
    A quarter of the users arrived within the last 30 days (tenure under one
    window), beside established and lapsed users.
``seasonal``
    The default archetypes with a yearly cycle (peak in early December) and a
    base-rate shift: from 70 % of the span on, sessions are 25 % more frequent
    and sessions convert 30 % more often.
``transactions``
    A transaction table (one ``purchase`` row per order, no browsing events and
    no session ids) of a retailer where most customers lapsed long ago.
``overlap``
    The default archetypes with wider spread (``sigma`` 0.8) and closer rates:
    no clustering recovers them cleanly; useful to see what degrades.

Life cycles (``lifecycle=``): by default (``"span"``) an archetype's start and end
are fractions of the span, so a whole archetype can stop within a fixed stretch of
calendar days (e.g. every ``at_risk`` user between 78 % and 90 % of it): a cliff in
the base rate that no earlier period shows. With ``"hazard"`` users arrive
uniformly over the span and lapse with a constant hazard in calendar time (an
exponential lifetime whose mean is the archetype's mean life under ``"span"``), so
the population and its base rate change smoothly, as in a real log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from segmentkit.errors import ConfigError

__all__ = [
    "ARCHETYPES",
    "EVENT_TYPES",
    "LIFECYCLES",
    "SCENARIOS",
    "Archetype",
    "DemoLog",
    "Scenario",
    "archetypes_path_for",
    "ensure_demo_log",
    "generate_events",
    "write_demo_log",
]

DEFAULT_END = dt.date(2025, 1, 1)
# How users' life spans are drawn (see the module docstring).
LIFECYCLES: tuple[str, ...] = ("span", "hazard")
# Bump when the generator's output changes, so cached demo logs are regenerated.
GENERATOR_VERSION = 3

# Browsing events drawn inside a session; purchase and refund are placed separately.
EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "search",
    "product_view",
    "add_to_cart",
    "share",
    "purchase",
    "refund",
)
_PURCHASE = EVENT_TYPES.index("purchase")
_REFUND = EVENT_TYPES.index("refund")
_ADD_TO_CART = EVENT_TYPES.index("add_to_cart")

# Monday..Sunday: weekends busier (mean 1).
_WEEKDAY_WEIGHT = np.array([0.85, 0.85, 0.9, 0.9, 1.0, 1.35, 1.25])
_WEEKDAY_WEIGHT = _WEEKDAY_WEIGHT / _WEEKDAY_WEIGHT.mean()
# Hour-of-day weights (UTC): quiet nights, evening peak.
_HOUR_WEIGHT = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.2, 2.5, 2.6, 2.7,
     3.0, 2.9, 2.7, 2.6, 2.8, 3.2, 3.8, 4.3, 4.5, 3.8, 2.8, 1.8],
    dtype=float,
)  # fmt: skip


@dataclass(frozen=True)
class Archetype:
    """How one kind of user behaves.

    Start and end are fractions of the log's span; ``lifetime_days`` overrides
    ``end`` for users whose activity is a short burst after they start. Rates are
    the archetype's medians: each user's own rate is drawn around them with a
    lognormal spread of ``rate_sigma`` (sessions, purchase probability) and
    ``value_sigma`` (order value).
    """

    name: str
    share: float
    start: tuple[float, float]
    end: tuple[float, float]
    sessions_per_day: float
    events_per_session: float
    purchase_per_session: float
    order_value: float
    browse_mix: tuple[float, float, float, float, float]
    declining: bool = False
    lifetime_days: tuple[int, int] | None = None
    lapse_probability: float = 0.0
    rate_sigma: float = 0.5
    value_sigma: float = 0.5


_MIX_BROWSER = (0.55, 0.10, 0.28, 0.05, 0.02)
_MIX_BUYER = (0.30, 0.15, 0.33, 0.20, 0.02)
_MIX_DEFAULT = (0.50, 0.12, 0.30, 0.06, 0.02)

ARCHETYPES: tuple[Archetype, ...] = (
    Archetype("power_user", 0.12, (0.0, 0.5), (1.0, 1.0), 0.6, 6.0, 0.04, 30.0,
              (0.35, 0.22, 0.30, 0.08, 0.05)),
    Archetype("casual", 0.24, (0.0, 0.5), (1.0, 1.0), 0.15, 3.0, 0.0, 35.0, _MIX_BROWSER),
    Archetype("new", 0.12, (0.93, 0.995), (1.0, 1.0), 0.3, 4.0, 0.0, 40.0, _MIX_DEFAULT,
              lapse_probability=0.03),
    Archetype("at_risk", 0.18, (0.0, 0.45), (0.78, 0.9), 0.2, 4.0, 0.15, 40.0, _MIX_DEFAULT,
              declining=True),
    Archetype("dormant", 0.22, (0.0, 0.3), (0.0, 0.0), 0.3, 3.0, 0.0, 30.0,
              (0.60, 0.10, 0.25, 0.04, 0.01), lifetime_days=(10, 40)),
    Archetype("big_spender", 0.12, (0.0, 0.6), (1.0, 1.0), 0.12, 4.0, 0.5, 200.0, _MIX_BUYER),
)  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    """A named population and calendar for :func:`generate_events`.

    Attributes
    ----------
    name, description : str
        Identification.
    archetypes : tuple of Archetype
        Behaviours and their shares.
    distinct_groups : int or None
        How many segments a clustering should find (the archetypes that are
        distinct in behaviour); None when the structure is not clear.
    small_group : str or None
        The archetype a k rule must keep as its own segment, if any.
    season_amplitude : float
        Relative amplitude of a yearly cycle of activity (0 = none), peaking on
        ``season_peak`` (month, day).
    shift_at, shift_sessions, shift_purchases : float
        From the fraction ``shift_at`` of the span on, session rates are
        multiplied by ``shift_sessions`` and purchase probabilities by
        ``shift_purchases`` (a base-rate shift).
    transactions_only : bool
        Emit only orders, as ``purchase`` rows (a refund is a ``purchase`` row
        with negative revenue), without session ids: a transaction table.
    """

    name: str
    description: str
    archetypes: tuple[Archetype, ...]
    distinct_groups: int | None
    small_group: str | None = None
    season_amplitude: float = 0.0
    season_peak: tuple[int, int] = (12, 10)
    shift_at: float = 1.0
    shift_sessions: float = 1.0
    shift_purchases: float = 1.0
    transactions_only: bool = False


def _widen(archetypes: tuple[Archetype, ...], sigma: float) -> tuple[Archetype, ...]:
    return tuple(dataclasses.replace(a, rate_sigma=sigma, value_sigma=sigma) for a in archetypes)


_BY_NAME = {a.name: a for a in ARCHETYPES}


def _variant(name: str, share: float, **changes: Any) -> Archetype:
    """Return the archetype of :data:`ARCHETYPES` called ``name`` with another share."""
    return dataclasses.replace(_BY_NAME[name], share=share, **changes)


_SMALL_VIP = (
    _variant("power_user", 0.16),
    _variant("casual", 0.32),
    _variant("at_risk", 0.22, end=(0.7, 0.85)),
    _variant("dormant", 0.26),
    Archetype("vip", 0.04, (0.0, 0.6), (1.0, 1.0), 0.3, 5.0, 0.5, 300.0, _MIX_BUYER),
)

_NEW_USERS = (
    _variant("power_user", 0.12),
    _variant("casual", 0.25),
    _variant("new", 0.25, start=(0.875, 0.995), purchase_per_session=0.05, lapse_probability=0.05),
    _variant("dormant", 0.25),
    _variant("big_spender", 0.13),
)

# Transaction table: a "session" is an order (purchase_per_session = 1).
_TRANSACTIONS = (
    Archetype("champion", 0.08, (0.0, 0.4), (1.0, 1.0), 0.12, 1.0, 1.0, 150.0, _MIX_BUYER),
    Archetype("loyal", 0.17, (0.0, 0.5), (1.0, 1.0), 0.05, 1.0, 1.0, 45.0, _MIX_BUYER),
    Archetype("new", 0.10, (0.9, 0.99), (1.0, 1.0), 0.06, 1.0, 1.0, 60.0, _MIX_BUYER),
    Archetype("at_risk", 0.15, (0.0, 0.3), (0.7, 0.82), 0.08, 1.0, 1.0, 70.0, _MIX_BUYER),
    Archetype("lost", 0.50, (0.0, 0.35), (0.0, 0.0), 0.03, 1.0, 1.0, 40.0, _MIX_BUYER,
              lifetime_days=(1, 30)),
)  # fmt: skip

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("default", "six archetypes of a shop with browsing and buying", ARCHETYPES, 6),
        Scenario(
            "small_vip",
            "four large archetypes and a small (4%) group buying often at high value",
            _SMALL_VIP,
            5,
            small_group="vip",
        ),
        Scenario(
            "new_users",
            "a quarter of the users arrived within the last 30 days",
            _NEW_USERS,
            5,
            small_group=None,
        ),
        Scenario(
            "seasonal",
            "default archetypes, a yearly cycle peaking in December and a base-rate shift",
            ARCHETYPES,
            6,
            season_amplitude=0.35,
            shift_at=0.7,
            shift_sessions=1.25,
            shift_purchases=1.3,
        ),
        Scenario(
            "transactions",
            "a transaction table (orders only) where most customers lapsed long ago",
            _TRANSACTIONS,
            5,
            transactions_only=True,
        ),
        Scenario(
            "overlap",
            "default archetypes with wide spread (sigma 0.8): heavy overlap",
            _widen(ARCHETYPES, 0.8),
            None,
        ),
    )
}


@dataclass(frozen=True)
class DemoLog:
    """A generated event log and its ground truth.

    Attributes
    ----------
    events : DataFrame
        ``user_id, timestamp, event, revenue, session_id`` (no ``session_id`` for
        a transaction table), sorted by timestamp.
    archetypes : DataFrame
        The truth table, one row per user with at least one event:
        ``user_id, archetype, start_day, stop_day`` (days from the log's first
        day: when the user's activity began and the latest it could end).
    end : datetime.date
        Day after the last possible event (a natural ``as_of``).
    scenario : str
        Name of the scenario generated.
    """

    events: pd.DataFrame
    archetypes: pd.DataFrame
    end: dt.date
    scenario: str = "default"

    @property
    def truth(self) -> pd.DataFrame:
        """The truth table (same as :attr:`archetypes`)."""
        return self.archetypes


def generate_events(
    users: int | None = None,
    days: int | None = None,
    seed: int = 0,
    end: dt.date = DEFAULT_END,
    archetypes: tuple[Archetype, ...] | None = None,
    *,
    scenario: str = "default",
    n_users: int | None = None,
    n_days: int | None = None,
    lifecycle: str = "span",
) -> DemoLog:
    """Generate an event log with planted archetypes.

    Parameters
    ----------
    users : int
        Number of users (each listed user has at least one event).
    days : int
        Span of the log in days, ending just before ``end``.
    seed : int
        Seed of the random generator; the same seed gives the same log.
    end : datetime.date
        Day after the last possible event (a natural ``as_of``).
    archetypes : tuple of Archetype, optional
        Replace the scenario's archetypes (its calendar effects still apply).
    scenario : str, default="default"
        A name in :data:`SCENARIOS`.
    n_users, n_days : int, optional
        Older names of ``users`` and ``days``.
    lifecycle : {"span", "hazard"}, default="span"
        ``"span"``: start and end are the archetype's fractions of the span;
        ``"hazard"``: users arrive uniformly over the span and lapse with a constant
        hazard in calendar time (no archetype stops at a fixed date).

    Returns
    -------
    DemoLog
        The events and the truth table.

    Examples
    --------
    >>> log = generate_events(users=50, days=60, seed=1)
    >>> sorted(log.events.columns)
    ['event', 'revenue', 'session_id', 'timestamp', 'user_id']
    >>> log.truth["user_id"].nunique()
    50
    >>> tx = generate_events(scenario="transactions", users=50, days=60, seed=1)
    >>> tx.events["event"].unique().tolist(), "session_id" in tx.events
    (['purchase'], False)
    """
    users = _pick(users, n_users, "users")
    days = _pick(days, n_days, "days")
    if scenario not in SCENARIOS:
        raise ConfigError(
            f"demo data: unknown scenario {scenario!r}; choose one of {sorted(SCENARIOS)}"
        )
    if users < 1:
        raise ConfigError(f"demo data: users must be at least 1, got {users}")
    if days < 30:
        raise ConfigError(f"demo data: days must be at least 30, got {days}")
    if lifecycle not in LIFECYCLES:
        raise ConfigError(
            f"demo data: unknown lifecycle {lifecycle!r}; choose one of {list(LIFECYCLES)}"
        )
    spec = SCENARIOS[scenario]
    if archetypes is not None:
        spec = dataclasses.replace(spec, archetypes=tuple(archetypes))
    return _generate(spec, users, days, seed, end, lifecycle)


def _pick(value: int | None, old: int | None, name: str) -> int:
    if value is not None and old is not None and value != old:
        raise ConfigError(f"demo data: {name} given twice ({value} and {old})")
    chosen = value if value is not None else old
    if chosen is None:
        raise ConfigError(f"demo data: {name} is required")
    return int(chosen)


def _generate(
    spec: Scenario, n_users: int, n_days: int, seed: int, end: dt.date, lifecycle: str = "span"
) -> DemoLog:
    archetypes = spec.archetypes
    rng = np.random.default_rng(seed)
    shares = np.array([a.share for a in archetypes])
    arch = rng.choice(len(archetypes), size=n_users, p=shares / shares.sum())

    def per_arch(attr: str) -> np.ndarray:
        return np.array([getattr(a, attr) for a in archetypes], dtype=float)[arch]

    if lifecycle == "hazard":
        start, stop, life_end = _hazard_life_spans(rng, arch, archetypes, n_days)
    else:
        start, stop = _life_spans(rng, arch, archetypes, n_days)
        life_end = stop
    rate_sigma = per_arch("rate_sigma")
    value_sigma = per_arch("value_sigma")
    # Each user's own rates: lognormal around the archetype's median.
    rate = per_arch("sessions_per_day") * rng.lognormal(0.0, rate_sigma)
    p_buy_user = np.minimum(per_arch("purchase_per_session") * rng.lognormal(0.0, rate_sigma), 1.0)
    p_buy_user = np.where(per_arch("purchase_per_session") >= 1.0, 1.0, p_buy_user)
    aov_user = per_arch("order_value") * rng.lognormal(0.0, value_sigma)
    depth_user = rng.lognormal(0.0, 0.3, n_users)
    declining = np.array([a.declining for a in archetypes])[arch]

    # Sessions by thinning: propose at the peak intensity, accept with intensity / peak.
    day_weight = _day_weights(spec, n_days, end)
    peak = day_weight.max() * np.where(declining, 2.0, 1.0)
    n_prop = rng.poisson(rate * (stop - start) * peak)
    n_prop = np.maximum(n_prop, 1)
    sess_user = np.repeat(np.arange(n_users), n_prop)
    sess_time = start[sess_user] + rng.random(sess_user.size) * (stop - start)[sess_user]
    day = np.minimum(np.floor(sess_time), n_days - 1).astype(np.int64)
    intensity = day_weight[day]
    # A declining user fades over their whole life, which may run past the log's end.
    span = (life_end - start)[sess_user]
    decline = 2.0 * (1.0 - (sess_time - start[sess_user]) / span)
    intensity = np.where(declining[sess_user], intensity * decline, intensity)
    keep = rng.random(day.size) * peak[sess_user] < intensity
    first = np.r_[True, sess_user[1:] != sess_user[:-1]]
    keep |= first  # every user keeps at least one session
    sess_user, day = sess_user[keep], day[keep]

    hour = rng.choice(24, size=day.size, p=_HOUR_WEIGHT / _HOUR_WEIGHT.sum())
    sess_start = (day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, day.size)).astype(np.int64)
    n_sess = sess_start.size

    p_buy = p_buy_user[sess_user] * np.where(
        day >= spec.shift_at * n_days, spec.shift_purchases, 1.0
    )
    bought = rng.random(n_sess) < np.minimum(p_buy, 1.0)
    if spec.transactions_only:
        n_ev = np.ones(n_sess, dtype=np.int64)
    else:
        ev_mean = per_arch("events_per_session")[sess_user] * depth_user[sess_user]
        n_ev = 1 + rng.poisson(np.maximum(ev_mean - 1.0, 0.0))
    ev_sess = np.repeat(np.arange(n_sess), n_ev)
    gaps = 1 + np.minimum(rng.exponential(50.0, ev_sess.size), 1_200).astype(np.int64)
    first_in_sess = np.r_[0, np.cumsum(n_ev)[:-1]]
    gaps[first_in_sess] = 0
    offset = np.cumsum(gaps)
    offset -= np.repeat(offset[first_in_sess], n_ev)
    ev_time = sess_start[ev_sess] + offset
    ev_user = sess_user[ev_sess]
    ev_arch = arch[ev_user]

    mix = np.cumsum(np.array([a.browse_mix for a in archetypes]), axis=1)
    mix /= mix[:, -1:]
    code = (rng.random(ev_sess.size)[:, None] > mix[ev_arch]).sum(axis=1).astype(np.int8)
    revenue = np.zeros(ev_sess.size)
    last_in_sess = first_in_sess + n_ev - 1
    buy_rows = last_in_sess[bought]
    code[buy_rows] = _PURCHASE
    cart_rows = buy_rows[n_ev[bought] > 1] - 1
    code[cart_rows] = _ADD_TO_CART
    order_value = aov_user[ev_user[buy_rows]] * rng.lognormal(-0.18, 0.6, buy_rows.size)
    revenue[buy_rows] = np.round(np.maximum(order_value, 0.5), 2)

    # A few orders are refunded some days later, as a negative-revenue event.
    refunded = buy_rows[rng.random(buy_rows.size) < 0.03]
    ref_time = ev_time[refunded] + rng.integers(86_400, 10 * 86_400, refunded.size)
    ev_time = np.r_[ev_time, ref_time]
    ev_user = np.r_[ev_user, ev_user[refunded]]
    code = np.r_[code, np.full(refunded.size, _REFUND, dtype=np.int8)]
    revenue = np.r_[revenue, -revenue[refunded]]
    session = np.r_[ev_sess, ev_sess[refunded]].astype(np.int64)

    inside = ev_time < n_days * 86_400
    if spec.transactions_only:
        inside &= (code == _PURCHASE) | (code == _REFUND)
    order = np.argsort(ev_time[inside], kind="stable")
    origin = pd.Timestamp(end) - pd.Timedelta(days=n_days)
    user_names = np.array([f"u{i:07d}" for i in range(n_users)], dtype=object)
    user_codes = ev_user[inside][order]
    columns = {
        "user_id": pd.Categorical.from_codes(user_codes, categories=user_names),
        "timestamp": origin + pd.to_timedelta(ev_time[inside][order], unit="s"),
        "event": pd.Categorical.from_codes(code[inside][order], categories=EVENT_TYPES),
        "revenue": revenue[inside][order],
    }
    if spec.transactions_only:
        # One event type, as in a shop's order table: refunds are negative purchases.
        columns["event"] = pd.Categorical.from_codes(
            np.zeros(user_codes.size, dtype=np.int8), categories=["purchase"]
        )
    else:
        columns["session_id"] = session[inside][order] + 1
    events = pd.DataFrame(columns)
    # Users whose only events fell past the end (or were browsing in a transaction
    # table) do not exist in the log; the truth table lists only users present.
    present = np.zeros(n_users, dtype=bool)
    present[user_codes] = True
    truth = pd.DataFrame(
        {
            "user_id": user_names[present],
            "archetype": np.array([a.name for a in archetypes], dtype=object)[arch[present]],
            "start_day": np.round(start[present], 3),
            "stop_day": np.round(stop[present], 3),
        }
    )
    return DemoLog(events=events, archetypes=truth, end=end, scenario=spec.name)


def _day_weights(spec: Scenario, n_days: int, end: dt.date) -> np.ndarray:
    """Relative activity per day of the log: weekly cycle, season and shift."""
    first = end - dt.timedelta(days=n_days)
    dates = pd.date_range(first, periods=n_days, freq="D")
    weight = _WEEKDAY_WEIGHT[dates.day_of_week.to_numpy()]
    if spec.season_amplitude:
        peak = dt.date(first.year, *spec.season_peak)
        phase = (dates - pd.Timestamp(peak)).days.to_numpy() / 365.25
        weight = weight * (1.0 + spec.season_amplitude * np.cos(2.0 * np.pi * phase))
    shifted = np.arange(n_days) >= spec.shift_at * n_days
    return weight * np.where(shifted, spec.shift_sessions, 1.0)


def _life_spans(
    rng: np.random.Generator, arch: np.ndarray, archetypes: tuple[Archetype, ...], n_days: int
) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([a.start[0] for a in archetypes])[arch]
    hi = np.array([a.start[1] for a in archetypes])[arch]
    start = (lo + rng.random(arch.size) * (hi - lo)) * n_days
    end_lo = np.array([a.end[0] for a in archetypes])[arch]
    end_hi = np.array([a.end[1] for a in archetypes])[arch]
    stop = (end_lo + rng.random(arch.size) * (end_hi - end_lo)) * n_days
    life = np.array([a.lifetime_days or (0, 0) for a in archetypes])[arch]
    has_life = np.array([a.lifetime_days is not None for a in archetypes])[arch]
    burst = start + life[:, 0] + rng.random(arch.size) * (life[:, 1] - life[:, 0])
    stop = np.where(has_life, np.minimum(burst, 0.55 * n_days), stop)
    lapse = rng.random(arch.size) < np.array([a.lapse_probability for a in archetypes])[arch]
    lapse_at = start + rng.random(arch.size) * (n_days - start)
    stop = np.where(lapse, np.minimum(stop, lapse_at), stop)
    stop = np.maximum(stop, start + 1.0)
    return start, np.minimum(stop, n_days)


def _mean_lifetimes(archetypes: tuple[Archetype, ...], n_days: int) -> np.ndarray:
    """Mean life in days per archetype under ``"span"`` (inf: it never stops).

    A burst lasts ``lifetime_days``; an archetype ending before the log's end lives
    from its mean start to its mean end; one that runs to the end lives forever, but
    for its ``lapse_probability``: the mean of the exponential life that lapses with
    that probability within the span.
    """
    means = []
    for a in archetypes:
        if a.lifetime_days is not None:
            means.append(float(np.mean(a.lifetime_days)))
        elif np.mean(a.end) < 1.0:
            means.append(max(float(np.mean(a.end) - np.mean(a.start)) * n_days, 1.0))
        elif a.lapse_probability > 0.0:
            means.append(n_days / -np.log1p(-min(a.lapse_probability, 1.0 - 1e-12)))
        else:
            means.append(np.inf)
    return np.array(means)


def _hazard_life_spans(
    rng: np.random.Generator, arch: np.ndarray, archetypes: tuple[Archetype, ...], n_days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrivals uniform over the span, exponential lifetimes: a constant lapse hazard.

    Returns the start, the last day of activity inside the log and the end of life
    (which may fall after the log's end).
    """
    start = rng.random(arch.size) * n_days
    mean = _mean_lifetimes(archetypes, n_days)[arch]
    life = rng.exponential(1.0, arch.size) * np.where(np.isfinite(mean), mean, 0.0)
    life_end = np.where(np.isfinite(mean), start + np.maximum(life, 1.0), np.inf)
    stop = np.minimum(life_end, n_days)
    # A user's life beyond the log ends no later than a span after it, which keeps the
    # decline of a declining archetype finite without a calendar date where it ends.
    life_end = np.minimum(life_end, stop + n_days)
    return start, np.maximum(stop, np.minimum(start + 1.0, n_days)), life_end


def archetypes_path_for(events_path: str | Path) -> Path:
    """Return where the archetype truth table of a demo log is written.

    Examples
    --------
    >>> archetypes_path_for("data/demo.parquet").name
    'demo_archetypes.parquet'
    """
    path = Path(events_path)
    return path.with_name(f"{path.stem}_archetypes{path.suffix}")


def write_demo_log(log: DemoLog, out: str | Path) -> tuple[Path, Path]:
    """Write a demo log and its archetype table, Parquet or CSV by suffix.

    Parameters
    ----------
    log : DemoLog
        Output of :func:`generate_events`.
    out : str or Path
        Events file; the archetypes go beside it (see :func:`archetypes_path_for`).

    Returns
    -------
    tuple of Path
        The events file and the archetypes file.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ConfigError(f"output {out}: expected a .parquet or .csv file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    truth_path = archetypes_path_for(out)
    for frame, path in ((log.events, out), (log.archetypes, truth_path)):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        tmp = path.with_name(f".{path.name}.tmp")
        if suffix == ".parquet":
            pq.write_table(table, tmp, row_group_size=1_000_000)
        else:
            table = table.cast(
                pa.schema(
                    [
                        pa.field(f.name, pa.string())
                        if pa.types.is_dictionary(f.type)
                        else pa.field(f.name, f.type)
                        for f in table.schema
                    ]
                )
            )
            pacsv.write_csv(table, tmp)
        tmp.replace(path)
    return out, truth_path


def ensure_demo_log(
    users: int, days: int, seed: int, path: str | Path, scenario: str = "default"
) -> Path:
    """Return ``path`` holding the demo log for these settings, generating it if needed.

    A small JSON file beside the log records the settings, so a log generated
    with other settings is replaced rather than reused.
    """
    path = Path(path)
    stamp = path.with_name(f"{path.name}.settings.json")
    wanted = {
        "users": users,
        "days": days,
        "seed": seed,
        "scenario": scenario,
        "end": DEFAULT_END.isoformat(),
        "generator": GENERATOR_VERSION,
    }
    if path.is_file() and stamp.is_file():
        try:
            if json.loads(stamp.read_text(encoding="utf-8")) == wanted:
                return path
        except json.JSONDecodeError:
            pass
    write_demo_log(generate_events(users, days, seed=seed, scenario=scenario), path)
    stamp.write_text(json.dumps(wanted), encoding="utf-8")
    return path
