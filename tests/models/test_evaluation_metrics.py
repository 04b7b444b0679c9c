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
