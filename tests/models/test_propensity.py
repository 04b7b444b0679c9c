import datetime as dt
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from pandas.testing import assert_frame_equal
from scipy.stats import rankdata, spearmanr

from segmentkit.bundle.trust import TRUSTED_TYPES, file_types
from segmentkit.config import (
    ColumnMap,
    FeatureConfig,
    PropensityConfig,
    TargetConfig,
    load_config,
)
from segmentkit.errors import (
    ConfigError,
    DataValidationError,
    InsufficientDataError,
    SegmentkitError,
)
from segmentkit.features import build_features
from segmentkit.io.events import load_events
from segmentkit.io.synth import generate_events
from segmentkit.models import labels as labels_module
from segmentkit.models import propensity as propensity_module
from segmentkit.models.bgnbd import BetaGeoModel, sample_bgnbd, summary_from_features
from segmentkit.models.labels import (
    build_label_table,
    build_labels,
    build_training_set,
    check_history,
    features_at,
    plan_snapshots,
    season_snapshots,
)
from segmentkit.models.propensity import CANDIDATES, PropensityModel, shift_level
from segmentkit.models.propensity_training import fit_propensity
from segmentkit.scoring import (
    feature_matrix,
    labels_from_codes,
    percentile_rank,
    row_chunks,
    score_propensity,
)

CHURN = TargetConfig(name="churn", kind="inactivity")
PURCHASE = TargetConfig(name="purchase", kind="event", event="purchase")
PURCHASES = TargetConfig(name="purchases", kind="count", event="purchase")
CONFIG = PropensityConfig(
    horizon_days=30,
    n_snapshots=3,
    snapshot_step_days=30,
    min_positives=50,
    random_state=0,
    targets=(CHURN, PURCHASE, PURCHASES),
)
FEATURES = FeatureConfig()


# --- hand-built logs ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_log():
    rows = [
        ("a", "2024-01-15", "view"),
        ("a", "2024-02-05", "purchase"),
        ("a", "2024-02-06", "purchase"),
        ("b", "2024-01-20", "view"),
        ("b", "2024-02-11 00:00", "purchase"),  # at T0 + horizon: outside the window
        ("c", "2024-01-31 23:59", "view"),
        ("c", "2024-02-01 00:00", "view"),  # at T0: inside the window
        ("d", "2024-02-01 00:00", "purchase"),  # first event at T0: not a user yet
        ("e", "2024-01-10", "purchase"),
        ("e", "2024-03-01", "purchase"),  # at as_of: never read
    ]
    raw = pd.DataFrame(rows, columns=["user_id", "timestamp", "event"])
    return load_events(raw)


@pytest.mark.parametrize(
    ("target", "expected"),
    [(CHURN, [0, 1, 0, 1]), (PURCHASE, [1, 0, 0, 0]), (PURCHASES, [2, 0, 0, 0])],
    ids=["inactivity", "event", "count"],
)
def test_labels_by_hand(tiny_log, target, expected):
    labels = build_labels(tiny_log, "2024-02-01", target, 10, as_of="2024-03-01")
    want = pd.DataFrame({"user_id": ["a", "b", "c", "e"], "label": expected})
    assert_frame_equal(labels, want)


def test_labels_ignore_events_at_or_after_as_of(tiny_log):
    # Window [2024-02-20, 2024-03-01) ends at as_of; e's event exactly at as_of is not read.
    labels = build_labels(tiny_log, "2024-02-20", PURCHASES, 10, as_of="2024-03-01")
    assert labels.set_index("user_id")["label"].to_dict() == {
        "a": 0,
        "b": 0,
        "c": 0,
        "d": 0,
        "e": 0,
    }


def test_labels_window_after_as_of_is_refused(tiny_log):
    with pytest.raises(DataValidationError, match="ends after as_of"):
        build_labels(tiny_log, "2024-02-25", CHURN, 10, as_of="2024-03-01")


def test_labels_window_after_log_cutoff_is_refused(tiny_log):
    raw = tiny_log.to_pandas()
    cut = load_events(raw, as_of="2024-02-10")
    with pytest.raises(DataValidationError, match="cut-off"):
        build_labels(cut, "2024-02-01", CHURN, 10, as_of="2024-02-11")


def test_training_set_stacks_snapshots(tiny_log):
    times = [dt.datetime(2024, 2, 1), dt.datetime(2024, 1, 21)]
    frame = build_training_set(tiny_log, times, CHURN, 10, FEATURES, "2024-03-01")
    assert frame.groupby("snapshot", sort=False).size().to_dict() == {
        pd.Timestamp("2024-02-01"): 4,
        pd.Timestamp("2024-01-21"): 3,  # a, b, e
    }
    # On 2024-01-21: a (next event 02-05) and e churn; b's view on 01-20 is before T0.
    first = frame[frame["snapshot"] == pd.Timestamp("2024-01-21")]
    assert first.set_index("user_id")["label"].to_dict() == {"a": 1, "b": 1, "e": 1}


def test_training_set_reuses_labels_across_roles_and_targets(tiny_log):
    times = [dt.datetime(2024, 2, 1), dt.datetime(2024, 1, 21)]
    purchase = TargetConfig(name="purchase", kind="event", event="purchase")
    cache = {}
    for target in (CHURN, purchase):
        fresh = build_training_set(tiny_log, times, target, 10, FEATURES, "2024-03-01")
        cached = build_training_set(
            tiny_log, times, target, 10, FEATURES, "2024-03-01", _cache=cache
        )
        again = build_training_set(
            tiny_log, times[:1], target, 10, FEATURES, "2024-03-01", _cache=cache
        )
        assert_frame_equal(cached, fresh)
        assert_frame_equal(again, fresh[fresh["snapshot"] == pd.Timestamp(times[0])])
    # One feature table per time, one label table per (time, target).
    assert len(cache) == 2 + 2 * 2


def test_features_at_builds_missing_snapshots_in_one_pass_equal_to_each_alone(tiny_log):
    times = [dt.datetime(2024, 2, 1), dt.datetime(2024, 1, 21), dt.datetime(2024, 2, 1)]
    cache = {}
    tables = features_at(tiny_log, times, FEATURES, cache)
    assert list(tables) == times[:2] and list(cache) == times[:2]
    for t in times:
        assert_frame_equal(tables[t], build_features(tiny_log, t, FEATURES))
    # Cached tables are reused as they are, not rebuilt.
    again = features_at(tiny_log, times[1:2], FEATURES, cache)
    assert again[times[1]] is cache[times[1]]


def test_label_table_of_several_targets_equals_each_target_alone(tiny_log):
    targets = [
        (CHURN, 10),
        (TargetConfig(name="purchase", kind="event", event="purchase"), 20),
        (TargetConfig(name="purchases", kind="count", event="purchase"), 5),
    ]
    table = build_label_table(tiny_log, "2024-01-21", targets, "2024-03-01")
    for index, (target, horizon) in enumerate(targets):
        alone = build_labels(tiny_log, "2024-01-21", target, horizon, "2024-03-01")
        assert_frame_equal(
            table[["user_id", f"label_{index}"]].rename(columns={f"label_{index}": "label"}), alone
        )
    with pytest.raises(DataValidationError, match="ends after as_of"):
        build_label_table(tiny_log, "2024-02-25", targets, "2024-03-01")


@pytest.mark.parametrize("t0", ["2024-01-21", "2024-02-01", "2024-02-20"])
@pytest.mark.parametrize("integer_ids", [False, True], ids=["string_ids", "integer_ids"])
def test_label_table_of_a_given_population_equals_the_full_scan(tiny_log, t0, integer_ids):
    # With the feature table's users handed over only the windows' rows are read: same
    # table, including users without a row in any window (c at T0, d not a user yet).
    log = tiny_log
    if integer_ids:
        raw = tiny_log.to_pandas()
        log = load_events(raw.assign(user_id=raw["user_id"].map("abcde".index)))
    targets = [
        (CHURN, 9),
        (TargetConfig(name="purchase", kind="event", event="purchase"), 4),
        (TargetConfig(name="purchases", kind="count", event="purchase"), 2),
    ]
    population = build_features(log, t0, FEATURES)[["user_id"]]
    given = build_label_table(log, t0, targets, "2024-03-01", population=population)
    assert_frame_equal(given, build_label_table(log, t0, targets, "2024-03-01"))
    assert given["label_0"].sum() > 0  # some inactive users were labelled by default


