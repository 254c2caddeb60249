"""A student page analysing in the browser for more than 90 s talks to the class server and nobody else.

MediaPipe's bundle posted usage logs to a Google host every 60 s; a shorter test never saw it. Chromium's own
network log (CDP) records every request and websocket of the page; the page's Content-Security-Policy makes
the browser refuse any other origin, and the console says so if anything even tried.
"""

from __future__ import annotations

import base64
import re
import time
from urllib.parse import urlparse

from smartsession.serve.headers import CONTENT_SECURITY_POLICY

from test_browser_analysis import AGREE, PAGE_TIMEOUT_MS, READY, camera_stats, name_field

WATCH_S = 95
#: Starts of picture files a browser encodes (JPEG, PNG, WebP, GIF), long enough not to occur by chance.
IMAGE_MAGIC = re.compile(rb"\xff\xd8\xff[\xdb\xe0-\xef]|\x89PNG\r\n\x1a\n|RIFF....WEBP|GIF8[79]a", re.S)


class NetworkLog:
    """What Chromium's CDP Network domain reports for one page: requests, websockets, frames the page sent."""

    def __init__(self, context, page):
        self.requests: list[str] = []
        self.sockets: list[str] = []
        self.sent: list[bytes] = []
        self.posted: list[bytes] = []
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.on("Network.requestWillBeSent", self._request)
        cdp.on("Network.webSocketCreated", lambda e: self.sockets.append(e["url"]))
        cdp.on("Network.webSocketFrameSent", self._frame)

    def _request(self, event):
        request = event["request"]
        self.requests.append(request["url"])
        for entry in request.get("postDataEntries", []):
            self.posted.append(base64.b64decode(entry.get("bytes", "")))

    def _frame(self, event):
        response = event["response"]
        data = response["payloadData"]
        self.sent.append(base64.b64decode(data) if response["opcode"] == 2 else data.encode())

    def elsewhere(self, origin: str) -> list[str]:
        """URLs that go to another host than ``origin`` (data: and blob: URLs are the page's own)."""
        return [u for u in self.requests + self.sockets
                if urlparse(u).scheme in ("http", "https", "ws", "wss") and urlparse(u).netloc != origin]


def csp_refusals(page) -> list[str]:
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    return refused


def test_pages_send_a_policy_that_allows_only_their_own_server(server):
    for url in (server.join_url, server.teacher_url, server.url):
        headers = {k.lower(): v for k, v in server.request(url).headers.items()}
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, url
        assert headers["referrer-policy"] == "no-referrer", url
    assert "connect-src 'self'" in CONTENT_SECURITY_POLICY and "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "http" not in CONTENT_SECURITY_POLICY and "*" not in CONTENT_SECURITY_POLICY


def test_a_student_page_talks_to_its_server_only_for_90_seconds(browser, server, screenshot):
    origin = urlparse(server.url).netloc
    context = browser.new_context()
    try:
        page = context.new_page()
        network = NetworkLog(context, page)
        refused = csp_refusals(page)
        page.goto(server.join_url, timeout=PAGE_TIMEOUT_MS)
        name_field(page).fill("Ada Lovelace")
        page.wait_for_function(READY, timeout=60_000)
        page.get_by_role("button", name=AGREE).click()
        started = time.monotonic()
        page.wait_for_timeout(WATCH_S * 1000)
        stats = camera_stats(page)
        screenshot(page, "after-95s")
        watched = time.monotonic() - started
    finally:
        context.close()
    assert watched >= 90
    # The model ran the whole time, in the browser: faces kept going to the kernel as numbers.
    assert stats["mode"] == "browser" and stats["sent"] == 0 and stats["faces_sent"] >= 100, stats
    assert network.elsewhere(origin) == [], f"the page reached other hosts: {network.elsewhere(origin)}"
    assert refused == [], f"the page tried what its policy forbids: {refused}"
    assert network.sockets and len(network.sent) >= 100
    pictures = [m[:4] for m in network.sent + network.posted if IMAGE_MAGIC.search(m)]
    assert pictures == [], "the page sent picture bytes"


def test_the_teacher_page_loads_within_its_policy(browser, server, screenshot):
    origin = urlparse(server.url).netloc
    context = browser.new_context()
    try:
        page = context.new_page()
        network = NetworkLog(context, page)
        refused = csp_refusals(page)
        page.goto(server.teacher_url, timeout=PAGE_TIMEOUT_MS)
        page.wait_for_selector('.ss-status[data-status="live"]', timeout=PAGE_TIMEOUT_MS)
        page.wait_for_timeout(3000)
        screenshot(page, "teacher")
    finally:
        context.close()
    assert network.elsewhere(origin) == []
    assert refused == [], f"the teacher page tried what its policy forbids: {refused}"
