import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from scipy import integrate, stats
from scipy.special import betaln, gammaln

from segmentkit.errors import DataValidationError, InsufficientDataError
from segmentkit.features import build_features
from segmentkit.io.events import load_events
from segmentkit.models.bgnbd import (
    BetaGeoModel,
    GammaGammaModel,
    bgnbd_log_likelihood,
    gamma_gamma_log_likelihood,
    sample_bgnbd,
    summary_from_features,
    transaction_summary,
)

# Published CDNOW estimates (Fader, Hardie and Lee 2005), time in weeks.
CDNOW = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def fitted(params):
    model = BetaGeoModel()
    model.r_, model.alpha_, model.a_, model.b_ = (params[k] for k in ("r", "alpha", "a", "b"))
    return model


def summary(x, t_x, T):
    return pd.DataFrame({"frequency": [float(x)], "recency": [float(t_x)], "T": [float(T)]})


# --- likelihood ----------------------------------------------------------------


def test_likelihood_without_repeats_is_the_gamma_survival():
    ll = bgnbd_log_likelihood(0.243, 4.414, 0.793, 2.426, [0, 0], [0, 0], [10.0, 38.86])
    expected = 0.243 * np.log(4.414 / (4.414 + np.array([10.0, 38.86])))
    np.testing.assert_allclose(ll, expected, rtol=1e-12)


def test_likelihood_one_repeat_by_hand():
    # r = alpha = a = b = 1, x = 1, t_x = 1, T = 2:
    # Gamma(2)/Gamma(1) * B(1, 2)/B(1, 1) * (3^-2 + (a / b) 2^-2) = 1/2 * 13/36.
    ll = bgnbd_log_likelihood(1.0, 1.0, 1.0, 1.0, [1], [1.0], [2.0])
    assert np.exp(ll[0]) == pytest.approx(13 / 72, rel=1e-12)


def test_likelihood_matches_integral_over_the_priors():
    # Individual likelihood (FHL 2005, eq. 3): (1-p)^x lam^x e^(-lam T) + p (1-p)^(x-1) lam^x
    # e^(-lam t_x). The Beta(a, b) moments of the p factors are beta-function ratios; the
    # Gamma(r, alpha) integral over lam is done numerically.
    r, alpha, a, b = 0.8, 3.0, 1.4, 2.2
    x, t_x, T = 3, 5.5, 9.0
    stay = np.exp(betaln(a, b + x) - betaln(a, b))
    drop = np.exp(betaln(a + 1, b + x - 1) - betaln(a, b))
    prior = stats.gamma(r, scale=1 / alpha)

    def integrand(lam):
        return (stay * lam**x * np.exp(-lam * T) + drop * lam**x * np.exp(-lam * t_x)) * prior.pdf(
            lam
        )

    value, _ = integrate.quad(integrand, 0, np.inf, epsabs=1e-14, epsrel=1e-11, limit=200)
    ll = bgnbd_log_likelihood(r, alpha, a, b, [x], [t_x], [T])
    assert np.exp(ll[0]) == pytest.approx(value, rel=1e-7)


def test_likelihood_stays_finite_for_large_frequency():
    ll = bgnbd_log_likelihood(
        0.243, 4.414, 0.793, 2.426, [5000, 20000], [900.0, 990.0], [1000.0] * 2
    )
    assert np.isfinite(ll).all()
    # Against the closed form written with betaln instead of gammaln differences.
    x, t_x, T = 5000.0, 900.0, 1000.0
    r, alpha, a, b = CDNOW.values()
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    tail = np.logaddexp(
        -(r + x) * np.log(alpha + T), np.log(a / (b + x - 1)) - (r + x) * np.log(alpha + t_x)
    )
    assert ll[0] == pytest.approx(head + tail, rel=1e-10)


# --- conditional expectations --------------------------------------------------


def test_expected_transactions_published_cdnow_example():
    # FHL 2005: a customer with x = 2, t_x = 30.43, T = 38.86 (weeks) is expected to
    # make 1.226 transactions in the next 39 weeks.
    model = fitted(CDNOW)
    expected = model.expected_transactions(summary(2, 30.43, 38.86), 39.0)
    assert expected[0] == pytest.approx(1.226, abs=5e-4)


