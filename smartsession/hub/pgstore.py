"""The shared store: the SQLite store's tables, batching and acks in PostgreSQL, for many hub nodes at once.

Every node writes what its own students send; any node reads the whole class. psycopg 3 (sync) with a pool:
the store's writer is already a thread and its reads already run in executors, so a blocking driver fits.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

from smartsession.hub.store import _INSERT_STATE, STATE_COLUMNS, Store
from smartsession.schema import SHARED_FEATURES

log = logging.getLogger("smartsession.hub")

# Versioned migrations, applied in order under an advisory lock so nodes starting together do not race.
# REAL is 4 bytes in PostgreSQL: times and scores are DOUBLE PRECISION. ``rowid`` keeps the SQLite store's
# name for arrival order, so reads share their SQL. The unique index makes a state resent to another node
# after a failover land once.
MIGRATIONS: list[str] = [
    f"""
    CREATE TABLE classes (
        class_id TEXT PRIMARY KEY, title TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
        emotions INTEGER NOT NULL DEFAULT 1);
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY, class_id TEXT NOT NULL, title TEXT, started DOUBLE PRECISION NOT NULL,
        ended DOUBLE PRECISION);
    CREATE INDEX sessions_class ON sessions (class_id, started);
    CREATE TABLE segments (
        session_id TEXT NOT NULL, segment_id TEXT NOT NULL, title TEXT NOT NULL, start DOUBLE PRECISION NOT NULL,
        "end" DOUBLE PRECISION, PRIMARY KEY (session_id, segment_id));
    CREATE TABLE students (
        class_id TEXT NOT NULL, student_id TEXT NOT NULL, name TEXT NOT NULL, hidden INTEGER NOT NULL DEFAULT 0,
        joined DOUBLE PRECISION NOT NULL, PRIMARY KEY (class_id, student_id));
    CREATE TABLE states (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id TEXT NOT NULL, class_id TEXT NOT NULL, student_id TEXT NOT NULL, seq BIGINT NOT NULL,
        t DOUBLE PRECISION NOT NULL, received DOUBLE PRECISION NOT NULL, state TEXT NOT NULL,
        engagement DOUBLE PRECISION NOT NULL, confidence DOUBLE PRECISION NOT NULL, segment TEXT,
        paused INTEGER NOT NULL, {", ".join(f"{f} DOUBLE PRECISION" for f in SHARED_FEATURES)});
    CREATE INDEX states_session ON states (session_id, received);
    CREATE UNIQUE INDEX states_student ON states (class_id, student_id, seq);
    CREATE TABLE commands (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, session_id TEXT, class_id TEXT NOT NULL,
        received DOUBLE PRECISION NOT NULL, command TEXT NOT NULL, args TEXT NOT NULL);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # One open session per class, whichever node opens it (``open_class_session``). Classes that two nodes
    # split before this keep their newest open session; the others end where the next one started.
    """
    UPDATE sessions s SET ended = (SELECT MIN(o.started) FROM sessions o WHERE o.class_id = s.class_id
                                   AND o.ended IS NULL AND (o.started, o.session_id) > (s.started, s.session_id))
    WHERE s.ended IS NULL AND EXISTS (SELECT 1 FROM sessions o WHERE o.class_id = s.class_id AND o.ended IS NULL
                                      AND (o.started, o.session_id) > (s.started, s.session_id));
    CREATE UNIQUE INDEX sessions_open ON sessions (class_id) WHERE ended IS NULL;
    """,
    # Check-ins, their answers (one per student per check-in) and each class's lesson plan.
    """
    CREATE TABLE checkins (
        session_id TEXT NOT NULL, class_id TEXT NOT NULL, checkin_id TEXT NOT NULL, kind TEXT NOT NULL,
        question TEXT NOT NULL, options TEXT NOT NULL, asked DOUBLE PRECISION NOT NULL,
        closes DOUBLE PRECISION NOT NULL, closed DOUBLE PRECISION, segment TEXT, research INTEGER NOT NULL,
        PRIMARY KEY (session_id, checkin_id));
    CREATE TABLE answers (
        session_id TEXT NOT NULL, class_id TEXT NOT NULL, checkin_id TEXT NOT NULL, student_id TEXT NOT NULL,
        choice INTEGER NOT NULL, received DOUBLE PRECISION NOT NULL, research INTEGER NOT NULL,
        PRIMARY KEY (session_id, checkin_id, student_id));
    CREATE TABLE plans (class_id TEXT PRIMARY KEY, items TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL);
    """,
]
_MIGRATION_LOCK = 0x5355_4D41  # any constant shared by every node: pg_advisory_xact_lock's key

