from sklearn.utils.estimator_checks import parametrize_with_checks

from segmentkit.models.segmentation import Segmenter


# No expected failures: every check passes for both instances.
@parametrize_with_checks(
    [
        Segmenter(k=3, n_bootstrap=2, random_state=0),
        Segmenter(algorithm="gmm", k=3, n_bootstrap=2, random_state=0),
    ],
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