def test_label_table_of_a_population_after_a_result_left_open(tiny_log):
    # DuckDB 2 refuses to register a frame while a fetchone() left a result open (a
    # refresh's fingerprint did so before its backtests): the labels still come.
    population = build_features(tiny_log, "2024-02-01", FEATURES)[["user_id"]]
    tiny_log.con.execute(f"SELECT user_id FROM {tiny_log.table}").fetchone()
    labels = build_label_table(tiny_log, "2024-02-01", [(CHURN, 10)], "2024-03-01", population)
    assert labels["user_id"].tolist() == ["a", "b", "c", "e"]


def test_plan_snapshots_dates():
    plan = plan_snapshots("2025-01-01", 30, 3, 20)
    assert plan.evaluation == dt.datetime(2024, 12, 2)
    assert plan.final == (
        dt.datetime(2024, 12, 2),
        dt.datetime(2024, 11, 12),
        dt.datetime(2024, 10, 23),
    )
    assert plan.backtest == (
        dt.datetime(2024, 11, 2),
        dt.datetime(2024, 10, 13),
        dt.datetime(2024, 9, 23),
    )
    # Every backtest label window ends by the evaluation snapshot.
    assert all(t + dt.timedelta(days=30) <= plan.evaluation for t in plan.backtest)


def test_plan_snapshots_drops_snapshots_before_the_log():
    plan = plan_snapshots("2025-01-01", 30, 3, 30, first_event=dt.datetime(2024, 10, 1))
    assert plan.backtest == (dt.datetime(2024, 11, 2), dt.datetime(2024, 10, 3))


def test_plan_snapshots_refuses_nonpositive_settings():
    with pytest.raises(ConfigError, match="must be positive"):
        plan_snapshots("2025-01-01", 0, 3, 30)


def test_log_too_short_names_the_dates():
    raw = pd.DataFrame(
        {
            "user_id": [str(i % 7) for i in range(40)],
            "timestamp": pd.date_range("2024-03-01", periods=40, freq="D"),
            "event": ["view", "purchase"] * 20,
        }
    )
    log = load_events(raw)
    with pytest.raises(InsufficientDataError) as err:
        fit_propensity(log, "2024-04-10", FEATURES, CONFIG)
    message = str(err.value)
    assert "too short" in message
    assert "2024-02-10" in message  # as_of - 2 x horizon
    assert "2024-03-01" in message  # first event


def test_check_history_names_the_longest_horizon_the_log_allows():
    # 2024-03-01 to as_of 2024-04-10 is 40 days: a backtest snapshot at as_of - 2 x 20
    # days falls on the first event (no history), at as_of - 2 x 19 days after it.
    first = "2024-03-01T00:00:00"
    check_history("2024-04-10", first, PropensityConfig(horizon_days=19, targets=_CHURN))
    with pytest.raises(InsufficientDataError, match=r"at most 19 day\(s\)"):
        check_history("2024-04-10", first, PropensityConfig(horizon_days=20, targets=_CHURN))
    # A target's own horizon is the one checked.
    longer = (TargetConfig(name="churn", kind="inactivity", horizon_days=20),)
    with pytest.raises(InsufficientDataError, match="20-day horizon"):
        check_history("2024-04-10", first, PropensityConfig(horizon_days=7, targets=longer))
    # Under two days there is no horizon at all; no event is left to the fit.
    with pytest.raises(InsufficientDataError, match="too short for any horizon"):
        check_history("2024-03-02", first, PropensityConfig(horizon_days=1, targets=_CHURN))
    check_history("2024-04-10", None, PropensityConfig(horizon_days=20, targets=_CHURN))


_CHURN = (TargetConfig(name="churn", kind="inactivity"),)


def _steady_log(purchasers, event="view"):
    """100 users, an event every 5 days from 2024-01-01 to 2024-04-30; some buy on 03-10."""
    days = pd.date_range("2024-01-01", "2024-04-30", freq="5D")
    users = [f"u{i:03d}" for i in range(100)]
    rows = [(u, d, event) for u in users for d in days]
    rows += [(users[i], pd.Timestamp("2024-03-10 12:00"), "purchase") for i in range(purchasers)]
    return load_events(pd.DataFrame(rows, columns=["user_id", "timestamp", "event"]))


def test_too_few_positives_names_count_and_minimum():
    config = PropensityConfig(n_snapshots=1, min_positives=50, targets=(PURCHASE,))
    with pytest.raises(InsufficientDataError) as err:
        fit_propensity(_steady_log(purchasers=3), "2024-05-01", FEATURES, config)
    message = str(err.value)
    assert "'purchase': 3 positive(s)" in message
    assert "min_positives = 50" in message
    assert "2024-03-02" in message  # the backtest snapshot
    # ...and what to change.
    assert "lower propensity.min_positives, or drop 'purchase' from propensity.targets" in message


def test_no_positives_because_no_user_returns_points_at_the_user_id():
    # One order per id, as Olist's customer_id: nobody ever comes back.
    stamps = pd.date_range("2024-01-01", "2024-04-30 23:00", periods=400)
    orders = pd.DataFrame({"user_id": [f"o{i}" for i in range(400)], "timestamp": stamps})
    log = load_events(orders, ColumnMap(event=None, revenue=None, session_id=None))
    config = PropensityConfig(n_snapshots=1, min_positives=5, targets=(PURCHASE,))
    with pytest.raises(InsufficientDataError) as err:
        fit_propensity(log, "2024-05-01", FEATURES, config)
    assert str(err.value).startswith("target 'purchase': 0 positive(s)")
    assert str(err.value).endswith(
        "(no user of the log was active on two days: is data.columns.user_id an id per person, "
        "or one per order, as Olist's customer_id?)"
    )
    # Users who do come back (but too few buy) get no such hint.
    with pytest.raises(InsufficientDataError) as err:
        fit_propensity(
            _steady_log(purchasers=3),
            "2024-05-01",
            FEATURES,
            PropensityConfig(n_snapshots=1, min_positives=50, targets=(PURCHASE,)),
        )
    assert "active on two days" not in str(err.value)


def test_too_few_negatives_is_refused():
    config = PropensityConfig(
        n_snapshots=1,
        min_positives=50,
        targets=(TargetConfig(name="viewing", kind="event", event="view"),),
    )
    with pytest.raises(InsufficientDataError, match="only 0 negative"):
        fit_propensity(_steady_log(purchasers=0), "2024-05-01", FEATURES, config)


def test_fit_argument_errors(tiny_log):
    with pytest.raises(ConfigError, match="no target"):
        fit_propensity(tiny_log, "2024-03-01", FEATURES, PropensityConfig())
    with pytest.raises(ConfigError, match="propensity.candidates: expected some of"):
        fit_propensity(tiny_log, "2024-03-01", FEATURES, CONFIG, candidates=("forest",))
    # The same check applies to the families named in params.yaml.
    with pytest.raises(ConfigError, match=r"got \['forest'\]"):
        fit_propensity(tiny_log, "2024-03-01", FEATURES, replace(CONFIG, candidates=("forest",)))
    with pytest.raises(ConfigError, match="needs an `event`"):
        fit_propensity(
            tiny_log,
            "2024-03-01",
            FEATURES,
            PropensityConfig(targets=(TargetConfig(name="x", kind="count"),)),
        )
    with pytest.raises(DataValidationError, match="segments: missing"):
        fit_propensity(tiny_log, "2024-03-01", FEATURES, CONFIG, segments=pd.DataFrame({"a": []}))
    cut = load_events(tiny_log.to_pandas(), as_of="2024-02-15")
    with pytest.raises(DataValidationError, match="cut-off"):
        fit_propensity(cut, "2024-03-01", FEATURES, CONFIG)
    with pytest.raises(InsufficientDataError, match="no event before"):
        fit_propensity(tiny_log, "2023-01-01", FEATURES, CONFIG)


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"candidates": []}, "propensity.candidates: expected at least one"),
        ({"selection_rows_max": 1}, "propensity.selection_rows_max: expected at least 2, got 1"),
        ({"candidates": "hgb"}, "candidates"),
    ],
    ids=["no-candidates", "rows", "not-a-list"],
)
def test_propensity_config_errors(section, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides={"propensity": section})


