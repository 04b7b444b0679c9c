"""Figures about segments: sizes, profiles, embedding map, k selection, stability."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from segmentkit.errors import DataValidationError, InsufficientDataError
from segmentkit.report.plots._common import (
    _MUTED,
    STATUS_COLORS,
    _figure,
    _fold,
    _label_names,
    _numeric,
    _pct,
    _require,
    display_label,
    plain_text,
    segment_colors,
)
from segmentkit.text import natural_key


@plain_text
def segment_sizes(
    profiles: pd.DataFrame,
    *,
    name_col: str | None = "name",
    share_col: str = "share",
    size_col: str | None = "size",
    sort: bool = True,
) -> Figure:
    """Horizontal bars of each segment's share of users, labelled with its size.

    Parameters
    ----------
    profiles : pandas.DataFrame
        One row per segment, e.g. ``Segmenter.profiles_``: a name column, a share
        column (fraction of users, 0-1) and a size column (number of users).
    name_col : str or None, default "name"
        Column holding segment names; None labels the bars with the index.
    share_col : str, default "share"
        Column holding the share of users.
    size_col : str or None, default "size"
        Column holding the number of users; None leaves counts out of the labels.
    sort : bool, default True
        Largest segment on top; False keeps the row order (first row on top).

    Returns
    -------
    matplotlib.figure.Figure
        One axes with one bar per segment.

    Raises
    ------
    DataValidationError
        If a column is missing or not numeric, or a share is outside [0, 1].
    InsufficientDataError
        If ``profiles`` has no rows.

    Examples
    --------
    >>> import pandas as pd
    >>> profiles = pd.DataFrame(
    ...     {"name": ["Champions", "Casual"], "share": [0.25, 0.75], "size": [25, 75]}
    ... )
    >>> fig = segment_sizes(profiles)
    >>> len(fig.axes[0].patches)
    2
    """
    what = "segment_sizes"
    needed = [c for c in (name_col, share_col, size_col) if c is not None]
    _require(profiles, needed, what)
    shares = _numeric(profiles, share_col, what)
    if np.any(~np.isfinite(shares)) or np.any((shares < 0) | (shares > 1 + 1e-9)):
        raise DataValidationError(f"{what}: column {share_col!r} must hold shares in [0, 1]")
    sizes = _numeric(profiles, size_col, what) if size_col is not None else None
    labels = [
        display_label(n)
        for n in (profiles[name_col].tolist() if name_col is not None else profiles.index)
    ]
    colors = list(segment_colors(range(len(labels))).values())
    order = np.argsort(-shares, kind="stable") if sort else np.arange(len(labels))

    fig = _figure(7.5, 1.2 + 0.45 * len(labels))
    ax = fig.add_subplot()
    positions = np.arange(len(labels))[::-1]  # first bar on top
    bars = ax.barh(
        positions,
        shares[order],
        color=[colors[i] for i in order],
        tick_label=[labels[i] for i in order],
    )
    texts = []
    for i in order:
        text = _pct(shares[i])
        if sizes is not None and math.isfinite(sizes[i]):
            text += f"  (n={int(sizes[i]):,})"
        texts.append(text)
    ax.bar_label(bars, labels=texts, padding=3, fontsize=9)
    ax.set_xlim(0, min(1.0, float(shares.max()) * 1.35 + 0.02))
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_xlabel("Share of users")
    ax.set_ylabel("Segment")
    ax.set_title("Segment sizes")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _lift_matrix(
    profiles: pd.DataFrame,
    features: Sequence[str] | None,
    name_col: str | None,
    lift_prefix: str | None,
    what: str,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Lifts (segments x features), row labels and feature names."""
    if not isinstance(profiles, pd.DataFrame):
        raise DataValidationError(
            f"{what}: expected a pandas DataFrame, got {type(profiles).__name__}"
        )
    if lift_prefix:
        available = {
            str(c)[len(lift_prefix) :]: c
            for c in profiles.columns
            if str(c).startswith(lift_prefix)
        }
        if features is None:
            if not available:
                raise DataValidationError(
                    f"{what}: no lift columns (named '{lift_prefix}<feature>'); columns present: "
                    f"{[str(c) for c in profiles.columns]}. Pass lift_prefix=None for a plain "
                    "segments x features table of lifts"
                )
            features = list(available)
        columns = [f"{lift_prefix}{f}" for f in features]
        rows = (
            _require(profiles, [name_col], what)[name_col].astype(str).tolist()
            if name_col is not None
            else [str(i) for i in profiles.index]
        )
    else:
        features = [str(c) for c in profiles.columns] if features is None else list(features)
        columns = list(features)
        rows = [str(i) for i in profiles.index]
    _require(profiles, columns, what)
    if not columns:
        raise InsufficientDataError(f"{what}: no features to plot")
    lifts = np.column_stack([_numeric(profiles, c, what) for c in columns])
    return lifts, [display_label(r) for r in rows], [display_label(f) for f in features]


