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
        gzipped = "gzip" in self.request.headers.get("Accept-Encoding", "")
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
        self.set_header("Content-Length", path.stat().st_size)
        if not body:
            return
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                self.write(chunk)
                await self.flush()
