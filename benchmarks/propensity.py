"""Realized out-of-time quality of segmentkit's propensity models against baselines.

Per scenario, models are trained with ``as_of = end - horizon`` (nothing after it is
read) and judged on what really happened in ``[as_of, end)``: the situation of a
user scoring today and looking back in a month. Beside segmentkit: BG/NBD (fitted on
the purchase history, and on activity for churn), a tie-aware RFM quintile score,
recency alone and frequency alone (the user's purchases; active days for churn), the
baselines mapped to probabilities / counts on the latest labeled snapshot
(``as_of - horizon``), the same split and the same users. The count's Spearman
correlation ranks every model by its own score (see :func:`metrics`).

Beside the realized figures it prints what explains a calibration miss: the purchase
rate of every labeled snapshot the models saw and the realized one, the worst decile
gap on segmentkit's own out-of-time evaluation snapshot (``as_of - horizon``, inside
the history) next to the realized one, segmentkit's predicted and observed rate per
decile, the worst decile gap once the level is right (``gap_at_level``: every
log-odds moved by ``level_error``, the shift that matches the realized rate; what is
left is the shape of the calibration map and noise, ``gap_floor``), and for the
generated logs the rate of every planted archetype in the latest labeled window and
in the scored one.

The realistic scenarios (see :func:`scenarios`) stand in for real logs: a CDNOW-like
single cohort, a seasonal order table scored at the peak, on the rise and with a year
of history only, and the demo archetypes with constant-hazard lapses. The generator's
default life cycles are fractions of the span (the ``at_risk`` archetype of every
scenario stops between 70-82 % or 78-90 % of it), so in the scenarios built on them
(:data:`CLIFF`, flagged in the output) a whole archetype lapses between the latest
labeled window and the scored one: the scored period is not like any period in the
history, and no model fitted on the past can be calibrated on it.

One real log is offered, named explicitly (it is never part of the default run):
``cdnow``, CDNOW's full purchase log (23,570 customers who first bought in the first
quarter of 1997, every purchase to 30 June 1998; Fader & Hardie's data set and the
issue's log A). It is fetched once from the ``lifetimes`` wheel on PyPI, checked
against the SHA-256 pinned here and kept in ``benchmarks/.data``; ``--cdnow-end``
moves the cut-off back (the log is read as exported that day) for other origins.

Usage: python benchmarks/propensity.py [n_users] [scenario ...] [--horizon DAYS] [--draw N]
[--seasonal-days DAYS] [--cdnow-end DATE] (default 20000 users, a
30-day horizon, every generated scenario; ``--draw N`` > 0: other random draws of the
same scenarios; ``--seasonal-days`` moves the seasonal order table's start back, same
arrivals per day). A log too short for the horizon is reported as skipped.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import spearmanr
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from segmentkit.config import FeatureConfig, PropensityConfig, TargetConfig, load_config
from segmentkit.errors import InsufficientDataError
from segmentkit.features import build_features
from segmentkit.io.events import load_events
from segmentkit.io.synth import generate_events
from segmentkit.models.bgnbd import BetaGeoModel, summary_from_features, transaction_summary
from segmentkit.models.evaluation import count_concordance
from segmentkit.models.labels import build_labels
from segmentkit.models.propensity_training import fit_propensity
from segmentkit.scoring import score_propensity

HORIZON = 30
CHURN = TargetConfig(name="churn", kind="inactivity")
PURCHASE = TargetConfig(name="purchase", kind="event", event="purchase")
PURCHASES = TargetConfig(name="purchases", kind="count", event="purchase")


@dataclass(frozen=True)
class Scenario:
    """A generated log, the day after its last event, and whether it has non-purchase events."""

    name: str
    events: pd.DataFrame
    end: pd.Timestamp
    rich: bool
    truth: pd.DataFrame | None = None


def _transactions_only(events: pd.DataFrame) -> pd.DataFrame:
    purchases = events[events["event"] == "purchase"]
    out = purchases[["user_id", "timestamp", "revenue"]].copy()
    out["event"] = "purchase"
    out["user_id"] = out["user_id"].astype(str)
    return out.reset_index(drop=True)


def bgnbd_log(
    n_users: int,
    n_days: int,
    end: pd.Timestamp,
    seed: int,
    *,
    birth_days: float | None = None,
    r: float = 0.25,
    alpha: float = 12.0,
    a: float = 0.8,
    b: float = 2.5,
) -> pd.DataFrame:
    """Transaction log drawn from the BG/NBD process itself (rates in days).

    Customers are born uniformly over the first ``birth_days`` (default: the whole
    span) with a purchase; while active they buy at a Poisson rate (Gamma(r, alpha)
    across customers) and drop out after each repeat purchase with a probability
    drawn from Beta(a, b). BG/NBD is the true model here.
    """
    rng = np.random.default_rng(seed)
    birth = rng.uniform(0, n_days - 1 if birth_days is None else birth_days, n_users)
    lam = rng.gamma(r, 1 / alpha, n_users)
    p = rng.beta(a, b, n_users)
    # Repeat purchases a customer would make before dropping out (after one of them).
    lifetime = rng.geometric(p)
    # Arrivals of the purchase process between birth and the end: uniform times; the
    # customer makes the first `lifetime` of them.
    arrivals = rng.poisson(lam * (n_days - birth))
    user = np.repeat(np.arange(n_users), arrivals)
    times = birth[user] + rng.random(user.size) * (n_days - birth[user])
    order = np.lexsort((times, user))
    user, times = user[order], times[order]
    first = np.r_[0, np.cumsum(arrivals)[:-1]]
    rank = np.arange(user.size) - np.repeat(first, arrivals)
    keep = rank < lifetime[user]
    user = np.r_[np.arange(n_users), user[keep]]
    times = np.r_[birth, times[keep]]
    return _orders(rng, user, times, n_users, end - pd.Timedelta(days=n_days))


def _orders(
    rng: np.random.Generator, user: np.ndarray, days: np.ndarray, n_users: int, origin
) -> pd.DataFrame:
    """Order table of purchases at ``days`` after ``origin``, Gamma-Gamma-like values."""
    value = rng.gamma(4.0, 1 / rng.gamma(3.0, 1 / 60.0, n_users))[user]
    return pd.DataFrame(
        {
            "user_id": np.char.add("c", user.astype(str)),
            "timestamp": origin + pd.to_timedelta(days * 86_400.0, unit="s"),
            "event": "purchase",
            "revenue": np.round(value * rng.lognormal(-0.05, 0.3, user.size), 2),
        }
    ).sort_values("timestamp", ignore_index=True)


def cohort_log(n_users: int, end: pd.Timestamp, seed: int) -> pd.DataFrame:
    """Return a CDNOW-like log: one cohort born in the first 12 weeks, 18 months of buying.

    BG/NBD with the parameters Fader, Hardie and Lee (2005) estimated on CDNOW
    (r 0.243, alpha 4.414 weeks, a 0.793, b 2.426): nobody arrives after week 12, so
    the share of customers still active, and the purchase rate, decay steadily.
    """
    return bgnbd_log(
        n_users, 540, end, seed, birth_days=84, r=0.243, alpha=4.414 * 7, a=0.793, b=2.426
    )


def seasonal_log(
    n_users: int,
    end: pd.Timestamp,
    seed: int,
    n_days: int = 900,
    amplitude: float = 0.5,
    peak: tuple[int, int] = (12, 1),
) -> pd.DataFrame:
    """Return a retailer's order table with a yearly peak (Pareto/NBD with seasonality).

    Customers arrive over the span and buy at a Poisson rate (Gamma(0.8, 40 days)
    across customers), both times a yearly factor ``1 + amplitude cos(...)`` peaking
    on ``peak``; each drops out after an exponential lifetime in calendar time (its
    rate Gamma(0.6, 300 days) across customers), so neither BG/NBD's drop-out at a
    purchase nor a constant level is the truth.
    """
    rng = np.random.default_rng(seed)
    origin = end - pd.Timedelta(days=n_days)
    peak_day = (pd.Timestamp(origin.year, *peak) - origin).days

    def season(t: np.ndarray) -> np.ndarray:
        return 1.0 + amplitude * np.cos(2.0 * np.pi * (t - peak_day) / 365.25)

    top = 1.0 + amplitude
    # Arrivals: thinning of uniform proposals by the season, the first n_users kept.
    proposals = rng.uniform(0, n_days - 1, 4 * n_users)
    birth = proposals[rng.random(proposals.size) * top < season(proposals)][:n_users]
    lam = rng.gamma(0.8, 1 / 40.0, n_users)
    death = birth + rng.exponential(1.0, n_users) / rng.gamma(0.6, 1 / 300.0, n_users)
    death = np.minimum(death, n_days)
    arrivals = rng.poisson(lam * top * (death - birth))
    user = np.repeat(np.arange(n_users), arrivals)
    times = birth[user] + rng.random(user.size) * (death - birth)[user]
    keep = rng.random(user.size) * top < season(times)
    user = np.r_[np.arange(n_users), user[keep]]
    times = np.r_[birth, times[keep]]
    return _orders(rng, user, times, n_users, origin)


def _until(events: pd.DataFrame, end: pd.Timestamp, days: int | None = None) -> pd.DataFrame:
    """Events before ``end`` (and in the ``days`` before it): a log exported on that day."""
    keep = events["timestamp"] < end
    if days is not None:
        keep &= events["timestamp"] >= end - pd.Timedelta(days=days)
    return events[keep].reset_index(drop=True)


# Scenarios whose generator stops whole archetypes within a fixed stretch of calendar
# days just before the scored month (synth's default "span" life cycle): a cliff in
# the base rate that no labeled period shows. Reported, but no model fitted on the
# past can be calibrated on them.
CLIFF = ("default", "seasonal", "transactions", "seasonal_transactions")

_SYNTH_END = pd.Timestamp("2025-01-01")
_SEASONAL_LOG_END = pd.Timestamp("2026-03-01")
# The day after CDNOW's last purchase: the whole log.
CDNOW_END = "1998-07-01"


def scenarios(
    n_users: int,
    wanted: set[str] | None = None,
    draw: int = 0,
    seasonal_days: int = 900,
    cdnow_end: str = CDNOW_END,
) -> list[Scenario]:
    """Return the benchmark's logs (only those in ``wanted``, when given).

    ``draw`` > 0 gives other random draws of the same scenarios (every generator's
    seed moved by ``1000 draw``): a result should hold on them too, not on one seed.
    ``seasonal_days`` sets how far back the seasonal order table starts (same end,
    ``n_users`` scaled with it, so the same arrivals per day): how old the customer
    base was a year before the scored period, where the seasonal step is measured.
    ``cdnow_end``: the real log ``cdnow`` as exported on that day (only when wanted).

    Realistic ones, standing in for the real logs segmentkit is judged on:

    ``cohort_transactions``
        CDNOW-like: one cohort born in the first 12 weeks, 18 months, BG/NBD with
        CDNOW's parameters; the purchase rate decays steadily.
    ``seasonal_peak``, ``seasonal_offpeak``, ``seasonal_1y_peak``
        An order table with a yearly peak on 1 December (Pareto/NBD with season),
        scored over the month of the peak, over a month of the steep rise towards it
        and, as for a log of about a year (UCI Online Retail), over the peak month
        with 13 months of history only.
    ``default_hazard``, ``default_hazard_long``
        The generator's default archetypes with constant-hazard lapses and arrivals
        over the span (no calendar cliff): an event log with browsing, over 240 days
        and over 420 (long enough for a 90-day horizon's selection, evaluation and
        training snapshots).

    The earlier ones: ``default``, ``seasonal``, ``transactions`` and
    ``seasonal_transactions`` come from the generator's default life cycle, which has
    a calendar cliff (:data:`CLIFF`); ``bgnbd_transactions`` is drawn from BG/NBD
    itself with arrivals over the whole span.
    """
    shift = 1000 * draw
    makers = {
        "cohort_transactions": lambda: Scenario(
            "cohort_transactions",
            cohort_log(n_users, _SYNTH_END, 17 + shift),
            _SYNTH_END,
            rich=False,
        ),
        "seasonal_peak": lambda: _seasonal(
            "seasonal_peak", n_users, "2025-12-16", shift, log_days=seasonal_days
        ),
        "seasonal_offpeak": lambda: _seasonal(
            "seasonal_offpeak", n_users, "2025-08-18", shift, log_days=seasonal_days
        ),
        "seasonal_1y_peak": lambda: _seasonal(
            "seasonal_1y_peak", n_users, "2025-12-16", shift, 395, log_days=seasonal_days
        ),
        "default_hazard": lambda: _synth(
            "default_hazard", "default", n_users, 7 + shift, rich=True, lifecycle="hazard"
        ),
        "default_hazard_long": lambda: _synth(
            "default_hazard_long",
            "default",
            n_users,
            7 + shift,
            rich=True,
            n_days=420,
            lifecycle="hazard",
        ),
        "default": lambda: _synth("default", "default", n_users, 7 + shift, rich=True),
        "seasonal": lambda: _synth("seasonal", "seasonal", n_users, 11 + shift, rich=True),
        "transactions": lambda: _synth(
            "transactions", "transactions", n_users, 13 + shift, rich=False
        ),
        "seasonal_transactions": lambda: _synth(
            "seasonal_transactions", "seasonal", n_users, 11 + shift, rich=False
        ),
        "bgnbd_transactions": lambda: Scenario(
            "bgnbd_transactions",
            bgnbd_log(n_users, 365, _SYNTH_END, seed=5 + shift),
            _SYNTH_END,
            rich=False,
        ),
    }
    real = {
        "cdnow": lambda: Scenario(
            "cdnow",
            _until(cdnow_events(fetch_cdnow()), pd.Timestamp(cdnow_end)),
            pd.Timestamp(cdnow_end),
            rich=False,
        ),
    }
    generated = [make() for name, make in makers.items() if not wanted or name in wanted]
    return generated + [make() for name, make in real.items() if wanted and name in wanted]


def _synth(
    name: str,
    scenario: str,
    n_users: int,
    seed: int,
    rich: bool,
    n_days: int = 240,
    **options,
) -> Scenario:
    log = generate_events(n_users, n_days, seed=seed, scenario=scenario, **options)
    # The seasonal event log's orders only; the transactions scenario is an order table.
    events = log.events if rich or scenario == "transactions" else _transactions_only(log.events)
    return Scenario(name, events, pd.Timestamp(log.end), rich=rich, truth=log.truth)


def _seasonal(
    name: str,
    n_users: int,
    end: str,
    shift: int = 0,
    days: int | None = None,
    log_days: int = 900,
) -> Scenario:
    users = round(n_users * log_days / 900)
    events = seasonal_log(users, _SEASONAL_LOG_END, seed=19 + shift, n_days=log_days)
    end_ts = pd.Timestamp(end)
    return Scenario(name, _until(events, end_ts, days), end_ts, rich=False)


# --- a real log ------------------------------------------------------------------

# CDNOW's master file as shipped in the lifetimes 0.11.3 wheel (MIT; the data set is
# Fader & Hardie's): both hashes pinned, so a changed download is refused.
CDNOW_WHEEL = ("lifetimes==0.11.3", "Lifetimes-0.11.3-py3-none-any.whl")
CDNOW_WHEEL_SHA256 = "261e3dc89977c2b60767ca6728aaa29d429de0c814635070a749c36555895da8"
CDNOW_MEMBER = "lifetimes/datasets/CDNOW_master.txt"
CDNOW_SHA256 = "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef"
CDNOW_PATH = Path(__file__).resolve().parent / ".data" / "CDNOW_master.txt"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_cdnow(path: Path = CDNOW_PATH) -> bytes:
    """Return CDNOW's master file, downloading the wheel that holds it when not cached."""
    if not path.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", CDNOW_WHEEL[0], "--no-deps",
                 "--only-binary", ":all:", "--dest", tmp, "--quiet"],
                check=True,
            )  # fmt: skip
            wheel = Path(tmp) / CDNOW_WHEEL[1]
            if _sha256(wheel.read_bytes()) != CDNOW_WHEEL_SHA256:
                raise SystemExit(f"{CDNOW_WHEEL[1]}: SHA-256 differs from the pinned one")
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(CDNOW_MEMBER)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    data = path.read_bytes()
    if _sha256(data) != CDNOW_SHA256:
        raise SystemExit(
            f"{path}: SHA-256 differs from CDNOW's master file; delete it to fetch again"
        )
    return data


