"""The ``smartsession serve`` subcommand: argparse help on top of :class:`~smartsession.serve.app.SmartSessionApp`.

Options become traitlets command-line settings, so a Voila/traitlets config file (``--config``) can set the rest.
Voila is imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: (option, metavar, help); each becomes ``--option=value`` for the traitlets app.
OPTIONS = (
    ("host", "ADDR", "address to listen on (default 127.0.0.1; 0.0.0.0 for a classroom network)"),
    ("port", "PORT", "port (default 8866)"),
    ("data-dir", "DIR", "store, secret, certificate and class (default ~/.smartsession or $SMARTSESSION_DATA_DIR)"),
    ("secret", "SECRET", "HMAC secret for tokens (default: created in the data dir)"),
    ("redis-url", "URL", "redis://host:port to share classes between hub processes"),
    ("store", "URL", "postgresql://user@host:port/db shared by every node (default: SQLite in the data dir)"),
    ("certfile", "PEM", "TLS certificate to serve https"),
    ("keyfile", "PEM", "private key of --certfile"),
    ("class-size", "N", "students expected at once; sizes the default pool (default 30)"),
    ("pool-size", "N", "preheated student kernels (default: from the class size, this machine's cores and memory)"),
    ("max-students", "N", "student pages served at once; more see a 'class is full' page (default: from memory)"),
    ("max-per-address", "N", "student pages served at once to one address (default 4; 0: no limit)"),
    ("connect-timeout", "SECONDS", "shut down a student page's kernel if the page has not connected by then "
     "(default 30, at most 60)"),
    ("refill-quiet", "SECONDS", "refill the pool only after this long without page requests (default 5)"),
    ("dashboards", "DIR", "folder with student.ipynb and teacher.ipynb (default: the repository's dashboards/)"),
    ("class-title", "TITLE", "title of the class created on first start"),
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run a classroom: student and teacher pages plus the hub, in one process",
        description="Serve the student and teacher pages (Voila) and the hub; print the teacher link and "
        "the student join link.",
    )
    for name, metavar, text in OPTIONS:
        p.add_argument(f"--{name}", metavar=metavar, help=text)
    p.add_argument(
        "--self-signed",
        action="store_true",
        help="serve https with a certificate made for this host (browsers only allow the camera on https)",
    )
    p.add_argument("--debug", action="store_true", help="debug logs, and tracebacks shown in the pages")
    p.add_argument("--config", metavar="FILE", help="a traitlets config file (.py or .json) for any other setting")
    p.set_defaults(func=run)


def traitlets_argv(args: argparse.Namespace) -> list[str]:
    argv = []
    for name, _, _ in OPTIONS:
        value = getattr(args, name.replace("-", "_"))
        if value is not None:
            argv.append(f"--{name}={value}")
    argv += [f"--{flag}" for flag in ("self-signed", "debug") if getattr(args, flag.replace("-", "_"))]
    return argv


def run(args: argparse.Namespace) -> int:
    from smartsession.serve.app import SmartSessionApp

    app = SmartSessionApp.instance()
    if args.config:
        config = Path(args.config).expanduser().resolve()
        if not config.is_file() or config.suffix not in (".py", ".json"):
            raise SystemExit(f"smartsession serve: --config {args.config}: give an existing .py or .json file")
        app.load_config_file(config.stem, path=str(config.parent))
    app.initialize(traitlets_argv(args))
    app.start()
    return 0
