"""The browser face landmarker's files, served by ``smartsession serve`` itself: no CDN while a lesson runs.

URLs hold each file's hash (``/smartsession/assets/<hash>/<name>``), so a browser keeps them for good and a second
lesson downloads nothing; gzip copies are sent to browsers that accept them. Only the files listed in
``vision/browser_assets.py`` exist here: a name or hash not in that list is a 404, never a path on disk.
"""

from __future__ import annotations

import tornado.web

from smartsession.vision import browser_assets

ROUTE = r"/smartsession/assets/([0-9a-f]{16})/([A-Za-z0-9_.]+)"
CHUNK = 1 << 20


class AssetHandler(tornado.web.RequestHandler):
    """One listed asset, gzip when the browser accepts it; cacheable for a year, immutable."""

    def compute_etag(self):
        return None  # set from the content hash below; hashing 13 MB per request would be waste

    async def get(self, digest: str, name: str) -> None:
        await self._serve(digest, name, body=True)

    async def head(self, digest: str, name: str) -> None:
        await self._serve(digest, name, body=False)

    async def _serve(self, digest: str, name: str, body: bool) -> None:
        asset = browser_assets.BY_NAME.get(name)
        if asset is None or not asset.sha256.startswith(digest):
            raise tornado.web.HTTPError(404, reason="Not Found")
        wanted = self.request.headers.get("Range")
        # A range is of the file itself: asked for one, the browser gets those bytes, never the whole gzip copy.
        gzipped = wanted is None and "gzip" in self.request.headers.get("Accept-Encoding", "")
        path = browser_assets.gzip_path_of(asset) if gzipped else browser_assets.path_of(asset)
        if not path.is_file():
            raise tornado.web.HTTPError(404, reason="not fetched: run `smartsession models fetch` on the server")
        self.set_header("Content-Type", asset.content_type)
        self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        self.set_header("Vary", "Accept-Encoding")
        etag = f'"{asset.sha256[:16]}{"-gz" if gzipped else ""}"'
        self.set_header("ETag", etag)
        if gzipped:
            self.set_header("Content-Encoding", "gzip")
        if self.request.headers.get("If-None-Match", "").strip() == etag:
            self.set_status(304)
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        if wanted is not None:
            self.set_header("Accept-Ranges", "bytes")
            asked = byte_range(wanted, size)
            if asked is None:
                self.set_status(416)
                self.set_header("Content-Range", f"bytes */{size}")
                return
            start, end = asked
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.set_header("Content-Length", end - start + 1)
        if not body:
            return
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left and (chunk := f.read(min(CHUNK, left))):
                left -= len(chunk)
                self.write(chunk)
                await self.flush()


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The first and last byte of a single ``bytes=`` range within ``size``; None if unsatisfiable or not one."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()) \
            or (last and not last.isdigit()):
        return None
    if not first:  # the last N bytes
        n = int(last)
        return (max(0, size - n), size - 1) if n and size else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end and start < size else None
