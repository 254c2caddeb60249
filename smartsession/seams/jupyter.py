"""Voila, jupyter_server and jupyter_client internals behind ``smartsession serve``'s pool, pages and kernels.

Voila has no public API for its pool of preheated kernels (which ones run, which wait for their page) nor for
telling a pool kernel's start from a page's; jupyter_server none for an activity watch that reads only headers.
These functions are the only places that reach inside them; :data:`SEAMS` checks each at start.
"""

from __future__ import annotations

import inspect
from typing import Any

from jupyter_client.provisioning import LocalProvisioner
from jupyter_server.extension import manager as extension_manager
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.services.kernels.kernelmanager import MappingKernelManager
from voila import app as voila_app
from voila import handler as voila_handler
from tornado.websocket import WebSocketProtocol13
from voila.request_info_handler import RequestInfoSocketHandler
from voila.tornado.kernel_websocket_handler import VoilaKernelWebsocketHandler
from voila.tornado.handler import TornadoVoilaHandler
from voila import utils as voila_utils
from voila.utils import ENV_VARIABLE

from smartsession.seams import Seam

#: The kernel id in Voila's routes (``/api/kernels/{id}``, ``/voila/query/{id}``), a named group ``kernel_id``.
KERNEL_ID = voila_app._kernel_id_regex

#: What a kernel's environment tells Voila's ``voila.utils.wait_for_request`` (run by the student page in its
#: kernel): where to open the websocket that hands a preheated kernel its page request.
APP_IP = ENV_VARIABLE.VOILA_APP_IP.value
WS_PROTOCOL = ENV_VARIABLE.VOILA_WS_PROTOCOL.value


#: The routes ``serve`` takes from Voila (relative to the base URL) and the handler each was reviewed with;
#: Voila's others (notebook tree, contents API, file server, login...) and any it adds later are never served.
VOILA_ROUTES = {
    r"/api/kernels/%s" % KERNEL_ID: "KernelHandler",  # a page's kernel, by the id only its page knows
    r"/api/kernels/%s/channels" % KERNEL_ID: "VoilaKernelWebsocketHandler",  # widget messages only (lockdown)
    r"/voila/static/(.*)": "MultiStaticFileHandler",  # the pages' JavaScript and CSS
    r"/voila/api/themes/(.*)": "ThemesHandler",  # the light/dark theme stylesheets
    r"/voila/api/shutdown/(.*)": "VoilaShutdownKernelHandler",  # a closing tab ends its kernel (xsrf-checked)
    r"/voila/labextensions/(.*)": "FileFindHandler",  # the widgets' front ends
}


#: Seconds between keepalive pings on a page's kernel websocket, and how long its pong may take: a page whose
#: laptop vanished without closing is found within a minute, and its kernel culled (pool.py).
KEEPALIVE_S = 30.0

#: The settings serve gives jupyter_server: its WebSocketMixin's own millisecond ping timer off (one keepalive).
KEEPALIVE_SETTINGS = {"ws_ping_interval": 0}


class KeptAliveKernelWebsocketHandler(VoilaKernelWebsocketHandler):
    """A page's kernel websocket with one keepalive: tornado's own, in seconds.

    jupyter_server's ``WebSocketMixin`` runs a millisecond ping timer from ``ping_interval``/``ping_timeout``
    (30000, 90000), the very properties tornado >= 6.5 reads in seconds for its keepalive, which it then logs
    as "The websocket_ping_timeout (90000) cannot be longer than the websocket_ping_interval (30000)". With the
    mixin's timer off (:data:`KEEPALIVE_SETTINGS`) the protocol gets the keepalive in its own unit."""

    def get_websocket_protocol(self):
        protocol = super().get_websocket_protocol()
        if protocol is not None:
            protocol.params.ping_interval = protocol.params.ping_timeout = KEEPALIVE_S
        return protocol


