"""A model file cannot run code: crafted skops archives are refused before anything runs."""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import skops
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from skops.io._protocol import PROTOCOL

from segmentkit.bundle import trust as trust_module
from segmentkit.bundle.trust import (
    TRUSTED_TYPES,
    check_segmenter,
    check_tree_predictors,
    file_types,
    load_trusted,
)
from segmentkit.errors import BundleError
from segmentkit.models.propensity import FAMILIES, PropensityModel
from segmentkit.models.segmentation import Segmenter


class NotAllowed:
    """A class no segmentkit model contains (as an attacker's object would be)."""

    def __init__(self):
        self.payload = [1, 2, 3]


def _node(loader, module, cls, **extra):
    return {"__loader__": loader, "__module__": module, "__class__": cls, **extra}


def _json(value):
    return _node(
        "JsonNode", "builtins", type(value).__name__, content=json.dumps(value), is_json=True
    )


def _list(items):
    return _node("ListNode", "builtins", "list", content=items)


def _call_node(module, name, *args):
    """A node skops builds by calling ``module.name(*args)`` (the way loss objects are stored)."""
    return _node(
        "LossNode",
        module,
        name,
        __reduce__={"args": _node("TupleNode", "builtins", "tuple", content=list(args))},
        content=_node("DictNode", "builtins", "dict", content={}, key_types=_list([])),
    )


def _archive(path, root):
    with zipfile.ZipFile(path, "w") as archive:
        schema = {**root, "protocol": PROTOCOL, "_skops_version": skops.__version__}
        archive.writestr("schema.json", json.dumps(schema))
    return path


def _touch_command(marker):
    return _list([_json(sys.executable), _json("-c"), _json(f"open({str(marker)!r}, 'w')")])


def test_function_call_that_would_create_a_file_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    crafted = _archive(
        tmp_path / "m.skops",
        _call_node("sklearn.utils._testing", "check_output", _touch_command(marker)),
    )
    with pytest.raises(BundleError, match=r"sklearn\.utils\._testing\.check_output"):
        load_trusted(crafted)
    assert not marker.exists()
    # The archive is a real attack: trusting what skops reports (the old prefix rule
    # trusted every sklearn.* name) runs the command.
    sio.load(crafted, trusted=sio.get_untrusted_types(file=crafted))
    assert marker.exists()


def test_function_re_exported_by_a_trusted_module_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    crafted = _archive(
        tmp_path / "m.skops", _call_node("sklearn.datasets._lfw", "remove", _json(str(victim)))
    )
    with pytest.raises(BundleError, match=r"sklearn\.datasets\._lfw\.remove"):
        load_trusted(crafted)
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize(
    ("obj", "named"),
    [
        # even a harmless numpy function is a function
        (FunctionTransformer(np.arcsinh), r"FunctionNode numpy\.arcsinh"),
        # a builtin function is stored as a "type" node: refused because it is no listed class
        (Pipeline([("f", FunctionTransformer(os.remove))]), r"posix\.remove"),
    ],
    ids=["numpy-function", "builtin-function-in-pipeline"],
)
def test_functions_are_never_trusted(tmp_path, obj, named):
    path = tmp_path / "m.skops"
    sio.dump(obj, path)
    with pytest.raises(BundleError, match=named):
        load_trusted(path)


def test_unknown_class_is_refused(tmp_path):
    crafted = _archive(tmp_path / "m.skops", _node("ObjectNode", "subprocess", "Popen"))
    with pytest.raises(BundleError, match=r"subprocess\.Popen"):
        load_trusted(crafted)


def test_nested_unknown_object_is_refused(tmp_path):
    path = tmp_path / "m.skops"
    sio.dump({"outer": [{"inner": (1, NotAllowed())}]}, path)
    with pytest.raises(BundleError, match=r"NotAllowed"):
        load_trusted(path)


