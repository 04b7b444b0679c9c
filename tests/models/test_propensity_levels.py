"""Level of the scored period (seasonal step judged over the history, level risk); family choice."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from segmentkit.bundle.trust import TRUSTED_TYPES, file_types
from segmentkit.config import FeatureConfig, PropensityConfig, TargetConfig
from segmentkit.errors import ConfigError
from segmentkit.io.events import load_events
from segmentkit.models.labels import build_labels
from segmentkit.models.propensity import (
    PropensityModel,
    count_dispersion,
    isotonic_probability,
)
from segmentkit.models.propensity_training import (
    LevelVerdict,
    _latest_season_verdict,
    _level_note,
    _level_risk,
    _season_base_share,
    _season_verdict,
    _simplest_within_noise,
    fit_propensity,
)

PURCHASE = TargetConfig(name="purchase", kind="event", event="purchase")
PURCHASES = TargetConfig(name="purchases", kind="count", event="purchase")
CONFIG = PropensityConfig(
    horizon_days=30,
    n_snapshots=3,
    snapshot_step_days=30,
    min_positives=20,
    random_state=0,
    targets=(PURCHASE, PURCHASES),
    candidates=("logistic",),
)


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    n = 600
    X = pd.DataFrame(
        {"recency_days": rng.exponential(20, n), "events_30d": rng.poisson(3, n).astype(float)}
    )
    y = (rng.random(n) < 1 / (1 + np.exp(2 - X["recency_days"] / 10))).astype(int)
    return X, y.to_numpy(), np.arange(n) % 3


def test_expected_total_interval_with_a_level_risk_by_hand(xy):
    X, y, snapshot = xy
    model = PropensityModel("buy", "event", event="x", random_state=0).fit(X, y, snapshot=snapshot)
    p = np.full(40, 0.25)
    model.set_params(level_risk=0.3)
    total, lower, upper = model.expected_total(p, coverage=0.9)
    # The level moved by -/+ z x 0.3 on the log-odds, beside the Bernoulli noise.
    z = 1.6448536
    shifted = 40 / (1 + 3 * np.exp(-np.array([-1.0, 1.0]) * z * 0.3))
    noise = z**2 * 40 * 0.25 * 0.75
    expected = (10.0, 10 - np.sqrt(noise + (10 - shifted[0]) ** 2))
    assert (total, lower) == pytest.approx(expected)
    assert upper == pytest.approx(10 + np.sqrt(noise + (shifted[1] - 10) ** 2))
    # However large the risk, a total of probabilities stays within [0, n] + noise.
    _, lower, upper = model.set_params(level_risk=50.0).expected_total(p)
    assert lower == 0.0 and upper <= 40 + z * np.sqrt(40 * 0.25 * 0.75)
    counts = PropensityModel("n", "count", event="x", random_state=0, level_risk=0.3)
    counts.fit(X, y, snapshot=snapshot)
    total, lower, upper = counts.expected_total(np.array([20.0, 10.0]), coverage=0.9)
    down, up = 30.0 - 30.0 * np.exp(-z * 0.3), 30.0 * np.exp(z * 0.3) - 30.0
    noise = z**2 * 30 * counts.count_dispersion_  # Poisson, scaled by the dispersion
    assert (total, lower, upper) == pytest.approx(
        (30.0, 30.0 - np.sqrt(noise + down**2), 30.0 + np.sqrt(noise + up**2))
    )


@pytest.mark.parametrize("risk", [-0.1, float("nan"), float("inf")])
def test_level_risk_must_be_finite_and_not_negative(xy, risk):
    X, y, snapshot = xy
    with pytest.raises(ConfigError, match="level_risk must be None or a finite number >= 0"):
        PropensityModel(level_risk=risk).fit(X, y, snapshot=snapshot)
    model = PropensityModel(random_state=0).fit(X, y, snapshot=snapshot)
    with pytest.raises(ConfigError, match="level_risk must be None or a finite number >= 0"):
        model.set_params(level_risk=risk).expected_total(np.array([0.5]))


def test_level_part_uses_student_t_with_as_many_degrees_of_freedom_as_moves(xy):
    X, y, snapshot = xy
    model = PropensityModel("buy", "event", event="x", random_state=0).fit(X, y, snapshot=snapshot)
    p = np.full(40, 0.25)
    noise = 1.6448536**2 * 40 * 0.25 * 0.75  # the outcome noise keeps the normal quantile
    # t quantiles at 0.95 with 2 and 3 degrees of freedom (tables): 2.919986, 2.353363.
    for moves, k in ((2, 2.919986), (3, 2.353363)):
        _, lower, upper = model.set_params(level_risk=0.3, level_risk_moves=moves).expected_total(
            p, coverage=0.9
        )
        shifted = 40 / (1 + 3 * np.exp(-np.array([-1.0, 1.0]) * k * 0.3))
        assert lower == pytest.approx(10 - np.sqrt(noise + (10 - shifted[0]) ** 2), rel=1e-6)
        assert upper == pytest.approx(10 + np.sqrt(noise + (shifted[1] - 10) ** 2), rel=1e-6)
    # Fewer moves, a wider interval; many moves, about the normal one.
    widths = []
    for moves in (2, 3, 10, 10_000):
        _, lower, upper = model.set_params(level_risk_moves=moves).expected_total(p)
        widths.append(upper - lower)
    assert widths == sorted(widths, reverse=True)
    normal = model.set_params(level_risk_moves=None).expected_total(p)
    assert normal[1:] == pytest.approx(
        model.set_params(level_risk_moves=10**7).expected_total(p)[1:], rel=1e-5
    )


def test_level_sd_part_uses_student_t_with_the_training_snapshot_moves(xy):
    X, y, snapshot = xy
    model = PropensityModel("churn", "inactivity", random_state=0).fit(X, y, snapshot=snapshot)
    assert model.level_sd_moves_ == 2  # three training snapshots
    p = np.array([0.5, 0.5, 0.2])
    total, lower, upper = model.expected_total(p, coverage=0.9)
    noise, level = 1.6448536**2 * 0.66, 2.919986 * 1.2 * model.level_sd_
    half = np.sqrt(noise + level**2)
    assert (total, lower, upper) == pytest.approx((1.2, max(1.2 - half, 0.0), 1.2 + half))
    one = PropensityModel("churn", "inactivity", random_state=0).fit(X, y)
    assert one.level_sd_moves_ == 0 and np.isnan(one.level_sd_)


def test_count_dispersion_on_a_small_sample_by_hand():
    # Pearson: (1 + 4 + 2 + 4.5) / 4 = 2.875; under-dispersed counts are floored at 1.
    y, mu = np.array([0, 3, 0, 5]), np.array([1.0, 1.0, 2.0, 2.0])
    assert count_dispersion(y, mu) == pytest.approx(2.875)
    assert count_dispersion(np.array([1, 1, 1]), np.array([1.0, 1.0, 1.0])) == 1.0
    # Rows expected at 0 carry no Poisson variance to scale: left out.
    assert count_dispersion(np.array([0, 3, 0, 5, 2]), np.r_[mu, 0.0]) == pytest.approx(2.875)
    assert count_dispersion(np.array([2]), np.array([0.0])) == 1.0


def test_count_model_measures_overdispersion_out_of_time(xy):
    X, _, snapshot = xy
    rng = np.random.default_rng(3)
    mean = 1 + X["events_30d"].to_numpy() / 3
    poisson = rng.poisson(mean)
    # Negative binomial with shape 0.5: variance mean + 2 mean^2, about 4 to 6 x mean here.
    bursty = rng.poisson(rng.gamma(0.5, mean / 0.5))
    make = lambda: PropensityModel("n", "count", event="x", random_state=0)  # noqa: E731
    calm = make().fit(X, poisson, snapshot=snapshot)
    wild = make().fit(X, bursty, snapshot=snapshot)
    assert 1.0 <= calm.count_dispersion_ < 1.5
    assert wild.count_dispersion_ > 3.0
    # It scales the outcome noise only: same total, a wider interval.
    p = np.array([20.0, 10.0])
    z = 1.6448536
    total, lower, upper = wild.expected_total(p, coverage=0.9)
    level = 2.919986 * 30.0 * wild.level_sd_  # the snapshots' level part, 2 moves
    half = np.sqrt(z**2 * 30.0 * wild.count_dispersion_ + level**2)
    assert (total, lower, upper) == pytest.approx((30.0, 30.0 - half, 30.0 + half))
    binary = PropensityModel("buy", "event", event="x", random_state=0)
    assert binary.fit(X, (poisson > 1).astype(int), snapshot=snapshot).count_dispersion_ == 1.0


def test_a_model_saved_before_the_interval_fixes_loads_and_keeps_its_interval(xy):
    X, _, snapshot = xy
    counts = np.random.default_rng(3).poisson(np.random.default_rng(4).gamma(0.5, 4.0, len(X)))
    model = PropensityModel("n", "count", event="x", random_state=0, level_risk=0.3)
    model.fit(X, counts, snapshot=snapshot)
    # As pickled by the code before: none of the three attributes exist.
    for name in ("level_risk_moves", "level_sd_moves_", "count_dispersion_"):
        del model.__dict__[name]
    blob = sio.dumps(model)
    assert file_types(blob) <= TRUSTED_TYPES
    loaded = sio.loads(blob, trusted=sorted(TRUSTED_TYPES))
    p = loaded.predict(X)
    z = 1.6448536
    total = p.sum()
    down, up = total * (1 - np.exp(-z * 0.3)), total * (np.exp(z * 0.3) - 1)
    assert loaded.expected_total(p, coverage=0.9) == pytest.approx(
        (total, total - np.sqrt(z**2 * total + down**2), total + np.sqrt(z**2 * total + up**2))
    )
    # Without a level risk: the training snapshots' level_sd_ with the normal quantile.
    loaded.set_params(level_risk=None)
    half = np.sqrt(z**2 * total + (z * total * loaded.level_sd_) ** 2)
    assert loaded.expected_total(p, coverage=0.9) == pytest.approx(
        (total, total - half, total + half)
    )


def test_level_risk_counts_its_moves():
    import datetime as dt

    day = lambda n: dt.datetime(2024, 1, 1) + dt.timedelta(days=n)  # noqa: E731
    # Three moves one horizon apart: 0.1, -0.2, 0.2 -> RMS sqrt(0.03), 3 degrees of freedom.
    levels = {day(0): 0.0, day(30): 0.1, day(60): -0.1, day(90): 0.1}
    risk, moves = _level_risk(levels, 30, seasonal=False)
    assert (risk, moves) == (pytest.approx(np.sqrt(0.03)), 3)
    assert _level_risk({day(0): 0.0, day(30): 0.1}, 30, seasonal=False) is None  # one move
    # Moves that overlap (90 days, 30 apart) count as moves too (see _level_risk).
    overlapping = {day(30 * i): 0.01 * i for i in range(11)}
    assert _level_risk(overlapping, 90, seasonal=False) == (pytest.approx(0.03), 8)


@pytest.mark.parametrize("moves", [0, -2, 2.5, True, "3", float("nan")])
def test_level_risk_moves_must_be_a_positive_integer(xy, moves):
    X, y, snapshot = xy
    match = "level_risk_moves must be None or an integer >= 1"
    with pytest.raises(ConfigError, match=match):
        PropensityModel(level_risk=0.2, level_risk_moves=moves).fit(X, y, snapshot=snapshot)
    model = PropensityModel(random_state=0).fit(X, y, snapshot=snapshot)
    with pytest.raises(ConfigError, match=match):
        model.set_params(level_risk=0.2, level_risk_moves=moves).expected_total(np.array([0.5]))


@pytest.mark.parametrize("coverage", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_expected_total_coverage_must_be_inside_0_1(xy, coverage):
    X, y, snapshot = xy
    model = PropensityModel(random_state=0).fit(X, y, snapshot=snapshot)
    with pytest.raises(ConfigError, match="coverage must be strictly between 0 and 1"):
        model.expected_total(np.array([0.5]), coverage=coverage)


def _log(amplitude: float, n_users: int = 2500, seed: int = 1) -> pd.DataFrame:
    """Customers arriving over 2.5 years, buying at a rate with a yearly peak (1 Dec)."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2022-05-01", "2024-11-01", freq="D", inclusive="left")
    season = 1.0 + amplitude * np.cos(
        2.0 * np.pi * (days - pd.Timestamp("2023-12-01")).days.to_numpy() / 365.25
    )
    birth = rng.integers(0, days.size // 2, n_users)
    alive = np.arange(days.size)[None, :] >= birth[:, None]
    rate = rng.gamma(2.0, 0.015, n_users)
    return _purchases(rng, days, birth, np.outer(rate, season) * alive)


def _purchases(
    rng: np.random.Generator, days: pd.DatetimeIndex, birth: np.ndarray, daily_rate: np.ndarray
) -> pd.DataFrame:
    """Poisson purchases at ``daily_rate`` (users x days), plus one on each user's first day."""
    counts = rng.poisson(daily_rate)
    user, day = np.nonzero(counts)
    user, day = np.repeat(user, counts[user, day]), np.repeat(day, counts[user, day])
    user, day = np.r_[np.arange(birth.size), user], np.r_[birth, day]
    return pd.DataFrame(
        {
            "user_id": np.char.add("u", user.astype(str)),
            "timestamp": days[day] + pd.to_timedelta(rng.integers(0, 86_400, day.size), "s"),
            "event": "purchase",
        }
    )


@pytest.mark.slow
def test_seasonal_step_is_used_where_the_history_shows_a_season():
    # Scored month: 1 Sep - 1 Oct 2024, on the steep rise towards the December peak.
    as_of, end = pd.Timestamp("2024-09-01"), pd.Timestamp("2024-10-01")
    log = load_events(_log(amplitude=0.8))
    result = fit_propensity(log, as_of, FeatureConfig(), CONFIG, n_threads=1)
    for target in ("purchase", "purchases"):
        assert result.choice[target] == "logistic-season"
        assert any(n.startswith(f"{target}: seasonal step used") for n in result.evaluation.notes)
        assert result.models[target].level_shift > 0  # the level rises into autumn
        assert result.models[target].level_risk > 0
        assert result.models[target].level_risk_moves >= 2  # the t quantile's df
    model = result.models["purchase"]
    from segmentkit.features import build_features

    feats = build_features(log, as_of, FeatureConfig())
    p = model.predict(feats.drop(columns=["user_id"]))
    realized = build_labels(log, as_of, PURCHASE, 30, end)["label"].to_numpy()
    total, lower, upper = model.expected_total(p)
    assert lower <= realized.sum() <= upper
    assert total == pytest.approx(realized.sum(), rel=0.1)


@pytest.mark.slow
def test_no_seasonal_step_without_a_season():
    log = load_events(_log(amplitude=0.0))
    config = replace(CONFIG, targets=(PURCHASE,))
    result = fit_propensity(log, pd.Timestamp("2024-09-01"), FeatureConfig(), config, n_threads=1)
    assert not result.choice["purchase"].endswith("-season")
    assert any(n.startswith("purchase: seasonal step not used") for n in result.evaluation.notes)


# --- a seasonal step measured on a younger customer base ----------------------------


def test_season_base_share_by_hand():
    import datetime as dt

    # A year before 1 Jan 2025 the log (from 1 Jul 2023) was 185 days old.
    end, first = dt.datetime(2025, 1, 1), dt.datetime(2023, 7, 1)
    tenure = np.array([10.0, 185.0, 185.5, 300.0, 500.0])
    assert _season_base_share(tenure, end, first) == (0.4, 185.0)
    assert _season_base_share(np.array([]), end, first) == (0.0, 185.0)
    # A log shorter than a year: nobody is that young.
    assert _season_base_share(tenure, end, dt.datetime(2024, 6, 1))[0] == 0.0


def _cohort_log(n_users: int = 2500, seed: int = 1) -> pd.DataFrame:
    """One cohort arriving in 75 days, buying 7x as often in its first weeks, no season."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2023-01-01", "2024-07-01", freq="D", inclusive="left")
    birth = rng.integers(0, 75, n_users)
    age = np.arange(days.size)[None, :] - birth[:, None]
    boost = 1.0 + 6.0 * np.exp(-np.clip(age, 0, None) / 40.0)
    rate = rng.gamma(2.0, 0.01, n_users)[:, None]
    return _purchases(rng, days, birth, rate * boost * (age >= 0))


@pytest.mark.slow
def test_no_seasonal_step_from_one_snapshot_for_a_single_cohort_a_year_on():
    # A year before May 2024 every customer was at most 4 months old and buying fast:
    # that move is the cohort's ageing. Before the rule, the purchase model took it as
    # a seasonal step (-0.48 on the log-odds scale) on the selection snapshot's win.
    log = load_events(_cohort_log())
    result = fit_propensity(log, pd.Timestamp("2024-05-01"), FeatureConfig(), CONFIG, n_threads=1)
    notes = result.evaluation.notes
    for target in ("purchase", "purchases"):
        assert not result.choice[target].endswith("-season")
        assert result.models[target].level_shift == 0.0
    (overruled,) = [n for n in notes if n.startswith("purchase: seasonal step not used")]
    assert overruled == (
        "purchase: seasonal step not used: it won on the selection snapshot only, and a year "
        "before the scored period every customer was at most 121 days old, and 0.0% of the "
        "users scored now are that young (under 5%): one snapshot cannot tell the season "
        "from how behaviour changes in a customer's first months"
    )


def test_simplest_family_within_noise_of_the_best_is_kept():
    rng = np.random.default_rng(0)
    best = rng.exponential(0.5, 4000)
    noise = rng.normal(0.0, 0.05, best.size)
    tie = best + noise - noise.mean()  # the same mean loss, row noise only
    worse = best + 0.05 + rng.normal(0.0, 0.05, best.size)  # worse far beyond noise
    variants = ["hgb+bgnbd", "logistic", "logistic-nolevel", "bgnbd"]
    losses = {"hgb+bgnbd": best, "logistic": tie, "logistic-nolevel": tie + 0.0005, "bgnbd": worse}
    # bgnbd is simpler but worse beyond noise; of the logistic variants within noise,
    # the one with the lower loss.
    assert _simplest_within_noise("hgb+bgnbd", variants, losses) == "logistic"
    losses["bgnbd"] = tie - 0.0001
    assert _simplest_within_noise("hgb+bgnbd", variants, losses) == "bgnbd"
    # Alone, the best is kept.
    assert _simplest_within_noise("hgb", ["hgb"], {"hgb": best}) == "hgb"


# --- a seasonal step rejected over the history ---------------------------------------


def _day(n: int) -> pd.Timestamp:
    return pd.Timestamp("2024-01-01") + pd.Timedelta(days=n)


def test_a_level_rule_rejected_on_three_snapshots_overrules_one_selection_snapshot():
    assert LevelVerdict(False, "", 3).rejected
    assert not LevelVerdict(False, "", 2).rejected  # too few to say
    assert not LevelVerdict(True, "", 5).rejected
    # A level that moves but not with last year's moves: tested on every snapshot with
    # a year and a month before it (days 395 to 425, every 5 days), the step loses.
    noise = np.random.default_rng(0).normal(0.0, 0.2, 86)
    verdict = _season_verdict({_day(5 * i): float(r) for i, r in enumerate(noise)}, 30)
    assert verdict.tested == 7 and verdict.rejected
    assert verdict.text.startswith("seasonal step not used: over 7 past snapshot(s)")


def test_level_note_says_where_a_seasonal_level_was_chosen(xy):
    X, y, snapshot = xy
    model = PropensityModel("buy", "event", event="x", random_state=0, level_shift=0.2)
    model.fit(X, y, snapshot=snapshot)
    judged = _level_note("buy", "logistic-season", model, True, 30, on_history=True)
    assert judged.endswith(
        "(+0.200 on the link scale), chosen on every past snapshot where the step can be measured"
    )
    # Kept from the selection snapshot (the history too short for a verdict): said so.
    picked = _level_note("buy", "logistic-season", model, True, 30, on_history=False)
    assert picked.endswith("chosen on the selection snapshot")


# --- a seasonal step judged on the evaluation snapshot --------------------------------


def test_seasonal_step_judged_on_one_snapshot_by_hand():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.6, 5000)
    logit = np.log(p / (1 - p))
    stepped = 1 / (1 + np.exp(-(logit + 0.5)))  # the latest level moved by +0.5
    # The level rose by 0.5 on the log-odds, as the step a year earlier says: used.
    risen = (rng.random(p.size) < stepped).astype(float)
    use, text = _latest_season_verdict(risen, p, stepped, 0.5, "event", 90)
    assert use and text.startswith("seasonal step used by the final model")
    # The level did not move: the step is worse than none.
    flat = (rng.random(p.size) < p).astype(float)
    use, text = _latest_season_verdict(flat, p, stepped, 0.5, "event", 90)
    assert not use and text.startswith("seasonal step not used by the final model")
    # Counts: a factor exp(step) on the expected counts, judged by Poisson deviance.
    mu = rng.uniform(0.2, 3.0, 5000)
    halved = rng.poisson(mu * 0.5).astype(float)
    use, text = _latest_season_verdict(halved, mu, mu * 0.5, float(np.log(0.5)), "count", 30)
    assert use and "Poisson deviance" in text
    same = rng.poisson(mu).astype(float)
    assert not _latest_season_verdict(same, mu, mu * 0.5, float(np.log(0.5)), "count", 30)[0]
    # Identical predictions never win (no gain, nothing beyond noise).
    assert not _latest_season_verdict(risen, p, p.copy(), 0.0, "event", 90)[0]


def test_relevel_to_sets_the_latest_level_of_a_model_fitted_at_its_own(xy):
    X, y, snapshot = xy
    own = PropensityModel("buy", "event", event="x", random_state=0, relevel=False)
    own.fit(X, y, snapshot=snapshot)
    latest = snapshot == 2
    target = float(y[latest].mean()) * 0.5 + 0.25  # another level than the model's own
    rows = np.flatnonzero(latest)
    labels = (np.arange(rows.size) < target * rows.size).astype(float)
    own.relevel_to(X.iloc[rows], labels)
    assert own.relevel and own.level_offset_ != 0.0
    assert own.predict(X.iloc[rows]).mean() == pytest.approx(labels.mean(), abs=1e-6)
    counts = PropensityModel("n", "count", event="x", random_state=0, relevel=False)
    counts.fit(X, y + 1, snapshot=snapshot)
    counts.relevel_to(X.iloc[rows], np.full(rows.size, 3.0))
    assert counts.predict(X.iloc[rows]).mean() == pytest.approx(3.0)
    source = PropensityModel("buy", "event", event="x", random_state=0).fit(X, y, snapshot=snapshot)
    complement = PropensityModel("churn", "inactivity", family="complement", source=source)
    complement.fit(X, 1 - y, snapshot=snapshot)
    with pytest.raises(ConfigError, match="a complement model takes its source's level"):
        complement.relevel_to(X, 1 - y)


def test_level_note_of_a_step_judged_on_the_evaluation_snapshot(xy):
    X, y, snapshot = xy
    model = PropensityModel("buy", "event", event="x", random_state=0, level_shift=-0.3)
    model.fit(X, y, snapshot=snapshot)
    note = _level_note("buy", "bgnbd-season", model, False, 90, False, on_evaluation=True)
    assert note.endswith(
        "(-0.300 on the link scale), chosen on the evaluation snapshot (the reported model "
        "keeps the latest labeled level)"
    )
    # Not followed by the reason why there is no seasonal term: there is one.
    assert "no seasonal term" not in note


@pytest.mark.slow
def test_seasonal_step_judged_on_the_evaluation_snapshot_where_selection_is_too_early():
    # The log starts 15 June 2022 (customers seen before are left out, as in an export);
    # scoring 1 Sep 2023 over 30 days, on the steep rise towards the December peak: the
    # step a year before the evaluation snapshot (2 Aug 2023) can be measured, the one
    # before the selection snapshot (3 Jul 2023) cannot.
    events = _log(amplitude=0.8)
    events = events[events["timestamp"] >= "2022-06-15"]
    as_of, end = pd.Timestamp("2023-09-01"), pd.Timestamp("2023-10-01")
    log = load_events(events)
    config = replace(CONFIG, targets=(PURCHASE,))
    result = fit_propensity(log, as_of, FeatureConfig(), config, n_threads=1)
    notes = result.evaluation.notes
    assert result.choice["purchase"] == "logistic-season"
    assert any(n.startswith("purchase: seasonal step used by the final model") for n in notes)
    model = result.models["purchase"]
    assert model.level_shift > 0  # the level rises into autumn
    from segmentkit.features import build_features

    X = build_features(log, as_of, FeatureConfig()).drop(columns=["user_id"])
    realized = build_labels(log, as_of, PURCHASE, 30, end)["label"].to_numpy().sum()
    with_step = model.predict(X).sum()
    without = model.set_params(level_shift=0.0).predict(X).sum()
    assert abs(with_step - realized) < abs(without - realized)


@pytest.mark.slow
def test_no_seasonal_step_judged_on_the_evaluation_snapshot_without_a_season():
    events = _log(amplitude=0.0)
    events = events[events["timestamp"] >= "2022-06-15"]
    log = load_events(events)
    config = replace(CONFIG, targets=(PURCHASE,))
    result = fit_propensity(log, pd.Timestamp("2023-09-01"), FeatureConfig(), config, n_threads=1)
    assert not result.choice["purchase"].endswith("-season")
    assert result.models["purchase"].level_shift == 0.0
    # The step was measured and judged, and lost.
    assert any(
        n.startswith("purchase: seasonal step not used by the final model")
        for n in result.evaluation.notes
    )


# --- an isotonic calibration's level ------------------------------------------------


def test_isotonic_probabilities_keep_the_model_ranking():
    from sklearn.isotonic import IsotonicRegression

    raw = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, 4.0])
    iso = IsotonicRegression(out_of_bounds="clip").fit(raw, [0, 1, 0, 0, 1, 1])
    p = isotonic_probability(iso, raw)
    # The map's values (0, 1/3 three times, 1) within 1e-6, strictly increasing.
    np.testing.assert_allclose(p, [0, 1 / 3, 1 / 3, 1 / 3, 1, 1], atol=2e-6)
    assert np.all(np.diff(p) > 0)
    # Inside [1e-6, 1 - 1e-6]: a level offset on the log-odds moves every value.
    assert p.min() > 0 and p.max() < 1


def test_an_isotonic_model_is_relevelled_and_takes_a_level_shift(xy):
    X, y, snapshot = xy
    model = PropensityModel("buy", "event", event="x", calibration="isotonic", random_state=0)
    model.fit(X, y, snapshot=snapshot)
    latest = snapshot == 2
    # The level of the latest training snapshot, as for a sigmoid calibration.
    assert model.predict(X[latest]).mean() == pytest.approx(y[latest].mean(), abs=1e-6)
    assert model.level_offset_ != 0.0
    # A seasonal step moves its predictions like a sigmoid's.
    before = model.predict(X)
    after = model.set_params(level_shift=0.4).predict(X)
    logit = lambda q: np.log(q / (1 - q))  # noqa: E731
    np.testing.assert_allclose(logit(after) - logit(before), 0.4, atol=1e-6)
