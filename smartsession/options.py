"""Command-line options that are traitlets settings, each written once: its help is the trait's own.

``smartsession serve`` and ``smartsession hub`` list their options here as ``Option``s: argparse parses them, the
traitlets app takes them as aliases (or flags), and ``--help`` shows each trait's help text and default. Any
other setting goes as ``--Class.trait=VALUE`` or in a ``--config FILE``. Light on purpose: the classes holding the
traits are imported only when ``--help`` is asked for, so ``smartsession --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

#: ``--Class.trait=VALUE``: a traitlets setting given on the command line.
_SETTING = re.compile(r"--[A-Za-z_]\w*(\.[A-Za-z_]\w*)+=.*", re.S)


@dataclass(frozen=True)
class Option:
    name: str  # the command-line option, without "--"
    trait: str  # what it sets, "Class.trait"
    metavar: str | None = None  # None: a flag, which sets its Bool trait to True
    repeat: bool = False  # may be given several times (a List trait)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


def trait_help(option: Option, classes: Mapping[str, str]) -> str:
    """The help text of the trait ``option`` sets, with its default when that is a plain value."""
    cls_name, trait_name = option.trait.split(".")
    module, _, attr = classes[cls_name].partition(":")
    trait = getattr(importlib.import_module(module), attr).class_traits()[trait_name]
    from traitlets import Undefined

    text = (trait.help or "").strip().replace("%", "%%")
    default = trait.default_value
    plain = default is not Undefined and default not in (None, "", [], ()) and not isinstance(default, (dict, type))
    if option.metavar and plain and "default:" not in text:
        text += f" (default: {default})"
    return text


class _TraitHelp(argparse.Action):
    """``-h/--help`` that fills in each option's help from its trait (importing the classes), then prints it."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None, **kwargs):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)
        self.options: list[tuple[Option, argparse.Action]] = []  # each option and the argument that parses it
        self.classes: Mapping[str, str] = {}

    def __call__(self, parser, namespace, values, option_string=None):
        for option, action in self.options:
            action.help = trait_help(option, self.classes)
        parser.print_help()
        parser.exit()


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option], example: str,
                classes: Mapping[str, str]) -> None:
    """The options, ``--config FILE``, ``-h/--help`` with each trait's help (``classes``: class name to
    ``"module:Class"``), and a word on ``--Class.trait=VALUE`` for everything else.

    The parser must be made with ``add_help=False``."""
    helper = parser.add_argument("-h", "--help", action=_TraitHelp, help="show this help message and exit")
    helper.classes = classes
    for o in options:
        if o.metavar is None:
            action = parser.add_argument(f"--{o.name}", action="store_true")
        else:
            action = parser.add_argument(f"--{o.name}", metavar=o.metavar, action="append" if o.repeat else "store")
        helper.options.append((o, action))
    parser.add_argument("--config", metavar="FILE",
                        help="a traitlets config file (.py or .json) for any setting, e.g. c.HubConfig.rate = 10")
    parser.epilog = (f"Any other setting as --Class.trait=VALUE, e.g. {example}; "
                     "environment: SMARTSESSION_DATA_DIR, SMARTSESSION_SECRET (docs/SERVE.md).")
    parser.set_defaults(settings=[], takes_settings=True)


def aliases(options: Iterable[Option]) -> dict[str, str]:
    """The traitlets app's aliases: each option that takes a value."""
    return {o.name: o.trait for o in options if o.metavar is not None}


def flags(options: Iterable[Option], app_class: Any) -> dict[str, tuple[dict, str]]:
    """The traitlets app's flags: each option without a value sets its Bool trait, with the trait's help."""
    found = {}
    for o in options:
        if o.metavar is None:
            cls_name, trait_name = o.trait.split(".")
            found[o.name] = ({cls_name: {trait_name: True}}, app_class.class_traits()[trait_name].help)
    return found


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
        value: Any = getattr(args, o.dest)
        if o.metavar is None:
            argv += [f"--{o.trait}=True"] if value else []
            continue
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
