"""The options of ``smartsession serve``: each a setting of the app, its help the trait's own (``--help``).

Light (no Voila imported), so the command line and the app both read it: ``serve/cli.py`` parses with it and
``serve/app.py`` takes its aliases and flags from it.
"""

from __future__ import annotations

from smartsession.hub.cli import HUB_OPTIONS
from smartsession.options import Option

#: Where each option's trait lives, imported only for ``--help``.
CLASSES = {
    "SmartSessionApp": "smartsession.serve.app:SmartSessionApp",
    "QuietRefillKernelManager": "smartsession.serve.pool:QuietRefillKernelManager",
    "HubConfig": "smartsession.hub.config:HubConfig",
}

OPTIONS = (
    Option("host", "SmartSessionApp.ip", "ADDR"),
    Option("port", "SmartSessionApp.port", "PORT"),
    *HUB_OPTIONS,
    Option("certfile", "SmartSessionApp.certfile", "PEM"),
    Option("keyfile", "SmartSessionApp.keyfile", "PEM"),
    Option("self-signed", "SmartSessionApp.self_signed"),
    Option("class-size", "SmartSessionApp.class_size", "N"),
    Option("pool-size", "SmartSessionApp.pool_size", "N"),
    Option("max-students", "SmartSessionApp.max_students", "N"),
    Option("max-per-address", "SmartSessionApp.max_per_address", "N"),
    Option("trusted-proxy", "SmartSessionApp.trusted_proxies", "ADDR", repeat=True),
    Option("max-address-share", "SmartSessionApp.max_address_share", "SHARE"),
    Option("seat-timeout", "SmartSessionApp.seat_timeout", "SECONDS"),
    Option("max-teacher-pages", "SmartSessionApp.max_teacher_pages", "N"),
    Option("max-teacher-pages-per-link", "SmartSessionApp.max_teacher_pages_per_link", "N"),
    Option("connect-timeout", "SmartSessionApp.connect_timeout", "SECONDS"),
    Option("refill-quiet", "QuietRefillKernelManager.refill_quiet", "SECONDS"),
    Option("dashboards", "SmartSessionApp.dashboards", "DIR"),
    Option("class-title", "SmartSessionApp.class_title", "TITLE"),
    Option("analysis", "SmartSessionApp.analysis", "browser|server"),
    Option("fork-kernels", "SmartSessionApp.fork_kernels"),
)
