"""Drift tests: hand-computed PSI, Wasserstein, segment agreement, migration, backtest, report."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from segmentkit.config import DriftConfig
from segmentkit.drift import (
    GONE,
    NEW_USER,
    PSI_EPSILON,
    AgreementResult,
    BacktestResult,
    DriftReport,
    DriftResult,
    FeatureReference,
    MigrationResult,
    build_feature_reference,
    migration_matrix,
    population_stability_index,
    propensity_backtest,
    psi_test,
    run_drift_tests,
    segment_agreement,
    share_psi_test,
    wasserstein_test,
)
from segmentkit.errors import (
    BundleError,
    ConfigError,
    DataValidationError,
    InsufficientDataError,
)


def _ref(values, n_bins=10, name="x") -> FeatureReference:
    # min_group=1: these hand-computed cases test the binning, not the privacy floor.
    return build_feature_reference(pd.DataFrame({name: values}), n_bins=n_bins, min_group=1)[name]


@pytest.fixture
def normal_ref() -> FeatureReference:
    rng = np.random.default_rng(0)
    return _ref(rng.normal(0.0, 1.0, 5000))


# ----------------------------------------------------------------------------- reference


def test_reference_bins_on_one_to_ten():
    # inverted-CDF quartiles of 1..10 are 3, 5, 8: bins (-inf,3], (3,5], (5,8], (8,inf)
    ref = _ref(np.arange(1, 11), n_bins=4)
    assert ref.edges == (3.0, 5.0, 8.0)
    np.testing.assert_allclose(ref.proportions, [0.3, 0.2, 0.3, 0.2])
    assert ref.n == 10
    assert ref.mean == pytest.approx(5.5)
    assert ref.std == pytest.approx(math.sqrt(8.25))  # population std of 1..10
    assert ref.quantiles[0] == 1.0 and ref.quantiles[-1] == 10.0
    assert len(ref.quantiles) == 101


def test_reference_skips_user_id_and_non_numeric_columns():
    table = pd.DataFrame(
        {
            "user_id": [1, 2, 3],  # numeric but an identifier
            "country": ["fr", "de", "fr"],
            "orders": [0, 1, 2],
            "revenue": [0.0, 5.0, 7.5],
        }
    )
    refs = build_feature_reference(table, n_bins=2)
    assert list(refs) == ["orders", "revenue"]


def test_reference_drops_missing_values():
    ref = _ref([1.0, np.nan, 2.0, np.inf, 3.0], n_bins=2)
    assert ref.n == 3


@pytest.mark.parametrize(
    ("table", "error"),
    [
        (pd.DataFrame({"x": []}, dtype=float), InsufficientDataError),
        (pd.DataFrame({"user_id": ["a"], "name": ["b"]}), InsufficientDataError),
        (pd.DataFrame({"x": [np.nan, np.nan]}), InsufficientDataError),
    ],
    ids=["empty", "no-numeric-column", "all-nan"],
)
def test_reference_errors(table, error):
    with pytest.raises(error):
        build_feature_reference(table)


@pytest.mark.parametrize("n_bins", [1, 0, 2.5, True])
def test_reference_refuses_bad_n_bins(n_bins):
    with pytest.raises(ConfigError, match="n_bins"):
        build_feature_reference(pd.DataFrame({"x": [1.0, 2.0]}), n_bins=n_bins)


def test_feature_reference_json_round_trip(normal_ref):
    text = json.dumps(normal_ref.to_dict(), allow_nan=False)
    assert FeatureReference.from_dict(json.loads(text)) == normal_ref


def test_feature_reference_from_dict_errors(normal_ref):
    data = normal_ref.to_dict()
    del data["edges"]
    with pytest.raises(BundleError, match="edges"):
        FeatureReference.from_dict(data)
    bad = normal_ref.to_dict()
    bad["proportions"] = bad["proportions"][:-1]
    with pytest.raises(BundleError, match="malformed"):
        FeatureReference.from_dict(bad)


# ----------------------------------------------------------------------------- PSI


def test_psi_hand_computed():
    ref = _ref(np.arange(1, 11), n_bins=4)  # proportions 0.3, 0.2, 0.3, 0.2
    current = [1, 1, 4, 6, 6, 6, 8, 9, 20, 30]  # bins: 2, 1, 4, 3 values of 10
    expected = (
        (0.2 - 0.3) * math.log(0.2 / 0.3)
        + (0.1 - 0.2) * math.log(0.1 / 0.2)
        + (0.4 - 0.3) * math.log(0.4 / 0.3)
        + (0.3 - 0.2) * math.log(0.3 / 0.2)
    )
    result = psi_test(ref, current, warn=0.1, drift=0.25)
    assert result.score == pytest.approx(expected)
    assert expected == pytest.approx(0.1792, abs=1e-4)
    assert result.status == "WARN"
    assert not result.drifted
    assert result.details["current_proportions"] == pytest.approx([0.2, 0.1, 0.4, 0.3])


def test_psi_empty_bins_use_epsilon():
    ref = _ref(np.arange(1, 11), n_bins=4)
    current = [1, 2, 3, 1, 2, 3, 9, 9, 9, 9]  # bins: 0.6, 0, 0, 0.4
    eps = 1e-4
    expected = (
        (0.6 - 0.3) * math.log(0.6 / 0.3)
        + (eps - 0.2) * math.log(eps / 0.2)
        + (eps - 0.3) * math.log(eps / 0.3)
        + (0.4 - 0.2) * math.log(0.4 / 0.2)
    )
    assert eps == PSI_EPSILON
    result = psi_test(ref, current)
    assert result.score == pytest.approx(expected)
    assert result.status == "DRIFT"
    assert result.drifted


def test_population_stability_index_is_zero_for_equal_bins():
    assert population_stability_index([0.2, 0.8], [0.2, 0.8]) == 0.0
    with pytest.raises(ValueError, match="length"):
        population_stability_index([0.5, 0.5], [1.0])


def test_psi_same_distribution_is_ok(normal_ref):
    current = np.random.default_rng(1).normal(0.0, 1.0, 5000)
    result = psi_test(normal_ref, current)
    assert result.score < 0.02
    assert result.status == "OK"


def test_psi_shifted_normal_drifts(normal_ref):
    current = np.random.default_rng(1).normal(1.0, 1.0, 5000)
    result = psi_test(normal_ref, current)
    assert result.score > 0.25
    assert result.status == "DRIFT"


def test_values_outside_reference_range_land_in_outer_bins(normal_ref):
    current = np.array([-100.0, -100.0, 100.0, 100.0, 100.0])
    props = psi_test(normal_ref, current).details["current_proportions"]
    assert props[0] == pytest.approx(0.4)
    assert props[-1] == pytest.approx(0.6)
    assert sum(props[1:-1]) == 0.0


def test_psi_drops_and_counts_missing_current_values(normal_ref):
    current = np.concatenate([np.random.default_rng(1).normal(size=1000), [np.nan] * 10])
    result = psi_test(normal_ref, current)
    assert result.details["n"] == 1000
    assert result.details["n_missing"] == 10


def test_binary_feature_gets_two_bins_and_behaves():
    rng = np.random.default_rng(2)
    ref = _ref((rng.random(4000) < 0.3).astype(int))
    # one bin for 0, one for 1, and an (empty) outer bin for values above 1
    assert ref.edges == (0.0, 1.0)
    assert ref.proportions[2] == 0.0
    same = psi_test(ref, (rng.random(4000) < 0.3).astype(int))
    assert same.status == "OK"
    flipped = psi_test(ref, (rng.random(4000) < 0.7).astype(int))
    assert flipped.status == "DRIFT"


def test_constant_feature_does_not_crash():
    ref = _ref(np.full(500, 5.0))
    assert ref.edges == (5.0,)
    assert ref.proportions == (1.0, 0.0)
    assert ref.std == 0.0
    assert psi_test(ref, np.full(300, 5.0)).score == 0.0
    assert psi_test(ref, np.full(300, 6.0)).status == "DRIFT"
    wass = wasserstein_test(ref, np.full(300, 6.0))
    assert wass.details["distance"] == pytest.approx(1.0)
    assert wass.score == pytest.approx(1.0)  # constant reference: raw units


def test_count_feature_with_many_zeros():
    rng = np.random.default_rng(3)
    ref = _ref(rng.poisson(0.5, 5000))
    assert len(ref.edges) < 9  # ties merged
    assert psi_test(ref, rng.poisson(0.5, 5000)).status == "OK"
    assert psi_test(ref, rng.poisson(2.0, 5000)).status == "DRIFT"


def test_psi_errors(normal_ref):
    with pytest.raises(InsufficientDataError, match="'x'"):
        psi_test(normal_ref, [])
    with pytest.raises(InsufficientDataError):
        psi_test(normal_ref, [np.nan, np.nan])
    with pytest.raises(DataValidationError, match="not numeric"):
        psi_test(normal_ref, ["a", "b"])
    with pytest.raises(ConfigError, match="warn <= drift"):
        psi_test(normal_ref, [0.0], warn=0.3, drift=0.2)


# ----------------------------------------------------------------------------- Wasserstein


def test_wasserstein_of_a_shift_is_the_shift():
    rng = np.random.default_rng(4)
    sample = rng.normal(10.0, 2.0, 4000)
    ref = _ref(sample)
    exact = wasserstein_test(ref, sample + 1.5)
    assert exact.details["distance"] == pytest.approx(1.5)
    assert exact.score == pytest.approx(1.5 / ref.std)
    fresh = wasserstein_test(ref, rng.normal(10.0, 2.0, 4000) - 3.0)
    assert fresh.details["distance"] == pytest.approx(3.0, abs=0.1)


def test_wasserstein_is_informational_without_thresholds(normal_ref):
    far = wasserstein_test(normal_ref, np.random.default_rng(5).normal(5.0, 1.0, 1000))
    assert far.score > 4
    assert far.status == "OK"
    judged = wasserstein_test(normal_ref, np.random.default_rng(5).normal(5.0, 1.0, 1000), 1, 2)
    assert judged.status == "DRIFT"


# ----------------------------------------------------------------------------- share PSI


def test_share_psi_changed_mix_drifts():
    reference = {"0": 0.5, "1": 0.3, "2": 0.2}  # string keys, as read back from JSON
    labels = np.array([0] * 20 + [1] * 30 + [2] * 50)
    expected = (0.2 - 0.5) * math.log(0.2 / 0.5) + 0.0 + (0.5 - 0.2) * math.log(0.5 / 0.2)
    result = share_psi_test(reference, labels)
    assert result.score == pytest.approx(expected)
    assert result.status == "DRIFT"
    shares = {d["segment"]: d["current_share"] for d in result.details["segments"]}
    assert shares == pytest.approx({"0": 0.2, "1": 0.3, "2": 0.5})


def test_share_psi_same_mix_is_ok_and_one_sided_segments_use_epsilon():
    reference = {0: 0.5, 1: 0.5}
    assert share_psi_test(reference, [0, 1, 0, 1]).score == 0.0
    eps = PSI_EPSILON
    result = share_psi_test(reference, [0, 0, 2, 2])  # 1 vanished, 2 is new
    expected = (
        (0.5 - 0.5) * 0 + (eps - 0.5) * math.log(eps / 0.5) + (0.5 - eps) * math.log(0.5 / eps)
    )
    assert result.score == pytest.approx(expected)
    assert [d["segment"] for d in result.details["segments"]] == ["0", "1", "2"]


def test_share_psi_errors():
    with pytest.raises(DataValidationError, match="sum to 1"):
        share_psi_test({0: 0.5, 1: 0.2}, [0, 1])
    with pytest.raises(DataValidationError, match="sum to 1"):
        share_psi_test({0: 1.5, 1: -0.5}, [0, 1])
    with pytest.raises(DataValidationError, match="empty"):
        share_psi_test({}, [0, 1])
    with pytest.raises(InsufficientDataError):
        share_psi_test({0: 1.0}, [])
    with pytest.raises(DataValidationError, match="missing"):
        share_psi_test({0: 1.0}, [0, None])


# ----------------------------------------------------------------------------- agreement


def test_relabelled_identical_partitions_agree_fully():
    labels = np.random.default_rng(6).integers(0, 4, 1000)
    relabel = np.array([2, 3, 0, 1])[labels]
    result = segment_agreement(labels, relabel)
    assert result.ari == pytest.approx(1.0)
    assert result.jaccard == {"0": 1.0, "1": 1.0, "2": 1.0, "3": 1.0}
    assert {(m.champion, m.challenger) for m in result.matches} == {
        ("0", "2"),
        ("1", "3"),
        ("2", "0"),
        ("3", "1"),
    }
    assert result.appeared == () and result.vanished == ()
    assert result.status == "OK"


def test_hand_computed_ari_gives_drift():
    # contingency all ones: sum C(n_ij,2)=0, rows 2, cols 2, C(4,2)=6
    # ARI = (0 - 2*2/6) / ((2+2)/2 - 2*2/6) = -0.5
    result = segment_agreement([0, 0, 1, 1], [0, 1, 0, 1])
    assert result.ari == pytest.approx(-0.5)
    assert result.status == "DRIFT"
    assert result.with_thresholds(-0.4, -0.6).status == "WARN"
    assert result.with_thresholds(None, None).status == "OK"


def test_split_segment_appears():
    champion = [0] * 100 + [1] * 100 + [2] * 100
    challenger = [0] * 100 + [1] * 100 + [2] * 50 + [3] * 50
    result = segment_agreement(champion, challenger)
    assert result.jaccard["0"] == 1.0 and result.jaccard["1"] == 1.0
    assert result.jaccard["2"] == pytest.approx(0.5)
    assert len(result.appeared) == 1 and result.appeared[0] in {"2", "3"}
    assert result.vanished == ()


def test_merged_segment_vanishes():
    champion = [0] * 100 + [1] * 100 + [2] * 50 + [3] * 50
    challenger = [0] * 100 + [1] * 100 + [2] * 100
    result = segment_agreement(champion, challenger)
    assert len(result.vanished) == 1 and result.vanished[0] in {"2", "3"}
    assert result.jaccard[result.vanished[0]] == 0.0  # left without a partner
    assert result.appeared == ()


def test_pairs_below_the_jaccard_floor_do_not_match():
    champion = [0] * 10 + [1] * 90
    challenger = [0] * 1 + [1] * 99  # segment 0 shares 1 of 10 users with 0: J = 0.1
    kept = segment_agreement(champion, challenger, min_jaccard=0.1)
    assert kept.vanished == () and kept.appeared == ()
    dropped = segment_agreement(champion, challenger, min_jaccard=0.2)
    assert dropped.vanished == ("0",)
    assert dropped.appeared == ("0",)


def test_centroid_shift_in_standard_units():
    labels = [0, 0, 1, 1]
    champ = np.array([[0.0, 0.0], [1.0, 1.0]])
    chall = {"a": [0.0, 0.0], "b": [1.0, 3.0]}
    result = segment_agreement(labels, ["a", "a", "b", "b"], champ, chall)
    shifts = {m.champion: m.centroid_shift for m in result.matches}
    assert shifts["0"] == 0.0
    assert shifts["1"] == pytest.approx(math.sqrt(4.0) / math.sqrt(2.0))
    scaled = segment_agreement(labels, ["a", "a", "b", "b"], champ, chall, scale=[1.0, 2.0])
    assert scaled.centroid_shift_max == pytest.approx(1.0 / math.sqrt(2.0))
    assert segment_agreement(labels, labels).centroid_shift_max is None


def test_agreement_errors():
    with pytest.raises(DataValidationError, match="differ in length"):
        segment_agreement([0, 1], [0])
    with pytest.raises(InsufficientDataError):
        segment_agreement([], [])
    with pytest.raises(DataValidationError, match="missing"):
        segment_agreement([0, None], [0, 1])
    with pytest.raises(DataValidationError, match="no row for segment"):
        segment_agreement([0, 1], [0, 1], [[0.0]], [[0.0], [1.0]])
    with pytest.raises(DataValidationError, match="no entry"):
        segment_agreement([0, 1], [0, 1], {0: [0.0]}, {0: [0.0], 1: [1.0]})
    with pytest.raises(DataValidationError, match="differ in length"):
        segment_agreement([0, 1], [0, 1], [[0.0], [1.0]], [[0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(DataValidationError, match="scale"):
        segment_agreement([0, 1], [0, 1], [[0.0], [1.0]], [[0.0], [1.0]], scale=[0.0])
    with pytest.raises(ConfigError, match="warn >= drift"):
        segment_agreement([0, 1], [0, 1], ari_warn=0.5, ari_drift=0.7)


# ----------------------------------------------------------------------------- migration


def test_migration_matrix_hand_example():
    previous = pd.Series({"u1": 0, "u2": 0, "u3": 1, "u4": 1, "u5": 2})
    current = pd.Series({"u1": 0, "u2": 1, "u3": 1, "u6": 2, "u7": 0})
    result = migration_matrix(previous, current)
    expected = pd.DataFrame(
        [[1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 1], [1, 0, 1, 0]],
        index=["0", "1", "2", NEW_USER],
        columns=["0", "1", "2", GONE],
        dtype=np.int64,
    )
    assert_frame_equal(result.counts, expected)
    assert result.n_users == 7 == int(result.counts.to_numpy().sum())
    assert (result.n_new, result.n_gone, result.n_both, result.n_stayed) == (2, 2, 3, 2)
    assert result.stayed_share == pytest.approx(2 / 3)
    shares = result.shares
    assert shares.loc["0"].tolist() == [0.5, 0.5, 0.0, 0.0]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_migration_conserves_users_on_random_data():
    rng = np.random.default_rng(7)
    prev_users = np.arange(0, 3000)
    cur_users = np.arange(500, 3600)  # 500 gone, 600 new
    previous = pd.Series(rng.integers(0, 5, prev_users.size), index=prev_users)
    current = pd.Series(rng.integers(0, 6, cur_users.size), index=cur_users)
    result = migration_matrix(previous, current)
    assert int(result.counts.to_numpy().sum()) == 3600 == result.n_users
    assert result.n_new == 600 and result.n_gone == 500
    assert result.counts.loc[NEW_USER, GONE] == 0
    assert result.counts.loc[NEW_USER].sum() == 600
    assert list(result.counts.columns) == ["0", "1", "2", "3", "4", "5", GONE]


def test_migration_without_common_users_has_no_stayed_share():
    result = migration_matrix(pd.Series({"a": 0}), pd.Series({"b": 0}))
    assert result.stayed_share is None
    assert result.shares.loc[NEW_USER].tolist() == [1.0, 0.0]


def test_migration_errors():
    ok = pd.Series({"a": 0})
    with pytest.raises(DataValidationError, match="twice"):
        migration_matrix(pd.Series([0, 1], index=["a", "a"]), ok)
    with pytest.raises(DataValidationError, match="missing"):
        migration_matrix(ok, pd.Series({"a": None, "b": 1}))
    with pytest.raises(DataValidationError, match="Series"):
        migration_matrix({"a": 0}, ok)
    with pytest.raises(DataValidationError, match="reserved"):
        migration_matrix(pd.Series({"a": GONE}), ok)


# ----------------------------------------------------------------------------- backtest


def test_backtest_hand_computed():
    scores = [0.1, 0.4, 0.35, 0.8]
    outcomes = [0, 0, 1, 1]
    # positive/negative pairs ranked right: (0.35>0.1), (0.8>0.1), (0.8>0.4); wrong: 0.35<0.4
    result = propensity_backtest("churn", scores, outcomes, 0.82, 0.15, n_bins=2)
    assert result.auc == pytest.approx(0.75)
    assert result.brier == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert result.auc_drop == pytest.approx(0.07)
    assert result.status == "WARN"
    assert [(b.n, b.mean_predicted, b.observed_rate) for b in result.calibration] == [
        (2, pytest.approx(0.225), 0.5),
        (2, pytest.approx(0.6), 0.5),
    ]
    assert result.predicted_total == pytest.approx(1.65) and result.observed_total == 2


def test_backtest_status_of_a_degraded_model():
    rng = np.random.default_rng(8)
    x = rng.normal(size=4000)
    p = 1 / (1 + np.exp(-2 * x))
    y = (rng.random(4000) < p).astype(int)
    good = propensity_backtest("purchase", p, y, training_auc=0.0, training_brier=0.0)
    assert good.auc > 0.75
    same = propensity_backtest("purchase", p, y, good.auc, good.brier)
    assert same.status == "OK"
    noise = 1 / (1 + np.exp(-2 * rng.normal(size=4000)))  # scores unrelated to outcomes
    bad = propensity_backtest("purchase", noise, y, good.auc, good.brier)
    assert bad.auc_drop > 0.1
    assert bad.brier_change > 0
    assert bad.status == "DRIFT"
    assert len(bad.calibration) == 10
    assert sum(b.n for b in bad.calibration) == 4000


@pytest.mark.parametrize(
    ("scores", "outcomes", "error", "match"),
    [
        ([0.1, 0.2], [1, 1], InsufficientDataError, "all 2 outcomes are positive"),
        ([0.1, 0.2], [0, 0], InsufficientDataError, "all 2 outcomes are negative"),
        ([], [], InsufficientDataError, "no users"),
        ([0.1, 0.2], [0, 1, 1], DataValidationError, "2 scores but 3 outcomes"),
        ([0.1, 1.2], [0, 1], DataValidationError, r"\[0, 1\]"),
        ([0.1, np.nan], [0, 1], DataValidationError, r"\[0, 1\]"),
        ([0.1, 0.2], [0, 2], DataValidationError, "0 or 1"),
    ],
    ids=["all-positive", "all-negative", "empty", "lengths", "range", "nan", "non-binary"],
)
def test_backtest_errors(scores, outcomes, error, match):
    with pytest.raises(error, match=match):
        propensity_backtest("churn", scores, outcomes, 0.8, 0.1)


def test_backtest_refuses_bad_training_figures():
    with pytest.raises(DataValidationError, match="training_auc"):
        propensity_backtest("churn", [0.1, 0.9], [0, 1], 1.5, 0.1)


# ----------------------------------------------------------------------------- runner & report


@pytest.fixture
def snapshots():
    rng = np.random.default_rng(9)
    n = 2000
    train = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "recency_days": rng.exponential(20.0, n),
            "orders": rng.poisson(1.0, n),
            "revenue_total": rng.gamma(2.0, 30.0, n),
        }
    )
    stable = train.assign(
        recency_days=rng.exponential(20.0, n),
        orders=rng.poisson(1.0, n),
        revenue_total=rng.gamma(2.0, 30.0, n),
    )
    shifted = stable.assign(recency_days=stable["recency_days"] + 40.0)
    return build_feature_reference(train), stable, shifted


def test_run_drift_tests_stable_snapshot_is_ok(snapshots):
    reference, stable, _ = snapshots
    labels = np.repeat([0, 1, 2, 3], 500)
    report = run_drift_tests(reference, stable, {0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}, labels)
    assert [(r.test, r.subject) for r in report.features] == [
        ("psi", "recency_days"),
        ("wasserstein", "recency_days"),
        ("psi", "orders"),
        ("wasserstein", "orders"),
        ("psi", "revenue_total"),
        ("wasserstein", "revenue_total"),
    ]
    assert report.status == "OK"
    assert report.exit_code == 0


def test_run_drift_tests_shifted_feature_drifts(snapshots):
    reference, _, shifted = snapshots
    report = run_drift_tests(reference, shifted, config=DriftConfig())
    psi = {r.subject: r for r in report.feature_results("psi")}
    assert psi["recency_days"].status == "DRIFT"
    assert psi["orders"].status == "OK"
    assert report.status == "DRIFT"
    assert report.exit_code == 3
    metrics = report.metrics()
    assert metrics["drift/psi/recency_days"] == psi["recency_days"].score
    assert metrics["drift/features_drift"] == 1.0
    assert metrics["drift/status"] == 2.0


def test_run_drift_tests_uses_config_thresholds(snapshots):
    reference, stable, _ = snapshots
    strict = DriftConfig(psi_warn=1e-9, psi_drift=1e-8)
    report = run_drift_tests(reference, stable, config=strict, tests=("psi",))
    assert all(r.status == "DRIFT" for r in report.features)
    assert {r.test for r in report.features} == {"psi"}


def test_runner_rejudges_agreement_with_config_thresholds(snapshots):
    reference, stable, _ = snapshots
    agreement = segment_agreement([0, 0, 1, 1], [0, 1, 0, 1], ari_warn=None, ari_drift=None)
    assert agreement.status == "OK"
    report = run_drift_tests(reference, stable, agreement=agreement)
    assert report.agreement.status == "DRIFT"
    assert report.agreement.drift_threshold == DriftConfig().ari_drift


def test_runner_errors(snapshots):
    reference, stable, _ = snapshots
    with pytest.raises(DataValidationError, match="orders"):
        run_drift_tests(reference, stable.drop(columns=["orders"]))
    with pytest.raises(InsufficientDataError, match="empty"):
        run_drift_tests(reference, stable.iloc[:0])
    with pytest.raises(ConfigError, match="unknown drift test"):
        run_drift_tests(reference, stable, tests=("ks",))
    with pytest.raises(DataValidationError, match="together"):
        run_drift_tests(reference, stable, reference_shares={0: 1.0})
    with pytest.raises(DataValidationError, match="not numeric"):
        run_drift_tests(reference, stable.assign(orders="many"))
    with pytest.raises(DataValidationError, match="DataFrame"):
        run_drift_tests(reference, stable.to_dict())


@pytest.mark.parametrize(
    ("statuses", "status", "code"),
    [
        ((), "OK", 0),
        (("OK", "OK"), "OK", 0),
        (("OK", "WARN"), "WARN", 0),
        (("WARN", "DRIFT", "OK"), "DRIFT", 3),
    ],
    ids=["empty", "ok", "warn", "drift"],
)
def test_exit_codes(statuses, status, code):
    results = tuple(DriftResult("psi", f"f{i}", 0.0, 0.1, 0.25, s) for i, s in enumerate(statuses))
    report = DriftReport(features=results)
    assert report.status == status
    assert report.exit_code == code
    assert status in report.to_markdown()


@pytest.fixture
def full_report(snapshots):
    reference, _, shifted = snapshots
    rng = np.random.default_rng(10)
    labels = rng.integers(0, 3, len(shifted))
    agreement = segment_agreement(labels, labels, np.eye(3), np.eye(3) + 0.1, scale=np.ones(3))
    previous = pd.Series(labels[:1500], index=shifted["user_id"][:1500].to_numpy())
    current = pd.Series(labels[200:], index=shifted["user_id"][200:].to_numpy())
    x = rng.random(len(shifted))
    y = (rng.random(len(shifted)) < x).astype(int)
    backtest = propensity_backtest("churn", x, y, 0.9, 0.1)
    return run_drift_tests(
        reference,
        shifted,
        {0: 0.5, 1: 0.3, 2: 0.2},
        labels,
        DriftConfig(),
        agreement=agreement,
        migration=migration_matrix(previous, current),
        backtests=[backtest],
    )


def test_report_to_dict_is_json_safe(full_report):
    data = full_report.to_dict()
    text = json.dumps(data, allow_nan=False)  # fails on numpy types or NaN
    back = json.loads(text)
    assert back["status"] == full_report.status == "DRIFT"
    assert back["exit_code"] == 3
    assert back["migration"]["n_users"] == 2000
    assert back["agreement"]["ari"] == pytest.approx(1.0)
    assert back["backtests"][0]["target"] == "churn"


def test_report_to_dict_turns_nan_into_none():
    result = DriftResult("psi", "x", float("nan"), None, None, "OK", {"v": np.float64("nan")})
    data = DriftReport(features=(result,)).to_dict()
    assert data["features"][0]["score"] is None
    assert data["features"][0]["details"]["v"] is None
    json.dumps(data, allow_nan=False)


def test_report_metrics_are_flat_aggregates(full_report):
    metrics = full_report.metrics()
    assert all(key.startswith("drift/") for key in metrics)
    assert all(type(v) is float and math.isfinite(v) for v in metrics.values())
    assert not any("u1" in key for key in metrics)  # no user ids
    for key in (
        "drift/share_psi",
        "drift/ari",
        "drift/jaccard/0",
        "drift/centroid_shift_max",
        "drift/migration/stayed_share",
        "drift/migration/new_users",
        "drift/backtest/churn/auc",
        "drift/backtest/churn/auc_drop",
        "drift/wasserstein/recency_days",
    ):
        assert key in metrics, key
    assert metrics["drift/migration/new_users"] == 500.0
    assert metrics["drift/centroid_shift_max"] == pytest.approx(0.1)


def test_report_markdown_lists_parts(full_report):
    text = full_report.to_markdown()
    assert "**Status: DRIFT** (exit code 3)" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `recency_days`")  # highest PSI first
    for heading in ("## Segment shares", "## Champion vs challenger", "## Migration"):
        assert heading in text
    assert "## Propensity backtest" in text
    assert NEW_USER in text and GONE in text


def test_report_markdown_names_segments_in_every_table_and_ends_with_the_recommendation(
    full_report,
):
    names, challenger = ["Casual", "New", "Champions"], ["Casual", "Newcomers", "Champions"]
    text = full_report.to_markdown(names, challenger)
    tables = [line for line in text.splitlines() if line.startswith("| ")]
    segment_rows = [
        line for line in tables if not line.startswith(("| `", "| feature", "| churn", "| target"))
    ]
    assert segment_rows
    for line in segment_rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("segment", "champion", "previous \\ current"):
            continue
        assert " · " in cells[0] or cells[0].startswith("("), line
    assert "| 1 · New | 1 · Newcomers |" in text  # challenger side named by its own names
    assert "| previous \\ current | 0 · Casual | 1 · New | 2 · Champions |" in text
    last = text.rstrip().splitlines()[-1]
    assert last == f"**Recommendation:** {full_report.verdict.recommendation}"


def test_agreement_result_round_trips_through_json():
    result = segment_agreement([0, 0, 1], [1, 1, 0])
    assert isinstance(result, AgreementResult)
    assert json.loads(json.dumps(result.to_dict()))["jaccard"] == {"0": 1.0, "1": 1.0}


def test_on_real_feature_tables():
    import datetime as dt

    from segmentkit.features import build_features
    from segmentkit.io.synth import generate_events

    log = generate_events(n_users=300, n_days=90, seed=11)
    table = build_features(log.events, as_of=log.end)
    reference = build_feature_reference(table)
    assert "user_id" not in reference
    assert len(reference) == table.shape[1] - 1
    stored = json.loads(json.dumps({k: v.to_dict() for k, v in reference.items()}))
    reference = {k: FeatureReference.from_dict(v) for k, v in stored.items()}
    same = run_drift_tests(reference, table)
    assert same.status == "OK"
    assert max(r.score for r in same.features) == pytest.approx(0.0, abs=1e-12)
    earlier = build_features(log.events, as_of=log.end - dt.timedelta(days=30))
    report = run_drift_tests(reference, earlier)
    # the log starts on a fixed day, so tenure ranges move a lot in 30 days
    tenure = next(r for r in report.feature_results("psi") if r.subject == "tenure_days")
    assert tenure.status == "DRIFT"
    json.dumps(report.to_dict(), allow_nan=False)


def test_labels_equal_as_strings_are_one_segment():
    result = share_psi_test({"1": 0.5, "2": 0.5}, np.array([1, "1", 2, "2"], dtype=object))
    assert result.score == 0.0
    migration = migration_matrix(pd.Series({"a": 1, "b": "1"}), pd.Series({"a": "1", "b": 1}))
    assert migration.stayed_share == 1.0


# ----------------------------------------------------------------------------- from_dict


def _through_json(data):
    return json.loads(json.dumps(data, allow_nan=False))


def test_report_round_trips_through_json(full_report):
    back = DriftReport.from_dict(_through_json(full_report.to_dict()))
    assert back == full_report  # features, share, agreement, backtests, n_current
    assert back.to_dict() == full_report.to_dict()
    assert back.status == "DRIFT" and back.exit_code == 3
    assert_frame_equal(back.migration.counts, full_report.migration.counts)
    assert back.migration.counts.dtypes.unique().tolist() == [np.dtype("int64")]
    assert back.metrics() == full_report.metrics()
    assert back.to_markdown() == full_report.to_markdown()


def test_report_from_dict_reads_none_back_as_nan_and_unset_thresholds():
    result = DriftResult("wasserstein", "x", float("nan"), None, None, "OK", {"n": 3})
    back = DriftReport.from_dict(_through_json(DriftReport(features=(result,)).to_dict()))
    (read,) = back.features
    assert math.isnan(read.score)
    assert read.warn_threshold is None and read.drift_threshold is None
    assert read.details == {"n": 3}
    assert back.share is None and back.agreement is None and back.migration is None
    assert back.backtests == () and back.n_current is None


def test_backtest_from_dict_ignores_stored_derived_values():
    backtest = propensity_backtest("churn", [0.1, 0.8, 0.3, 0.6], [0, 1, 0, 1], 0.9, 0.2)
    data = _through_json(backtest.to_dict())
    data["auc_drop"] = 42.0  # derived: recomputed, not read
    back = BacktestResult.from_dict(data)
    assert back == backtest
    assert back.auc_drop == pytest.approx(0.9 - 1.0)


def test_migration_from_dict_hand_example():
    data = {
        "rows": ["0", "(new user)"],
        "columns": ["0", "(gone)"],
        "counts": [[2, 1], [3, 0]],
        "n_users": 6,
        "n_new": 3,
        "n_gone": 1,
        "n_both": 2,
        "n_stayed": 2,
        "stayed_share": 1.0,
    }
    result = MigrationResult.from_dict(data)
    expected = pd.DataFrame([[2, 1], [3, 0]], index=["0", NEW_USER], columns=["0", GONE])
    assert_frame_equal(result.counts, expected)
    assert result.to_dict() == data


def _report_dict(full_report):
    return _through_json(full_report.to_dict())


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("features"), "drift report: missing key 'features'"),
        (lambda d: d.pop("status"), "missing key 'status'"),
        (lambda d: d.update(status="OK"), "stored status OK differs .*DRIFT"),
        (lambda d: d.update(status="FINE"), "unknown status 'FINE'"),
        (lambda d: d["features"][0].update(score="high"), "drift result 'recency_days'.*number"),
        (lambda d: d["features"][0].pop("test"), "drift result 'recency_days': missing key 'test'"),
        (lambda d: d["share"].update(status="BAD"), "unknown status 'BAD'"),
        (lambda d: d["agreement"].pop("ari"), "segment agreement: missing key 'ari'"),
        (lambda d: d["agreement"].update(n_users=-1), "segment agreement is malformed"),
        (lambda d: d["migration"]["counts"].pop(), "not 4 rows x 4 columns"),
        (lambda d: d["migration"]["counts"][0].__setitem__(0, 1.5), "non-negative integer"),
        (lambda d: d["backtests"][0].pop("calibration"), "backtest 'churn': missing key"),
        (lambda d: d.update(backtests=[[]]), "expected a JSON object, got list"),
        (lambda d: d.update(n_current="many"), "drift report is malformed"),
    ],
    ids=[
        "no-features",
        "no-status",
        "status-mismatch",
        "unknown-status",
        "score-not-number",
        "result-key",
        "share-status",
        "agreement-key",
        "negative-count",
        "migration-shape",
        "fractional-count",
        "backtest-key",
        "backtest-not-object",
        "n-current",
    ],
)
def test_report_from_dict_errors(full_report, edit, match):
    data = _report_dict(full_report)
    edit(data)
    with pytest.raises(DataValidationError, match=match):
        DriftReport.from_dict(data)


@pytest.mark.parametrize(
    ("part", "edit", "match"),
    [
        ("backtests", lambda b: b.update(n=-3), "backtest 'churn' is malformed: n: expected a non"),
        ("backtests", lambda b: b["calibration"][0].update(n=2.5), r"calibration\[0\].n"),
        ("migration", lambda m: m.update(n_gone=-1), "migration matrix is malformed: n_gone"),
        ("migration", lambda m: m.update(stayed_share="all"), "stayed_share: expected a number"),
        ("agreement", lambda a: a["matches"][0].update(jaccard=None), None),
    ],
    ids=["backtest-n", "calibration-n", "migration-count", "stayed-share", "nan-jaccard"],
)
def test_result_from_dict_checks_counts_and_numbers(full_report, part, edit, match):
    data = _report_dict(full_report)
    item = data[part][0] if isinstance(data[part], list) else data[part]
    edit(item)
    cls = {"backtests": BacktestResult, "migration": MigrationResult}.get(part, AgreementResult)
    if match is None:  # None is how to_dict writes NaN
        assert math.isnan(cls.from_dict(item).matches[0].jaccard)
        return
    with pytest.raises(DataValidationError, match=match):
        cls.from_dict(item)


def test_results_refuse_negative_counts_when_built():
    with pytest.raises(ValueError, match="n_users: expected a non-negative integer"):
        AgreementResult(1.0, {}, (), (), (), -1, None, None, "OK")
    with pytest.raises(TypeError, match="n_current: expected a non-negative integer"):
        DriftReport(n_current=1.5)


def test_report_from_dict_refuses_a_non_object():
    with pytest.raises(DataValidationError, match="expected a JSON object, got list"):
        DriftReport.from_dict([])
