import numpy as np
import pandas as pd
import pytest

from segmentkit.features import build_features
from segmentkit.io.synth import generate_events
from segmentkit.models.naming import (
    EVIDENCE_COLUMNS,
    describe_segment,
    feature_words,
    name_segments,
    rule_name,
    segment_evidence,
)
from segmentkit.models.segmentation import Segmenter

COLUMNS = [
    "recency_days",
    "tenure_days",
    "median_gap_days",
    "active_days_total",
    "active_days_30d",
    "revenue_total",
    "orders",
]


def users(n, rng, recency, tenure, gap, days, recent, revenue, orders):
    """``n`` users around the given values (small noise, never negative)."""

    def around(value, spread=0.1):
        return np.maximum(value * (1 + spread * rng.standard_normal(n)), 0.0)

    return pd.DataFrame(
        {
            "recency_days": around(recency),
            "tenure_days": around(tenure),
            "median_gap_days": around(gap),
            "active_days_total": np.round(around(days)),
            "active_days_30d": np.round(around(recent)),
            "revenue_total": around(revenue),
            "orders": np.round(around(orders)),
        }
    )[COLUMNS]


# Hand-made populations: each group's behaviour is read off its arguments.
GROUPS = {
    "top": dict(recency=2, tenure=300, gap=4, days=70, recent=8, revenue=2000, orders=20),
    "frequent": dict(recency=1, tenure=300, gap=2, days=140, recent=20, revenue=60, orders=2),
    "occasional": dict(recency=12, tenure=250, gap=15, days=15, recent=2, revenue=80, orders=2),
    "browsers": dict(recency=10, tenure=250, gap=12, days=18, recent=2, revenue=0, orders=0),
    "fading": dict(recency=55, tenure=280, gap=6, days=45, recent=0, revenue=900, orders=9),
    "fading_low": dict(recency=50, tenure=200, gap=8, days=8, recent=0, revenue=20, orders=1),
    "lapsed": dict(recency=200, tenure=260, gap=5, days=6, recent=0, revenue=0, orders=0),
    "new": dict(recency=2, tenure=9, gap=2, days=4, recent=4, revenue=30, orders=1),
}
EXPECTED = {
    "top": "Champions",
    "frequent": "Loyal",
    "occasional": "Occasional buyers",
    "browsers": "Casual browsers",
    "fading": "At risk",
    "fading_low": "About to sleep",
    "lapsed": "Hibernating",
    "new": "New",
}


def population(groups, seed, n=60):
    rng = np.random.default_rng(seed)
    frames = [users(n, rng, **GROUPS[g]) for g in groups]
    labels = np.repeat(np.arange(len(groups)), n)
    return pd.concat(frames, ignore_index=True), labels


def names_of(groups, seed):
    X, labels = population(groups, seed)
    evidence = segment_evidence(X.to_numpy(float), labels, COLUMNS, len(groups))
    _, names = name_segments(evidence, ["?"] * len(groups))
    return dict(zip(groups, names, strict=True)), evidence


@pytest.mark.parametrize("seed", range(3))
def test_each_rule_on_a_hand_made_population(seed):
    names, _ = names_of(list(GROUPS), seed)
    assert names == EXPECTED


@pytest.mark.parametrize("seed", range(3))
def test_long_lapsed_members_are_hibernating_never_at_risk(seed):
    # Even when they were valuable: long gone is Hibernating (or lapsed top spenders).
    lapsed_valuable = dict(GROUPS["lapsed"], revenue=900, orders=9, days=40)
    rng = np.random.default_rng(seed)
    X = pd.concat(
        [users(60, rng, **lapsed_valuable), users(240, rng, **GROUPS["browsers"])],
        ignore_index=True,
    )
    labels = np.repeat([0, 1], [60, 240])
    evidence = segment_evidence(X.to_numpy(float), labels, COLUMNS, 2)
    name = name_segments(evidence, ["?", "?"])[1][0]
    assert name in ("Hibernating", "Lapsed top spenders")
    assert evidence.loc[0, "share_long_lapsed"] > 0.9


def test_recency_is_judged_against_the_users_own_gap():
    # Bi-monthly buyers 70 days after their last visit are on schedule, not fading.
    rng = np.random.default_rng(0)
    bimonthly = dict(recency=70, tenure=400, gap=60, days=7, recent=0, revenue=500, orders=6)
    X = pd.concat([users(80, rng, **bimonthly), users(80, rng, **GROUPS["top"])])
    evidence = segment_evidence(X.to_numpy(float), np.repeat([0, 1], 80), COLUMNS, 2)
    assert evidence.loc[0, "share_fading"] == 0.0
    assert rule_name(evidence.loc[0]) not in ("At risk", "About to sleep", "Hibernating")


