"""The embedded store: every accepted state and teacher command in SQLite (WAL), read back as DataFrames.

Writes are queued to one writer thread that commits in batches; ``on_commit`` callbacks and ``on_acks`` run after.
The data directory is created 0700 and the database 0600 (its WAL and shared-memory files take the database's
mode): it holds names and engagement series. ``private_warnings`` says when someone widened them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterator

from smartsession.cells import safe_frame, safe_row
from smartsession.schema import SHARED_FEATURES

FILENAME = "smartsession.sqlite3"
log = logging.getLogger("smartsession.hub")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS classes (
    class_id TEXT PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL, emotions INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, class_id TEXT NOT NULL, title TEXT, started REAL NOT NULL, ended REAL);
CREATE INDEX IF NOT EXISTS sessions_class ON sessions (class_id, started);
CREATE TABLE IF NOT EXISTS segments (
    session_id TEXT NOT NULL, segment_id TEXT NOT NULL, title TEXT NOT NULL, start REAL NOT NULL, "end" REAL,
    PRIMARY KEY (session_id, segment_id));
CREATE TABLE IF NOT EXISTS students (
    class_id TEXT NOT NULL, student_id TEXT NOT NULL, name TEXT NOT NULL, hidden INTEGER NOT NULL DEFAULT 0,
    joined REAL NOT NULL, PRIMARY KEY (class_id, student_id));
CREATE TABLE IF NOT EXISTS states (
    session_id TEXT NOT NULL, class_id TEXT NOT NULL, student_id TEXT NOT NULL, seq INTEGER NOT NULL,
    t REAL NOT NULL, received REAL NOT NULL, state TEXT NOT NULL, engagement REAL NOT NULL,
    confidence REAL NOT NULL, segment TEXT, paused INTEGER NOT NULL,
    {", ".join(f"{f} REAL" for f in SHARED_FEATURES)});
CREATE INDEX IF NOT EXISTS states_session ON states (session_id, received);
CREATE INDEX IF NOT EXISTS states_student ON states (class_id, student_id, seq);
CREATE TABLE IF NOT EXISTS commands (
    session_id TEXT, class_id TEXT NOT NULL, received REAL NOT NULL, command TEXT NOT NULL, args TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""" + """
CREATE TABLE IF NOT EXISTS checkins (
    session_id TEXT NOT NULL, class_id TEXT NOT NULL, checkin_id TEXT NOT NULL, kind TEXT NOT NULL,
    question TEXT NOT NULL, options TEXT NOT NULL, asked REAL NOT NULL, closes REAL NOT NULL, closed REAL,
    segment TEXT, research INTEGER NOT NULL, PRIMARY KEY (session_id, checkin_id));
CREATE TABLE IF NOT EXISTS answers (
    session_id TEXT NOT NULL, class_id TEXT NOT NULL, checkin_id TEXT NOT NULL, student_id TEXT NOT NULL,
    choice INTEGER NOT NULL, received REAL NOT NULL, research INTEGER NOT NULL,
    PRIMARY KEY (session_id, checkin_id, student_id));
CREATE TABLE IF NOT EXISTS plans (class_id TEXT PRIMARY KEY, items TEXT NOT NULL, updated REAL NOT NULL);
"""

STATE_COLUMNS = (
    "session_id", "class_id", "student_id", "seq", "t", "received", "state", "engagement", "confidence",
    "segment", "paused", *SHARED_FEATURES,
)
_STATE_ROW = f"({', '.join('?' * len(STATE_COLUMNS))})"
_INSERT_STATES = f"INSERT INTO states ({', '.join(STATE_COLUMNS)}) VALUES "
_INSERT_STATE = _INSERT_STATES + _STATE_ROW
# Binding a statement's parameters holds the GIL throughout: 500-row statements (9,000 parameters) held it for
# milliseconds at a time, and the hub's loop stalled 20-60 ms after each commit at 1000 students while it
# caught up. 100 rows keep each hold short; SQLite's oldest default limit is 32,766 parameters.
_STATES_PER_INSERT = 100
_FORMATS = ("csv", "parquet", "json")


