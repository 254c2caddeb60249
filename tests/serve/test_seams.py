"""The seams room: serve answers only its allow-listed routes, and refuses to start when a seam no longer holds.

Each seam is broken the way an upgrade would break it (the attribute gone, the signature changed, a route's
handler renamed) and ``smartsession serve`` (or ``hub``) must stop with one line naming the package and version.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import uuid

import pytest
import tornado.web
import voila.app
import voila.handler
import voila.utils
from ipykernel.iostream import OutStream
from ipykernel.ipkernel import IPythonKernel
from jupyter_client.provisioning import LocalProvisioner
from jupyter_server.extension import manager as extension_manager
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.services.kernels.kernelmanager import MappingKernelManager
from tornado.iostream import BaseIOStream
from tornado.tcpserver import TCPServer
from voila.request_info_handler import RequestInfoSocketHandler
from voila.tornado.handler import TornadoVoilaHandler

from smartsession.hub.core import Hub
from smartsession.hub.server import hub_handlers
from smartsession.seams import http, installed, jupyter, kernel
from smartsession.serve.app import SmartSessionApp

SEAMS = (*http.SEAMS, *jupyter.SEAMS, *kernel.SEAMS)


def _renamed_themes(monkeypatch):
    monkeypatch.setattr(voila.app, "ThemesHandler", type("StyleHandler", (voila.app.ThemesHandler,), {}))


def _enum_without_app_ip(monkeypatch):
    names = {e.name: e.value for e in voila.utils.ENV_VARIABLE if e.name != "VOILA_APP_IP"}
    monkeypatch.setattr(voila.utils, "ENV_VARIABLE", voila.utils.StringEnum("ENV_VARIABLE", names))


def _replace(monkeypatch, owner, name, function):
    monkeypatch.setattr(owner, name, function)


class _Point:
    """An extension point that no longer starts its app."""


def _no_init(self, *args, **kwargs):
    pass


def _no_pools(app):
    del app.kernel_manager._pools


def _should_use_four(self, notebook_data, pool_size, template_name, theme):
    return False


def _stop_watching(self, kernel_id):
    pass


def _outgoing(self, stream, msg):
    pass


def _flush(self):
    pass


def _publish_status(self, status, parent=None):
    pass


#: How an upgrade could break each seam (before the app starts), or its running kernel manager (after settings).
BREAK = {
    http.SEAMS[0]: lambda mp: _replace(mp, TCPServer, "__init__", _no_init),
    http.SEAMS[1]: lambda mp: mp.delattr(TCPServer, "_handle_connection"),
    http.SEAMS[2]: lambda mp: _replace(mp, BaseIOStream, "__init__", _no_init),
    jupyter.SEAMS[0]: lambda mp: mp.delattr(voila.app, "_kernel_id_regex"),
    jupyter.SEAMS[1]: _enum_without_app_ip,
    jupyter.SEAMS[2]: lambda mp: mp.delattr(RequestInfoSocketHandler, "_waiters"),
    jupyter.SEAMS[3]: "after settings",
    jupyter.SEAMS[4]: lambda mp: _replace(mp, TornadoVoilaHandler, "should_use_rendered_notebook", _should_use_four),
    jupyter.SEAMS[5]: _renamed_themes,
    jupyter.SEAMS[6]: lambda mp: _replace(mp, MappingKernelManager, "stop_watching_activity", _stop_watching),
    jupyter.SEAMS[7]: lambda mp: _replace(mp, ZMQChannelsWebsocketConnection, "handle_outgoing_message", _outgoing),
    jupyter.SEAMS[8]: lambda mp: mp.delattr(LocalProvisioner, "pgid"),
    jupyter.SEAMS[9]: lambda mp: _replace(mp, extension_manager, "ExtensionPoint", _Point),
    jupyter.SEAMS[10]: lambda mp: _replace(mp, voila.handler, "VoilaHandler", _Point),
    jupyter.SEAMS[11]: lambda mp: _replace(mp, jupyter, "WebSocketProtocol13", _Point),
    kernel.SEAMS[0]: lambda mp: _replace(mp, OutStream, "_flush", _flush),
    kernel.SEAMS[1]: lambda mp: _replace(mp, IPythonKernel, "_publish_status", _publish_status),
}


class Started:
    """``SmartSessionApp`` taken through serve's start up to its routes (no socket, no kernel), in this process."""

    def __init__(self, data_dir, after_settings=None):
        self.app = SmartSessionApp()
        self.app.initialize(["--SmartSessionApp.pool_size=0", f"--HubConfig.data_dir={data_dir}"])
        self.loop = asyncio.new_event_loop()
        self.app.hub = Hub(self.app.hub_config)
        self.loop.run_until_complete(self.app.hub.start())
        try:
            self.app.connection_dir = tempfile.mkdtemp(dir=data_dir)
            self.web = tornado.web.Application(**self.app.init_settings())
            if after_settings is not None:
                after_settings(self.app)
            self.web.add_handlers(".*$", self.app.init_handlers())
        finally:
            self.loop.run_until_complete(self.app.hub.stop())
            self.loop.close()

    def routes(self) -> dict[str, type]:
        """Every route of the application, relative to the base URL, and its handler."""
        found = {}

        def walk(router):
            for rule in router.rules:
                if hasattr(rule.target, "rules"):
                    walk(rule.target)
                else:
                    found[rule.matcher.regex.pattern.removesuffix("$")] = rule.target

        walk(self.web.default_router)
        return found


