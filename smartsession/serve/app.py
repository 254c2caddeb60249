"""``smartsession serve``: one process for the student and teacher pages (Voila) and the websocket hub.

A subclass of Voila's standalone app, the only one that can preheat kernels: hub routes and the lock-down come
ahead of Voila's own routes, and the student page renders from a pool of kernels that already ran it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import os
import secrets
import signal
import socket
import ssl
import sys
import time
from pathlib import Path

import nbformat
import tornado.ioloop
import tornado.web
from jupyter_core.utils import run_sync
from jupyter_server.utils import url_path_join
from traitlets import Bool, Enum, Float, Int, List, Unicode, default, validate
from voila.app import Voila

from smartsession import __version__, facepipe
from smartsession.hub.config import HubConfig
from smartsession.hub.core import Hub, class_links
from smartsession.hub.httpserver import hub_http_server
from smartsession.hub.server import hub_handlers
from smartsession.hub.store import private_dir
from smartsession.options import aliases as option_aliases
from smartsession.options import flags as option_flags
from smartsession.seams import SeamBroken, check, http, jupyter, kernel
from smartsession.serve import assets, forwarded, headers, lockdown
from smartsession.serve.admission import StudentKernels, TeacherKernels
from smartsession.serve.channels import LiveKernelConnection
from smartsession.serve.options import OPTIONS
from smartsession.serve.pipe import Pipes, pipe_handlers
from smartsession.serve.pool import QuietRefillKernelManager, pool_status
from smartsession.serve.terminal import Terminal
from smartsession.serve.sizing import (
    Machine,
    about,
    cpu_students,
    default_max_students,
    default_pool_size,
    warm_seconds,
)
from smartsession.shipped import shipped
from smartsession.vision import browser_assets, model_file
from smartsession.serve.tls import self_signed_certificate, trust_bundle

STATIC = Path(__file__).with_name("static")
#: What ``serve`` writes into the data directory for scripts and tests (mode 0600: it holds the teacher token).
SERVER_FILE = "serve.json"
DEFAULT_CLASS_FILE = "default_class"
_ANY_ADDRESS = ("", "0.0.0.0", "::")


def default_dashboards() -> Path:
    """The pages shipped with the package (or a checkout's top-level ``dashboards/``)."""
    return shipped("dashboards")


def lan_address() -> str:
    """This machine's address on its network (what students' laptops can reach); no packet is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return socket.gethostname()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class SmartSessionApp(Voila):
    """Voila serving ``dashboards/`` plus the hub, with a preheated student pool and nothing that runs code."""

    name = "smartsession-serve"
    version = __version__
    description = Unicode(
        "smartsession serve [OPTIONS]\n\nRuns a classroom: the student and teacher pages and the hub, in one process."
    )
    examples = "smartsession serve --host 0.0.0.0 --self-signed --class-size 28"

    aliases = option_aliases(OPTIONS)  # written once, in serve/options.py; flags below the class
    classes = [*Voila.classes, HubConfig, QuietRefillKernelManager]

    ip = Unicode("127.0.0.1", config=True, help="Address to listen on; 0.0.0.0 for a classroom network.")
    port = Int(
        8866, config=True,
        help="Port to listen on; if it is taken the server says so and stops, so the printed link stays right.",
    )
    open_browser = Bool(False, config=True, help="Open the teacher page in a browser on start.")
    certfile = Unicode("", config=True, help="TLS certificate (PEM) to serve https.")
    keyfile = Unicode("", config=True, help="Private key of --certfile (PEM), if not inside it.")
    self_signed = Bool(
        False, config=True,
        help="Serve https with a certificate made for this host, kept in the data dir (browsers only allow the "
        "camera on https).",
    )
    class_size = Int(30, config=True, help="Students expected at once; sizes the default pool.")
    pool_size = Int(
        config=True,
        help="Preheated kernels for the student page (default: the class plus reloads, at most what this machine "
        "warms in about two minutes and what its memory holds).",
    )
    max_students = Int(
        config=True,
        help="Student pages served at once; more get a 'class is full' page (default: the student kernels "
        "this machine's memory holds).",
    )
    max_per_address = Int(
        4,
        config=True,
        help="Student pages served at once to one address (0: no limit; behind a proxy every page has its address).",
    )
    max_teacher_pages = Int(
        8, config=True, help="Teacher pages served at once (each runs a kernel of ~155 MB); more get a 503 page.")
    max_teacher_pages_per_link = Int(
        3, config=True, help="Teacher pages served at once for one teacher link (token); more get a 429 page.")
    connect_timeout = Float(
        30.0,
        config=True,
        help="Seconds a student page has to connect to its kernel before the kernel is shut down (at most 60).",
    )
    trusted_proxies = List(
        Unicode(),
        config=True,
        help="Addresses of reverse proxies (nginx) whose X-Forwarded-For names the client; from any other peer "
        "the header is ignored. Behind the shipped nginx on this machine: 127.0.0.1.",
    )
    seat_timeout = Float(
        90.0,
        config=True,
        help="Seconds a page has, once sent, to bring its widgets up (the kernel handles a widget message from "
        "it); else its kernel is shut down and its seat freed (a bare websocket holds none). At least 10.",
    )
    max_address_share = Float(
        0.5,
        config=True,
        help="Most of --max-students one address may hold, as a share (0.5: half the seats), whatever "
        "--max-per-address says; 1 lets one address (a school's NAT) fill the class.",
    )
    dashboards = Unicode(
        config=True, help="Directory with student.ipynb and teacher.ipynb; default: the pages shipped with the package."
    )
    class_title = Unicode("My class", config=True, help="Title of the class created on first start.")
    # The default where fork() is there to use (Linux): a forked browser-mode kernel takes half the memory of a
    # spawned one, which is what lets 200+ kernels fit a small server (docs/SERVE.md).
    fork_kernels = Bool(
        sys.platform.startswith("linux"),
        config=True,
        help="Fork student kernels from one preloaded process: they share what they import (less memory, faster "
        "start; Linux, where it is the default; see serve/forking.py).",
    )
    analysis = Enum(
        ("browser", "server"), "browser", config=True,
        help="Where faces are analysed: 'browser' (the student's browser runs the face model; only numbers reach "
        "the server) or 'server' (frames go to the student's kernel). A browser that cannot run the model falls "
        "back to 'server'.",
    )

    @default("log_level")
    def _default_log_level(self) -> int:
        # The terminal is the teacher's: the banner, warnings and errors, and the Terminal's event lines.
        # Kernel bookkeeping (started, pre-heated, shut down) appears with --SmartSessionApp.log_level=INFO.
        return logging.WARNING

    @default("dashboards")
    def _default_dashboards(self) -> str:
        return str(default_dashboards())

    @default("kernel_websocket_connection_class")
    def _default_kernel_websocket_connection_class(self):
        return LiveKernelConnection

    @default("pool_size")
    def _default_pool_size(self) -> int:
        return default_pool_size(self.machine, self.class_size)

    @default("max_students")
    def _default_max_students(self) -> int:
        return default_max_students(self.machine)

    @validate("pool_size", "max_per_address", "max_teacher_pages", "max_teacher_pages_per_link")
    def _valid_count(self, proposal):
        if proposal["value"] < 0:
            raise ValueError(f"--{proposal['trait'].name.replace('_', '-')} must be 0 or more")
        return proposal["value"]

    @validate("class_size", "max_students")
    def _valid_students(self, proposal):
        if proposal["value"] < 1:
            raise ValueError(f"--{proposal['trait'].name.replace('_', '-')} must be 1 or more")
        return proposal["value"]

    @validate("connect_timeout")
    def _valid_connect_timeout(self, proposal):
        # A page that never connects holds a kernel (80-300 MB, sizing.py): it must be gone within a minute.
        if not 0 < proposal["value"] <= 60:
            raise ValueError("--connect-timeout must be more than 0 and at most 60 seconds")
        return proposal["value"]

    @validate("seat_timeout")
    def _valid_seat_timeout(self, proposal):
        if proposal["value"] < 10:
            raise ValueError("--SmartSessionApp.seat_timeout must be at least 10 seconds (a page loads its widgets)")
        return proposal["value"]

    @validate("max_address_share")
    def _valid_share(self, proposal):
        if not 0 < proposal["value"] <= 1:
            raise ValueError("--SmartSessionApp.max_address_share must be more than 0 and at most 1")
        return proposal["value"]

    @property
    def per_address(self) -> int:
        """Student pages one address may hold: --max-per-address (0: no count of its own) within the share."""
        share = max(1, math.ceil(self.max_address_share * self.max_students))
        return min(self.max_per_address, share) if self.max_per_address else share

    @property
    def machine(self) -> Machine:
        if not hasattr(self, "_machine"):
            self._machine = Machine.here(self.analysis, self.fork_kernels)
        return self._machine

    # --- setup ---

    def initialize(self, argv=None):
        self.check_seams(None)  # what can be checked before anything starts; the rest in init_handlers
        super().initialize(argv)
        dashboards = Path(self.dashboards).expanduser().resolve()
        if not (dashboards / lockdown.STUDENT_PAGE).is_file() and not (dashboards / lockdown.TEACHER_PAGE).is_file():
            raise SystemExit(
                f"smartsession serve: no {lockdown.STUDENT_PAGE} or {lockdown.TEACHER_PAGE} in {dashboards}: "
                "pass --dashboards DIR (the folder holding the pages)"
            )
        self.root_dir = str(dashboards)
        # Every student kernel loads the face model: fetch it once, here, rather than from a pool of kernels
        # starting together, and stop with what to do if it cannot be had.
        try:
            model_file.ensure()
        except model_file.ModelMissingError as err:
            raise SystemExit(f"smartsession serve: {err}") from None
        if self.analysis == "browser":
            # The students' browsers load these from here; fetched once, like the model, before kernels start.
            try:
                browser_assets.ensure(progress=sys.stderr.isatty())
            except browser_assets.AssetsMissingError as err:
                self.log.warning("analysing in the students' kernels (--analysis server): %s", err)
                self.analysis = "server"
        self.hub_config = HubConfig(parent=self)
        self.pipes = Pipes(secrets.token_urlsafe(32))  # a new secret each start: kernels get it in their environment
        # Private from the start (0700): the hub checks it and warns when it is not.
        self.state_dir = private_dir(Path(self.hub_config.data_dir).expanduser().resolve())
        if self.self_signed and self.certfile:
            raise SystemExit("smartsession serve: give either --self-signed or --certfile, not both")
        if self.self_signed:
            hosts = [self.ip, lan_address(), socket.gethostname()] if self.ip in _ANY_ADDRESS else [self.ip]
            cert, key = self_signed_certificate(self.state_dir, hosts)
            self.certfile, self.keyfile = str(cert), str(key)
        if self.keyfile and not self.certfile:
            raise SystemExit("smartsession serve: --keyfile needs --certfile")

        vc = self.voila_configuration
        vc.preheat_kernel = True
        vc.default_pool_size = 0
        vc.multi_kernel_manager_class = QuietRefillKernelManager
        # A link must not pick the jinja template (Voila looks it up by name on disk); the notebook may.
        vc.allow_template_override = "NOTEBOOK"
        # ipywebrtc's front end (for WebRTCCamera in JupyterLab) is built for ipywidgets 7: no page here uses
        # it, and loaded it only warned that it wants an older @jupyter-widgets/base (docs/SERVE.md).
        vc.extension_denylist = [*(vc.extension_denylist or []), "jupyter-webrtc"]
        # Refills wait in QuietRefillKernelManager until requests are quiet; Voila's fixed delay would only add to it.
        self.config.VoilaKernelManager.fill_delay = 0.0
        # Kernels talk to the server over Unix sockets in Voila's private connection folder, not over TCP
        # ports any local user could reach (ipykernel warned once per kernel about TCP without encryption).
        self.config.KernelManager.transport = "ipc"
        # Our own pages are trusted, with signatures kept in the data dir: Voila loads each page once per
        # kernel, and warned each time that it was not trusted.
        self.config.NotebookNotary.data_dir = str(self.state_dir)
        self.config.VoilaKernelManager.kernel_pools_config = {
            "default": {"pool_size": 0},
            lockdown.STUDENT_PAGE: {"pool_size": self.pool_size},
        }
        if self.fork_kernels:
            self.config.KernelProvisionerFactory.default_provisioner_name = "smartsession-fork"
        self._kernel_env()
        self._redact_logs()

    @property
    def scheme(self) -> str:
        return "https" if self.certfile else "http"

    @property
    def kernel_host(self) -> str:
        """Where kernels on this machine reach the server: loopback unless it is bound to one address."""
        if self.ip in _ANY_ADDRESS or self.ip == "localhost":
            return "::1" if self.ip == "::" else "127.0.0.1"
        return self.ip

    @property
    def public_host(self) -> str:
        """The host in printed links: the network address when bound to all of them."""
        return lan_address() if self.ip in _ANY_ADDRESS else self.ip

    def _kernel_env(self) -> None:
        # The kernels' own environment (the kernel manager adds it to each one's): the hub client, the page and
        # Voila's preheat handshake read these; the server's environment stays as it was.
        env = {
            "SMARTSESSION_HUB_URL": f"{self.scheme}://{_url_host(self.kernel_host)}:{self.port}",
            jupyter.APP_IP: self.kernel_host,
            jupyter.WS_PROTOCOL: "wss" if self.certfile else "ws",
            "SMARTSESSION_ANALYSIS": self.analysis,
            browser_assets.ENV_BASE_URL: self.base_url,
            "SMARTSESSION_HUB_CAFILE": self.certfile if self.self_signed else "",
            # The face pipe (serve/pipe.py): where a kernel's end connects, the secret that shows it is one of
            # ours (kernels alone get it, here), and the path its page connects to.
            facepipe.ENV_URL: f"{'wss' if self.certfile else 'ws'}://{_url_host(self.kernel_host)}:{self.port}"
                              f"{self.base_url}{facepipe.KERNEL_ROUTE}",
            facepipe.ENV_SECRET: self.pipes.secret,
            facepipe.ENV_PAGE_PATH: f"{self.base_url}{facepipe.PAGE_ROUTE}",
        }
        if self.self_signed:
            # Voila's preheat handshake (voila.utils.wait_for_request) opens wss with default verification,
            # so kernels get a CA bundle that also trusts our certificate.
            env["SSL_CERT_FILE"] = str(trust_bundle(self.state_dir, self.certfile))
        self.config.QuietRefillKernelManager.kernel_env = env

    def _redact_logs(self) -> None:
        redacting = lockdown.RedactingFilter()
        for name in ("tornado.access", "tornado.application", "tornado.general", "smartsession.hub"):
            logging.getLogger(name).addFilter(redacting)
        for handler in self.log.handlers:
            handler.addFilter(redacting)

    def init_settings(self) -> dict:
        settings = super().init_settings()
        self._trust_pages()
        settings["log_function"] = lockdown.log_request
        settings.update(jupyter.KEEPALIVE_SETTINGS)
        # The page's JavaScript reads _xsrf (it echoes it), so not HttpOnly; never sent by another site's request.
        settings["xsrf_cookie_kwargs"] = {**settings.get("xsrf_cookie_kwargs", {}), "samesite": "Strict",
                                          **({"secure": True} if self.certfile else {})}
        self.kernel_manager.allowed_message_types = list(lockdown.KERNEL_MESSAGES)
        self.students = StudentKernels(self.max_students, self.per_address, self.connect_timeout)
        self.kernel_manager.students = self.students
        self.teachers = TeacherKernels(self.max_teacher_pages, self.max_teacher_pages_per_link, self.connect_timeout)
        self.kernel_manager.teachers = self.teachers
        # Memory holds kernels_fit student kernels; a larger --max-students is the teacher's explicit choice.
        self.kernel_manager.kernel_budget = max(self.machine.kernels_fit, self.max_students)
        self.kernel_manager.warm_slots = self.machine.cores
        return settings

    def _trust_pages(self) -> None:
        notary = self.contents_manager.notary
        for page in lockdown.PAGES:
            path = Path(self.root_dir) / page
            if path.is_file():
                nb = nbformat.read(path, as_version=4)
                if not notary.check_signature(nb):
                    notary.sign(nb)

    def check_seams(self, app) -> None:
        """Refuse to start, in one line, if Voila, Jupyter or tornado no longer offer what serve relies on."""
        try:
            check((*http.SEAMS, *jupyter.SEAMS, *kernel.SEAMS), app)
        except SeamBroken as err:
            raise SystemExit(f"smartsession serve: {err}") from None

    def voila_routes(self) -> dict:
        """Voila's own routes, relative to the base URL, and their handlers (serve takes a few of them)."""
        prefix = self.server_url.rstrip("/")
        return {pattern[len(prefix):]: handler for pattern, handler, *_ in super().init_handlers()}

    def init_handlers(self) -> list:
        """Every route serve answers: its own, the hub's and the few it takes from Voila (an allow-list)."""
        self.check_seams(self)
        base = self.server_url
        voila = [
            jupyter.with_keepalive(route) for route in super().init_handlers()
            if route[0][len(base.rstrip("/")):] in jupyter.VOILA_ROUTES
        ]
        local = frozenset({"127.0.0.1", "::1", self.kernel_host})
        ours = [
            (base, lockdown.LandingHandler),
            (url_path_join(base, r"/logout"), lockdown.LogoutHandler),
            (
                url_path_join(base, r"/voila/render/(.*)"),
                lockdown.DashboardHandler,
                {
                    "secret": self.hub.secret,
                    "current_teacher": self.hub.teacher_token_current,
                    "template_paths": self.template_paths,
                    "config": self.config,
                    "voila_configuration": self.voila_configuration,
                },
            ),
            (
                url_path_join(base, r"/voila/query/%s" % jupyter.KERNEL_ID),
                lockdown.LocalRequestInfoHandler,
                {"local_addresses": local},
            ),
            (url_path_join(base, r"/voila/templates/(.*)"), lockdown.TemplateAssetsHandler),
            (url_path_join(base, r"/smartsession/static/(.*)"), tornado.web.StaticFileHandler, {"path": str(STATIC)}),
            (url_path_join(base, assets.ROUTE), assets.AssetHandler),
        ]
        return ours + hub_handlers(self.hub, base) + pipe_handlers(self.hub, self.pipes, base) + voila

    # --- run ---

    def start(self):
        self.hub = Hub(self.hub_config)
        # The loop tornado's IOLoop.current() picks up later; asyncio.get_event_loop() would make one implicitly.
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        # The hub must be up (secret, store) before the routes that check tokens are built.
        self.loop.run_until_complete(self.hub.start())
        self.hub.health_extras["pool"] = lambda: self.pool().to_dict()
        self.hub.health_extras["warm"] = lambda: self.pool().warm
        self.hub.health_extras["student_kernels"] = lambda: self.students.counts()
        self.hub.health_extras["teacher_kernels"] = lambda: self.teachers.counts()
        # Set here, whatever was inherited: a supervisor or a script starting serve in the background hands it
        # SIGINT ignored, and Voila handles only SIGTERM. Either one stops the server, saying so.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop_on_signal)
        try:
            super().start()
        except SystemExit:  # a seam that no longer holds (init_handlers): the store still commits what it has
            self.loop.run_until_complete(self.hub.stop())
            raise

    def _stop_on_signal(self, sig, frame) -> None:
        print(f"smartsession serve: {signal.Signals(sig).name} received, stopping", flush=True)
        ioloop = getattr(self, "ioloop", None)
        if ioloop is None:  # before the server listens: nothing to wind down yet
            raise SystemExit(130 if sig == signal.SIGINT else 143)
        ioloop.add_callback_from_signal(ioloop.stop)

    def pool(self):
        return pool_status(self.kernel_manager, lockdown.STUDENT_PAGE, self.pool_size)

    def listen(self):
        ssl_options = None
        if self.certfile:
            ssl_options = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_options.load_cert_chain(self.certfile, self.keyfile or None)
        self.app.add_transform(headers.SecurityHeaders)
        if self.trusted_proxies:
            self.app.add_transform(forwarded.from_proxies(frozenset(self.trusted_proxies)))
        try:
            # The hub's HTTP server: its header/body timeouts, body and header sizes and connection caps
            # apply to every route here (pages, kernels, hub), not only to the hub's own.
            self.http_server = hub_http_server(self.app, self.hub_config, self.hub.connections, ssl_options,
                                               self.hub.quiet, xheaders=False)
            self.http_server.listen(self.port, self.ip)
        except OSError as err:
            self.log.critical(
                "smartsession serve: cannot listen on %s:%s (%s): pick another --port or stop the other server",
                self.ip,
                self.port,
                err.strerror,
            )
            self.stop()
            self.exit(1)
        self.links = self.default_class()
        self.announce()
        # Checked three times per timeout, so a page that never connects loses its kernel within 4/3 of it.
        tornado.ioloop.PeriodicCallback(self.close_unconnected, self.connect_timeout * 1000 / 3).start()
        # Voila, Jupyter server and their imports are ~200,000 objects that live as long as the process. Each
        # full garbage collection walked them all, stalling the hub and every page for ~100 ms here; frozen,
        # collections see only what the classroom creates.
        gc.freeze()
        self.ioloop = tornado.ioloop.IOLoop.current()
        try:
            self.ioloop.start()
        except KeyboardInterrupt:
            self.log.info("Stopping...")
        finally:
            self.stop()

    async def close_unconnected(self) -> None:
        """Shut down the kernels of student and teacher pages that were sent but never connected (a GET without a
        browser) or never brought their widgets up (a bare websocket holding a seat)."""
        for pages in (self.students, self.teachers):
            pages.keep_only(self.kernel_manager.list_kernel_ids())
            closing = {k: f"its page did not connect within {self.connect_timeout:.0f} s" for k in pages.unconnected()}
            for kernel_id in pages.idle(self.seat_timeout):
                closing.setdefault(kernel_id, f"its page brought no widget up within {self.seat_timeout:.0f} s")
            for kernel_id, why in closing.items():
                self.log.info("Closing kernel %s: %s", kernel_id, why)
                try:
                    await self.kernel_manager.shutdown_kernel(kernel_id)
                except (KeyError, tornado.web.HTTPError):
                    pass  # its page closed it meanwhile
                pages.keep_only(self.kernel_manager.list_kernel_ids())

    def default_class(self) -> dict:
        """Reopen the class created on the first start (its id is kept in the data dir), or create it."""
        path = self.state_dir / DEFAULT_CLASS_FILE
        class_id = path.read_text().strip() if path.exists() else ""
        info = self.hub.store.class_info(class_id) if class_id else None
        if info is None:
            links = self.hub.default_class(self.class_title)
            self.hub.store.flush()
            path.write_text(links["class_id"] + "\n")
        else:
            links = class_links(self.hub.secret, class_id, info["title"])
        origin = f"{self.scheme}://{_url_host(self.public_host)}:{self.port}"
        base = self.base_url.rstrip("/")
        links["url"] = origin + self.base_url
        links["teacher_url"] = origin + base + links.pop("teacher_path")
        links["join_url"] = origin + base + links.pop("join_path")
        return links

    def announce(self) -> None:
        links = self.links
        record = {
            **links,
            "pid": os.getpid(),
            "pool_size": self.pool_size,
            "max_students": self.max_students,
            "certfile": self.certfile,
        }
        path = self.state_dir / SERVER_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1)
        lines = [
            "",
            f"SmartSession is running at {links['url']}  (class {links['title']!r}, data in {self.state_dir})",
            "",
            "  Teacher page (keep it private, it carries the teacher token):",
            f"    {links['teacher_url']}",
            "",
            "  Student join link (share it with the class):",
            f"    {links['join_url']}",
            "",
            f"  {self.pool_size} student kernel{'s' if self.pool_size != 1 else ''} preheating, ready in "
            f"{about(warm_seconds(self.pool_size, self.machine.cores))} on {self.machine.cores} cores; "
            "the teacher page shows them filling."
            if self.pool_size
            else "  No student pool (--pool-size 0): each student page starts its own kernel.",
            f"  About {cpu_students(self.machine.cores, self.analysis)} students measured at full rate on "
            f"{self.machine.cores} cores in {self.analysis} mode (README: Sizing); pages beyond "
            f"{self.max_students} (--max-students, what memory holds) see a 'class is full' page.",
        ]
        if self.self_signed:
            lines.append(
                "  Self-signed certificate: each browser shows a warning once; accept it to continue."
            )
        print("\n".join(lines) + "\n", flush=True)
        terminal = Terminal()

        def say() -> None:
            for line in terminal.lines(time.time(), self.pool(), len(self.hub.students)):
                print(line, flush=True)

        self._terminal = tornado.ioloop.PeriodicCallback(say, 2000)
        self._terminal.start()

    def stop(self):
        if getattr(self, "hub", None) is not None and self.hub.started:
            self.loop.run_until_complete(self.hub.stop())
        # Kernels are ended at once: a graceful shutdown reached kernels still preheating mid-execution, whose
        # replies then failed on closed sockets (a ZMQ traceback per kernel); they hold nothing to save.
        run_sync(self.kernel_manager.shutdown_all)(now=True)
        super().stop()
        if not getattr(self, "_said_stopped", False):
            self._said_stopped = True
            print("smartsession serve stopped: student kernels ended, the store committed", flush=True)


SmartSessionApp.flags = {**option_flags(OPTIONS, SmartSessionApp), "debug": Voila.flags["debug"]}

main = SmartSessionApp.launch_instance

if __name__ == "__main__":
    sys.exit(main())
