"""Figures of a training run, assembled from :mod:`segmentkit.report.plots` (aggregates only)."""

from __future__ import annotations

from typing import Any

from segmentkit.report import plots

__all__ = ["training_figures"]


def _ratio_features(segmenter: Any) -> list[str]:
    """Features whose lift is a ratio (the heatmap's log scale does not fit differences)."""
    from segmentkit.models.naming import DIFFERENCE_FEATURES

    used = getattr(segmenter, "features_used_", segmenter.feature_names_in_)
    return [str(c) for c in used if c not in DIFFERENCE_FEATURES]


def training_figures(result: Any) -> dict[str, Any]:
    """Return the run's figures by name: profile heatmap, segment sizes, calibration, k selection.

    Parameters
    ----------
    result : TrainingResult
        Output of :func:`segmentkit.training.train_model`.
    """
    segmenter = result.model.segmenter
    profiles = segmenter.profiles_
    figures = {
        "segment_sizes": plots.segment_sizes(profiles),
        "profile_heatmap": plots.profile_heatmap(profiles, features=_ratio_features(segmenter)),
        "segment_stability": plots.segment_stability(
            profiles, threshold=segmenter.min_stability, stability_col="stability"
        ),
    }
    selection = getattr(segmenter, "selection_", None)
    if selection is not None and len(selection):
        figures["k_selection"] = plots.k_selection(
            selection, threshold=segmenter.min_stability, min_share=segmenter.min_share
        )
    if result.propensity is not None:
        calibration = result.propensity.evaluation.calibration
        for target in calibration["target"].unique():
            figures[f"calibration_{target}"] = plots.calibration(
                calibration[calibration["target"] == target]
            )
    return figures
