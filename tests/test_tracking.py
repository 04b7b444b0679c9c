"""Tracking: params flattening, URI resolution, and training against a real MLflow server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from segmentkit.cli import main
from segmentkit.tracking import (
    DEFAULT_TRACKING_URI,
    flatten_params,
    registry_notices_hidden,
    resolve_tracking_uri,
)


def test_flatten_params_nested_and_lists():
    flat = flatten_params({"a": {"b": 1, "c": [1, 2], "d": {"e": None}}, "f": "x"})
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "a.d.e": "None", "f": "x"}


def test_tracking_uri_precedence(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert resolve_tracking_uri(None) == "http://127.0.0.1:1"
    assert resolve_tracking_uri("sqlite:///other.db") == "sqlite:///other.db"


def _write_small_params(directory: Path, model_name: str) -> None:
    (directory / "params.yaml").write_text(
        "data:\n  demo: {users: 1500, days: 240, seed: 5, path: data/demo.parquet}\n"
        "segmentation: {k: 4}\n"
        "propensity:\n  targets: [{name: churn, kind: inactivity}]\n"
        f"tracking: {{registered_model: {model_name}}}\n"
    )


def test_default_tracking_is_embedded_sqlite_in_the_working_directory(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _write_small_params(tmp_path, "sk-default")
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    assert exit_info.value.code == 0
    assert (tmp_path / "mlflow.db").is_file()
    assert "at sqlite:///mlflow.db" in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 (own port), stopped at the end."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(
                f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}"
            )
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.mark.server
def test_train_and_score_against_a_real_mlflow_server(mlflow_server, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    _write_small_params(tmp_path, "sk-server")
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"version 1 (alias champion) at {mlflow_server}" in out
    assert not (tmp_path / "mlflow.db").exists()  # nothing was logged locally
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "score",
                "--model",
                "models:/sk-server@champion",
                "--events",
                "data/demo.parquet",
                "--out",
                "scores.csv",
            ]
        )
    assert exit_info.value.code == 0
    assert Path("scores.csv").is_file()
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_server


def test_registry_notices_are_dropped_and_other_stderr_kept(capsys):
    with registry_notices_hidden():
        print("Successfully registered model 'sk'.", file=sys.stderr)
        print("Registered model 'sk' already exists. Creating a new version...", file=sys.stderr)
        print("Created version '2' of model 'sk'.", file=sys.stderr)
        print("UserWarning: something worth reading", file=sys.stderr)
        print("to stdout")
    captured = capsys.readouterr()
    assert captured.err == "UserWarning: something worth reading\n"
    assert captured.out == "to stdout\n"


def test_registry_notices_hidden_keeps_stderr_when_the_block_raises(capsys):
    with pytest.raises(ValueError), registry_notices_hidden():
        print("partial output before the failure", file=sys.stderr)
        raise ValueError("boom")
    assert capsys.readouterr().err == "partial output before the failure\n"


@pytest.fixture
def recording_server():
    """A local HTTP server that records every request it gets (and serves a file)."""
    import http.server
    import threading

    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"not a model")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


@pytest.fixture
def empty_store(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()
    return uri


def test_model_uris_other_than_models_and_runs_fetch_nothing(
    recording_server, empty_store, tmp_path, monkeypatch
):
    from segmentkit.api import load
    from segmentkit.errors import BundleError

    base, requests = recording_server
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "MANIFEST.sha256").write_text("")  # a directory that looks like a bundle
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(downloads))
    for uri, hint in [
        (f"{base}/model", "download the bundle yourself"),
        (f"file://{secret}", "pass the bundle directory as a path"),
        ("s3://bucket/model", "download the bundle yourself"),
        ("ftp://host/model", "download the bundle yourself"),
    ]:
        with pytest.raises(BundleError, match=f"only; {hint}"):
            load(uri, tracking_uri=empty_store)
    assert requests == []
    assert list(downloads.iterdir()) == []  # nothing was copied


def test_a_failed_model_download_leaves_no_directory_and_a_short_message(
    empty_store, tmp_path, monkeypatch
):
    from segmentkit.api import load
    from segmentkit.errors import BundleError

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(downloads))
    long_name = "x" * 5000
    with pytest.raises(BundleError, match=r"Registered Model with name=x+\.\.\.") as info:
        load(f"models:/{long_name}@champion", tracking_uri=empty_store)
    assert "... (5,017 characters)" in str(info.value)
    assert len(str(info.value)) < 1000
    with pytest.raises(BundleError, match=r"Invalid value|not found"):
        load("models:/../../etc@champion", tracking_uri=empty_store)
    assert list(downloads.iterdir()) == []


def test_credentials_in_event_log_uris_are_not_logged(empty_store):
    import mlflow

    from segmentkit.tracking import _log_dataset

    presigned = "https://bucket.s3.amazonaws.com/events.parquet?X-Amz-Signature=s3cr3t"
    params = {"data": {"events": "s3://AKIA:s3cr3t@bucket/events/*.parquet", "as_of": None}}
    flat = flatten_params({**params, "spark": {"paths": [presigned, "local.parquet"]}})
    assert flat["data.events"] == "s3://***@bucket/events/*.parquet"
    assert (
        flat["spark.paths"]
        == '["https://bucket.s3.amazonaws.com/events.parquet?***", "local.parquet"]'
    )
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(empty_store)
    try:
        experiment = mlflow.set_experiment("credentials")
        with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
            _log_dataset({"source": presigned, "name": "events.parquet", "digest": "d"})
        logged = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    finally:
        mlflow.set_tracking_uri(previous)
    assert [d.dataset.name for d in logged] == ["events.parquet"]
    assert "s3cr3t" not in str(logged)


def _texts_of(path: Path) -> list[tuple[str, str]]:
    """(where, text) of a file, and of every member if it is a zip (a .skops model file)."""
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return [
                (f"{path}!{name}", archive.read(name).decode("latin-1"))
                for name in archive.namelist()
            ]
    return [(str(path), path.read_bytes().decode("latin-1"))]


@pytest.mark.slow
def test_train_and_refresh_send_mlflow_aggregates_only_and_escape_hostile_names(
    tmp_path, monkeypatch
):
    import datetime as dt

    import mlflow

    from segmentkit.drift.scenarios import steady_log

    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    log = steady_log(150, 180, 8, 30, dt.date(2025, 1, 1), seed=4)
    log["user_id"] = "u'\"<" + log["user_id"].astype(str)  # quotes and a tag opener
    hostile = "<script>alert(1)</script>"
    events = log["event"].astype(str)
    log["event"] = events.where(events != "search", hostile)
    log.to_parquet(tmp_path / "events.parquet")
    (tmp_path / "params.yaml").write_text(
        "data: {events: events.parquet}\n"
        f"features: {{key_events: [purchase, '{hostile}']}}\n"
        "segmentation: {k: 4}\n"
        "propensity:\n  min_positives: 20\n  targets: [{name: churn, kind: inactivity}]\n"
        "tracking: {registered_model: sk-leak}\n"
    )
    for args in (["train", "--as-of", "2024-12-02"], ["refresh", "--as-of", "2025-01-01"]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code in (0, 3), args

    client = mlflow.MlflowClient(tracking_uri=store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 2
    files: list[Path] = []
    for i, run in enumerate(runs):
        dst = tmp_path / f"run{i}"
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(dst))
        files += [p for p in dst.rglob("*") if p.is_file()]
    for version in client.search_model_versions("name='sk-leak'"):
        dst = tmp_path / f"model{version.version}"
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/sk-leak/{version.version}", dst_path=str(dst)
        )
        files += [p for p in dst.rglob("*") if p.is_file()]
    assert any(p.suffix == ".skops" for p in files) and any(p.suffix == ".html" for p in files)

    user_ids = set(log["user_id"])
    numbers = {u.removeprefix("u'\"<") for u in user_ids}  # the ids without the prefix
    blobs = _texts_of_run_data(client, runs) + [t for p in files for t in _texts_of(p)]
    for where, text in blobs:
        assert "u'\"<" not in text and "u&#x27;&quot;&lt;" not in text, where
        leaked = [n for n in sorted(numbers)[:: max(1, len(numbers) // 300)] if n in text]
        assert not leaked, f"{where} holds user ids {leaked[:3]}"
        if where.endswith(".html"):
            assert hostile not in text, where  # escaped where shown
    assert len(user_ids) > 500


def _texts_of_run_data(client, runs) -> list[tuple[str, str]]:
    import json

    return [
        (
            f"run {run.info.run_id} params, metrics and tags",
            json.dumps({**run.data.params, **run.data.metrics, **run.data.tags}),
        )
        for run in runs
    ]
