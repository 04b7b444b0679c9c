"""Bundle persistence: checksums, trusted types, entries, versions, atomic saves."""

import json
import os
import sys
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
import skops
from skops.io._protocol import PROTOCOL

from segmentkit.api import load
from segmentkit.bundle import SegmentationModel, live_version, load_bundle, save_bundle
from segmentkit.bundle import storage as bundle_module
from segmentkit.bundle.metadata import BundleMetadata
from segmentkit.bundle.storage import CURRENT, MANIFEST, METADATA, stage_version
from segmentkit.cli import main
from segmentkit.config import FeatureConfig, load_config
from segmentkit.errors import BundleError, ConfigError
from segmentkit.models.segmentation import Segmenter


class NotAllowed:
    """A type outside the trusted list (as an attacker's object would be)."""

    def __init__(self):
        self.payload = [1, 2, 3]


def _model(seed=0, propensity=None):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(60, 2)), columns=["recency_days", "events_total"])
    return SegmentationModel(
        segmenter=Segmenter(k=2, n_bootstrap=2, random_state=seed).fit(X),
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
    with pytest.raises(BundleError, match=r"does not load: \[.*NotAllowed"):
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
    import skops.io as sio  # the bundle module imports it when it saves

    real_dump = sio.dump

    def failing_dump(obj, file):
        calls["n"] += 1
        if calls["n"] == 2:
            real_dump(obj, file)
            with open(file, "r+b") as handle:  # a half-written file, then the crash
                handle.truncate(10)
            raise KeyboardInterrupt
        real_dump(obj, file)

    monkeypatch.setattr(sio, "dump", failing_dump)
    with pytest.raises(KeyboardInterrupt):
        save_bundle(_model(seed=2, propensity={"x": Segmenter(k=2)}), root)
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


def test_symlinked_file_is_refused(tmp_path):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    outside = tmp_path / "outside.skops"
    (live / "segmenter.skops").rename(outside)
    (live / "segmenter.skops").symlink_to(outside)
    with pytest.raises(BundleError, match="segmenter.skops is a symlink"):
        load_bundle(tmp_path / "m")


def test_symlinked_version_directory_is_refused(tmp_path):
    root = save_bundle(_model(), tmp_path / "m")
    live = live_version(root)
    elsewhere = tmp_path / "elsewhere"
    live.rename(elsewhere)
    live.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(BundleError, match="not a bundle version"):
        load_bundle(root)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    os.mkfifo(live / "extra")
    with pytest.raises(BundleError, match="extra is not a regular file"):
        load_bundle(tmp_path / "m")


def test_unlisted_subdirectory_is_refused(tmp_path):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    (live / "nested").mkdir()
    (live / "nested" / "payload.skops").write_bytes(b"x")
    with pytest.raises(BundleError, match="subdirectory nested is not in the manifest"):
        load_bundle(tmp_path / "m")


def test_manifest_naming_a_path_outside_the_directory_is_refused(tmp_path):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    text = (live / MANIFEST).read_text()
    (live / MANIFEST).write_text(text + f"{'0' * 64}  ..\n")
    with pytest.raises(BundleError, match="malformed manifest line"):
        load_bundle(tmp_path / "m")


def test_target_names_in_metadata_cannot_escape_the_directory(tmp_path):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    metadata = json.loads((live / "metadata.json").read_text())
    metadata["propensity_targets"] = ["../../evil"]
    (live / "metadata.json").write_text(json.dumps(metadata))
    _rewrite_manifest(live)
    with pytest.raises(BundleError, match=r"invalid propensity target name\(s\) \['../../evil'\]"):
        load_bundle(tmp_path / "m")


@pytest.mark.parametrize("name", ["Churn", "../x", "a b", "x/y", ""])
def test_target_names_are_validated_in_params(name):
    with pytest.raises(ConfigError, match="must be lowercase letters, digits"):
        load_config(overrides={"propensity": {"targets": [{"name": name, "kind": "inactivity"}]}})


def test_target_names_are_validated_before_saving(tmp_path):
    with pytest.raises(BundleError, match="target name"):
        save_bundle(_model(propensity={"../x": Segmenter(k=2)}), tmp_path / "m")
    assert not (tmp_path / "m" / CURRENT).exists()


def test_stale_pointer_files_are_cleaned(tmp_path):
    root = save_bundle(_model(seed=1), tmp_path / "m")
    stale = root / f".{CURRENT}.v-20200101T000000-000000000-1.tmp"
    stale.write_text("v-20200101T000000-000000000-1\n")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = root / f".{CURRENT}.v-20990101T000000-000000000-2.tmp"
    fresh.write_text("x\n")  # may belong to a save in progress
    save_bundle(_model(seed=2), root)
    assert not stale.exists()
    assert fresh.exists()


def test_staged_version_is_not_live(tmp_path):
    root = save_bundle(_model(seed=1), tmp_path / "m")
    staged = stage_version(_model(seed=2), root)
    assert staged.is_dir()
    assert load_bundle(root).metadata.data_fingerprint == "seed-1"


def _malicious_segmenter(marker):
    call = {
        "__loader__": "LossNode",
        "__module__": "sklearn.utils._testing",
        "__class__": "check_output",
        "__reduce__": {
            "args": {
                "__loader__": "TupleNode",
                "__module__": "builtins",
                "__class__": "tuple",
                "content": [
                    {
                        "__loader__": "ListNode",
                        "__module__": "builtins",
                        "__class__": "list",
                        "content": [
                            {
                                "__loader__": "JsonNode",
                                "__module__": "builtins",
                                "__class__": "str",
                                "content": json.dumps(text),
                                "is_json": True,
                            }
                            for text in (sys.executable, "-c", f"open({str(marker)!r}, 'w')")
                        ],
                    }
                ],
            }
        },
        "content": {
            "__loader__": "DictNode",
            "__module__": "builtins",
            "__class__": "dict",
            "content": {},
            "key_types": {
                "__loader__": "ListNode",
                "__module__": "builtins",
                "__class__": "list",
                "content": [],
            },
        },
    }
    return {**call, "protocol": PROTOCOL, "_skops_version": skops.__version__}


def test_malicious_bundle_with_a_rewritten_manifest_is_refused_by_the_cli(
    tmp_path, capsys, monkeypatch
):
    root = save_bundle(_model(), tmp_path / "m")
    live = live_version(root)
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(live / "segmenter.skops", "w") as archive:
        archive.writestr("schema.json", json.dumps(_malicious_segmenter(marker)))
    _rewrite_manifest(live)  # whoever can write the bundle can rewrite its manifest
    monkeypatch.chdir(tmp_path)
    events = tmp_path / "events.csv"
    events.write_text("user_id,timestamp,event\na,2024-01-01,view\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "--model", str(root), "--events", str(events), "--out", "s.csv"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and "sklearn.utils._testing.check_output" in err
    assert not marker.exists()


def _edit_metadata(live, edit):
    """Rewrite metadata.json with ``edit(raw_dict) -> str`` and re-sign the manifest."""
    raw = json.loads((live / METADATA).read_text())
    (live / METADATA).write_text(edit(raw))
    _rewrite_manifest(live)  # whoever can write the bundle can rewrite its manifest


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: json.dumps(m).replace(
                '"format_version": 2', '"format_version": ' + "9" * 5000
            ),
            "unreadable metadata.json: Exceeds the limit",
        ),
        (
            lambda m: json.dumps(m)[:-1] + ', "extra": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "unreadable metadata.json: nested too deeply",
        ),
        (
            lambda m: json.dumps({**m, "feature_config": {**m["feature_config"], "windows": [-7]}}),
            r"feature_config\.windows: expected one or more positive day counts",
        ),
        (
            lambda m: json.dumps({**m, "feature_config": {**m["feature_config"], "windows": []}}),
            r"feature_config\.windows: expected one or more positive day counts",
        ),
        (
            lambda m: json.dumps(
                {**m, "feature_config": {**m["feature_config"], "session_gap_minutes": 0}}
            ),
            r"feature_config\.session_gap_minutes: expected a positive number",
        ),
        (lambda m: json.dumps({**m, "as_of": "'; DROP"}), r"as_of: expected an ISO date"),
        (lambda m: json.dumps({**m, "as_of": None}), r"as_of: expected a string"),
        (lambda m: json.dumps({**m, "versions": []}), r"versions should map library names"),
        (
            lambda m: json.dumps({**m, "versions": {**m["versions"], "scikit-learn": 1}}),
            r"versions should map library names",
        ),
        (lambda m: json.dumps({**m, "format_version": "2"}), r"has format version '2'"),
        (
            lambda m: json.dumps({**m, "input_schema": {"columns": 5}}),
            r"input_schema\.columns: expected an object of role: column name",
        ),
        (
            lambda m: json.dumps({**m, "input_schema": {"key_events_seen": "purchase"}}),
            r"input_schema\.key_events_seen: expected a list of names",
        ),
        (
            lambda m: json.dumps({**m, "input_schema": {"event_shares": {"view": 2}}}),
            r"input_schema\.event_shares: expected an object of event name: share in \[0, 1\]",
        ),
        (
            lambda m: json.dumps({**m, "input_schema": {"event_shares": {"view": True}}}),
            r"input_schema\.event_shares: expected an object of event name: share in \[0, 1\]",
        ),
        (
            lambda m: json.dumps({**m, "input_schema": {"event_shares": ["view"]}}),
            r"input_schema\.event_shares: expected an object of event name: share in \[0, 1\]",
        ),
        (
            lambda m: json.dumps({**m, "model_version": "v1\x1b]0;pwned\x07"}),
            r"model_version 'v1\\x1b\]0;pwned\\x07' is not a bundle version name",
        ),
    ],
    ids=[
        "huge-integer",
        "deep-nesting",
        "negative-window",
        "no-window",
        "zero-gap",
        "as-of",
        "null",
        "versions-list",
        "version-number",
        "format-text",
        "schema-columns",
        "schema-events",
        "shares-above-one",
        "shares-boolean",
        "shares-list",
        "terminal-escape",
    ],
)
def test_hostile_metadata_with_a_rewritten_manifest_is_a_bundle_error(tmp_path, edit, message):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    _edit_metadata(live, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path / "m")