def test_one_active_day_has_no_typical_gap():
    # The gap column holds the tenure for users seen on one day only: a one-time
    # buyer 200 days ago is long lapsed, not "on schedule".
    X = pd.DataFrame(
        {"recency_days": [200.0, 1.0], "tenure_days": [200.0, 100.0],
         "median_gap_days": [200.0, 3.0]}
    )  # fmt: skip
    evidence = segment_evidence(X.to_numpy(float), np.array([0, 1]), list(X.columns), 2)
    assert evidence.loc[0, "share_long_lapsed"] == 1.0


def test_champions_hold_the_top_spenders():
    names, evidence = names_of(list(GROUPS), 0)
    champions = [g for g, n in names.items() if n == "Champions"]
    assert champions == ["top"]
    assert evidence.loc[list(GROUPS).index("top"), "share_top_value"] >= 0.5


def test_never_loyal_when_recent_activity_is_far_below_the_population():
    # Frequent over their lifetime, but quiet in the last window while everyone
    # else is active: not Loyal.
    quiet = dict(GROUPS["frequent"], recent=1, recency=20, gap=12)
    rng = np.random.default_rng(1)
    X = pd.concat(
        [users(60, rng, **quiet), users(60, rng, **GROUPS["frequent"]),
         users(120, rng, **GROUPS["occasional"])],
        ignore_index=True,
    )  # fmt: skip
    labels = np.repeat([0, 1, 2], [60, 60, 120])
    evidence = segment_evidence(X.to_numpy(float), labels, COLUMNS, 3)
    assert evidence.loc[0, "recent_activity_ratio"] < 0.5
    assert rule_name(evidence.loc[0]) != "Loyal"
    assert rule_name(evidence.loc[1]) == "Loyal"


@pytest.mark.parametrize("seed", range(3))
def test_shared_names_get_word_qualifiers_chosen_by_behaviour(seed):
    rich = dict(GROUPS["lapsed"], revenue=60, orders=1)
    rng = np.random.default_rng(seed)
    frames = [users(60, rng, **rich), users(60, rng, **GROUPS["lapsed"])]
    frames.append(users(120, rng, **GROUPS["occasional"]))  # the top spenders
    X = pd.concat(frames, ignore_index=True)
    labels = np.repeat([0, 1, 2], [60, 60, 120])
    evidence = segment_evidence(X.to_numpy(float), labels, COLUMNS, 3)
    kinds, names = name_segments(evidence, ["?"] * 3)
    assert kinds[:2] == ["Hibernating", "Hibernating"]
    assert names[:2] == ["Hibernating (higher value)", "Hibernating (lower value)"]
    # Same behaviour, other ids: the same names follow the behaviour.
    swapped = evidence.iloc[[1, 0, 2]].reset_index(drop=True)
    assert name_segments(swapped, ["?"] * 3)[1][:2] == names[1::-1]


def test_names_are_unique_words_without_feature_names():
    names, _ = names_of(list(GROUPS), 0)
    assert len(set(names.values())) == len(names)
    for name in names.values():
        assert "_" not in name
        assert not any(column in name for column in COLUMNS)


def test_rules_needing_missing_columns_are_skipped():
    X, labels = population(["top", "lapsed"], 0)
    only_activity = X[["active_days_total"]]
    evidence = segment_evidence(only_activity.to_numpy(float), labels, ["active_days_total"], 2)
    assert evidence["share_long_lapsed"].isna().all()
    kinds, _ = name_segments(evidence, ["a", "b"])
    assert "Hibernating" not in kinds and "Champions" not in kinds


def test_evidence_columns_and_absent_segments():
    X, labels = population(["top", "new"], 0)
    evidence = segment_evidence(X.to_numpy(float), labels, COLUMNS, 3)
    assert list(evidence.columns) == list(EVIDENCE_COLUMNS)
    assert evidence.loc[2].isna().all()
    kinds, names = name_segments(evidence, ["x", "y", "z"])
    assert kinds[2] == "" and names[2] == ""


def test_feature_words():
    assert feature_words("revenue_90d") == "spend, last 90 days"
    assert feature_words("recency_days") == "days since last activity"
    assert feature_words("add_to_cart_events") == "add-to-carts"
    assert feature_words("share_events") == "share events"