@pytest.mark.parametrize(
    ("x", "t_x", "T", "t"),
    [
        (0, 0.0, 38.86, 39.0),
        (3, 5.0, 40.0, 100.0),
        (50, 35.0, 38.86, 39.0),
        (400, 300.0, 310.0, 30.0),
    ],
    ids=["no-repeat", "lapsed", "frequent", "very-frequent"],
)
def test_expected_transactions_match_quadrature(x, t_x, T, t):
    # E[Y(t)] = P(alive) E_{p ~ Beta(a, b + x)}[(1 - ((alpha + T) / (alpha + T + p t))^(r + x)) / p].
    model = fitted(CDNOW)
    r, alpha, a, b = CDNOW.values()
    data = summary(x, t_x, T)
    alive = model.probability_alive(data)[0]

    def integrand(p):
        return (
            (1 - ((alpha + T) / (alpha + T + p * t)) ** (r + x)) / p * stats.beta(a, b + x).pdf(p)
        )

    value, _ = integrate.quad(integrand, 0, 1, limit=200, points=[1e-8, 1e-4, 1e-2])
    assert model.expected_transactions(data, t)[0] == pytest.approx(alive * value, rel=1e-7)


def test_expected_transactions_when_a_plus_b_is_below_one():
    # x = 0 with a + b < 1: the hypergeometric form is undefined (c = a + b - 1 < 0);
    # the value must still match the integral over the dropout probability.
    params = {"r": 0.4, "alpha": 6.0, "a": 0.3, "b": 0.5}
    model = fitted(params)
    data = pd.DataFrame({"frequency": [0.0, 2.0], "recency": [0.0, 20.0], "T": [40.0, 40.0]})
    got = model.expected_transactions(data, 30.0)
    r, alpha, a, b = params.values()
    for i, (x, T) in enumerate([(0.0, 40.0), (2.0, 40.0)]):
        # Substituting p = u^(1/a) removes the density's singularity at 0.
        def integrand(u, x=x, T=T):
            p = u ** (1 / a)
            ratio = (alpha + T) / (alpha + T + p * 30.0)
            return (1 - ratio ** (r + x)) / p * (1 - p) ** (b + x - 1) / a

        value, _ = integrate.quad(integrand, 0, 1, limit=200)
        value /= np.exp(betaln(a, b + x))
        alive = model.probability_alive(data.iloc[[i]])[0]
        assert got[i] == pytest.approx(alive * value, rel=1e-6)


def test_expected_transactions_with_a_concentrated_dropout_posterior():
    # As fitted on a daily purchase log where nearly nobody drops out: a and b in the
    # thousands. The hypergeometric form overflows for a young customer without a repeat
    # (it gave NaN and stopped training); the posterior of p is then so narrow that the
    # delta method, E[f(p)] ~ f(m) + f''(m) var / 2, is exact to a few parts per million.
    params = {"r": 0.3087, "alpha": 6.692, "a": 698.3, "b": 11952.7}
    model = fitted(params)
    data = pd.DataFrame(
        {"frequency": [0.0, 0.0, 2.0], "recency": [0.0, 0.0, 20.0], "T": [3.0, 200.0, 50.0]}
    )
    got = model.expected_transactions(data, 30.0)
    alive = model.probability_alive(data)
    r, alpha, a, b = params.values()
    for i, (x, T) in enumerate(zip(data["frequency"], data["T"], strict=True)):

        def f(p, x=x, T=T):
            return (1 - ((alpha + T) / (alpha + T + p * 30.0)) ** (r + x)) / p

        m, var = stats.beta(a, b + x).mean(), stats.beta(a, b + x).var()
        h = 1e-4
        curvature = (f(m + h) - 2 * f(m) + f(m - h)) / h**2
        assert got[i] == pytest.approx(alive[i] * (f(m) + curvature * var / 2), rel=1e-5)


def test_probability_alive_and_active_by_hand():
    model = fitted({"r": 1.0, "alpha": 1.0, "a": 1.0, "b": 1.0})
    data = pd.DataFrame({"frequency": [0.0, 1.0], "recency": [0.0, 1.0], "T": [2.0, 2.0]})
    # x = 1: odds of having dropped = a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x) = 9/4.
    np.testing.assert_allclose(model.probability_alive(data), [1.0, 4 / 13])
    # x = 0: P(>= 1 in (T, T + 3]) = 1 - (3 / 6)^1; x = 1: P(alive) (1 - (3 / 6)^2).
    np.testing.assert_allclose(model.probability_active(data, 3.0), [0.5, 4 / 13 * 0.75])


