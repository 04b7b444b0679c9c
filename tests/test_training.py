"""The training job as a function: snapshot resolution, fingerprint, result aggregates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmentkit.config import load_config
from segmentkit.errors import InsufficientDataError, SegmentkitWarning
from segmentkit.io.events import load_events
from segmentkit.models.segmentation import Segmenter
from segmentkit.training import (
    data_fingerprint,
    evidence_notes,
    heavy_user_notes,
    load_snapshot,
    make_segmenter,
    train_model,
    window_notes,
)

CONFIG = load_config(
    overrides={
        "data": {"columns": {"session_id": None}},
        "segmentation": {"k": 2, "n_bootstrap": 2},
        "propensity": {"targets": []},
    }
)


def test_load_snapshot_defaults_to_midnight_after_last_event(two_behaviours):
    log, snapshot = load_snapshot(CONFIG, two_behaviours)
    assert snapshot == pd.Timestamp("2024-03-31").to_pydatetime()
    assert log.report.users == 80


def test_load_snapshot_excludes_events_at_or_after_as_of(two_behaviours):
    log, snapshot = load_snapshot(CONFIG, two_behaviours, as_of="2024-03-15")
    assert snapshot == pd.Timestamp("2024-03-15").to_pydatetime()
    latest = log.con.execute(f"SELECT max(timestamp) FROM {log.table}").fetchone()[0]
    assert latest < snapshot


def test_load_snapshot_with_too_few_users_says_how_many(two_behaviours):
    one_user = two_behaviours.query("user_id == 'busy0'")
    with pytest.raises(InsufficientDataError, match="1"):
        load_snapshot(CONFIG, one_user, min_users=2)


def test_data_fingerprint_ignores_row_order_but_not_content(two_behaviours):
    events = two_behaviours
    columns = CONFIG.data.columns
    base = data_fingerprint(load_events(events, columns))
    shuffled = events.sample(frac=1.0, random_state=0)
    assert data_fingerprint(load_events(shuffled, columns)) == base
    changed = events.copy()
    changed.loc[changed.index[1], "revenue"] += 1.0
    assert data_fingerprint(load_events(changed, columns)) != base


def test_make_segmenter_carries_every_segmentation_param():
    config = load_config(overrides={"segmentation": {"k": 4, "k_range": [2, 6], "min_share": 0.05}})
    segmenter = make_segmenter(config)
    assert isinstance(segmenter, Segmenter)
    assert (segmenter.k, segmenter.k_range, segmenter.min_share) == (4, (2, 6), 0.05)
    assert segmenter.random_state == config.segmentation.random_state


@pytest.fixture(scope="module")
def result(two_behaviours_log):
    return train_model(CONFIG, two_behaviours_log)


def test_train_model_separates_the_planted_groups(result):
    users = result.features["user_id"].to_numpy()
    busy = np.char.startswith(users.astype(str), "busy")
    assert len(set(result.segments[busy])) == 1
    assert len(set(result.segments[~busy])) == 1
    assert result.segments[busy][0] != result.segments[~busy][0]


def test_train_model_metadata_is_aggregate_and_consistent(result):
    metadata = result.model.metadata
    assert metadata.as_of == "2024-03-31T00:00:00"
    assert metadata.segment_names == tuple(result.model.segmenter.segment_names_)
    assert sorted(metadata.segment_shares) == ["0", "1"]
    assert sum(metadata.segment_shares.values()) == pytest.approx(1.0)
    assert set(metadata.feature_reference) == set(metadata.feature_names)
    assert metadata.propensity_evaluation == ()


def test_result_metrics_count_users_and_shares(result):
    metrics = result.metrics()
    assert metrics["data/users"] == 80
    assert metrics["segments/k"] == 2
    assert metrics["segments/min_share"] == pytest.approx(0.5)
    assert {"time/loading_s", "time/segmentation_s"} <= set(metrics)
    # The two verdicts on the segments, as 0/1 metrics a run list can filter on.
    segmenter = result.model.segmenter
    assert metrics["segments/k_rule_met"] == float(segmenter.k_rule_met_)
    assert metrics["segments/separated"] == float(segmenter.segments_separated_)


def test_result_tables_and_documents_without_propensity(result):
    tables = result.tables()
    assert set(tables) == {"segment_profiles", "k_selection"} or set(tables) == {"segment_profiles"}
    assert len(tables["segment_profiles"]) == 2
    documents = result.documents()
    assert documents["data_quality"]["users"] == 80
    # Views and purchases: not a transaction table. The log has no add_to_cart event, so
    # that count is constant and reported as dropped, like every other dropped column.
    assert documents["segment_features"]["transaction_log"] is False
    assert documents["segment_features"]["dropped"]["add_to_cart_events"] == "constant"
    assert set(documents["segment_features"]["dropped"]) == set(
        result.model.segmenter.dropped_features_
    )
    names = [d["name"] for d in documents["segments"].values()]
    assert names == list(result.model.segmenter.segment_names_)


def test_train_model_refuses_a_log_too_short_for_the_horizon_before_segmenting(
    two_behaviours_log, monkeypatch
):
    # The log spans 2024-01-01 00:00 to as_of 2024-03-31: 90 days, so a 45-day horizon
    # puts the backtest snapshot on the first event (no history) and 44 days is the most.
    config = load_config(
        overrides={
            "data": {"columns": {"session_id": None}},
            "segmentation": {"k": 2, "n_bootstrap": 2},
            "propensity": {
                "horizon_days": 45,
                "targets": [{"name": "churn", "kind": "inactivity"}],
            },
        }
    )

    def segmenting(*args, **kwargs):
        raise AssertionError("segmentation ran before the refusal")

    monkeypatch.setattr(Segmenter, "fit", segmenting)
    with pytest.raises(InsufficientDataError, match=r"at most 44 day\(s\)"):
        train_model(config, two_behaviours_log)


ALONGSIDE = load_config(
    overrides={
        "segmentation": {"k_range": [2, 4], "n_bootstrap": 3, "bootstrap_sample": 1500},
        "propensity": {
            "n_threads": 1,
            "targets": [
                {"name": "churn", "kind": "inactivity"},
                {"name": "purchase", "kind": "event", "event": "purchase"},
            ],
        },
    }
)


@pytest.fixture(scope="module")
def demo_log():
    from segmentkit.io.synth import generate_events

    return generate_events(1500, 240, seed=3).events


def test_segmentation_beside_the_propensity_models_gives_the_same_result(demo_log, monkeypatch):
    from segmentkit.parallel import usable_cores

    if usable_cores() < 2:
        pytest.skip("one core: segmentation always runs first")
    alongside = train_model(ALONGSIDE, demo_log)
    assert "segmentation_alongside" in alongside.timings
    monkeypatch.setattr("segmentkit.training.usable_cores", lambda: 1)
    first = train_model(ALONGSIDE, demo_log)
    assert "segmentation_alongside" not in first.timings
    np.testing.assert_array_equal(alongside.segments, first.segments)
    assert alongside.model.segmenter.segment_names_ == first.model.segmenter.segment_names_
    assert alongside.propensity.choice == first.propensity.choice
    pd.testing.assert_frame_equal(
        alongside.propensity.evaluation.metrics, first.propensity.evaluation.metrics
    )


def test_a_segmentation_error_wins_over_a_propensity_error_raised_meanwhile(
    two_behaviours_log, monkeypatch
):
    from segmentkit.errors import ConfigError

    config = load_config(
        overrides={
            "data": {"columns": {"session_id": None}},
            "propensity": {"n_threads": 1, "targets": [{"name": "churn", "kind": "inactivity"}]},
        }
    )

    def propensity_fails(*args, **kwargs):
        raise ConfigError("propensity failed")

    def segmentation_fails(*args, **kwargs):
        raise InsufficientDataError("segmentation failed")

    monkeypatch.setattr("segmentkit.models.propensity_training.fit_propensity", propensity_fails)
    with pytest.raises(ConfigError, match="propensity failed"):
        train_model(config, two_behaviours_log)
    monkeypatch.setattr(Segmenter, "fit", segmentation_fails)
    # Segmentation ran first before it ran alongside: its error is the one reported.
    with pytest.raises(InsufficientDataError, match="segmentation failed"):
        train_model(config, two_behaviours_log)


def test_segmentation_alongside_starts_after_the_snapshot_features_are_built(demo_log, monkeypatch):
    # The one-pass snapshot build holds the most memory: segmentation, which holds
    # its own, starts once it is done.
    from segmentkit import training
    from segmentkit.models import propensity_training
    from segmentkit.parallel import usable_cores

    if usable_cores() < 2:
        pytest.skip("one core: segmentation always runs first")
    order = []
    build, segment = propensity_training.features_at, training._fit_segmenter

    def building(*args, **kwargs):
        order.append("features")
        return build(*args, **kwargs)

    def segmenting(*args, **kwargs):
        order.append("segmentation")
        return segment(*args, **kwargs)

    monkeypatch.setattr(propensity_training, "features_at", building)
    monkeypatch.setattr(training, "_fit_segmenter", segmenting)
    result = train_model(ALONGSIDE, demo_log)
    assert "segmentation_alongside" in result.timings
    assert order[0] == "features" and order.count("segmentation") == 1


def _snapshots(target, backtest, evaluation, final):
    """Snapshot rows: (users, positives) per backtest, evaluation and final snapshot."""
    rows = []
    for role, pairs in (("backtest", backtest), ("evaluation", [evaluation]), ("final", final)):
        for i, (users, positives) in enumerate(pairs):
            rows.append(
                {
                    "target": target,
                    "role": role,
                    "snapshot": pd.Timestamp("2024-06-01") - pd.Timedelta(days=30 * i),
                    "users": users,
                    "positives": positives,
                }
            )
    return pd.DataFrame(rows)


def _auc(target, value):
    return pd.DataFrame(
        {"target": [target], "model": ["model"], "metric": ["roc_auc"], "value": [value]}
    )


def test_evidence_notes_are_silent_on_a_complete_and_large_evaluation():
    config = load_config(overrides={"propensity": {"n_snapshots": 2}}).propensity
    snapshots = _snapshots("buy", [(9000, 900)] * 2, (20000, 2400), [(20000, 2400)] * 2)
    assert evidence_notes(snapshots, _auc("buy", 0.8), config) == []


def test_evidence_notes_say_how_few_snapshots_and_users_the_evaluation_saw():
    config = load_config(overrides={"propensity": {"n_snapshots": 3}}).propensity
    snapshots = _snapshots("buy", [(250, 40)], (300, 43), [(300, 43), (250, 40)])
    notes = evidence_notes(snapshots, _auc("buy", 0.8), config)
    assert len(notes) == 2
    assert notes[0].startswith(
        "target 'buy': the log is too short for the 3 training snapshots asked for "
        "(propensity.n_snapshots): the out-of-time evaluation trained on 1 (250 users, "
        "40 positives), the final model on 2 (550 users, 83 positives)"
    )
    assert notes[1].startswith(
        "target 'buy': out-of-time ROC AUC 0.800 from 300 users (43 positives)"
    )


def _order_lines(n_users: int, days: int, seed: int) -> pd.DataFrame:
    """An order-line table: orders of 1-6 lines sharing customer and minute, float ids."""
    rng = np.random.default_rng(seed)
    end = pd.Timestamp("2011-12-10")
    rate = rng.gamma(1.0, 1 / 20.0, n_users)  # orders per day
    first = rng.uniform(0, days - 1, n_users)
    orders = rng.poisson(rate * (days - first)) + 1
    user = np.repeat(np.arange(n_users), orders)
    day = np.where(np.r_[True, user[1:] != user[:-1]], first[user], rng.uniform(first[user], days))
    when = (end - pd.Timedelta(days=days) + pd.to_timedelta(day, unit="D")).floor("min")
    lines = rng.integers(1, 7, user.size)
    frame = pd.DataFrame(
        {
            "InvoiceNo": np.repeat(np.arange(user.size), lines),
            "CustomerID": np.repeat(user + 12346.0, lines),
            "InvoiceDate": np.repeat(when, lines),
        }
    )
    # Different products within an order (equal rows would be true duplicates).
    frame["StockCode"] = frame.groupby("InvoiceNo").cumcount() + 10 * rng.integers(0, 5, len(frame))
    frame["Amount"] = rng.choice([1.25, 2.55, 4.95], len(frame))
    return frame


@pytest.mark.slow
def test_train_model_on_a_short_order_line_table_says_how_little_it_saw():
    config = load_config(
        overrides={
            "data": {
                "columns": {
                    "user_id": "CustomerID",
                    "timestamp": "InvoiceDate",
                    "event": None,
                    "revenue": "Amount",
                }
            },
            "segmentation": {"k": 2, "n_bootstrap": 2},
            "propensity": {
                "candidates": ["logistic"],
                "targets": [{"name": "purchases", "kind": "count", "event": "purchase"}],
            },
        }
    )
    lines = _order_lines(1500, 75, seed=1)
    with pytest.warns(SegmentkitWarning) as caught:
        result = train_model(config, lines)
    messages = [str(w.message) for w in caught]
    # 75 days, a 30-day horizon: one backtest snapshot of the three asked for.
    assert any("too short for the 3 training snapshots" in m for m in messages)
    assert result.report.duplicate_rows == 0
    # The count target counts orders (distinct minutes), not their lines.
    evaluation = result.propensity.evaluation.metrics.query(
        "target == 'purchases' and model == 'model' and metric == 'actual_total'"
    )["value"]
    t0 = result.as_of - pd.Timedelta(days=30)
    window = lines[(lines["InvoiceDate"] >= t0) & (lines["InvoiceDate"] < result.as_of)]
    before = set(lines.loc[lines["InvoiceDate"] < t0, "CustomerID"])
    orders = window[window["CustomerID"].isin(before)].drop_duplicates(
        ["CustomerID", "InvoiceDate"]
    )
    assert evaluation.iloc[0] == len(orders)
    assert len(orders) < len(window[window["CustomerID"].isin(before)])


def _key_event_notes(log: pd.DataFrame, key_events: list[str]) -> list[str]:
    config = load_config(
        overrides={
            "data": {"columns": {"session_id": None}},
            "segmentation": {"k": 2, "n_bootstrap": 2},
            "propensity": {"targets": []},
            "features": {"key_events": key_events},
        }
    )
    with pytest.warns(SegmentkitWarning) as caught:
        train_model(config, log)
    return [str(w.message) for w in caught if "key_events" in str(w.message)]


def test_key_events_the_log_never_holds_are_named_with_its_events(two_behaviours_log):
    # Key events are counted by exact name: 'Add-To-Cart' counts the log's 'add_to_cart'
    # rows as 0, which only the user can put right.
    log = two_behaviours_log.copy()
    views = log.index[log["event"] == "view"]
    log.loc[views[::7], "event"] = "add_to_cart"
    assert _key_event_notes(log, ["purchase", "Add-To-Cart", "wishlist"]) == [
        "features.key_events ['Add-To-Cart', 'wishlist'] never occur in this log, so their count "
        "features are 0 for every user; the log's events are 'add_to_cart', 'purchase', 'view'; "
        "did you mean 'add_to_cart' for 'Add-To-Cart'?"
    ]
    # Two exports merged: the second spells carts otherwise, and those are not counted.
    log.loc[views[3::7], "event"] = "Add To Cart"
    assert _key_event_notes(log, ["purchase", "add_to_cart"]) == [
        "features.key_events: the log also spells 'add_to_cart' as ['Add To Cart']; only the "
        "rows spelled 'add_to_cart' are counted in its feature (give the log one spelling)"
    ]


def test_a_transaction_table_gets_no_key_event_note(two_behaviours_log):
    # Every row is a purchase by construction: 'add_to_cart' cannot occur, nothing to say.
    import warnings

    purchases = two_behaviours_log[two_behaviours_log["event"] == "purchase"].drop(columns="event")
    config = load_config(
        overrides={
            "data": {"columns": {"session_id": None, "event": None}},
            "segmentation": {"k": 2, "n_bootstrap": 2},
            "propensity": {"targets": []},
            "features": {"key_events": ["purchase", "add_to_cart"]},
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_model(config, purchases)
    assert not [w for w in caught if "key_events" in str(w.message)]


def _events_per_user(counts: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": list(counts), "events_total": list(counts.values())})


def test_a_user_id_holding_much_of_the_log_is_named():
    # 100 users of 10 events; 'guest' holds 2,000 of 2,990 (66.9%), 200x the median.
    table = _events_per_user({"guest": 2000, **{f"u{i}": 10 for i in range(99)}})
    (note,) = heavy_user_notes(table)
    assert note.startswith(
        "user id 'guest' holds 66.9% of the training users' events (2,000, 200x the median "
        "user's 10): a placeholder id for anonymous traffic, a bot or a shared account?"
    )


@pytest.mark.parametrize(
    "counts",
    [
        {"heavy": 999, **{f"u{i}": 10 for i in range(99)}},  # 99.9x the median
        {"heavy": 2000, **{f"u{i}": 10 for i in range(4000)}},  # 4.8% of the events
        {"a": 6, "b": 1},  # a small log: 86% of 7 events, 6 times the median
    ],
    ids=["ratio-under-100", "share-under-5%", "small-log"],
)
def test_heavy_but_plausible_users_are_not_named(counts):
    assert heavy_user_notes(_events_per_user(counts)) == []


def test_training_warns_about_a_placeholder_user_id(two_behaviours):
    guest = two_behaviours.iloc[[0]].assign(user_id="0")
    crowd = guest.loc[guest.index.repeat(10_000)].assign(
        timestamp=pd.date_range("2024-03-01", periods=10_000, freq="2min")
    )
    with pytest.warns(SegmentkitWarning, match=r"^user id '0' holds \d+\.\d% of the training"):
        train_model(CONFIG, pd.concat([two_behaviours, crowd], ignore_index=True))


def test_windows_longer_than_the_log_are_named():
    import datetime as dt

    # Taobao's nine days with the default windows.
    (note,) = window_notes((30, 90), "2017-11-25T00:00:00", dt.datetime(2017, 12, 4))
    assert note == (
        "features.windows [30, 90] reach back before the first event (9.0 days before as_of): "
        "their features count every event of every user, as the totals do; windows within "
        "the log (e.g. [2, 4]) tell recent behaviour apart"
    )
    assert window_notes((7, 9), "2017-11-25T00:00:00", dt.datetime(2017, 12, 4)) == []