def test_manifest_must_list_the_metadata_and_only_bundle_files(tmp_path):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    (live / METADATA).unlink()
    _rewrite_manifest(live)
    with pytest.raises(BundleError, match="its manifest does not list metadata.json"):
        load_bundle(tmp_path / "m")

    live = live_version(save_bundle(_model(), tmp_path / "n"))
    (live / "model.pkl").write_bytes(b"\x80\x04K\x01.")  # listed, so not "unlisted"
    _rewrite_manifest(live)
    with pytest.raises(BundleError, match=r"lists file\(s\) \['model.pkl'\] a bundle does not"):
        load_bundle(tmp_path / "n")


@pytest.mark.parametrize("which", [CURRENT, MANIFEST])
def test_oversized_pointer_or_manifest_is_refused_without_reading_it_whole(tmp_path, which):
    root = save_bundle(_model(), tmp_path / "m")
    target = root / CURRENT if which == CURRENT else live_version(root) / MANIFEST
    limit = (
        bundle_module._MAX_POINTER_BYTES if which == CURRENT else bundle_module._MAX_MANIFEST_BYTES
    )
    with target.open("a") as handle:
        handle.write("x" * (limit + 1))
    with pytest.raises(BundleError, match=f"{which} is larger than {limit:,} bytes"):
        load_bundle(root)