# States go in with COPY (psycopg formats the rows in C) into a staging table of the writer's session, then one
# INSERT ... SELECT that skips what is already stored. Multi-row INSERTs spent a third of a node's CPU in
# psycopg turning 500-row statements into PostgreSQL's placeholders, in Python, holding the GIL the loop needs.
_COLUMNS = ", ".join(STATE_COLUMNS)
_STAGE = (f"CREATE TEMPORARY TABLE IF NOT EXISTS states_in ON COMMIT DELETE ROWS AS SELECT {_COLUMNS} FROM states "
          "WITH NO DATA")
_COPY_STATES = f"COPY states_in ({_COLUMNS}) FROM STDIN"
_INSERT_STAGED = (f"INSERT INTO states ({_COLUMNS}) SELECT {_COLUMNS} FROM states_in "
                  "ON CONFLICT (class_id, student_id, seq) DO NOTHING")

_TEXT_COLUMNS = ("session_id", "class_id", "student_id", "state", "segment")
_STATE_DTYPES = {c: (str if c in _TEXT_COLUMNS else "int64" if c in ("seq", "paused") else "float64")
                 for c in STATE_COLUMNS}
# COPY writes NULL as an empty field and an empty string as "": only these columns may be NULL.
_NULLABLE = ("segment", *SHARED_FEATURES)


