"""Bundle persistence: checksums, allowlist, versions, atomic saves."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans

from segmentkit.api import load
from segmentkit.bundle import SegmentationModel, live_version, load_bundle, save_bundle
from segmentkit.bundle import storage as bundle_module
from segmentkit.bundle.metadata import BundleMetadata
from segmentkit.bundle.storage import CURRENT, MANIFEST, METADATA
from segmentkit.config import FeatureConfig
from segmentkit.errors import BundleError


class NotAllowed:
    """A type outside the allowlist (as an attacker's object would be)."""

    def __init__(self):
        self.payload = [1, 2, 3]


def _model(seed=0, propensity=None):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(60, 2)), columns=["recency_days", "events_total"])
    return SegmentationModel(
        segmenter=KMeans(n_clusters=2, n_init=2, random_state=seed).fit(X),
        propensity=propensity or {},
        feature_config=FeatureConfig(windows=(7, 30)),
        metadata=BundleMetadata(as_of="2024-01-01", data_fingerprint=f"seed-{seed}"),
    )


def _rewrite_manifest(directory):
    lines = [
        f"{bundle_module._sha256(p)}  {p.name}"
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST
    ]
    (directory / MANIFEST).write_text("\n".join(lines) + "\n")


def test_round_trip(tmp_path):
    model = _model()
    root = save_bundle(model, tmp_path / "m")
    loaded = load(root)
    X = pd.DataFrame({"recency_days": [0.1, -2.0], "events_total": [0.3, 1.0]})
    np.testing.assert_array_equal(loaded.segmenter.predict(X), model.segmenter.predict(X))
    assert loaded.metadata.data_fingerprint == "seed-0"
    assert loaded.metadata.format_version == bundle_module.FORMAT_VERSION
    assert loaded.feature_config == FeatureConfig(windows=(7, 30))
    assert loaded.metadata.versions["scikit-learn"]


def test_no_pickle_or_joblib_files(tmp_path):
    root = save_bundle(_model(), tmp_path / "m")
    names = {p.suffix for p in live_version(root).iterdir()}
    assert names <= {".skops", ".json", ".sha256"}


def test_modified_file_is_refused(tmp_path):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    data = bytearray((live / "segmenter.skops").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (live / "segmenter.skops").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="segmenter.skops does not match its checksum"):
        load_bundle(tmp_path / "m")


def test_truncated_file_is_refused(tmp_path):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    data = (live / "segmenter.skops").read_bytes()
    (live / "segmenter.skops").write_bytes(data[: len(data) // 3])
    with pytest.raises(BundleError, match="modified or truncated"):
        load_bundle(tmp_path / "m")


def test_metadata_edit_is_refused(tmp_path):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    meta = json.loads((live / METADATA).read_text())
    meta["as_of"] = "1999-01-01"
    (live / METADATA).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="metadata.json does not match its checksum"):
        load_bundle(tmp_path / "m")


def test_unlisted_and_missing_files_are_refused(tmp_path):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    (live / "extra.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(BundleError, match=r"\['extra.pkl'\] are not in the manifest"):
        load_bundle(tmp_path / "m")
    (live / "extra.pkl").unlink()
    (live / "segmenter.skops").unlink()
    with pytest.raises(BundleError, match="segmenter.skops is missing"):
        load_bundle(tmp_path / "m")


def test_unknown_object_type_is_refused_even_with_a_valid_manifest(tmp_path):
    save_bundle(_model(propensity={"x": NotAllowed()}), tmp_path / "m")
    with pytest.raises(BundleError, match=r"outside the allowlist: \[.*NotAllowed"):
        load_bundle(tmp_path / "m")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: m.update(format_version=99),
            "format version 99; this segmentkit reads version 2",
        ),
        (
            lambda m: m["versions"].update({"scikit-learn": "0.24.2"}),
            "saved with scikit-learn 0.24.2; installed is",
        ),
    ],
    ids=["format-version", "sklearn-version"],
)
def test_incompatible_versions_are_refused(tmp_path, edit, message):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    meta = json.loads((live / METADATA).read_text())
    edit(meta)
    (live / METADATA).write_text(json.dumps(meta))
    _rewrite_manifest(live)  # a genuine bundle from another version, not a tampered one
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path / "m")


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no model bundle at"):
        load_bundle(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="not a segmentkit bundle"):
        load_bundle(tmp_path / "empty")
    (tmp_path / "empty" / CURRENT).write_text("../../etc\n")
    with pytest.raises(BundleError, match="not a bundle version"):
        load_bundle(tmp_path / "empty")


def test_interrupted_save_keeps_the_previous_bundle(tmp_path, monkeypatch):
    root = tmp_path / "m"
    save_bundle(_model(seed=1), root)
    calls = {"n": 0}
    real_dump = bundle_module.sio.dump

    def failing_dump(obj, file):
        calls["n"] += 1
        if calls["n"] == 2:
            real_dump(obj, file)
            with open(file, "r+b") as handle:  # a half-written file, then the crash
                handle.truncate(10)
            raise KeyboardInterrupt
        real_dump(obj, file)

    monkeypatch.setattr(bundle_module.sio, "dump", failing_dump)
    with pytest.raises(KeyboardInterrupt):
        save_bundle(_model(seed=2, propensity={"x": KMeans(n_clusters=2)}), root)
    assert load_bundle(root).metadata.data_fingerprint == "seed-1"
    assert not list(root.glob(".v-*.partial"))


def test_crash_before_the_pointer_switch_keeps_the_previous_bundle(tmp_path, monkeypatch):
    root = tmp_path / "m"
    save_bundle(_model(seed=1), root)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(bundle_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(_model(seed=2), root)
    monkeypatch.undo()
    assert load_bundle(root).metadata.data_fingerprint == "seed-1"
    save_bundle(_model(seed=3), root)
    assert load_bundle(root).metadata.data_fingerprint == "seed-3"


def test_old_versions_are_pruned(tmp_path):
    root = tmp_path / "m"
    for seed in range(4):
        save_bundle(_model(seed=seed), root)
    versions = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("v-")]
    assert len(versions) == 2
    assert load_bundle(root).metadata.data_fingerprint == "seed-3"
    assert os.path.basename(live_version(root)) in {v.name for v in versions}
