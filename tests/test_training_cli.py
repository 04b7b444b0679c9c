"""End to end: train, register, score from a fresh process, refuse bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import segmentkit
from segmentkit.cli import main
from segmentkit.io.synth import archetypes_path_for
from segmentkit.models import propensity as propensity_module

PARAMS = """
data:
  demo: {users: 2500, days: 240, seed: 3, path: data/demo.parquet}
segmentation:
  k: auto
  k_range: [5, 7]
  n_bootstrap: 4
  bootstrap_sample: 2000
  silhouette_sample: 2000
propensity:
  targets:
    - {name: churn, kind: inactivity}
    - {name: purchases, kind: count, event: purchase}
tracking:
  registered_model: sk-test
"""


def run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("train")
    (path / "params.yaml").write_text(PARAMS)
    return path


@pytest.fixture(scope="module")
def trained(workdir):
    """Run `segmentkit train` once (in-process) against an embedded sqlite store."""
    old = Path.cwd()
    os.chdir(workdir)
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["train"])
        assert exit_info.value.code == 0
    finally:
        os.chdir(old)
    yield workdir
    if env_before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = env_before


def _client(workdir):
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    return MlflowClient()


def test_train_registers_a_champion_with_aggregates_only(trained):
    client = _client(trained)
    version = client.get_model_version_by_alias("sk-test", "champion")
    assert str(version.version) == "1"
    run = client.get_run(version.run_id)
    assert run.data.params["segmentation.k"] == "auto"
    assert run.data.params["features.windows"] == "[30, 90]"
    assert 5 <= run.data.metrics["segments/k"] <= 7
    assert run.data.metrics["propensity/churn/roc_auc"] > 0.7
    # Baselines beside the model, BG/NBD included, and the expected total's interval.
    assert "propensity/churn/baseline/bgnbd/roc_auc" in run.data.metrics
    assert "propensity/churn/total_upper" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert {"reports/k_selection.csv", "reports/segment_profiles.csv"} <= artifacts
    assert {"reports/propensity_metrics.csv", "reports/data_quality.json"} <= artifacts
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/profile_heatmap.png", "figures/segment_sizes.png"} <= figures
    assert "figures/calibration_churn.png" in figures


def test_no_user_level_data_reaches_mlflow(trained):
    client = _client(trained)
    run_id = client.get_model_version_by_alias("sk-test", "champion").run_id
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(trained / "dl")))
    user_ids = set(
        pd.read_parquet(trained / "data" / "demo.parquet", columns=["user_id"])["user_id"].astype(
            str
        )
    )
    sample = sorted(user_ids)[:: max(1, len(user_ids) // 200)]
    for path in local.rglob("*"):
        if path.is_file() and path.suffix in {".csv", ".json", ".md", ".txt", ".yaml", ".py"}:
            text = path.read_text(errors="ignore")
            leaked = [u for u in sample if u in text]
            assert not leaked, f"{path} contains user ids {leaked[:3]}"
    run = client.get_run(run_id)
    blob = json.dumps({**run.data.params, **run.data.metrics, **run.data.tags})
    assert not [u for u in sample if u in blob]


def test_training_recovers_archetypes_in_segments(trained):
    model = segmentkit.load(trained / "models" / "sk-test")
    scores = model.score(trained / "data" / "demo.parquet")
    truth = pd.read_parquet(archetypes_path_for(trained / "data" / "demo.parquet"))
    joined = scores.merge(truth, on="user_id")
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(joined["archetype"], joined["segment_id"]) > 0.5


def test_score_in_a_fresh_process_matches_in_process_scoring(trained):
    out = trained / "scores.parquet"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{trained / 'mlflow.db'}"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "segmentkit.cli",
            "score",
            "--model",
            "models:/sk-test@champion",
            "--events",
            "data/demo.parquet",
            "--out",
            str(out),
        ],
        cwd=trained,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    fresh = pd.read_parquet(out)
    in_process = segmentkit.load(trained / "models" / "sk-test").score(
        trained / "data" / "demo.parquet"
    )
    pd.testing.assert_frame_equal(fresh, in_process)
    assert list(fresh.columns[:3]) == ["user_id", "segment_id", "segment_name"]
    assert {"p_churn", "p_churn_percentile", "p_churn_bucket", "expected_purchases"} <= set(
        fresh.columns
    )
    assert fresh["user_id"].is_unique


def test_pyfunc_model_scores_a_feature_table(trained):
    mlflow.set_tracking_uri(f"sqlite:///{trained / 'mlflow.db'}")
    pyfunc = mlflow.pyfunc.load_model("models:/sk-test@champion")
    model = segmentkit.load(trained / "models" / "sk-test")
    features = segmentkit.build_features(
        trained / "data" / "demo.parquet", "2025-01-01", model.feature_config
    )
    predicted = pyfunc.predict(features)
    pd.testing.assert_frame_equal(predicted.reset_index(drop=True), model.score_features(features))


def test_retraining_is_deterministic_and_registers_a_challenger(trained, capsys, monkeypatch):
    monkeypatch.chdir(trained)
    before = segmentkit.load(trained / "models" / "sk-test").score(
        trained / "data" / "demo.parquet"
    )
    code, out, _ = run(["train"], capsys)
    assert code == 0 and "alias challenger" in out
    after = segmentkit.load(trained / "models" / "sk-test").score(trained / "data" / "demo.parquet")
    # The same scores; only the bundle version written in every row is new.
    assert before["model_version"].iloc[0] != after["model_version"].iloc[0]
    pd.testing.assert_frame_equal(
        before.drop(columns="model_version"), after.drop(columns="model_version")
    )
    client = _client(trained)
    assert str(client.get_model_version_by_alias("sk-test", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("sk-test", "challenger").version) == "2"
    code, out, err = run(["train", "--promote"], capsys)
    assert code == 0 and "alias champion" in out
    # MLflow's own registration prints are dropped: the summary already says it.
    assert "registered model" not in err.lower() and "created version" not in err.lower()
    assert str(_client(trained).get_model_version_by_alias("sk-test", "champion").version) == "3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["score", "--model", "nowhere", "--events", "data/demo.parquet", "--out", "s.csv"],
            "no model bundle at nowhere",
        ),
        (
            [
                "score",
                "--model",
                "models:/unknown-model@champion",
                "--events",
                "data/demo.parquet",
                "--out",
                "s.csv",
            ],
            "cannot load model models:/unknown-model@champion",
        ),
        (
            [
                "score",
                "--model",
                "models/sk-test",
                "--events",
                "data/demo.parquet",
                "--out",
                "s.xlsx",
            ],
            "expected a .parquet or .csv",
        ),
        (["train", "--events", "missing.parquet"], "events file not found"),
        (["train", "--as-of", "2020-01-01"], "no events left after cleaning"),
    ],
    ids=[
        "bad-path",
        "unknown-registered-model",
        "bad-output",
        "missing-events",
        "as-of-before-data",
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(trained, capsys, monkeypatch, args, message):
    monkeypatch.chdir(trained)
    code, _, err = run(args, capsys)
    assert code == 2, err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_tampered_bundle_is_refused_by_score(trained, capsys, monkeypatch, tmp_path):
    import shutil

    from segmentkit.bundle import live_version

    copy = tmp_path / "bundle"
    shutil.copytree(trained / "models" / "sk-test", copy)
    target = live_version(copy) / "segmenter.skops"
    target.write_bytes(target.read_bytes()[:-100])
    monkeypatch.chdir(trained)
    code, _, err = run(
        ["score", "--model", str(copy), "--events", "data/demo.parquet", "--out", "s.csv"], capsys
    )
    assert code == 2
    assert "does not match its checksum" in err


def test_score_refuses_a_mapping_that_reads_revenue_otherwise(trained, capsys, monkeypatch):
    # The model summed every row's revenue; a params.yaml naming revenue_events would not.
    monkeypatch.chdir(trained)
    (trained / "other.yaml").write_text("data:\n  columns: {revenue_events: [purchase, refund]}\n")
    args = ["score", "--model", "models/sk-test", "--events", "data/demo.parquet"]
    code, _, err = run([*args, "--params", "other.yaml", "--out", "other.csv"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(
        "error: data.columns.revenue_events: the model was trained with None, this mapping "
        "gives ['purchase', 'refund']"
    )
    assert not (trained / "other.csv").exists()


def test_chunked_scoring_matches_scikit_learn_exactly(trained, monkeypatch):
    model = segmentkit.load(trained / "models" / "sk-test")
    features = segmentkit.build_features(
        trained / "data" / "demo.parquet", "2025-01-01", model.feature_config
    )
    whole = model.score_features(features)
    # Chunks of a prime size (ragged, scored side by side) change nothing.
    pd.testing.assert_frame_equal(model.score_features(features, chunk_size=97), whole)

    X = features[model.feature_names]
    np.testing.assert_array_equal(whole["segment_id"], model.segmenter.predict(X))
    # Reference: the same models with scikit-learn's own tree predictor.
    monkeypatch.setattr(
        propensity_module, "hgb_raw_predict", lambda est, data: est._raw_predict(data).ravel()
    )
    for model_ in model.propensity.values():
        np.testing.assert_array_equal(whole[model_.output_name], model_.predict(X))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_scoring_a_non_finite_feature_names_it(trained, bad):
    model = segmentkit.load(trained / "models" / "sk-test")
    features = segmentkit.build_features(
        trained / "data" / "demo.parquet", "2025-01-01", model.feature_config
    )
    features.loc[5, "recency_days"] = bad
    with pytest.raises(ValueError, match="infinity|NaN"):
        model.score_features(features, chunk_size=100)
