"""Refresh: drift of a new snapshot against the champion, built on the demo generator."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from segmentkit.bundle import load_bundle, save_bundle
from segmentkit.cli import main
from segmentkit.config import load_config
from segmentkit.drift.scenarios import steady_log
from segmentkit.errors import InsufficientDataError
from segmentkit.io.events import load_events
from segmentkit.io.synth import ARCHETYPES, generate_events
from segmentkit.refresh import refresh_model
from segmentkit.training import train_model

END = dt.datetime(2025, 1, 1)
CONFIG = load_config(
    overrides={
        "segmentation": {"k": 6, "random_state": 0},
        "propensity": {"targets": [{"name": "churn", "kind": "inactivity"}]},
    }
)


def _events(seed, users=2500, archetypes=ARCHETYPES):
    log = generate_events(users, 240, seed=seed, archetypes=archetypes)
    return log.events.astype({"user_id": str, "event": str})


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    result = train_model(CONFIG, _events(seed=3), END)
    root = save_bundle(result.model, tmp_path_factory.mktemp("champion") / "bundle")
    return load_bundle(root)


def test_fresh_sample_of_the_same_population_is_ok(champion):
    result = refresh_model(champion, CONFIG, _events(seed=4), END)
    report = result.report
    worst = max(r.score for r in report.feature_results("psi"))
    assert report.share.status == "OK", report.share
    assert worst < CONFIG.drift.psi_warn
    assert report.agreement.ari >= CONFIG.drift.ari_warn
    assert report.status == "OK"
    assert report.exit_code == 0


def test_changed_archetype_mix_raises_share_drift(champion):
    shares = {"power_user": 0.35, "dormant": 0.05, "big_spender": 0.25, "casual": 0.15}
    mix = tuple(dataclasses.replace(a, share=shares.get(a.name, a.share)) for a in ARCHETYPES)
    report = refresh_model(champion, CONFIG, _events(seed=4, archetypes=mix), END).report
    shares = [r for r in report.checks if r.test == "segment_share"]
    assert any(r.status == "DRIFT" for r in shares), shares
    assert all("·" in r.subject for r in shares)  # segments are named "id · name"
    assert report.status == "DRIFT"
    assert report.exit_code == 3


def test_new_dominant_event_raises_feature_drift(champion):
    events = _events(seed=4)
    # A new behavior: most page views become video plays, a kind of event never seen.
    views = events.index[events["event"] == "page_view"]
    events.loc[views[: int(len(views) * 0.8)], "event"] = "video_play"
    report = refresh_model(champion, CONFIG, events, END).report
    drifted = {r.subject for r in report.checks if r.test == "aged_psi" and r.status == "DRIFT"}
    assert "distinct_events" in drifted
    assert report.status == "DRIFT"


def test_migration_matrix_conserves_users(champion):
    events = _events(seed=4)
    report = refresh_model(champion, CONFIG, events, END).report
    migration = report.migration
    previous_users = events.loc[events["timestamp"] < END, "user_id"].nunique()
    assert migration.counts.to_numpy().sum() == migration.n_users
    assert migration.n_users == previous_users  # same as_of: nobody new, nobody gone
    assert migration.n_new == 0 and migration.n_gone == 0


def test_backtest_uses_only_outcomes_after_the_champions_as_of(tmp_path):
    events = _events(seed=5)
    old_as_of = END - dt.timedelta(days=30)
    log_then = load_events(events, as_of=old_as_of)
    champion = load_bundle(
        save_bundle(train_model(CONFIG, log_then, old_as_of).model, tmp_path / "b")
    )
    result = refresh_model(champion, CONFIG, events, END)
    (backtest,) = result.report.backtests
    # Churners by hand: active before old_as_of, no event in [old_as_of, old_as_of + 30 days).
    before = set(events.loc[events["timestamp"] < old_as_of, "user_id"])
    window = events[(events["timestamp"] >= old_as_of) & (events["timestamp"] < END)]
    churners = before - set(window["user_id"])
    assert backtest.n == len(before)
    assert backtest.observed_total == pytest.approx(len(churners))
    assert backtest.training_auc == pytest.approx(
        next(
            r["value"]
            for r in champion.metadata.propensity_evaluation
            if r["target"] == "churn" and r["metric"] == "roc_auc"
        )
    )
    # Events after the outcome window (none here) or at the old as_of's past do not enter.
    assert backtest.auc > 0.7


def test_drift_checks_read_the_past_features_from_the_challengers_pass(
    tmp_path, monkeypatch, watch_feature_builds
):
    # The features at the champion's snapshot and one interval before it come from the
    # challenger's one pass over the log (no build of their own), and the report is the
    # one a refresh building them separately gives.
    import importlib

    # `segmentkit.refresh` is also the API function: fetch the module itself.
    refresh_module = importlib.import_module("segmentkit.refresh")

    events = load_events(_events(seed=6), as_of=END)
    old_as_of = END - dt.timedelta(days=30)
    champion = load_bundle(
        save_bundle(train_model(CONFIG, events, old_as_of).model, tmp_path / "b")
    )
    with monkeypatch.context() as patched:
        asked = watch_feature_builds(patched)
        shared = refresh_model(champion, CONFIG, events, END).report
    (one_pass,) = asked
    assert {old_as_of, old_as_of - dt.timedelta(days=30)} <= set(one_pass)

    def train_without_extras(*args, extra_snapshots=(), **kwargs):
        return train_model(*args, **kwargs)

    monkeypatch.setattr(refresh_module, "train_model", train_without_extras)
    separate = refresh_model(champion, CONFIG, events, END).report
    assert shared.to_dict() == separate.to_dict()


def test_refresh_before_the_champions_as_of_is_refused(champion):
    with pytest.raises(InsufficientDataError, match="before the champion's as_of"):
        refresh_model(champion, CONFIG, _events(seed=4), END - dt.timedelta(days=10))


def test_refresh_command_reports_logs_and_exits_3_on_drift(champion, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    shares = {"power_user": 0.35, "dormant": 0.05, "big_spender": 0.25, "casual": 0.15}
    mix = tuple(dataclasses.replace(a, share=shares.get(a.name, a.share)) for a in ARCHETYPES)
    _events(seed=4, archetypes=mix).to_parquet(tmp_path / "new.parquet")
    champion_dir = save_bundle(champion, tmp_path / "champion")
    (tmp_path / "params.yaml").write_text(
        "segmentation: {k: 6}\n"
        "propensity:\n  targets: [{name: churn, kind: inactivity}]\n"
        "tracking: {registered_model: sk-refresh}\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "refresh",
                "--model",
                str(champion_dir),
                "--events",
                "new.parquet",
                "--as-of",
                "2025-01-01",
            ]
        )
    assert exit_info.value.code == 3
    out = capsys.readouterr().out
    assert "drift status: DRIFT" in out
    report = json.loads((tmp_path / "reports" / "refresh-2025-01-01" / "drift.json").read_text())
    assert report["status"] == "DRIFT"
    out_dir = tmp_path / "reports" / "refresh-2025-01-01"
    markdown = (out_dir / "drift.md").read_text()
    assert "DRIFT" in markdown
    assert markdown.rstrip().splitlines()[-1].startswith("**Recommendation:** ")
    # The CLI output ends with the verdict: status, then the recommendation.
    assert out.rstrip().splitlines()[-1].startswith("recommendation: ")
    assert out.rstrip().splitlines()[-2].startswith("drift status: DRIFT")
    page = (out_dir / "report.html").read_text()
    assert "Refresh verdict" in page and "<script" not in page
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient()
    # Without --promote a refresh never takes the champion alias, even on an empty registry.
    version = client.get_model_version_by_alias("sk-refresh", "challenger")
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("sk-refresh", "champion")
    run = client.get_run(version.run_id)
    assert run.data.metrics["drift/share_psi"] >= 0.25
    assert run.data.tags["segmentkit.command"] == "refresh"
    assert run.info.run_name == "refresh-2025-01-01"
    assert run.data.tags["segmentkit.report"].endswith("reports/report.html")
    assert (tmp_path / "models" / "sk-refresh-challenger").is_dir()


def test_refresh_promote_moves_the_champion_alias(champion, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _events(seed=4).to_parquet(tmp_path / "new.parquet")
    (tmp_path / "params.yaml").write_text(
        "segmentation: {k: 6}\n"
        "propensity:\n  targets: [{name: churn, kind: inactivity}]\n"
        "tracking: {registered_model: sk-promote}\n"
    )
    with pytest.raises(SystemExit) as exit_info:  # version 1: the registry's first champion
        main(["train", "--events", "new.parquet", "--as-of", "2025-01-01"])
    assert exit_info.value.code == 0
    with pytest.raises(SystemExit) as exit_info:  # champion from the registry, not a path
        main(["refresh", "--events", "new.parquet", "--as-of", "2025-01-01", "--promote"])
    assert exit_info.value.code == 0  # same data and as_of: no drift
    assert "drift status: OK" in capsys.readouterr().out
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("sk-promote", "champion").version) == "2"
    assert (tmp_path / "models" / "sk-promote").is_dir()


@pytest.mark.slow
def test_refresh_a_month_later_on_unchanged_behaviour_is_ok_and_says_so(tmp_path):
    # Users keep arriving and behave as before; tenure and recency grow with the
    # calendar alone: that is not drift.
    events = steady_log(250, 180, 10, 30, END.date(), seed=11)
    old_as_of = END - dt.timedelta(days=30)
    champion = train_model(CONFIG, events, old_as_of).model
    report = refresh_model(champion, CONFIG, events, END).report
    aged = {r.subject: r.details for r in report.checks if r.test == "aged_psi"}
    assert aged["tenure_days"]["expected_psi"] > 0  # ageing measured one interval earlier
    assert report.status == "OK", report.verdict.findings
    assert report.verdict.recommendation.startswith("No action")
    markdown = report.to_markdown(list(champion.segmenter.segment_names_))
    assert markdown.rstrip().splitlines()[-1].startswith("**Recommendation:** No action")
    for seg_id, name in enumerate(champion.segmenter.segment_names_):
        assert f"{seg_id} · {name}" in markdown


def test_the_champions_first_event_is_read_from_its_bundle_or_left_out():
    from types import SimpleNamespace

    from segmentkit.refresh import _stored_first_event

    def champion(quality):
        return SimpleNamespace(metadata=SimpleNamespace(data_quality=quality))

    assert _stored_first_event(champion({"first_event": "1997-01-01T00:00:00"})) == dt.datetime(
        1997, 1, 1
    )
    # A bundle saved without it, or with something else there: no claim about the start.
    for quality in ({}, None, {"first_event": None}, {"first_event": "not a date"}):
        assert _stored_first_event(champion(quality)) is None
