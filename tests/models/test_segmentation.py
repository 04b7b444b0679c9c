import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from segmentkit.errors import (
    ConfigError,
    DataValidationError,
    InsufficientDataError,
    SegmentkitWarning,
)
from segmentkit.features import build_features
from segmentkit.io.synth import SCENARIOS, generate_events
from segmentkit.models.k_selection import _best_jaccard
from segmentkit.models.naming import _lifts
from segmentkit.models.segmentation import MIN_SEGMENT_USERS, Segmenter, StabilityWarning

FAST = dict(n_bootstrap=5, random_state=0)


def blobs(centers, n=60, sd=0.3, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(c, sd, size=(n, len(c))) for c in centers])
    y = np.repeat(np.arange(len(centers)), n)
    return X, y


THREE = [(0.0, 0.0), (8.0, 0.0), (0.0, 8.0)]


N_GROUPS = SCENARIOS["default"].distinct_groups


@pytest.fixture(scope="module")
def demo():
    log = generate_events(3000, 240, seed=0)
    table = build_features(log.events, as_of=log.end)
    truth = log.truth.set_index("user_id").loc[table["user_id"], "archetype"].to_numpy()
    return table.drop(columns="user_id"), truth


@pytest.fixture(scope="module")
def demo_model(demo):
    X, _ = demo
    return Segmenter(k=N_GROUPS, **FAST).fit(X)


# ------------------------------------------------------------ demo data
def test_planted_archetypes_recovered_by_gmm(demo):
    X, truth = demo
    model = Segmenter(algorithm="gmm", k=N_GROUPS, **FAST).fit(X)
    assert adjusted_rand_score(truth, model.labels_) >= 0.9


def test_kmeans_recovers_planted_archetypes(demo, demo_model):
    # The default algorithm on the realistic demo (per-user spread sigma 0.5, so the
    # archetypes overlap): about 0.88-0.89 on demo seeds 0-2 at 3000 users;
    # benchmarks/segmentation.py measures it over scenarios and seeds.
    _, truth = demo
    assert adjusted_rand_score(truth, demo_model.labels_) >= 0.85


def test_deterministic_with_random_state(demo, demo_model):
    X, _ = demo
    again = Segmenter(k=N_GROUPS, **FAST).fit(X)
    np.testing.assert_array_equal(again.labels_, demo_model.labels_)
    np.testing.assert_array_equal(again.segment_stability_, demo_model.segment_stability_)
    assert again.segment_names_ == demo_model.segment_names_
    pd.testing.assert_frame_equal(again.selection_, demo_model.selection_)


def test_demo_names_unique_and_profiles_consistent(demo, demo_model):
    X, _ = demo
    names = demo_model.segment_names_
    assert len(set(names)) == len(names) == demo_model.n_segments_
    assert all(demo_model.segment_descriptions_)
    prof = demo_model.profiles_
    assert prof["share"].sum() == pytest.approx(1.0)
    assert prof["size"].sum() == len(X)
    assert list(prof["name"]) == names
    # The segment with the shortest median tenure is the "New" one.
    assert prof.loc[prof["median_tenure_days"].idxmin(), "name"] == "New"
    # Names are words, never feature names.
    assert not any("_" in name for name in names)
    sizes = np.bincount(demo_model.labels_)
    assert list(sizes) == sorted(sizes, reverse=True)  # ids in size order without reference


def test_alignment_survives_shuffled_rows(demo, demo_model):
    X, _ = demo
    perm = np.random.default_rng(3).permutation(len(X))
    refit = Segmenter(k=N_GROUPS, n_bootstrap=5, random_state=1).fit(
        X.iloc[perm], reference=demo_model
    )
    agreement = np.mean(refit.labels_ == demo_model.labels_[perm])
    assert agreement >= 0.98
    assert refit.segment_names_ == demo_model.segment_names_


