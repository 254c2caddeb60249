"""The PostgreSQL store against a real server: migrations, shared credentials, exactly-once states, and an
outage (the server stopped and started again) during which nothing is acknowledged and after which all is stored.
"""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest

from smartsession.hub import auth
from smartsession.hub.pgstore import MIGRATIONS, PostgresStore, migrate, shared_credentials
from testkit.processes import PostgresServer


def state(seq, student="s1"):
    return {"class_id": "c1", "student_id": student, "seq": seq, "t": 100.0 + seq, "received": 100.5 + seq,
            "state": "focused", "engagement": 50.0, "confidence": 0.5, "features": {"yaw": 1.0}, "segment": None,
            "paused": False}


def test_migrations_are_versioned_and_refuse_a_newer_schema(pg_url):
    with PostgresStore(pg_url) as store:
        assert store.schema_version == len(MIGRATIONS)
    with psycopg.connect(pg_url) as conn:
        assert migrate(conn) == len(MIGRATIONS)  # a second node: nothing to apply
        assert conn.execute("SELECT COUNT(*) FROM smartsession_schema").fetchone()[0] == len(MIGRATIONS)
        conn.execute("INSERT INTO smartsession_schema VALUES (%s, 0)", (len(MIGRATIONS) + 1,))
        conn.commit()
        with pytest.raises(RuntimeError, match="upgrade smartsession"):
            migrate(conn)


def test_every_node_gets_the_same_secret_and_admin_token(pg_url, tmp_path):
    with PostgresStore(pg_url) as a, PostgresStore(pg_url) as b:
        (tmp_path / "a").mkdir()
        secret, admin = shared_credentials(a, "", tmp_path / "a")  # the first node to start sets them
        assert shared_credentials(b, "", tmp_path) == (secret, admin)
        assert auth.verify_token(secret, admin).role == "admin"
        assert (tmp_path / "admin_token").read_text().strip() == admin
        assert (tmp_path / "admin_token").stat().st_mode & 0o077 == 0
        with pytest.raises(RuntimeError, match="differs from the secret in the shared store"):
            shared_credentials(b, "another-secret", tmp_path)


def test_a_state_resent_to_another_node_is_stored_once(pg_url):
    acked = []
    with PostgresStore(pg_url, on_acks=acked.extend) as a, PostgresStore(pg_url, on_acks=acked.extend) as b:
        for seq in (1, 2, 3):
            a.add_state("S1", state(seq), ack=("a", seq))
        a.flush()
        for seq in (2, 3, 4):  # the node died before its acks went out: the student resends to node b
            b.add_state("S1", state(seq), ack=("b", seq))
        b.flush()
        assert list(a.states("S1").seq) == [1, 2, 3, 4]
        assert sorted(acked) == [("a", 1), ("a", 2), ("a", 3), ("b", 2), ("b", 3), ("b", 4)]


def test_an_outage_holds_states_unacknowledged_then_stores_them_all(postgres, caplog):
    caplog.set_level(logging.INFO, logger="smartsession.hub")
    with PostgresServer(postgres.bindir) as server:
        acked = []
        committed = threading.Event()
        with PostgresStore(server.url, batch_seconds=0.05, on_acks=acked.extend) as store:
            store.add_state("S1", state(1), ack=1)
            store.flush()
            server.stop()
            for seq in range(2, 50):
                store.add_state("S1", state(seq), ack=seq)
            store.add_state("S1", state(50), on_commit=committed.set, ack=50)
            assert not committed.wait(2) and acked == [1]  # nothing acknowledged while the database is down
            server.start()
            assert committed.wait(60)
            store.flush()
            assert acked == list(range(1, 51))
            assert list(store.states("S1").seq) == list(range(1, 51))
    messages = [r.getMessage() for r in caplog.records]
    assert any("PostgreSQL unreachable" in m and "retrying" in m for m in messages), messages
    assert any("PostgreSQL is back" in m for m in messages), messages


def test_a_full_buffer_refuses_new_states_unacknowledged(postgres, caplog):
    with PostgresServer(postgres.bindir) as server:
        acked = []
        with PostgresStore(server.url, on_acks=acked.extend, max_buffered=10) as store:
            server.stop()
            for seq in range(1, 31):
                store.add_state("S1", state(seq), ack=seq)
            assert any("store buffer full" in r.getMessage() for r in caplog.records)
            server.start()
            store.flush(60)
            assert acked == list(range(1, 11))
            assert list(store.states("S1").seq) == list(range(1, 11))


