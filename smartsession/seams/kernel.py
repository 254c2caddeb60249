"""What ``smartsession serve`` changes in its kernels' ipykernel: per-message costs a student page pays for each of
its frames and never uses.

- stdout and stderr that do not stop the kernel when nothing was written. ipykernel flushes both streams after
  every message it handles, and a flush waits for the kernel's I/O thread to answer twice, even with nothing to
  send. A student page sends its kernel a message per frame: four thread round trips a frame, for output a
  student page never writes.
- no "busy" status for a widget message. The kernel announces "busy" and "idle" around every message it
  handles. The page's JavaScript needs the "idle" (it completes the message, and lets a widget send its next
  state); it does nothing with the "busy" of a comm message, which cost the kernel a signed message through its
  I/O thread, and the server one more to read, per frame. Every other message keeps both.
- a log that does not build a record for each debug line its handlers would drop (ipykernel logs three per
  message it handles, and the application's logger passes everything to a handler that keeps warnings).
"""

from __future__ import annotations

import inspect
import logging

from ipykernel.iostream import OutStream
from ipykernel.ipkernel import IPythonKernel

from smartsession.seams import Seam

#: Arguments every kernel of the server starts with (after ``-f CONNECTION_FILE``).
KERNEL_ARGUMENTS = (
    f"--IPKernelApp.outstream_class={__name__}.QuietOutStream",
    f"--IPKernelApp.kernel_class={__name__}.PageKernel",
)


class QuietOutStream(OutStream):
    """ipykernel's ``OutStream`` whose ``flush`` returns at once when nothing waits to be sent."""

    def flush(self) -> None:
        # Set by every write until its flush has run: output written before this call is never skipped. Both are
        # ipykernel's own (6.29 to 7.x); an ipykernel without them gets its usual flush every time.
        if getattr(self, "_flush_pending", True) or getattr(self, "_subprocess_flush_pending", True):
            super().flush()


class PageKernel(IPythonKernel):
    """The IPython kernel, without the busy status of comm messages and without debug records nobody keeps."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        log = self.log
        # The logger's own level is the application's floor (DEBUG); its handlers decide what is kept. Raising
        # the logger to its most permissive handler changes nothing that is written.
        if isinstance(log, logging.Logger) and log.handlers and log.level < logging.WARNING:
            log.setLevel(max(log.level, min(h.level for h in log.handlers)))

    def _publish_status(self, status, channel, parent=None):
        if status == "busy" and parent is None:
            header = (self.get_parent(channel) or {}).get("header") or {}
            if header.get("msg_type") == "comm_msg":
                return
        super()._publish_status(status, channel, parent)


def _flush_flags(_app) -> str | None:
    if "self._flush_pending = True" not in inspect.getsource(OutStream._schedule_flush):
        return "OutStream._schedule_flush no longer sets _flush_pending"
    cleared = inspect.getsource(OutStream._flush)
    if "self._flush_pending = False" not in cleared or "self._subprocess_flush_pending = False" not in cleared:
        return "OutStream._flush no longer clears _flush_pending and _subprocess_flush_pending"
    return None


def _publish_status(_app) -> str | None:
    method = getattr(IPythonKernel, "_publish_status", None)
    if method is None:
        return "Kernel._publish_status is gone"
    if list(inspect.signature(method).parameters) != ["self", "status", "channel", "parent"]:
        return f"Kernel._publish_status{inspect.signature(method)} is not (self, status, channel, parent=None)"
    return None


SEAMS = (
    Seam("ipykernel", "OutStream._flush_pending and ._subprocess_flush_pending: QuietOutStream skips empty flushes",
         "6.29", _flush_flags),
    Seam("ipykernel", "Kernel._publish_status(status, channel, parent): PageKernel drops a comm message's busy",
         "6.29", _publish_status),
)
