"""The student page in real headless Chromium: widgets come alive and nothing is fetched from outside.

Every request the page makes is recorded; any request to a host other than the server is refused and fails.
"""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlparse

import pytest

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


def chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    message = "chromium is not installed: `apt-get install chromium` (bash .ci/run does it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def test_student_page_runs_its_widgets_offline_in_chromium(server):
    executable = chromium()
    from playwright.sync_api import sync_playwright

    server.wait_warm(180)
    own = urlparse(server.url).netloc
    requested, outside = [], []

    def route(route):
        url = route.request.url
        requested.append(url)
        if urlparse(url).scheme in ("http", "https", "ws", "wss") and urlparse(url).netloc != own:
            outside.append(url)
            route.abort()
        else:
            route.continue_()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.route("**/*", route)
            page.goto(server.join_url, wait_until="load", timeout=120_000)
            page.wait_for_selector(".widget-slider, .jupyter-widgets.widget-inline-hbox", timeout=120_000)
            page.wait_for_selector(f"text=class {server.class_id}", timeout=30_000)
            icons = page.evaluate(
                "() => [...document.styleSheets].some(s => (s.href || '').includes('font-awesome'))"
            )
        finally:
            browser.close()
    assert outside == [], f"the page reached outside hosts: {outside}"
    assert any("smartsession/static/font-awesome" in url for url in requested)
    assert icons
