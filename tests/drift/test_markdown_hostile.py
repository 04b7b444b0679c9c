"""drift.md with hostile names from the log, and its numbers against the report it renders."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from segmentkit.drift import DriftReport, migration_matrix, propensity_backtest, segment_agreement
from segmentkit.drift.markdown import refresh_markdown, report_markdown
from segmentkit.drift.verdict import event_mix_tests, segment_share_tests

HOSTILE = [
    "<script>alert(1)</script>",
    "[click](javascript:alert(2))",
    "![pixel](https://example.com/p.png)",
    "\u202eevil\u202c",
    "a\\[b | c`d",
]
DIRECTION_CONTROLS = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u061c\u2066\u2067\u2068\u2069"


def _report() -> tuple[DriftReport, list[str]]:
    names = [f"{HOSTILE[i]} #{i}" for i in range(4)]
    rng = np.random.default_rng(0)
    now = np.r_[np.zeros(50, int), np.ones(30, int), np.full(20, 2)]
    shares = segment_share_tests([0.4, 0.3, 0.2, 0.1], now, names)
    events = event_mix_tests(
        {HOSTILE[0]: 100, "page_view": 800}, {HOSTILE[2]: 90, "page_view": 800}
    )
    champion = np.r_[np.zeros(40, int), np.ones(30, int), np.full(20, 2), np.full(10, 3)]
    challenger = np.r_[np.zeros(40, int), np.ones(30, int), np.full(30, 4)]
    agreement = segment_agreement(champion, challenger)
    users = [f"u{i}" for i in range(100)]
    migration = migration_matrix(pd.Series(champion, index=users), pd.Series(now, index=users))
    scores = rng.random(400)
    backtest = propensity_backtest(HOSTILE[1], scores, rng.random(400) < scores, 0.8, 0.2)
    report = DriftReport(
        checks=(*shares, *events),
        agreement=agreement,
        migration=migration,
        backtests=(backtest,),
    )
    return report, names


def _outside_code(text: str) -> str:
    return re.sub(r"`[^`\n]*`", "", text)


@pytest.mark.parametrize("render", ["refresh", "raw"])
def test_hostile_names_are_inert_in_every_field(render):
    report, names = _report()
    if render == "refresh":
        text = refresh_markdown(
            report,
            report.verdict,
            names,
            [*names, "challenger only " + HOSTILE[0]],
            champion_as_of="2024-12-01",
            as_of="2025-01-01",
            checks=report.checks,
            interval_days=31,
        )
    else:
        text = report_markdown(report, names, [*names, "challenger only " + HOSTILE[0]])
    plain = _outside_code(text)
    assert not re.search(r"<[A-Za-z/!?]", plain)  # no tag, comment or declaration
    # No link or image can be formed: every bracket is escaped.
    assert not re.search(r"(?<!\\)[\[\]]", plain), re.findall(r".{20}(?<!\\)[\[\]].{20}", plain)
    assert not any(c in text for c in DIRECTION_CONTROLS)
    assert "&lt;U+202E&gt;evil&lt;U+202C&gt;" in text
    # The segment only the challenger has is named, escaped, in the agreement section.
    assert "challenger only &lt;script&gt;alert(1)&lt;/script&gt;" in text
    # Tables keep their columns: a pipe in a name is escaped.
    for line in text.splitlines():
        if line.startswith("|") and "a\\\\\\[b" in line:
            assert "c`d" in line or "c'd" in line
            assert "\\|" in line


def _table(text: str, heading: str) -> list[list[str]]:
    """Body rows of the first table after ``heading``, split on unescaped pipes."""
    lines = text[text.index(heading) :].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    block = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        block.append(line)
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in block[2:]]


def test_numbers_match_the_report_they_render():
    report, names = _report()
    text = refresh_markdown(
        report,
        report.verdict,
        names,
        champion_as_of="2024-12-01",
        as_of="2025-01-01",
        checks=report.checks,
        interval_days=31,
    )
    shares = _table(text, "## Segment shares")
    results = [r for r in report.checks if r.test == "segment_share"]
    assert len(shares) == len(results)
    for row, result in zip(shares, results, strict=True):
        d = result.details
        assert row[1:4] == [
            f"{100 * d['reference_share']:.1f}%",
            f"{100 * d['expected_share']:.1f}%",
            f"{100 * d['current_share']:.1f}%",
        ]
        assert row[4] == d["change"] and row[5] == result.status
    migration = _table(text, "## Migration")
    counts = report.migration.counts
    assert [[int(v) for v in row[1:]] for row in migration] == counts.to_numpy().tolist()
    assert f"{report.migration.n_users} users: {report.migration.n_both} in both" in text
    (backtest,) = report.backtests
    (row,) = _table(text, "## Propensity backtest")
    assert row[1:5] == [
        str(backtest.n),
        f"{backtest.training_auc:.3f}",
        f"{backtest.auc:.3f}",
        f"{backtest.auc_drop:+.3f}",
    ]
    assert f"{report.agreement.ari:.3f}" in text
    assert f"**Status: {report.verdict.status}** (exit code {report.exit_code})" in text
    assert text.rstrip().splitlines()[-1].startswith("**Recommendation:** ")


def test_non_finite_numbers_read_n_a():
    report, names = _report()
    data = report.to_dict()
    data["backtests"][0]["auc"] = None
    for check in data["checks"]:
        if check["test"] == "segment_share":
            check["details"]["expected_share"] = None
    broken = DriftReport.from_dict(data)
    text = refresh_markdown(broken, broken.verdict, names, checks=broken.checks)
    assert "nan" not in text.lower().replace("n/a", "")
    assert "n/a" in _table(text, "## Propensity backtest")[0][3]
