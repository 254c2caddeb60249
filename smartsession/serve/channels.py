"""The browser <-> kernel websocket of ``smartsession serve``: Jupyter's own, with Nagle's algorithm off and without
the "busy" status of each widget message.

A live page sends many small messages each way (a widget update, then a frame's ack); with Nagle on, the second
waits for the browser's delayed TCP ack, up to 40 ms on Linux, on top of a round trip of a few ms.

The kernel announces "busy" and "idle" around every message it handles, and a student page sends one per frame.
The page's JavaScript needs the "idle" (it completes the message, and lets a widget send its next state); it does
nothing with the "busy" of a comm message, which was one message in four this server relayed per frame.
"""

from __future__ import annotations

import json

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection


def message_types(parts: list[bytes]) -> tuple[str | None, str | None, str | None]:
    """A kernel message's type, its parent's type and, for a status message, the execution state, read from its
    parts after the delimiter (signature, header, parent, metadata, content) without the rest of it; ValueError
    for anything that is not Jupyter's wire format."""
    try:
        header, parent = json.loads(parts[1]), json.loads(parts[2])
        msg_type = header.get("msg_type")
        state = json.loads(parts[4]).get("execution_state") if msg_type == "status" else None
        parent_type = parent.get("msg_type") if isinstance(parent, dict) else None
    except (IndexError, AttributeError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not a Jupyter message: {err}") from None
    return msg_type, parent_type, state if isinstance(state, str) else None


def busy_for_a_comm_message(parts: list[bytes]) -> bool:
    """Whether an iopub message (its parts after the delimiter) is the kernel's "busy" status for a comm message."""
    # The server's own kernels no longer send these (seams/kernel.py PageKernel); this keeps any other kernel's out too.
    if len(parts) < 5 or b'"status"' not in bytes(parts[1]):
        return False
    return message_types(parts) == ("status", "comm_msg", "busy")


class LiveKernelConnection(ZMQChannelsWebsocketConnection):
    """Kernel channels that write each message at once instead of batching it behind an unacked one, and leave
    out the busy status of comm messages."""

    def connect(self):
        # The hub's websockets do the same (hub/wire.py); Jupyter's kernel websocket leaves Nagle on.
        self.websocket_handler.set_nodelay(True)
        return super().connect()

    def handle_outgoing_message(self, stream, outgoing_msg: list) -> None:
        channel = stream if isinstance(stream, str) else getattr(stream, "channel", None)
        if channel == "iopub":
            _, parts = self.session.feed_identities(outgoing_msg)
            if busy_for_a_comm_message(parts):
                return
        super().handle_outgoing_message(stream, outgoing_msg)
