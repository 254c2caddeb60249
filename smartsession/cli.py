"""The ``smartsession`` command: each room registers its own subcommands here.

Subcommand modules must not import heavy libraries (mediapipe, voila) at import time, so that
``smartsession --help`` stays fast; they import inside the function that runs the command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from smartsession import __version__
from smartsession.options import parse

#: Modules that define ``register(subparsers)``; each adds parsers with ``set_defaults(func=...)``.
COMMAND_MODULES = (
    "smartsession.analysis.cli",  # analyze
    "smartsession.vision.cli",  # models
    "smartsession.hub.cli",  # hub, class
    "smartsession.serve.cli",  # serve
    "smartsession.simulate.cli",  # simulate
    "smartsession.report.cli",  # report
    "smartsession.dataset.cli",  # labels
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartsession",
        description="Real-time classroom engagement from webcams.",
    )
    parser.add_argument("--version", action="version", version=f"smartsession {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
