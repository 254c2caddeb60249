"""Silence what native libraries (MediaPipe's C++ logging, libpng, libjpeg) print straight to file descriptor 2.

Their lines would interleave with our own one-line, actionable errors; Python-level stderr is not affected.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stderr():
    """Point fd 2 at /dev/null for the duration of the block, then restore it."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
