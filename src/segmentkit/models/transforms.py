"""Element-wise transformers used inside propensity pipelines.

They replace ``FunctionTransformer(np.arcsinh)`` and ``FunctionTransformer(np.log1p)``:
a FunctionTransformer stores a *function*, and a model file that may name a
function to call is one that can run code on load. These classes store nothing,
so a bundle holds classes only (see :mod:`segmentkit.bundle.trust`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["ArcsinhTransformer", "Log1pTransformer"]


class _ElementwiseTransformer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Stateless element-wise transform; ``fit`` only records the input width and names."""

    def fit(self, X: Any, y: Any = None) -> _ElementwiseTransformer:
        """Record the number (and names) of input features.

        Returns
        -------
        self
        """
        validate_data(self, X, ensure_all_finite=False)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Apply the transform to every value.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self, "n_features_in_")
        X = validate_data(self, X, reset=False, ensure_all_finite=False, dtype=np.float64)
        return self._apply(X)

    def _apply(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # element-wise: a missing value stays missing
        return tags


class ArcsinhTransformer(_ElementwiseTransformer):
    """``arcsinh(x)``: a signed log (about ``x`` near 0, ``sign(x) * ln(2|x|)`` in the tails).

    Examples
    --------
    >>> import numpy as np
    >>> ArcsinhTransformer().fit_transform(np.array([[0.0], [-1.0]])).round(4).ravel().tolist()
    [0.0, -0.8814]
    """

    def _apply(self, X: np.ndarray) -> np.ndarray:
        return np.arcsinh(X)


class Log1pTransformer(_ElementwiseTransformer):
    """``log(1 + x)`` for non-negative features such as recency in days.

    Examples
    --------
    >>> import numpy as np
    >>> Log1pTransformer().fit_transform(np.array([[0.0], [np.e - 1]])).ravel().tolist()
    [0.0, 1.0]
    """

    def _apply(self, X: np.ndarray) -> np.ndarray:
        return np.log1p(X)
