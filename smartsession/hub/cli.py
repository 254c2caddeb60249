"""``smartsession hub`` (the hub alone) and ``smartsession class create`` (a new class, its links and tokens).

Imports stay inside the run functions so ``smartsession --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os

from smartsession.options import Option, add_options, load_config_file, parse, traitlets_argv

#: The hub's own options, which ``smartsession serve`` has too; each option's help is its trait's.
HUB_OPTIONS = (
    Option("data-dir", "HubConfig.data_dir", "DIR"),
    Option("secret", "HubConfig.secret", "SECRET"),
    Option("redis-url", "HubConfig.redis_url", "URL"),
    Option("store", "HubConfig.store_url", "URL"),
)
#: Every option of ``smartsession hub`` and the setting it is (``HubApp`` in hub/standalone.py, ``HubConfig``).
OPTIONS = (
    Option("host", "HubApp.host", "ADDR"),
    Option("port", "HubApp.port", "PORT"),
    *HUB_OPTIONS,
    Option("certfile", "HubApp.certfile", "PEM"),
    Option("keyfile", "HubApp.keyfile", "PEM"),
    Option("allowed-origin", "HubConfig.allowed_origins", "ORIGIN", repeat=True),
)
#: Where each option's trait lives, imported only for ``--help``.
CLASSES = {"HubApp": "smartsession.hub.standalone:HubApp", "HubConfig": "smartsession.hub.config:HubConfig"}


def register(sub) -> None:
    hub = sub.add_parser("hub", help="run the websocket hub alone (no pages), e.g. behind a load balancer",
                         add_help=False)
    add_options(hub, OPTIONS, "--HubConfig.rate=10 --HubConfig.ping_interval=5", CLASSES)
    hub.set_defaults(func=run_hub)

    cls = sub.add_parser("class", help="manage classes")
    cls_sub = cls.add_subparsers(dest="class_command", metavar="ACTION", required=True)
    create = cls_sub.add_parser("create", help="create a class; prints its id, teacher token and join link as JSON")
    create.add_argument("title", help="the class title, e.g. 'Physics 2B'")
    create.add_argument("--url", help="a running server (e.g. http://127.0.0.1:8866); default: the local data dir")
    create.add_argument("--token", default=os.environ.get("SMARTSESSION_TOKEN", ""),
                        help="admin or teacher token for --url (default: <data-dir>/admin_token)")
    create.add_argument("--data-dir", default="",
                        help="store, secret and admin token (default ~/.smartsession or $SMARTSESSION_DATA_DIR)")
    create.set_defaults(func=run_class_create)
    rotate = cls_sub.add_parser(
        "rotate-token", help="revoke a class's teacher links and print a new one (JSON), e.g. after a leak")
    rotate.add_argument("class_id", metavar="CLASS", help="the class id (in its links: ?class=...)")
    rotate.add_argument("--url", help="a running server (e.g. http://127.0.0.1:8866); default: the local data dir")
    rotate.add_argument("--token", default=os.environ.get("SMARTSESSION_TOKEN", ""),
                        help="the admin token for --url (default: <data-dir>/admin_token)")
    rotate.add_argument("--data-dir", default="",
                        help="store, secret and admin token (default ~/.smartsession or $SMARTSESSION_DATA_DIR)")
    rotate.set_defaults(func=run_class_rotate_token)


def _resolved_data_dir(args) -> str:
    from smartsession.hub.config import HubConfig

    return args.data_dir or HubConfig().data_dir


def run_hub(args) -> int:
    import asyncio
    import logging

    from traitlets import TraitError

    from smartsession.hub.config import HubConfig
    from smartsession.hub.standalone import HubApp, serve_forever
    from smartsession.seams import SeamBroken, check, http

    try:
        check(http.SEAMS)
    except SeamBroken as err:
        raise SystemExit(f"smartsession hub: {err}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = HubApp()
    load_config_file(app, args.config, "smartsession hub")
    try:
        app.parse_command_line(traitlets_argv(args, OPTIONS))
        config = HubConfig(parent=app)
    except TraitError as exc:
        print(f"smartsession hub: {exc}")
        return 2
    try:
        asyncio.run(serve_forever(app, config))
    except RuntimeError as exc:  # e.g. Redis unreachable: the message says what to do
        print(f"smartsession hub: {exc}")
        return 1
    return 0


def run_class_create(args) -> int:
    from pathlib import Path

    from smartsession.hub import auth
    from smartsession.hub.client import HubError, create_class
    from smartsession.hub.core import class_links
    from smartsession.hub.store import Store
    from smartsession.schema import clean_title

    data_dir = Path(_resolved_data_dir(args)).expanduser()
    if args.url:
        token = args.token
        admin_file = data_dir / "admin_token"
        if not token and admin_file.exists():
            token = admin_file.read_text().strip()
        if not token:
            print("smartsession class create: give --token (the server's admin token or a teacher token)")
            return 2
        try:
            info = create_class(args.url, args.title, token)
        except HubError as exc:
            print(f"smartsession class create: {exc}")
            return 1
    else:
        secret = auth.load_secret(data_dir)
        title = clean_title(args.title, "title")
        class_id = auth.new_class_id()
        with Store(data_dir) as store:
            store.add_class(class_id, title)
        info = {**class_links(secret, class_id, title), "admin_token": auth.load_admin_token(data_dir, secret),
                "data_dir": str(data_dir)}
    print(json.dumps(info, indent=2))
    return 0


def run_class_rotate_token(args) -> int:
    """Through the running server when given --url (its teacher pages close at once), else in the local store
    (the running server refuses the old token at the next page load or connection)."""
    from pathlib import Path

    from smartsession.hub import auth
    from smartsession.hub.client import HubError, rotate_teacher_token
    from smartsession.hub.core import class_links, revoke_teacher_tokens
    from smartsession.hub.store import FILENAME, Store

    data_dir = Path(_resolved_data_dir(args)).expanduser()
    if args.url:
        admin_file = data_dir / "admin_token"
        token = args.token or (admin_file.read_text().strip() if admin_file.exists() else "")
        if not token:
            print("smartsession class rotate-token: give --token (the server's admin token)")
            return 2
        try:
            info = rotate_teacher_token(args.url, args.class_id, token)
        except HubError as exc:
            print(f"smartsession class rotate-token: {exc}")
            return 1
    else:
        if not (data_dir / FILENAME).exists():
            print(f"smartsession class rotate-token: no store in {data_dir}: give --data-dir or --url")
            return 1
        secret = auth.load_secret(data_dir)
        with Store(data_dir) as store:
            found = store.class_info(args.class_id)
            if found is None:
                print(f"smartsession class rotate-token: no class {args.class_id!r} in {data_dir}")
                return 1
            revoke_teacher_tokens(store, args.class_id)
        info = class_links(secret, args.class_id, found["title"])
    print(json.dumps(info, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Only the hub's commands, without importing the other rooms (used to start hub subprocesses fast)."""
    parser = argparse.ArgumentParser(prog="smartsession")
    register(parser.add_subparsers(dest="command", required=True))
    args = parse(parser, argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
