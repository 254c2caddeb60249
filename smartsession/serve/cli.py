"""The ``smartsession serve`` subcommand: argparse help on top of :class:`~smartsession.serve.app.SmartSessionApp`.

Options become traitlets settings (``smartsession.options``): ``--config FILE`` or ``--Class.trait=VALUE`` set the rest.
Voila is imported only when the command runs.
"""

from __future__ import annotations

import argparse

from smartsession.hub.cli import HUB_OPTIONS
from smartsession.options import Option, add_options, load_config_file, traitlets_argv

#: Every option of ``smartsession serve`` and the setting it is; the app's aliases come from here too.
OPTIONS = (
    Option("host", "SmartSessionApp.ip", "ADDR",
           "address to listen on (default 127.0.0.1; 0.0.0.0 for a classroom network)"),
    Option("port", "SmartSessionApp.port", "PORT", "port (default 8866)"),
    *HUB_OPTIONS,
    Option("certfile", "SmartSessionApp.certfile", "PEM", "TLS certificate to serve https"),
    Option("keyfile", "SmartSessionApp.keyfile", "PEM", "private key of --certfile"),
    Option("class-size", "SmartSessionApp.class_size", "N", "students expected at once; sizes the default pool (default 30)"),
    Option("pool-size", "SmartSessionApp.pool_size", "N",
           "preheated student kernels (default: from the class size, this machine's cores and memory)"),
    Option("max-students", "SmartSessionApp.max_students", "N",
           "student pages served at once; more see a 'class is full' page (default: from memory)"),
    Option("max-per-address", "SmartSessionApp.max_per_address", "N",
           "student pages served at once to one address (default 4; 0: no limit)"),
    Option("connect-timeout", "SmartSessionApp.connect_timeout", "SECONDS",
           "shut down a student page's kernel if the page has not connected by then (default 30, at most 60)"),
    Option("refill-quiet", "QuietRefillKernelManager.refill_quiet", "SECONDS",
           "refill the pool only after this long without page requests (default 5)"),
    Option("dashboards", "SmartSessionApp.dashboards", "DIR",
           "folder with student.ipynb and teacher.ipynb (default: the repository's dashboards/)"),
    Option("class-title", "SmartSessionApp.class_title", "TITLE", "title of the class created on first start"),
    Option("analysis", "SmartSessionApp.analysis", "browser|server",
           "where faces are analysed: in the students' browsers, only numbers reach the server (default), "
           "or in their kernels on this server, from the camera's pictures"),
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run a classroom: student and teacher pages plus the hub, in one process",
        description="Serve the student and teacher pages (Voila) and the hub; print the teacher link and "
        "the student join link.",
    )
    add_options(p, OPTIONS, "--HubConfig.rate=10")
    p.add_argument(
        "--self-signed",
        action="store_true",
        help="serve https with a certificate made for this host (browsers only allow the camera on https)",
    )
    forking = p.add_mutually_exclusive_group()
    forking.add_argument(
        "--fork-kernels",
        action="store_true",
        help="fork student kernels from one preloaded process: they share what they import (the default on Linux)",
    )
    forking.add_argument(
        "--no-fork-kernels",
        action="store_true",
        help="start every student kernel as a process of its own (more memory, slower start)",
    )
    p.add_argument("--debug", action="store_true", help="debug logs, and tracebacks shown in the pages")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from smartsession.serve.app import SmartSessionApp

    from traitlets import TraitError

    app = SmartSessionApp.instance()
    load_config_file(app, args.config, "smartsession serve")
    flags = [f"--{flag}" for flag in ("self-signed", "fork-kernels", "no-fork-kernels", "debug")
             if getattr(args, flag.replace("-", "_"))]
    try:
        app.initialize(traitlets_argv(args, OPTIONS) + flags)
    except TraitError as exc:  # a setting of the wrong type: say which, without a traceback
        raise SystemExit(f"smartsession serve: {exc}") from None
    app.start()
    return 0
