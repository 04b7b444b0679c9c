"""Figures of a training run: one per aggregate, calibration per propensity target."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from segmentkit.config import load_config
from segmentkit.report.training import training_figures
from segmentkit.training import train_model


def _config(targets):
    return load_config(
        overrides={
            "data": {"columns": {"session_id": None}},
            "segmentation": {"k": "auto", "k_range": [2, 3], "n_bootstrap": 2},
            "propensity": {
                "targets": targets,
                "n_snapshots": 2,
                "snapshot_step_days": 7,
                "horizon_days": 7,
                "min_positives": 5,
            },
        }
    )


@pytest.fixture(scope="module")
def figures_without_propensity(two_behaviours_log):
    figures = training_figures(train_model(_config([]), two_behaviours_log))
    yield figures
    plt.close("all")


def test_segment_figures_are_drawn_from_the_fitted_segmenter(figures_without_propensity):
    assert {"segment_sizes", "profile_heatmap", "segment_stability", "k_selection"} <= set(
        figures_without_propensity
    )
    assert all(isinstance(f, Figure) for f in figures_without_propensity.values())
    assert not any(name.startswith("calibration_") for name in figures_without_propensity)


def test_profile_heatmap_leaves_out_difference_features(figures_without_propensity):
    heatmap = figures_without_propensity["profile_heatmap"]
    labels = {
        t.get_text() for ax in heatmap.axes for t in ax.get_xticklabels() + ax.get_yticklabels()
    }
    assert "recency_days" in labels  # the features are the heatmap's tick labels
    assert "activity_trend" not in labels


def test_one_calibration_figure_per_propensity_target(two_behaviours_log):
    targets = [{"name": "purchase", "kind": "event", "event": "purchase"}]
    figures = training_figures(train_model(_config(targets), two_behaviours_log))
    plt.close("all")
    assert [n for n in figures if n.startswith("calibration_")] == ["calibration_purchase"]
