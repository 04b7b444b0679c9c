"""The HTML report with hostile text from the log: names, paths and details a careless or
malicious source could hold. Everything must stay text, on one self-contained page."""

from __future__ import annotations

import html.parser

import numpy as np
import pandas as pd
import pytest
from chromium import open_in_chromium

from segmentkit.drift import DriftReport, DriftResult, migration_matrix
from segmentkit.drift.verdict import decide, event_mix_tests, segment_share_tests
from segmentkit.report import plots
from segmentkit.report.html import ReportContent, _drift_tables, migration_table, render_html
from segmentkit.report.plots._common import LABEL_MAX

HOSTILE = [
    "<script>alert(1)</script>",
    "Q\"uote' & <b>bold</b>",
    "</style><script>alert(2)</script>",
    "\u202eevil\u202c then \u2067isolate",
    "x" * 5000,
    "</td></tr></table><img src=x onerror=alert(4)>",
    "[link](javascript:alert(5)) ![img](https://example.com/p.png)",
]
DIRECTION_CONTROLS = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u061c\u2066\u2067\u2068\u2069"
#: Tags a report may contain: HTML of the page and SVG of matplotlib's charts.
ALLOWED_TAGS = {
    *[
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "main",
        "h1",
        "h2",
        "h3",
        "dl",
        "dt",
        "dd",
        "section",
        "div",
        "p",
        "span",
    ],
    *["table", "thead", "tbody", "tr", "th", "td", "figure", "figcaption", "footer"],
    *[
        "svg",
        "metadata",
        "rdf:rdf",
        "cc:work",
        "dc:type",
        "dc:format",
        "dc:date",
        "dc:creator",
        "defs",
        "g",
        "path",
    ],
    *["use", "text", "clippath", "rect", "image", "tspan"],
}


