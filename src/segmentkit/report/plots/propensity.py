"""Figures about propensity scores: distributions, outcomes, calibration, lift."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from segmentkit.errors import DataValidationError, InsufficientDataError
from segmentkit.report.plots._common import (
    _CURRENT_COLOR,
    _MUTED,
    _OBSERVED_COLOR,
    _PREDICTED_COLOR,
    _figure,
    _label_names,
    _numeric,
    _panel_grid,
    _require,
    _select_models,
    _split_by_target,
    plain_text,
    segment_colors,
)
from segmentkit.report.plots.drift import _backtests
from segmentkit.text import natural_key


def _score_column(scores: pd.DataFrame, target: str, column: str | None, what: str) -> str:
    if column is not None:
        _require(scores, [column], what)
        return column
    for candidate in (f"p_{target}", f"expected_{target}"):
        if isinstance(scores, pd.DataFrame) and candidate in scores.columns:
            return candidate
    _require(scores, [f"p_{target}"], what)  # raises, naming the column
    raise AssertionError("unreachable")  # pragma: no cover


@plain_text
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


@plain_text
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
        rows = rows.sort_values(segment_col, key=lambda s: s.map(natural_key), kind="stable")
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


def _model_rows_by_target(
    table: pd.DataFrame,
    needed: Sequence[str],
    target: str | None,
    model_col: str,
    target_col: str,
    what: str,
) -> list[tuple[str | None, pd.DataFrame]]:
    """Check ``needed`` columns and split per target; without a model column, one model."""
    _require(table, needed, what)
    if model_col not in table.columns:
        table = table.assign(**{model_col: "model"})
    return _split_by_target(table, target, target_col, what)


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


@plain_text
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
    groups = _model_rows_by_target(
        table, [predicted_col, observed_col], target, model_col, target_col, what
    )
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


@plain_text
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
    groups = _model_rows_by_target(
        table, [decile_col, lift_col], target, model_col, target_col, what
    )
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
