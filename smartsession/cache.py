"""Where SmartSession keeps what it fetches (the face model, sample media, test assets), and the checksum guarding it.

Nothing fetched is committed; every file is checked by SHA-256 before it is used.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_root() -> Path:
    """``$SMARTSESSION_CACHE``, else ``$XDG_CACHE_HOME/smartsession``, else ``~/.cache/smartsession``."""
    root = os.environ.get("SMARTSESSION_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "smartsession"


def cache_dir(name: str) -> Path:
    """A named folder under :func:`cache_root`, created on first use."""
    path = cache_root() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