# ---------------------------------------------- stability across resamples
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["small_vip", "transactions"])
def test_same_behaviour_same_name_across_bootstrap_resamples(scenario):
    log = generate_events(scenario=scenario, users=2500, days=240, seed=3)
    X = build_features(log.events, as_of=log.end).drop(columns="user_id")
    base = Segmenter(n_bootstrap=5, random_state=0).fit(X)
    rng = np.random.default_rng(0)
    for b in range(3):
        rows = rng.integers(0, len(X), len(X))
        refit = Segmenter(n_bootstrap=5, random_state=b + 1).fit(X.iloc[rows])
        # Match each refit segment to the base segment holding most of its users.
        predicted = base.predict(X.iloc[rows])
        for s in range(refit.n_segments_):
            members = refit.labels_ == s
            if members.sum() < 0.02 * len(rows):
                continue
            match = np.bincount(predicted[members]).argmax()
            if (predicted[members] == match).mean() >= 0.8:
                # The rule's name always follows the behaviour; the qualifier that
                # tells namesakes apart can only match when the same segments exist.
                assert refit.segment_kinds_[s] == base.segment_kinds_[match]
                if refit.k_ == base.k_:
                    assert refit.segment_names_[s] == base.segment_names_[match]


def test_descriptions_read_right_when_refunds_make_spend_negative():
    # A segment of refunders: its mean spend is just below zero, the population's
    # positive. Printed as a ratio this read "spend -0.0x average".
    features = ["revenue_30d", "active_days_30d", "orders", "avg_order_value"]
    text = describe_segment(
        pd.Series(dtype=float),
        np.array([-0.01, 0.0, 1.02, -0.5]),
        np.array([-2.0, -1.5, 1.0, 2.5]),
        features,
    )
    assert "x average" not in text
    assert "spend, last 30 days below zero (refunds exceed purchases)" in text
    assert "no active days, last 30 days" in text
    # Opposite signs the other way: the population nets refunds, the segment does not.
    assert "order value above zero, the average below" in text
    assert (
        describe_segment(pd.Series(dtype=float), np.array([1.02]), np.array([1.0]), ["orders"])
        == "orders about average"
    )


def test_transaction_log_descriptions_name_only_what_the_log_has():
    # A purchase-only log has no visits, sessions or browsing: its descriptions
    # speak of transactions and purchases.
    log = generate_events(scenario="transactions", users=600, days=240, seed=1)
    X = build_features(log.events, as_of=log.end).drop(columns="user_id")
    model = Segmenter(n_bootstrap=3, random_state=0).fit(X)
    assert model.transaction_log_
    text = " | ".join(model.segment_descriptions_)
    for word in ("events", "visit", "session", "active days", "kinds of action", "add-to-cart"):
        assert word not in text
    assert "transactions" in text or "purchase" in text


def test_recency_qualifier_says_lapsed_only_of_lapsed_segments():
    evidence = pd.DataFrame(
        {
            "share_top_value": [0.6, 0.7, 0.1, 0.1],
            "value_rank": [0.8, 0.8, 0.3, 0.3],
            "frequency_rank": [0.8, 0.8, 0.3, 0.3],
            "share_fading": [0.1, 0.0, 0.3, 0.2],
            "share_long_lapsed": [0.0, 0.0, 0.6, 0.7],
            "typical_recency_days": [56.0, 16.0, 150.0, 400.0],
        }
    )
    names = name_segments(evidence, ["a", "b", "c", "d"])[1]
    assert names[:2] == ["Champions (less recent)", "Champions (more recent)"]
    assert names[2:] == ["Hibernating (more recent)", "Hibernating (longer lapsed)"]


def test_descriptions_skip_lifts_that_repeat_one_already_said():
    # The recent buyers of a one-cohort log (CDNOW's) hold nearly all of the last 30
    # days' purchases: every 30-day count is 1 / share times the average, three times
    # "12.1x" in one line.
    features = ["revenue_30d", "active_days_30d", "events_30d", "revenue_90d", "orders"]
    text = describe_segment(
        pd.Series(dtype=float),
        np.array([12.1, 12.08, 12.1, 4.5, 2.0]),
        np.array([3.0, 2.9, 2.8, 1.5, 1.0]),
        features,
        transaction_log=True,
    )
    assert text == (
        "spend, last 30 days 12.1x average, spend, last 90 days 4.5x average, orders 2.0x average"
    )
    # "Nothing in the last 30 days" is said once, not once per count.
    features = ["active_days_30d", "events_30d", "sessions_30d", "revenue_total"]
    text = describe_segment(
        pd.Series(dtype=float),
        np.array([0.0, 0.0, 0.0, 0.2]),
        np.array([-2, -2, -2, -1.0]),
        features,
    )
    assert text == "no active days, last 30 days, spend 80% below average"
    # Nor "99% below" and then "98% below" (the hibernating users of the demo log).
    text = describe_segment(
        pd.Series(dtype=float),
        np.array([0.01, 0.02, 3.2]),
        np.array([-2.0, -1.9, 1.5]),
        ["events_90d", "active_days_90d", "recency_days"],
    )
    assert text == "events, last 90 days 99% below average, days since last activity 3.2x average"