def test_auto_on_demo_reports_every_candidate(demo):
    X, _ = demo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StabilityWarning)
        model = Segmenter(k_range=(3, 8), **FAST).fit(X)
    sel = model.selection_
    assert list(sel["k"]) == list(range(3, 9))
    assert sel["chosen"].sum() == 1
    assert sel.loc[sel["chosen"], "k"].item() == model.k_
    # Bootstrapped candidates have one Jaccard per segment; the others say why not.
    done = sel["min_jaccard"].notna()
    assert done.any()
    assert all(
        len(j) == k for j, k in zip(sel.loc[done, "jaccards"], sel.loc[done, "k"], strict=True)
    )
    assert sel["rule"].str.len().gt(0).all()
    assert sel.loc[sel["chosen"], "rule"].item().startswith("chosen")


# ------------------------------------------------------- k-selection rule
def test_auto_picks_three_for_three_blobs():
    X, y = blobs(THREE)
    model = Segmenter(k_range=(2, 6), **FAST).fit(X)
    assert model.k_ == 3
    assert model.k_rule_met_
    assert adjusted_rand_score(y, model.labels_) == 1.0
    assert model.selection_.loc[model.selection_["chosen"], "eligible"].item()


def test_fit_warns_when_no_k_is_stable():
    X = np.random.default_rng(0).uniform(size=(300, 2))
    with pytest.warns(StabilityWarning, match="no k in"):
        model = Segmenter(k_range=(3, 5), min_stability=1.0, **FAST).fit(X)
    assert not model.k_rule_met_
    sel = model.selection_
    assert sel.loc[sel["chosen"], "min_jaccard"].item() == sel["min_jaccard"].max()


def test_best_jaccard_hand_computed():
    original = np.array([0, 0, 0, 1, 1, 2])
    boot = np.array([1, 1, 0, 0, 0, 0])
    # cluster 0 {0,1,2}: vs b1 {0,1} -> 2/3; cluster 1 {3,4}: vs b0 {2,3,4,5} -> 2/4;
    # cluster 2 {5}: vs b0 -> 1/4
    np.testing.assert_allclose(_best_jaccard(original, boot, 3, 2), [2 / 3, 1 / 2, 1 / 4])
    # A cluster absent from the resample has no score (NaN), not 0.
    assert np.isnan(_best_jaccard(np.array([0, 0]), np.array([0, 1]), 2, 2)[1])


def test_stability_is_high_for_blobs():
    X, _ = blobs(THREE)
    model = Segmenter(k=3, **FAST).fit(X)
    np.testing.assert_allclose(model.segment_stability_, 1.0)


# ------------------------------------------------------ transforms, lifts
def test_log_features_auto_hand_fixture():
    rng = np.random.default_rng(0)
    heavy = rng.lognormal(0, 1.5, 500)
    normal = rng.normal(10, 1, 500)
    signed = heavy * np.where(rng.random(500) < 0.1, -1, 1)
    frame = pd.DataFrame({"heavy": heavy, "normal": normal, "signed": signed})
    model = Segmenter(k=2, **FAST).fit(frame)
    np.testing.assert_array_equal(model.log_columns_, [True, False, True])
    expected = np.sign(signed) * np.log1p(np.abs(signed))
    z = model._transform_features(frame.to_numpy())
    np.testing.assert_allclose(z[:, 2], (expected - expected.mean()) / expected.std())
    assert Segmenter(k=2, log_features=False, **FAST).fit(frame).log_columns_.sum() == 0
    chosen = Segmenter(k=2, log_features=["normal"], **FAST).fit(frame).log_columns_
    np.testing.assert_array_equal(chosen, [False, True, False])


def test_lifts_mean_then_median_then_difference():
    means = np.array([[2.0, 0.5, 0.3]])
    medians = np.array([[1.0, 3.0, 0.0]])
    lifts = _lifts(
        means,
        medians,
        pop_mean=np.array([1.0, 0.0, 0.1]),
        pop_median=np.array([1.0, 2.0, 0.0]),
        features=["a", "b", "activity_trend"],
    )
    np.testing.assert_allclose(lifts, [[2.0, 1.5, 0.2]])


