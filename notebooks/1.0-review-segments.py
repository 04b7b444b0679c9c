# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1.0 Review segments
#
# What a trained model found: how big the segments are, what distinguishes them, how
# they sit on a 2-D map of users, how the number of segments was chosen and how stable
# each one is, how the propensity scores spread within segments and match the outcomes,
# and the segment names with their descriptions.
#
# Change the `parameters` cell (or inject values after it, papermill-style) to review
# another model or snapshot. Figures come from `segmentkit.report.plots`, small steps from
# `segmentkit.report.review`; the notebook itself holds no logic.

# %%
# %matplotlib inline

# %% tags=["parameters"]
# Project directory (the one holding params.yaml). None: SEGMENTKIT_PROJECT, else the
# kernel's working directory or a parent of it, else the checkout segmentkit runs from.
project = None
# Model: a bundle directory or an MLflow URI such as "models:/segmentkit-demo@champion".
# None: the bundle `segmentkit train` saved (<models_dir>/<registered_model>).
model_uri = None
# Tracking URI for models:/ URIs (None: params, MLFLOW_TRACKING_URI, else <project>/mlflow.db).
tracking_uri = None
# Event log (Parquet/CSV path or glob) with the columns the model was trained on.
# None: params' data.events, else the demo log. Relative paths are from the project.
events = None
# Snapshot to review, "YYYY-MM-DD" (None: the model's own as_of).
as_of = None
# Users drawn for the score distributions (None: every user).
sample_size = 20_000
# Users the UMAP map is fitted on. The first UMAP fit in a process also compiles numba.
umap_sample = 5_000
# Also place every other user on the map with UMAP's transform (slow on many users).
umap_transform_rest = False
# Seed of the samples and of UMAP.
seed = 0

# %%
import numpy as np
import pandas as pd
import umap
from IPython.display import Markdown, display

import segmentkit
from segmentkit.io.events import default_as_of, to_timestamp
from segmentkit.report import plots, review

# %% [markdown]
# ## Model and snapshot
#
# Defaults come from the project (its `params.yaml`), whatever the kernel's working
# directory. The model is loaded (checksums and object types verified), the event log
# is validated, and every user with an event before the snapshot is scored.

# %%
where = segmentkit.find_project(project)
model_uri = where.model_uri(model_uri)
model = segmentkit.load(model_uri, tracking_uri=tracking_uri or where.tracking_uri)
segmenter = model.segmenter
names = list(segmenter.segment_names_)
events = where.events if events is None else str(where.path(events))
log = segmentkit.load_events(events, model.columns)
snapshot = to_timestamp(as_of if as_of is not None else model.metadata.as_of)
features = segmentkit.build_features(log, snapshot, model.feature_config)
scores = model.score_features(features)
display(
    Markdown(
        f"Model `{model_uri}` trained as of **{model.metadata.as_of[:10]}** with "
        f"{segmenter.n_segments_} segments and propensity targets "
        f"{', '.join(model.propensity) or 'none'}. Snapshot **{snapshot:%Y-%m-%d}**: "
        f"{len(features):,} users."
    )
)

# %% [markdown]
# ## Segment sizes
#
# Share of the snapshot's users in each segment (largest on top), with the number of
# users. A segment of a few percent is hard to act on; training asked every segment
# for at least `min_share` of the users.

# %%
plots.segment_sizes(review.segment_counts(scores["segment_id"], names))

# %% [markdown]
# ## Profiles: lift against the population
#
# Each cell is the segment's mean of a feature divided by the population mean at
# training: 1x (white) is average, red is above, blue below, on a log scale so 2x and
# 0.5x are equally strong. Read a row to see what makes a segment distinct, a column
# to see which segment leads on a feature. Signed features whose lift is a difference,
# not a ratio (`activity_trend`), are left out here; `segmenter.profiles_` holds them.

# %%
plots.profile_heatmap(segmenter.profiles_, review.lift_features(segmenter))

