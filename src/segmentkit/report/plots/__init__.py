"""Figures for notebooks, reports and MLflow artifacts.

Every function here is pure: it takes plain data (DataFrames, arrays or the result
dataclasses of :mod:`segmentkit.drift`) and returns a new
:class:`matplotlib.figure.Figure`. Nothing touches pyplot's global state, nothing is
shown and no backend is selected, so the functions work headless (Agg) and in
notebooks alike. Save a figure with ``fig.savefig(path)``. In Jupyter, run
``%matplotlib inline`` once (a figure made without pyplot is only rendered once the
inline backend has registered its display formatter); then a figure that is the
last expression of a cell is displayed. Nothing here fits a model:
for the UMAP map, fit ``umap.UMAP(random_state=...)`` on a sample of the
segmenter's transformed features in the notebook and pass the 2-D output to
:func:`embedding_map`.

Colours: segments get the colours of the ``tab10`` (``tab20`` beyond ten) palette
in the order of their labels (see :func:`segment_colors`), so a segment has the
same colour in :func:`segment_sizes`, :func:`segment_stability` and
:func:`embedding_map` as long as its label sorts to the same position.

A required column that is missing raises :class:`~segmentkit.errors.DataValidationError`
naming it; an empty table raises :class:`~segmentkit.errors.InsufficientDataError`.
"""

from segmentkit.report.plots._common import STATUS_COLORS, segment_colors
from segmentkit.report.plots.drift import (
    backtest_frame,
    backtest_table,
    feature_psi,
    migration_heatmap,
    share_change,
)
from segmentkit.report.plots.propensity import (
    calibration,
    calibration_frame,
    lift_by_decile,
    outcome_by_segment,
    score_distributions,
)
from segmentkit.report.plots.segments import (
    embedding_map,
    k_selection,
    profile_heatmap,
    segment_sizes,
    segment_stability,
)

__all__ = [
    "STATUS_COLORS",
    "backtest_frame",
    "backtest_table",
    "calibration",
    "calibration_frame",
    "embedding_map",
    "feature_psi",
    "k_selection",
    "lift_by_decile",
    "migration_heatmap",
    "outcome_by_segment",
    "profile_heatmap",
    "score_distributions",
    "segment_colors",
    "segment_sizes",
    "segment_stability",
    "share_change",
]
