"""The refresh report in words (Markdown): named segments, calibrated tests, one recommendation.

Every table names segments ``id · name``; the migration matrix counts users
between named segments; the report ends with the recommendation and its reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from segmentkit.drift._common import _fmt, _md_table, _md_text
from segmentkit.drift.verdict import segment_label

__all__ = ["refresh_markdown", "report_markdown"]


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * value:.1f}%"


def _num(value: Any, spec: str, unit: str = "") -> str:
    """Format a number, ``n/a`` when it is missing or not finite (NaN, inf)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{number:{spec}}{unit}" if math.isfinite(number) else "n/a"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    return [*_md_table(header, rows), ""]


#: Appended to the status of a change carried by newcomers (see ``newcomer_attribution``).
NEWCOMERS_MARK = " (newcomers)"
_NEWCOMERS_NOTE = (
    f"A status marked *{NEWCOMERS_MARK.strip()}*: the change comes with users who joined since "
    "the champion; users already there moved within ageing."
)


def _status(*results: Any) -> str:
    """Worst status of ``results``, marked when every result that fired is carried by newcomers."""
    fired = [r for r in results if r is not None and r.status != "OK"]
    if not fired:
        shown = [r for r in results if r is not None]
        return "OK" if not shown or any(r.judged for r in shown) else "not judged"
    worst = max((r.status for r in fired), key=("OK", "WARN", "DRIFT").index)
    carried = all(r.details.get("carried_by") == "newcomers" for r in fired)
    return worst + (NEWCOMERS_MARK if carried else "")