def with_keepalive(route: tuple) -> tuple:
    """Voila's route with its kernel websocket handler swapped for :class:`KeptAliveKernelWebsocketHandler`."""
    if len(route) > 1 and route[1] is VoilaKernelWebsocketHandler:
        return (route[0], KeptAliveKernelWebsocketHandler, *route[2:])
    return route


def starts_a_pool_kernel(start_kwargs: dict) -> bool:
    """Whether ``start_kernel(**start_kwargs)`` comes from Voila's pool refill rather than from a page."""
    return (start_kwargs.get("env") or {}).get(ENV_VARIABLE.VOILA_PREHEAT.value) == "True"


def waiting_for_its_page(kernel_id: str) -> bool:
    """Whether a pool kernel has run its page up to ``wait_for_request()`` and waits for a page to take it."""
    return kernel_id in RequestInfoSocketHandler._waiters


def pool_entries(kernel_manager: Any, notebook: str) -> list:
    """Voila's pool of ``notebook``, oldest first: tasks resolving to ``{"kernel_id", "task", ...}``."""
    return list(kernel_manager._pools.get(notebook, ()))


def keep_activity_stream(kernel: Any, stream: Any) -> None:
    """Where jupyter_server's ``stop_watching_activity`` finds (and closes) the stream a watch reads."""
    kernel._activity_stream = stream


class ServerStartedExtension(ExtensionApp):
    """A server extension whose ``started()`` coroutine runs once the server's event loop does."""

    async def started(self) -> None:
        pass

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        await self.started()


def _kernel_id(_app) -> str | None:
    if not isinstance(getattr(voila_app, "_kernel_id_regex", None), str) or "(?P<kernel_id>" not in KERNEL_ID:
        return "voila.app._kernel_id_regex is gone or has no kernel_id group"
    return None


def _env(_app) -> str | None:
    names = {e.value for e in voila_utils.ENV_VARIABLE}
    missing = {"VOILA_PREHEAT", APP_IP, WS_PROTOCOL} - names
    if missing:
        return f"voila.utils.ENV_VARIABLE no longer names {', '.join(sorted(missing))}"
    return None


def _waiters(_app) -> str | None:
    if not isinstance(getattr(RequestInfoSocketHandler, "_waiters", None), dict):
        return "RequestInfoSocketHandler._waiters is no longer a dict of waiting kernels"
    return None


def _pools(app) -> str | None:
    if app is None or getattr(app, "kernel_manager", None) is None:
        return None  # checked once the server has its kernel manager
    if not isinstance(getattr(app.kernel_manager, "_pools", None), dict):
        return f"{type(app.kernel_manager).__name__} has no dict _pools"
    return None


_SHOULD_USE = ["self", "notebook_data", "pool_size", "template_name", "theme", "request_args"]


def _page_handler(_app) -> str | None:
    params = list(inspect.signature(TornadoVoilaHandler.should_use_rendered_notebook).parameters)
    if params != _SHOULD_USE:
        return f"TornadoVoilaHandler.should_use_rendered_notebook({', '.join(params[1:])}) changed its arguments"
    if not inspect.isasyncgenfunction(TornadoVoilaHandler.get_generator):
        return "TornadoVoilaHandler.get_generator is no longer an async generator"
    return None


def _query_string(_app) -> str | None:
    # serve/linkcookie.py fills a page's secrets back into request.query, which Voila hands the kernel.
    try:
        source = inspect.getsource(voila_handler.VoilaHandler)
    except (OSError, TypeError):
        source = ""
    if "self.request.query" not in source:
        return "voila's VoilaHandler no longer hands the kernel self.request.query as its QUERY_STRING"
    return None


def _activity_watch(_app) -> str | None:
    if "_activity_stream" not in inspect.getsource(MappingKernelManager.stop_watching_activity):
        return "MappingKernelManager.stop_watching_activity no longer closes kernel._activity_stream"
    if list(inspect.signature(MappingKernelManager.start_watching_activity).parameters) != ["self", "kernel_id"]:
        return "MappingKernelManager.start_watching_activity(kernel_id) changed its arguments"
    return None


