"""find_project: notebooks and scripts resolve paths from the project, not from their cwd."""

from __future__ import annotations

from pathlib import Path

import pytest

import segmentkit
from segmentkit.errors import ConfigError
from segmentkit.project import find_project

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    (root / "notebooks" / "deep").mkdir(parents=True)
    (root / "params.yaml").write_text(
        "data: {events: data/*.parquet}\n"
        "tracking: {registered_model: shop, models_dir: artefacts, tracking_uri: sqlite:///runs.db}\n"
    )
    return root


def test_found_from_a_subdirectory_and_paths_resolved_from_the_root(project, monkeypatch):
    monkeypatch.chdir(project / "notebooks" / "deep")
    monkeypatch.delenv("SEGMENTKIT_PROJECT", raising=False)
    found = find_project()
    assert found.root == project
    assert found.events == str(project / "data" / "*.parquet")
    assert found.model_path == project / "artefacts" / "shop"
    assert found.model_uri() == str(project / "artefacts" / "shop")
    assert found.model_uri("other/bundle") == str(project / "other" / "bundle")
    assert found.model_uri("models:/shop@champion") == "models:/shop@champion"
    assert found.model_uri("/abs/bundle") == "/abs/bundle"
    assert found.reports_dir == project / "reports"
    assert found.tracking_uri == f"sqlite:///{project / 'runs.db'}"


def test_explicit_directory_and_environment_variable(project, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert find_project(project / "notebooks").root == project
    monkeypatch.setenv("SEGMENTKIT_PROJECT", str(project))
    assert find_project().root == project


def test_defaults_without_params_values(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    found = find_project(tmp_path)
    assert found.events == str(tmp_path / "data" / "demo_events.parquet")  # the demo log
    assert found.model_path == tmp_path / "models" / "segmentkit-demo"
    assert found.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert find_project(tmp_path).tracking_uri == "http://tracking:5000"


def test_falls_back_to_the_checkout_segmentkit_runs_from(tmp_path, monkeypatch):
    if not (Path(segmentkit.__file__).resolve().parents[2] / "params.yaml").is_file():
        pytest.skip("segmentkit is not imported from a source checkout")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGMENTKIT_PROJECT", raising=False)
    assert find_project().root == Path(segmentkit.__file__).resolve().parents[2]


def test_no_project_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no params.yaml found in .* pass the project directory"):
        find_project(tmp_path)


def test_an_event_log_uri_is_kept_as_it_is(tmp_path):
    (tmp_path / "params.yaml").write_text("data: {events: 's3://bucket/events/*.parquet'}\n")
    assert find_project(tmp_path).events == "s3://bucket/events/*.parquet"