def cdnow_events(data: bytes) -> pd.DataFrame:
    """CDNOW's rows (customer, yyyymmdd, CDs, dollars) as a purchase log."""
    raw = pd.read_csv(io.BytesIO(data), sep=r"\s+", dtype={"customer_id": str, "date": str})
    return pd.DataFrame(
        {
            "user_id": raw["customer_id"],
            "timestamp": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "event": "purchase",
            "revenue": raw["dollar_value"].astype(float),
        }
    )


# --- baselines -----------------------------------------------------------------


def _quintile(values: np.ndarray) -> np.ndarray:
    """Quintile 1..5 from average ranks: tied users share a quintile."""
    pct = pd.Series(values).rank(method="average", pct=True).to_numpy()
    return np.clip(np.ceil(pct * 5), 1, 5)


def rfm_score(features: pd.DataFrame, frequency: str) -> np.ndarray:
    """Return the summed R (recent is high) + F + M quintiles, 3..15."""
    return (
        _quintile(-features["recency_days"].to_numpy())
        + _quintile(features[frequency].to_numpy())
        + _quintile(features["revenue_total"].to_numpy())
    )


def _mapped(train_score, train_y, score) -> np.ndarray:
    """Increasing map of a score onto rates / mean counts of the latest labeled snapshot."""
    iso = IsotonicRegression(out_of_bounds="clip").fit(train_score, train_y)
    return iso.predict(score)