def _outgoing(_app) -> str | None:
    params = list(inspect.signature(ZMQChannelsWebsocketConnection.handle_outgoing_message).parameters)
    if params != ["self", "stream", "outgoing_msg"]:
        return f"ZMQChannelsWebsocketConnection.handle_outgoing_message({', '.join(params[1:])}) changed"
    return None


def _routes(app) -> str | None:
    if app is None or not hasattr(app, "voila_routes"):
        return None  # checked once the server builds its routes
    offered = {pattern: handler.__name__ for pattern, handler in app.voila_routes().items()}
    for pattern, name in VOILA_ROUTES.items():
        if offered.get(pattern) != name:
            return f"route {pattern} is served by {offered.get(pattern, 'nothing')}, not {name}"
    return None


def _keepalive(_app) -> str | None:
    source = inspect.getsource(WebSocketProtocol13)
    if "self.params.ping_interval" not in source or "self.params.ping_timeout" not in source:
        return "tornado's WebSocketProtocol13 no longer reads its keepalive from self.params"
    if "ws_ping_interval" not in inspect.getsource(VoilaKernelWebsocketHandler.ping_interval.fget):
        return "jupyter_server's WebSocketMixin.ping_interval no longer reads the ws_ping_interval setting"
    return None


def _provisioner(_app) -> str | None:
    missing = [n for n in ("process", "pid", "pgid") if not hasattr(LocalProvisioner, n)]
    return f"LocalProvisioner no longer has {', '.join(missing)}" if missing else None


def _extension_start(_app) -> str | None:
    if "self.app._start_jupyter_server_extension" not in inspect.getsource(extension_manager.ExtensionPoint):
        return "the extension manager no longer starts an ExtensionApp with _start_jupyter_server_extension"
    return None


EXTENSION_SEAMS = (
    Seam("jupyter_server", "ExtensionApp._start_jupyter_server_extension(serverapp): the hub extension's start",
         "2.0", _extension_start),
)

SEAMS = (
    Seam("voila", "voila.app._kernel_id_regex: the kernel id in the routes serve takes over", "0.5.0", _kernel_id),
    Seam("voila", "ENV_VARIABLE VOILA_PREHEAT, VOILA_APP_IP, VOILA_WS_PROTOCOL: pool starts and the page handshake",
         "0.5.0", _env),
    Seam("voila", "RequestInfoSocketHandler._waiters: which pool kernels wait for their page", "0.5.0", _waiters),
    Seam("voila", "VoilaKernelManager._pools: the pool's kernels, for its status and the next kernel", "0.5.0",
         _pools),
    Seam("voila", "TornadoVoilaHandler.get_generator and should_use_rendered_notebook(5 arguments): the pages",
         "0.5.0", _page_handler),
    Seam("voila", "Voila.init_handlers: the routes serve takes (VOILA_ROUTES), each with its handler", "0.5.0",
         _routes),
    Seam("jupyter_server", "start_watching_activity(kernel_id) and kernel._activity_stream: the activity watch",
         "2.0", _activity_watch),
    Seam("jupyter_server", "ZMQChannelsWebsocketConnection.handle_outgoing_message(stream, outgoing_msg)", "2.4",
         _outgoing),
    Seam("jupyter_client", "LocalProvisioner.process, .pid, .pgid: a forked kernel is polled and signalled",
         "7.0", _provisioner),
    *EXTENSION_SEAMS,
    Seam("voila", "VoilaHandler: request.query becomes the kernel's QUERY_STRING (the link's secrets, from cookies)",
         "0.5.0", _query_string),
    Seam("tornado", "WebSocketProtocol13.params.ping_interval/ping_timeout (seconds); jupyter_server's ws_ping_interval "
         "setting (its millisecond timer): one keepalive on kernel websockets", "6.5", _keepalive),
)
