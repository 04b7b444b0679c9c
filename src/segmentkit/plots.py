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

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from segmentkit.errors import DataValidationError, InsufficientDataError

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

#: Colour of each drift status (``"n/a"`` when a value was not judged).
STATUS_COLORS: Mapping[str, str] = {
    "OK": "#4c9a2a",
    "WARN": "#e69f00",
    "DRIFT": "#c0392b",
    "n/a": "#8c8c8c",
}
_REFERENCE_COLOR = "#9ecae1"
_CURRENT_COLOR = "#08519c"
_OBSERVED_COLOR = "#08519c"
_PREDICTED_COLOR = "#fd8d3c"
_MUTED = "#555555"


# --------------------------------------------------------------------------- helpers


def _figure(width: float, height: float) -> Figure:
    """Make a figure with constrained layout, not registered with pyplot."""
    return Figure(figsize=(width, height), layout="constrained")


def _require(frame: Any, columns: Sequence[str], what: str) -> pd.DataFrame:
    """Check ``frame`` is a non-empty DataFrame holding ``columns``."""
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(
            f"{what}: expected a pandas DataFrame, got {type(frame).__name__}"
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{what}: missing column(s) {missing}; "
            f"columns present: {[str(c) for c in frame.columns]}"
        )
    if len(frame) == 0:
        raise InsufficientDataError(f"{what}: the table is empty, nothing to plot")
    return frame