def test_expected_transactions_near_a_equal_one_are_continuous():
    data = summary(2, 20.0, 30.0)
    values = [
        fitted({"r": 0.5, "alpha": 5.0, "a": a, "b": 2.0}).expected_transactions(data, 30.0)[0]
        for a in (1.0 - 1e-3, 1.0, 1.0 + 1e-3)
    ]
    assert values[1] == pytest.approx(np.mean([values[0], values[2]]), rel=1e-3)


def test_expected_transactions_new_customer_matches_simulation():
    params = {"r": 0.6, "alpha": 8.0, "a": 1.3, "b": 3.0}
    simulated = sample_bgnbd(200_000, **params, T=30.0, seed=5)
    # A customer aged 30 made `frequency` repeat purchases in (0, 30].
    expected = fitted(params).expected_transactions_new(30.0)
    assert expected == pytest.approx(simulated["frequency"].mean(), rel=0.02)


# --- fitting -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_fit_recovers_simulated_parameters_and_future_totals(seed):
    truth = {"r": 0.5, "alpha": 10.0, "a": 0.8, "b": 2.5}
    ages = np.random.default_rng(seed).integers(60, 365, 10_000).astype(float)
    data = sample_bgnbd(10_000, **truth, T=ages, seed=seed + 10, horizon=30.0)
    model = BetaGeoModel().fit(data[["frequency", "recency", "T"]])
    assert model.converged_
    assert model.r_ == pytest.approx(truth["r"], rel=0.15)
    assert model.alpha_ == pytest.approx(truth["alpha"], rel=0.25)
    assert model.a_ == pytest.approx(truth["a"], rel=0.35)
    assert model.b_ == pytest.approx(truth["b"], rel=0.5)
    # The optimum is at least as likely as the truth.
    truth_ll = bgnbd_log_likelihood(*truth.values(), data["frequency"], data["recency"], data["T"])
    assert model.log_likelihood_ >= truth_ll.sum() - 1e-6
    predicted = model.expected_transactions(data, 30.0).sum()
    assert predicted == pytest.approx(data["future"].sum(), rel=0.06)
    # P(active) ranks the hold-out buyers: far better than chance.
    active = model.probability_active(data, 30.0)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(data["future"] > 0, active) > 0.75


def test_fit_is_deterministic_and_accepts_arrays():
    data = sample_bgnbd(2000, 0.5, 10.0, 0.8, 2.5, T=200.0, seed=3)[["frequency", "recency", "T"]]
    first = BetaGeoModel().fit(data).params_
    second = BetaGeoModel().fit(data.to_numpy()).params_
    assert first == second


# --- input errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"frequency": [1.0], "T": [3.0]}), r"missing column\(s\) \['recency'\]"),
        (summary(-1, 0, 3), "not a non-negative integer"),
        (summary(1.5, 1, 3), "not a non-negative integer"),
        (summary(1, 4, 3), r"recency outside \[0, T\]"),
        (summary(0, 1, 3), "recency > 0 with frequency 0"),
        (summary(1, np.nan, 3), "non-finite"),
    ],
    ids=[
        "missing-column",
        "negative",
        "fractional",
        "recency-after-T",
        "recency-without-repeat",
        "nan",
    ],
)
def test_bad_input_is_named(frame, message):
    two = pd.concat([summary(0, 0, 5), frame], ignore_index=True) if "recency" in frame else frame
    with pytest.raises(DataValidationError, match=message):
        BetaGeoModel().fit(two)


def test_bad_array_shape_and_too_few_customers():
    with pytest.raises(DataValidationError, match=r"got shape \(4,\)"):
        BetaGeoModel().fit(np.zeros(4))
    with pytest.raises(InsufficientDataError, match="at least 2 customers, got 1"):
        BetaGeoModel().fit(summary(1, 1, 3))


# --- Gamma-Gamma ---------------------------------------------------------------


def test_gamma_gamma_likelihood_matches_integral():
    p, q, v, x, m = 3.0, 4.0, 15.0, 4.0, 6.0

    def joint(nu):
        return stats.gamma(p * x, scale=1 / (nu * x)).pdf(m) * stats.gamma(q, scale=1 / v).pdf(nu)

    value, _ = integrate.quad(joint, 0, 50, limit=200)
    assert np.exp(gamma_gamma_log_likelihood(p, q, v, [x], [m])[0]) == pytest.approx(
        value, rel=1e-7
    )


