"""The one-sort evaluation metrics equal scikit-learn's and pandas' (ties included)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    mean_poisson_deviance,
    roc_auc_score,
)

from segmentkit.models.evaluation import _decile_groups, _decile_table, _metrics


def _reference_deciles(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"decile": _decile_groups(p), "y": y, "p": p})
    table = frame.groupby("decile").agg(
        users=("y", "size"), mean_predicted=("p", "mean"), observed=("y", "mean")
    )
    table["lift"] = table["observed"] / y.mean()
    return table.reset_index()


@pytest.mark.parametrize("n, levels", [(1000, None), (997, 7), (23, 3), (12, None)])
def test_binary_metrics_match_sklearn(n, levels):
    rng = np.random.default_rng(n)
    p = rng.random(n)
    if levels is not None:  # many tied scores
        p = np.round(p * levels) / levels
        p = np.clip(p, 0.01, 0.99)
    y = (rng.random(n) < p).astype(int)
    out = _metrics(y, p, "event")
    assert out["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert out["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert out["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert out["log_loss"] == pytest.approx(log_loss(y, p, labels=[0, 1]), abs=1e-12)
    expected = _reference_deciles(y, p)
    pd.testing.assert_frame_equal(_decile_table(y, p), expected, check_dtype=False, atol=1e-12)
    assert out["lift_top_decile"] == pytest.approx(expected["lift"].iloc[0])


def test_count_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    mu = rng.gamma(1.0, 0.5, 2000)
    y = rng.poisson(mu).astype(float)
    p = np.round(mu, 1)  # ties
    out = _metrics(y, p, "count")
    assert out["roc_auc"] == pytest.approx(roc_auc_score(y > 0, p), abs=1e-12)
    assert out["poisson_deviance"] == pytest.approx(
        mean_poisson_deviance(y, np.clip(p, 1e-9, None))
    )
    assert out["total_ratio"] == pytest.approx(p.sum() / y.sum())


def test_one_class_gives_nan_ranking_metrics():
    p = np.linspace(0.1, 0.9, 50)
    out = _metrics(np.zeros(50), p, "event")
    assert np.isnan(out["roc_auc"]) and np.isnan(out["pr_auc"])
    assert out["brier"] == pytest.approx(brier_score_loss(np.zeros(50), p))


@pytest.mark.parametrize("n, levels", [(2000, None), (500, 4), (7, None)])
def test_count_concordance_matches_somers_d_ties_included(n, levels):
    from scipy.stats import somersd

    from segmentkit.models.evaluation import count_concordance

    rng = np.random.default_rng(n)
    mu = rng.gamma(0.5, 1.0, n)
    y = rng.poisson(mu).astype(float)
    p = mu if levels is None else np.round(mu * levels) / levels  # tied scores
    # Harrell's C = (1 + Somers' D of the scores given the counts) / 2.
    expected = (1.0 + somersd(y, p).statistic) / 2.0
    assert count_concordance(y, p) == pytest.approx(expected, abs=1e-9)


def test_count_concordance_is_the_auc_for_zero_one_counts_and_neutral_to_ties():
    from segmentkit.models.evaluation import count_concordance

    y = np.array([0, 1, 0, 1, 1, 0, 0])
    p = np.array([0.2, 0.9, 0.4, 0.4, 0.7, 0.1, 0.3])
    assert count_concordance(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    # Pairs with different counts: (0,1) (0,2) (1,2); scores 5, 5, 7: one tie, two agree.
    assert count_concordance([0, 1, 2], [5.0, 5.0, 7.0]) == pytest.approx(2.5 / 3)
    # A score that ties everyone says nothing; counts that are all equal have no pair.
    assert count_concordance([0, 0, 3, 1], np.zeros(4)) == 0.5
    assert np.isnan(count_concordance([2, 2, 2], [0.1, 0.2, 0.3]))


def test_count_metrics_add_the_concordance_for_the_report_only():
    y = np.array([0.0, 0.0, 1.0, 3.0])
    p = np.array([0.1, 0.4, 0.3, 2.0])
    assert "concordance" not in _metrics(y, p, "count")
    # Pairs with different counts: 5; only (0.4 vs 0.3) is out of order.
    assert _metrics(y, p, "count", report=True)["concordance"] == pytest.approx(4 / 5)


def test_auc_standard_error_is_the_spread_of_the_auc_over_samples():
    from segmentkit.models.evaluation import auc_standard_error

    # Binormal scores with AUC 0.8 (shift 1.19 standard deviations), 43 vs 257 users.
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(43), np.zeros(257)]
    aucs = [
        roc_auc_score(y, np.r_[rng.normal(1.19, 1, 43), rng.normal(0, 1, 257)]) for _ in range(400)
    ]
    # Hanley-McNeil assumes exponential scores: close to, a little above, the binormal spread.
    assert np.std(aucs) <= auc_standard_error(0.8, 43, 257) <= 1.3 * np.std(aucs)
    assert np.isnan(auc_standard_error(0.8, 0, 10))