def test_every_seam_has_a_way_to_break_it():
    assert set(BREAK) == set(SEAMS)
    for seam in SEAMS:
        assert seam.package in ("tornado", "voila", "jupyter_server", "jupyter_client", "ipykernel")
        assert re.fullmatch(r"\d+(\.\d+)*", seam.since) and seam.relies_on


@pytest.mark.slow
def test_the_running_app_answers_only_allow_listed_routes(tmp_path):
    started = Started(tmp_path)
    routes = started.routes()
    hub = {pattern for pattern, *_ in hub_handlers(started.app.hub, "/")}
    for pattern, handler in routes.items():
        if pattern in jupyter.VOILA_ROUTES:
            # The reviewed handler, or serve's subclass of it (the kernel websocket with one keepalive).
            reviewed = [c for c in handler.__mro__ if c.__name__ == jupyter.VOILA_ROUTES[pattern]]
            assert reviewed and (handler is reviewed[0] or handler.__module__ == "smartsession.seams.jupyter")
        elif pattern not in hub:
            # serve's own routes: handlers from this package, or tornado's file server on our static folder
            assert handler.__module__.startswith("smartsession.") or pattern == "/smartsession/static/(.*)", pattern
    taken = set(jupyter.VOILA_ROUTES)
    assert taken <= set(routes), "serve lost a route it takes from Voila"
    # Everything else Voila offers is not routed at all (its tree, contents API, file server, login...).
    for pattern, handler in started.app.voila_routes().items():
        if pattern not in taken:
            assert routes.get(pattern) is not handler, f"Voila's {pattern} ({handler.__name__}) is routed"


def _concrete(pattern: str) -> str:
    """A URL path the route pattern matches."""
    path = pattern.replace(jupyter.KERNEL_ID, str(uuid.uuid4()))
    path = re.sub(r"\(\?P<path>.*?\)\)?", "/student.ipynb", path)
    return path.replace("(.*)", "student.ipynb").lstrip("/")


@pytest.mark.slow
def test_no_route_outside_the_allow_list_answers(server, tmp_path):
    """Every route Voila would serve that serve does not take answers 404 on the running server."""
    started = Started(tmp_path)
    ours = started.routes()
    dropped = [p for p in started.app.voila_routes() if p not in jupyter.VOILA_ROUTES and p not in ours]
    assert any("tree" in p for p in dropped) and any("contents" in p for p in dropped)
    for pattern in dropped:
        path = _concrete(pattern)
        assert re.fullmatch(pattern, "/" + path), (pattern, path)
        r = server.request(path)
        assert r.status == 404, f"{pattern} (as /{path}) answered {r.status}"


@pytest.mark.slow
@pytest.mark.parametrize("seam", SEAMS, ids=[f"{s.package}:{s.relies_on.split(':')[0]}" for s in SEAMS])
def test_serve_refuses_to_start_when_a_seam_no_longer_holds(seam, monkeypatch, tmp_path):
    breaker = BREAK[seam]
    with pytest.raises(SystemExit) as refused:
        if breaker == "after settings":
            Started(tmp_path, after_settings=_no_pools)
        else:
            breaker(monkeypatch)
            Started(tmp_path)
    line = str(refused.value)
    assert line.startswith(f"smartsession serve: {seam.package} {installed(seam.package)} changed")
    assert seam.relies_on in line and "\n" not in line


def test_hub_refuses_to_start_when_a_tornado_seam_no_longer_holds(monkeypatch, tmp_path):
    from smartsession.hub.cli import run_hub

    monkeypatch.delattr(TCPServer, "_handle_connection")
    args = argparse.Namespace(config=None, settings=[f"--HubConfig.data_dir={tmp_path}"], port="0")
    with pytest.raises(SystemExit, match=rf"^smartsession hub: tornado {installed('tornado')} changed"):
        run_hub(args)


def test_serve_starts_when_every_seam_holds(tmp_path):
    for seam in SEAMS:
        assert seam.changed(None) is None, seam.relies_on


@pytest.mark.slow
def test_kernel_settings_go_to_the_kernels_not_to_the_servers_environment(tmp_path, monkeypatch):
    import os

    for name in ("SMARTSESSION_HUB_URL", "VOILA_APP_IP", "SMARTSESSION_ANALYSIS", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    app = Started(tmp_path).app
    env = app.kernel_manager.kernel_env
    assert env["SMARTSESSION_HUB_URL"] == f"http://127.0.0.1:{app.port}" and env["VOILA_APP_IP"] == "127.0.0.1"
    assert env["SMARTSESSION_ANALYSIS"] == app.analysis
    assert not {"SMARTSESSION_HUB_URL", "VOILA_APP_IP", "SMARTSESSION_ANALYSIS"} & set(os.environ)


def test_no_private_attribute_of_another_package_is_used_outside_the_seams_room():
    """Every ``x._name`` in the package names something the package itself defines, except in smartsession/seams."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "smartsession"
    trees = {path: ast.parse(path.read_text()) for path in root.rglob("*.py")}
    ours = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                ours.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                ours.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                ours.add(node.attr)
            elif isinstance(node, ast.arg):
                ours.add(node.arg)
    found = []
    for path, tree in trees.items():
        if "seams" in path.relative_to(root).parts:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if node.attr not in ours and node.attr not in ("_exit",):  # os._exit: the fork child's end
                    found.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr}")
    assert not found, f"private attributes of other packages outside smartsession/seams: {found}"
