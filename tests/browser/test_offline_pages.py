"""The real student page in headless Chromium with every outside request refused: it still comes alive.

Voila's templates load Font Awesome from a CDN; `serve` serves a local copy, and nothing else leaves the server.
"""

from __future__ import annotations

from urllib.parse import urlparse


def test_student_page_comes_alive_with_no_outside_request(browser, server, screenshot):
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

    server.wait_warm(180)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.route("**/*", route)
        page.goto(server.join_url, wait_until="load", timeout=120_000)
        page.wait_for_selector(".ss-consent", timeout=120_000)
        icons = page.evaluate("() => [...document.styleSheets].some(s => (s.href || '').includes('font-awesome'))")
        screenshot(page, "offline")
    finally:
        context.close()
    assert outside == [], f"the page reached outside hosts: {outside}"
    assert any("smartsession/static/font-awesome" in url for url in requested)
    assert icons
