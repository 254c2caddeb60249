"""The ``smartsession serve`` subcommand: argparse on top of :class:`~smartsession.serve.app.SmartSessionApp`.

Options (``serve/options.py``) become traitlets settings: ``--config FILE`` or ``--Class.trait=VALUE`` set the rest.
Voila is imported only when the command runs (or its ``--help`` reads the traits' help).
"""

from __future__ import annotations

import argparse

from smartsession.options import add_options, load_config_file, traitlets_argv
from smartsession.serve.options import CLASSES, OPTIONS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run a classroom: student and teacher pages plus the hub, in one process",
        description="Serve the student and teacher pages (Voila) and the hub; print the teacher link and "
        "the student join link.",
        add_help=False,
    )
    add_options(p, OPTIONS, "--HubConfig.rate=10", CLASSES)
    p.add_argument("--debug", action="store_true", help="debug logs, and tracebacks shown in the pages")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from traitlets import TraitError

    from smartsession.serve.app import SmartSessionApp

    app = SmartSessionApp.instance()
    load_config_file(app, args.config, "smartsession serve")
    try:
        app.initialize(traitlets_argv(args, OPTIONS) + (["--debug"] if args.debug else []))
    except TraitError as exc:  # a setting of the wrong type: say which, without a traceback
        raise SystemExit(f"smartsession serve: {exc}") from None
    app.start()
    return 0
