"""Open a report in headless Chromium for the browser tests of this folder."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SEGMENTKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@contextlib.contextmanager
def open_in_chromium(page: str, tmp_path: Path) -> Iterator[tuple[Any, list[str], list[str]]]:
    """Write ``page`` to ``tmp_path/report.html`` and open it in a 1366 x 900 tab.

    Yields the tab, the messages seen (console ``type: text``, ``pageerror: ...``,
    ``dialog: ...``, dialogs dismissed) and every URL requested. Never skipped: CI
    installs Playwright with the test extra and Chromium with apt-get.
    """
    try:
        from playwright import sync_api as playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[test]'")
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    messages: list[str] = []
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1366, "height": 900})
            tab.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            tab.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            tab.on("dialog", lambda d: (messages.append(f"dialog: {d.message}"), d.dismiss()))
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto(path.as_uri(), wait_until="load")
            yield tab, messages, requests
        finally:
            browser.close()