@plain_text
def profile_heatmap(
    profiles: pd.DataFrame,
    features: Sequence[str] | None = None,
    *,
    name_col: str | None = "name",
    lift_prefix: str | None = "lift_",
    max_fold: float = 8.0,
    annotate: bool = True,
    orientation: str = "auto",
) -> Figure:
    """Heatmap of segments x features: each segment's lift vs the population.

    Colours are ``log2(lift)`` on a diverging scale centred at 1x (white): red is
    above the population, blue below. The scale is symmetric and spans the largest
    absolute log2 lift, at least 2x and at most ``max_fold``; larger lifts take the
    end colour. Cells show the lift itself (``2.3x``). A lift of 0 is drawn with the
    lowest colour; a missing, infinite or negative lift is grey and reads ``n/a``.

    Parameters
    ----------
    profiles : pandas.DataFrame
        Either one row per segment with a name column and lift columns named
        ``<lift_prefix><feature>`` (e.g. ``Segmenter.profiles_``), or, with
        ``lift_prefix=None``, a plain lift table: index = segments, columns =
        features, values = lifts.
    features : sequence of str, optional
        Features to show, in order (without the prefix); default all.
    name_col : str or None, default "name"
        Column of segment names (prefixed layout); None uses the index.
    lift_prefix : str or None, default "lift_"
        Prefix of the lift columns; None for a plain lift table.
    max_fold : float, default 8.0
        Largest lift (and smallest ``1 / max_fold``) that still gets its own colour.
    annotate : bool, default True
        Write the lift in each cell.
    orientation : {"auto", "segments_by_features", "features_by_segments"}
        ``features_by_segments`` puts features down the side (read horizontally)
        and segments across the top, their names wrapped to fit the column, so no
        label is rotated or overlaps its neighbour however many features there
        are; ``auto`` chooses it when there are more features than segments.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the heatmap (an ``AxesImage`` holding the log2 lifts as a masked
        array) and its colour bar.

    Raises
    ------
    DataValidationError
        If a lift column is missing or not numeric, or ``max_fold <= 1``.
    InsufficientDataError
        If the table has no rows or no features.
    """
    what = "profile_heatmap"
    if not (isinstance(max_fold, int | float) and math.isfinite(max_fold) and max_fold > 1):
        raise DataValidationError(f"{what}: max_fold must be a number > 1, got {max_fold!r}")
    lifts, rows, names = _lift_matrix(profiles, features, name_col, lift_prefix, what)
    if lifts.shape[0] == 0:
        raise InsufficientDataError(f"{what}: the table is empty, nothing to plot")
    cap = math.log2(max_fold)
    valid = np.isfinite(lifts) & (lifts > 0)
    logs = np.zeros_like(lifts)
    logs[valid] = np.log2(lifts[valid])
    zero = lifts == 0
    logs[zero] = -cap
    data = np.ma.masked_array(logs, mask=~(valid | zero))
    largest = float(np.abs(logs[valid]).max()) if valid.any() else 1.0
    limit = min(max(largest, 1.0), cap)

    if orientation not in ("auto", "segments_by_features", "features_by_segments"):
        raise DataValidationError(
            f"{what}: orientation must be 'auto', 'segments_by_features' or "
            f"'features_by_segments', got {orientation!r}"
        )
    transpose = orientation == "features_by_segments" or (
        orientation == "auto" and lifts.shape[1] > lifts.shape[0]
    )
    if transpose:
        lifts, logs, valid, zero = lifts.T, logs.T, valid.T, zero.T
        data = np.ma.masked_array(logs, mask=~(valid | zero))
        rows, names = names, rows
    n_rows, n_cols = lifts.shape
    if transpose:
        # Segment names across the top, wrapped to their column: never rotated.
        wrapped = [textwrap.fill(str(n), width=14, break_long_words=True) for n in names]
        lines = max(w.count("\n") + 1 for w in wrapped)
        fig = _figure(2.6 + 1.1 * n_cols, 1.4 + 0.16 * lines + 0.32 * n_rows)
    else:
        fig = _figure(2.8 + 0.75 * n_cols, 1.6 + 0.45 * n_rows)
    ax = fig.add_subplot()
    cmap = colormaps["RdBu_r"].with_extremes(bad="#dddddd")
    image = ax.imshow(data, cmap=cmap, norm=Normalize(vmin=-limit, vmax=limit), aspect="auto")
    if transpose:
        ax.set_xticks(np.arange(n_cols), labels=wrapped, fontsize=8)
        ax.xaxis.tick_top()
        ax.xaxis.set_label_position("top")
        ax.set_yticks(np.arange(n_rows), labels=rows)
        ax.set_xlabel("Segment")
        ax.set_ylabel("Feature")
    else:
        ax.set_xticks(
            np.arange(n_cols), labels=names, rotation=45, ha="right", rotation_mode="anchor"
        )
        ax.set_yticks(np.arange(n_rows), labels=rows)
        ax.set_xlabel("Feature")
        ax.set_ylabel("Segment")
    ax.set_title("Segment profiles: lift vs population")
    if annotate:
        for i in range(n_rows):
            for j in range(n_cols):
                strong = (valid[i, j] and abs(logs[i, j]) > 0.6 * limit) or zero[i, j]
                ax.text(
                    j,
                    i,
                    "0x" if zero[i, j] else _fold(lifts[i, j]) if valid[i, j] else "n/a",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if strong else "black",
                )
    ticks = np.arange(-math.floor(limit), math.floor(limit) + 1)
    bar = fig.colorbar(image, ax=ax, ticks=ticks, shrink=0.9)
    bar.ax.set_yticklabels([f"{2.0**t:g}x" for t in ticks])
    bar.set_label("Lift vs population (log scale)")
    return fig


