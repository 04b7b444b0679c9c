"""Complete-tree scoring of HistGradientBoosting models: bit-identical to scikit-learn."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from segmentkit.models import hgb_runtime
from segmentkit.models.hgb_runtime import MAX_COMPLETE_DEPTH, compile_forest, raw_predict

# More than two threads' worth of rows, and not a multiple of the 8-row block.
N_SCORE = 2 * hgb_runtime._MIN_ROWS_PER_THREAD + 5


def _data(n, seed=0, nan_share=0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    X[:, 3] = rng.integers(0, 5, size=n)  # ties and repeated values
    if nan_share:
        X[rng.random(n) < nan_share, 1] = np.nan
    signal = X[:, 0] + np.nan_to_num(X[:, 1], nan=1.5) * X[:, 2] - 0.3 * X[:, 3]
    return X, signal


def _classifier(max_depth=4, seed=0, nan_share=0.0, **params):
    X, signal = _data(3000, seed, nan_share)
    y = (signal + np.random.default_rng(seed + 1).normal(size=len(X)) > 0).astype(int)
    return HistGradientBoostingClassifier(
        max_depth=max_depth, max_iter=30, random_state=0, **params
    ).fit(X, y)


def _regressor(max_depth=5, seed=0):
    X, signal = _data(3000, seed)
    y = np.random.default_rng(seed + 1).poisson(np.exp(0.4 * signal.clip(-3, 3)))
    return HistGradientBoostingRegressor(
        loss="poisson", max_depth=max_depth, max_iter=30, random_state=0
    ).fit(X, y)


def _reference(estimator, X):
    return estimator._raw_predict(X).ravel()


@pytest.mark.parametrize("max_depth", [1, 3, 5, MAX_COMPLETE_DEPTH])
def test_classifier_scores_are_bit_identical(max_depth):
    model = _classifier(max_depth=max_depth)
    X, _ = _data(N_SCORE, seed=5)
    assert compile_forest(model).depth == max_depth
    out = raw_predict(model, X)
    np.testing.assert_array_equal(out, _reference(model, X))
    np.testing.assert_array_equal(out, model.decision_function(X))


def test_poisson_regressor_scores_are_bit_identical():
    model = _regressor()
    X, _ = _data(N_SCORE, seed=6)
    np.testing.assert_array_equal(np.exp(raw_predict(model, X)), model.predict(X))


@pytest.mark.parametrize("layout", ["C", "F"])
def test_memory_layout_does_not_matter(layout):
    model = _classifier()
    X, _ = _data(1001, seed=7)
    np.testing.assert_array_equal(
        raw_predict(model, np.asarray(X, order=layout)), _reference(model, X)
    )


@pytest.mark.parametrize("train_nan_share", [0.0, 0.2])
def test_missing_values_follow_the_learned_direction(train_nan_share):
    # Trained with NaN, each split learned where missing values go; trained without,
    # scikit-learn sends them to the larger child. Both must be reproduced.
    model = _classifier(nan_share=train_nan_share)
    directions = {
        bool(node["missing_go_to_left"])
        for (tree,) in model._predictors
        for node in tree.nodes
        if not node["is_leaf"]
    }
    assert directions == {True, False}
    X, _ = _data(N_SCORE, seed=8, nan_share=0.3)
    np.testing.assert_array_equal(raw_predict(model, X), _reference(model, X))


def test_trees_without_splits():
    X = np.ones((200, 2))
    y = np.r_[np.zeros(100), np.ones(100)]
    model = HistGradientBoostingClassifier(max_iter=3).fit(X, y)
    forest = compile_forest(model)
    assert forest.depth == 0
    np.testing.assert_array_equal(raw_predict(model, X), _reference(model, X))


def test_deep_trees_fall_back_to_scikit_learn():
    model = _classifier(max_depth=None, max_leaf_nodes=255, min_samples_leaf=2)
    assert max(int(t.nodes["depth"].max()) for (t,) in model._predictors) > MAX_COMPLETE_DEPTH
    assert compile_forest(model) is None
    X, _ = _data(500, seed=9)
    np.testing.assert_array_equal(raw_predict(model, X), _reference(model, X))


def test_multiclass_and_categorical_models_fall_back_to_scikit_learn():
    X, signal = _data(1500)
    three = np.digitize(signal, [-0.5, 0.5])
    multiclass = HistGradientBoostingClassifier(max_depth=3, max_iter=5).fit(X, three)
    assert compile_forest(multiclass) is None

    frame = pd.DataFrame({"a": X[:, 0], "c": pd.Categorical(X[:, 3].astype(int))})
    binary = (signal > 0).astype(int)
    categorical = HistGradientBoostingClassifier(
        max_depth=3, max_iter=5, categorical_features="from_dtype"
    ).fit(frame, binary)
    assert compile_forest(categorical) is None


def test_refit_is_never_served_stale_trees():
    model = _classifier(seed=0)
    X, _ = _data(300, seed=10)
    first = raw_predict(model, X)
    other_X, other_signal = _data(3000, seed=3)
    model.fit(other_X, (other_signal > 1).astype(int))
    second = raw_predict(model, X)
    np.testing.assert_array_equal(second, _reference(model, X))
    assert not np.array_equal(first, second)


def test_wrong_number_of_features_is_refused():
    model = _classifier()
    with pytest.raises(ValueError, match="expects 4 features"):
        raw_predict(model, np.zeros((3, 5)))


@pytest.mark.parametrize("n_rows", [0, 7, 8, 40_000, 100_003])
@pytest.mark.parametrize("n_parts", [1, 2, 3])
def test_row_ranges_cover_every_row_once(n_rows, n_parts):
    ranges = hgb_runtime._row_ranges(n_rows, n_parts)
    covered = np.concatenate([np.arange(a, b) for a, b in ranges])
    np.testing.assert_array_equal(covered, np.arange(n_rows))
    assert all(a % 8 == 0 for a, _ in ranges)
    assert len(ranges) <= n_parts


def test_kernels_compile_without_a_writable_cache():
    # numba raises at import time when it finds no writable cache folder (read-only
    # installs); the module must then compile per process and still score exactly.
    script = """
