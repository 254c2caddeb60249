"""What ``smartsession serve`` changes in its kernels' ipykernel: stdout and stderr that do not stop the kernel
for each message it handles when nothing was written.

ipykernel flushes both streams after every message it handles, and a flush waits for the kernel's I/O thread to
answer twice, even with nothing to send. A student page sends its kernel a message per frame, so that was four
thread round trips a frame, for output a student page never writes.
"""

from __future__ import annotations

from ipykernel.iostream import OutStream

#: Arguments every kernel of the server starts with (after ``-f CONNECTION_FILE``).
KERNEL_ARGUMENTS = (f"--IPKernelApp.outstream_class={__name__}.QuietOutStream",)


class QuietOutStream(OutStream):
    """ipykernel's ``OutStream`` whose ``flush`` returns at once when nothing waits to be sent."""

    def flush(self) -> None:
        # Set by every write until its flush has run: output written before this call is never skipped. Both are
        # ipykernel's own (6.29 to 7.x); an ipykernel without them gets its usual flush every time.
        if getattr(self, "_flush_pending", True) or getattr(self, "_subprocess_flush_pending", True):
            super().flush()