@plain_text
def embedding_map(
    embedding: Any,
    labels: Any,
    names: Mapping[Any, str] | Sequence[str] | None = None,
    *,
    point_size: float = 4.0,
    alpha: float = 0.6,
    axis_label: str = "UMAP",
    title: str = "Segments on a 2-D embedding",
) -> Figure:
    """Scatter a 2-D embedding (e.g. UMAP output) coloured by segment.

    The embedding is computed elsewhere: in a notebook, fit
    ``umap.UMAP(random_state=0).fit_transform(X)`` on a sample (a few thousand to
    20k users) of the segmenter's transformed features and pass the result with the
    same users' segment labels.

    Parameters
    ----------
    embedding : array-like of shape (n, 2)
        Coordinates, finite.
    labels : array-like of shape (n,)
        Segment of each point (ids or names); no missing values.
    names : mapping or sequence of str, optional
        Display name of each label: a mapping keyed by label (matched as strings)
        or a sequence indexed by integer label (e.g. ``segment_names_``).
    point_size : float, default 4.0
        Marker area in points^2.
    alpha : float, default 0.6
        Marker opacity.
    axis_label : str, default "UMAP"
        Axis names become ``"<axis_label> 1"`` and ``"<axis_label> 2"``.
    title : str
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with one scatter collection per segment, in natural label order,
        and a legend ``"<name> (n=<points>)"``.

    Raises
    ------
    DataValidationError
        If the embedding is not (n, 2) and finite, or labels do not match it.
    InsufficientDataError
        If there are no points.
    """
    what = "embedding_map"
    try:
        coords = np.asarray(embedding, dtype=float)
    except (TypeError, ValueError):
        raise DataValidationError(f"{what}: embedding must be numeric") from None
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise DataValidationError(f"{what}: embedding must have shape (n, 2), got {coords.shape}")
    if coords.shape[0] == 0:
        raise InsufficientDataError(f"{what}: the embedding has no points, nothing to plot")
    if not np.isfinite(coords).all():
        raise DataValidationError(f"{what}: embedding holds NaN or infinite values")
    segs = pd.Series(np.asarray(labels, dtype=object).ravel())
    if len(segs) != coords.shape[0]:
        raise DataValidationError(
            f"{what}: {len(segs)} labels for {coords.shape[0]} embedding points"
        )
    if segs.isna().any():
        raise DataValidationError(f"{what}: {int(segs.isna().sum())} missing labels")
    keys = segs.astype(str).to_numpy()
    order = sorted(set(keys), key=natural_key)
    colors = segment_colors(order)
    display = _label_names(order, names)

    fig = _figure(8.0, 6.0)
    ax = fig.add_subplot()
    for key, label in zip(order, display, strict=True):
        inside = keys == key
        ax.scatter(
            coords[inside, 0],
            coords[inside, 1],
            s=point_size,
            alpha=alpha,
            color=colors[key],
            linewidths=0,
            label=f"{label} (n={int(inside.sum()):,})",
            rasterized=True,
        )
    ax.set_xlabel(f"{axis_label} 1")
    ax.set_ylabel(f"{axis_label} 2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    legend = ax.legend(
        title="Segment",
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        frameon=False,
        markerscale=max(1.0, 6.0 / math.sqrt(point_size)),
    )
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)
    return fig


