"""The hub's message logic without sockets: tokens, parsing, validation, authorisation, rate limits, rooms."""

from __future__ import annotations

import json

import pytest

from smartsession.hub import auth
from smartsession.hub.protocol import ClassRoom, CloseCode, Connection, Hello, Limits, Refusal, Stale
from smartsession.schema import SchemaError, StateMessage, TeacherCommand

SECRET = "s" * 64
WALL = 1.7e9  # the hub's clock in these tests: states carry t=1.7e9


def conn(role="student", class_id="c1", student_id="s1", limits=Limits(), now=0.0):
    return Connection(role, class_id, student_id if role == "student" else None, SECRET, limits, now)


def hello(token):
    return json.dumps({"type": "hello", "v": 1, "token": token})


def state(seq=1, **kw):
    msg = {"type": "state", "v": 1, "class_id": "c1", "student_id": "s1", "seq": seq, "t": 1.7e9,
           "state": "focused", "engagement": 50, "confidence": 0.5}
    msg.update(kw)
    return json.dumps(msg)


def refused(c, data, now=1.0) -> CloseCode:
    with pytest.raises(Refusal) as err:
        c.receive(data, now, WALL)
    assert err.value.reason and len(err.value.reason.encode()) <= 123
    return err.value.code


def authed(role="student", **kw):
    c = conn(role, **kw)
    token = auth.student_token(SECRET, "c1", "s1") if role == "student" else auth.teacher_token(SECRET, "c1")
    assert isinstance(c.receive(hello(token), 0.0, WALL), Hello)
    return c


def test_tokens_round_trip_and_bind_their_claims():
    claims = auth.verify_token(SECRET, auth.student_token(SECRET, "c1", "s1", name="Ada"))
    assert (claims.role, claims.class_id, claims.student_id, claims.name) == ("student", "c1", "s1", "Ada")
    assert auth.verify_token(SECRET, auth.teacher_token(SECRET, "c1")).role == "teacher"