@lru_cache(maxsize=None)
def _pg(sql: str) -> str:
    """The shared SQL with psycopg's placeholders (our statements hold no other ``?`` or ``%``)."""
    return sql.replace("?", "%s")


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class _QmarkConnection:
    """A psycopg connection that takes the shared ``?`` SQL, as the SQLite store's readers do."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql: str, params: tuple = ()):
        return self.conn.execute(_pg(sql), params)


class PostgresStore(Store):
    """The store in the PostgreSQL database at ``url`` (``postgresql://user@host:port/db``).

    Same methods, batching and ``on_acks`` contract as :class:`Store`. While the database is unreachable
    the writer keeps the failed batch and what follows, retries with a growing pause and logs the outage
    and the recovery; past ``max_buffered`` rows, new states are refused unacknowledged (their clients
    keep them and resend), so memory stays bounded.
    """

    _HISTORY_SQL = (
        "SELECT student_id, bin, engagement, state, received FROM ("
        "SELECT DISTINCT ON (student_id, bin) student_id, bin, engagement, state, received FROM ("
        "SELECT student_id, FLOOR(received / ?)::BIGINT AS bin, engagement, state, received FROM states "
        "WHERE session_id = ? AND paused = 0) b ORDER BY student_id, bin, received DESC) l ORDER BY bin"
    )
    shared = True
    _COUNTS_SQL = Store._COUNTS_SQL.replace("CAST((t{shift} - ?) / ? AS INTEGER)", "FLOOR((t{shift} - ?) / ?)::BIGINT")
    _SAMPLE_SQL = Store._SAMPLE_SQL.replace("seq % ?", "MOD(seq, ?)")
    _STATES_JSON_SQL = (
        "SELECT json_build_object("
        + ", ".join(f"'{c}', paused <> 0" if c == "paused" else f"'{c}', {c}" for c in STATE_COLUMNS)
        + ")::text FROM states WHERE session_id = ? ORDER BY received, rowid"
    )

    def __init__(self, url: str, batch_seconds: float = 0.05, on_acks: Callable[[list], None] | None = None,
                 max_buffered: int = 200_000, pool_size: int = 4):
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url = url
        self.path = None
        self.batch_seconds = batch_seconds
        self.on_acks = on_acks
        self.max_buffered = max_buffered
        self._pending: list = []
        self._held = 0  # rows of a failed batch the writer is retrying
        self._refused = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        try:
            self._writer_db = psycopg.connect(url, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise RuntimeError(f"cannot reach PostgreSQL at {_safe(url)}: start it or fix --store ({exc})") from None
        self.schema_version = migrate(self._writer_db)
        # Connections are checked as they leave the pool: after a database restart, reads get a fresh one.
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, kwargs={"connect_timeout": 10},
                                    name="smartsession-store", open=True, check=ConnectionPool.check_connection)
        self._writer = threading.Thread(target=self._write_loop, name="smartsession-store", daemon=True)
        self._writer.start()

    def _release(self) -> None:
        self._pool.close()

    # --- writes ---

    def _full(self) -> bool:
        # Only states are refused: other rows (sessions, commands) are few and always kept.
        if len(self._pending) + self._held < self.max_buffered:
            return False
        self._refused += 1
        if self._refused == 1:
            log.error("store buffer full (%d rows waiting for PostgreSQL): refusing new states until it catches "
                      "up; students keep and resend them", self.max_buffered)
        return True

    def _write_loop(self) -> None:
        import psycopg

        db = self._writer_db
        held: list = []
        pause = self.batch_seconds
        down_since = None
        while True:
            self._wake.wait(pause)
            self._wake.clear()
            closing = self._closed
            with self._lock:
                batch, self._pending = held + self._pending, []
            if batch:
                try:
                    if db.closed:
                        db = psycopg.connect(self.url, connect_timeout=5)
                    self._write(db, batch)
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    if down_since is None:
                        down_since = time.monotonic()
                        log.error("PostgreSQL unreachable (%s): holding %d rows unacknowledged and retrying",
                                  str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                                  len(batch))
                    held = batch
                    with self._lock:
                        self._held = len(held)
                    pause = min(5.0, max(0.2, pause * 2))
                    if db is not None and not db.closed:
                        db.close()
                    if closing and time.monotonic() - down_since > 10:
                        log.error("closing with PostgreSQL unreachable: %d unacknowledged rows not stored "
                                  "(their students resend them to another node)", len(held))
                        break
                    continue
                except psycopg.Error:
                    # A batch the database refuses (not an outage): nothing in it is acknowledged, so clients
                    # resend it; retrying it would fail forever.
                    log.exception("could not store %d rows", len(batch))
                held = []
                with self._lock:
                    self._held = 0
                    refused, self._refused = self._refused, 0
                if down_since is not None:
                    log.warning("PostgreSQL is back after %.1f s: stored %d held rows (%d new states refused "
                                "meanwhile)", time.monotonic() - down_since, len(batch), refused)
                    down_since = None
                pause = self.batch_seconds
            if closing:
                break
        if not db.closed:
            db.close()

    def _write(self, db, batch: list) -> None:
        with db.transaction(), db.cursor() as cur:
            cur.execute(_STAGE)  # once per connection in effect; emptied at every commit
            staged = False
            i = 0
            while i < len(batch):
                j = i
                while j < len(batch) and batch[j][0] == batch[i][0]:
                    j += 1
                if batch[i][0] is _INSERT_STATE:
                    if staged:  # a second run of states in this transaction: the first is still staged
                        cur.execute("DELETE FROM states_in")
                    with cur.copy(_COPY_STATES) as copy:
                        for b in batch[i:j]:
                            copy.write_row(b[1])
                    cur.execute(_INSERT_STAGED)
                    staged = True
                elif batch[i][0] is not None:
                    cur.executemany(_pg(batch[i][0]), [b[1] for b in batch[i:j]])
                i = j
        for _, _, on_commit, _ in batch:
            if on_commit is not None:
                on_commit()
        if self.on_acks is not None:
            acks = [b[3] for b in batch if b[3] is not None]
            if acks:
                self.on_acks(acks)

    def open_class_session(self, class_id: str, session_id: str, started: float, ended: str | None = None) -> str:
        """The class's open session, opened now as ``session_id`` if it has none.

        Atomic across nodes (the unique index on a class's open session): two nodes opening one for the same
        class at once both get the one that was inserted first. Commits what this node has queued first, and
        ends ``ended`` (a session this node heard was ended, whose end another node may not have committed
        yet), so neither is handed out again."""
        self.flush()
        with self._pool.connection() as conn:
            if ended is not None:
                conn.execute('UPDATE segments SET "end" = %s WHERE session_id = %s AND "end" IS NULL', (started, ended))
                conn.execute("UPDATE sessions SET ended = %s WHERE session_id = %s AND ended IS NULL", (started, ended))
            conn.execute("INSERT INTO sessions (session_id, class_id, started) VALUES (%s, %s, %s) "
                         "ON CONFLICT DO NOTHING", (session_id, class_id, started))
            return conn.execute("SELECT session_id FROM sessions WHERE class_id = %s AND ended IS NULL",
                                (class_id,)).fetchone()[0]

    # --- settings every node shares ---

    def shared_setting(self, key: str, make: Callable[[], str]) -> str:
        """The value of ``key``, set to ``make()`` by whichever node asks first."""
        with self._pool.connection() as conn:
            conn.execute("INSERT INTO settings (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                         (key, make()))
            return conn.execute("SELECT value FROM settings WHERE key = %s", (key,)).fetchone()[0]

    def credentials(self, secret: str, data_dir: Path) -> tuple[str, str]:
        """Every node's token secret and admin token, from the database (:func:`shared_credentials`)."""
        return shared_credentials(self, secret, data_dir)

    def default_class_id(self, make: Callable[[], str]) -> str:
        """``serve``'s class on a first start: the one the first node made, so every node offers the same."""
        return self.shared_setting("default_class", make)

    def set_shared_setting(self, key: str, value: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("INSERT INTO settings (key, value) VALUES (%s, %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def count_up(self, key: str, most: int) -> int | None:
        """Add one to the counter ``key`` unless it reached ``most`` (one statement: two nodes counting at
        once are serialised by the row's lock); the new count, or None."""
        if most <= 0:
            return None
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO settings (key, value) VALUES (%s, '1') ON CONFLICT (key) DO UPDATE "
                "SET value = CAST(CAST(settings.value AS INTEGER) + 1 AS TEXT) "
                "WHERE CAST(settings.value AS INTEGER) < %s RETURNING value", (key, most)).fetchone()
        return int(row[0]) if row else None

    # --- reads ---

    def stored_seq(self, class_id: str, student_id: str) -> int:
        """The highest seq of the student's states committed by any node (-1: none)."""
        rows = self._query("SELECT MAX(seq) FROM states WHERE class_id = ? AND student_id = ?", (class_id, student_id))
        return -1 if rows[0][0] is None else rows[0][0]

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._pool.connection() as conn:
            return conn.execute(_pg(sql), params).fetchall()

    def _frame(self, sql: str, params: tuple = ()):
        import pandas as pd

        with self._pool.connection() as conn:
            cur = conn.execute(_pg(sql), params)
            return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])

    def states(self, session_id: str):
        """As :meth:`Store.states`. A lesson is hundreds of thousands of rows: PostgreSQL writes them as CSV
        (``COPY``) and pandas' C parser reads it, instead of a Python tuple per row, which took seconds."""
        import pandas as pd

        buf = io.BytesIO()
        with self._pool.connection() as conn, conn.cursor() as cur:
            with cur.copy(f"COPY (SELECT {', '.join(STATE_COLUMNS)} FROM states WHERE session_id = %s "
                          "ORDER BY received, rowid) TO STDOUT WITH (FORMAT csv, HEADER true)", (session_id,)) as copy:
                for chunk in copy:
                    buf.write(chunk)
        buf.seek(0)
        df = pd.read_csv(buf, dtype=_STATE_DTYPES, keep_default_na=False, na_values={c: [""] for c in _NULLABLE})
        df["paused"] = df["paused"].astype(bool)
        return df

    @contextmanager
    def _reader(self) -> Iterator[_QmarkConnection]:
        with self._pool.connection() as conn:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield _QmarkConnection(conn)


def migrate(conn) -> int:
    """Bring the database at ``conn`` to the newest schema; returns its version. Safe from many nodes at once."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS smartsession_schema (version INTEGER NOT NULL, "
                     "applied DOUBLE PRECISION NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM smartsession_schema").fetchone()
        version = row[0] or 0
        if version > len(MIGRATIONS):
            raise RuntimeError(f"the database is at schema version {version}, newer than this smartsession "
                               f"({len(MIGRATIONS)}): upgrade smartsession on this node")
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            conn.execute(sql)
            conn.execute("INSERT INTO smartsession_schema (version, applied) VALUES (%s, %s)", (number, time.time()))
            log.info("PostgreSQL store: applied schema migration %d", number)
    return len(MIGRATIONS)


def shared_credentials(store: PostgresStore, secret: str, data_dir: Path) -> tuple[str, str]:
    """The deployment's token secret and admin token, kept in the database so every node authorises every
    class: the first node to start sets them (``secret`` if given, else a new one). A given ``secret`` that
    differs from the stored one is an error: tokens from the other nodes would fail here. The admin token is
    also written to ``<data_dir>/admin_token`` (0600) for ``smartsession class create`` on this machine."""
    from smartsession.hub import auth

    stored = store.shared_setting("secret", lambda: secret or secrets.token_hex(32))
    if secret and secret != stored:
        raise RuntimeError("--secret differs from the secret in the shared store: drop --secret (the store's "
                           "is used by every node) or give every node the same one")
    token = store.shared_setting("admin_token", lambda: auth.issue_token(stored, "admin"))
    path = data_dir / "admin_token"
    if not path.exists() or path.read_text().strip() != token:
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    return stored, token


def _safe(url: str) -> str:
    """``url`` without its password, for log lines and errors."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}@{host}"


def open_store(target: str, **kw) -> Store:
    """The store ``target`` names: a ``postgresql://`` URL, or a data directory or file for SQLite."""
    return PostgresStore(target, **kw) if is_postgres_url(target) else Store(target, **kw)
