"""Refresh on logs it cannot compare with the champion: refused clearly, before any training."""

from __future__ import annotations

import datetime as dt
import sys

import pytest

from segmentkit.bundle import save_bundle
from segmentkit.cli import main
from segmentkit.config import load_config
from segmentkit.drift.scenarios import steady_log
from segmentkit.errors import DataValidationError, InsufficientDataError
from segmentkit.refresh import check_reports_dir, refresh_model
from segmentkit.training import train_model

END = dt.datetime(2025, 1, 1)
CHAMPION_AS_OF = END - dt.timedelta(days=30)
CONFIG = load_config(
    overrides={
        "segmentation": {"k": 3, "n_bootstrap": 0, "random_state": 0},
        "propensity": {"targets": []},
    }
)
RENAMED = {
    "page_view": "view",
    "product_view": "pview",
    "search": "find",
    "add_to_cart": "cart",
    "purchase": "buy",
    "share": "sh",
    "refund": "rf",
}


@pytest.fixture(scope="module")
def events():
    return steady_log(60, 180, 8, 30, END.date(), seed=7)


@pytest.fixture(scope="module")
def champion(events):
    return train_model(CONFIG, events, CHAMPION_AS_OF).model


@pytest.fixture()
def no_training(monkeypatch):
    """Fail the test if a refusal came only after training the challenger."""

    def refuse(*args, **kwargs):
        raise AssertionError("the refresh trained a challenger before refusing the log")

    # ``segmentkit.refresh`` is the API function: patch the module itself.
    monkeypatch.setattr(sys.modules[refresh_model.__module__], "train_model", refuse)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(CHAMPION_AS_OF + dt.timedelta(days=1), id="log-starts-after-champion"),
        pytest.param(END - dt.timedelta(days=20), id="log-shorter-than-the-interval"),
    ],
)
def test_log_without_the_champions_period_is_refused(events, champion, cut, no_training):
    recent = events[events["timestamp"] >= cut]
    with pytest.raises(InsufficientDataError, match="champion's as_of is 2024-12-02") as info:
        refresh_model(champion, CONFIG, recent, END)
    assert "give it the champion's period too" in str(info.value)


def test_log_of_only_users_new_since_the_champion_is_refused(events, champion, no_training):
    before = set(events.loc[events["timestamp"] < CHAMPION_AS_OF, "user_id"])
    newcomers = events[~events["user_id"].isin(before)]
    with pytest.raises(InsufficientDataError, match="give it the champion.s period too"):
        refresh_model(champion, CONFIG, newcomers, END)


def test_log_with_other_event_names_is_refused_not_reported_as_drift(events, champion, no_training):
    renamed = events.assign(event=events["event"].map(RENAMED))
    with pytest.raises(DataValidationError) as info:
        refresh_model(champion, CONFIG, renamed, END)
    message = str(info.value)
    assert "none of the key events" in message
    assert "['add_to_cart', 'purchase']" in message and "'cart'" in message


def test_revenue_read_otherwise_than_the_champion_is_refused(events, champion, no_training):
    counted = load_config(
        overrides={
            "segmentation": {"k": 3, "n_bootstrap": 0, "random_state": 0},
            "propensity": {"targets": []},
            "data": {"columns": {"revenue_events": ["purchase"]}},
        }
    )
    with pytest.raises(DataValidationError) as info:
        refresh_model(champion, counted, events, END)
    assert str(info.value).startswith(
        "data.columns.revenue_events: the model was trained with None, this mapping gives "
        "['purchase']"
    )


def test_full_event_log_for_a_transaction_champion_is_refused_not_reported_as_drift(
    events, no_training
):
    # Trained on the purchases alone, as a transaction table (every row a purchase).
    purchases = events[events["event"] == "purchase"].drop(columns=["event"])
    as_transactions = load_config(
        overrides={
            "segmentation": {"k": 3, "n_bootstrap": 0, "random_state": 0},
            "propensity": {"targets": []},
            "data": {"columns": {"event": None}},
        }
    )
    champion = train_model(as_transactions, purchases, CHAMPION_AS_OF).model
    with pytest.raises(DataValidationError, match="trained on a transaction table") as info:
        refresh_model(champion, CONFIG, events, END)
    assert "'page_view'" in str(info.value) and "'purchase'" not in str(info.value)


def test_one_event_no_longer_logged_is_still_drift_not_refused(events, champion):
    lost = events[~((events["event"] == "add_to_cart") & (events["timestamp"] >= CHAMPION_AS_OF))]
    verdict = refresh_model(champion, CONFIG, lost, END).report.verdict
    assert verdict.status == "DRIFT"
    assert (verdict.findings[0].kind, verdict.findings[0].subject) == (
        "event_vanished",
        "add_to_cart",
    )


def test_refresh_command_refuses_in_one_line_and_writes_nothing(
    events, champion, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    events[events["timestamp"] >= CHAMPION_AS_OF + dt.timedelta(days=1)].to_parquet(
        "recent.parquet"
    )
    save_bundle(champion, tmp_path / "champion")
    (tmp_path / "params.yaml").write_text(
        "segmentation: {k: 3, n_bootstrap: 0}\npropensity: {targets: []}\n"
    )
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "refresh",
                "--model",
                "champion",
                "--events",
                "recent.parquet",
                "--as-of",
                "2025-01-01",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: refresh: the event log starts at")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no reports, no mlflow.db


@pytest.mark.parametrize(
    ("reports", "events_arg"),
    [
        pytest.param("log.parquet", "log.parquet", id="the-events-file"),
        pytest.param("logdir", "logdir", id="the-events-directory"),
        pytest.param("logdir/reports", "logdir", id="inside-the-events-directory"),
        pytest.param("logdir/part-0.parquet", "logdir/*.parquet", id="a-file-of-the-glob"),
    ],
)
def test_reports_dir_that_is_or_lies_inside_the_log_is_refused(
    tmp_path, monkeypatch, reports, events_arg
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "log.parquet").write_bytes(b"")
    (tmp_path / "logdir").mkdir()
    (tmp_path / "logdir" / "part-0.parquet").write_bytes(b"")
    with pytest.raises(DataValidationError, match="--reports"):
        check_reports_dir(reports, events_arg)
    assert check_reports_dir("reports", events_arg).name == "reports"


def test_refresh_command_refuses_reports_in_the_event_log_before_any_work(
    events, champion, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    events.to_parquet("events.parquet")
    save_bundle(champion, tmp_path / "champion")
    (tmp_path / "params.yaml").write_text(
        "segmentation: {k: 3, n_bootstrap: 0}\npropensity: {targets: []}\n"
    )
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        main(["refresh", "--model", "champion", "--events", "events.parquet", "--reports",
              "events.parquet", "--as-of", "2025-01-01"])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--reports events.parquet" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