class _Tags(html.parser.HTMLParser):
    """Every start tag and every attribute that could run code or fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.risky: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for key, value in attrs:
            value = value or ""
            if key.startswith("on") or (
                key in ("src", "href", "xlink:href")
                and not value.startswith(("#", "data:image/png;base64,"))
            ):
                self.risky.append((tag, key, value[:60]))


def _hostile_report() -> DriftReport:
    names = [f"{HOSTILE[i % len(HOSTILE)]} #{i}" for i in range(4)]
    shares = segment_share_tests(
        [0.25] * 4, np.r_[np.zeros(70, int), np.ones(20, int), np.full(10, 2)], names
    )
    events = event_mix_tests(
        {HOSTILE[0]: 100, HOSTILE[3]: 60, "page_view": 800},
        {HOSTILE[3]: 60, HOSTILE[2]: 90, "page_view": 800},
    )
    non_finite = DriftResult(
        "aged_psi",
        HOSTILE[1],
        float("inf"),
        0.1,
        0.25,
        "DRIFT",
        {
            "raw_psi": float("nan"),
            "expected_psi": None,
            "reference_median": float("nan"),
            "current_median": float("inf"),
        },
    )
    previous = pd.Series(
        np.r_[np.zeros(5, int), np.ones(5, int)], index=[f"u{i}" for i in range(10)]
    )
    current = pd.Series(np.r_[np.zeros(8, int), np.full(2, 2)], index=[f"u{i}" for i in range(10)])
    return DriftReport(
        checks=(*shares, *events, non_finite), migration=migration_matrix(previous, current)
    )


def _hostile_page() -> str:
    report = _hostile_report()
    names = [f"{HOSTILE[i % len(HOSTILE)]} #{i}" for i in range(4)]
    segments = pd.DataFrame(
        {
            "segment": [f"{i} · {n}" for i, n in enumerate(names)],
            "share": [0.25, np.nan, np.inf, 0.0],
            "users": [10, 0, 5, 0],
            "description": HOSTILE[3:7],
        }
    )
    profiles = pd.DataFrame({"name": names, "share": [0.4, 0.3, 0.3, 0.0], "size": [4, 3, 3, 0]})
    content = ReportContent(
        title=HOSTILE[2] + HOSTILE[0],
        facts=[
            (HOSTILE[0], HOSTILE[2]),
            ("MLflow run", HOSTILE[3]),
            ("path", "/tmp/" + HOSTILE[1]),
        ],
        segments=segments,
        figures={"sizes</style>": (plots.segment_sizes(profiles), HOSTILE[5])},
        tables={HOSTILE[1]: pd.DataFrame({HOSTILE[0]: [np.nan, np.inf, -np.inf], "n": [1, 2, 3]})},
        verdict=report.verdict,
        migration=migration_table(report.migration, names),
        drift_tables=_drift_tables(report, names),
        notes=[HOSTILE[6]],
    )
    return render_html(content)


@pytest.fixture(scope="module")
def page() -> str:
    return _hostile_page()


def test_hostile_names_stay_text(page):
    parser = _Tags()
    parser.feed(page)
    assert set(parser.tags) <= ALLOWED_TAGS, set(parser.tags) - ALLOWED_TAGS
    assert parser.risky == []  # no handler, no link or image from outside the page
    assert parser.tags["style"] == 1 + parser.tags["svg"]  # ours, and matplotlib's per chart
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;/style&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "Q&quot;uote&#x27; &amp; &lt;b&gt;bold&lt;/b&gt;" in page


def test_direction_controls_cannot_reorder_the_page(page):
    # "\u202eevil" would show as "live", and turn every number after it around.
    assert not any(c in page for c in DIRECTION_CONTROLS)
    assert "&lt;U+202E&gt;evil&lt;U+202C&gt; then &lt;U+2067&gt;isolate" in page


def test_non_finite_numbers_read_n_a(page):
    assert ">n/a<" in page
    assert not any(word in page for word in (">nan", ">inf", "nan%", "inf%", "PSI nan"))


def test_drift_tables_read_a_hand_edited_drift_json():
    """A drift.json from another version, or edited by hand, still renders (no KeyError)."""
    data = _hostile_report().to_dict()
    for check in data["checks"]:
        check["details"] = {"reference_share": "a lot"} if check["test"] == "segment_share" else {}
    report = DriftReport.from_dict(data)
    tables = _drift_tables(report, ["a", "b", "c", "d"])
    shares = tables["Segment shares (champion's model)"]
    assert set(shares["champion's snapshot"]) == {"n/a"}
    verdict = report.verdict  # every finding still has a sentence
    assert verdict.status == "DRIFT" and all(f.message for f in verdict.findings)
    assert "Recommendation" in render_html(
        ReportContent(title="t", verdict=verdict, drift_tables=tables)
    )


def test_long_names_are_cut_in_charts_and_wrap_in_tables(page):
    profiles = pd.DataFrame({"name": ["y" * 5000, "ok"], "share": [0.5, 0.5], "size": [1, 1]})
    figure = plots.segment_sizes(profiles)
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert max(len(label) for label in labels) == LABEL_MAX
    assert "ok" in labels
    heat = plots.profile_heatmap(
        pd.DataFrame({"name": ["z" * 5000, "ok"], "lift_a": [2.0, 0.5], "lift_b": [1.0, 1.0]}),
        orientation="features_by_segments",
    )
    assert heat.get_size_inches()[1] < 10  # not one wrapped line per 14 letters of the name
    assert "overflow-wrap: anywhere" in page


def test_sixty_segments_render():
    names = [f"Segment with a fairly long name {i}" for i in range(60)]
    rng = np.random.default_rng(0)
    shares = rng.dirichlet(np.ones(60))
    shares[7] = 0.0  # a segment with no users
    shares /= shares.sum()
    profiles = pd.DataFrame(
        {"name": names, "share": shares, "size": (shares * 6000).round().astype(int)}
        | {f"lift_f{j}": rng.lognormal(0, 1, 60) for j in range(12)}
    )
    profiles.loc[7, [f"lift_f{j}" for j in range(12)]] = np.nan
    page = render_html(
        ReportContent(
            title="60 segments",
            figures={
                "sizes": (plots.segment_sizes(profiles), "sizes"),
                "heat": (plots.profile_heatmap(profiles, orientation="features_by_segments"), "h"),
            },
        )
    )
    for name in (names[0], names[59]):
        assert name in page


@pytest.mark.browser
def test_hostile_page_in_headless_chromium(page, tmp_path):
    """No console error, no dialog (no script ran), no request, no sideways scrolling."""
    with open_in_chromium(page, tmp_path) as (tab, messages, requests):
        widths = tab.evaluate(
            "() => [document.documentElement.scrollWidth, "
            "document.documentElement.clientWidth, document.scripts.length]"
        )
        text = tab.inner_text("body")
    path = tmp_path / "report.html"
    assert messages == []
    assert requests == [path.as_uri()]
    scroll_width, client_width, scripts = widths
    assert scripts == 0
    assert scroll_width <= client_width  # a 5,000-letter name wraps instead of widening the page
    assert "<script>alert(1)</script>" in text  # shown as text


@pytest.mark.browser
def test_a_migration_table_with_long_names_fits_and_keeps_its_row_labels(page, tmp_path):
    # CDNOW's refresh: five segments named like "0 · Hibernating (higher value)". The
    # column headers did not wrap, so the table widened the page and squeezed the row
    # labels to one letter per line.
    names = [
        "Hibernating (higher value)",
        "Hibernating (lower value)",
        "Hibernating (mid value)",
        "Champions (more recent)",
        "Champions (less recent)",
    ]
    labels = [f"{i} · {name}" for i, name in enumerate(names)]
    counts = np.arange(25).reshape(5, 5) * 997
    migration = pd.DataFrame(counts, index=pd.Index(labels, name="then"), columns=labels)
    content = ReportContent(title="t", verdict=decide([]), migration=migration)
    with open_in_chromium(render_html(content), tmp_path) as (tab, messages, _):
        scroll_width, client_width = tab.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        label_widths = tab.evaluate(
            "() => Array.from(document.querySelectorAll('tbody th')).map(th => th.offsetWidth)"
        )
        label_heights = tab.evaluate(
            "() => Array.from(document.querySelectorAll('tbody th')).map(th => th.offsetHeight)"
        )
    assert messages == []
    assert scroll_width <= client_width
    assert len(label_widths) == 5
    # A row label keeps whole words on a line: wider than its longest word, at most
    # three lines high (it was 1 letter wide and 40 lines high).
    assert min(label_widths) >= 90
    assert max(label_heights) <= 3 * 22