@pytest.mark.parametrize(
    "token, words",
    [
        (auth.teacher_token("other-secret", "c1"), "signature"),
        (auth.teacher_token(SECRET, "c1", ttl=-1), "expired"),
        ("not-a-token", "malformed"),
        (None, "malformed"),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(token, words):
    with pytest.raises(auth.AuthError, match=words):
        auth.verify_token(SECRET, token)


def test_a_tampered_payload_fails_the_signature():
    token = auth.student_token(SECRET, "c1", "s1")
    payload, sig = token.split(".")
    forged = auth._b64(auth._unb64(payload).replace(b'"s1"', b'"s2"')) + "." + sig
    with pytest.raises(auth.AuthError, match="signature"):
        auth.verify_token(SECRET, forged)


def test_join_codes_are_per_class_and_per_secret():
    code = auth.join_code(SECRET, "c1")
    auth.check_join_code(SECRET, "c1", code.upper())
    for class_id, secret in (("c2", SECRET), ("c1", "other")):
        with pytest.raises(auth.AuthError, match="join code"):
            auth.check_join_code(secret, class_id, code)


def test_secret_and_admin_token_files_are_private(tmp_path):
    secret = auth.load_secret(tmp_path)
    assert auth.load_secret(tmp_path) == secret
    admin = auth.load_admin_token(tmp_path, secret)
    assert auth.verify_token(secret, admin).role == "admin"
    for name in ("secret", "admin_token"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    # A secret given on the command line gets its own admin token.
    assert auth.verify_token("given", auth.load_admin_token(tmp_path, "given")).role == "admin"


@pytest.mark.parametrize(
    "role, token, code",
    [
        ("student", auth.teacher_token(SECRET, "c1"), CloseCode.FORBIDDEN),  # teacher token, student endpoint
        ("teacher", auth.student_token(SECRET, "c1", "s1"), CloseCode.FORBIDDEN),  # student as teacher
        ("student", auth.student_token(SECRET, "c1", "s2"), CloseCode.FORBIDDEN),  # another student's path
        ("student", auth.student_token(SECRET, "c2", "s1"), CloseCode.FORBIDDEN),  # another class
        ("teacher", auth.teacher_token(SECRET, "c2"), CloseCode.FORBIDDEN),  # teacher of another class
        ("teacher", auth.teacher_token("other", "c1"), CloseCode.AUTH_FAILED),  # other server's secret
        ("student", auth.student_token(SECRET, "c1", "s1", ttl=-5), CloseCode.AUTH_FAILED),  # expired
    ],
)
def test_hello_authorises_role_class_and_student(role, token, code):
    assert refused(conn(role), hello(token)) == code


def test_nothing_before_hello_and_only_one_hello():
    assert refused(conn(), state()) == CloseCode.PROTOCOL
    c = authed()
    assert refused(c, hello(auth.student_token(SECRET, "c1", "s1"))) == CloseCode.PROTOCOL


@pytest.mark.parametrize(
    "data, code",
    [
        ("{nope", CloseCode.BAD_JSON),
        (b"\x00\x01", CloseCode.BAD_JSON),
        ("[1, 2]", CloseCode.BAD_MESSAGE),
        (json.dumps({"type": "selfie"}), CloseCode.UNKNOWN_TYPE),
        (state(engagement=101), CloseCode.BAD_MESSAGE),
        (state(engagement="high"), CloseCode.BAD_MESSAGE),
        (state(state="sleepy"), CloseCode.BAD_MESSAGE),
        (state(seq=-1), CloseCode.BAD_MESSAGE),
        (state(features={"landmarks": 1.0}), CloseCode.BAD_MESSAGE),
        (state(image="aGk="), CloseCode.BAD_MESSAGE),
        (state(student_id="s2"), CloseCode.FORBIDDEN),
        (state(class_id="c2"), CloseCode.FORBIDDEN),
        (json.dumps({"type": "command", "v": 1, "command": "end_session"}), CloseCode.FORBIDDEN),
        ("x" * 5000, CloseCode.TOO_BIG),
    ],
)
def test_bad_student_input_is_refused_with_its_code(data, code):
    assert refused(authed(), data) == code


def test_replayed_and_out_of_order_seq_are_dropped_not_fatal():
    c = authed()
    assert isinstance(c.receive(state(5), 1.0, WALL), StateMessage)
    assert c.receive(state(5), 1.1, WALL) == Stale(5, 5)
    assert c.receive(state(3), 1.2, WALL) == Stale(3, 5)
    assert c.receive(state(6), 1.3, WALL).seq == 6


def test_a_flood_is_cut_off_by_the_token_bucket():
    c = authed(limits=Limits(rate=10, burst=5))
    for seq in range(5):
        c.receive(state(seq + 1), 1.0, WALL)
    assert refused(c, state(99), 1.0) == CloseCode.RATE_LIMITED
    c = authed(limits=Limits(rate=10, burst=5))
    for seq in range(50):  # 10 Hz sustained is fine
        c.receive(state(seq + 1), 1.0 + seq * 0.1, WALL)


def test_teacher_commands_are_validated():
    t = authed("teacher")
    cmd = t.receive(json.dumps({"type": "command", "v": 1, "command": "start_segment", "title": " Intro ", "id": 3}),
                    1, WALL)
    assert (cmd.command, cmd.title, cmd.id) == ("start_segment", "Intro", 3)
    assert refused(t, state()) == CloseCode.FORBIDDEN
    for bad in ({"command": "start_segment"}, {"command": "reboot"}, {"command": "set_emotions", "emotions": "no"},
                {"command": "rename_student", "student_id": "s1", "name": ""}):
        with pytest.raises(SchemaError):
            TeacherCommand.from_dict({"type": "command", "v": 1, **bad})


def test_room_routes_states_commands_and_snapshots():
    ids = iter(["A", "B"])
    room = ClassRoom("c1", "Physics")
    assert room.ensure_session(lambda: next(ids))["session_id"] == "A"
    assert room.ensure_session(lambda: "never") is None
    assert room.connect("s1", "Ada", 10.0)["presence"] == "connected"
    msg = StateMessage.from_dict(json.loads(state(1, paused=True)))
    event = room.state_event(msg, 11.0)
    assert event["received"] == 11.0 and room.students["s1"].presence == "paused"
    [seg] = room.command(TeacherCommand("start_segment", title="Waves"), 12.0, lambda: next(ids))
    assert seg["segment"]["segment_id"] == "seg1" and seg["session_id"] == "A"
    room.command(TeacherCommand("rename_student", student_id="s1", name="Ada L."), 13.0, None)
    with pytest.raises(KeyError):
        room.command(TeacherCommand("hide_student", student_id="nobody", hidden=True), 13.0, None)
    room.presence_event("s1", "disconnected", 14.0)
    snap = room.snapshot().to_dict()
    assert snap["segment"]["title"] == "Waves"
    assert snap["students"][0] | {"state": None} == {
        "student_id": "s1", "name": "Ada L.", "hidden": False, "presence": "disconnected", "last_seen": 14.0,
        "state": None,
    }
    [new] = room.command(TeacherCommand("start_session"), 15.0, lambda: next(ids))
    assert (new["session_id"], new["segment"]) == ("B", None)
    # Another hub folding the same events ends up with the same room.
    mirror = ClassRoom("c1")
    for e in (room.status_event(), {"type": "presence", "student_id": "s1", "presence": "connected",
                                    "last_seen": 1.0, "name": "Ada L."}, event):
        mirror.apply(e)
    assert mirror.students["s1"].presence == "paused" and mirror.session_id == "B"