import numpy as np
import numba.core.caching as caching

def refuse(self, py_func):
    raise RuntimeError("cannot cache function: no locator available for file")

caching.FunctionCache.__init__ = refuse
from sklearn.ensemble import HistGradientBoostingRegressor
from segmentkit.models.hgb_runtime import raw_predict
rng = np.random.default_rng(0)
X = rng.normal(size=(300, 3))
model = HistGradientBoostingRegressor(max_depth=3, max_iter=5).fit(X, X[:, 0])
assert np.array_equal(raw_predict(model, X), model._raw_predict(X).ravel())
print("ok")
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize("seed", range(6))
def test_random_models_match_the_installed_scikit_learn(seed):
    """Random shapes and hyperparameters: the kernels read scikit-learn's private tree
    layout, so a scikit-learn whose layout changed must fail here, not score wrongly."""
    rng = np.random.default_rng(100 + seed)
    n_features = int(rng.integers(1, 9))
    X = rng.normal(size=(1500, n_features)) * rng.uniform(0.1, 100, n_features)
    X[rng.random(X.shape) < rng.uniform(0, 0.3)] = np.nan
    y = (np.nansum(X[:, : max(1, n_features // 2)], axis=1) + rng.normal(size=len(X)) > 0).astype(
        int
    )
    model = HistGradientBoostingClassifier(
        max_depth=int(rng.integers(1, MAX_COMPLETE_DEPTH + 1)),
        max_iter=int(rng.integers(5, 40)),
        learning_rate=float(rng.uniform(0.05, 0.5)),
        max_leaf_nodes=int(rng.integers(2, 64)),
        min_samples_leaf=int(rng.integers(1, 50)),
        random_state=seed,
    ).fit(X, y)
    assert compile_forest(model) is not None  # supported shapes never fall back silently
    scored = np.asarray(X[rng.permutation(len(X))], order="C")
    np.testing.assert_array_equal(raw_predict(model, scored), _reference(model, scored))