def refresh_markdown(
    report: Any,
    verdict: Any,
    champion_names: Sequence[str],
    challenger_names: Sequence[str] | None = None,
    *,
    champion_as_of: str = "",
    as_of: str = "",
    checks: Sequence[Any] = (),
    interval_days: int | None = None,
) -> str:
    """Return the refresh report as Markdown.

    Parameters
    ----------
    report : DriftReport
        Agreement, migration and backtests of the refresh.
    verdict : Verdict
        From :func:`segmentkit.drift.verdict.decide`.
    champion_names, challenger_names : sequence of str
        Segment names by id.
    champion_as_of, as_of : str
        The two snapshots (ISO dates).
    checks : sequence of DriftResult
        The calibrated results (:mod:`segmentkit.drift.verdict`).
    interval_days : int, optional
        Distance between the snapshots (the ageing baseline lies as far before the champion's).
    """
    by_test: dict[str, list[Any]] = {}
    for result in checks:
        by_test.setdefault(result.test, []).append(result)
    title = "# Refresh report"
    if as_of:
        title += f": {as_of} against the champion of {champion_as_of}"
    lines = [
        title,
        "",
        f"**Status: {verdict.status}** (exit code {3 if verdict.status == 'DRIFT' else 0})",
        "",
    ]
    if interval_days:
        lines += [
            f"Changes are judged against what ageing alone produces: the same tests between the "
            f"champion's snapshot and {interval_days} days before it, on today's log.",
            "",
        ]
    if any(r.details.get("carried_by") == "newcomers" for r in checks):
        lines += [_NEWCOMERS_NOTE, ""]
    if verdict.findings:
        lines += ["## Findings", ""]
        lines += [f"- **{f.status}** {_md_text(f.message)}" for f in verdict.findings[:12]]
        if len(verdict.findings) > 12:
            lines.append(f"- ... and {len(verdict.findings) - 12} more (see the tables)")
        lines.append("")
    shares = by_test.get("segment_share", [])
    if shares:
        lines += ["## Segment shares", ""]
        lines += _table(
            ["segment", "champion's snapshot", "expected from ageing", "now", "change", "status"],
            [
                [
                    r.subject,
                    _pct(r.details["reference_share"]),
                    _pct(r.details["expected_share"]),
                    _pct(r.details["current_share"]),
                    r.details["change"],
                    _status(r),
                ]
                for r in shares
            ],
        )
    behaviour = by_test.get("new_behaviour", [])
    if behaviour:
        d = behaviour[0].details
        lines += [
            "## Users who joined since the champion",
            "",
            f"{d['newcomers_now']} newcomers now, {d['newcomers_then']} in the interval before: "
            f"{_pct(d['misfit_share_now'])} now and {_pct(d['misfit_share_then'])} then lie beyond "
            f"the distance {int(100 * d['quantile'])}% of their segment's users had "
            f"(status **{behaviour[0].status}**"
            + ("" if d.get("judged", True) else "; too few users on one side to judge")
            + ").",
            "",
        ]
    aged = sorted(by_test.get("aged_psi", []), key=lambda r: -r.score)
    if aged:
        lines += ["## Features", ""]
        lines += _table(
            ["feature", "PSI since the champion", "PSI from ageing alone", "excess", "status"],
            [
                [
                    f"`{r.subject}`",
                    _fmt(r.details["raw_psi"]),
                    _fmt(r.details["expected_psi"]),
                    _fmt(r.score),
                    _status(r),
                ]
                for r in aged
            ],
        )
    shifts = by_test.get("nonzero_shift", [])
    nonzero = {r.subject: r for r in by_test.get("nonzero_psi", [])}
    if shifts:
        lines += ["### Among users with a non-zero value", ""]
        lines += _table(
            [
                "feature",
                "geometric mean then",
                "now",
                "ratio",
                "ratio from ageing",
                "PSI excess",
                "status",
            ],
            [
                [
                    f"`{r.subject}`",
                    _num(r.details["geometric_mean_then"], ".4g"),
                    _num(r.details["geometric_mean_now"], ".4g"),
                    _num(r.details["ratio"], ".2f", "x"),
                    _num(r.details["expected_ratio"], ".2f", "x"),
                    _fmt(nonzero[r.subject].score) if r.subject in nonzero else "n/a",
                    _status(r, nonzero.get(r.subject)),
                ]
                for r in shifts
            ],
        )
    events = by_test.get("event_vanished", []) + by_test.get("event_appeared", [])
    if events:
        lines += ["## Events", ""]
        lines += _table(
            ["event", "share before the champion", "share since", "status"],
            [
                [
                    f"`{r.subject}`",
                    _pct(r.details["share_then"]),
                    _pct(r.details["share_now"]),
                    r.status,
                ]
                for r in events
            ],
        )
    history = [r for r in by_test.get("history", []) if r.status != "OK"]
    if history:
        lines += [
            "## The log's history",
            "",
            "Features at the champion's snapshot recomputed from today's log differ from what the "
            "champion stored:",
            "",
        ]
        lines += _table(
            ["feature", "PSI", "status"],
            [[f"`{r.subject}`", _fmt(r.score), r.status] for r in history],
        )
    agreement = getattr(report, "agreement", None)
    if agreement is not None:
        names_after = challenger_names if challenger_names is not None else champion_names
        lines += [
            "## Champion vs challenger",
            "",
            f"Adjusted Rand index {_fmt(agreement.ari)} on {agreement.n_users} users "
            "(informational: "
            "refits on unchanged behaviour already vary this much).",
            "",
        ]
        lines += _table(
            ["champion segment", "challenger segment", "Jaccard", "centroid shift (std)"],
            [
                [
                    segment_label(m.champion, champion_names),
                    segment_label(m.challenger, names_after),
                    _fmt(m.jaccard),
                    _fmt(m.centroid_shift),
                ]
                for m in agreement.matches
            ],
        )
        if agreement.appeared:
            lines += [
                "Only in the challenger: "
                + _md_text(", ".join(segment_label(s, names_after) for s in agreement.appeared)),
                "",
            ]
        if agreement.vanished:
            lines += [
                "Only in the champion: "
                + _md_text(", ".join(segment_label(s, champion_names) for s in agreement.vanished)),
                "",
            ]
    migration = getattr(report, "migration", None)
    if migration is not None:
        counts = migration.counts
        stayed = "n/a" if migration.stayed_share is None else f"{migration.stayed_share:.1%}"
        lines += [
            "## Migration",
            "",
            f"{migration.n_users} users: {migration.n_both} in both snapshots ({stayed} stayed in "
            f"their segment), {migration.n_new} new, {migration.n_gone} gone. Rows: segment at the "
            "champion's snapshot; columns: segment now (both by the champion).",
            "",
        ]
        lines += _table(
            ["previous \\ now", *[segment_label(c, champion_names) for c in counts.columns]],
            [
                [segment_label(i, champion_names), *[int(v) for v in row]]
                for i, row in zip(counts.index, counts.to_numpy(), strict=True)
            ],
        )
    backtests = getattr(report, "backtests", ())
    if backtests:
        lines += ["## Propensity backtest", ""]
        lines += _table(
            [
                "target",
                "users",
                "AUC (training)",
                "AUC (now)",
                "AUC drop",
                "predicted / observed",
                "status",
            ],
            [
                [
                    b.target,
                    b.n,
                    _fmt(b.training_auc),
                    _fmt(b.auc),
                    _num(b.auc_drop, "+.3f"),
                    f"{_num(b.predicted_total, '.0f')} / {_num(b.observed_total, '.0f')}",
                    b.status,
                ]
                for b in backtests
            ],
        )
    lines += [f"**Recommendation:** {_md_text(verdict.recommendation)}", ""]
    return "\n".join(lines)


def report_markdown(
    report: Any,
    names: Sequence[str] | None = None,
    challenger_names: Sequence[str] | None = None,
) -> str:
    """Markdown of a report without calibrated checks (raw tests only).

    Segments are labelled ``id · name`` when ``names`` (and, for the challenger's
    side of the agreement table, ``challenger_names``) are given; the report ends
    with the recommendation line.
    """
    self = report
    lines = [
        "# Drift report",
        "",
        f"**Status: {self.status}** (exit code {self.exit_code})",
        "",
    ]
    counts = {s: sum(r.status == s for r in self.results()) for s in ("OK", "WARN", "DRIFT")}
    lines += [
        f"Tests: {counts['OK']} OK, {counts['WARN']} WARN, {counts['DRIFT']} DRIFT.",
        "",
    ]
    lines += _features_md(self)
    lines += _share_md(self, names)
    lines += _agreement_md(self, names, challenger_names)
    lines += _migration_md(self, names)
    lines += _backtest_md(self)
    lines += [f"**Recommendation:** {_md_text(self.verdict.recommendation)}", ""]
    return "\n".join(lines).rstrip() + "\n"


