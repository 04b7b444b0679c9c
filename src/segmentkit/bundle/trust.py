"""What a model file may contain: an exact list of classes, checked before anything is built.

A skops file describes objects by ``module.name`` and skops imports and calls
what it names when it builds them. A name prefix such as ``sklearn.`` is no
protection: scikit-learn modules re-export functions such as ``subprocess``'s
``check_output`` and ``os.remove``, and skops builds some nodes by *calling* the
named object with arguments read from the file. The file's sha256 manifest does
not help either, since whoever can write the bundle can rewrite it.

So segmentkit admits an object only when

- every node of the file is of a kind that builds data or an instance
  (:data:`ALLOWED_NODE_KINDS`): no function, method, ``functools.partial`` or
  ``operator`` node is ever accepted, whatever it names;
- every ``module.name`` the file mentions, including the bit generator of a
  random generator, is on :data:`TRUSTED_TYPES`, a list of exact class names kept
  here in code and never read from the file;
- after building, boosted-tree node arrays index only nodes and features that
  exist (scikit-learn's tree predictor does not check its indices, so a crafted
  array could read memory out of bounds), and a segmenter's fitted arrays agree
  in size (:func:`check_segmenter`).

Anything else raises :class:`~segmentkit.errors.BundleError` naming the type.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from segmentkit.errors import BundleError

__all__ = [
    "ALLOWED_NODE_KINDS",
    "TRUSTED_TYPES",
    "check_segmenter",
    "check_tree_predictors",
    "file_types",
    "load_trusted",
]

#: skops node kinds that build plain data or an instance of a listed class.
#: Absent on purpose: FunctionNode, MethodNode, PartialNode, OperatorFuncNode,
#: ReduceNode and TreeNode (they call or return a named object).
ALLOWED_NODE_KINDS = frozenset(
    {
        "CachedNode",
        "DictNode",
        "JsonNode",
        "ListNode",
        "LossNode",  # calls the named class; only the two loss classes below are listed
        "NdArrayNode",
        "ObjectNode",
        "RandomGeneratorNode",
        "SliceNode",
        "TupleNode",
        "TypeNode",
    }
)

_BUILTIN_TYPES = (
    "builtins.bool",
    "builtins.dict",
    "builtins.float",
    "builtins.int",
    "builtins.list",
    "builtins.slice",
    "builtins.str",
    "builtins.tuple",
)

_NUMPY_TYPES = (
    "numpy.ndarray",
    "numpy.bool",
    "numpy.float32",
    "numpy.float64",
    "numpy.int8",
    "numpy.int16",
    "numpy.int32",
    "numpy.int64",
    "numpy.uint8",
    "numpy.uint16",
    "numpy.uint32",
    "numpy.uint64",
    "numpy.random._generator.Generator",
    "numpy.random.PCG64",
)

# What segmentkit's own models are made of (see tests/bundle/test_trust.py, which
# fails when a trained bundle holds a type missing here).
_SKLEARN_TYPES = (
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfPoissonLoss",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.LogLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.linear_model._glm.glm.PoissonRegressor",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.mixture._gaussian_mixture.GaussianMixture",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    # ColumnTransformer turns "passthrough" into an identity FunctionTransformer. Its
    # `func` would be a function node or a function named as a type: never admitted.
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.preprocessing._label.LabelEncoder",
)

_SEGMENTKIT_TYPES = (
    "segmentkit.models.propensity.PropensityModel",
    "segmentkit.models.segmentation.Segmenter",
    "segmentkit.models.transforms.ArcsinhTransformer",
    "segmentkit.models.transforms.Log1pTransformer",
)

#: Exact ``module.name`` of every class a segmentkit model file may contain.
TRUSTED_TYPES = frozenset(_BUILTIN_TYPES + _NUMPY_TYPES + _SKLEARN_TYPES + _SEGMENTKIT_TYPES)


def _schema_nodes(schema: Any) -> Iterator[dict[str, Any]]:
    """Every node of a skops schema (a dict with a ``__loader__``), however deeply nested."""
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item or "__module__" in item or "__class__" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _bit_generator_name(node: dict[str, Any]) -> str | None:
    """Name of the bit generator class a RandomGeneratorNode makes skops call."""
    try:
        raw = node["content"]["bit_generator"]["content"]["bit_generator"]["content"]
        return str(json.loads(raw))
    except (KeyError, TypeError, ValueError):
        return None


#: Largest ``schema.json`` read: it describes the objects (about 300 KB for a boosted
#: model of 200 trees), its arrays are members of their own; parsed JSON takes several
#: times its size in memory.
MAX_SCHEMA_BYTES = 64 << 20


def _check_stored(archive: zipfile.ZipFile, name: str) -> None:
    """Refuse compressed members: a bundle's skops files are written uncompressed.

    A compressed member is read by inflating it, so a small file could expand to
    gigabytes in memory (a zip bomb) before any type is checked. Stored members
    take exactly their size on disk.
    """
    compressed = sorted(
        info.filename for info in archive.infolist() if info.compress_type != zipfile.ZIP_STORED
    )
    if compressed:
        raise BundleError(
            f"{name} holds compressed member(s) {compressed[:5]}; segmentkit writes model "
            "files uncompressed and refuses others (a compressed member could expand without "
            "bound)"
        )


def file_types(file: str | Path | bytes) -> set[str]:
    """Every ``module.name`` a skops file would import, by node kind (nothing is built).

    Parameters
    ----------
    file : str, Path or bytes
        The skops file, or its content.

    Returns
    -------
    set of str
        ``"module.name"`` strings, prefixed by ``"<NodeKind> "`` for nodes whose kind
        is not in :data:`ALLOWED_NODE_KINDS`.

    Raises
    ------
    BundleError
        The file is not a readable skops archive, or has a compressed member.
    """
    source = io.BytesIO(file) if isinstance(file, bytes) else file
    name = "skops data" if isinstance(file, bytes) else Path(file).name
    try:
        with zipfile.ZipFile(source) as archive:
            _check_stored(archive, name)
            if archive.getinfo("schema.json").file_size > MAX_SCHEMA_BYTES:
                raise BundleError(
                    f"{name}: its schema.json is larger than {MAX_SCHEMA_BYTES:,} bytes; "
                    "segmentkit's model files hold far smaller ones: refusing to read it"
                )
            schema = json.loads(archive.read("schema.json"))
    except (OSError, KeyError, ValueError, RecursionError, zipfile.BadZipFile) as exc:
        # ValueError also covers integers too long to parse; RecursionError, nesting too deep.
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise BundleError(f"{name} is not a readable skops file: {reason}") from None
    found: set[str] = set()
    for node in _schema_nodes(schema):
        kind = node.get("__loader__")
        module, cls = node.get("__module__"), node.get("__class__")
        if not isinstance(module, str) or not isinstance(cls, str):
            raise BundleError(f"{name} has a node without a type name: refusing to load it")
        type_name = f"{module}.{cls}"
        found.add(type_name if kind in ALLOWED_NODE_KINDS else f"{kind} {type_name}")
        if kind == "RandomGeneratorNode":
            bit_generator = _bit_generator_name(node)
            found.add(f"numpy.random.{bit_generator}" if bit_generator else "unnamed bit generator")
    return found


def _refused(found: set[str]) -> list[str]:
    return sorted(t for t in found if t not in TRUSTED_TYPES)


def load_trusted(file: str | Path) -> Any:
    """Load one skops file if every type it names is trusted, then check its trees.

    Parameters
    ----------
    file : str or Path
        A ``.skops`` file of a bundle (its checksum already verified).

    Returns
    -------
    object
        The estimator the file holds.

    Raises
    ------
    BundleError
        The file names a type outside :data:`TRUSTED_TYPES`, holds a function or
        method node, cannot be read, or holds malformed tree arrays.
    """
    import skops.io as sio

    path = Path(file)
    found = file_types(path)
    refused = _refused(found)
    if refused:
        raise BundleError(
            f"{path.name} holds object type(s) segmentkit does not load: {refused} "
            "(only an exact list of classes is trusted; functions never are)"
        )
    try:
        # skops audits the file again against the same names; nothing outside them is built.
        obj = sio.load(path, trusted=sorted(found))
    except Exception as exc:  # skops raises several types for a damaged archive
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(f"{path.name} cannot be loaded: {message}") from None
    check_tree_predictors(obj, path.name)
    return obj


def _tree_predictors(obj: Any, seen: set[int] | None = None) -> Iterator[tuple[Any, int | None]]:
    """Yield (TreePredictor, n_features) of every boosted-tree model inside ``obj``."""
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    predictors = getattr(obj, "_predictors", None)
    if isinstance(predictors, list):
        n_features = getattr(obj, "n_features_in_", None)
        for row in predictors:
            for tree in row if isinstance(row, list) else [row]:
                if not isinstance(tree, TreePredictor):
                    raise BundleError(f"boosted trees hold a {type(tree).__name__}, not a tree")
                yield tree, n_features
    children: list[Any] = []
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, list | tuple):
        children = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type | np.ndarray):
        children = list(vars(obj).values())
    for child in children:
        if isinstance(child, dict | list | tuple) or hasattr(child, "__dict__"):
            yield from _tree_predictors(child, seen)


def check_tree_predictors(obj: Any, where: str = "model") -> None:
    """Refuse boosted-tree node arrays whose indices point outside the tree or the features.

    scikit-learn follows ``left``/``right`` and ``feature_idx`` without bounds checks
    at prediction time; a loaded file must not be able to steer them out of range.

    Raises
    ------
    BundleError
        A child index is out of range or does not point forward (a cycle), a split
        feature is out of range, or a categorical split has no bitset.
    """
    for tree, n_features in _tree_predictors(obj):
        nodes = tree.nodes
        names = set(getattr(getattr(nodes, "dtype", None), "names", None) or ())
        if not isinstance(nodes, np.ndarray) or not {"left", "right", "feature_idx"} <= names:
            raise BundleError(f"{where}: a boosted tree has malformed node arrays")
        size = nodes.shape[0]
        split = ~nodes["is_leaf"].astype(bool)
        index = np.arange(size)
        for side in ("left", "right"):
            child = nodes[side][split].astype(np.int64)
            if child.size and (
                child.min() < 0 or child.max() >= size or np.any(child <= index[split])
            ):
                raise BundleError(f"{where}: a boosted tree's {side} child index is out of range")
        features = nodes["feature_idx"][split].astype(np.int64)
        limit = n_features if isinstance(n_features, int | np.integer) else None
        if features.size and (features.min() < 0 or (limit and features.max() >= limit)):
            raise BundleError(f"{where}: a boosted tree splits on a feature that does not exist")
        categorical = split & nodes["is_categorical"].astype(bool)
        if categorical.any():
            bitsets = np.asarray(tree.raw_left_cat_bitsets)
            idx = nodes["bitset_idx"][categorical].astype(np.int64)
            if idx.min() < 0 or idx.max() >= bitsets.shape[0]:
                raise BundleError(
                    f"{where}: a boosted tree's category bitset index is out of range"
                )


#: C0 and C1 control characters (ESC starts terminal escape sequences).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _size(obj: Any, name: str, where: str) -> int:
    value = getattr(obj, name, None)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise BundleError(f"{where}: {name} is {value!r}, not a positive count")
    return int(value)


def _length(obj: Any, name: str, expected: int, where: str) -> Any:
    value = getattr(obj, name, None)
    if isinstance(value, np.ndarray):
        length = value.shape[0] if value.ndim == 1 else None
    else:
        length = len(value) if isinstance(value, list | tuple) else None
    if length != expected:
        raise BundleError(f"{where}: {name} should hold {expected} values, not {length}")
    return value


def check_segmenter(obj: Any, where: str = "segmenter") -> None:
    """Refuse a segmenter whose fitted arrays disagree with each other.

    A file of trusted classes can still hold a segment name list shorter than
    the segments, or centroids of the wrong width; scoring would then fail deep
    inside numpy or Arrow (or index out of step). Checked once, after loading.

    Raises
    ------
    BundleError
        ``obj`` is not a :class:`~segmentkit.models.segmentation.Segmenter`, or a
        fitted attribute has the wrong size, shape or range.
    """
    from sklearn.mixture import GaussianMixture

    from segmentkit.models.segmentation import Segmenter

    if not isinstance(obj, Segmenter):
        raise BundleError(f"{where} holds a {type(obj).__name__}, not a Segmenter")
    n_features = _size(obj, "n_features_in_", where)
    n_segments = _size(obj, "n_segments_", where)
    for name in ("feature_names_in_", "feature_mask_", "log_columns_", "center_", "scale_"):
        _length(obj, name, n_features, where)
    used = int(np.count_nonzero(np.asarray(obj.feature_mask_, dtype=bool)))
    centers = getattr(obj, "cluster_centers_", None)
    if not isinstance(centers, np.ndarray) or centers.shape != (n_segments, used):
        shape = getattr(centers, "shape", None)
        raise BundleError(
            f"{where}: cluster_centers_ has shape {shape}, expected ({n_segments}, {used})"
        )
    for name in (
        "segment_names_",
        "segment_descriptions_",
        "segment_kinds_",
        "segment_sizes_",
        "segment_stability_",
    ):
        _length(obj, name, n_segments, where)
    for name in ("segment_names_", "segment_descriptions_", "segment_kinds_"):
        texts = getattr(obj, name)
        if not all(isinstance(text, str) for text in texts):
            raise BundleError(f"{where}: {name} holds a value that is not text")
        if any(_CONTROL.search(text) for text in texts):
            # Names are printed to terminals: an escape sequence could rewrite the screen.
            raise BundleError(f"{where}: {name} holds control characters")
    ids = np.asarray(getattr(obj, "segment_ids_", None))
    if ids.ndim != 1 or ids.dtype.kind not in "iu" or ids.size == 0:
        raise BundleError(f"{where}: segment_ids_ is not a list of segment ids")
    if ids.min() < 0 or ids.max() >= n_segments:
        raise BundleError(f"{where}: segment_ids_ names a segment that does not exist")
    mixture = getattr(obj, "mixture_", None)
    if mixture is not None:
        means = getattr(mixture, "means_", None)
        if not isinstance(mixture, GaussianMixture) or getattr(means, "shape", None) != (
            ids.size,
            used,
        ):
            raise BundleError(f"{where}: mixture_ does not match the segments and features")