def test_propensity_config_reads_candidates_and_selection_rows():
    config = load_config(
        overrides={
            "propensity": {"candidates": ["logistic", "hgb+bgnbd"], "selection_rows_max": 50}
        }
    ).propensity
    assert config.candidates == ("logistic", "hgb+bgnbd")
    assert config.selection_rows_max == 50
    assert load_config().propensity.candidates == CANDIDATES


# --- PropensityModel -----------------------------------------------------------


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    n = 600
    X = pd.DataFrame(
        {
            "recency_days": rng.exponential(20, n),
            "active_days_total": rng.poisson(5, n).astype(float),
            "revenue_total": rng.exponential(10, n) * (rng.random(n) < 0.3),
            "events_30d": rng.poisson(3, n).astype(float),
        }
    )
    y = (rng.random(n) < 1 / (1 + np.exp(2 - X["recency_days"] / 10))).astype(int)
    return X, y.to_numpy(), np.arange(n) % 3


@pytest.mark.parametrize("family", ["logistic", "hgb", "recency", "rfm"])
@pytest.mark.parametrize("calibration", ["sigmoid", "isotonic"])
def test_model_families_fit_predict_and_round_trip(xy, family, calibration):
    X, y, snapshot = xy
    model = PropensityModel("churn", "inactivity", family=family, calibration=calibration)
    model.set_params(random_state=0, n_threads=1).fit(X, y, snapshot=snapshot)
    assert model.calibration_mode_ == "latest_snapshot"
    assert model.calibration_rows_ == (snapshot == 2).sum()
    p = model.predict(X)
    assert p.shape == (len(X),) and (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)
    blob = sio.dumps(model)
    assert file_types(blob) <= TRUSTED_TYPES  # what a bundle load admits (bundle.trust)
    loaded = sio.loads(blob, trusted=sorted(TRUSTED_TYPES))
    np.testing.assert_array_equal(loaded.predict(X), p)


def test_count_model_matches_total_on_its_calibration_rows(xy):
    X, _, snapshot = xy
    counts = np.random.default_rng(1).poisson(1 + X["events_30d"].to_numpy() / 3)
    model = PropensityModel("n", "count", event="purchase", family="logistic", random_state=0)
    model.fit(X, counts, snapshot=snapshot)
    # scale_ is fitted so that the out-of-time copy hits the latest snapshot's total.
    assert model.scale_ > 0
    with pytest.raises(AttributeError):
        model.predict_proba(X)
    assert model.output_name == "expected_n"


def test_model_without_snapshots_calibrates_by_cross_validation(xy):
    X, y, _ = xy
    model = PropensityModel("churn", "inactivity", random_state=0).fit(X, y)
    assert model.calibration_mode_ == "cross_validated"
    assert model.calibration_rows_ == len(X)


def test_buckets_use_frozen_cutoffs(xy):
    X, y, snapshot = xy
    model = PropensityModel("churn", "inactivity", random_state=0).fit(X, y, snapshot=snapshot)
    medium, high = model.bucket_thresholds_
    scores = np.array([medium - 1e-9, medium, high - 1e-9, high, 1.0])
    assert model.bucket(scores).tolist() == ["Low", "Medium", "Medium", "High", "High"]
    # On the latest training snapshot the shares are 20 % High and 30 % Medium.
    shares = model.bucket(model.predict(X[snapshot == 2])).value_counts(normalize=True)
    assert shares["High"] == pytest.approx(0.2, abs=0.01)
    assert shares["Medium"] == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize(
    ("params", "y_kind", "error", "match"),
    [
        ({"kind": "churn"}, "binary", ConfigError, "kind must be"),
        ({"family": "forest"}, "binary", ConfigError, "family must be"),
        ({"calibration": "beta"}, "binary", ConfigError, "calibration must be"),
        ({"high_share": 0.6, "medium_share": 0.5}, "binary", ConfigError, "high_share"),
        ({}, "counts", DataValidationError, r"0/1 labels; \d+ row\(s\) are not, e.g. rows \["),
        ({}, "single", InsufficientDataError, "every label is 0; .* both classes"),
        ({"kind": "count"}, "negative", DataValidationError, r"non-negative integer.*rows \["),
        ({"kind": "count"}, "fraction", DataValidationError, r"1 row\(s\) are not.*\[0\.5\]"),
    ],
    ids=["kind", "family", "calibration", "shares", "not-binary", "one-class", "negative", "frac"],
)
def test_model_parameter_and_label_errors(xy, params, y_kind, error, match):
    X, y, _ = xy
    fraction = np.r_[0.5, y[1:]].astype(float)
    labels = {
        "binary": y,
        "counts": y * 3,
        "single": np.zeros_like(y),
        "negative": -y,
        "fraction": fraction,
    }[y_kind]
    with pytest.raises(error, match=match) as caught:
        PropensityModel(**params).fit(X, labels)
    # Every error a user can cause is a SegmentkitError (the CLI prints it on one line)
    # and still a ValueError (what scikit-learn's estimator checks expect).
    assert isinstance(caught.value, SegmentkitError)
    assert isinstance(caught.value, ValueError)


def test_model_refuses_too_few_rows_to_calibrate(xy):
    X, y, _ = xy
    with pytest.raises(InsufficientDataError, match="at least 3 rows.*n_samples=2"):
        PropensityModel(kind="count").fit(X.iloc[:2], np.array([0, 1]))
    # One snapshot: 3-fold out-of-fold calibration needs 3 rows of each class.
    rows = np.r_[np.flatnonzero(y == 0)[:5], np.flatnonzero(y == 1)[:2]]
    with pytest.raises(InsufficientDataError, match="3 rows of each class, got 5 labels 0 and 2"):
        PropensityModel().fit(X.iloc[rows], y[rows])


def test_model_needs_named_columns(xy):
    X, y, snapshot = xy
    with pytest.raises(DataValidationError, match="named feature columns"):
        PropensityModel(family="hgb").fit(X.to_numpy(), y)
    with pytest.raises(DataValidationError, match="recency_days"):
        PropensityModel(family="recency").fit(X.drop(columns="recency_days"), y)
    with pytest.raises(
        DataValidationError, match=r"snapshot must have shape \(600,\), got \(10,\)"
    ):
        PropensityModel().fit(X, y, snapshot=snapshot[:10])


# --- demo data ------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo():
    return generate_events(n_users=3000, n_days=240, seed=11)


def _future_rows(events, as_of):
    """Events at and after as_of: last month's rows moved forward, plus rows exactly at as_of."""
    late = events[events["timestamp"] >= as_of - pd.Timedelta(days=20)].copy()
    late["timestamp"] = late["timestamp"] + pd.Timedelta(days=20)
    exact = events.drop_duplicates("user_id").head(200).copy()
    exact["timestamp"] = as_of
    exact["event"] = "purchase"
    return pd.concat([late, exact], ignore_index=True)


@pytest.fixture(scope="module")
def as_of(demo):
    return pd.Timestamp(demo.end)


@pytest.fixture(scope="module")
def logs(demo, as_of):
    events = demo.events.astype({"user_id": str, "event": str})
    extended = pd.concat([events, _future_rows(events, as_of)], ignore_index=True)
    return {"clean": load_events(events), "extended": load_events(extended)}


@pytest.fixture(scope="module")
def segments(demo):
    return demo.archetypes.rename(columns={"archetype": "segment"})


@pytest.fixture(scope="module")
def fitted(logs, as_of, segments):
    return fit_propensity(logs["extended"], as_of, FEATURES, CONFIG, segments=segments, n_threads=1)


@pytest.fixture(scope="module")
def fitted_clean(logs, as_of):
    return fit_propensity(logs["clean"], as_of, FEATURES, CONFIG, n_threads=1)


