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
# # 2.0 Refresh drift
#
# What changed between the champion's training snapshot and the new one, as measured by
# `segmentkit refresh`: the overall status, feature drift, the segment mix, users moving
# between segments, and the champion's propensity scores checked against outcomes that
# are now known.
#
# The notebook reads the `drift.json` a refresh writes (`reports/refresh-<as_of>/` in
# the project, whatever the kernel's working directory); it recomputes nothing. Change
# the `parameters` cell to read another report.

# %%
# %matplotlib inline

# %% tags=["parameters"]
# Project directory (the one holding params.yaml). None: SEGMENTKIT_PROJECT, else the
# kernel's working directory or a parent of it, else the checkout segmentkit runs from.
project = None
# A drift.json, or a reports directory: the latest refresh-<YYYY-MM-DD>/drift.json in it.
# None: <project>/reports. Relative paths are from the project.
report = None
# Champion (bundle path or models:/NAME@champion) whose segment names label the figures.
# None: the project's bundle if there is one, else segment ids only.
model_uri = None
# Tracking URI for models:/ URIs (None: params, MLFLOW_TRACKING_URI, else <project>/mlflow.db).
tracking_uri = None

# %%
import dataclasses
import json

import pandas as pd
from IPython.display import Markdown, display

import segmentkit
from segmentkit.drift import DriftReport
from segmentkit.report import plots, review

# %%
where = segmentkit.find_project(project)
source = where.reports_dir if report is None else where.path(report)
path = (
    source
    if source.suffix == ".json"
    else review.latest_drift_report(source.glob("refresh-*/drift.json"))
)
drift = DriftReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
champion = (
    where.model_uri(model_uri) if model_uri is not None or where.model_path.exists() else None
)
names = (
    segmentkit.load(
        champion, tracking_uri=tracking_uri or where.tracking_uri
    ).segmenter.segment_names_
    if champion is not None
    else None
)

# %% [markdown]
# ## Status and recommendation
#
# The report's status is the worst of its checks, each judged against the change ageing
# alone produced over the same distance: **OK** (nothing to do), **WARN** (read the
# findings before promoting the challenger), **DRIFT** (the refresh exited with code 3).
# The findings come most important first; the recommendation names one action and its
# reason. The table counts each test's verdicts (raw PSI, share PSI and ARI are shown
# without a status).

# %%
verdict = drift.verdict
display(
    Markdown(
        f"## {drift.status}\n\n`{path}`: exit code {drift.exit_code}, "
        f"{drift.n_current or 0:,} users in the new snapshot.\n\n"
        f"**Recommendation:** {verdict.recommendation}\n\n"
        + "\n".join(f"- **{f.status}** {f.message}" for f in verdict.findings[:10])
    )
)
review.status_counts(drift)

# %% [markdown]
# ## Feature drift (PSI)
#
# Population stability index of each feature: the new snapshot's distribution over the
# champion's reference quantile bins. Below 0.1 is stable, 0.1-0.25 a moderate shift
# (WARN), above 0.25 a large one (DRIFT) with the default thresholds. A drifting
# feature does not by itself make the segments wrong; look at the segment mix and the
# agreement below before deciding.

# %%
plots.feature_psi(drift)

# %% [markdown]
# ## Segment mix
#
# Each segment's share of users at training (reference) and in the new snapshot, as
# the champion assigns them; the label is the change in percentage points. The title
# gives the share PSI and its status.

# %%
if drift.share is not None:
    display(plots.share_change(drift, names=names))
else:
    display(Markdown("The report holds no segment-share test."))

# %% [markdown]
# ## Champion vs challenger
#
# The challenger was trained on the new snapshot, aligned to the champion's segment
# ids. Adjusted Rand index (1 = the same partition) and, per champion segment, the
# Jaccard overlap with its matched challenger segment and how far its centroid moved
# (in standard units). Segments that appeared or vanished are listed.

# %%
if drift.agreement is not None:
    agreement = drift.agreement
    display(
        Markdown(
            f"ARI **{agreement.ari:.3f}** on {agreement.n_users:,} users: {agreement.status}. "
            f"Appeared: {', '.join(agreement.appeared) or 'none'}; "
            f"vanished: {', '.join(agreement.vanished) or 'none'}."
        )
    )
    display(pd.DataFrame([dataclasses.asdict(m) for m in agreement.matches]))
else:
    display(Markdown("The report holds no champion/challenger comparison."))

# %% [markdown]
# ## Migration between segments
#
# Rows are the segment a user was in at the champion's snapshot, columns the segment
# now (both assigned by the champion, so the ids mean the same thing). Cells show where
# each row's users went (share of the row, and count): a strong diagonal means stable
# membership. `(new user)` holds users first seen since the champion's snapshot;
# `(gone)` users of that snapshot missing from the new one (when the new log no longer
# holds their events).

# %%
if drift.migration is not None:
    display(plots.migration_heatmap(drift.migration, names=names))
else:
    display(Markdown("The report holds no migration matrix."))

# %% [markdown]
# ## Propensity backtest
#
# The champion's scores from its own snapshot, judged against the outcomes observed
# since: ROC AUC and Brier score now beside those measured at training, and predicted
# vs observed positives. A large AUC drop means the model ranks users worse than it
# did. The reliability diagram compares mean predicted probability with the observed
# rate per score decile: points on the diagonal are well calibrated.

# %%
if drift.backtests:
    display(plots.backtest_table(drift))
    display(plots.calibration(drift))
else:
    display(Markdown("No backtest: no target's horizon has elapsed since the champion's snapshot."))