def test_profiles_hand_fixture():
    X = pd.DataFrame({"a": [1.0, 1.0, 3.0, 10.0, 10.0, 12.0]})
    model = Segmenter(k=2, log_features=False, **FAST).fit(X)
    prof = model.profiles_
    assert list(prof["size"]) == [3, 3]
    low = prof.loc[prof["median_a"] == 1.0].iloc[0]
    assert low["lift_a"] == pytest.approx((5 / 3) / (37 / 6))
    assert prof["share"].sum() == 1.0


# ------------------------------------------------------------------ names
def test_generic_table_names_by_strongest_feature():
    X, _ = blobs([(0.0, 0.0), (8.0, 0.0), (0.0, 8.0)])
    model = Segmenter(k=3, **FAST).fit(X)
    names = model.segment_names_
    assert len(set(names)) == 3
    assert all(n.startswith(("High x", "Low x")) for n in names)


def test_rule_names_on_rfm_table():
    rng = np.random.default_rng(1)

    def group(recency, tenure, days, revenue, n=80):
        return pd.DataFrame(
            {
                "recency_days": rng.normal(recency, 1, n).clip(0),
                "tenure_days": rng.normal(tenure, 3, n).clip(1),
                "active_days_total": rng.normal(days, 1, n).clip(1),
                "revenue_total": rng.normal(revenue, 2, n).clip(0),
            }
        )

    X = pd.concat(
        [
            group(2, 200, 60, 400),  # frequent, recent, high spend
            group(3, 6, 4, 0),  # short tenure
            group(150, 220, 3, 0),  # gone for a long time
        ],
        ignore_index=True,
    )
    model = Segmenter(k=3, **FAST).fit(X)
    by_first_row = {model.labels_[i]: name for i, name in ((0, "a"), (80, "b"), (160, "c"))}
    names = {tag: model.segment_names_[s] for s, tag in by_first_row.items()}
    assert names == {"a": "Champions", "b": "New", "c": "Hibernating"}


# ------------------------------------------------------------- alignment
def test_alignment_exact_on_blobs_and_new_segment_after_reference():
    X, _ = blobs(THREE)
    ref = Segmenter(k=3, **FAST).fit(X)
    perm = np.random.default_rng(0).permutation(len(X))
    same = Segmenter(k=3, n_bootstrap=5, random_state=7).fit(X[perm], reference=ref)
    np.testing.assert_array_equal(same.labels_, ref.labels_[perm])
    assert same.segment_names_ == ref.segment_names_

    X4, y4 = blobs([*THREE, (8.0, 8.0)])
    more = Segmenter(k=4, **FAST).fit(X4, reference=ref)
    new_blob = y4 == 3
    assert set(more.labels_[new_blob]) == {3}
    np.testing.assert_array_equal(more.labels_[: len(X)], ref.labels_)


def test_alignment_with_fewer_segments_keeps_ids():
    X, y = blobs(THREE)
    ref = Segmenter(k=3, **FAST).fit(X)
    keep = y != 1
    fewer = Segmenter(k=2, **FAST).fit(X[keep], reference=ref)
    np.testing.assert_array_equal(fewer.labels_, ref.labels_[keep])
    missing = ref.labels_[~keep][0]
    assert fewer.n_segments_ == 3
    assert fewer.segment_sizes_[missing] == 0
    assert np.isinf(fewer.transform(X[:2])[:, missing]).all()
    assert missing not in fewer.predict(X)


def test_reference_must_match_features():
    X, _ = blobs(THREE)
    ref = Segmenter(k=3, **FAST).fit(X)
    with pytest.raises(ConfigError, match="2 features"):
        Segmenter(k=3, **FAST).fit(np.c_[X, X[:, 0]], reference=ref)
    with pytest.raises(ConfigError, match="fitted Segmenter"):
        Segmenter(k=3, **FAST).fit(X, reference="model")
    named = Segmenter(k=3, **FAST).fit(pd.DataFrame(X, columns=["a", "b"]))
    with pytest.raises(ConfigError, match="columns"):
        Segmenter(k=3, **FAST).fit(pd.DataFrame(X, columns=["a", "c"]), reference=named)


