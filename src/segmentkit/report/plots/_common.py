"""Colours, figure helpers and input checks shared by the figure modules."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from segmentkit.errors import DataValidationError, InsufficientDataError
from segmentkit.text import inert_text, natural_key

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


def plain_text(function: Callable[..., Figure]) -> Callable[..., Figure]:
    r"""Make a figure function draw every string as given: a ``$`` never starts math mode.

    Segment, feature and event names come from data; in matplotlib's default
    mode ``"$5 and $10 buyers"`` renders as a formula and ``"$\x$"`` fails to draw.
    """

    @functools.wraps(function)
    def plain(*args: Any, **kwargs: Any) -> Figure:
        with matplotlib.rc_context({"text.parse_math": False}):
            return function(*args, **kwargs)

    return plain


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


#: Longest name a chart shows: longer ones are cut with an ellipsis (tables keep them
#: whole), so one long name from the log cannot squeeze the plot to nothing.
LABEL_MAX = 48


def display_label(text: Any) -> str:
    """Return a name as a chart shows it: direction controls visible, cut to ``LABEL_MAX``.

    Examples
    --------
    >>> display_label("Champions")
    'Champions'
    >>> len(display_label("x" * 500)) == LABEL_MAX
    True
    """
    shown = inert_text(text)
    return shown if len(shown) <= LABEL_MAX else shown[: LABEL_MAX - 1] + "\u2026"


def _label_names(labels: Sequence[Any], names: Mapping[Any, str] | Sequence[str] | None) -> list:
    """Display name of each label: ``names[label]`` (mapping, or sequence by position)."""
    if names is None:
        return [display_label(label) for label in labels]
    if isinstance(names, Mapping):
        by_str = {str(k): str(v) for k, v in names.items()}
        return [display_label(by_str.get(str(label), str(label))) for label in labels]
    names = list(names)
    out = []
    for label in labels:
        try:
            out.append(display_label(names[int(label)]))
        except (ValueError, TypeError, IndexError):
            out.append(display_label(label))
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
    unique = sorted({str(label) for label in labels}, key=natural_key)
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