# %% [markdown]
# ## Map of users (UMAP)
#
# Users placed in 2-D by UMAP from the space the segments were found in (log of
# heavy-tailed features, standardized). Nearby points are similar users. Well separated
# colours mean distinct segments; overlapping colours mean a boundary drawn through a
# continuum, which is normal for behaviour. Distances between far-apart groups and the
# size of a blob mean little in UMAP. The map is fitted on a sample of `umap_sample`
# users; with `umap_transform_rest` the other users are placed onto it afterwards.

# %%
Z = review.scaled_features(segmenter, features)
rows = review.sample_indices(len(Z), umap_sample, seed=seed)
reducer = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=seed, n_jobs=1)
embedding = reducer.fit_transform(Z[rows])
labels = scores["segment_id"].to_numpy()[rows]
if umap_transform_rest and len(rows) < len(Z):
    rest = np.setdiff1d(np.arange(len(Z)), rows)
    embedding = np.vstack([embedding, reducer.transform(Z[rest])])
    labels = np.concatenate([labels, scores["segment_id"].to_numpy()[rest]])
plots.embedding_map(embedding, labels, names=names)

# %% [markdown]
# ## Choosing the number of segments
#
# Every candidate k was clustered on a subsample and scored: bootstrap stability (the
# mean Jaccard of each segment with its best match when the data are resampled; the
# smallest over segments must reach the threshold), silhouette (separation, higher is
# better) and the smallest segment's share. Filled markers met the rule, the band marks
# the chosen k. With a fixed `k` there is a single candidate.

# %%
plots.k_selection(
    segmenter.selection_, threshold=segmenter.min_stability, min_share=segmenter.min_share
)

# %% [markdown]
# ## Stability of each segment
#
# Mean bootstrap Jaccard per segment. At or above the threshold (0.75 by default,
# Hennig's rule of thumb) a segment reappears when the users are resampled; below it,
# treat the segment as tentative: it may merge or split on the next refresh.

# %%
plots.segment_stability(
    segmenter.profiles_, threshold=segmenter.min_stability, stability_col="stability"
)

# %% [markdown]
# ## Propensity scores by segment
#
# How each target's score spreads within each segment on a sample of `sample_size`
# users (violins; dots are means). Segments with wide violins mix users of very
# different risk: rank users by score, not by segment alone.

# %%
sample = scores.iloc[review.sample_indices(len(scores), sample_size, seed=seed)]
for target in model.propensity:
    display(plots.score_distributions(sample, target, segments="segment_id", names=names))

# %% [markdown]
# ## Observed outcomes by segment
#
# Mean predicted score beside the outcome actually observed, per segment. Outcomes need
# a complete horizon after the snapshot: the review snapshot is used when the log
# covers it, otherwise the snapshot one horizon earlier. The line above the figure
# says which, and whether the model had seen those outcomes (in sample) or not (out of
# time). Bars of similar height mean the scores are calibrated within segments. Below
# is the out-of-time evaluation stored at training, for comparison.

# %%
if model.propensity:
    horizon = max(int(m.horizon_days) for m in model.propensity.values())
    window = review.outcome_window(snapshot, horizon, default_as_of(log), model.metadata.as_of)
    scored_then = (
        scores
        if window.snapshot == snapshot
        else model.score_features(
            segmentkit.build_features(log, window.snapshot, model.feature_config)
        )
    )
    outcomes = review.observed_outcomes(model.propensity, log, window)
    by_segment = review.segment_outcomes(scored_then, outcomes, names=names)
    display(
        Markdown(
            f"Outcomes of users at **{window.snapshot:%Y-%m-%d}** over the next {horizon} days "
            f"({'out of time' if window.out_of_time else 'in sample'})."
        )
    )
    display(plots.outcome_by_segment(by_segment, names=names))
    display(by_segment)
    display(
        pd.DataFrame(list(model.metadata.propensity_evaluation)).pivot(
            index="metric", columns="target", values="value"
        )
    )
else:
    display(Markdown("This model has no propensity targets."))

# %% [markdown]
# ## Segment names and descriptions
#
# Names come from each segment's profile against the population (rules in
# `segmentkit.models.segmentation`); the description lists the three features that set the
# segment apart most. Share, users and stability are those at training.

# %%
review.segment_table(segmenter)

# %% [markdown]
# Training settings of the segmentation, for the record:

# %%
pd.Series(segmenter.get_params(), name="value", dtype=object)
