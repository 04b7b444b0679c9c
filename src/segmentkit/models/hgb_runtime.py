"""Exact, fast scoring of fitted HistGradientBoosting models.

scikit-learn's tree predictor walks one tree over every row, one branchy node at a
time; on 1M users and a few hundred trees that is several seconds. Trees of bounded
depth (the propensity models use ``max_depth=5``) can instead be laid out as
*complete* binary trees in heap order: a row then takes exactly ``depth`` steps per
tree, each step is branch-free (``node = 2 node + 1 + (x > threshold)``), and eight
rows walked side by side keep the CPU busy while one row waits on memory.

The result is bit-identical to ``estimator._raw_predict``: the same comparisons in
float64 and the leaf values added per row in the same tree order, starting from the
same baseline (the tests check equality, not closeness). Anything the layout does not
cover (categorical splits, multi-class, trees deeper than :data:`MAX_COMPLETE_DEPTH`,
a scikit-learn whose private tree layout differs) falls back to scikit-learn.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from segmentkit.parallel import thread_map, usable_cores

__all__ = ["MAX_COMPLETE_DEPTH", "CompleteForest", "compile_forest", "raw_predict"]

# A complete tree of depth d has 2**d - 1 split slots; deeper trees waste memory and
# steps on padding, so they stay with scikit-learn's own predictor.
MAX_COMPLETE_DEPTH = 8
# Rows walked side by side by the NaN-free kernel (spelled out in its body).
_ROWS_PER_BLOCK = 8
# Below this many rows per thread, starting threads costs more than it saves.
_MIN_ROWS_PER_THREAD = 16_384


@dataclass(frozen=True)
class CompleteForest:
    """Trees of one model as complete binary trees in heap order.

    Slot ``i`` of a tree has children ``2i + 1`` (left, ``x <= threshold``) and
    ``2i + 2``. Leaves above the full depth are padded with never-taken splits
    (threshold ``+inf``, missing values left) whose subtrees all carry the leaf value.

    Attributes
    ----------
    feature, threshold, missing_right : ndarray of shape (n_trees * (2**depth - 1),)
        Split feature, threshold, and whether NaN goes right, per tree then slot.
    leaf_value : ndarray of shape (n_trees * 2**depth,)
        Value of each leaf slot, per tree.
    depth : int
        Depth of every (padded) tree.
    baseline : float
        Raw prediction before any tree.
    """

    feature: np.ndarray
    threshold: np.ndarray
    missing_right: np.ndarray
    leaf_value: np.ndarray
    depth: int
    baseline: float


def compile_forest(estimator: Any) -> CompleteForest | None:
    """Lay out a fitted single-output HistGradientBoosting model as complete trees.

    Parameters
    ----------
    estimator : HistGradientBoostingClassifier (binary) or HistGradientBoostingRegressor
        A fitted model.

    Returns
    -------
    CompleteForest or None
        ``None`` when the model is outside what the layout covers (see module docs).
    """
    try:
        baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64)
        preprocessor = getattr(estimator, "_preprocessor", None)
        # One predictor per iteration for binary and regression models.
        node_arrays = [tree.nodes for (tree,) in estimator._predictors]
    except (AttributeError, TypeError, ValueError):
        return None
    if preprocessor is not None or baseline.size != 1:
        return None
    needed = {"value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right"}
    needed |= {"is_leaf", "is_categorical", "depth"}
    if any(not needed <= set(nodes.dtype.names or ()) for nodes in node_arrays):
        return None
    if any(nodes["is_categorical"].any() for nodes in node_arrays):
        return None
    depth = max((int(nodes["depth"].max()) for nodes in node_arrays), default=0)
    if depth > MAX_COMPLETE_DEPTH:
        return None

    n_trees, n_slots = len(node_arrays), 2**depth - 1
    feature = np.zeros((n_trees, n_slots), dtype=np.intp)
    threshold = np.full((n_trees, n_slots), np.inf)
    missing_right = np.zeros((n_trees, n_slots), dtype=np.bool_)
    leaf_value = np.zeros((n_trees, n_slots + 1))
    for t, nodes in enumerate(node_arrays):
        stack = [(0, 0, 0)]  # (node, slot, depth of slot)
        while stack:
            node, slot, level = stack.pop()
            row = nodes[node]
            if row["is_leaf"]:
                # A leaf at `level` covers 2**(depth - level) leaf slots, contiguous
                # because padding always sends rows left.
                first = slot
                for _ in range(depth - level):
                    first = 2 * first + 1
                first -= n_slots
                leaf_value[t, first : first + 2 ** (depth - level)] = row["value"]
                continue
            feature[t, slot] = row["feature_idx"]
            threshold[t, slot] = row["num_threshold"]
            missing_right[t, slot] = not row["missing_go_to_left"]
            stack.append((int(row["left"]), 2 * slot + 1, level + 1))
            stack.append((int(row["right"]), 2 * slot + 2, level + 1))
    return CompleteForest(
        feature=feature.ravel(),
        threshold=threshold.ravel(),
        missing_right=missing_right.ravel(),
        leaf_value=leaf_value.ravel(),
        depth=depth,
        baseline=float(baseline.ravel()[0]),
    )


# Layouts of models seen so far, dropped with the model; keyed on the model and
# checked against its current list of trees, so a refit is never served stale trees.
_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled(estimator: Any) -> CompleteForest | None:
    trees = getattr(estimator, "_predictors", None)
    try:
        cached_trees, forest = _LAYOUTS[estimator]
    except (KeyError, TypeError):
        cached_trees, forest = None, None
    if trees is None or cached_trees is not trees:
        forest = compile_forest(estimator)
        with contextlib.suppress(TypeError):  # not weak-referenceable: compile per call
            _LAYOUTS[estimator] = (trees, forest)
    return forest


def raw_predict(estimator: Any, X: np.ndarray) -> np.ndarray:
    """Raw predictions (log-odds or log-mean) of a fitted HistGradientBoosting model.

    Parameters
    ----------
    estimator : fitted HistGradientBoostingClassifier (binary) or Regressor
    X : ndarray of shape (n_samples, n_features)
        Numeric features in the training column order.

    Returns
    -------
    ndarray of shape (n_samples,)
        Bit-identical to ``estimator._raw_predict(X).ravel()``.
    """
    forest = _compiled(estimator)
    if forest is None:
        return np.asarray(estimator._raw_predict(X), dtype=np.float64).ravel()
    # Row- or column-major both work: a block of eight rows touches a few cache lines
    # either way.
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has shape {X.shape}; the model expects {estimator.n_features_in_} features"
        )
    out = np.empty(X.shape[0])
    # Each thread fills its own rows of `out`; the kernels release the GIL.
    thread_map(lambda rows: _sum_forest(X, forest, *rows, out), _row_ranges(len(X), usable_cores()))
    return out


def _row_ranges(n_rows: int, n_parts: int) -> list[tuple[int, int]]:
    """Split rows into at most ``n_parts`` ranges, starts on multiples of 8."""
    n_parts = max(1, min(n_parts, n_rows // _MIN_ROWS_PER_THREAD))
    bounds = [n_rows * i // n_parts // _ROWS_PER_BLOCK * _ROWS_PER_BLOCK for i in range(n_parts)]
    return list(zip(bounds, [*bounds[1:], n_rows], strict=True))


def _sum_forest(X: np.ndarray, forest: CompleteForest, start: int, stop: int, out: np.ndarray):
    """Fill ``out[start:stop]``: blocks of eight when X has no NaN, then the rest."""
    trees = (forest.feature, forest.threshold, forest.leaf_value, forest.depth, forest.baseline)
    if not np.isnan(X[start:stop]).any():
        blocked = start + (stop - start) // _ROWS_PER_BLOCK * _ROWS_PER_BLOCK
        _sum_blocks_without_nan(X, *trees, start, blocked, out)
        start = blocked
    _sum_rows(X, *trees[:2], forest.missing_right, *trees[2:], start, stop, out)


def _kernel(function: Callable) -> Callable:
    """Compile ``function`` with numba, cached on disk where a cache can be written.

    numba refuses ``cache=True`` at import time when neither the package folder nor
    a user cache folder is writable (read-only containers); compile per process then.
    """
    try:
        return njit(nogil=True, cache=True)(function)
    except RuntimeError:
        return njit(nogil=True)(function)


@_kernel
def _sum_rows(X, feature, threshold, missing_right, leaf_value, depth, baseline, start, stop, out):
    """General kernel, one row at a time, NaN-aware: rows ``start..stop`` of ``X``."""
    n_slots = 2**depth - 1
    n_trees = leaf_value.shape[0] // (n_slots + 1)
    for i in range(start, stop):
        total = baseline
        for t in range(n_trees):
            offset = t * n_slots
            node = 0
            for _ in range(depth):
                x = X[i, feature[offset + node]]
                right = x > threshold[offset + node] or (
                    np.isnan(x) and missing_right[offset + node]
                )
                node = 2 * node + 1 + right
            total += leaf_value[t * (n_slots + 1) + node - n_slots]
        out[i] = total


@_kernel
def _sum_blocks_without_nan(X, feature, threshold, leaf_value, depth, baseline, start, stop, out):
    """NaN-free kernel: rows ``start..stop`` (8 apart), eight rows side by side.

    The eight walks are spelled out as scalars so that they live in registers and
    their memory loads overlap; a loop over a small array would serialize them.
    """
    n_slots = 2**depth - 1
    n_trees = leaf_value.shape[0] // (n_slots + 1)
    for s in range(start, stop, 8):
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = baseline
        for t in range(n_trees):
            o = t * n_slots
            n0 = n1 = n2 = n3 = n4 = n5 = n6 = n7 = 0
            for _ in range(depth):
                n0 = 2 * n0 + 1 + (X[s, feature[o + n0]] > threshold[o + n0])
                n1 = 2 * n1 + 1 + (X[s + 1, feature[o + n1]] > threshold[o + n1])
                n2 = 2 * n2 + 1 + (X[s + 2, feature[o + n2]] > threshold[o + n2])
                n3 = 2 * n3 + 1 + (X[s + 3, feature[o + n3]] > threshold[o + n3])
                n4 = 2 * n4 + 1 + (X[s + 4, feature[o + n4]] > threshold[o + n4])
                n5 = 2 * n5 + 1 + (X[s + 5, feature[o + n5]] > threshold[o + n5])
                n6 = 2 * n6 + 1 + (X[s + 6, feature[o + n6]] > threshold[o + n6])
                n7 = 2 * n7 + 1 + (X[s + 7, feature[o + n7]] > threshold[o + n7])
            leaves = t * (n_slots + 1) - n_slots
            a0 += leaf_value[leaves + n0]
            a1 += leaf_value[leaves + n1]
            a2 += leaf_value[leaves + n2]
            a3 += leaf_value[leaves + n3]
            a4 += leaf_value[leaves + n4]
            a5 += leaf_value[leaves + n5]
            a6 += leaf_value[leaves + n6]
            a7 += leaf_value[leaves + n7]
        out[s] = a0
        out[s + 1] = a1
        out[s + 2] = a2
        out[s + 3] = a3
        out[s + 4] = a4
        out[s + 5] = a5
        out[s + 6] = a6
        out[s + 7] = a7