# ------------------------------------------------------------ algorithms
def test_gmm_predict_proba_consistent_with_predict():
    X, _ = blobs(THREE)
    model = Segmenter(algorithm="gmm", k=3, **FAST).fit(X)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba.argmax(axis=1), model.predict(X))
    assert not hasattr(Segmenter(k=3), "predict_proba")


def test_hdbscan_finds_blobs_and_assigns_noise():
    X, y = blobs(THREE, n=80)
    X = np.vstack([X, [[4.0, 4.0]]])  # a lone point between the blobs
    model = Segmenter(algorithm="hdbscan", **FAST).fit(X)
    assert model.k_ == 3
    assert adjusted_rand_score(y, model.labels_[:-1]) == 1.0
    assert model.labels_.min() >= 0
    np.testing.assert_array_equal(model.predict(X[:-1]), model.labels_[:-1])


def test_transform_and_feature_names():
    X, _ = blobs(THREE)
    model = Segmenter(k=3, **FAST).fit(pd.DataFrame(X, columns=["a", "b"]))
    out = model.set_output(transform="pandas").transform(pd.DataFrame(X, columns=["a", "b"]))
    assert list(out.columns) == ["segment_distance_0", "segment_distance_1", "segment_distance_2"]
    np.testing.assert_array_equal(out.to_numpy().argmin(axis=1), model.labels_)


def test_skops_round_trip():
    import skops.io as sio

    X, _ = blobs(THREE)
    model = Segmenter(algorithm="gmm", k=3, **FAST).fit(X)
    from segmentkit.bundle.trust import TRUSTED_TYPES, file_types

    blob = sio.dumps(model)
    assert file_types(blob) <= TRUSTED_TYPES  # exact names, as a bundle load requires
    loaded = sio.loads(blob, trusted=sorted(TRUSTED_TYPES))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


# ------------------------------------------------------------- bad input
def test_one_user_is_rejected():
    with pytest.raises(InsufficientDataError, match="found 1 sample"):
        Segmenter(k=3).fit(np.ones((1, 3)))


def test_identical_users_are_rejected():
    with pytest.raises(InsufficientDataError, match="all 10 users have identical features"):
        Segmenter(k=3).fit(np.ones((10, 3)))


def test_fewer_users_than_k():
    X = np.arange(8.0).reshape(4, 2)
    with pytest.raises(InsufficientDataError, match="need at least 5 users, found 4"):
        Segmenter(k=5).fit(X)
    X = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    with pytest.raises(InsufficientDataError, match="need at least 4 distinct users, found 3"):
        Segmenter(k=4).fit(X)
    with pytest.raises(InsufficientDataError, match=r"at least 4 distinct users, found 3"):
        Segmenter(k_range=(3, 5)).fit(X)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (dict(algorithm="dbscan"), "algorithm"),
        (dict(k=1), "k: expected"),
        (dict(k="many"), "k: expected"),
        (dict(algorithm="hdbscan", k=3), "hdbscan chooses"),
        (dict(k_range=(5, 3)), "k_range"),
        (dict(k_range=3), "k_range"),
        (dict(n_bootstrap=-1), "n_bootstrap"),
        (dict(min_share=1.5), "min_share"),
        (dict(log_features="some"), "log_features"),
        (dict(log_features=["nope"]), "no column 'nope'"),
        (dict(log_features=[7]), "not a column"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else None,
)
def test_invalid_params(params, match):
    X, _ = blobs(THREE)
    with pytest.raises(ConfigError, match=match):
        Segmenter(**{"k": 3, **params}).fit(X)


