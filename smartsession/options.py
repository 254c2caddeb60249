"""Command-line options that are traitlets settings, each written once for argparse and for the traitlets app.

``smartsession serve`` and ``smartsession hub`` list their options here as ``Option``s: argparse shows them in
``--help``, the traitlets app takes them as aliases, and any other setting goes as ``--Class.trait=VALUE`` or
in a ``--config FILE``. Light on purpose (no traitlets app imported): ``smartsession --help`` stays fast.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

#: ``--Class.trait=VALUE``: a traitlets setting given on the command line.
_SETTING = re.compile(r"--[A-Za-z_]\w*(\.[A-Za-z_]\w*)+=.*", re.S)


@dataclass(frozen=True)
class Option:
    name: str  # the command-line option, without "--"
    trait: str  # what it sets, "Class.trait"
    metavar: str
    help: str
    repeat: bool = False  # may be given several times (a List trait)


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option], example: str) -> None:
    """The options, ``--config FILE``, and a word on ``--Class.trait=VALUE`` for everything else."""
    for o in options:
        parser.add_argument(f"--{o.name}", metavar=o.metavar, help=o.help,
                            action="append" if o.repeat else "store")
    parser.add_argument("--config", metavar="FILE",
                        help="a traitlets config file (.py or .json) for any setting, e.g. c.HubConfig.rate = 10")
    parser.epilog = (f"Any other setting as --Class.trait=VALUE, e.g. {example}; "
                     "environment: SMARTSESSION_DATA_DIR, SMARTSESSION_SECRET (docs/SERVE.md).")
    parser.set_defaults(settings=[], takes_settings=True)


def aliases(options: Iterable[Option]) -> dict[str, str]:
    return {o.name: o.trait for o in options}


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parse_args``, except that commands built on traitlets also take ``--Class.trait=VALUE`` settings."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        wrong = [a for a in extra if not _SETTING.fullmatch(a)]
        if wrong or not getattr(args, "takes_settings", False):
            parser.error(f"unrecognized arguments: {' '.join(wrong or extra)}")
        args.settings = extra
    return args


def traitlets_argv(args: argparse.Namespace, options: Iterable[Option]) -> list[str]:
    """The given options as traitlets settings, then the ``--Class.trait=VALUE`` ones as given."""
    argv = []
    for o in options:
        value: Any = getattr(args, o.name.replace("-", "_"))
        for one in (value or []) if o.repeat else ([] if value is None else [value]):
            argv.append(f"--{o.trait}={one}")
    return argv + list(args.settings)


def load_config_file(app, path: str | None, prog: str) -> None:
    """Load ``--config FILE`` into the traitlets ``app`` (before ``initialize``), or stop saying what is wrong."""
    if not path:
        return
    config = Path(path).expanduser().resolve()
    if not config.is_file() or config.suffix not in (".py", ".json"):
        raise SystemExit(f"{prog}: --config {path}: give an existing .py or .json file")
    app.load_config_file(config.stem, path=str(config.parent))
