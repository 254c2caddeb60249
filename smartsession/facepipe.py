"""The face pipe's protocol, shared by serve's relay (``serve/pipe.py``) and a kernel's end (``widgets/pipe.py``).

A browser-analysis page sends its batches of packed faces (``vision/packed.py``: ``BATCH_PREFIX``) to its own
kernel through serve as plain websocket frames, past Jupyter's messaging; the kernel answers each with an ack (a
JSON text frame) that serve passes back. Every connection's first message is a hello:
``{"type": "hello", "token": T}``, and from a kernel also ``"secret"``: serve's pipe secret, which serve gives
its own kernels in their environment. The kernel makes the token and tells its page through the camera widget.
docs/PROTOCOL.md describes it.
"""

from __future__ import annotations

import re

#: Routes under the server's base URL: the kernel's end, and the page's.
KERNEL_ROUTE = "smartsession/pipe/kernel"
PAGE_ROUTE = "smartsession/pipe/page"
#: Serve's kernels find in their environment where to connect, the secret, and the path their page connects to.
ENV_URL = "SMARTSESSION_PIPE_URL"
ENV_SECRET = "SMARTSESSION_PIPE_SECRET"
ENV_PAGE_PATH = "SMARTSESSION_PIPE_PAGE_PATH"
#: A pipe's token: made by the kernel, at least 32 URL-safe characters.
TOKEN = re.compile(r"[A-Za-z0-9_-]{32,128}")
#: A kernel's text messages (acks) are small; anything larger is not one.
MAX_KERNEL_TEXT = 4096


class CloseCode:
    """Why serve closed a pipe connection; the page falls back to the comm on any of them."""

    BAD_HELLO = 4400  # not a hello, a malformed one, or none in time
    FORBIDDEN = 4403  # a kernel's end without serve's secret
    UNKNOWN = 4404  # no kernel holds this token (now)
    REPLACED = 4409  # another page connection took this pipe
    GONE = 4410  # the kernel's end closed
    BINARY_ONLY = 1003  # text from a page after its hello, or binary from a kernel