def test_gamma_gamma_fit_and_expected_value():
    rng = np.random.default_rng(4)
    x = rng.integers(1, 12, 6000).astype(float)
    nu = rng.gamma(4.0, 1 / 20.0, x.size)
    m = rng.gamma(6.0 * x, 1 / (nu * x))
    model = GammaGammaModel().fit(x, m)
    assert model.p_ == pytest.approx(6.0, rel=0.2)
    assert model.q_ == pytest.approx(4.0, rel=0.25)
    assert model.v_ == pytest.approx(20.0, rel=0.3)
    # By hand: p (v + x m) / (p x + q - 1).
    model.p_, model.q_, model.v_ = 2.0, 3.0, 10.0
    np.testing.assert_allclose(model.expected_value([2.0, 0.0], [5.0, 0.0]), [20 / 3 * 2 / 2, 10.0])


def test_gamma_gamma_errors():
    with pytest.raises(DataValidationError, match="monetary <= 0"):
        GammaGammaModel().fit([1.0, 2.0], [3.0, 0.0])
    with pytest.raises(DataValidationError, match="differ in length"):
        GammaGammaModel().fit([1.0, 2.0], [3.0])
    model = GammaGammaModel()
    model.p_, model.q_, model.v_ = 1.0, 0.9, 1.0
    with pytest.raises(InsufficientDataError, match="q = 0.9 <= 1"):
        model.expected_value([1.0], [2.0])


# --- summaries from a log ---------------------------------------------------------


@pytest.fixture(scope="module")
def transactions():
    rows = [
        ("a", "2024-01-01 10:00", 10.0),
        ("a", "2024-01-01 18:00", 5.0),  # same day as birth: not a repeat
        ("a", "2024-01-04 09:00", 20.0),
        ("a", "2024-01-08 09:00", 40.0),
        ("b", "2024-01-09 12:00", 7.0),
        ("c", "2024-01-02 08:00", 3.0),
        ("c", "2024-01-11 00:00", 9.0),  # at as_of: never read
    ]
    raw = pd.DataFrame(rows, columns=["user_id", "timestamp", "revenue"])
    raw["event"] = "purchase"
    return load_events(raw)


def test_transaction_summary_by_hand(transactions):
    as_of = pd.Timestamp("2024-01-11")
    table = transaction_summary(transactions, as_of, event="purchase")
    expected = pd.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "frequency": [2.0, 0.0, 0.0],
            "recency": [7.0, 0.0, 0.0],
            "T": [10.0, 2.0, 9.0],
            "monetary": [30.0, 0.0, 0.0],
        }
    )
    assert_frame_equal(table, expected, check_dtype=False)


def test_summary_from_features_equals_log_summary_on_transactions(transactions):
    as_of = pd.Timestamp("2024-01-11")
    features = build_features(transactions, as_of)
    from_features = summary_from_features(features)
    from_log = transaction_summary(transactions, as_of)
    assert_frame_equal(
        from_features.reset_index(drop=True),
        from_log[["frequency", "recency", "T"]],
        check_dtype=False,
    )


def test_summaries_name_missing_columns_and_bad_birth(transactions):
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['active_days_total'\]"):
        summary_from_features(pd.DataFrame({"recency_days": [1.0], "tenure_days": [2.0]}))
    with pytest.raises(DataValidationError, match="birth must be"):
        transaction_summary(transactions, pd.Timestamp("2024-01-11"), birth="first_view")


def test_transaction_summary_leaves_refund_days_out():
    # A refund (negative revenue) is not a purchase: neither a repeat day nor its value.
    raw = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a"],
            "timestamp": ["2024-01-01", "2024-01-03", "2024-01-05", "2024-01-05 12:00"],
            "revenue": [10.0, -10.0, 8.0, 4.0],
            "event": "purchase",
        }
    )
    table = transaction_summary(load_events(raw), pd.Timestamp("2024-01-11"))
    assert table[["frequency", "recency", "T", "monetary"]].to_dict("records") == [
        {"frequency": 1.0, "recency": 4.0, "T": 10.0, "monetary": 12.0}
    ]