@pytest.mark.parametrize("name", [METADATA, "segmenter.skops"])
def test_an_oversized_listed_file_is_refused_before_it_is_hashed(tmp_path, monkeypatch, name):
    live = live_version(save_bundle(_model(), tmp_path / "m"))
    size = (live / name).stat().st_size
    attribute = "_MAX_METADATA_BYTES" if name == METADATA else "_MAX_MODEL_FILE_BYTES"
    monkeypatch.setattr(bundle_module, attribute, size - 1)
    hashed = []
    real_sha256 = bundle_module._sha256
    monkeypatch.setattr(bundle_module, "_sha256", lambda f: hashed.append(f.name) or real_sha256(f))
    with pytest.raises(BundleError, match=f"{name} is larger than {size - 1:,} bytes"):
        load_bundle(tmp_path / "m")
    assert name not in hashed


def test_a_file_in_place_of_a_bundle_is_a_bundle_error(tmp_path):
    path = tmp_path / "model.skops"
    path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with pytest.raises(BundleError, match="not a segmentkit bundle"):
        load_bundle(path)


def _arrays(obj, seen=None):
    """Every numpy array and list reachable from ``obj``'s attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, list | tuple):
        yield obj
        for item in obj:
            yield from _arrays(item, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _arrays(item, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for item in vars(obj).values():
            yield from _arrays(item, seen)


def test_saved_bundle_holds_nothing_with_one_value_per_training_user(tmp_path):
    n_users = 173  # a count no other dimension of this model has
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(n_users, 2)), columns=["recency_days", "events_total"])
    segmenter = Segmenter(k=2, n_bootstrap=2, random_state=0).fit(X)
    model = SegmentationModel(
        segmenter=segmenter,
        propensity={},
        feature_config=FeatureConfig(windows=(7, 30)),
        metadata=BundleMetadata(as_of="2024-01-01", data_fingerprint="x"),
    )
    assert len(segmenter.labels_) == n_users  # in memory, for the training report
    loaded = load_bundle(save_bundle(model, tmp_path / "m"))
    per_user = [a for a in _arrays(loaded.segmenter) if len(a) == n_users]
    assert per_user == []
    assert hasattr(segmenter, "labels_")  # saving did not change the fitted model
    np.testing.assert_array_equal(loaded.segmenter.predict(X), segmenter.labels_)


def test_saved_params_hold_no_credentials_of_uris(tmp_path):
    model = _model()
    presigned = "https://host/events.parquet?X-Amz-Signature=s3cr3t"
    params = {"data": {"events": "s3://AKIA:s3cr3t@bucket/e/*.parquet"}, "paths": [presigned]}
    model.metadata = BundleMetadata(as_of="2024-01-01", params=params)
    live = live_version(save_bundle(model, tmp_path / "m"))
    text = (live / METADATA).read_text()
    assert "s3cr3t" not in text
    saved = load_bundle(tmp_path / "m").metadata.params
    assert saved == {
        "data": {"events": "s3://***@bucket/e/*.parquet"},
        "paths": ["https://host/events.parquet?***"],
    }


def test_trusted_objects_in_the_wrong_file_are_refused(tmp_path):
    other = _model(seed=1).segmenter
    save_bundle(_model(propensity={"x": other}), tmp_path / "m")
    with pytest.raises(BundleError, match="propensity-x.skops holds a Segmenter, not a Propensity"):
        load_bundle(tmp_path / "m")


def test_a_crafted_segmenter_with_too_few_names_is_refused_on_load(tmp_path):
    model = _model()
    model.segmenter.segment_names_ = model.segmenter.segment_names_[:1]
    save_bundle(model, tmp_path / "m")  # only trusted types, a valid manifest
    with pytest.raises(BundleError, match="segmenter.skops: segment_names_ should hold 2 values"):
        load_bundle(tmp_path / "m")