@plain_text
def k_selection(
    selection: pd.DataFrame,
    *,
    threshold: float = 0.75,
    min_share: float | None = None,
) -> Figure:
    """Scores of every candidate number of segments, with the chosen k highlighted.

    Panels share the k axis: minimum and mean bootstrap Jaccard with the stability
    threshold; silhouette; and, when the table has a ``min_share`` column, the share
    of the smallest segment. Eligible candidates have filled markers, the others
    hollow ones; a vertical band marks the chosen k.

    Parameters
    ----------
    selection : pandas.DataFrame
        One row per candidate, e.g. ``Segmenter.selection_``, with columns ``k``,
        ``min_jaccard``, ``mean_jaccard``, ``silhouette``, ``eligible`` (bool),
        ``chosen`` (bool, at most one True) and optionally ``min_share``.
    threshold : float, default 0.75
        Stability threshold drawn on the Jaccard panel.
    min_share : float, optional
        Minimum segment share drawn on the ``min_share`` panel.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes (three with ``min_share``).

    Raises
    ------
    DataValidationError
        If a column is missing or not numeric, or more than one row is chosen.
    InsufficientDataError
        If the table has no rows.
    """
    what = "k_selection"
    columns = ["k", "min_jaccard", "mean_jaccard", "silhouette", "eligible", "chosen"]
    _require(selection, columns, what)
    table = selection.sort_values("k", kind="stable")
    k = _numeric(table, "k", what)
    eligible = table["eligible"].fillna(False).astype(bool).to_numpy()
    chosen = table["chosen"].fillna(False).astype(bool).to_numpy()
    if chosen.sum() > 1:
        raise DataValidationError(
            f"{what}: column 'chosen' is True for {int(chosen.sum())} rows, expected at most one"
        )
    panels: list[tuple[str, list[tuple[str, str, str]], float | None]] = [
        (
            "Bootstrap Jaccard",
            [("min_jaccard", "min over segments", "o"), ("mean_jaccard", "mean", "s")],
            threshold,
        ),
        ("Silhouette", [("silhouette", "silhouette", "o")], None),
    ]
    if "min_share" in table.columns:
        panels.append(("Smallest segment share", [("min_share", "min share", "o")], min_share))

    fig = _figure(7.5, 1.2 + 2.4 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    palette = colormaps["tab10"]
    for ax, (ylabel, series, line) in zip(axes, panels, strict=True):
        for i, (column, label, marker) in enumerate(series):
            values = _numeric(table, column, what)
            color = palette(i)
            ax.plot(k, values, color=color, label=label, zorder=2)
            ax.scatter(k[eligible], values[eligible], marker=marker, color=color, zorder=3)
            ax.scatter(
                k[~eligible],
                values[~eligible],
                marker=marker,
                facecolors="white",
                edgecolors=color,
                zorder=3,
            )
        if line is not None:
            ax.axhline(line, color=_MUTED, linestyle="--", linewidth=1, label=f"threshold {line:g}")
        if chosen.any():
            best = float(k[chosen][0])
            ax.axvspan(best - 0.3, best + 0.3, color="#ffe08a", alpha=0.6, zorder=0)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    handles = axes[0].get_legend_handles_labels()[0]
    handles += [
        Line2D([], [], marker="o", linestyle="", color=_MUTED, label="eligible"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="white",
            color=_MUTED,
            label="not eligible",
        ),
    ]
    if chosen.any():
        handles.append(Patch(color="#ffe08a", label=f"chosen k = {int(k[chosen][0])}"))
    axes[0].legend(handles=handles, fontsize=8, loc="best", frameon=False)
    if "min_share" in table.columns:
        axes[-1].yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes[-1].set_xlabel("Number of segments k")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_title("Choosing the number of segments")
    return fig


@plain_text
def segment_stability(
    stability: pd.DataFrame | pd.Series,
    threshold: float = 0.75,
    *,
    name_col: str | None = "name",
    stability_col: str = "jaccard",
) -> Figure:
    """Bars of each segment's bootstrap stability (mean Jaccard) against a threshold.

    Parameters
    ----------
    stability : pandas.DataFrame or pandas.Series
        ``Segmenter.profiles_`` (a name column and a Jaccard column), or a Series
        of Jaccard values indexed by segment name.
    threshold : float, default 0.75
        Segments at or above it are stable (Hennig's rule of thumb); drawn as a line.
    name_col : str or None, default "name"
        Name column of a DataFrame; None uses its index.
    stability_col : str, default "jaccard"
        Jaccard column of a DataFrame.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with one bar per segment (first segment on top), coloured stable /
        unstable.

    Raises
    ------
    DataValidationError
        If a column is missing or values are not numeric.
    InsufficientDataError
        If there are no segments.
    """
    what = "segment_stability"
    if isinstance(stability, pd.Series):
        frame = pd.DataFrame({"jaccard": stability.to_numpy()}, index=stability.index)
        name_col, stability_col = None, "jaccard"
    else:
        frame = stability
    needed = [c for c in (name_col, stability_col) if c is not None]
    _require(frame, needed, what)
    values = _numeric(frame, stability_col, what)
    labels = (
        frame[name_col].astype(str).tolist()
        if name_col is not None
        else [str(i) for i in frame.index]
    )
    stable = values >= threshold
    fig = _figure(7.0, 1.3 + 0.45 * len(labels))
    ax = fig.add_subplot()
    positions = np.arange(len(labels))[::-1]
    bars = ax.barh(
        positions,
        np.nan_to_num(values, nan=0.0),
        tick_label=labels,
        color=[STATUS_COLORS["OK"] if s else STATUS_COLORS["DRIFT"] for s in stable],
    )
    ax.bar_label(
        bars, labels=[f"{v:.2f}" if math.isfinite(v) else "n/a" for v in values], padding=3
    )
    ax.axvline(threshold, color=_MUTED, linestyle="--", linewidth=1)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("Bootstrap stability (mean Jaccard)")
    ax.set_ylabel("Segment")
    ax.set_title("Segment stability")
    ax.legend(
        handles=[
            Patch(color=STATUS_COLORS["OK"], label=f"stable (>= {threshold:g})"),
            Patch(color=STATUS_COLORS["DRIFT"], label="unstable"),
            Line2D([], [], color=_MUTED, linestyle="--", label="threshold"),
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        frameon=False,
    )
    ax.spines[["top", "right"]].set_visible(False)
    return fig
