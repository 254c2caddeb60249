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


def busy_for_a_comm_message(parts: list[bytes]) -> bool:
    """Whether an iopub message (its parts after the delimiter: signature, header, parent, metadata, content)
    is the kernel's "busy" status for a comm message."""
    # The server's own kernels no longer send these (kernelio.PageKernel); this keeps any other kernel's out too.
    if len(parts) < 5 or b'"status"' not in bytes(parts[1]) or json.loads(parts[1]).get("msg_type") != "status":
        return False
    return (json.loads(parts[4]).get("execution_state") == "busy"
            and json.loads(parts[2]).get("msg_type") == "comm_msg")


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
