"""Publishing: nothing goes live until MLflow has the run and the version; failures change nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from segmentkit import tracking
from segmentkit.bundle.metadata import BundleMetadata
from segmentkit.bundle.model import SegmentationModel
from segmentkit.bundle.storage import load_bundle
from segmentkit.cli import main
from segmentkit.config import FeatureConfig
from segmentkit.errors import BundleError, TrackingError
from segmentkit.models.segmentation import Segmenter

NAME = "sk-publish"


def _model(seed):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(60, 2)), columns=["recency_days", "events_total"])
    return SegmentationModel(
        segmenter=Segmenter(k=2, n_bootstrap=2, random_state=seed).fit(X),
        propensity={},
        feature_config=FeatureConfig(windows=(7, 30)),
        metadata=BundleMetadata(as_of="2024-01-01", data_fingerprint=str(seed)),
    )


def _publish(tmp_path, seed, uri=None, **extra):
    return tracking.publish_bundle(
        _model(seed),
        tmp_path / "models" / NAME,
        tracking_uri=uri or f"sqlite:///{tmp_path / 'mlflow.db'}",
        experiment="sk",
        model_name=NAME,
        input_columns=extra.pop(
            "input_columns", {"recency_days": "double", "events_total": "double"}
        ),
        params={"seed": seed},
        metrics={"m": 1.0},
        tables={},
        documents={},
        figures={},
        **extra,
    )


def _client(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return MlflowClient()


def _champion(tmp_path):
    return str(_client(tmp_path).get_model_version_by_alias(NAME, "champion").version)


def _live_seed(tmp_path):
    return load_bundle(tmp_path / "models" / NAME).metadata.data_fingerprint


def _versions(tmp_path):
    root = tmp_path / "models" / NAME
    return sorted(p.name for p in root.iterdir() if p.name.startswith("v-"))


@pytest.fixture
def published(tmp_path):
    first = _publish(tmp_path, seed=1)
    assert first.alias == "champion"
    return first


def _fail(exception):
    def raiser(*args, **kwargs):
        raise exception

    return raiser


# Each step of a publish, and the error it raises there.
FAULTS = {
    "skops-dump": ("skops.io.dump", OSError("disk full")),
    "set-experiment": ("mlflow.set_experiment", mlflow.exceptions.MlflowException("down")),
    "log-params": ("mlflow.log_params", OSError("connection reset")),
    "log-model": ("mlflow.pyfunc.log_model", RuntimeError("boom")),
    "set-alias": (
        "mlflow.tracking.MlflowClient.set_registered_model_alias",
        mlflow.exceptions.MlflowException("registry down"),
    ),
    "switch-current": ("segmentkit.bundle.storage.os.replace", OSError("read-only file system")),
}


@pytest.mark.slow
@pytest.mark.parametrize("step", list(FAULTS))
def test_failure_at_any_step_leaves_the_previous_model_live(tmp_path, monkeypatch, published, step):
    target, error = FAULTS[step]
    before = _versions(tmp_path)
    monkeypatch.setattr(target, _fail(error))
    with pytest.raises((TrackingError, BundleError, type(error))):
        _publish(tmp_path, seed=2)
    monkeypatch.undo()
    assert _live_seed(tmp_path) == "1"  # local bundle: previous version live and loadable
    assert _versions(tmp_path) == before  # the staged version is gone
    assert _champion(tmp_path) == published.model_version  # registry: alias unchanged
    runs = _client(tmp_path).search_runs(
        [published.experiment_id], order_by=["attributes.start_time DESC"]
    )
    assert all(run.info.status != "RUNNING" for run in runs)
    if len(runs) > 1:
        assert runs[0].info.status == "FAILED"


@pytest.mark.slow
def test_refresh_style_publish_never_takes_the_champion_alias(tmp_path):
    run = _publish(tmp_path, seed=1, first_version_is_champion=False)
    assert run.alias == "challenger"
    with pytest.raises(mlflow.exceptions.MlflowException):
        _client(tmp_path).get_model_version_by_alias(NAME, "champion")


def _silent_server():
    """A TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server


def test_silent_tracking_server_fails_fast_with_one_line_naming_it(tmp_path):
    server = _silent_server()
    uri = f"http://127.0.0.1:{server.getsockname()[1]}"
    start = time.perf_counter()
    try:
        with pytest.raises(TrackingError) as info:
            _publish(tmp_path, seed=1, uri=uri, request_timeout_s=1, request_retries=0)
    finally:
        server.close()
    elapsed = time.perf_counter() - start
    assert uri in str(info.value) and "\n" not in str(info.value)
    assert elapsed < 10, elapsed
    assert not (tmp_path / "models" / NAME / "CURRENT").exists()
    assert tracking.TIMEOUT_ENV not in os.environ  # settings restored


