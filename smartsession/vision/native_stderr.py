"""Silence what native libraries (MediaPipe's C++ logging, libpng, libjpeg) print straight to file descriptor 2.

Their lines would interleave with our own one-line, actionable errors; Python-level stderr is not affected.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None


@contextlib.contextmanager
def quiet_stderr():
    """Point fd 2 at /dev/null for the duration of the block, then restore it.

    Nested and concurrent blocks (the page's frame worker thread next to a model loading) share one
    redirection, restored when the last block ends; separate save/restore pairs could interleave and leave
    fd 2 pointing at /dev/null for good.
    """
    global _depth, _saved_fd
    with _lock:
        if _depth == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError):
                saved = None
            if saved is not None:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            _saved_fd = saved
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_fd is not None:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = None