# ------------------------------------------------- real-log-shaped inputs
def _table(n=120, seed=0):
    X, _ = blobs(THREE, n=n // 3, seed=seed)
    index = pd.Index([f"u{i:03d}" for i in range(X.shape[0])], name="user_id")
    return pd.DataFrame(X, columns=["recency_days", "orders"], index=index)


@pytest.mark.parametrize(("value", "word"), [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_missing_or_infinite_values_name_the_column_and_rows(value, word):
    X = _table()
    X.iloc[[3, 7], 1] = value
    with pytest.raises(
        DataValidationError, match=rf"column 'orders': {word} in 2 rows \(u003, u007\)"
    ):
        Segmenter(k=3, **FAST).fit(X)
    model = Segmenter(k=3, **FAST).fit(_table())
    with pytest.raises(DataValidationError, match=rf"column 'orders': {word} in 2 rows"):
        model.predict(X)


def test_missing_values_in_an_array_name_the_position():
    X = _table().to_numpy(copy=True)
    X[5, 0] = np.nan
    with pytest.raises(DataValidationError, match=r"column 0 \(position\): NaN in 1 row \(5\)"):
        Segmenter(k=3, **FAST).fit(X)


def test_an_id_column_in_the_feature_table_is_named():
    X = _table().reset_index()  # user_id back as a column of strings
    with pytest.raises(DataValidationError, match="column 'user_id' is not numeric.*'u000'"):
        Segmenter(k=3, **FAST).fit(X)
    # Numbers stored as text are numbers.
    assert Segmenter(k=3, **FAST).fit(_table().astype(str)).k_ == 3


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda X: X.drop(columns="orders"), "missing:\n- orders"),
        (lambda X: X.assign(spend=1.0), "unseen at fit time:\n- spend"),
        (lambda X: X.to_numpy()[:, :1], "1 features, but Segmenter is expecting 2"),
    ],
)
def test_scoring_a_table_with_other_columns_is_a_data_error(change, match):
    model = Segmenter(k=3, **FAST).fit(_table())
    with pytest.raises(DataValidationError, match=match):
        model.predict(change(_table()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auto_k_never_reports_a_segment_of_a_handful_of_users(seed):
    # Three groups of 19 users and a tight knot of 3 beside one of them: min_share
    # (2%) alone allowed a "segment" of the 3 (k=4), which no one can act on.
    rng = np.random.default_rng(seed)
    X = np.vstack([blobs(THREE, n=19, seed=seed)[0], rng.normal((3, -3), 0.3, size=(3, 2))])
    model = Segmenter(**FAST).fit(X)
    assert model.k_rule_met_
    assert model.segment_sizes_.min() >= MIN_SEGMENT_USERS


def test_auto_k_says_so_when_every_candidate_has_a_tiny_segment():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 1, size=(27, 3)), rng.normal(20, 1, size=(3, 3))])
    with pytest.warns(StabilityWarning, match=r"share >= 0.333 \(10 users\); using k=3"):
        model = Segmenter(**FAST).fit(X)
    assert not model.k_rule_met_


def test_auto_k_on_too_few_users_says_how_many_it_needs():
    X = _table().iloc[[0, 1, 40, 41, 80]]
    with pytest.raises(InsufficientDataError, match="needs at least 30 users .* found 5"):
        Segmenter(**FAST).fit(X)
    # A fixed k is the user's call.
    assert Segmenter(k=2, **FAST).fit(X).k_ == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_continuous_population_is_not_reported_as_distinct_groups(seed):
    # One population varying along one factor (as activity does in a homogeneous
    # log): k-means cuts it the same way on every resample, but nothing separates
    # the pieces. The fit says so instead of presenting confident segments.
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 1)) + 0.3 * rng.normal(size=(400, 4))
    with pytest.warns(StabilityWarning, match="not distinct groups"):
        model = Segmenter(k_range=(3, 5), **FAST).fit(X)
    assert model.segments_separated_ is False
    assert issubclass(StabilityWarning, SegmentkitWarning)  # the CLI prints it as one line


def test_distinct_groups_are_reported_as_separated():
    X, _ = blobs(THREE, n=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StabilityWarning)
        model = Segmenter(k_range=(3, 5), **FAST).fit(X)
    assert model.k_ == 3 and model.segments_separated_ is True
