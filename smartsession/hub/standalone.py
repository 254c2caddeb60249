"""The hub alone: a tornado app with only the hub's routes, for deployments behind a load balancer.

``smartsession hub`` runs it; tests start it in-process with ``running_hub`` or as a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
from typing import AsyncIterator

from tornado import web
from tornado.netutil import bind_sockets
from traitlets import Int, Unicode
from traitlets.config import Application

from smartsession.hub.config import HubConfig
from smartsession.hub.core import Hub
from smartsession.hub.httpserver import hub_http_server
from smartsession.hub.server import hub_handlers, log_request

log = logging.getLogger("smartsession.hub")


def make_app(hub: Hub) -> web.Application:
    return web.Application(hub_handlers(hub), websocket_max_message_size=65536, log_function=log_request)


def ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    if not certfile:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile or None)
    return ctx


@contextlib.asynccontextmanager
async def running_hub(
    host: str = "127.0.0.1", port: int = 0, certfile: str | None = None, keyfile: str | None = None,
    config: HubConfig | None = None, **settings
) -> AsyncIterator[tuple[Hub, str]]:
    """Start a hub on ``host:port`` (0: a free port) in the running loop; yield ``(hub, base_url)``.

    Settings come from ``config``, or else from ``settings`` (``HubConfig`` traits by name)."""
    if "data_dir" in settings:
        settings["data_dir"] = str(settings["data_dir"])
    hub = Hub(config if config is not None else HubConfig(**settings))
    await hub.start()
    server = hub_http_server(make_app(hub), hub.config, hub.connections, ssl_context(certfile, keyfile), hub.quiet,
                             xheaders=False)
    sockets = bind_sockets(port, host)
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    scheme = "https" if certfile else "http"
    try:
        yield hub, f"{scheme}://{host}:{bound}"
    finally:
        server.stop()
        await hub.stop()
        await server.close_all_connections()


class HubApp(Application):
    """``smartsession hub`` as a traitlets app: where it listens here, every ``HubConfig`` setting beside."""

    name = "smartsession-hub"
    classes = [HubConfig]
    host = Unicode("127.0.0.1", help="Address to bind.").tag(config=True)
    port = Int(8765, help="Port (0 picks a free one).").tag(config=True)
    certfile = Unicode("", help="TLS certificate (PEM) to serve wss://.").tag(config=True)
    keyfile = Unicode("", help="TLS private key (PEM), if not inside the certificate.").tag(config=True)


async def serve_forever(app: HubApp) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config = HubConfig(parent=app)
    async with running_hub(app.host, app.port, app.certfile or None, app.keyfile or None, config) as (hub, url):
        # What exists now (modules, the app) lives as long as the process: frozen, it is left out of every
        # full garbage collection, which took 25-40 ms of the loop at 1000 students (half of it these).
        gc.freeze()
        print(f"smartsession hub listening on {url} (data in {hub.config.data_dir})", flush=True)
        await stop.wait()
