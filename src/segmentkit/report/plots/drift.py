"""Figures about a refresh: feature PSI, share change, migration, backtests."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from segmentkit.errors import DataValidationError, InsufficientDataError
from segmentkit.report.plots._common import (
    _CURRENT_COLOR,
    _REFERENCE_COLOR,
    STATUS_COLORS,
    _figure,
    _label_names,
    _numeric,
    _pct,
    _require,
    plain_text,
)
from segmentkit.text import natural_key


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


@plain_text
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


@plain_text
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
    keys = sorted(set(reference) | set(current), key=natural_key)
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


@plain_text
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


@plain_text
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