# --- metrics --------------------------------------------------------------------


def worst_decile_gap(y: np.ndarray, p: np.ndarray) -> float:
    """Largest |mean predicted - observed| over ten equal-count bins of the prediction."""
    order = np.argsort(p, kind="stable")
    return max(abs(p[b].mean() - y[b].mean()) for b in np.array_split(order, 10))


def decile_table(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """Mean predicted and observed rate in ten equal-count bins of the prediction (low to high)."""
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, 10)
    return pd.DataFrame(
        {
            "predicted": [p[b].mean() for b in bins],
            "observed": [y[b].mean() for b in bins],
            "users": [b.size for b in bins],
        },
        index=pd.RangeIndex(1, 11, name="decile"),
    ).assign(gap=lambda t: t["predicted"] - t["observed"])


def level_error(y: np.ndarray, p: np.ndarray) -> float:
    """Log-odds shift that brings the mean prediction to the observed rate (0 = level right).

    Positive: the predictions are too low. The calibration-in-the-large part of a miss.
    """
    rate = float(np.mean(y))
    if not 0.0 < rate < 1.0:
        return 0.0
    z = logit(np.clip(p, 1e-9, 1 - 1e-9))
    return float(brentq(lambda d: float(np.mean(expit(z + d))) - rate, -20.0, 20.0))