@pytest.mark.slow
def test_training_rows_are_capped_by_a_stratified_sample(logs, as_of, fitted_clean):
    capped = fit_propensity(
        logs["clean"], as_of, FEATURES, CONFIG, training_rows_max=1500, n_threads=1
    )
    for name, model in capped.models.items():
        if model.family == "complement":
            continue
        full = fitted_clean.models[name]
        assert full.training_rows_ > 1500 >= model.training_rows_ >= 1500 - 4  # rounding per group
        # The sample keeps the base rate of every (snapshot, label) group.
        assert model.training_mean_ == pytest.approx(full.training_mean_, rel=0.05)
    # The evaluation still scores every user of the evaluation snapshot.
    snapshots = capped.evaluation.snapshots
    assert_frame_equal(snapshots, fitted_clean.evaluation.snapshots)


@pytest.mark.slow
def test_side_by_side_fits_give_the_same_models(logs, as_of, fitted_clean, monkeypatch):
    # One usable core: the winner's backtest and final fits (and calibration pairs) run
    # one after the other; fitted_clean ran them side by side where 2 cores are usable.
    monkeypatch.setattr("segmentkit.models.propensity_training.usable_cores", lambda: 1)
    monkeypatch.setattr("segmentkit.models.propensity.usable_cores", lambda: 1)
    serial = fit_propensity(logs["clean"], as_of, FEATURES, CONFIG, n_threads=1)
    assert_frame_equal(serial.evaluation.metrics, fitted_clean.evaluation.metrics)
    X = build_features(logs["clean"], as_of, FEATURES).drop(columns=["user_id"])
    for name, model in serial.models.items():
        np.testing.assert_array_equal(model.predict(X), fitted_clean.models[name].predict(X))


@pytest.mark.slow
def test_features_at_as_of_given_by_the_caller_are_reused(logs, as_of, fitted_clean, monkeypatch):
    # Training builds the table at as_of for the segments: handed over, it is not built
    # again, and the models are those fitted_clean built it for itself.
    features = build_features(logs["clean"], as_of, FEATURES)
    asked = []
    many, one = labels_module.build_features_many, labels_module.build_features

    def spy_many(log, times, config=None):
        asked.extend(times)
        return many(log, times, config)

    def spy_one(log, time, config=None):
        asked.append(time)
        return one(log, time, config)

    monkeypatch.setattr(labels_module, "build_features_many", spy_many)
    monkeypatch.setattr(labels_module, "build_features", spy_one)
    reused = fit_propensity(
        logs["clean"], as_of, FEATURES, CONFIG, n_threads=1, as_of_features=features
    )
    assert asked and pd.Timestamp(as_of) not in [pd.Timestamp(t) for t in asked]
    assert_frame_equal(reused.evaluation.metrics, fitted_clean.evaluation.metrics)
    X = features.drop(columns=["user_id"])
    for name, model in reused.models.items():
        np.testing.assert_array_equal(model.predict(X), fitted_clean.models[name].predict(X))


def test_features_at_as_of_without_a_feature_column_are_refused(logs, as_of):
    features = build_features(logs["clean"], as_of, FEATURES).drop(columns=["recency_days"])
    with pytest.raises(
        DataValidationError, match=r"as_of_features: missing column\(s\) \['recency_days'\]"
    ):
        fit_propensity(logs["clean"], as_of, FEATURES, CONFIG, as_of_features=features)


@pytest.mark.slow
def test_extra_snapshots_come_from_the_same_pass_and_leave_the_models_alone(
    logs, as_of, fitted_clean, monkeypatch, watch_feature_builds
):
    # A refresh asks for the features at the champion's snapshot and one interval before
    # it: built in the one pass (one build_features_many call, nothing else), equal to a
    # table built on its own, and the models are those of a fit that was not asked.
    extra = [
        pd.Timestamp(as_of) - pd.Timedelta(days=11),
        pd.Timestamp(as_of) - pd.Timedelta(days=47),
    ]
    calls = watch_feature_builds(monkeypatch)
    result = fit_propensity(
        logs["clean"], as_of, FEATURES, CONFIG, n_threads=1, extra_snapshots=extra
    )
    assert len(calls) == 1
    assert sorted(result.extra_features) == sorted(t.to_pydatetime() for t in extra)
    for when in extra:
        assert_frame_equal(
            result.extra_features[when.to_pydatetime()],
            build_features(logs["clean"], when, FEATURES),
        )
    assert_frame_equal(result.evaluation.metrics, fitted_clean.evaluation.metrics)
    assert fitted_clean.extra_features == {}


def test_extra_snapshots_after_as_of_are_refused(logs, as_of):
    late = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    with pytest.raises(DataValidationError, match=r"extra_snapshots: .* are after as_of"):
        fit_propensity(logs["clean"], as_of, FEATURES, CONFIG, extra_snapshots=[late])


def _metric(result, target, model, metric):
    table = result.evaluation.metrics
    row = table[(table.target == target) & (table.model == model) & (table.metric == metric)]
    assert len(row) == 1
    return float(row["value"].iloc[0])


def test_events_after_as_of_change_nothing(logs, as_of, fitted, fitted_clean):
    assert logs["extended"].report.rows_clean > logs["clean"].report.rows_clean
    cfg = FEATURES
    t0 = as_of - pd.Timedelta(days=30)
    for target in CONFIG.targets:
        a = build_training_set(logs["clean"], [t0], target, 30, cfg, as_of)
        b = build_training_set(logs["extended"], [t0], target, 30, cfg, as_of)
        assert_frame_equal(a, b)
    features = build_features(logs["clean"], as_of, cfg)
    assert_frame_equal(features, build_features(logs["extended"], as_of, cfg))
    assert_frame_equal(
        score_propensity(fitted.models, features), score_propensity(fitted_clean.models, features)
    )
    assert_frame_equal(fitted.evaluation.metrics, fitted_clean.evaluation.metrics)


@pytest.mark.parametrize("target", ["churn", "purchase"])
def test_model_beats_baselines_out_of_time(fitted, target):
    for baseline in ("recency", "rfm"):
        assert _metric(fitted, target, "model", "roc_auc") > _metric(
            fitted, target, baseline, "roc_auc"
        )
        assert _metric(fitted, target, "model", "brier") < _metric(
            fitted, target, baseline, "brier"
        )


def test_count_model_beats_baselines_on_deviance(fitted):
    for baseline in ("recency", "rfm"):
        assert _metric(fitted, "purchases", "model", "poisson_deviance") < _metric(
            fitted, "purchases", baseline, "poisson_deviance"
        )


@pytest.mark.parametrize("target", ["churn", "purchase", "purchases"])
def test_predicted_total_close_to_realized(fitted, target):
    # Calibration is fitted on the latest training snapshot, one horizon before the
    # evaluation snapshot, so a change of base rate between them is invisible to it and
    # must be carried by the features. Tolerance: 10 % of the realized total. The demo's
    # churn rate moves 0.55 -> 0.63 between those snapshots (+14 %), so this requires
    # the model to absorb most of that drift; for the event targets (rates ~0.12, ~300
    # positives) 10 % is about two binomial standard deviations.
    predicted = _metric(fitted, target, "model", "predicted_total")
    actual = _metric(fitted, target, "model", "actual_total")
    assert abs(predicted - actual) <= 0.10 * actual
    # And closer than carrying the latest training snapshot's rate over unchanged.
    snaps = fitted.evaluation.snapshots
    rows = snaps[(snaps.target == target) & (snaps.role == "backtest")]
    latest = rows.loc[rows["snapshot"].idxmax()]
    users = _metric(fitted, target, "model", "users")
    if target == "purchases":
        naive = latest["rate"] * users  # rate is the mean count here
    else:
        naive = latest["positives"] / latest["users"] * users
    assert abs(predicted - actual) < abs(naive - actual)