def _insert_states(db: sqlite3.Connection, rows: list[tuple]) -> None:
    # Multi-row INSERTs, not executemany: sqlite3 lets go of the GIL around every row's step and must win
    # it back from the busy event loop thread before binding the next row, thousands of hand-offs a commit
    # that slow the hub's loop. One statement per chunk binds in C and steps once; chunks stay small (above).
    for k in range(0, len(rows), _STATES_PER_INSERT):
        part = rows[k : k + _STATES_PER_INSERT]
        db.execute(_INSERT_STATES + ", ".join([_STATE_ROW] * len(part)), list(chain.from_iterable(part)))


def _shift(clock_fix: dict[str, float]) -> tuple[str, tuple]:
    """SQL added to ``t`` for the wrong-clocked students (seconds per student), and its parameters."""
    if not clock_fix:
        return "", ()
    params: list = []
    for student_id, offset in clock_fix.items():
        params += [student_id, float(offset)]
    return f" + CASE student_id {' '.join(['WHEN ? THEN ?'] * len(clock_fix))} ELSE 0 END", tuple(params)


def private_dir(path: Path) -> Path:
    """``path`` as a directory, created (with its parents) mode 0700 if missing."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
    return path


def private_warnings(data_dir: Path) -> list[str]:
    """What in ``data_dir`` other local users could read or change: the directory itself, the store (with its
    WAL and shared-memory files), the secret and the admin token. Empty when all is private."""
    out = []
    names = [FILENAME, FILENAME + "-wal", FILENAME + "-shm", "secret", "admin_token"]
    for path in [data_dir, *(data_dir / n for n in names)]:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            want = 0o700 if path.is_dir() else 0o600
            out.append(f"{path} is mode {mode:04o}: other users of this machine can read it; chmod {want:04o} {path}")
    return out


def _connect(path: Path) -> sqlite3.Connection:
    if not path.exists():
        # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the database's mode.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
    db = sqlite3.connect(path, timeout=30, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


_STUDENTS_SQL = (
    "SELECT st.student_id, COALESCE(st.name, s.student_id) AS name, COALESCE(st.hidden, 0) AS hidden "
    "FROM (SELECT DISTINCT class_id, student_id FROM states WHERE session_id = ?) s "
    "LEFT JOIN students st ON st.class_id = s.class_id AND st.student_id = s.student_id "
    "ORDER BY name"
)
_STATES_JSON_SQL = (
    "SELECT json_object("
    + ", ".join(
        f"'{c}', json(CASE WHEN paused THEN 'true' ELSE 'false' END)" if c == "paused" else f"'{c}', {c}"
        for c in STATE_COLUMNS
    )
    + ") FROM states WHERE session_id = ? ORDER BY received, rowid"
)
_STATES_CSV_SQL = (
    "SELECT "
    + ", ".join("CASE WHEN paused <> 0 THEN 'True' ELSE 'False' END" if c == "paused" else c for c in STATE_COLUMNS)
    + " FROM states WHERE session_id = ? ORDER BY received, rowid"
)


class Store:
    """SQLite store at ``path`` (a file, or a data directory holding ``smartsession.sqlite3``).

    Its methods are the store protocol the hub and the report use; ``pgstore.PostgresStore`` implements the
    same for a database every hub node shares (``shared``), so neither asks which one it has.

    A context manager; ``close()`` flushes what is queued and may be called twice. ``on_acks(acks)`` is called
    from the writer thread once per commit with the ``ack`` objects of the states it committed, in order: one
    call per batch instead of one callback per row, which the hub's thousands of states per second notice.
    """

    # SQLite takes the bare columns of a MAX() aggregate from the row holding the maximum: the bin's latest.
    _STATES_JSON_SQL = _STATES_JSON_SQL
    _HISTORY_SQL = (
        "SELECT student_id, CAST(received / ? AS INTEGER) AS bin, engagement, state, MAX(received) "
        "FROM states WHERE session_id = ? AND paused = 0 GROUP BY student_id, bin ORDER BY bin"
    )

    #: Whether other hub nodes write to this store too; then the database settles what they must agree on (the
    #: secret, a class's open session, a student's committed seq) and the hub asks it (``credentials``,
    #: ``open_class_session``, ``stored_seq``).
    shared = False

    # The report's queries (``state_counts``, ``first_state_time``, ``clock_sample``): a lesson's 540,000 rows
    # are counted by the database and never become Python objects. ``{shift}`` puts wrong-clocked students'
    # capture times on the hub's clock (``_shift``).
    _COUNTS_SQL = (
        "SELECT student_id, CAST((t{shift} - ?) / ? AS INTEGER) AS bin_, COALESCE(segment, '') AS segment_, state, "
        "MIN(t{shift}) AS t, COUNT(*) AS n, SUM(engagement) AS engagement_sum "
        "FROM states WHERE session_id = ? AND paused = 0 GROUP BY student_id, bin_, segment_, state"
    )
    _SAMPLE_SQL = "SELECT student_id, received - t AS clock_offset FROM states WHERE session_id = ? AND seq % ? = 0"

    def __init__(self, path: str | Path, batch_seconds: float = 0.05,
                 on_acks: Callable[[list], None] | None = None):
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = private_dir(path) / FILENAME
        self.path = path
        self.batch_seconds = batch_seconds
        self.on_acks = on_acks
        # Rows wait in a plain list; the writer thread swaps it out every batch_seconds. Appending takes an
        # uncontended lock and wakes nobody, so the event loop pays next to nothing per row.
        self._pending: list = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._db = _connect(path)
        self._db.executescript(SCHEMA)
        self._db.commit()
        self._read_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="smartsession-store", daemon=True)
        self._writer.start()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._writer.join()
        self._release()

    def _release(self) -> None:
        """What the writer leaves open at the end: the readers' connection(s)."""
        self._db.close()

    # --- writes (queued, batched, committed by the writer thread) ---

    def _submit(self, sql: str | None, params: tuple, on_commit: Callable[[], None] | None = None,
                ack: Any = None) -> None:
        if self._closed:
            raise RuntimeError("store is closed")
        with self._lock:
            if ack is not None and self._full():
                return
            self._pending.append((sql, params, on_commit, ack))

    def _full(self) -> bool:
        """Whether a state is refused (unacknowledged: its student keeps it and resends); under ``_lock``."""
        return False

    def _write_loop(self) -> None:
        db = _connect(self.path)
        while True:
            self._wake.wait(self.batch_seconds)
            self._wake.clear()
            closing = self._closed
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                self._write(db, batch)
            if closing:
                break
        db.close()

    def _write(self, db: sqlite3.Connection, batch: list) -> None:
        # Consecutive rows of the same statement go in one executemany; order is kept.
        i = 0
        try:
            while i < len(batch):
                j = i
                while j < len(batch) and batch[j][0] == batch[i][0]:
                    j += 1
                if batch[i][0] is _INSERT_STATE:
                    _insert_states(db, [b[1] for b in batch[i:j]])
                elif batch[i][0] is not None:
                    db.executemany(batch[i][0], [b[1] for b in batch[i:j]])
                i = j
            db.commit()
        except sqlite3.Error:
            # Nothing in this batch is acknowledged, so clients resend it; the hub keeps running.
            log.exception("could not store %d rows", len(batch))
            db.rollback()
            return
        for _, _, on_commit, _ in batch:
            if on_commit is not None:
                on_commit()
        if self.on_acks is not None:
            acks = [b[3] for b in batch if b[3] is not None]
            if acks:
                self.on_acks(acks)

    def flush(self, timeout: float = 30) -> None:
        """Block until everything queued so far is committed."""
        done = threading.Event()
        self._submit(None, (), done.set)
        self._wake.set()
        if not done.wait(timeout):
            raise TimeoutError("store did not commit in time")

    def add_class(self, class_id: str, title: str, created: float | None = None) -> None:
        self._submit(
            "INSERT INTO classes (class_id, title, created) VALUES (?, ?, ?) ON CONFLICT (class_id) DO NOTHING",
            (class_id, title, created or time.time()),
        )

    def set_emotions(self, class_id: str, emotions: bool) -> None:
        self._submit("UPDATE classes SET emotions = ? WHERE class_id = ?", (int(emotions), class_id))

    def add_student(self, class_id: str, student_id: str, name: str, joined: float | None = None) -> None:
        self._submit(
            "INSERT INTO students (class_id, student_id, name, joined) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (class_id, student_id) DO NOTHING",
            (class_id, student_id, name, joined or time.time()),
        )

    def update_student(self, class_id: str, student_id: str, name: str, hidden: bool) -> None:
        self._submit(
            "INSERT INTO students (class_id, student_id, name, hidden, joined) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (class_id, student_id) DO UPDATE SET name = excluded.name, hidden = excluded.hidden",
            (class_id, student_id, name, int(hidden), time.time()),
        )

    def start_session(self, class_id: str, session_id: str, started: float, title: str | None = None) -> None:
        """Open ``session_id``, ending the class's open session and segment first."""
        self.end_session(class_id, started)
        self._submit(
            # Any conflict: in the shared store also another node's session opened a moment before this ended it.
            "INSERT INTO sessions (session_id, class_id, title, started) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (session_id, class_id, title, started),
        )

    def end_session(self, class_id: str, ended: float, session_id: str | None = None) -> None:
        """End the class's open session and segment; with ``session_id``, only that session (with a shared store,
        the one a teacher ended, not one another node has opened since)."""
        self._submit(
            'UPDATE segments SET "end" = ? WHERE "end" IS NULL AND session_id IN '
            "(SELECT session_id FROM sessions WHERE class_id = ? AND ended IS NULL "
            "AND session_id = COALESCE(?, session_id))",
            (ended, class_id, session_id),
        )
        self._submit("UPDATE sessions SET ended = ? WHERE class_id = ? AND ended IS NULL "
                     "AND session_id = COALESCE(?, session_id)", (ended, class_id, session_id))

    def start_segment(self, session_id: str, segment_id: str, title: str, start: float) -> None:
        self._submit('UPDATE segments SET "end" = ? WHERE session_id = ? AND "end" IS NULL', (start, session_id))
        self._submit(
            "INSERT INTO segments (session_id, segment_id, title, start) VALUES (?, ?, ?, ?) "
            'ON CONFLICT (session_id, segment_id) DO UPDATE SET title = excluded.title, start = excluded.start, '
            '"end" = NULL',
            (session_id, segment_id, title, start),
        )

    def add_state(self, session_id: str, state: dict[str, Any], on_commit: Callable[[], None] | None = None,
                  ack: Any = None) -> None:
        """Store one accepted state (a StateMessage dict with ``received``); ``ack`` goes to ``on_acks``."""
        feats = state.get("features") or {}
        row = (
            session_id, state["class_id"], state["student_id"], state["seq"], state["t"], state["received"],
            state["state"], state["engagement"], state["confidence"], state.get("segment"),
            int(bool(state.get("paused"))), *map(feats.get, SHARED_FEATURES),
        )
        self._submit(_INSERT_STATE, row, on_commit, ack)

    def add_command(
        self, session_id: str | None, class_id: str, received: float, command: str, args: dict[str, Any]
    ) -> None:
        self._submit(
            "INSERT INTO commands (session_id, class_id, received, command, args) VALUES (?, ?, ?, ?, ?)",
            (session_id, class_id, received, command, json.dumps(args)),
        )

    def set_shared_setting(self, key: str, value: str) -> None:
        """Set ``key`` (committed with the next batch; ``flush()`` to wait for it)."""
        self._submit("INSERT INTO settings (key, value) VALUES (?, ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def count_up(self, key: str, most: int) -> int | None:
        """Add one to the counter ``key`` unless it reached ``most``: the new count, or None (nothing added).
        Committed on return; blocks, call it off the loop."""
        with self._count_lock:  # one process holds this store: the lock makes read-then-write one step
            self.flush()
            made = int(self.setting(key) or 0)
            if made >= most:
                return None
            self.set_shared_setting(key, str(made + 1))
            self.flush()
            return made + 1

    def add_checkin(self, class_id: str, event: dict[str, Any]) -> None:
        """Store a ``checkin`` event (the hub's, validated)."""
        self._submit(
            "INSERT INTO checkins (session_id, class_id, checkin_id, kind, question, options, asked, closes, "
            "segment, research) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (event["session_id"], class_id, event["checkin_id"], event["kind"], event["question"],
             json.dumps(event["options"]), event["asked"], event["closes"], event["segment"],
             int(event["research"])),
        )

    def close_checkin(self, session_id: str, checkin_id: str, closed: float) -> None:
        self._submit("UPDATE checkins SET closed = ? WHERE session_id = ? AND checkin_id = ? AND closed IS NULL",
                     (closed, session_id, checkin_id))

    def add_answer(self, class_id: str, event: dict[str, Any]) -> None:
        """Store an ``answered`` event; a second answer of the same student to the same check-in is ignored."""
        self._submit(
            "INSERT INTO answers (session_id, class_id, checkin_id, student_id, choice, received, research) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (event["session_id"], class_id, event["checkin_id"], event["student_id"], event["option"],
             event["received"], int(event["research"])),
        )

    def save_plan(self, class_id: str, items: list[str]) -> None:
        """The class's lesson plan (its items, in order), kept for the next lesson."""
        self._submit(
            "INSERT INTO plans (class_id, items, updated) VALUES (?, ?, ?) "
            "ON CONFLICT (class_id) DO UPDATE SET items = excluded.items, updated = excluded.updated",
            (class_id, json.dumps(items), time.time()),
        )

    # --- reads ---

    def setting(self, key: str) -> str | None:
        """The value of ``key`` in the settings table, or None."""
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def credentials(self, secret: str, data_dir: Path) -> tuple[str, str]:
        """The token secret (``secret`` if given, else the data dir's, made on first run) and the admin token."""
        from smartsession.hub import auth

        secret = secret or auth.load_secret(data_dir)
        return secret, auth.load_admin_token(data_dir, secret)

    def default_class_id(self, make: Callable[[], str]) -> str:
        """The id of ``serve``'s class on a first start: a new one (``make()``); one hub owns this store."""
        return make()

    def stored_seq(self, class_id: str, student_id: str) -> int | None:
        """The student's highest seq committed by another hub: None, no other hub writes here."""
        return None


    def plan(self, class_id: str) -> list[str]:
        rows = self._query("SELECT items FROM plans WHERE class_id = ?", (class_id,))
        return json.loads(rows[0][0]) if rows else []

    def lesson_rows(self, class_id: str, limit: int = 50) -> dict[str, list[tuple]]:
        """What the lesson history needs of the class's last ``limit`` sessions, aggregated by the database:
        ``sessions`` (session_id, title, started, ended, last state's receive time, students, mean engagement),
        ``minutes`` (session_id, minute, class mean), ``segments``, and per session ``checkins`` and ``answers``."""
        recent = ("SELECT session_id FROM (SELECT session_id, started FROM sessions WHERE class_id = ? "
                  "ORDER BY started DESC LIMIT ?) r")
        p = (class_id, limit)
        return {
            "sessions": self._query(
                "SELECT s.session_id, s.title, s.started, s.ended, MAX(st.received), COUNT(DISTINCT st.student_id), "
                "AVG(CASE WHEN st.paused = 0 THEN st.engagement END) FROM sessions s "
                f"LEFT JOIN states st ON st.session_id = s.session_id WHERE s.session_id IN ({recent}) "
                "GROUP BY s.session_id, s.title, s.started, s.ended ORDER BY s.started", p),
            "minutes": self._query(
                "SELECT session_id, CAST(received / 60 AS INTEGER) AS m, AVG(engagement) FROM states "
                f"WHERE session_id IN ({recent}) AND paused = 0 GROUP BY session_id, m ORDER BY session_id, m", p),
            "segments": self._query(
                f'SELECT session_id, title, start, "end" FROM segments WHERE session_id IN ({recent}) '
                "ORDER BY session_id, start", p),
            "checkins": self._query(
                f"SELECT session_id, COUNT(*) FROM checkins WHERE session_id IN ({recent}) GROUP BY session_id", p),
            "answers": self._query(
                f"SELECT session_id, COUNT(*) FROM answers WHERE session_id IN ({recent}) GROUP BY session_id", p),
        }

    def answer_windows(self, session_id: str, window_s: float, attending, not_attending):
        """Per answer (checkin_id, student_id): how many of the student's unpaused states in the ``window_s``
        seconds before it were in ``attending`` and in ``not_attending`` (fixed state names), counted here."""
        marks = lambda states: ", ".join(f"'{s}'" for s in states if s.isalpha())  # noqa: E731
        df = self._frame(
            "SELECT a.checkin_id, a.student_id, "
            f"SUM(CASE WHEN s.state IN ({marks(attending)}) THEN 1 ELSE 0 END) AS attending, "
            f"SUM(CASE WHEN s.state IN ({marks(not_attending)}) THEN 1 ELSE 0 END) AS not_attending "
            "FROM answers a JOIN states s ON s.session_id = a.session_id AND s.student_id = a.student_id "
            "AND s.received < a.received AND s.received >= a.received - ? AND s.paused = 0 "
            "WHERE a.session_id = ? GROUP BY a.checkin_id, a.student_id",
            (float(window_s), session_id))
        return df.astype({"attending": int, "not_attending": int})

    def checkins(self, session_id: str):
        """A session's check-ins: checkin_id, kind, question, options (a list), asked, closes, closed, segment,
        research."""
        df = self._frame(
            "SELECT checkin_id, kind, question, options, asked, closes, closed, segment, research FROM checkins "
            "WHERE session_id = ? ORDER BY asked", (session_id,))
        df["options"] = [json.loads(o) for o in df["options"]]
        df["research"] = df["research"].astype(bool)
        return df.astype({"asked": float, "closes": float, "closed": float})

    def answers(self, session_id: str):
        """A session's answers: checkin_id, student_id, option (the index of the one picked), received, research."""
        df = self._frame(
            "SELECT checkin_id, student_id, choice AS option, received, research FROM answers "
            "WHERE session_id = ? ORDER BY received", (session_id,))
        df["research"] = df["research"].astype(bool)
        return df.astype({"option": int, "received": float})

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._read_lock:
            return self._db.execute(sql, params).fetchall()

    def _frame(self, sql: str, params: tuple = ()):
        import pandas as pd

        with self._read_lock:
            return pd.read_sql_query(sql, self._db, params=params)

    def class_count(self) -> int:
        return self._query("SELECT COUNT(*) FROM classes")[0][0]

    def class_info(self, class_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT class_id, title, created, emotions FROM classes WHERE class_id = ?", (class_id,))
        if not rows:
            return None
        cid, title, created, emotions = rows[0]
        return {"class_id": cid, "title": title, "created": created, "emotions": bool(emotions)}

    def open_session(self, class_id: str) -> tuple[str, float] | None:
        rows = self._query(
            "SELECT session_id, started FROM sessions WHERE class_id = ? AND ended IS NULL "
            "ORDER BY started DESC LIMIT 1",
            (class_id,),
        )
        return rows[0] if rows else None

    def open_segment(self, session_id: str) -> tuple[str, str, float] | None:
        rows = self._query(
            'SELECT segment_id, title, start FROM segments WHERE session_id = ? AND "end" IS NULL '
            "ORDER BY start DESC LIMIT 1",
            (session_id,),
        )
        return rows[0] if rows else None

    def segment_count(self, session_id: str) -> int:
        return self._query("SELECT COUNT(*) FROM segments WHERE session_id = ?", (session_id,))[0][0]

    def class_students(self, class_id: str) -> list[tuple[str, str, bool]]:
        rows = self._query("SELECT student_id, name, hidden FROM students WHERE class_id = ?", (class_id,))
        return [(sid, name, bool(hidden)) for sid, name, hidden in rows]

    def class_student(self, class_id: str, student_id: str) -> tuple[str, bool] | None:
        """The name and hidden flag of a student who joined ``class_id``, or None."""
        rows = self._query("SELECT name, hidden FROM students WHERE class_id = ? AND student_id = ?",
                           (class_id, student_id))
        return (rows[0][0], bool(rows[0][1])) if rows else None

    def count_students(self, class_id: str) -> int:
        return self._query("SELECT COUNT(*) FROM students WHERE class_id = ?", (class_id,))[0][0]

    def latest_states(self, class_id: str) -> dict[str, dict[str, Any]]:
        """Each student's highest-seq state in this class, as state event dicts."""
        cols = ", ".join(f"s.{c}" for c in STATE_COLUMNS)
        rows = self._query(
            f"SELECT {cols} FROM states s JOIN (SELECT student_id, MAX(seq) AS seq FROM states "
            "WHERE class_id = ? GROUP BY student_id) m ON s.student_id = m.student_id AND s.seq = m.seq "
            "WHERE s.class_id = ?",
            (class_id, class_id),
        )
        out = {}
        for row in rows:
            r = dict(zip(STATE_COLUMNS, row))
            feats = {f: r.pop(f) for f in SHARED_FEATURES}
            r.pop("session_id")
            out[r["student_id"]] = {
                "type": "state", "v": 1, **r, "paused": bool(r["paused"]),
                "features": {k: v for k, v in feats.items() if v is not None},
            }
        return out

    def sessions(self, class_id: str | None = None):
        """Sessions (session_id, class_id, title, started, ended), oldest first."""
        where, params = ("WHERE class_id = ?", (class_id,)) if class_id else ("", ())
        return self._frame(
            f"SELECT session_id, class_id, title, started, ended FROM sessions {where} ORDER BY started", params
        )

    def session_class(self, session_id: str) -> str | None:
        rows = self._query("SELECT class_id FROM sessions WHERE session_id = ?", (session_id,))
        return rows[0][0] if rows else None

    def states(self, session_id: str):
        df = self._frame(
            f"SELECT {', '.join(STATE_COLUMNS)} FROM states WHERE session_id = ? ORDER BY received, rowid",
            (session_id,),
        )
        df["paused"] = df["paused"].astype(bool)
        for f in SHARED_FEATURES:
            df[f] = df[f].astype(float)
        return df

    def segments(self, session_id: str):
        return self._frame(
            'SELECT segment_id, title, start, "end" FROM segments WHERE session_id = ? ORDER BY start',
            (session_id,),
        ).astype({"start": float, "end": float})

    def history(self, session_id: str, every: float = 1.0) -> dict[str, Any]:
        """A session so far, binned by hub receive time: what a teacher page opened late needs for its chart.

        ``students``: each student's latest (t, engagement, state) per ``every`` seconds, paused ones left out;
        ``class``: per bin, the mean engagement of the students who published in it, at the bin's latest receive
        time (as the live page samples the class mean "as of now"); ``segments``: all of them.
        """
        every = float(every)
        if not every > 0:
            raise ValueError("every must be a positive number of seconds")
        rows = self._query(self._HISTORY_SQL, (every, session_id))
        students: dict[str, list] = {}
        bins: dict[int, list] = {}  # bin -> [latest receive time, engagements]
        for student_id, b, engagement, state, received in rows:
            students.setdefault(student_id, []).append([received, engagement, state])
            entry = bins.setdefault(b, [received, []])
            entry[0] = max(entry[0], received)
            entry[1].append(engagement)
        segments = self._query(
            'SELECT segment_id, title, start, "end" FROM segments WHERE session_id = ? ORDER BY start', (session_id,)
        )
        return {
            "session_id": session_id,
            "every": every,
            "class": [[t, sum(v) / len(v)] for t, v in bins.values()],
            "students": students,
            "segments": [dict(zip(("segment_id", "title", "start", "end"), seg)) for seg in segments],
        }

    def commands(self, session_id: str):
        df = self._frame(
            "SELECT session_id, class_id, received, command, args FROM commands WHERE session_id = ? "
            "ORDER BY received, rowid",
            (session_id,),
        )
        df["args"] = [json.loads(a) for a in df["args"]]
        return df

    def students(self, session_id: str):
        """Students who published in this session: student_id, name, hidden."""
        df = self._frame(_STUDENTS_SQL, (session_id,))
        df["hidden"] = df["hidden"].astype(bool)
        return df

    def export_session(self, session_id: str, path: str | Path, format: str = "csv") -> Path:
        """Write a session's states (csv, parquet) or everything about it (json) to ``path``."""
        if format not in _FORMATS:
            raise ValueError(f"format must be one of {', '.join(_FORMATS)}")
        if self.session_class(session_id) is None:
            raise KeyError(f"no session {session_id!r}: list them with Store.sessions()")
        path = Path(path)
        states = self.states(session_id)
        if format == "csv":
            safe_frame(states).to_csv(path, index=False)
        elif format == "parquet":
            states.to_parquet(path, index=False)
        else:
            path.write_text(self.session_json(session_id))
        return path

    def session_json(self, session_id: str) -> str:
        """Everything about a session as one JSON document (see :meth:`iter_session_json`)."""
        return "".join(self.iter_session_json(session_id))

    def state_counts(self, session_id: str, t0: float, bin_s: float, clock_fix: dict[str, float]):
        """The session's unpaused states per (student_id, bin, segment, state) from ``t0`` in ``bin_s`` bins:
        columns ``student_id, bin, segment, state, t`` (the first), ``n``, ``engagement_sum``."""
        shift, shift_params = _shift(clock_fix)
        frame = self._read_frame(self._COUNTS_SQL.format(shift=shift),
                                 (*shift_params, t0, bin_s, *shift_params, session_id))
        frame = frame.rename(columns={"bin_": "bin", "segment_": "segment"})
        frame["segment"] = frame["segment"].where(frame["segment"] != "", None)
        return frame

    def first_state_time(self, session_id: str, clock_fix: dict[str, float]) -> float | None:
        """The session's first capture time (wrong clocks fixed), None without states."""
        shift, shift_params = _shift(clock_fix)
        with self._reader() as db:
            (t,) = db.execute(f"SELECT MIN(t{shift}) FROM states WHERE session_id = ?",
                              (*shift_params, session_id)).fetchone()
        return None if t is None else float(t)

    def clock_sample(self, session_id: str, most: int):
        """At most about ``most`` of the session's states (every n-th by seq): ``student_id`` and ``offset``
        (received - t), to tell wrong clocks from network delay."""
        with self._reader() as db:
            (n,) = db.execute("SELECT COUNT(*) FROM states WHERE session_id = ?", (session_id,)).fetchone()
        frame = self._read_frame(self._SAMPLE_SQL, (session_id, max(1, n // most)))
        return frame.rename(columns={"clock_offset": "offset"})

    def _read_frame(self, sql: str, params: tuple):
        import pandas as pd

        with self._reader() as db:
            cur = db.execute(sql, params)
            return pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of its own in one read transaction, for a long read that must not hold up
        the other readers and must see one consistent snapshot."""
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA query_only = 1")
            db.execute("BEGIN")
            yield db
        finally:
            db.close()

    def iter_session_json(self, session_id: str, rows_per_chunk: int = 2000) -> Iterator[str]:
        """``{"session", "segments", "students", "commands", "states"}`` of a session, in pieces of about
        ``rows_per_chunk`` states, for a response that streams.

        SQLite writes each state's JSON itself (``json_object``, while the GIL is released), so a long session
        costs the calling process little more than joining strings: a thread serving an export leaves the
        event loop alone. One read transaction, so the pieces are one consistent snapshot. The generator may
        be resumed from different threads (one at a time), as an executor does.
        """
        with self._reader() as db:
            session = db.execute(
                "SELECT session_id, class_id, title, started, ended FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            if session is None:
                raise KeyError(f"no session {session_id!r}")
            segments = db.execute(
                'SELECT segment_id, title, start, "end" FROM segments WHERE session_id = ? ORDER BY start',
                (session_id,),
            ).fetchall()
            students = db.execute(_STUDENTS_SQL, (session_id,)).fetchall()
            commands = db.execute(
                "SELECT session_id, class_id, received, command, args FROM commands WHERE session_id = ? "
                "ORDER BY received, rowid",
                (session_id,),
            ).fetchall()
            checkins = db.execute(
                "SELECT checkin_id, kind, question, options, asked, closes, closed, segment, research FROM checkins "
                "WHERE session_id = ? ORDER BY asked", (session_id,)).fetchall()
            answers = db.execute(
                "SELECT checkin_id, student_id, choice, received, research FROM answers WHERE session_id = ? "
                "ORDER BY received", (session_id,)).fetchall()
            head = {
                "checkins": [dict(zip(("checkin_id", "kind", "question", "options", "asked", "closes", "closed",
                                       "segment", "research"), (*r[:3], json.loads(r[3]), *r[4:8], bool(r[8]))))
                             for r in checkins],
                "answers": [dict(zip(("checkin_id", "student_id", "option", "received", "research"),
                                     (*r[:4], bool(r[4])))) for r in answers],
                "session": dict(zip(("session_id", "class_id", "title", "started", "ended"), session)),
                "segments": [dict(zip(("segment_id", "title", "start", "end"), r)) for r in segments],
                "students": [{"student_id": r[0], "name": r[1], "hidden": bool(r[2])} for r in students],
                "commands": [dict(zip(("session_id", "class_id", "received", "command"), r[:4]),
                                  args=json.loads(r[4])) for r in commands],
            }
            yield json.dumps(head)[:-1] + ', "states": ['
            cursor = db.execute(self._STATES_JSON_SQL, (session_id,))
            first = True
            while rows := cursor.fetchmany(rows_per_chunk):
                text = ",".join([r[0] for r in rows])
                yield text if first else "," + text
                first = False
            yield "]}"

    def iter_states_csv(self, session_id: str, rows_per_chunk: int = 2000) -> Iterator[str]:
        """The session's states as CSV (the columns of :meth:`states`, as ``DataFrame.to_csv`` writes them), in
        pieces, from a connection and read transaction of its own (see :meth:`iter_session_json`)."""
        with self._reader() as db:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(STATE_COLUMNS)
            cursor = db.execute(_STATES_CSV_SQL, (session_id,))
            while True:
                rows = cursor.fetchmany(rows_per_chunk)
                writer.writerows(map(safe_row, rows))
                yield out.getvalue()
                out.seek(0)
                out.truncate()
                if not rows:
                    return