def gap_at_realized_level(y: np.ndarray, p: np.ndarray) -> float:
    """Worst decile gap once the level is right (every log-odds moved by :func:`level_error`).

    What is left is the shape of the calibration map (its slope, or more) and noise:
    next to the gap it says how much of a miss is the level.
    """
    shifted = expit(logit(np.clip(p, 1e-9, 1 - 1e-9)) + level_error(y, p))
    return worst_decile_gap(y, shifted)


def gap_noise_floor(p: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """90th percentile of the worst decile gap of a perfectly calibrated model (y ~ Bernoulli(p)).

    With a few thousand users the worst of ten bins is off by a few points from noise
    alone; a measured gap near this floor is not evidence of miscalibration.
    """
    rng = np.random.default_rng(seed)
    gaps = [worst_decile_gap((rng.random(p.size) < p).astype(float), p) for _ in range(draws)]
    return float(np.quantile(gaps, 0.9))


def metrics(y_buy, p_buy, n_buy, e_buy, y_churn, p_churn, count_rank=None) -> dict[str, float]:
    """Realized quality of one model on one scenario.

    ``count_rank`` is the score that orders the users for the count's Spearman
    correlation (default ``e_buy``): a baseline's own score, not its counts mapped on
    the latest labeled snapshot. The map is increasing but flat in places, and its
    plateaus tie users: with most realized counts zero, tying the many low scorers
    raises Spearman's coefficient without ranking anyone better (measured on the
    CDNOW-like log at 90 days: recency 0.334 on its own score, 0.379 once mapped;
    BG/NBD's expected count 0.355 and 0.389), so mapped baselines would be compared
    with an untied segmentkit on unequal terms. A score's own ties help it too
    (frequency alone: most users have no purchase): ``count_c`` is the tie-neutral
    rank measure (:func:`count_concordance`).
    """
    return {
        "auc": roc_auc_score(y_buy, p_buy),
        "pr_auc": average_precision_score(y_buy, p_buy),
        "brier": brier_score_loss(y_buy, p_buy),
        "gap": worst_decile_gap(y_buy, p_buy),
        "gap_floor": gap_noise_floor(p_buy),
        "gap_at_level": gap_at_realized_level(y_buy, p_buy),
        "level_error": level_error(y_buy, p_buy),
        "p_total": p_buy.sum() / y_buy.sum(),
        "spearman": spearmanr(n_buy, e_buy if count_rank is None else count_rank).statistic,
        "count_c": count_concordance(n_buy, e_buy if count_rank is None else count_rank),
        "count_total": e_buy.sum() / n_buy.sum(),
        "churn_auc": roc_auc_score(y_churn, p_churn),
        "churn_brier": brier_score_loss(y_churn, p_churn),
    }


def evaluate(scenario: Scenario, features_cfg: FeatureConfig, cfg: PropensityConfig) -> dict:
    """Fit everything at ``end - horizon``, judge on ``[end - horizon, end)``."""
    horizon = cfg.horizon_days
    log = load_events(scenario.events)
    as_of = scenario.end - pd.Timedelta(days=horizon)
    start = time.perf_counter()
    result = fit_propensity(log, as_of, features_cfg, cfg, n_threads=1)
    fit_s = time.perf_counter() - start
    feats = build_features(log, as_of, features_cfg)
    scores = score_propensity(result.models, feats)
    realized = {
        t.name: build_labels(log, as_of, t, horizon, scenario.end)["label"].to_numpy()
        for t in (PURCHASE, PURCHASES, CHURN)
    }
    y_buy, n_buy, y_churn = realized["purchase"], realized["purchases"], realized["churn"]
    out = {
        "segmentkit": metrics(
            y_buy,
            scores["p_purchase"].to_numpy(),
            n_buy,
            scores["expected_purchases"].to_numpy(),
            y_churn,
            scores["p_churn"].to_numpy(),
        )
    }
    # BG/NBD on purchases (every user born at the first event) and on activity for churn.
    purchases = transaction_summary(log, as_of, event="purchase")
    assert (purchases["user_id"].to_numpy() == feats["user_id"].astype(str).to_numpy()).all()
    bg = BetaGeoModel().fit(purchases)
    activity = summary_from_features(feats)
    bg_activity = BetaGeoModel().fit(activity)
    out["bgnbd"] = metrics(
        y_buy,
        bg.probability_active(purchases, horizon),
        n_buy,
        bg.expected_transactions(purchases, horizon),
        y_churn,
        1.0 - bg_activity.probability_active(activity, horizon),
    )
    # RFM and recency mapped on the latest labeled snapshot.
    previous = as_of - pd.Timedelta(days=horizon)
    prev = build_features(log, previous, features_cfg)
    prev_users = prev["user_id"]
    prev_y = {
        t.name: build_labels(log, previous, t, horizon, as_of)["label"].to_numpy()
        for t in (PURCHASE, PURCHASES, CHURN)
    }
    freq_buy = "purchase_events"
    for name, make in (
        (
            "rfm",
            lambda f, target: rfm_score(f, freq_buy if target != "churn" else "active_days_total"),
        ),
        ("recency", lambda f, target: -f["recency_days"].to_numpy()),
        (
            "frequency",
            lambda f, target: (
                f[freq_buy if target != "churn" else "active_days_total"].to_numpy().astype(float)
            ),
        ),
    ):
        mapped = {}
        for target in ("purchase", "purchases", "churn"):
            sign = -1.0 if target == "churn" else 1.0
            mapped[target] = _mapped(
                sign * make(prev, target), prev_y[target], sign * make(feats, target)
            )
        out[name] = metrics(
            y_buy,
            mapped["purchase"],
            n_buy,
            mapped["purchases"],
            y_churn,
            mapped["churn"],
            count_rank=make(feats, "purchases"),
        )
    internal = result.evaluation.summary("roc_auc")
    deciles = result.evaluation.deciles.query("target == 'purchase' and model == 'model'")
    internal_gap = float((deciles["mean_predicted"] - deciles["observed"]).abs().max())
    snaps = result.evaluation.snapshots.query("target == 'purchase' and role == 'final'")
    history = dict(zip(snaps["snapshot"].dt.date, snaps["rate"], strict=True))
    archetypes = None
    if scenario.truth is not None:
        truth = scenario.truth.set_index("user_id")["archetype"]
        last = pd.DataFrame(
            {"archetype": truth.reindex(prev_users.astype(str)).to_numpy(), "y": prev_y["purchase"]}
        )
        now = pd.DataFrame(
            {
                "archetype": truth.reindex(feats["user_id"].astype(str)).to_numpy(),
                "y": y_buy,
                "p": scores["p_purchase"].to_numpy(),
            }
        )
        archetypes = pd.DataFrame(
            {
                "share": now["archetype"].value_counts(normalize=True),
                "rate_last_labeled": last.groupby("archetype")["y"].mean(),
                "rate_realized": now.groupby("archetype")["y"].mean(),
                "segmentkit_mean_p": now.groupby("archetype")["p"].mean(),
            }
        )
    interval, legacy, parts = {}, {}, {}
    for name, column, truth in (
        ("purchase", "p_purchase", y_buy),
        ("purchases", "expected_purchases", n_buy),
    ):
        model = result.models[name]
        if hasattr(model, "expected_total"):
            total, lower, upper = model.expected_total(scores[column].to_numpy())
            interval[name] = (total, lower, upper, float(truth.sum()))
            total, lower, upper = legacy_model(model).expected_total(scores[column].to_numpy())
            legacy[name] = (total, lower, upper, float(truth.sum()))
            parts[name] = (
                f"level_risk {model.level_risk}, level_risk_moves {model.level_risk_moves}, "
                f"level_sd_ {model.level_sd_:.4f} ({model.level_sd_moves_} moves), "
                f"count_dispersion_ {model.count_dispersion_:.3f}"
            )
    return {
        "deciles": decile_table(y_buy, scores["p_purchase"].to_numpy()),
        "interval": interval,
        "legacy_interval": legacy,
        "interval_parts": parts,
        "notes": getattr(result.evaluation, "notes", ()),
        "table": pd.DataFrame(out).T,
        "choice": result.choice,
        "internal_auc": float(internal.loc["purchase", "model"]),
        "internal_gap": internal_gap,
        "history": history,
        "archetypes": archetypes,
        "fit_s": fit_s,
        "users": len(feats),
        "base_rate": (float(prev_y["purchase"].mean()), float(y_buy.mean())),
    }


def legacy_model(model):
    """Return the model as a bundle saved before the interval's fixes loads it.

    Without ``level_risk_moves``, ``level_sd_moves_`` and ``count_dispersion_``: normal
    quantiles and Poisson noise (same scores, same total; only the interval differs).
    """
    old = copy.copy(model)
    for name in ("level_risk_moves", "level_sd_moves_", "count_dispersion_"):
        old.__dict__.pop(name, None)
    return old


def interval_rows(
    scenario: str, horizon: int, draw: int, intervals: dict[str, dict[str, tuple]]
) -> list[dict]:
    """One row per target and interval version: inside?, relative width, total error.

    Examples
    --------
    >>> rows = interval_rows("s", 30, 0, {"new": {"purchase": (100.0, 90.0, 112.0, 95.0)}})
    >>> rows[0]["inside"], round(rows[0]["rel_width"], 4), round(rows[0]["rel_error"], 4)
    (True, 0.22, -0.05)
    """
    rows = []
    for version, by_target in intervals.items():
        for target, (total, lower, upper, truth) in by_target.items():
            rows.append(
                {
                    "scenario": scenario,
                    "horizon": horizon,
                    "draw": draw,
                    "target": target,
                    "version": version,
                    "total": total,
                    "lower": lower,
                    "upper": upper,
                    "realized": truth,
                    "inside": bool(lower <= truth <= upper),
                    "rel_width": (upper - lower) / total if total > 0 else float("nan"),
                    "rel_error": truth / total - 1.0 if total > 0 else float("nan"),
                }
            )
    return rows


def coverage_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Coverage (share of realized totals inside) and median relative width, by group.

    Examples
    --------
    >>> rows = pd.DataFrame({"horizon": [30, 30, 30], "target": ["n", "n", "n"],
    ...                      "version": ["new"] * 3, "inside": [True, False, True],
    ...                      "rel_width": [0.1, 0.3, 0.2]})
    >>> coverage_table(rows).to_dict("records")[0]  # doctest: +NORMALIZE_WHITESPACE
    {'horizon': 30, 'target': 'n', 'version': 'new', 'runs': 3, 'covered': 2,
     'coverage': 0.6667, 'median_rel_width': 0.2}
    """
    grouped = rows.groupby(["horizon", "target", "version"], sort=True)
    out = grouped.agg(
        runs=("inside", "size"),
        covered=("inside", "sum"),
        coverage=("inside", "mean"),
        median_rel_width=("rel_width", "median"),
    ).reset_index()
    out["covered"] = out["covered"].astype(int)
    return out.round(4)


def _inside(interval: tuple[float, float, float, float] | None) -> str:
    if interval is None:
        return "-"
    _, lower, upper, truth = interval
    return "yes" if lower <= truth <= upper else "no"


def main() -> None:
    """Run the benchmark and print one table per scenario."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "positional",
        nargs="*",
        metavar="[n_users] scenario",
        help="users per generated log (default 20000), then scenario names (default: every "
        "generated one)",
    )
    parser.add_argument("--horizon", type=int, default=HORIZON, help="label window, days")
    parser.add_argument("--draw", type=int, default=0, help="> 0: another random draw")
    parser.add_argument(
        "--seasonal-days",
        type=int,
        default=900,
        help="span of the seasonal order table (users scaled with it): 1265 = a year older",
    )
    parser.add_argument(
        "--cdnow-end",
        default=CDNOW_END,
        help=f"cut-off of the real log cdnow: the day after the last event read ({CDNOW_END})",
    )
    parser.add_argument(
        "--intervals-csv",
        help="append one row per scenario, target and interval version (new / legacy) to "
        "this CSV, to pool coverage over horizons and draws; with only this file given "
        "(no run), print the pooled coverage",
    )
    parser.add_argument(
        "--pool", action="store_true", help="only print the coverage pooled in --intervals-csv"
    )
    args = parser.parse_args()
    if args.pool:
        pooled = pd.read_csv(args.intervals_csv)
        print(coverage_table(pooled).to_string(index=False))
        return
    positional = list(args.positional)
    n_users = int(positional.pop(0)) if positional and positional[0].isdigit() else 20_000
    horizon, draw, wanted = args.horizon, args.draw, set(positional)
    cfg = load_config(Path(__file__).resolve().parent.parent / "params.yaml")
    prop = PropensityConfig(
        horizon_days=horizon,
        n_snapshots=cfg.propensity.n_snapshots,
        snapshot_step_days=cfg.propensity.snapshot_step_days,
        min_positives=cfg.propensity.min_positives,
        random_state=cfg.propensity.random_state,
        targets=(CHURN, PURCHASE, PURCHASES),
    )
    pd.set_option("display.width", 160)
    summary = []
    interval_log: list[dict] = []
    for scenario in scenarios(n_users, wanted, draw, args.seasonal_days, args.cdnow_end):
        try:
            res = evaluate(scenario, cfg.features, prop)
        except InsufficientDataError as error:
            # e.g. the 240-day generated logs with a 90-day horizon.
            print(f"\n== {scenario.name}: skipped, {error}")
            continue
        table = res["table"]
        best_baseline = table.drop(index="segmentkit")["auc"].max()
        margin = table.loc["segmentkit", "auc"] - best_baseline
        cliff = " [calendar cliff before the scored month]" if scenario.name in CLIFF else ""
        print(
            f"\n== {scenario.name}{cliff}: {res['users']} users, purchase rate last labeled "
            f"{res['base_rate'][0]:.3f} -> realized {res['base_rate'][1]:.3f}; "
            f"fit {res['fit_s']:.1f} s; segmentkit families {res['choice']}"
        )
        print(table.round(4).to_string())
        print(
            f"winner by purchase AUC: {table['auc'].idxmax()}; segmentkit - best baseline "
            f"= {margin:+.4f} (target >= {'+0.01' if scenario.rich else '0'}); internal "
            f"reported AUC {res['internal_auc']:.4f} vs realized "
            f"{table.loc['segmentkit', 'auc']:.4f}"
        )
        for name, (total, lower, upper, truth) in res["interval"].items():
            inside = "inside" if lower <= truth <= upper else "OUTSIDE"
            _, old_lower, old_upper, _ = res["legacy_interval"][name]
            print(
                f"{name}: predicted total {total:.0f} [90%: {lower:.0f}, {upper:.0f}], "
                f"realized {truth:.0f} ({inside}); before the t quantile and the count "
                f"dispersion [{old_lower:.0f}, {old_upper:.0f}]; {res['interval_parts'][name]}"
            )
        interval_log += interval_rows(
            scenario.name,
            horizon,
            draw,
            {"new": res["interval"], "legacy": res["legacy_interval"]},
        )
        for note in res["notes"]:
            print("note:", note)
        rates = ", ".join(f"{d}: {r:.3f}" for d, r in sorted(res["history"].items()))
        print(
            f"purchase rate by labeled snapshot {rates} -> realized {res['base_rate'][1]:.3f}; "
            f"worst decile gap on the internal evaluation snapshot {res['internal_gap']:.3f} "
            f"vs realized {table.loc['segmentkit', 'gap']:.3f}"
        )
        print("segmentkit purchase deciles (predicted - observed):")
        print(res["deciles"].round(4).T.to_string())
        if res["archetypes"] is not None:
            print(
                "planted archetypes (share now, purchase rate last labeled -> realized, "
                "segmentkit's mean p):"
            )
            print(res["archetypes"].round(3).to_string())
        summary.append(
            {
                "scenario": scenario.name,
                "sk_auc": table.loc["segmentkit", "auc"],
                "best_baseline_auc": best_baseline,
                "margin": margin,
                "spearman_margin": table.loc["segmentkit", "spearman"]
                - table.drop(index="segmentkit")["spearman"].max(),
                "count_c_margin": table.loc["segmentkit", "count_c"]
                - table.drop(index="segmentkit")["count_c"].max(),
                "p_total": table.loc["segmentkit", "p_total"],
                "count_total": table.loc["segmentkit", "count_total"],
                "gap": table.loc["segmentkit", "gap"],
                "internal_gap": res["internal_gap"],
                "p_cover": _inside(res["interval"].get("purchase")),
                "n_cover": _inside(res["interval"].get("purchases")),
                "gap_floor": table.loc["segmentkit", "gap_floor"],
                "gap_at_level": table.loc["segmentkit", "gap_at_level"],
                "level_err": table.loc["segmentkit", "level_error"],
                "internal_auc": res["internal_auc"],
            }
        )
    print("\nsummary\n", pd.DataFrame(summary).round(4).to_string(index=False))
    if interval_log:
        intervals = pd.DataFrame(interval_log)
        print("\ntotal intervals (nominal 90 %): coverage and median relative width")
        print(coverage_table(intervals).to_string(index=False))
        if args.intervals_csv:
            path = Path(args.intervals_csv)
            intervals.to_csv(path, mode="a", header=not path.exists(), index=False)


if __name__ == "__main__":
    main()