def test_evaluation_tables(fitted):
    ev = fitted.evaluation
    assert list(fitted.choice) == ["churn", "purchase", "purchases"]
    assert ev.nested
    for target, family in fitted.choice.items():
        # Reported: the chosen family and every baseline, on the evaluation snapshot.
        reported = set(ev.metrics.loc[ev.metrics.target == target, "model"])
        assert {"model", family, "recency", "rfm", "bgnbd"} <= reported
        model_rows = ev.metrics[(ev.metrics.target == target) & (ev.metrics.model == "model")]
        family_rows = ev.metrics[(ev.metrics.target == target) & (ev.metrics.model == family)]
        np.testing.assert_array_equal(model_rows["value"], family_rows["value"])
        name, _, variant = family.removesuffix("-nolevel").partition("+")
        assert fitted.models[target].family == name
        assert fitted.models[target].bgnbd_features == (variant == "bgnbd")
        assert fitted.models[target].relevel == (not family.endswith("-nolevel"))
        # Chosen one horizon earlier: the best candidate on the selection snapshot.
        sel = ev.selection[(ev.selection.target == target)]
        metric = "poisson_deviance" if target == "purchases" else "log_loss"
        by_model = sel[sel.metric == metric].set_index("model")["value"]
        assert set(by_model.index) == {
            *CANDIDATES,
            *(f"{c}-nolevel" for c in CANDIDATES),
        }
        assert by_model.idxmin() == family
    # Churn is compared with 1 - p(purchase) on the same snapshot, and the report says so.
    assert "1-p(purchase)" in set(ev.metrics.loc[ev.metrics.target == "churn", "model"])
    assert any(note.startswith("churn: the inactivity model") for note in ev.notes)
    totals = ev.totals.set_index("target")
    assert (totals["lower"] <= totals["predicted_total"]).all()
    assert (totals["predicted_total"] <= totals["upper"]).all()
    for target in fitted.choice:
        assert totals.loc[target, "predicted_total"] == pytest.approx(
            _metric(fitted, target, "model", "predicted_total")
        )
    deciles = ev.deciles[(ev.deciles.target == "purchase") & (ev.deciles.model == "model")]
    assert deciles["decile"].tolist() == list(range(1, 11))
    assert deciles["lift"].iloc[0] == pytest.approx(
        _metric(fitted, "purchase", "model", "lift_top_decile")
    )
    # Decile users add up to the evaluation snapshot, and lift is observed / base rate.
    assert deciles["users"].sum() == _metric(fitted, "purchase", "model", "users")
    base = _metric(fitted, "purchase", "model", "base_rate")
    np.testing.assert_allclose(deciles["lift"], deciles["observed"] / base)
    calib = ev.calibration[(ev.calibration.target == "churn") & (ev.calibration.model == "model")]
    assert calib["users"].sum() == _metric(fitted, "churn", "model", "users")
    assert (
        (calib["mean_predicted"] >= calib["lower"]) & (calib["mean_predicted"] <= calib["upper"])
    ).all()
    assert set(ev.snapshots["role"]) == {"backtest", "evaluation", "final", "selection"}
    # The selection snapshot is one horizon before the evaluation snapshot.
    roles = ev.snapshots[ev.snapshots.target == "purchase"].groupby("role")["snapshot"].max()
    assert roles["evaluation"] - roles["selection"] == pd.Timedelta(days=30)


def test_segment_summary(fitted, segments):
    table = fitted.evaluation.segments
    churn = table[table.target == "churn"].set_index("segment")
    # Dormant users stopped long before the evaluation snapshot: all of them churn.
    assert churn.loc["dormant", "observed"] == 1.0
    assert churn.loc["power_user", "mean_predicted"] < churn.loc["dormant", "mean_predicted"]
    ev_users = _metric(fitted, "churn", "model", "users")
    assert churn["users"].sum() == ev_users


def test_scores(fitted, logs, as_of):
    features = build_features(logs["clean"], as_of, FEATURES)
    scores = score_propensity(fitted.models, features)
    expected = ["user_id"]
    for name in ("p_churn", "p_purchase", "expected_purchases"):
        expected += [name, f"{name}_percentile", f"{name}_bucket"]
    assert list(scores.columns) == expected
    assert scores["user_id"].tolist() == features["user_id"].tolist()
    assert scores["p_churn"].between(0, 1).all()
    assert scores["p_churn_percentile"].between(0, 100).all()
    assert scores["p_churn_percentile"].max() == 100
    assert scores["p_churn_percentile"].dtype == np.int64
    # Percentile order follows score order.
    ordered = scores.sort_values("p_purchase")
    assert ordered["p_purchase_percentile"].is_monotonic_increasing
    assert set(scores["p_churn_bucket"]) <= {"Low", "Medium", "High"}
    high = scores["p_churn_bucket"] == "High"
    assert scores.loc[high, "p_churn"].min() >= fitted.models["churn"].bucket_thresholds_[1]


def test_score_errors(fitted, logs, as_of):
    features = build_features(logs["clean"], as_of, FEATURES)
    with pytest.raises(DataValidationError, match="user_id"):
        score_propensity(fitted.models, features.drop(columns="user_id"))
    with pytest.raises(DataValidationError, match="recency_days"):
        score_propensity(fitted.models, features.drop(columns="recency_days"))


# --- a plain transaction log ------------------------------------------------------


@pytest.fixture(scope="module")
def transactions(demo):
    buys = demo.events[demo.events["event"] == "purchase"]
    raw = pd.DataFrame(
        {
            "user": buys["user_id"].astype(str).to_numpy(),
            "date": buys["timestamp"].to_numpy(),
            "amount": buys["revenue"].to_numpy(),
        }
    )
    columns = ColumnMap(
        user_id="user", timestamp="date", event=None, revenue="amount", session_id=None
    )
    return load_events(raw, columns)


def test_transaction_log(transactions, as_of):
    config = PropensityConfig(min_positives=50, random_state=0, targets=(CHURN, PURCHASES))
    result = fit_propensity(transactions, as_of, FEATURES, config, n_threads=1)
    # Users are buyers: churn = no purchase within the horizon. It works and ranks better
    # than chance; on this log the model and the RFM baseline are close (see the report).
    assert _metric(result, "churn", "model", "roc_auc") > 0.7
    assert _metric(result, "churn", "model", "roc_auc") > _metric(
        result, "churn", "recency", "roc_auc"
    )
    features = build_features(transactions, as_of, FEATURES)
    scores = score_propensity(result.models, features)
    assert len(scores) == transactions.report.users
    # Deterministic: the same data and random_state give identical scores.
    again = fit_propensity(transactions, as_of, FEATURES, config, n_threads=1)
    assert_frame_equal(scores, score_propensity(again.models, features))


# --- scoring helpers -----------------------------------------------------------


def test_percentile_rank_matches_pandas_max_rank():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 50, size=2000).astype(float) / 7  # many ties
    at_or_below = pd.Series(scores).rank(method="max").to_numpy().astype(np.int64)
    expected = at_or_below * 100 // scores.size  # whole percent, rounded down
    result = percentile_rank(scores)
    assert result.dtype == np.int64
    np.testing.assert_array_equal(result, expected)


def test_percentile_rank_by_hand():
    np.testing.assert_array_equal(
        percentile_rank(np.array([3.0, 2.0, 1.0, 3.0])), [100, 50, 25, 100]
    )
    np.testing.assert_array_equal(percentile_rank(np.array([0.3, 0.1, 0.2])), [100, 33, 66])
    assert percentile_rank(np.array([])).shape == (0,)
    with pytest.raises(ValueError, match="NaN"):
        percentile_rank(np.array([1.0, np.nan]))


def test_labels_from_codes_use_the_default_string_dtype():
    labels = labels_from_codes(["Low", "Medium", "High"], np.array([2, 0, 0, 1]))
    assert labels.tolist() == ["High", "Low", "Low", "Medium"]
    assert labels.dtype == pd.Series(["x"]).dtype


def test_feature_matrix_refuses_non_finite_rows_only_in_their_chunk():
    frame = pd.DataFrame({"a": [1, 2, 3, 4], "b": [0.5, np.inf, 1.5, 2.5]})
    arrays = [frame["b"].to_numpy(), frame["a"].to_numpy()]
    assert feature_matrix(arrays, slice(0, 2)) is None
    X = feature_matrix(arrays, slice(2, 4))
    np.testing.assert_array_equal(X, [[1.5, 3.0], [2.5, 4.0]])
    assert X.dtype == np.float64
    with pytest.raises(ValueError, match="chunk_size"):
        row_chunks(10, 0)


def test_scores_do_not_depend_on_chunk_size(fitted, logs, as_of):
    features = build_features(logs["clean"], as_of, FEATURES)
    assert_frame_equal(
        score_propensity(fitted.models, features, chunk_size=7),
        score_propensity(fitted.models, features),
    )


