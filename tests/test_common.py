from sklearn.utils.estimator_checks import parametrize_with_checks

from segmentkit.models.segmentation import Segmenter
from segmentkit.models.transforms import ArcsinhTransformer, Log1pTransformer


# No expected failures: every check passes for every instance.
@parametrize_with_checks(
    [
        Segmenter(k=3, n_bootstrap=2, random_state=0),
        Segmenter(algorithm="gmm", k=3, n_bootstrap=2, random_state=0),
        ArcsinhTransformer(),
        Log1pTransformer(),
    ],
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
