"""Two small things a hostile client noticed: assets honour Range (13 MB were sent for bytes=0-0), and the _xsrf
cookie is never sent by another site's request (SameSite=Strict; also Secure when served over https)."""

from __future__ import annotations

import urllib.request

from smartsession.vision import browser_assets


def test_an_asset_answers_a_range_with_those_bytes_only(server):
    url = browser_assets.asset_urls("/")["vision_wasm_internal.wasm"]
    whole = browser_assets.path_of(browser_assets.BY_NAME["vision_wasm_internal.wasm"]).read_bytes()
    first = server.request(url, headers={"Range": "bytes=0-0", "Accept-Encoding": "gzip"})
    assert first.status == 206 and first.body == whole[:1]
    assert first.headers["Content-Range"] == f"bytes 0-0/{len(whole)}" and "Content-Encoding" not in first.headers
    tail = server.request(url, headers={"Range": "bytes=-100"})
    assert tail.status == 206 and tail.body == whole[-100:]
    beyond = server.request(url, headers={"Range": f"bytes={len(whole)}-"})
    assert beyond.status == 416 and beyond.body == b""
    assert server.request(url, headers={"Range": "bytes=0-1,4-5"}).status == 416


def test_the_xsrf_cookie_is_same_site_strict(server):
    with urllib.request.urlopen(server.join_url, timeout=120) as page:
        cookies = page.headers.get_all("Set-Cookie")
    xsrf = [c for c in cookies if c.startswith("_xsrf=")]
    assert xsrf and "SameSite=Strict" in xsrf[0], cookies
