"""The model travels to the executors as its bundle, saved once per model object."""

from __future__ import annotations

import gc

import pytest

pytest.importorskip("pyspark", reason="the Spark extra is not installed")

from segmentkit.config import load_config
from segmentkit.io.synth import generate_events
from segmentkit.training import train_model

pytestmark = pytest.mark.slow

PARAMS = """
segmentation:
  k: 3
  n_bootstrap: 2
  bootstrap_sample: 300
  silhouette_sample: 300
propensity:
  min_positives: 10
  targets:
    - {name: churn, kind: inactivity}
"""


def test_a_model_is_saved_once_to_ship_it_and_forgotten_with_it(tmp_path, monkeypatch):
    from segmentkit.spark import scoring

    (tmp_path / "params.yaml").write_text(PARAMS)
    path = tmp_path / "events.parquet"
    generate_events(300, 90, seed=2).events.to_parquet(path)
    model = train_model(load_config(tmp_path / "params.yaml"), str(path)).model
    saves = []
    save = scoring.save_bundle
    monkeypatch.setattr(scoring, "save_bundle", lambda m, p: saves.append(p) or save(m, p))

    files = scoring.bundle_files(model)
    assert scoring.bundle_files(model) is files
    assert len(saves) == 1
    # What the workers load goes through the bundle's checks (checksums, allowlist).
    shipped = scoring._worker_model(files)
    assert shipped.feature_names == model.feature_names
    assert "MANIFEST.sha256" in files

    key = id(model)
    del model
    gc.collect()
    assert key not in scoring._SHIPPED
