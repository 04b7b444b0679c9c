"""The HTML report: self-contained, named segments, verdict in words; rendered in Chromium."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chromium import open_in_chromium

from segmentkit.config import load_config
from segmentkit.drift import DriftReport, DriftResult, migration_matrix
from segmentkit.io.synth import generate_events
from segmentkit.report import plots
from segmentkit.report.html import (
    ReportContent,
    data_quality_table,
    figure_svg,
    model_report,
    render_html,
    segment_summary,
)
from segmentkit.training import train_model

# Every test here uses a trained model (tens of seconds on a shared 2-core machine).
pytestmark = pytest.mark.slow

END = dt.datetime(2025, 1, 1)
CONFIG = load_config(
    overrides={
        "segmentation": {"k": 4, "n_bootstrap": 0, "random_state": 0},
        "propensity": {"targets": [{"name": "churn", "kind": "inactivity"}], "min_positives": 20},
    }
)


@pytest.fixture(scope="module")
def model():
    events = generate_events(1500, 150, seed=2).events.astype({"user_id": str, "event": str})
    return train_model(CONFIG, events, END).model


@pytest.fixture(scope="module")
def refresh_report(model):
    """A refresh report whose verdict is DRIFT because the most valuable segment vanished."""
    names = list(model.segmenter.segment_names_)
    vanished = DriftResult(
        "segment_share",
        f"1 · {names[1]}",
        2000.0,
        1.5,
        2.0,
        "DRIFT",
        {
            "segment": "1",
            "change": "vanished",
            "reference_share": 0.2,
            "expected_share": 0.2,
            "current_share": 0.0,
            "trend": 1.0,
        },
    )
    previous = pd.Series(
        np.r_[np.zeros(5, int), np.ones(5, int)], index=[f"u{i}" for i in range(10)]
    )
    current = pd.Series(np.r_[np.zeros(8, int), np.full(2, 2)], index=[f"u{i}" for i in range(10)])
    return DriftReport(checks=(vanished,), migration=migration_matrix(previous, current))


@pytest.fixture(scope="module")
def page(model, refresh_report) -> str:
    return render_html(model_report(model, title="Test report", refresh=refresh_report))


def test_report_is_one_self_contained_file(page):
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    assert page.count("<svg") >= 4  # heatmap, sizes, lift, calibration


def test_every_table_names_segments(model, page):
    for seg_id, name in enumerate(model.segmenter.segment_names_):
        assert f"{seg_id} · {name}" in page
    summary = segment_summary(model.segmenter)
    assert summary["share"].sum() == pytest.approx(1.0)
    assert all("x" in text for text in summary["key features vs population"])


def test_verdict_and_migration_are_in_words(model, page):
    names = list(model.segmenter.segment_names_)
    assert "Refresh verdict" in page
    assert "Recommendation: Promote the challenger" in page
    assert f"1 · {names[1]} vanished" in page
    assert f">2 · {names[2]}</th>" in page  # migration matrix column by name
    assert f"<th>0 · {names[0]}</th>" in page  # and row


def test_the_verdict_section_ends_with_the_recommendation(page):
    section = page[page.index('<section id="verdict">') :]
    section = section[: section.index("</section>")]
    last = re.findall(r"<p[^>]*>(.*?)</p>", section)[-1]
    assert last.startswith("Recommendation: Promote the challenger")
    assert section.rstrip().endswith("</p>")


def test_the_training_logs_counts_are_in_the_report(model, page):
    quality = model.metadata.data_quality
    assert "Training log: rows read, dropped and used" in page
    assert f"<td>rows read</td><td>{quality['rows_read']:,}</td>" in page.replace("\n", "")
    table = data_quality_table({**quality, "stray_timestamp": 3, "duplicates_checked": False})
    rows = dict(table.itertuples(index=False))
    assert rows["dropped: stray dates, a year or more away from the log"] == "3"
    assert "dropped: exact duplicates" not in rows  # not looked for: no count to show
    assert rows["first event"] == quality["first_event"].replace("T", " ")


def test_report_without_propensity_or_refresh_still_renders(model):
    content = model_report(model, deciles=pd.DataFrame(), calibration=pd.DataFrame())
    content.figures = {
        k: v for k, v in content.figures.items() if k.startswith(("profile", "segment"))
    }
    page = render_html(content)
    assert "Refresh verdict" not in page
    assert page.count("<svg") == 2


def test_svg_keeps_text_as_text_and_ids_do_not_clash(model):
    profiles = model.segmenter.profiles_
    figure = plots.segment_sizes(profiles)
    first, second = figure_svg(figure, "a"), figure_svg(figure, "b")
    assert "<text" in first and first.startswith("<svg")
    ids_a = set(re.findall(r'id="([^"]+)"', first))
    ids_b = set(re.findall(r'id="([^"]+)"', second))
    assert ids_a and not ids_a & ids_b
    # The same model gives the same report: a fresh figure of the same profiles renders
    # to the same markup. (Re-rendering one figure object may move text by a thousandth
    # of a point while its constrained layout settles; reports render each figure once.)
    assert figure_svg(plots.segment_sizes(profiles), "a") == figure_svg(
        plots.segment_sizes(profiles), "a"
    )


def test_titles_and_text_are_escaped():
    page = render_html(ReportContent(title="<b>x</b> & y", facts=[("a<", "b>")]))
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt; &amp; y" in page


_OVERLAPS = """
() => {
  const found = [];
  for (const svg of document.querySelectorAll('figure svg')) {
    const boxes = [...svg.querySelectorAll('text')]
      .map(t => ({text: t.textContent.trim(), r: t.getBoundingClientRect()}))
      .filter(b => b.text && b.r.width > 0 && b.r.height > 0);
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i].r, b = boxes[j].r;
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 1 && h > 1) found.push([svg.getAttribute('aria-label'), boxes[i].text, boxes[j].text]);
      }
    }
  }
  return found;
}
"""


@pytest.mark.browser
def test_report_renders_in_headless_chromium(page, model, tmp_path):
    """Open the page in a real browser: no console errors, names and verdict in the DOM."""
    with open_in_chromium(page, tmp_path) as (tab, messages, requests):
        text = tab.inner_text("body")
        overlaps = tab.evaluate(_OVERLAPS)
        tab.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        tab.emulate_media(media="print")
        print_text = tab.inner_text("body")
    errors = [m for m in messages if m.startswith(("error", "pageerror"))]
    assert not errors, errors
    assert [u for u in requests if not u.startswith("file:")] == []  # nothing from the network
    for seg_id, name in enumerate(model.segmenter.segment_names_):
        assert f"{seg_id} · {name}" in text
    assert "Refresh status:" in text and "DRIFT" in text
    assert "Recommendation: Promote the challenger" in text
    assert "Recommendation: Promote the challenger" in print_text
    assert overlaps == [], overlaps[:10]
    assert (tmp_path / "report.png").stat().st_size > 10_000
    screenshots = os.environ.get("SEGMENTKIT_SCREENSHOTS")
    if screenshots:  # keep the picture for a person to look at
        Path(screenshots).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "report.png", Path(screenshots) / "report.png")