def test_user_set_mlflow_timeouts_win(monkeypatch):
    monkeypatch.setenv(tracking.TIMEOUT_ENV, "99")
    with tracking.bounded_requests(timeout_s=1, retries=0):
        assert os.environ[tracking.TIMEOUT_ENV] == "99"
        assert os.environ[tracking.RETRIES_ENV] == "0"
    assert os.environ[tracking.TIMEOUT_ENV] == "99"
    assert tracking.RETRIES_ENV not in os.environ


def _score_unknown_model(tmp_path):
    """Run ``segmentkit score`` on a one-row log with a model the registry does not hold."""
    events = tmp_path / "events.csv"
    events.write_text("user_id,timestamp,event\na,2024-01-01,view\n")
    with pytest.raises(SystemExit) as exit_info:
        model = "models:/nosuch@champion"
        main(["score", "--model", model, "--events", str(events), "--out", "s.csv"])
    return exit_info


def test_score_from_a_missing_store_is_one_line_and_creates_nothing(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    exit_info = _score_unknown_model(tmp_path)
    err = capfd.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and "models:/nosuch@champion" in err and "INFO" not in err
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_unknown_model_in_an_existing_store_is_one_line(tmp_path, monkeypatch, capfd, published):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    capfd.readouterr()
    exit_info = _score_unknown_model(tmp_path)
    out = capfd.readouterr()
    assert exit_info.value.code == 2
    assert out.err.count("\n") == 1 and "nosuch" in out.err
    assert "INFO" not in out.err + out.out


def test_refresh_without_a_champion_says_what_to_run(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    events = tmp_path / "events.csv"
    events.write_text("user_id,timestamp,event\na,2024-01-01,view\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["refresh", "--events", str(events)])
    err = capfd.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and "segmentkit train" in err
    assert not (tmp_path / "mlflow.db").exists()


PARAMS = """
data:
  demo: {users: 800, days: 200, seed: 4, path: data/demo.parquet}
segmentation: {k: 3, n_bootstrap: 2}
propensity:
  targets: [{name: churn, kind: inactivity}]
tracking: {registered_model: sk-concurrent}
"""


@pytest.mark.slow
def test_two_trains_at_once_on_a_fresh_sqlite_store_both_succeed(tmp_path):
    (tmp_path / "params.yaml").write_text(PARAMS)
    main_cmd = [
        sys.executable,
        "-c",
        "from segmentkit.cli import main; main()",
        "demo-data",
        "--out",
        "data/demo.parquet",
        "--users",
        "800",
        "--days",
        "200",
        "--seed",
        "4",
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    subprocess.run(main_cmd, cwd=tmp_path, env=env, check=True, capture_output=True)
    command = [
        sys.executable,
        "-c",
        "from segmentkit.cli import main; main()",
        "train",
        "--events",
        "data/demo.parquet",
    ]
    runs = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in runs]
    for code, err in results:
        assert code in (0, 2), err
        if code == 2:
            assert err.count("\n") == 1
    assert any(code == 0 for code, _ in results)
    client = _client(tmp_path)
    versions = client.search_model_versions("name='sk-concurrent'")
    assert len(versions) == sum(code == 0 for code, _ in results)
    assert client.get_model_version_by_alias("sk-concurrent", "champion").version
    assert load_bundle(tmp_path / "models" / "sk-concurrent").segmenter.n_segments_ == 3


@pytest.mark.slow
@pytest.mark.parametrize("id_type", ["long", "string"])
def test_a_log_with_integer_user_ids_publishes_with_a_matching_input_example(tmp_path, id_type):
    from segmentkit.drift import build_feature_reference

    rng = np.random.default_rng(0)
    features = pd.DataFrame(rng.normal(size=(60, 2)), columns=["recency_days", "events_total"])
    columns = {"user_id": id_type, "recency_days": "double", "events_total": "double"}
    example = tracking.synthetic_input_example(build_feature_reference(features), columns)
    # MLflow checks the example against the signature: ids typed as the log's were.
    registered = _publish(tmp_path, seed=3, input_columns=columns, input_example=example)
    assert registered.alias == "champion"
    version = _client(tmp_path).get_model_version_by_alias(NAME, "champion")
    assert version.run_id == registered.run_id
