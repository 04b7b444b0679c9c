"""Demo event-log generator with planted behavioral archetypes.

The generator draws every user's life cycle (start, end, session rate, spend)
from one of six archetypes, then sessions with a weekly cycle and an evening
peak, then events inside each session. It is fully vectorized with NumPy, so a
million users take seconds, and it is deterministic for a given seed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from segmentkit.errors import ConfigError

__all__ = [
    "ARCHETYPES",
    "EVENT_TYPES",
    "Archetype",
    "DemoLog",
    "archetypes_path_for",
    "ensure_demo_log",
    "generate_events",
    "write_demo_log",
]

DEFAULT_END = dt.date(2025, 1, 1)
# Bump when the generator's output changes, so cached demo logs are regenerated.
GENERATOR_VERSION = 2

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
_N_BROWSE = 5

# Monday..Sunday: weekends busier.
_WEEKDAY_WEIGHT = np.array([0.85, 0.85, 0.9, 0.9, 1.0, 1.35, 1.25])
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
    ``end`` for users whose activity is a short burst after they start.
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


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype("power_user", 0.10, (0.0, 0.5), (1.0, 1.0), 0.5, 5.0, 0.10, 45.0,
              (0.35, 0.22, 0.30, 0.08, 0.05)),
    Archetype("casual", 0.30, (0.0, 0.5), (1.0, 1.0), 0.15, 3.0, 0.0, 35.0,
              (0.55, 0.10, 0.28, 0.05, 0.02)),
    Archetype("new", 0.12, (0.93, 0.995), (1.0, 1.0), 0.3, 4.0, 0.0, 40.0,
              (0.50, 0.15, 0.27, 0.06, 0.02), lapse_probability=0.03),
    Archetype("at_risk", 0.16, (0.0, 0.45), (0.78, 0.9), 0.2, 4.0, 0.15, 40.0,
              (0.50, 0.12, 0.30, 0.06, 0.02), declining=True),
    Archetype("dormant", 0.22, (0.0, 0.3), (0.0, 0.0), 0.3, 3.0, 0.0, 30.0,
              (0.60, 0.10, 0.25, 0.04, 0.01), lifetime_days=(10, 40)),
    Archetype("big_spender", 0.10, (0.0, 0.6), (1.0, 1.0), 0.2, 4.0, 0.40, 250.0,
              (0.30, 0.15, 0.33, 0.20, 0.02)),
)  # fmt: skip


@dataclass(frozen=True)
class DemoLog:
    """A generated event log and the archetype planted in each user."""

    events: pd.DataFrame
    archetypes: pd.DataFrame
    end: dt.date


def generate_events(
    n_users: int,
    n_days: int,
    seed: int = 0,
    end: dt.date = DEFAULT_END,
    archetypes: tuple[Archetype, ...] = ARCHETYPES,
) -> DemoLog:
    """Generate a realistic event log with planted archetypes.

    Parameters
    ----------
    n_users : int
        Number of users (each gets at least one event).
    n_days : int
        Span of the log in days, ending just before ``end``.
    seed : int
        Seed of the random generator; the same seed gives the same log.
    end : datetime.date
        Day after the last possible event (a natural ``as_of``).
    archetypes : tuple of Archetype
        Behaviors and their shares.

    Returns
    -------
    DemoLog
        ``events`` has columns ``user_id, timestamp, event, revenue, session_id``
        sorted by timestamp; ``archetypes`` has ``user_id, archetype``.

    Examples
    --------
    >>> log = generate_events(n_users=50, n_days=60, seed=1)
    >>> sorted(log.events.columns)
    ['event', 'revenue', 'session_id', 'timestamp', 'user_id']
    >>> log.archetypes["user_id"].nunique()
    50
    """
    if n_users < 1:
        raise ConfigError(f"demo data: users must be at least 1, got {n_users}")
    if n_days < 30:
        raise ConfigError(f"demo data: days must be at least 30, got {n_days}")
    rng = np.random.default_rng(seed)
    shares = np.array([a.share for a in archetypes])
    arch = rng.choice(len(archetypes), size=n_users, p=shares / shares.sum())

    start, stop = _life_spans(rng, arch, archetypes, n_days)
    rate = np.array([a.sessions_per_day for a in archetypes])[arch]
    # Per-user spread of the session rate (mean 1, coefficient of variation 0.35).
    rate = rate * rng.gamma(shape=8.0, scale=0.125, size=n_users)
    n_sessions = rng.poisson(rate * (stop - start) / 0.75)  # 0.75 = mean weekday acceptance
    n_sessions = np.maximum(n_sessions, 1)

    sess_user = np.repeat(np.arange(n_users), n_sessions)
    u = rng.random(sess_user.size)
    declining = np.array([a.declining for a in archetypes])[arch][sess_user]
    u = np.where(declining, 1.0 - np.sqrt(1.0 - u), u)  # density falling linearly to 0
    sess_time = start[sess_user] + u * (stop - start)[sess_user]
    day = np.floor(sess_time)
    weekday = (day.astype(np.int64) + _epoch_weekday(end, n_days)) % 7
    keep = rng.random(day.size) < _WEEKDAY_WEIGHT[weekday] / _WEEKDAY_WEIGHT.max()
    first = np.r_[True, sess_user[1:] != sess_user[:-1]]
    keep |= first  # every user keeps at least one session
    sess_user, day = sess_user[keep], day[keep]

    hour = rng.choice(24, size=day.size, p=_HOUR_WEIGHT / _HOUR_WEIGHT.sum())
    sess_start = (day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, day.size)).astype(np.int64)
    n_sess = sess_start.size

    ev_mean = np.array([a.events_per_session for a in archetypes])[arch][sess_user]
    n_ev = 1 + rng.poisson(ev_mean - 1.0)
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
    draw = rng.random(ev_sess.size)
    code = (draw[:, None] > mix[ev_arch]).sum(axis=1).astype(np.int8)
    revenue = np.zeros(ev_sess.size)

    p_buy = np.array([a.purchase_per_session for a in archetypes])[arch][sess_user]
    bought = rng.random(n_sess) < p_buy
    last_in_sess = first_in_sess + n_ev - 1
    buy_rows = last_in_sess[bought]
    code[buy_rows] = _PURCHASE
    cart_rows = buy_rows[n_ev[bought] > 1] - 1
    code[cart_rows] = _ADD_TO_CART
    aov = np.array([a.order_value for a in archetypes])[ev_arch[buy_rows]]
    revenue[buy_rows] = np.round(aov * rng.lognormal(-0.18, 0.6, buy_rows.size), 2)

    # A few orders are refunded some days later, as a negative-revenue event.
    refunded = buy_rows[rng.random(buy_rows.size) < 0.03]
    ref_time = ev_time[refunded] + rng.integers(86_400, 10 * 86_400, refunded.size)
    ev_time = np.r_[ev_time, ref_time]
    ev_user = np.r_[ev_user, ev_user[refunded]]
    code = np.r_[code, np.full(refunded.size, _REFUND, dtype=np.int8)]
    revenue = np.r_[revenue, -revenue[refunded]]
    session = np.r_[ev_sess, ev_sess[refunded]].astype(np.int64)

    horizon = n_days * 86_400
    inside = ev_time < horizon
    order = np.argsort(ev_time[inside], kind="stable")
    origin = pd.Timestamp(end) - pd.Timedelta(days=n_days)
    user_names = np.array([f"u{i:07d}" for i in range(n_users)], dtype=object)
    user_codes = ev_user[inside][order]
    events = pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(user_codes, categories=user_names),
            "timestamp": origin + pd.to_timedelta(ev_time[inside][order], unit="s"),
            "event": pd.Categorical.from_codes(code[inside][order], categories=EVENT_TYPES),
            "revenue": revenue[inside][order],
            "session_id": session[inside][order] + 1,
        }
    )
    # Users whose only events were pushed past the end still exist in the truth table;
    # drop them so that every listed user has at least one event.
    present = np.zeros(n_users, dtype=bool)
    present[user_codes] = True
    truth = pd.DataFrame(
        {
            "user_id": user_names[present],
            "archetype": np.array([a.name for a in archetypes], dtype=object)[arch[present]],
        }
    )
    return DemoLog(events=events, archetypes=truth, end=end)


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


def _epoch_weekday(end: dt.date, n_days: int) -> int:
    return (end - dt.timedelta(days=n_days)).weekday()


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


def ensure_demo_log(users: int, days: int, seed: int, path: str | Path) -> Path:
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
        "end": DEFAULT_END.isoformat(),
        "generator": GENERATOR_VERSION,
    }
    if path.is_file() and stamp.is_file():
        try:
            if json.loads(stamp.read_text(encoding="utf-8")) == wanted:
                return path
        except json.JSONDecodeError:
            pass
    write_demo_log(generate_events(users, days, seed=seed), path)
    stamp.write_text(json.dumps(wanted), encoding="utf-8")
    return path
