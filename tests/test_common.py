import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from segmentkit.models.propensity import PropensityModel
from segmentkit.models.segmentation import Segmenter
from segmentkit.models.transforms import ArcsinhTransformer, Log1pTransformer

# A binary PropensityModel refuses labels other than 0/1 by design (1 means the event
# happened); the checks below hand it the two labels {1, 2}.
_BINARY_LABELS_1_2 = "feeds binary labels {1, 2}; a binary PropensityModel accepts only 0/1"

# A count PropensityModel refuses non-integer targets by design; these checks draw y from
# a normal distribution (shifted positive by the positive_only target tag), not counts.
_FLOAT_COUNTS = (
    "feeds continuous y; a count PropensityModel accepts only non-negative integer counts"
)


def _expected_failed_checks(estimator):
    """Checks that fail only because of a PropensityModel's target design (none otherwise)."""
    if not isinstance(estimator, PropensityModel):
        return {}
    if estimator.kind == "count":
        return {
            name: _FLOAT_COUNTS
            for name in (
                "check_regressors_train",
                "check_regressor_data_not_an_array",
                "check_regressors_no_decision_function",
                "check_n_features_in_after_fitting",
                "check_fit_idempotent",
                "check_fit_check_is_fitted",
                "check_n_features_in",
            )
        }
    return {
        "check_estimators_dtypes": _BINARY_LABELS_1_2,
        # y = int(3 * U) with every U >= 1/3 for its seed, hence {1, 2}.
        "check_fit2d_1feature": _BINARY_LABELS_1_2,
    }


@parametrize_with_checks(
    [
        Segmenter(k=3, n_bootstrap=2, random_state=0),
        Segmenter(algorithm="gmm", k=3, n_bootstrap=2, random_state=0),
        ArcsinhTransformer(),
        Log1pTransformer(),
        PropensityModel("t", "event", event="purchase", random_state=0, n_threads=1),
        PropensityModel("t", "count", event="purchase", random_state=0, n_threads=1),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_count_propensity_contract_on_integer_counts():
    """What the xfailed checks cover for counts, on the counts the model is built for."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = rng.poisson(np.exp(0.5 * X[:, 0]))
    model = PropensityModel("t", "count", random_state=0, n_threads=1)
    with pytest.raises(NotFittedError):
        model.predict(X)
    first = model.fit(X, y).predict(X)
    assert model.n_features_in_ == 3
    assert not hasattr(model, "predict_proba")
    np.testing.assert_array_equal(clone(model).fit(X, y).predict(X), first)
    np.testing.assert_array_equal(model.fit(X, y).predict(X), first)
    with pytest.raises(ValueError, match="3 features"):
        model.predict(X[:, :2])