def test_an_unreachable_database_is_a_clear_error_without_the_password():
    from testkit.processes import free_port

    with pytest.raises(RuntimeError, match="cannot reach PostgreSQL at postgresql://someone@127.0.0.1") as err:
        PostgresStore(f"postgresql://someone:hunter2@127.0.0.1:{free_port()}/smartsession")
    assert "hunter2" not in str(err.value) and "fix --store" in str(err.value)


def test_nodes_opening_a_class_session_at_once_share_one(pg_url):
    with PostgresStore(pg_url) as a, PostgresStore(pg_url) as b:
        for c in range(10):
            start = threading.Barrier(2)
            got = {}

            def node(store, name):
                start.wait()
                got[name] = store.open_class_session(f"c{c}", f"{name}-{c}", 100.0)

            threads = [threading.Thread(target=node, args=(store, name)) for store, name in ((a, "a"), (b, "b"))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert got["a"] == got["b"] in (f"a-{c}", f"b-{c}")
        b.end_session("c0", 200.0)  # queued, committed before the next one opens: a later arrival opens a new one
        assert b.open_class_session("c0", "b-new", 300.0) == "b-new"
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sessions WHERE ended IS NULL").fetchone()[0] == 10


def test_a_session_a_teacher_ended_on_another_node_is_not_handed_out_again(pg_url):
    with PostgresStore(pg_url, batch_seconds=5) as teachers_node, PostgresStore(pg_url) as students_node:
        assert students_node.open_class_session("c1", "X", 100.0) == "X"
        teachers_node.end_session("c1", 200.0, "X")  # queued on the teacher's node, not committed yet
        # The students' node heard that X ended and opens a new session for the next state.
        assert students_node.open_class_session("c1", "Y", 201.0, ended="X") == "Y"
        teachers_node.flush()  # the teacher's node commits its end: of X, not of the new session
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT session_id, ended FROM sessions ORDER BY session_id").fetchall()
    assert rows == [("X", 201.0), ("Y", None)]


def test_the_migration_keeps_one_open_session_per_class(pg_url):
    with psycopg.connect(pg_url) as conn:
        with conn.transaction():  # a database at schema 1, where two nodes split a class's session
            conn.execute("CREATE TABLE smartsession_schema (version INTEGER NOT NULL, applied DOUBLE PRECISION NOT NULL)")
            conn.execute(MIGRATIONS[0])
            conn.execute("INSERT INTO smartsession_schema VALUES (1, 0)")
            conn.execute("INSERT INTO sessions (session_id, class_id, started) VALUES "
                         "('x1', 'c1', 10), ('x2', 'c1', 11), ('x3', 'c1', 12), ('y1', 'c2', 10)")
        assert migrate(conn) == len(MIGRATIONS)
        rows = conn.execute("SELECT session_id, ended FROM sessions ORDER BY session_id").fetchall()
    assert rows == [("x1", 11.0), ("x2", 12.0), ("x3", None), ("y1", None)]


def _lesson(store) -> None:
    """The same ten-minute lesson into any store: six students, two segments, one laptop an hour off."""
    store.add_class("c1", "Algebra")
    store.start_session("c1", "L1", 1000.0)
    store.start_segment("L1", "g1", "Intro", 1000.0)
    store.start_segment("L1", "g2", "Proof", 1300.0)
    states = ("focused", "confused", "distracted", "focused", "happy", "away")
    for i in range(6):
        store.add_student("c1", f"s{i}", f"Student {i}")
        skew = 3600.0 if i == 5 else 0.0  # capture times an hour ahead of the hub's clock
        for seq in range(600):
            t = 1000.0 + seq
            store.add_state("L1", {
                "class_id": "c1", "student_id": f"s{i}", "seq": seq, "t": t + skew, "received": t + 0.2,
                "state": states[(i + seq // 90) % len(states)], "engagement": float((seq * (i + 3)) % 100),
                "confidence": 0.8, "features": {}, "segment": "g1" if t < 1300 else "g2",
                "paused": seq % 97 == 0,
            })
    store.flush()


def test_the_report_reads_a_postgresql_store_as_it_reads_sqlite(pg_url, tmp_path):
    """`smartsession report --store postgresql://...` writes what `--data-dir` writes for the same lesson."""
    import subprocess
    import sys

    from smartsession.hub.store import Store

    with PostgresStore(pg_url) as pg, Store(tmp_path / "data") as sqlite:
        _lesson(pg)
        _lesson(sqlite)
    out = {}
    for name, where in (("postgres", ["--store", pg_url]), ("sqlite", ["--data-dir", tmp_path / "data"])):
        out[name] = tmp_path / name
        run = subprocess.run([sys.executable, "-m", "smartsession", "report", "L1", *map(str, where), "--out",
                              str(out[name]), "--format", "html,csv"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert "6 students, 10 min of data, 2 segments" in run.stdout, run.stdout
    tables = sorted(p.name for p in out["sqlite"].glob("*.csv"))
    assert tables and tables == sorted(p.name for p in out["postgres"].glob("*.csv"))
    for table in tables:
        assert (out["postgres"] / table).read_text() == (out["sqlite"] / table).read_text(), table


def test_a_hub_runs_on_the_store_it_is_given_sqlite_or_postgresql(pg_url, tmp_path):
    """The hub takes any store of the protocol: nodes sharing PostgreSQL offer one default class, while each
    SQLite hub makes its own."""
    import asyncio

    from smartsession.hub.core import Hub
    from smartsession.hub.store import Store

    async def default_classes(make_store) -> list[str]:
        ids = []
        for node in ("a", "b"):
            (tmp_path / node).mkdir(exist_ok=True)
            store = make_store(node)
            async with Hub(data_dir=str(tmp_path / node), store=store) as hub:
                assert hub.store is store
                ids.append(await asyncio.get_running_loop().run_in_executor(
                    None, lambda: hub.default_class("Physics")["class_id"]))
        return ids

    a, b = asyncio.run(default_classes(lambda node: PostgresStore(pg_url)))
    assert a == b
    a, b = asyncio.run(default_classes(lambda node: Store(tmp_path / node / "own")))
    assert a != b


def test_check_ins_answers_and_plans_are_kept_by_either_store(pg_url, tmp_path):
    from smartsession.hub.store import Store

    asked = {"session_id": "S1", "checkin_id": "ck1", "kind": "mind", "question": "Where was your mind just now?",
             "options": ["on the lesson", "somewhere else"], "asked": 100.0, "closes": 160.0, "segment": "seg1",
             "research": True}
    answer = {"session_id": "S1", "checkin_id": "ck1", "student_id": "s1", "option": 1, "received": 101.0,
              "research": True}
    for store in (PostgresStore(pg_url), Store(tmp_path)):
        with store:
            store.add_checkin("c1", asked)
            store.add_answer("c1", answer)
            store.add_answer("c1", {**answer, "option": 0})  # a second answer (another node's race): ignored
            store.close_checkin("S1", "ck1", 130.0)
            store.save_plan("c1", ["Intro", "<b>Optics</b>"])
            store.flush()
            checkins = store.checkins("S1")
            assert checkins.options.iloc[0] == asked["options"] and checkins.closed.iloc[0] == 130.0
            answers = store.answers("S1")
            assert list(zip(answers.student_id, answers.option)) == [("s1", 1)]
            assert store.plan("c1") == ["Intro", "<b>Optics</b>"] and store.plan("c2") == []


def test_the_lesson_history_reads_the_same_from_postgresql(pg_url):
    from smartsession.lesson.history import summarise

    with PostgresStore(pg_url) as store:
        store.start_session("c1", "S1", 100.0)
        store.start_segment("S1", "seg1", "Optics", 100.0)
        for seq in range(1, 4):
            store.add_state("S1", {**state(seq), "received": 100.0 + 60 * seq, "engagement": 90.0 - 20 * seq})
        store.end_session("c1", 400.0)
        store.flush()
        [lesson] = summarise(store.lesson_rows("c1"))
    assert (lesson["session_id"], lesson["students"], lesson["minutes"]) == ("S1", 1, 5.0)
    assert lesson["drop"]["points"] == 20.0 and lesson["drop"]["segment"] == "Optics"


def test_a_counter_in_the_shared_store_stops_at_its_most_whichever_node_counts(pg_url):
    # Two nodes, eight threads each, counting one key at once (a teacher token minting classes on both).
    with PostgresStore(pg_url) as a, PostgresStore(pg_url) as b:
        counted = []

        def count(store):
            for _ in range(4):
                counted.append(store.count_up("classes_made:c1:1.0", 5))
        threads = [threading.Thread(target=count, args=(store,)) for store in (a, b) * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(n for n in counted if n is not None) == [1, 2, 3, 4, 5]
        assert counted.count(None) == 32 - 5
        assert a.setting("classes_made:c1:1.0") == "5" and b.count_up("classes_made:c1:1.0", 5) is None
