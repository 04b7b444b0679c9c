"""A segment report people open in a browser: one self-contained HTML file.

No network, no script: CSS is inline and every chart is an inline SVG drawn by
:mod:`segmentkit.plots` (text kept as text, so it is readable, searchable and
prints sharply). Sections: what the model is (facts), the segment table (id ·
name, share, description, key features against the population), the profile
heatmap and segment sizes, propensity lift and calibration charts, and, after a
refresh, the verdict with its recommendation, the findings, and the migration
matrix between named segments.

Everything here is an aggregate: no user id or row enters the page.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segmentkit.models.segmentation import separation_note
from segmentkit.report import plots
from segmentkit.text import DIRECTION_CONTROLS, inert_text
from segmentkit.version import __version__

__all__ = [
    "ReportContent",
    "figure_svg",
    "migration_table",
    "model_report",
    "propensity_figures",
    "render_html",
    "segment_figures",
    "segment_summary",
]

#: Propensity models drawn in the charts: the chosen one and the two baselines.
_SHOWN_MODELS = ("model", "recency", "rfm")

#: What :func:`inert_text` writes for each direction control, escaped for markup.
_CONTROLS_IN_MARKUP = {code: html.escape(shown) for code, shown in DIRECTION_CONTROLS.items()}

_STATUS_COLORS = {"OK": "#2e7d32", "WARN": "#b26a00", "DRIFT": "#b3261e"}

_CSS = """
:root { --ink: #1d1d1f; --muted: #5f6368; --line: #d9dce1; --band: #f5f6f8; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; color: var(--ink); margin: 0; line-height: 1.45; font-size: 15px; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 32px 0 10px; padding-bottom: 4px;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 1.05em; margin: 20px 0 8px; }
p.lead { color: var(--muted); margin: 0 0 16px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 12px; font-size: 0.92em; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
h1, h2, h3, p, dd, dt, th, td, figcaption { overflow-wrap: anywhere; }
th { background: var(--band); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
thead th { overflow-wrap: break-word; }
thead th.num { white-space: normal; }
tbody th { min-width: 10em; }
.table-wrap { overflow-x: auto; }
tr:nth-child(even) td { background: #fbfbfc; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff;
  font-weight: 700;
  letter-spacing: 0.03em; }
.verdict { border: 2px solid var(--line); border-radius: 8px; padding: 12px 16px; margin: 12px 0; }
.verdict p { margin: 6px 0; }
.recommendation { font-weight: 600; }
figure { margin: 12px 0 20px; break-inside: avoid; page-break-inside: avoid; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 0.9em; margin-top: 4px; }
.note { color: var(--muted); font-size: 0.9em; }
footer { margin-top: 40px; color: var(--muted); font-size: 0.85em; }
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; page-break-after: avoid; }
  table, .verdict { break-inside: avoid; page-break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


@dataclass
class ReportContent:
    """What one report shows; every part but the title is optional.

    Attributes
    ----------
    title : str
    facts : sequence of (label, value)
        Headline facts (model, version, snapshot, users, k, package version).
    segments : pandas.DataFrame, optional
        From :func:`segment_summary`.
    figures : mapping of str to (Figure, caption)
        Charts in order, each rendered as an inline SVG.
    tables : mapping of str to DataFrame
        Extra aggregate tables (e.g. propensity metrics), rendered as they are.
    verdict : Verdict, optional
        The refresh verdict (status, recommendation, findings).
    migration : pandas.DataFrame, optional
        From :func:`migration_table`.
    notes : sequence of str
        Sentences shown under the facts.
    """

    title: str
    facts: Sequence[tuple[str, str]] = ()
    segments: pd.DataFrame | None = None
    figures: Mapping[str, tuple[Any, str]] = field(default_factory=dict)
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    verdict: Any = None
    migration: pd.DataFrame | None = None
    drift_tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    notes: Sequence[str] = ()


def _esc(value: Any) -> str:
    """Text for the page: HTML-escaped (quotes too), direction controls shown as code points."""
    return html.escape(inert_text(value), quote=True)


def _fold(lift: float) -> str:
    if not math.isfinite(lift):
        return "n/a"
    return f"{lift:.1f}x" if lift < 10 else f"{lift:.0f}x"


def segment_summary(segmenter: Any, n_key_features: int = 3) -> pd.DataFrame:
    """One row per segment: ``segment`` (``id · name``), share, users, description, key features.

    Key features are the ``n_key_features`` ratio features whose lift against the
    population is furthest from 1x (either way), written ``"revenue_90d 5.2x"``.

    Parameters
    ----------
    segmenter : Segmenter
        A fitted segmenter (its ``profiles_`` hold sizes, shares and lifts).
    n_key_features : int, default 3

    Returns
    -------
    pandas.DataFrame
    """
    from segmentkit.report.review import lift_features

    profiles = segmenter.profiles_
    ratio = lift_features(segmenter)
    rows = []
    for seg_id, row in profiles.iterrows():
        lifts = []
        for feature in ratio:
            value = float(row.get(f"lift_{feature}", np.nan))
            if math.isfinite(value) and value > 0:
                lifts.append((abs(math.log(value)), feature, value))
        lifts.sort(reverse=True)
        rows.append(
            {
                "segment": f"{seg_id} · {row['name']}",
                "share": float(row["share"]),
                "users": int(row["size"]),
                "description": str(row.get("description", "")),
                "key features vs population": ", ".join(
                    f"{feature} {_fold(value)}" for _, feature, value in lifts[:n_key_features]
                ),
            }
        )
    return pd.DataFrame(rows)


def _label(segment: Any, names: Sequence[str] | None) -> str:
    text = str(segment)
    if names is None:
        return text
    try:
        index = int(text)
    except ValueError:
        return text
    return f"{text} · {names[index]}" if 0 <= index < len(names) else text


def migration_table(migration: Any, names: Sequence[str] | None) -> pd.DataFrame:
    """Return the migration matrix labelled ``id · name`` (``(new user)``, ``(gone)`` kept)."""
    counts = migration.counts
    return pd.DataFrame(
        counts.to_numpy(),
        index=[_label(i, names) for i in counts.index],
        columns=[_label(c, names) for c in counts.columns],
    )


def figure_svg(figure: Any, key: str, description: str = "") -> str:
    """Render a matplotlib figure as inline SVG markup.

    Text stays text (``svg.fonttype: none``), and ids are salted and prefixed with
    ``key`` so that several figures share a page without clashing and the output
    is deterministic. The figure keeps its natural size (the page's CSS only shrinks
    it to fit a narrow window), so every chart's text has the same size.
    """
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": f"segmentkit-{key}", "font.size": 10}
    ):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    markup = buffer.getvalue()
    markup = markup[markup.index("<svg") :]
    # Matplotlib names groups "figure_1", "axes_1", ... in every figure: prefix every
    # id (and every reference to one) so that ids stay unique on the page.
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", key)
    for ident in set(re.findall(r'\bid="([^"]+)"', markup)):
        markup = (
            markup.replace(f'id="{ident}"', f'id="{prefix}-{ident}"')
            .replace(f"url(#{ident})", f"url(#{prefix}-{ident})")
            .replace(f'href="#{ident}"', f'href="#{prefix}-{ident}"')
        )
    # Text in the charts comes from the log too: direction controls become visible.
    markup = markup.translate(_CONTROLS_IN_MARKUP)
    label = _esc(description or key)
    return markup.replace("<svg", f'<svg role="img" aria-label="{label}"', 1)


def _cell(value: Any) -> tuple[str, bool]:
    if isinstance(value, bool | np.bool_):
        return ("yes" if value else "no"), False
    if isinstance(value, int | np.integer):
        return f"{int(value):,}", True
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return "n/a", True
        return (f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"), True
    return _esc(str(value)), False


def _table(frame: pd.DataFrame, *, index: bool = False, percent: Sequence[str] = ()) -> str:
    columns = list(frame.columns)
    head = "".join(
        f'<th class="num">{_esc(str(c))}</th>'
        if pd.api.types.is_numeric_dtype(frame[c])
        else f"<th>{_esc(str(c))}</th>"
        for c in columns
    )
    if index:
        head = f"<th>{_esc(str(frame.index.name or ''))}</th>" + head
    body = []
    for label, row in frame.iterrows():
        cells = []
        if index:
            cells.append(f"<th>{_esc(str(label))}</th>")
        for column in columns:
            value = row[column]
            if (
                column in percent
                and isinstance(value, float | np.floating)
                and math.isfinite(value)
            ):
                text, numeric = f"{100 * value:.1f}%", True
            else:
                text, numeric = _cell(value)
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    # Column headers wrap and row labels keep a readable width (a migration table's
    # long segment names squeezed them to a letter per line); a table wider than the
    # page still scrolls inside its own box, not the page.
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _badge(status: str) -> str:
    color = _STATUS_COLORS.get(status, "#5f6368")
    return f'<span class="badge" style="background:{color}">{_esc(status)}</span>'


def _verdict_html(verdict: Any) -> str:
    border = _STATUS_COLORS.get(verdict.status, "#d9dce1")
    parts = [
        f'<div class="verdict" style="border-color:{border}">',
        f"<p>Refresh status: {_badge(verdict.status)}</p>",
        f'<p class="recommendation">Recommendation: {_esc(verdict.recommendation)}</p>',
        "</div>",
    ]
    if verdict.findings:
        rows = pd.DataFrame(
            [
                {"status": f.status, "what": f.subject, "finding": f.message}
                for f in verdict.findings
            ]
        )
        parts += ["<h3>Findings (most important first)</h3>", _table(rows)]
    return "\n".join(parts)


def render_html(content: ReportContent) -> str:
    """Return the report as one self-contained HTML document (no script, no external resource)."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(content.title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body><main>",
        f"<h1>{_esc(content.title)}</h1>",
    ]
    if content.facts:
        out.append('<dl class="facts">')
        out += [f"<dt>{_esc(str(k))}</dt><dd>{_esc(str(v))}</dd>" for k, v in content.facts]
        out.append("</dl>")
    out += [f'<p class="note">{_esc(n)}</p>' for n in content.notes]
    if content.verdict is not None:
        out += [
            '<section id="verdict">',
            "<h2>Refresh verdict</h2>",
            _verdict_html(content.verdict),
        ]
        if content.migration is not None:
            out += [
                "<h3>Migration of users between segments</h3>",
                '<p class="note">Rows: segment at the champion\'s snapshot; columns: segment now '
                "(both by the champion's model).</p>",
                _table(content.migration, index=True),
            ]
        for title, frame in content.drift_tables.items():
            out += [f"<h3>{_esc(title)}</h3>", _table(frame)]
        # The verdict ends as it began: with what to do and why.
        out += [
            '<p class="recommendation closing">Recommendation: '
            f"{_esc(content.verdict.recommendation)}</p>",
            "</section>",
        ]
    if content.segments is not None and len(content.segments):
        out += [
            '<section id="segments">',
            "<h2>Segments</h2>",
            _table(content.segments, percent=("share",)),
            "</section>",
        ]
    if content.figures:
        out += ['<section id="charts">', "<h2>Charts</h2>"]
        for key, (figure, caption) in content.figures.items():
            out += [
                "<figure>",
                figure_svg(figure, key, caption),
                f"<figcaption>{_esc(caption)}</figcaption>",
                "</figure>",
            ]
        out.append("</section>")
    for title, frame in content.tables.items():
        out += [f"<h2>{_esc(title)}</h2>", _table(frame)]
    out += [
        f"<footer>segmentkit {_esc(__version__)} · generated "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC · aggregates only, no user-level data"
        "</footer>",
        "</main></body></html>",
    ]
    return "\n".join(out) + "\n"


def propensity_figures(
    deciles: pd.DataFrame | None, calibration: pd.DataFrame | None
) -> dict[str, tuple[Any, str]]:
    """Lift and calibration charts from propensity evaluation tables (skipped when absent)."""
    figures: dict[str, tuple[Any, str]] = {}
    for name, table in (("lift", deciles), ("calibration", calibration)):
        if table is None or not len(table):
            continue
        for target in pd.unique(table["target"]) if "target" in table else [None]:
            rows = table if target is None else table[table["target"] == target]
            shown = [
                m
                for m in _SHOWN_MODELS
                if "model" not in rows or m in set(rows["model"].astype(str))
            ]
            models = shown or None
            if name == "lift":
                figure = plots.lift_by_decile(rows, models=models)
                caption = (
                    f"{target}: lift by score decile (1 = highest scores), the chosen model "
                    "against "
                    "the recency and RFM baselines, out of time."
                )
            else:
                figure = plots.calibration(rows, models=models)
                caption = (
                    f"{target}: mean predicted probability against the observed rate per score "
                    "bin, out of time (on the diagonal = calibrated)."
                )
            figures[f"{name}_{target}"] = (figure, caption)
    return figures


def segment_figures(segmenter: Any) -> dict[str, tuple[Any, str]]:
    """Profile heatmap and segment sizes of a fitted segmenter."""
    from segmentkit.report.review import lift_features

    profiles = segmenter.profiles_.copy()
    profiles["name"] = [f"{i} · {n}" for i, n in zip(profiles.index, profiles["name"], strict=True)]
    heatmap = plots.profile_heatmap(
        profiles, features=lift_features(segmenter), orientation="features_by_segments"
    )
    return {
        "profile_heatmap": (
            heatmap,
            "Segment profiles: each segment's median against the population "
            "(red above, blue below).",
        ),
        "segment_sizes": (
            plots.segment_sizes(profiles),
            "Share of users in each segment at the snapshot.",
        ),
    }


def _drift_status(result: Any) -> str:
    """Status of a check, marked when the change is carried by users who joined since."""
    if not result.judged:
        return "not judged"
    carried = result.status != "OK" and result.details.get("carried_by") == "newcomers"
    return f"{result.status} (newcomers)" if carried else result.status


def _number(value: Any) -> float:
    """Return a detail read back from drift.json as a float (NaN if missing or not a number)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _share(value: Any) -> str:
    number = _number(value)
    return f"{100 * number:.1f}%" if math.isfinite(number) else "n/a"


def _drift_tables(report: Any, names: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Segment shares and the strongest calibrated feature changes, as tables with names."""
    tables: dict[str, pd.DataFrame] = {}
    checks = list(getattr(report, "checks", ()))
    shares = [r for r in checks if r.test == "segment_share"]
    if shares:
        tables["Segment shares (champion's model)"] = pd.DataFrame(
            [
                {
                    "segment": r.subject,
                    "champion's snapshot": _share(r.details.get("reference_share")),
                    "expected from ageing": _share(r.details.get("expected_share")),
                    "now": _share(r.details.get("current_share")),
                    "change": str(r.details.get("change", "")),
                    "status": _drift_status(r),
                }
                for r in shares
            ]
        )
    aged = sorted((r for r in checks if r.test == "aged_psi"), key=lambda r: -r.score)[:8]
    if aged:
        tables["Features: change since the champion beyond ageing (largest first)"] = pd.DataFrame(
            [
                {
                    "feature": r.subject,
                    "PSI since the champion": _number(r.details.get("raw_psi")),
                    "PSI from ageing alone": _number(r.details.get("expected_psi")),
                    "excess": r.score,
                    "status": _drift_status(r),
                }
                for r in aged
            ]
        )
    return tables


#: What each count of the training log's data-quality report is, in the order read.
_QUALITY_ROWS = (
    ("rows_read", "rows read"),
    ("null_user_id", "dropped: no user id"),
    ("null_timestamp", "dropped: no timestamp"),
    ("null_event", "dropped: no event name"),
    ("stray_timestamp", "dropped: stray dates, a year or more away from the log"),
    ("at_or_after_as_of", "excluded: at or after as_of"),
    ("duplicate_rows", "dropped: exact duplicates"),
    ("rows_clean", "rows used"),
    ("negative_revenue_rows", "of which refunds (revenue below 0)"),
)


def data_quality_table(quality: Mapping[str, Any]) -> pd.DataFrame:
    """Tabulate the training log's counts: read, dropped and used (aggregates only).

    Rows that were not looked for (``duplicates_checked`` false) or are absent from
    an older bundle's report are left out; the first and last events close the table.

    Examples
    --------
    >>> table = data_quality_table({"rows_read": 10, "null_user_id": 2, "rows_clean": 8,
    ...                             "first_event": "2024-01-01T10:00:00"})
    >>> for row in table.itertuples(index=False):
    ...     print(*row, sep=": ")
    rows read: 10
    dropped: no user id: 2
    rows used: 8
    first event: 2024-01-01 10:00:00
    """
    rows = [
        (label, f"{int(quality[key]):,}")
        for key, label in _QUALITY_ROWS
        if key in quality
        and not (key == "duplicate_rows" and quality.get("duplicates_checked") is False)
    ]
    rows += [
        (label, str(quality[key]).replace("T", " "))
        for key, label in (("first_event", "first event"), ("last_event", "last event"))
        if quality.get(key)
    ]
    return pd.DataFrame(rows, columns=["training log", "rows"])


def model_report(
    model: Any,
    *,
    title: str | None = None,
    facts: Sequence[tuple[str, str]] = (),
    deciles: pd.DataFrame | None = None,
    calibration: pd.DataFrame | None = None,
    refresh: Any = None,
    challenger_names: Sequence[str] | None = None,
) -> ReportContent:
    """Everything a report shows about a model, and optionally a refresh against it.

    Parameters
    ----------
    model : SegmentationModel
        A trained model (its metadata holds the propensity evaluation tables).
    title : str, optional
    facts : sequence of (label, value)
        Extra headline facts (registered version, run id, ...).
    deciles, calibration : pandas.DataFrame, optional
        Propensity evaluation tables; default those stored in the bundle.
    refresh : DriftReport, optional
        A refresh's report: adds the verdict, the migration matrix and drift tables.
    challenger_names : sequence of str, optional
        The challenger's segment names (for the agreement table).
    """
    segmenter = model.segmenter
    names = list(segmenter.segment_names_)
    metadata = model.metadata
    if deciles is None and getattr(metadata, "propensity_deciles", ()):
        deciles = pd.DataFrame(list(metadata.propensity_deciles))
    if calibration is None and getattr(metadata, "propensity_calibration", ()):
        calibration = pd.DataFrame(list(metadata.propensity_calibration))
    head = [
        ("Snapshot (as of)", str(metadata.as_of)[:10]),
        ("Segments", f"{segmenter.n_segments_}"),
        ("Users at training", f"{int(np.sum(segmenter.segment_sizes_)):,}"),
        ("Propensity targets", ", ".join(model.propensity) or "none"),
        ("segmentkit", __version__),
        *facts,
    ]
    figures = {**segment_figures(segmenter), **propensity_figures(deciles, calibration)}
    tables: dict[str, pd.DataFrame] = {}
    evaluation = pd.DataFrame(list(metadata.propensity_evaluation))
    if len(evaluation) and {"target", "metric", "value"} <= set(evaluation.columns):
        tables["Propensity models, out of time"] = evaluation.pivot_table(
            index="target", columns="metric", values="value", aggfunc="first"
        ).reset_index()
    quality = data_quality_table(getattr(metadata, "data_quality", None) or {})
    if len(quality):
        tables["Training log: rows read, dropped and used"] = quality
    separation = separation_note(segmenter)
    content = ReportContent(
        title=title or "Segment report",
        facts=head,
        segments=segment_summary(segmenter),
        figures=figures,
        tables=tables,
        notes=[f"Segments: {separation}"] if separation else [],
    )
    if refresh is not None:
        content.verdict = refresh.verdict
        if refresh.migration is not None:
            content.migration = migration_table(refresh.migration, names)
        content.drift_tables = _drift_tables(refresh, names)
    return content