def test_scoring_a_missing_value_names_it(fitted, logs, as_of):
    features = build_features(logs["clean"], as_of, FEATURES)
    features.loc[3, "events_total"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        score_propensity(fitted.models, features)


# --- issue 16: fair baselines, BG/NBD inputs, derived churn, levels -----------------


def test_rank_quintiles_keep_ties_together():
    from segmentkit.models.propensity import _quintile, _rank_reference

    # 60 % zeros: the mid-rank of the tie is 0.30, so every zero sits in quintile 2;
    # the other values spread over quintiles 4 and 5 by rank.
    column = np.r_[np.zeros(60), np.arange(1.0, 41.0)]
    reference = _rank_reference(column)
    assert _quintile(reference, np.array([0.0])).tolist() == [2.0]
    assert _quintile(reference, np.array([1.0, 20.0, 21.0, 40.0])).tolist() == [4.0, 4.0, 5.0, 5.0]


def test_rfm_uses_the_target_event_count_when_present(xy):
    X, y, snapshot = xy
    X = X.assign(purchase_events=X["active_days_total"] // 2)
    buy = PropensityModel("buy", "event", event="purchase", family="rfm", random_state=0)
    buy.fit(X, y, snapshot=snapshot)
    churn = PropensityModel("churn", "inactivity", family="rfm", random_state=0)
    churn.fit(X, y, snapshot=snapshot)
    names = list(X.columns)
    assert names[buy.rfm_columns_[1]] == "purchase_events"
    assert names[churn.rfm_columns_[1]] == "active_days_total"


@pytest.fixture(scope="module")
def xy_tenure(xy):
    X, y, snapshot = xy
    tenure = X["recency_days"] + np.random.default_rng(2).exponential(60, len(X))
    return X.assign(tenure_days=tenure), y, snapshot


@pytest.mark.parametrize(
    ("family", "bgnbd_features"),
    [("bgnbd", False), ("logistic", True), ("hgb", True)],
    ids=["bgnbd-baseline", "logistic+bgnbd", "hgb+bgnbd"],
)
def test_bgnbd_models_fit_predict_and_round_trip(xy_tenure, family, bgnbd_features):
    X, y, snapshot = xy_tenure
    model = PropensityModel(
        "churn", "inactivity", family=family, bgnbd_features=bgnbd_features, random_state=0
    ).fit(X, y, snapshot=snapshot)
    assert model.bgnbd_params_.shape == (4,) and (model.bgnbd_params_ > 0).all()
    p = model.predict(X)
    assert ((p > 0) & (p < 1)).all()
    blob = sio.dumps(model)
    loaded = sio.loads(blob, trusted=sorted(set(sio.get_untrusted_types(data=blob))))
    np.testing.assert_array_equal(loaded.predict(X), p)


def test_bgnbd_inputs_are_required(xy):
    X, y, _ = xy
    with pytest.raises(DataValidationError, match=r"needs feature column\(s\) \['tenure_days'\]"):
        PropensityModel(family="logistic", bgnbd_features=True).fit(X, y)


@pytest.mark.parametrize(
    ("family", "kind", "bgnbd_features"),
    [("hgb", "inactivity", True), ("logistic", "event", False), ("hgb", "count", False)],
)
def test_calibration_copy_side_by_side_gives_the_same_model(
    xy_tenure, monkeypatch, family, kind, bgnbd_features
):
    X, y, snapshot = xy_tenure
    params = dict(
        kind=kind, event="purchase", family=family, bgnbd_features=bgnbd_features,
        random_state=0, n_threads=1,
    )  # fmt: skip
    models = {}
    for parallel in (False, True):
        monkeypatch.setattr(PropensityModel, "_parallel_pair", lambda self, p=parallel: p)
        models[parallel] = PropensityModel(**params).fit(X, y, snapshot=snapshot)
    np.testing.assert_array_equal(models[True].predict(X), models[False].predict(X))
    assert models[True].calibration_mode_ == "latest_snapshot"


def test_side_by_side_fits_only_when_their_threads_fit_the_cores(monkeypatch):
    monkeypatch.setattr("segmentkit.models.propensity.usable_cores", lambda: 2)
    assert PropensityModel(n_threads=1)._parallel_pair()
    assert not PropensityModel(n_threads=2)._parallel_pair()
    assert not PropensityModel(n_threads=None)._parallel_pair()
    monkeypatch.setattr("segmentkit.models.propensity.usable_cores", lambda: 1)
    assert not PropensityModel(n_threads=1)._parallel_pair()


def _bgnbd_population(n: int, seed: int) -> pd.DataFrame:
    """Feature columns of customers drawn from BG/NBD (whole days, as the feature table)."""
    summary = sample_bgnbd(n, 0.5, 20.0, 0.6, 3.0, np.random.default_rng(seed).integers(20, 300, n))
    summary[["recency", "T"]] = np.floor(summary[["recency", "T"]])
    tenure = summary["T"] - 0.5
    return pd.DataFrame(
        {
            "recency_days": np.where(summary["frequency"] > 0, tenure - summary["recency"], tenure),
            "active_days_total": summary["frequency"] + 1.0,
            "tenure_days": tenure,
        }
    )


@pytest.mark.parametrize("kind", ["event", "count"])
def test_bgnbd_family_fitted_on_the_scored_population_ranks_as_bgnbd_there(xy_tenure, kind):
    # Trained on one population, scoring another: with that population given, its
    # BG/NBD parameters are those of a BG/NBD fitted on it, and the ranking is its.
    X, churn, snapshot = xy_tenure
    y = 1 - churn  # bought: the recent buy
    drawn = _bgnbd_population(800, seed=3)
    # Other columns (unused by the family) at their training medians.
    population = drawn.reindex(columns=X.columns).fillna(X.median())
    model = PropensityModel("buy", kind, event="purchase", family="bgnbd", random_state=0)
    model.fit(X, y, snapshot=snapshot, population=population)
    summary = summary_from_features(population)
    own = BetaGeoModel().fit(summary)
    np.testing.assert_allclose(model.bgnbd_params_, [own.r_, own.alpha_, own.a_, own.b_])
    reference = (
        own.probability_active(summary, 30)
        if kind == "event"
        else own.expected_transactions(summary, 30)
    )
    np.testing.assert_array_equal(rankdata(model.predict(population)), rankdata(reference))
    # Without it, the latest training snapshot's users: other parameters.
    default = PropensityModel("buy", kind, event="purchase", family="bgnbd", random_state=0)
    default.fit(X, y, snapshot=snapshot)
    latest = X[snapshot == snapshot.max()][["recency_days", "tenure_days", "active_days_total"]]
    np.testing.assert_allclose(
        default.bgnbd_params_, propensity_module._fit_bgnbd(latest.to_numpy())
    )
    assert not np.allclose(default.bgnbd_params_, model.bgnbd_params_)


def test_population_needs_the_training_columns(xy_tenure):
    X, y, snapshot = xy_tenure
    with pytest.raises(ValueError, match="feature names"):
        PropensityModel(family="bgnbd", random_state=0).fit(
            X, y, snapshot=snapshot, population=X.drop(columns=["tenure_days"])
        )


def test_bgnbd_params_given_by_the_caller_replace_the_fit(xy_tenure):
    X, y, snapshot = xy_tenure
    latest = snapshot == snapshot.max()
    params = propensity_module.fit_bgnbd_params(X[latest])
    own = PropensityModel("churn", "inactivity", family="bgnbd", random_state=0)
    own.fit(X, y, snapshot=snapshot)
    given = PropensityModel("churn", "inactivity", family="bgnbd", random_state=0,
                            bgnbd_params=params).fit(X, y, snapshot=snapshot)  # fmt: skip
    # Fitted on the same latest-snapshot users, the handed-over parameters are the model's own.
    np.testing.assert_allclose(given.bgnbd_params_, own.bgnbd_params_)
    np.testing.assert_allclose(given.predict(X), own.predict(X))
    other = PropensityModel("churn", "inactivity", family="bgnbd", random_state=0,
                            bgnbd_params=params * [2.0, 1.0, 1.0, 1.0]).fit(X, y, snapshot=snapshot)  # fmt: skip
    assert not np.allclose(other.predict(X), own.predict(X))
    # Handed-over parameters win over a population given to fit.
    both = PropensityModel("churn", "inactivity", family="bgnbd", random_state=0,
                           bgnbd_params=params).fit(X, y, snapshot=snapshot, population=X[~latest])  # fmt: skip
    np.testing.assert_array_equal(both.bgnbd_params_, params)


@pytest.mark.parametrize("params", [[1.0, 2.0, 3.0], [1.0, -2.0, 3.0, 4.0], [np.nan, 1, 1, 1]])
def test_bgnbd_params_must_be_four_positive_numbers(xy_tenure, params):
    X, y, snapshot = xy_tenure
    model = PropensityModel("churn", "inactivity", family="bgnbd", bgnbd_params=params)
    with pytest.raises(ConfigError, match="bgnbd_params must be None or four positive numbers"):
        model.fit(X, y, snapshot=snapshot)


def test_bgnbd_params_need_the_input_columns(xy_tenure):
    X, _, _ = xy_tenure
    with pytest.raises(DataValidationError, match=r"missing feature column\(s\) \['tenure_days'\]"):
        propensity_module.fit_bgnbd_params(X.drop(columns=["tenure_days"]))


def test_level_matches_the_latest_snapshot(xy):
    X, y, snapshot = xy
    model = PropensityModel("churn", "inactivity", family="logistic", random_state=0)
    model.fit(X, y, snapshot=snapshot)
    latest = snapshot == 2
    assert model.predict(X[latest]).mean() == pytest.approx(y[latest].mean(), rel=1e-6)
    plain = PropensityModel("churn", "inactivity", random_state=0, relevel=False)
    assert plain.fit(X, y, snapshot=snapshot).level_offset_ == 0.0


def test_expected_total_interval_by_hand(xy):
    X, y, snapshot = xy
    model = PropensityModel("churn", "inactivity", random_state=0).fit(X, y, snapshot=snapshot)
    rates = np.array([y[snapshot == k].mean() for k in range(3)])
    assert model.level_sd_ == pytest.approx(np.sqrt(np.mean(np.diff(np.log(rates)) ** 2)))
    p = np.array([0.5, 0.5, 0.2])
    total, lower, upper = model.expected_total(p, coverage=0.9)
    # The level part: Student t with the 2 snapshot moves (0.95 quantile 2.919986).
    level = 2.919986 * 1.2 * model.level_sd_
    half = np.sqrt(1.6448536**2 * (0.25 + 0.25 + 0.16) + level**2)
    assert (total, lower, upper) == pytest.approx((1.2, max(1.2 - half, 0.0), 1.2 + half))


def test_complement_model_errors(xy):
    X, y, _ = xy
    with pytest.raises(ConfigError, match="needs `source`"):
        PropensityModel(family="complement").fit(X, y)
    churn = PropensityModel("churn", "inactivity", random_state=0).fit(X, y)
    with pytest.raises(ConfigError, match="needs `source`"):
        PropensityModel(family="complement", source=churn).fit(X, y)
    buy = PropensityModel("buy", "event", event="purchase", random_state=0).fit(X, 1 - y)
    with pytest.raises(DataValidationError, match="source model's columns"):
        PropensityModel(family="complement", source=buy).fit(X.iloc[:, :3], y)


@pytest.mark.slow
def test_transaction_log_churn_is_one_minus_purchase(transactions, as_of):
    config = PropensityConfig(min_positives=50, random_state=0, targets=(CHURN, PURCHASE))
    result = fit_propensity(transactions, as_of, FEATURES, config, n_threads=1)
    assert result.choice["churn"] == "complement"
    assert any("derived as 1 - p(purchase)" in note for note in result.evaluation.notes)
    scores = score_propensity(result.models, build_features(transactions, as_of, FEATURES))
    np.testing.assert_allclose(scores["p_churn"], 1.0 - scores["p_purchase"])
    churn_auc = _metric(result, "churn", "model", "roc_auc")
    assert churn_auc == pytest.approx(_metric(result, "purchase", "model", "roc_auc"))
    blob = sio.dumps(result.models["churn"])
    loaded = sio.loads(blob, trusted=sorted(set(sio.get_untrusted_types(data=blob))))
    features = build_features(transactions, as_of, FEATURES)
    X = features[list(loaded.feature_names_in_)]
    np.testing.assert_array_equal(loaded.predict(X), result.models["churn"].predict(X))


@pytest.mark.slow
@pytest.mark.parametrize(
    "n_days", [80, 100], ids=["no-selection-snapshot", "one-selection-training-snapshot"]
)
def test_short_log_chooses_on_the_reported_snapshot_and_says_so(n_days):
    # 80 days: enough for one backtest snapshot (before as_of - 60 days), not for a
    # selection snapshot one horizon earlier (training before as_of - 90 days). 100
    # days: one selection training snapshot, in the log's first 10 days: candidates
    # calibrated by cross-validation there are not compared (none out of time).
    short = generate_events(n_users=1500, n_days=n_days, seed=3)
    log = load_events(short.events)
    config = PropensityConfig(min_positives=20, random_state=0, targets=(PURCHASE,))
    result = fit_propensity(log, pd.Timestamp(short.end), FEATURES, config, n_threads=1)
    assert not result.evaluation.nested
    assert result.evaluation.selection.empty
    assert any(
        "too short to choose the model one horizon before the reported snapshot (on two or "
        "more training snapshots)"
        in note
        and "optimistic" in note
        for note in result.evaluation.notes
    )
    reported = set(result.evaluation.metrics["model"])
    assert set(CANDIDATES) <= reported


# --- level of the scored period: seasonal step, trend -------------------------------


def _seasonal_log(n_users=1500, start="2022-06-01", end="2024-10-16", amplitude=0.7, seed=3):
    """Stationary buyers (no one arrives or leaves) whose rate follows a yearly cosine.

    The peak is on 10 December, so the level rises steeply through the autumn: the
    latest labeled month is a poor guide to the next one, and last year's autumn is a
    good one.
    """
    rng = np.random.default_rng(seed)
    days = pd.date_range(start, end, freq="D", inclusive="left")
    phase = (days - pd.Timestamp("2023-12-10")).days.to_numpy() / 365.25
    season = 1.0 + amplitude * np.cos(2.0 * np.pi * phase)
    rate = rng.gamma(2.0, 0.02, n_users)  # purchases per day at the yearly mean
    counts = rng.poisson(np.outer(rate, season))
    user, day = np.nonzero(counts)
    user, day = np.repeat(user, counts[user, day]), np.repeat(day, counts[user, day])
    # Everyone is seen on the first day, so the population does not change.
    user = np.r_[np.arange(n_users), user]
    day = np.r_[np.zeros(n_users, dtype=int), day]
    return pd.DataFrame(
        {
            "user_id": np.char.add("u", user.astype(str)),
            "timestamp": days[day] + pd.to_timedelta(rng.integers(0, 86_400, day.size), "s"),
            "event": np.where(np.arange(day.size) < n_users, "visit", "purchase"),
        }
    )


def test_season_snapshots_need_a_year_and_a_horizon_before_t():
    t = dt.datetime(2024, 10, 16)
    assert season_snapshots(t, 30) == (dt.datetime(2023, 10, 17), dt.datetime(2023, 9, 17))
    assert season_snapshots(t, 30, first_event=dt.datetime(2023, 9, 16)) is not None
    assert season_snapshots(t, 30, first_event=dt.datetime(2023, 9, 17)) is None


@pytest.mark.slow
def test_seasonal_level_is_offered_where_a_year_of_history_allows_it():
    events = _seasonal_log()
    config = replace(CONFIG, targets=(PURCHASES,), candidates=("logistic", "hgb"))
    # 2024-08-16: the selection snapshot (June into July) has a year and a horizon of
    # history before it, so every candidate is also judged with the seasonal step.
    result = fit_propensity(
        load_events(events), pd.Timestamp("2024-08-16"), FEATURES, config, n_threads=1
    )
    judged = set(result.evaluation.selection["model"])
    assert {"logistic-season", "hgb-season"} <= judged
    model = result.models["purchases"]
    note = next(
        n for n in result.evaluation.notes if n.startswith("purchases: level of the scored")
    )
    assert "no seasonal term" not in note
    if result.choice["purchases"].endswith("-season"):
        assert model.level_shift != 0.0
        assert f"({model.level_shift:+.3f} on the link scale" in note
    else:
        assert model.level_shift == 0.0
    # A year less history: no seasonal level in the choice. The log still reaches a
    # year before the evaluation snapshot (17 July 2024 - 30 days - 365 days =
    # 18 June 2023), but these buyers are one cohort, first seen in June 2023: a year
    # before the scored month none of them was as old as now, and one snapshot cannot
    # tell a season from ageing, so the step is not judged there; the notes say why.
    # (tests/models/test_propensity_levels.py judges it on a log with arrivals.)
    short = events[events["timestamp"] >= "2023-06-01"]
    result = fit_propensity(
        load_events(short), pd.Timestamp("2024-08-16"), FEATURES, config, n_threads=1
    )
    assert not result.evaluation.selection["model"].str.endswith("-season").any()
    assert not result.choice["purchases"].endswith("-season")
    notes = result.evaluation.notes
    assert not any("by the final model" in n for n in notes)
    level = next(n for n in notes if n.startswith("purchases: level of the scored"))
    assert "no seasonal term: a year before the scored period every customer was at most" in level
    # Less still: not even the evaluation snapshot has a year before it.
    shorter = events[events["timestamp"] >= "2023-07-01"]
    result = fit_propensity(
        load_events(shorter), pd.Timestamp("2024-08-16"), FEATURES, config, n_threads=1
    )
    assert not result.choice["purchases"].endswith("-season")
    assert not any("by the final model" in n for n in result.evaluation.notes)
    assert any("no seasonal term" in n for n in result.evaluation.notes)


def test_level_residual_is_the_shift_that_matches_the_labels(xy):
    X, y, snapshot = xy
    model = PropensityModel("buy", "event", event="x", random_state=0).fit(X, y, snapshot=snapshot)
    shift = model.level_residual(X, y)
    raw = model._predict_raw(X.to_numpy(), "none")
    assert shift_level(raw, shift, "event").mean() == pytest.approx(y.mean())


def test_short_log_says_there_is_no_seasonal_term(fitted):
    notes = [n for n in fitted.evaluation.notes if ": level of the scored period" in n]
    assert {n.split(":")[0] for n in notes} == {"churn", "purchase", "purchases"}
    assert all("no seasonal term" in n for n in notes)


def test_level_shift_moves_the_level_by_that_much(xy):
    X, y, snapshot = xy
    plain = PropensityModel("buy", "event", event="x", random_state=0).fit(X, y, snapshot=snapshot)
    moved = PropensityModel("buy", "event", event="x", random_state=0, level_shift=0.5)
    moved.fit(X, y, snapshot=snapshot)
    # Applied when predicting, on top of the latest snapshot's level (so it can be set
    # after fit, once the seasonal step of the fitted model is known).
    assert moved.level_offset_ == pytest.approx(plain.level_offset_)
    np.testing.assert_allclose(moved.predict(X), shift_level(plain.predict(X), 0.5, "event"))
    np.testing.assert_allclose(moved.set_params(level_shift=0.0).predict(X), plain.predict(X))
    with pytest.raises(ConfigError, match="level_shift must be a finite number"):
        PropensityModel(level_shift=float("nan")).fit(X, y)


def test_level_trend_extrapolates_the_snapshot_offsets(xy):
    X, y, _ = xy
    # Three snapshots 30 days apart whose label rate rises beyond what X explains.
    rng = np.random.default_rng(4)
    snapshot = np.repeat(np.array([0, 30, 60]) * 86_400, len(X) // 3)
    lift = np.repeat([0.0, 0.15, 0.3], len(X) // 3)
    y_up = np.maximum(y, (rng.random(len(X)) < lift).astype(int))
    model = PropensityModel("buy", "event", event="x", random_state=0, level_trend=True)
    model.fit(X, y_up, snapshot=snapshot)
    assert model.level_trend_ > 0
    latest = model._predict_raw(X.to_numpy(), "latest")
    trend = model.predict(X)
    assert trend.mean() > latest.mean()
    np.testing.assert_allclose(
        trend, shift_level(latest, model.level_trend_ * model.horizon_days, "event")
    )
    # One or two snapshots: no trend to measure.
    two = PropensityModel("buy", "event", event="x", random_state=0, level_trend=True)
    assert np.isnan(two.fit(X, y, snapshot=np.arange(len(X)) % 2).level_trend_)


@pytest.mark.slow
def test_final_bgnbd_is_fitted_on_the_users_scored_at_as_of(logs, as_of):
    # The chosen BG/NBD's parameters are those of a BG/NBD fitted on the feature table
    # at as_of (events after it, in the extended log, are never read), as the
    # baseline BG/NBD of the same date is: the same ranking of the scored users.
    config = replace(CONFIG, targets=(PURCHASE,), candidates=("bgnbd",))
    result = fit_propensity(logs["extended"], as_of, FEATURES, config, n_threads=1)
    model = result.models["purchase"]
    assert model.family == "bgnbd"
    scored = build_features(logs["clean"], as_of, FEATURES)
    inputs = scored[["recency_days", "tenure_days", "active_days_total"]].to_numpy()
    np.testing.assert_allclose(model.bgnbd_params_, propensity_module._fit_bgnbd(inputs))
    summary = summary_from_features(scored)
    baseline = BetaGeoModel().fit(summary).probability_active(summary, CONFIG.horizon_days)
    p = model.predict(scored.drop(columns=["user_id"]))
    # Never in the other order (the least active, below 1e-12, share one score).
    assert (np.diff(p[np.argsort(baseline, kind="stable")]) >= 0).all()
    assert spearmanr(p, baseline).statistic > 0.9999


# --- a target's event missing from the log -------------------------------------------


def _renamed_log(purchase_name: str) -> pd.DataFrame:
    """Three users, purchases named ``purchase_name``."""
    return pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "c"],
            "timestamp": pd.to_datetime(["2024-01-02", "2024-01-20", "2024-01-05", "2024-01-09"]),
            "event": ["page_view", purchase_name, "page_view", purchase_name],
        }
    )


def _target_refusal(raw: pd.DataFrame) -> str:
    """The message ``fit_propensity`` refuses ``raw`` with (the purchase target's check)."""
    with pytest.raises(ConfigError) as error:
        fit_propensity(load_events(raw), pd.Timestamp("2024-02-01"), FEATURES, CONFIG, n_threads=1)
    return str(error.value)


def test_a_target_event_missing_from_the_log_is_refused_naming_the_logs_events():
    assert _target_refusal(_renamed_log("order")) == (
        "propensity.targets.purchase: event 'purchase' does not occur in the log, so every "
        "label would be 0; the log's events are 'order', 'page_view'. Set the target's "
        "`event` in params.yaml to the log's name for it"
    )


@pytest.mark.parametrize("spelled", ["Purchase", " purchase", "PURCHASE"])
def test_a_target_event_spelled_otherwise_is_pointed_out(spelled):
    log = load_events(_renamed_log(spelled))
    with pytest.raises(ConfigError, match=rf"did you mean '{spelled}'\? \(event names must match"):
        fit_propensity(log, pd.Timestamp("2024-02-01"), FEATURES, CONFIG, n_threads=1)


def test_a_target_event_the_log_also_spells_otherwise_is_refused_with_its_rows():
    # Two exports concatenated: one spells purchases 'purchase', the other 'Purchase'.
    merged = pd.concat([_renamed_log("purchase"), _renamed_log("Purchase")])
    assert _target_refusal(merged) == (
        "propensity.targets.purchase: the log spells event 'purchase' in 2 ways (rows: "
        "'purchase' 2, 'Purchase' 2); labels would count only 'purchase'. Give the log one "
        "spelling (e.g. lower-case its event column)"
    )


def test_a_key_event_spelled_with_other_separators_is_pointed_out():
    # The hint matches names as the scoring check does: 'add-to-cart' for 'add_to_cart'.
    from segmentkit.config import TargetConfig
    from segmentkit.models.propensity_training import check_target_events

    log = load_events(_renamed_log("add-to-cart"))
    target = TargetConfig(name="cart", kind="event", event="add_to_cart")
    with pytest.raises(ConfigError, match=r"did you mean 'add-to-cart'\?"):
        check_target_events(log, [target])