def _features_md(self: Any) -> list[str]:
    psi = self.feature_results("psi")
    if not psi:
        return []
    wass = {r.subject: r for r in self.feature_results("wasserstein")}
    rows = []
    for r in sorted(psi, key=lambda r: (-r.score, r.subject)):
        w = wass.get(r.subject)
        rows.append(
            [
                f"`{r.subject}`",
                _fmt(r.score),
                r.status,
                "n/a" if w is None else _fmt(w.score),
                "n/a" if w is None else _fmt(w.details.get("distance")),
            ]
        )
    first = psi[0]
    return [
        "## Features",
        "",
        f"PSI over reference quantile bins (WARN >= {_fmt(first.warn_threshold, 2)}, "
        f"DRIFT >= {_fmt(first.drift_threshold, 2)}); Wasserstein-1 in reference "
        "standard deviations and in feature units.",
        "",
        *_md_table(["feature", "PSI", "status", "Wasserstein (std)", "Wasserstein"], rows),
        "",
    ]


def _share_md(self: Any, names: Sequence[str] | None) -> list[str]:
    if self.share is None:
        return []
    s = self.share
    rows = [
        [
            segment_label(d["segment"], names),
            _fmt(d["reference_share"]),
            _fmt(d["current_share"]),
            _num(d["current_share"] - d["reference_share"], "+.3f"),
        ]
        for d in s.details.get("segments", [])
    ]
    return [
        "## Segment shares",
        "",
        f"Share PSI {_fmt(s.score)}: **{s.status}** "
        f"(WARN >= {_fmt(s.warn_threshold, 2)}, DRIFT >= {_fmt(s.drift_threshold, 2)}).",
        "",
        *_md_table(["segment", "reference", "current", "change"], rows),
        "",
    ]


def _agreement_md(
    self: Any, names: Sequence[str] | None, challenger_names: Sequence[str] | None = None
) -> list[str]:
    if self.agreement is None:
        return []
    a = self.agreement
    after = challenger_names if challenger_names is not None else names
    rows = [
        [
            segment_label(m.champion, names),
            segment_label(m.challenger, after),
            _fmt(m.jaccard),
            _fmt(m.centroid_shift),
        ]
        for m in a.matches
    ]
    lines = [
        "## Champion vs challenger",
        "",
        f"Adjusted Rand index {_fmt(a.ari)} on {a.n_users} users: **{a.status}** "
        f"(WARN < {_fmt(a.warn_threshold, 2)}, DRIFT < {_fmt(a.drift_threshold, 2)}).",
        "",
        *_md_table(["champion", "challenger", "Jaccard", "centroid shift (std)"], rows),
        "",
    ]
    if a.appeared:
        shown = _md_text(", ".join(segment_label(s, after) for s in a.appeared))
        lines += [f"Appeared (challenger only): {shown}", ""]
    if a.vanished:
        gone = _md_text(", ".join(segment_label(v, names) for v in a.vanished))
        lines += [f"Vanished (champion only): {gone}", ""]
    return lines


def _migration_md(self: Any, names: Sequence[str] | None) -> list[str]:
    if self.migration is None:
        return []
    m = self.migration
    header = ["previous \\ current", *[segment_label(c, names) for c in m.counts.columns]]
    rows = [
        [segment_label(idx, names), *[int(v) for v in row]]
        for idx, row in zip(m.counts.index, m.counts.to_numpy(), strict=True)
    ]
    stayed = "n/a" if m.stayed_share is None else f"{m.stayed_share:.1%}"
    return [
        "## Migration",
        "",
        f"{m.n_users} users: {m.n_both} in both snapshots ({stayed} stayed in their "
        f"segment), {m.n_new} new, {m.n_gone} gone.",
        "",
        *_md_table(header, rows),
        "",
    ]


def _backtest_md(self: Any) -> list[str]:
    if not self.backtests:
        return []
    rows = [
        [
            b.target,
            b.n,
            _fmt(b.training_auc),
            _fmt(b.auc),
            _num(b.auc_drop, "+.3f"),
            _fmt(b.training_brier),
            _fmt(b.brier),
            f"{_num(b.predicted_total, '.0f')} / {_num(b.observed_total, '.0f')}",
            b.status,
        ]
        for b in self.backtests
    ]
    header = [
        "target",
        "users",
        "AUC (training)",
        "AUC (now)",
        "AUC drop",
        "Brier (training)",
        "Brier (now)",
        "predicted / observed",
        "status",
    ]
    return ["## Propensity backtest", "", *_md_table(header, rows), ""]
