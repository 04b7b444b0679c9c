"""MLflow runs a reviewer can read, against a real tracking server: train -> score -> refresh."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

# The server fixture lives with the other tracking tests (pytest's default import mode
# puts this folder on sys.path).
from test_tracking import mlflow_server  # noqa: F401 - a fixture

from segmentkit.cli import main
from segmentkit.drift.scenarios import steady_log
from segmentkit.tracking import run_name, synthetic_input_example

END = dt.date(2025, 1, 1)


def test_run_names():
    assert run_name("train", "2025-01-01", 4) == "train-2025-01-01-k4"
    assert run_name("refresh", "2025-01-01", 4) == "refresh-2025-01-01"


def test_input_example_is_synthetic_and_typed():
    from segmentkit.drift import build_feature_reference

    table = pd.DataFrame({"orders": [0, 1, 2, 3, 9], "revenue_total": [0.0, 5.5, 7.0, 9.0, 80.0]})
    reference = build_feature_reference(table, n_bins=2)
    example = synthetic_input_example(reference, {"orders": "long", "revenue_total": "double"})
    assert list(example["user_id"]) == ["example-1", "example-2", "example-3"]
    assert example["orders"].dtype == "int64"
    assert example["revenue_total"].is_monotonic_increasing


def _run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


@pytest.mark.server
@pytest.mark.slow
def test_train_score_refresh_against_a_tracking_server(
    mlflow_server,  # noqa: F811 - the fixture imported above
    tmp_path,
    monkeypatch,
    capsys,
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    steady_log(150, 180, 8, 30, END, seed=3).to_parquet(tmp_path / "events.parquet")
    (tmp_path / "params.yaml").write_text(
        "data: {events: events.parquet}\n"
        "segmentation: {k: 4}\n"
        "propensity:\n  min_positives: 20\n  targets: [{name: churn, kind: inactivity}]\n"
        "tracking: {registered_model: sk-team}\n"
    )
    assert _run(["train", "--as-of", "2024-12-02"]) == 0
    assert (
        _run(
            [
                "score",
                "--model",
                "models:/sk-team@champion",
                "--as-of",
                "2025-01-01",
                "--out",
                "s.csv",
            ]
        )
        == 0
    )
    assert len(pd.read_csv("s.csv")) > 0
    code = _run(["refresh", "--model", "models:/sk-team@champion", "--as-of", "2025-01-01"])
    out = capsys.readouterr().out
    assert code in (0, 3), out
    assert "recommendation: " in out
    assert not (tmp_path / "mlflow.db").exists()  # everything went to the server

    mlflow.set_tracking_uri(mlflow_server)
    client = MlflowClient()
    champion = client.get_model_version_by_alias("sk-team", "champion")
    challenger = client.get_model_version_by_alias("sk-team", "challenger")
    train_run, refresh_run = client.get_run(champion.run_id), client.get_run(challenger.run_id)

    assert train_run.info.run_name == "train-2024-12-02-k4"
    assert refresh_run.info.run_name == "refresh-2025-01-01"
    import segmentkit

    for run, version in ((train_run, champion), (refresh_run, challenger)):
        tags = run.data.tags
        assert tags["segmentkit.version"] == segmentkit.__version__
        assert tags["segmentkit.registered_version"] == str(version.version)
        assert tags["segmentkit.report"].endswith("reports/report.html")
        assert "reports/report.html" in tags["mlflow.note.content"]
        assert run.data.params["data.events"] == "events.parquet"  # not None
        (dataset_input,) = run.inputs.dataset_inputs
        dataset = dataset_input.dataset
        assert json.loads(dataset.source)["uri"] == "events.parquet"
        assert len(dataset.digest) > 8
        assert not dataset.profile  # source and digest only: no rows, no profile
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
        assert "reports/report.html" in artifacts
    assert train_run.data.tags["segmentkit.as_of"] == "2024-12-02"
    assert "reports/drift.md" in {
        a.path for a in client.list_artifacts(refresh_run.info.run_id, "reports")
    }

    model_info = mlflow.models.get_model_info(f"models:/sk-team/{champion.version}")
    signature = model_info.signature
    assert "recency_days" in signature.inputs.input_names()
    outputs = signature.outputs.input_names()
    assert {"user_id", "segment_id", "segment_name", "p_churn"} <= set(outputs)
    example_dir = Path(mlflow.artifacts.download_artifacts(f"models:/sk-team/{champion.version}"))
    example = json.loads((example_dir / "input_example.json").read_text())
    rows = example.get("data") or example.get("dataframe_split", {}).get("data")
    user_col = (example.get("columns") or example["dataframe_split"]["columns"]).index("user_id")
    assert all(str(row[user_col]).startswith("example-") for row in rows)  # no real user


def test_input_example_ids_are_integers_when_the_log_ids_are():
    from segmentkit.drift import build_feature_reference

    reference = build_feature_reference(pd.DataFrame({"orders": [0, 1, 2, 3, 9]}), n_bins=2)
    example = synthetic_input_example(reference, {"user_id": "long", "orders": "long"})
    assert example["user_id"].tolist() == [-1, -2, -3]
    assert example["user_id"].dtype == "int64"
