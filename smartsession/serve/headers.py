"""What every response of ``smartsession serve`` tells the browser: load and connect to this server only, never
say where a page was (its address may carry a link's token), and guess no content types.

The Content-Security-Policy is the browser's own guard for the privacy promise: whatever a library in the page
tries (MediaPipe's bundle shipped a usage logger posting to a Google host), the browser refuses any request,
websocket, script, picture or font from another origin. What remains allowed is what Voila and the widgets need
from this origin: inline scripts and styles (Voila's templates and ipywidgets write them), ``eval`` (the widget
manager builds functions), WebAssembly (the face landmarker), ``blob:`` and ``data:`` (widgets load their code
and icons from blobs; the camera's snapshots are blobs), all made by the page itself, never fetched from elsewhere.
"""

from __future__ import annotations

import tornado.web

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval' 'wasm-unsafe-eval' blob:",
        "worker-src 'self' blob:",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class SecurityHeaders(tornado.web.OutputTransform):
    """Sets :data:`HEADERS` on every response, replacing what a handler set (Jupyter's own policy allows more)."""

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        for name, value in HEADERS.items():
            headers[name] = value
        return status_code, headers, chunk