def test_random_generator_naming_a_function_is_refused(tmp_path):
    path = tmp_path / "m.skops"
    sio.dump(np.random.default_rng(0), path)
    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
    bit_generator = schema["content"]["bit_generator"]["content"]["bit_generator"]
    assert json.loads(bit_generator["content"]) == "PCG64"
    bit_generator["content"] = json.dumps("seed")  # numpy.random.seed would be called
    crafted = tmp_path / "crafted.skops"
    with zipfile.ZipFile(crafted, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    with pytest.raises(BundleError, match=r"numpy\.random\.seed"):
        load_trusted(crafted)


def test_not_a_skops_file_is_refused(tmp_path):
    path = tmp_path / "m.skops"
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(BundleError, match="not a readable skops file"):
        load_trusted(path)


def test_every_trusted_name_is_a_class():
    for name in TRUSTED_TYPES:
        module, _, attr = name.rpartition(".")
        obj = getattr(importlib.import_module(module), attr)
        assert isinstance(obj, type), f"{name} is not a class"


def _features(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "recency_days": rng.exponential(20, n),
            "active_days_total": rng.poisson(3, n).astype(float),
            "revenue_total": rng.gamma(1.0, 30.0, n) * (rng.random(n) < 0.5),
            "events_30d": rng.poisson(5, n).astype(float),
            "tenure_days": rng.uniform(30, 200, n),
            # BG/NBD inputs take a passthrough branch in the logistic family.
            "bgnbd_log_odds_active": rng.normal(0, 1, n),
            "bgnbd_log_expected": rng.normal(0, 1, n),
        }
    )
    churn = (rng.random(n) < 1 / (1 + np.exp(2 - X["recency_days"] / 10))).astype(int)
    counts = rng.poisson(1 + X["events_30d"] / 5)
    return X, churn, counts


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["inactivity", "count"])
@pytest.mark.parametrize("calibration", ["sigmoid", "isotonic"])
def test_every_type_of_a_trained_propensity_model_is_trusted(family, kind, calibration):
    X, churn, counts = _features()
    snapshot = np.arange(len(X)) % 2
    extra = {}
    if family == "complement":  # the complement of a fitted event model (binary only)
        if kind == "count":
            pytest.skip("a complement model is binary")
        source = PropensityModel("s", "event", event="purchase", random_state=0, n_threads=1)
        extra["source"] = source.fit(X, 1 - churn, snapshot=snapshot)
    model = PropensityModel(
        "t",
        kind,
        event="purchase",
        family=family,
        calibration=calibration,
        random_state=0,
        n_threads=1,
        **extra,
    )
    model.fit(X, counts if kind == "count" else churn, snapshot=snapshot)
    found = file_types(sio.dumps(model))
    assert found <= TRUSTED_TYPES, sorted(found - TRUSTED_TYPES)


@pytest.mark.filterwarnings("ignore:hdbscan segments do not meet the rule")
@pytest.mark.parametrize("algorithm", ["kmeans", "gmm", "hdbscan"])
def test_every_type_of_a_fitted_segmenter_is_trusted(algorithm):
    X, _, _ = _features(300)
    segmenter = Segmenter(
        algorithm=algorithm,
        k=3 if algorithm != "hdbscan" else "auto",
        k_range=(2, 3),
        n_bootstrap=2,
        random_state=0,
    ).fit(X)
    found = file_types(sio.dumps(segmenter))
    assert found <= TRUSTED_TYPES, sorted(found - TRUSTED_TYPES)
    check_segmenter(sio.loads(sio.dumps(segmenter), trusted=sorted(found)))  # consistent


@pytest.fixture(scope="module")
def hgb_file(tmp_path_factory):
    """A saved boosted-tree propensity model and its training features."""
    X, churn, _ = _features()
    model = PropensityModel("t", "inactivity", family="hgb", random_state=0, n_threads=1)
    path = tmp_path_factory.mktemp("hgb") / "hgb.skops"
    sio.dump(model.fit(X, churn), path)
    return path, X


def test_trusted_model_round_trips(hgb_file):
    path, X = hgb_file
    loaded = load_trusted(path)
    assert isinstance(loaded, PropensityModel)
    expected = sio.load(path, trusted=sorted(TRUSTED_TYPES)).predict(X)
    np.testing.assert_allclose(loaded.predict(X), expected)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("left", 10**6, "left child index is out of range"),
        ("right", 0, "right child index is out of range"),  # points back: a cycle
        ("feature_idx", 99, "feature that does not exist"),
    ],
)
def test_out_of_range_tree_indices_are_refused(hgb_file, field, value, message):
    path, _ = hgb_file
    model = load_trusted(path)
    tree = model.estimator_._predictors[0][0]
    split = np.flatnonzero(~tree.nodes["is_leaf"].astype(bool))[0]
    tree.nodes[field][split] = value
    with pytest.raises(BundleError, match=message):
        check_tree_predictors(model)