def _numeric(frame: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """Column as floats, or a DataValidationError naming it."""
    try:
        return pd.to_numeric(frame[column], errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataValidationError(f"{what}: column {column!r} is not numeric") from None


def _natural_key(label: Any) -> tuple[int, float, str]:
    """Sort integer-like labels numerically and before the others."""
    text = str(label)
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _label_names(labels: Sequence[Any], names: Mapping[Any, str] | Sequence[str] | None) -> list:
    """Display name of each label: ``names[label]`` (mapping, or sequence by position)."""
    if names is None:
        return [str(label) for label in labels]
    if isinstance(names, Mapping):
        by_str = {str(k): str(v) for k, v in names.items()}
        return [by_str.get(str(label), str(label)) for label in labels]
    names = list(names)
    out = []
    for label in labels:
        try:
            out.append(str(names[int(label)]))
        except (ValueError, TypeError, IndexError):
            out.append(str(label))
    return out


def segment_colors(labels: Sequence[Hashable]) -> dict[str, str]:
    """Colour of each segment: ``tab10`` (``tab20`` beyond ten) in natural label order.

    Parameters
    ----------
    labels : sequence of hashable
        Segment labels (ids or names); duplicates are ignored. Integer-like labels
        sort numerically.

    Returns
    -------
    dict of str to str
        ``str(label)`` to a hex colour.

    Examples
    --------
    >>> segment_colors([1, 0, 1])
    {'0': '#1f77b4', '1': '#ff7f0e'}
    """
    unique = sorted({str(label) for label in labels}, key=_natural_key)
    cmap = colormaps["tab10" if len(unique) <= 10 else "tab20"]
    return {label: to_hex(cmap(i % cmap.N)) for i, label in enumerate(unique)}


def _pct(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f}%"


def _fold(lift: float) -> str:
    """Lift as a multiplier: ``2.3x``, ``0.45x``, ``12x``."""
    if not math.isfinite(lift):
        return "n/a"
    if lift >= 10:
        return f"{lift:.0f}x"
    if lift >= 1:
        return f"{lift:.1f}x"
    return f"{lift:.2f}x"


def _split_by_target(
    table: pd.DataFrame, target: str | None, target_col: str, what: str
) -> list[tuple[str | None, pd.DataFrame]]:
    """One ``(target, rows)`` pair per target (a single pair when no target column)."""
    if target is not None:
        _require(table, [target_col], what)
        rows = table[table[target_col].astype(str) == str(target)]
        if len(rows) == 0:
            known = sorted({str(t) for t in table[target_col]})
            raise DataValidationError(f"{what}: no rows for target {target!r}; targets: {known}")
        return [(str(target), rows)]
    if target_col in table.columns:
        targets = list(dict.fromkeys(table[target_col].astype(str)))
        return [(t, table[table[target_col].astype(str) == t]) for t in targets]
    return [(None, table)]


def _panel_grid(n: int, width: float, height: float) -> tuple[Figure, list[Axes]]:
    """``n`` side-by-side panels (wrapping after three)."""
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = _figure(width * cols, height * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _select_models(
    rows: pd.DataFrame, models: Sequence[str] | None, model_col: str, what: str
) -> list[str]:
    present = list(dict.fromkeys(rows[model_col].astype(str)))
    if models is None:
        return present
    unknown = [m for m in models if str(m) not in present]
    if unknown:
        raise DataValidationError(f"{what}: unknown model(s) {unknown}; models: {present}")
    return [str(m) for m in models]


# --------------------------------------------------------------------------- segments


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
    labels = (
        profiles[name_col].astype(str).tolist()
        if name_col is not None
        else [str(i) for i in profiles.index]
    )
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
    return lifts, rows, [str(f) for f in features]


def profile_heatmap(
    profiles: pd.DataFrame,
    features: Sequence[str] | None = None,
    *,
    name_col: str | None = "name",
    lift_prefix: str | None = "lift_",
    max_fold: float = 8.0,
    annotate: bool = True,
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

    n_rows, n_cols = lifts.shape
    fig = _figure(2.8 + 0.75 * n_cols, 1.6 + 0.45 * n_rows)
    ax = fig.add_subplot()
    cmap = colormaps["RdBu_r"].with_extremes(bad="#dddddd")
    image = ax.imshow(data, cmap=cmap, norm=Normalize(vmin=-limit, vmax=limit), aspect="auto")
    ax.set_xticks(np.arange(n_cols), labels=names, rotation=45, ha="right", rotation_mode="anchor")
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
    order = sorted(set(keys), key=_natural_key)
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


# --------------------------------------------------------------------------- propensity


def _score_column(scores: pd.DataFrame, target: str, column: str | None, what: str) -> str:
    if column is not None:
        _require(scores, [column], what)
        return column
    for candidate in (f"p_{target}", f"expected_{target}"):
        if isinstance(scores, pd.DataFrame) and candidate in scores.columns:
            return candidate
    _require(scores, [f"p_{target}"], what)  # raises, naming the column
    raise AssertionError("unreachable")  # pragma: no cover


def score_distributions(
    scores: pd.DataFrame,
    target: str,
    segments: str | Sequence[Any] | None = None,
    *,
    column: str | None = None,
    names: Mapping[Any, str] | Sequence[str] | None = None,
    bins: int = 40,
) -> Figure:
    """Distribution of one propensity score, overall or by segment.

    Overall: a histogram with the mean marked. By segment: one horizontal violin
    per segment (sorted by mean score, highest on top) with its mean marked.

    Parameters
    ----------
    scores : pandas.DataFrame
        Output of ``score_propensity`` or ``SegmentationModel.score``.
    target : str
        Target name; the column is ``p_<target>`` or, for count targets,
        ``expected_<target>``.
    segments : str or array-like, optional
        Column of ``scores`` holding segments (e.g. ``"segment_name"``) or the
        segment of each row.
    column : str, optional
        Score column to use instead of the one derived from ``target``.
    names : mapping or sequence of str, optional
        Display names of segment labels (see :func:`embedding_map`).
    bins : int, default 40
        Histogram bins (overall view).

    Returns
    -------
    matplotlib.figure.Figure
        One axes: a histogram (overall) or one violin body per segment.

    Raises
    ------
    DataValidationError
        If the score or segment column is missing, the scores are not numeric, or
        ``segments`` has the wrong length.
    InsufficientDataError
        If there is no finite score.
    """
    what = "score_distributions"
    score_col = _score_column(scores, target, column, what)
    _require(scores, [score_col], what)
    values = _numeric(scores, score_col, what)
    probability = score_col.startswith("p_")
    xlabel = f"Predicted probability ({target})" if probability else f"Expected count ({target})"
    finite = np.isfinite(values)
    if not finite.any():
        raise InsufficientDataError(f"{what}: column {score_col!r} has no finite scores")

    if segments is None:
        fig = _figure(7.0, 4.2)
        ax = fig.add_subplot()
        kept = values[finite]
        ax.hist(kept, bins=bins, color=_CURRENT_COLOR, alpha=0.85)
        mean = float(kept.mean())
        ax.axvline(mean, color=_PREDICTED_COLOR, linewidth=1.5, label=f"mean {mean:.3g}")
        ax.set_ylabel("Users")
        ax.legend(frameon=False)
        ax.set_title(f"Distribution of {score_col} ({int(finite.sum()):,} users)")
    else:
        if isinstance(segments, str):
            _require(scores, [segments], what)
            labels = scores[segments].to_numpy(dtype=object)
        else:
            labels = np.asarray(segments, dtype=object).ravel()
            if labels.size != len(scores):
                raise DataValidationError(
                    f"{what}: {labels.size} segment labels for {len(scores)} score rows"
                )
        keep = finite & pd.notna(labels)
        frame = pd.DataFrame(
            {"segment": pd.Series(labels[keep]).astype(str), "score": values[keep]}
        )
        groups = frame.groupby("segment", sort=False)["score"]
        means = groups.mean().sort_values(kind="stable")  # lowest first = bottom
        data = [groups.get_group(s).to_numpy() for s in means.index]
        display = _label_names(list(means.index), names)
        counts = [len(d) for d in data]
        fig = _figure(7.5, 1.4 + 0.55 * len(data))
        ax = fig.add_subplot()
        positions = np.arange(1, len(data) + 1)
        parts = ax.violinplot(
            data, positions=positions, orientation="horizontal", showextrema=False, widths=0.8
        )
        colors = segment_colors(list(means.index))
        for body, key in zip(parts["bodies"], means.index, strict=True):
            body.set_facecolor(colors[key])
            body.set_alpha(0.7)
        ax.scatter(means.to_numpy(), positions, color="black", s=18, zorder=3, label="mean")
        ax.set_yticks(
            positions, labels=[f"{d} (n={n:,})" for d, n in zip(display, counts, strict=True)]
        )
        ax.set_ylabel("Segment")
        ax.legend(frameon=False, loc="lower right")
        ax.set_title(f"Distribution of {score_col} by segment")
    ax.set_xlabel(xlabel)
    if probability:
        ax.set_xlim(left=0)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def outcome_by_segment(
    table: pd.DataFrame,
    *,
    target: str | None = None,
    names: Mapping[Any, str] | Sequence[str] | None = None,
    segment_col: str = "segment",
    observed_col: str = "observed",
    predicted_col: str = "mean_predicted",
    users_col: str | None = "users",
    target_col: str = "target",
) -> Figure:
    """Observed outcome rate beside the mean predicted score, per segment.

    Parameters
    ----------
    table : pandas.DataFrame
        ``PropensityEvaluation.segments``: ``target, segment, users, observed,
        mean_predicted`` (out of time, chosen model). Without a target column the
        whole table is one target.
    target : str, optional
        Plot only this target; default one panel per target.
    names : mapping or sequence of str, optional
        Display names of segment labels (see :func:`embedding_map`).
    segment_col, observed_col, predicted_col, users_col, target_col : str
        Column names; ``users_col=None`` leaves counts out of the labels.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per target, each with two bars per segment (observed, predicted).

    Raises
    ------
    DataValidationError
        If a column is missing or not numeric, or ``target`` has no rows.
    InsufficientDataError
        If the table is empty.
    """
    what = "outcome_by_segment"
    needed = [segment_col, observed_col, predicted_col] + ([users_col] if users_col else [])
    _require(table, needed, what)
    groups = _split_by_target(table, target, target_col, what)
    n_segments = max(len(rows) for _, rows in groups)
    fig, axes = _panel_grid(len(groups), max(5.0, 1.2 + 0.9 * n_segments), 4.4)
    width = 0.4
    for ax, (name, rows) in zip(axes, groups, strict=True):
        rows = rows.sort_values(segment_col, key=lambda s: s.map(_natural_key), kind="stable")
        observed = _numeric(rows, observed_col, what)
        predicted = _numeric(rows, predicted_col, what)
        x = np.arange(len(rows))
        ax.bar(x - width / 2, observed, width, label="observed", color=_OBSERVED_COLOR)
        ax.bar(x + width / 2, predicted, width, label="mean predicted", color=_PREDICTED_COLOR)
        labels = _label_names(rows[segment_col].tolist(), names)
        if users_col:
            users = _numeric(rows, users_col, what)
            labels = [
                f"{label}\n(n={int(u):,})" if math.isfinite(u) else label
                for label, u in zip(labels, users, strict=True)
            ]
        ax.set_xticks(
            x,
            labels=labels,
            rotation=30 if len(x) > 5 else 0,
            ha="right" if len(x) > 5 else "center",
        )
        ax.set_xlabel("Segment")
        ax.set_ylabel("Mean per user (rate for binary targets)")
        ax.set_title("Outcome vs prediction by segment" + (f": {name}" if name else ""))
        ax.legend(frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
    return fig


def calibration_frame(backtests: Any) -> pd.DataFrame:
    """Calibration bins of propensity backtests as a table for :func:`calibration`.

    Parameters
    ----------
    backtests : DriftReport, BacktestResult or sequence of BacktestResult
        From :mod:`segmentkit.drift`.

    Returns
    -------
    pandas.DataFrame
        ``target, model, bin, users, mean_predicted, observed`` with model
        ``"backtest"`` and bins numbered from 0 (lowest scores).
    """
    rows = [
        {
            "target": b.target,
            "model": "backtest",
            "bin": i,
            "users": c.n,
            "mean_predicted": c.mean_predicted,
            "observed": c.observed_rate,
        }
        for b in _backtests(backtests, "calibration_frame")
        for i, c in enumerate(b.calibration)
    ]
    return pd.DataFrame(
        rows, columns=["target", "model", "bin", "users", "mean_predicted", "observed"]
    )


def calibration(
    table: Any,
    *,
    target: str | None = None,
    models: Sequence[str] | None = None,
    model_col: str = "model",
    predicted_col: str = "mean_predicted",
    observed_col: str = "observed",
    target_col: str = "target",
) -> Figure:
    """Reliability diagram: mean predicted probability vs observed rate per bin.

    Parameters
    ----------
    table : pandas.DataFrame, DriftReport, BacktestResult or sequence of them
        ``PropensityEvaluation.calibration`` (``target, model, bin, lower, upper,
        users, mean_predicted, observed``), or backtests (converted with
        :func:`calibration_frame`). Without a model column all rows are one model;
        without a target column, one target.
    target : str, optional
        Plot only this target; default one panel per target.
    models : sequence of str, optional
        Models to draw, in order; default all.
    model_col, predicted_col, observed_col, target_col : str
        Column names.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per target, each with one line per model and the diagonal.

    Raises
    ------
    DataValidationError
        If a column is missing or not numeric, or a target or model is unknown.
    InsufficientDataError
        If the table is empty.
    """
    what = "calibration"
    if not isinstance(table, pd.DataFrame):
        table = calibration_frame(table)
    _require(table, [predicted_col, observed_col], what)
    if model_col not in table.columns:
        table = table.assign(**{model_col: "model"})
    groups = _split_by_target(table, target, target_col, what)
    fig, axes = _panel_grid(len(groups), 5.2, 5.0)
    palette = colormaps["tab10"]
    for ax, (name, rows) in zip(axes, groups, strict=True):
        chosen = _select_models(rows, models, model_col, what)
        top = 0.0
        for i, model in enumerate(chosen):
            part = rows[rows[model_col].astype(str) == model]
            x = _numeric(part, predicted_col, what)
            y = _numeric(part, observed_col, what)
            order = np.argsort(x, kind="stable")
            ax.plot(
                x[order], y[order], marker="o", markersize=4, color=palette(i % 10), label=model
            )
            top = max(top, float(np.nanmax(x)), float(np.nanmax(y)))
        limit = min(1.0, max(top, 0.01) * 1.08)
        ax.plot([0, limit], [0, limit], color=_MUTED, linestyle="--", linewidth=1, label="perfect")
        ax.set_xlim(0, limit)
        ax.set_ylim(0, limit)
        ax.set_aspect("equal")
        ax.set_xlabel("Mean predicted probability")
        ax.set_ylabel("Observed rate")
        ax.set_title("Calibration" + (f": {name}" if name else ""))
        ax.legend(frameon=False, fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
    return fig


def lift_by_decile(
    table: pd.DataFrame,
    *,
    target: str | None = None,
    models: Sequence[str] | None = None,
    model_col: str = "model",
    decile_col: str = "decile",
    lift_col: str = "lift",
    target_col: str = "target",
) -> Figure:
    """Lift of each score decile (decile 1 = highest scores), one bar per model.

    Parameters
    ----------
    table : pandas.DataFrame
        ``PropensityEvaluation.deciles``: ``target, model, decile, users,
        mean_predicted, observed, lift``. Without a model column all rows are one
        model; without a target column, one target.
    target : str, optional
        Plot only this target; default one panel per target.
    models : sequence of str, optional
        Models to draw, in order (e.g. ``["model", "recency", "rfm"]``); default all.
    model_col, decile_col, lift_col, target_col : str
        Column names.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per target with ``deciles x models`` bars and a line at lift 1.

    Raises
    ------
    DataValidationError
        If a column is missing or not numeric, or a target or model is unknown.
    InsufficientDataError
        If the table is empty.
    """
    what = "lift_by_decile"
    _require(table, [decile_col, lift_col], what)
    if model_col not in table.columns:
        table = table.assign(**{model_col: "model"})
    groups = _split_by_target(table, target, target_col, what)
    fig, axes = _panel_grid(len(groups), 6.5, 4.2)
    palette = colormaps["tab10"]
    for ax, (name, rows) in zip(axes, groups, strict=True):
        chosen = _select_models(rows, models, model_col, what)
        deciles = sorted(set(_numeric(rows, decile_col, what).tolist()))
        position = {d: i for i, d in enumerate(deciles)}
        width = 0.8 / len(chosen)
        for i, model in enumerate(chosen):
            part = rows[rows[model_col].astype(str) == model]
            x = np.array([position[d] for d in _numeric(part, decile_col, what)], dtype=float)
            offset = (i - (len(chosen) - 1) / 2) * width
            ax.bar(
                x + offset,
                _numeric(part, lift_col, what),
                width,
                color=palette(i % 10),
                label=model,
            )
        ax.axhline(1.0, color=_MUTED, linestyle="--", linewidth=1, label="random (1x)")
        ax.set_xticks(np.arange(len(deciles)), labels=[f"{d:g}" for d in deciles])
        ax.set_xlabel("Score decile (1 = highest scores)")
        ax.set_ylabel("Lift (observed rate / base rate)")
        ax.set_title("Lift by decile" + (f": {name}" if name else ""))
        ax.legend(frameon=False, fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    return fig


# --------------------------------------------------------------------------- drift


def _is_report(value: Any) -> bool:
    return hasattr(value, "feature_results") and hasattr(value, "backtests")


def _psi_frame(report: Any) -> tuple[pd.DataFrame, float | None, float | None]:
    results = report.feature_results("psi")
    frame = pd.DataFrame(
        {
            "feature": [r.subject for r in results],
            "psi": [float(r.score) for r in results],
            "status": [r.status for r in results],
        }
    )
    warn = next((r.warn_threshold for r in results if r.warn_threshold is not None), None)
    drift = next((r.drift_threshold for r in results if r.drift_threshold is not None), None)
    return frame, warn, drift


def feature_psi(
    report: Any,
    *,
    warn: float | None = None,
    drift: float | None = None,
    top: int | None = None,
    feature_col: str = "feature",
    psi_col: str = "psi",
    status_col: str = "status",
) -> Figure:
    """Plot the population stability index of each feature, largest on top, by status.

    Parameters
    ----------
    report : DriftReport or pandas.DataFrame
        A :class:`~segmentkit.drift.DriftReport` (its ``psi`` results and their
        thresholds are used) or a table with feature and PSI columns and optionally
        a status column (``OK``/``WARN``/``DRIFT``). Without one, statuses come
        from the thresholds (``psi >= threshold``), or are ``n/a``.
    warn, drift : float, optional
        Threshold lines; default those of the report.
    top : int, optional
        Show only the ``top`` features with the largest PSI.
    feature_col, psi_col, status_col : str
        Column names of a table.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with one bar per feature shown.

    Raises
    ------
    DataValidationError
        If a column is missing, PSI is not numeric or a status is unknown.
    InsufficientDataError
        If there is no PSI result.
    """
    what = "feature_psi"
    if _is_report(report):
        frame, report_warn, report_drift = _psi_frame(report)
        if frame.empty:
            raise InsufficientDataError(f"{what}: the report holds no PSI results")
        warn = report_warn if warn is None else warn
        drift = report_drift if drift is None else drift
        feature_col, psi_col, status_col = "feature", "psi", "status"
    else:
        frame = _require(report, [feature_col, psi_col], what)
    psi = _numeric(frame, psi_col, what)
    if status_col in frame.columns:
        status = frame[status_col].astype(str).tolist()
        unknown = sorted(set(status) - set(STATUS_COLORS))
        if unknown:
            raise DataValidationError(
                f"{what}: unknown status(es) {unknown} in column {status_col!r}; "
                f"expected {list(STATUS_COLORS)}"
            )
    else:
        status = [
            "DRIFT"
            if drift is not None and p >= drift
            else "WARN"
            if warn is not None and p >= warn
            else "OK"
            if warn is not None or drift is not None
            else "n/a"
            for p in psi
        ]
    order = np.argsort(-np.nan_to_num(psi, nan=-np.inf), kind="stable")
    if top is not None:
        order = order[: max(int(top), 1)]
    labels = frame[feature_col].astype(str).to_numpy()[order]
    shown = psi[order]
    colors = [STATUS_COLORS[status[i]] for i in order]

    fig = _figure(7.5, 1.4 + 0.32 * len(order))
    ax = fig.add_subplot()
    positions = np.arange(len(order))[::-1]
    bars = ax.barh(positions, np.nan_to_num(shown, nan=0.0), color=colors, tick_label=labels)
    ax.bar_label(bars, labels=[f"{p:.3f}" for p in shown], padding=3, fontsize=8)
    handles = []
    for value, name, style in ((warn, "WARN", ":"), (drift, "DRIFT", "--")):
        if value is not None:
            ax.axvline(value, color=STATUS_COLORS[name], linestyle=style, linewidth=1.2)
            handles.append(
                Line2D(
                    [], [], color=STATUS_COLORS[name], linestyle=style, label=f"{name} >= {value:g}"
                )
            )
    used = list(dict.fromkeys(status[i] for i in order))
    handles += [Patch(color=STATUS_COLORS[s], label=s) for s in STATUS_COLORS if s in used]
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
    )
    right = max(
        [float(np.nanmax(shown)) if np.isfinite(shown).any() else 0.0, warn or 0, drift or 0]
    )
    ax.set_xlim(0, max(right, 0.01) * 1.2)
    ax.set_xlabel("Population stability index (PSI)")
    ax.set_ylabel("Feature")
    ax.set_title("Feature drift (PSI vs reference)")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _shares(value: Any, what: str, side: str) -> dict[str, float]:
    if isinstance(value, pd.Series):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise DataValidationError(
            f"{what}: {side} shares must be a mapping or Series of segment to share, "
            f"got {type(value).__name__}"
        )
    out: dict[str, float] = {}
    for key, share in value.items():
        try:
            number = float(share)
        except (TypeError, ValueError):
            raise DataValidationError(f"{what}: {side} share of {key!r} is not a number") from None
        if not math.isfinite(number) or number < 0:
            raise DataValidationError(
                f"{what}: {side} share of {key!r} must be >= 0, got {share!r}"
            )
        out[str(key)] = number
    return out


def share_change(
    reference_shares: Any,
    current_shares: Mapping[Any, float] | pd.Series | None = None,
    names: Mapping[Any, str] | Sequence[str] | None = None,
) -> Figure:
    """Paired bars of each segment's share at training (reference) and now.

    Parameters
    ----------
    reference_shares : mapping, Series, DriftReport or DriftResult
        Segment to share at training (e.g. the bundle's ``segment_shares``); or a
        report / ``share_psi`` result, whose per-segment shares are used (then
        leave ``current_shares`` out).
    current_shares : mapping or Series, optional
        Segment to share now. Segments are matched by ``str(label)``; a segment on
        one side only has share 0 on the other.
    names : mapping or sequence of str, optional
        Display names of segment labels (see :func:`embedding_map`).

    Returns
    -------
    matplotlib.figure.Figure
        One axes with two bars per segment (reference, current), each pair labelled
        with the change in percentage points.

    Raises
    ------
    DataValidationError
        If shares are not non-negative numbers, or a report has no share result.
    InsufficientDataError
        If there are no segments.
    """
    what = "share_change"
    subtitle = ""
    if current_shares is None:
        result = reference_shares.share if _is_report(reference_shares) else reference_shares
        segments = getattr(result, "details", {}).get("segments") if result is not None else None
        if not segments:
            raise DataValidationError(
                f"{what}: pass reference and current shares, or a DriftReport / share_psi "
                "result holding per-segment shares"
            )
        reference = {str(d["segment"]): float(d["reference_share"]) for d in segments}
        current = {str(d["segment"]): float(d["current_share"]) for d in segments}
        subtitle = f" (share PSI {result.score:.3f}, {result.status})"
    else:
        reference = _shares(reference_shares, what, "reference")
        current = _shares(current_shares, what, "current")
    keys = sorted(set(reference) | set(current), key=_natural_key)
    if not keys:
        raise InsufficientDataError(f"{what}: no segment shares to plot")
    ref = np.array([reference.get(k, 0.0) for k in keys])
    cur = np.array([current.get(k, 0.0) for k in keys])
    labels = _label_names(keys, names)

    fig = _figure(7.5, 1.4 + 0.6 * len(keys))
    ax = fig.add_subplot()
    positions = np.arange(len(keys))[::-1].astype(float)
    height = 0.38
    ax.barh(positions + height / 2, ref, height, color=_REFERENCE_COLOR, label="reference")
    bars = ax.barh(positions - height / 2, cur, height, color=_CURRENT_COLOR, label="current")
    ax.bar_label(
        bars,
        labels=[f"{100 * (c - r):+.1f} pp" for r, c in zip(ref, cur, strict=True)],
        padding=3,
        fontsize=8,
    )
    ax.set_yticks(positions, labels=labels)
    ax.set_xlim(0, min(1.0, float(max(ref.max(), cur.max())) * 1.3 + 0.02))
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_xlabel("Share of users")
    ax.set_ylabel("Segment")
    ax.set_title("Segment shares: reference vs current" + subtitle)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def migration_heatmap(
    migration: Any,
    normalize: str | None = "row",
    names: Mapping[Any, str] | Sequence[str] | None = None,
    *,
    annotate: bool = True,
) -> Figure:
    """Heatmap of users moving from their previous segment (rows) to the current one.

    Parameters
    ----------
    migration : MigrationResult or pandas.DataFrame
        :class:`~segmentkit.drift.MigrationResult` or its ``counts``: previous
        segments as rows (plus ``(new user)``), current segments as columns (plus
        ``(gone)``), non-negative counts.
    normalize : {"row", "column", "all"} or None, default "row"
        Colour by the share of each row (where the previous segment's users went),
        of each column, of all users, or by raw counts. An all-zero row or column
        gets zeros.
    names : mapping or sequence of str, optional
        Display names of segment labels (see :func:`embedding_map`).
    annotate : bool, default True
        Write the share and count (or the count) in each cell.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the heatmap (an ``AxesImage`` holding the coloured values) and
        its colour bar.

    Raises
    ------
    DataValidationError
        If ``normalize`` is unknown or counts are not non-negative numbers.
    InsufficientDataError
        If the matrix is empty.
    """
    what = "migration_heatmap"
    if normalize not in ("row", "column", "all", None):
        raise DataValidationError(
            f"{what}: normalize must be 'row', 'column', 'all' or None, got {normalize!r}"
        )
    counts = getattr(migration, "counts", migration)
    if not isinstance(counts, pd.DataFrame):
        raise DataValidationError(
            f"{what}: expected a MigrationResult or a DataFrame of counts, "
            f"got {type(migration).__name__}"
        )
    if counts.shape[0] == 0 or counts.shape[1] == 0:
        raise InsufficientDataError(f"{what}: the migration matrix is empty, nothing to plot")
    try:
        values = counts.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise DataValidationError(f"{what}: counts must be numeric") from None
    if not np.isfinite(values).all() or (values < 0).any():
        raise DataValidationError(f"{what}: counts must be finite and non-negative")
    if normalize == "row":
        totals = values.sum(axis=1, keepdims=True)
    elif normalize == "column":
        totals = values.sum(axis=0, keepdims=True)
    elif normalize == "all":
        totals = np.full((1, 1), values.sum())
    else:
        totals = np.ones((1, 1))
    shown = values / np.where(totals == 0, 1.0, totals)

    rows = _label_names(list(counts.index), names)
    cols = _label_names(list(counts.columns), names)
    fig = _figure(2.8 + 0.85 * len(cols), 1.8 + 0.5 * len(rows))
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(float(values.max()), 1.0)
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(
        np.arange(len(cols)), labels=cols, rotation=45, ha="right", rotation_mode="anchor"
    )
    ax.set_yticks(np.arange(len(rows)), labels=rows)
    ax.set_xlabel("Current segment")
    ax.set_ylabel("Previous segment")
    share_of = {"row": "previous segment", "column": "current segment", "all": "all users"}
    ax.set_title(
        "Segment migration" + (f" (share of {share_of[normalize]})" if normalize else " (users)")
    )
    if annotate:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                text = (
                    f"{_pct(shown[i, j], 0)}\n{int(values[i, j]):,}"
                    if normalize
                    else f"{int(values[i, j]):,}"
                )
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shown[i, j] > 0.6 * vmax else "black",
                )
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    if normalize:
        bar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    bar.set_label("Share of users" if normalize else "Users")
    return fig


def _backtests(backtests: Any, what: str) -> list[Any]:
    if _is_report(backtests):
        items = list(backtests.backtests)
    elif hasattr(backtests, "calibration") and hasattr(backtests, "auc"):
        items = [backtests]
    elif isinstance(backtests, Sequence) and not isinstance(backtests, str):
        items = list(backtests)
    else:
        raise DataValidationError(
            f"{what}: expected a DriftReport, a BacktestResult or a sequence of them, "
            f"got {type(backtests).__name__}"
        )
    bad = [type(b).__name__ for b in items if not hasattr(b, "training_auc")]
    if bad:
        raise DataValidationError(f"{what}: not BacktestResults: {bad}")
    if not items:
        raise InsufficientDataError(f"{what}: no propensity backtests")
    return items


def backtest_frame(backtests: Any) -> pd.DataFrame:
    """Propensity backtests as a table: AUC and Brier at training and now, and status.

    Parameters
    ----------
    backtests : DriftReport, BacktestResult or sequence of BacktestResult
        From :mod:`segmentkit.drift`.

    Returns
    -------
    pandas.DataFrame
        One row per target: ``target, users, auc_training, auc_now, auc_drop,
        brier_training, brier_now, brier_change, predicted_total, observed_total,
        status``.

    Raises
    ------
    DataValidationError
        If an item is not a backtest result.
    InsufficientDataError
        If there is no backtest.
    """
    rows = [
        {
            "target": b.target,
            "users": int(b.n),
            "auc_training": float(b.training_auc),
            "auc_now": float(b.auc),
            "auc_drop": float(b.auc_drop),
            "brier_training": float(b.training_brier),
            "brier_now": float(b.brier),
            "brier_change": float(b.brier_change),
            "predicted_total": float(b.predicted_total),
            "observed_total": float(b.observed_total),
            "status": str(b.status),
        }
        for b in _backtests(backtests, "backtest_frame")
    ]
    return pd.DataFrame(rows)


def backtest_table(backtests: Any) -> Figure:
    """Render propensity backtests as a small table, status cells coloured.

    Parameters
    ----------
    backtests : DriftReport, BacktestResult, sequence of BacktestResult or DataFrame
        Backtests, or a table from :func:`backtest_frame`.

    Returns
    -------
    matplotlib.figure.Figure
        One axes (axis hidden) holding a ``matplotlib.table.Table`` with a header
        row and one row per target.

    Raises
    ------
    DataValidationError
        If a column of a table is missing or an item is not a backtest result.
    InsufficientDataError
        If there is no backtest.
    """
    what = "backtest_table"
    frame = backtest_frame(backtests) if not isinstance(backtests, pd.DataFrame) else backtests
    columns = {
        "target": "target",
        "users": "users",
        "auc_training": "AUC\ntraining",
        "auc_now": "AUC\nnow",
        "auc_drop": "AUC\ndrop",
        "brier_training": "Brier\ntraining",
        "brier_now": "Brier\nnow",
        "predicted_total": "predicted /\nobserved",
        "status": "status",
    }
    _require(frame, [*columns, "observed_total"], what)

    def fmt(value: Any, digits: int = 3) -> str:
        number = float(value)
        return f"{number:.{digits}f}" if math.isfinite(number) else "n/a"

    cells = [
        [
            str(row["target"]),
            f"{int(row['users']):,}",
            fmt(row["auc_training"]),
            fmt(row["auc_now"]),
            f"{float(row['auc_drop']):+.3f}",
            fmt(row["brier_training"]),
            fmt(row["brier_now"]),
            f"{float(row['predicted_total']):,.0f} / {float(row['observed_total']):,.0f}",
            str(row["status"]),
        ]
        for _, row in frame.iterrows()
    ]
    fig = _figure(9.5, 1.3 + 0.4 * len(cells))
    ax = fig.add_subplot()
    ax.axis("off")
    table = ax.table(
        cellText=cells, colLabels=list(columns.values()), loc="center", cellLoc="center"
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.9)
    status_column = len(columns) - 1
    for i, row in enumerate(cells, start=1):
        color = STATUS_COLORS.get(row[status_column], STATUS_COLORS["n/a"])
        cell = table[i, status_column]
        cell.set_facecolor(color)
        cell.get_text().set_color("white")
    for j in range(len(columns)):
        table[0, j].set_facecolor("#eeeeee")
    ax.set_title("Propensity backtest: champion then vs now")
    return fig
