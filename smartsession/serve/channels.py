"""The browser <-> kernel websocket of ``smartsession serve``: Jupyter's own, with Nagle's algorithm off.

A live page sends many small messages each way (a widget update, then a frame's ack); with Nagle on, the second
waits for the browser's delayed TCP ack, up to 40 ms on Linux, on top of a round trip of a few ms.
"""

from __future__ import annotations

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection


class LiveKernelConnection(ZMQChannelsWebsocketConnection):
    """Kernel channels that write each message at once instead of batching it behind an unacked one."""

    def connect(self):
        # The hub's websockets do the same (hub/wire.py); Jupyter's kernel websocket leaves Nagle on.
        self.websocket_handler.set_nodelay(True)
        return super().connect()