def test_file_types_reads_bytes_without_building(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "schema.json",
            json.dumps({**_node("ObjectNode", "os", "system"), "protocol": PROTOCOL}),
        )
    assert file_types(buffer.getvalue()) == {"os.system"}


def test_compressed_member_is_refused_before_it_is_inflated(tmp_path):
    # A zip bomb: a small file whose member inflates to far more than its size on disk.
    path = tmp_path / "bomb.skops"
    schema = {**_list([]), "protocol": PROTOCOL, "_skops_version": skops.__version__}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", json.dumps(schema) + " " * (20 << 20))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(BundleError, match=r"compressed member\(s\) \['schema.json'\]"):
        load_trusted(path)


def test_oversized_schema_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big.skops"
    schema = json.dumps({**_list([]), "protocol": PROTOCOL, "_skops_version": skops.__version__})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", schema + " " * 100)
    monkeypatch.setattr(trust_module, "MAX_SCHEMA_BYTES", len(schema) + 99)
    with pytest.raises(BundleError, match=r"big.skops: its schema.json is larger than"):
        file_types(path)
    monkeypatch.setattr(trust_module, "MAX_SCHEMA_BYTES", len(schema) + 100)
    assert file_types(path) == {"builtins.list"}


def test_deeply_nested_or_huge_number_schema_is_a_bundle_error(tmp_path):
    for name, text in [
        ("deep", "[" * 100_000 + "]" * 100_000),
        ("digits", '{"n": ' + "9" * 5000 + "}"),
    ]:
        path = tmp_path / f"{name}.skops"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("schema.json", text)
        with pytest.raises(BundleError, match="not a readable skops file"):
            file_types(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: setattr(s, "segment_names_", ["a"]), "segment_names_ should hold 3 values"),
        (lambda s: setattr(s, "segment_names_", [1, 2, 3]), "segment_names_ holds a value that"),
        (lambda s: setattr(s, "cluster_centers_", np.zeros((3, 1))), r"cluster_centers_ has shape"),
        (lambda s: setattr(s, "n_segments_", 10**12), r"expected \(1000000000000, "),
        (lambda s: setattr(s, "n_segments_", "3"), "n_segments_ is '3', not a positive count"),
        (lambda s: setattr(s, "segment_ids_", np.array([0, 1, 7])), "names a segment that does"),
        (lambda s: setattr(s, "scale_", np.ones(1)), "scale_ should hold"),
        (
            lambda s: setattr(s, "segment_names_", ["a", "b", "\x1b]0;pwned\x07"]),
            "segment_names_ holds control characters",
        ),
        (
            lambda s: setattr(s, "segment_descriptions_", ["a", "b\x1b[2J", "c"]),
            "segment_descriptions_ holds control characters",
        ),
    ],
    ids=[
        "names",
        "name-types",
        "centers",
        "huge-count",
        "count-type",
        "ids",
        "scale",
        "terminal-escape",
        "clear-screen",
    ],
)
def test_inconsistent_segmenter_is_refused(edit, message):
    X, _, _ = _features(200)
    segmenter = Segmenter(k=3, n_bootstrap=2, random_state=0).fit(X)
    check_segmenter(segmenter)
    edit(segmenter)
    with pytest.raises(BundleError, match=message):
        check_segmenter(segmenter)


def test_a_trusted_object_of_the_wrong_kind_is_refused():
    with pytest.raises(BundleError, match="holds a dict, not a Segmenter"):
        check_segmenter({"n_segments_": 3})


class _OpensFile:
    """Unpickling this calls ``open(path, "w")``: proof that a pickle ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_object_array_inside_a_model_file_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    payload = io.BytesIO()
    np.save(payload, np.array([_OpensFile(marker)], dtype=object), allow_pickle=True)
    schema = {
        **_node("NdArrayNode", "numpy", "ndarray", type="numpy", file="a.npy", __id__=1),
        "protocol": PROTOCOL,
        "_skops_version": skops.__version__,
    }
    crafted = tmp_path / "m.skops"
    with zipfile.ZipFile(crafted, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
        archive.writestr("a.npy", payload.getvalue())
    with pytest.raises(BundleError, match="cannot be loaded"):
        load_trusted(crafted)
    assert not marker.exists()
    # The payload is real: a loader allowing pickle runs it.
    np.load(io.BytesIO(payload.getvalue()), allow_pickle=True)
    assert marker.exists()
