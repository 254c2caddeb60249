"""Hub settings as traitlets: one ``HubConfig`` for ``smartsession hub``, ``serve`` and the Jupyter extension.

Set them on the command line, in a config file (``c.HubConfig.rate = 10``) or, for the two the
environment may carry, through ``SMARTSESSION_DATA_DIR``, ``SMARTSESSION_SECRET`` and ``SMARTSESSION_STORE``.
"""

from __future__ import annotations

import os
from pathlib import Path

from traitlets import Float, Int, List, Unicode, default
from traitlets.config import Configurable


class HubConfig(Configurable):
    """Hub settings, settable from the command line and Jupyter/Voila config files (``c.HubConfig.port``...)."""

    data_dir = Unicode(
        help="Directory for the SQLite store, the secret and the admin token (and serve's certificate); default: "
        "$SMARTSESSION_DATA_DIR, else ~/.smartsession."
    ).tag(config=True)
    secret = Unicode(
        help="HMAC secret for tokens, shared by every hub of a deployment; default: $SMARTSESSION_SECRET, else "
        "<data_dir>/secret, created on first run."
    ).tag(config=True)
    store_url = Unicode(
        help="postgresql://user@host:port/db: one database every hub node writes to and reads the whole class "
        "from (it also holds the secret and admin token); default: $SMARTSESSION_STORE, else SQLite in data_dir, "
        "for one machine."
    ).tag(config=True)
    redis_url = Unicode("", help="redis://host:port to share classes between hub processes; empty: one process.").tag(
        config=True
    )
    allowed_origins = List(
        Unicode(), help="Extra Origins allowed to open websockets (the page's own host is always allowed)."
    ).tag(config=True)
    max_message_bytes = Int(
        4096, help="Largest client message or API body; larger messages close the connection (4009), bodies get 413."
    ).tag(config=True)
    max_json_depth = Int(16, help="Deepest nesting of JSON arrays/objects accepted (4000 or 400 beyond).").tag(
        config=True
    )
    rate = Float(
        20.0, help="Messages per second per student (kept across reconnects), per connection before hello, "
        "and per class for its teachers' commands; sustained (4008 beyond)."
    ).tag(config=True)
    burst = Float(40.0, help="Messages allowed at once, for the same buckets as rate.").tag(config=True)
    class_rate = Float(600.0, help="Messages per second from all students of one class together (4008).").tag(
        config=True
    )
    class_burst = Float(1200.0, help="Messages at once from all students of one class together.").tag(config=True)
    max_clock_skew = Float(
        3600.0, help="Seconds a state's capture time t may be away from the hub's clock (4001 beyond)."
    ).tag(config=True)
    max_batch_bytes = Int(
        16384, help="Largest states message (a batch of a student's per-frame states); other messages stay within "
        "max_message_bytes (4009 beyond)."
    ).tag(config=True)
    state_rate = Float(
        40.0, help="States per second per student counted from states batches (kept across reconnects; 4008 beyond)."
    ).tag(config=True)
    state_burst = Float(80.0, help="States at once per student in states batches.").tag(config=True)
    max_students_per_class = Int(500, help="Students a class may have; joins beyond get 503.").tag(config=True)
    join_rate_per_address = Float(1.0, help="Join attempts per second from one address, sustained (429).").tag(
        config=True
    )
    join_burst_per_address = Float(60.0, help="Join attempts at once from one address.").tag(config=True)
    join_rate_per_class = Float(1.0, help="Joins per second into one class, sustained (429).").tag(config=True)
    join_burst_per_class = Float(60.0, help="Joins at once into one class.").tag(config=True)
    max_teachers_per_token = Int(
        5, help="Teacher sockets with one token; a new one closes that token's oldest (4012)."
    ).tag(config=True)
    max_teachers_per_class = Int(20, help="Teacher sockets per class; more are refused (4014).").tag(config=True)
    max_connections = Int(
        4096, help="Open connections in all (HTTP and websocket), kept below the open-file limit (503)."
    ).tag(config=True)
    max_connections_per_address = Int(256, help="Open connections from one address (503).").tag(config=True)
    trusted_addresses = List(
        Unicode(), ["127.0.0.1", "::1", "::ffff:127.0.0.1"],
        help="Addresses exempt from the per-address caps (connections, joins): this machine's own kernels or proxy.",
    ).tag(config=True)
    max_write_buffer = Int(
        2 << 20, help="Bytes a client may leave unread before it is closed as too slow (4013)."
    ).tag(config=True)
    socket_send_buffer = Int(
        256 << 10, help="Kernel send buffer per websocket (SO_SNDBUF; 0: the system's autotuning, up to 4 MB)."
    ).tag(config=True)
    header_timeout = Float(
        10.0, help="Seconds for a request header to arrive (from connecting, or from the previous response)."
    ).tag(config=True)
    body_timeout = Float(10.0, help="Seconds for a request body to arrive.").tag(config=True)
    max_body_bytes = Int(1 << 20, help="Largest request body any route of the HTTP server reads.").tag(config=True)
    max_header_bytes = Int(65536, help="Largest request header.").tag(config=True)
    max_exports = Int(2, help="Session exports served at once; more wait their turn.").tag(config=True)
    ping_interval = Float(2.0, help="Seconds of silence after which a client is pinged.").tag(config=True)
    dead_after = Float(6.0, help="Seconds without pong or message before a client counts as disconnected.").tag(
        config=True
    )
    hello_timeout = Float(10.0, help="Seconds a new connection has to send its hello.").tag(config=True)
    max_classes = Int(2000, help="Classes a deployment holds; creating more is refused (429).").tag(config=True)
    max_classes_per_token = Int(
        10, help="Classes one teacher token may create (each comes with a new teacher token); 429 beyond. The "
        "admin token has no per-token cap."
    ).tag(config=True)
    max_segments = Int(
        200, help="Lecture segments per session; start_segment beyond is refused with a result error."
    ).tag(config=True)
    max_plan_bytes = Int(
        65536, help="Largest lesson plan a teacher may save (the body of POST .../plan; 413 beyond)."
    ).tag(config=True)
    checkin_min_interval = Float(
        10.0, help="Seconds between two check-ins of a class; an earlier one is refused in the teacher's result."
    ).tag(config=True)
    max_checkins_per_session = Int(200, help="Check-ins a lesson may have; more are refused.").tag(config=True)
    commit_interval = Float(
        0.5, help="Seconds the store gathers rows before one commit; acks follow each commit."
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return os.environ.get("SMARTSESSION_DATA_DIR") or str(Path.home() / ".smartsession")

    @default("secret")
    def _default_secret(self) -> str:
        return os.environ.get("SMARTSESSION_SECRET", "")

    @default("store_url")
    def _default_store_url(self) -> str:
        return os.environ.get("SMARTSESSION_STORE", "")

