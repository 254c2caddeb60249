"""The hub's message logic without sockets: tokens, parsing, validation, authorisation, rate limits, rooms."""

from __future__ import annotations

import json

import pytest

from smartsession.hub import auth
from smartsession.hub.config import HubConfig
from smartsession.hub.protocol import (
    CloseCode,
    Connection,
    ConnectionLimiter,
    Hello,
    HttpRefusal,
    JoinGate,
    JoinLimits,
    JsonError,
    Limits,
    QuietLog,
    RateBuckets,
    Refusal,
    Stale,
    TeacherSeats,
    json_depth,
    parse_json,
)
from smartsession.hub.room import ClassRoom
from smartsession.schema import SchemaError, StateMessage, TeacherCommand

SECRET = "s" * 64
WALL = 1.7e9  # the hub's clock in these tests: states carry t=1.7e9


def conn(role="student", class_id="c1", student_id="s1", limits=Limits.of(HubConfig()), now=0.0):
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
    c = authed(limits=Limits.of(HubConfig(rate=10, burst=5)))
    for seq in range(5):
        c.receive(state(seq + 1), 1.0, WALL)
    assert refused(c, state(99), 1.0) == CloseCode.RATE_LIMITED
    c = authed(limits=Limits.of(HubConfig(rate=10, burst=5)))
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
    # A running segment goes out as version 1 sent it: no "end" key.
    assert snap["segment"] == {"segment_id": "seg1", "title": "Waves", "start": 12.0}
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



# --- issue 10: what hostile clients tried, refused without a network ---


@pytest.mark.parametrize("text", ["[" * 2000, "{\"a\":" * 2000, '[{"a":' * 600, "[" * 17 + "]" * 17])
def test_deep_json_is_refused_before_decoding(text):
    with pytest.raises(JsonError, match="nested deeper than 16"):
        parse_json(text, 16)
    for c in (conn(), authed()):  # before hello and after: a clean refusal, never a RecursionError
        assert refused(c, text[:4000]) == CloseCode.BAD_JSON


def test_json_depth_ignores_brackets_in_strings_and_is_linear():
    assert json_depth('{"title": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "x": [1, [2]]}') == 3
    assert json_depth(r'["a\"[[[[", "\\", [[]]]') == 3
    assert parse_json('{"t": "' + "[" * 100 + '"}', 4) == {"t": "[" * 100}
    import time as _time

    hostile = '"' + '\\"' * 2000  # an unterminated string full of escaped quotes: no quadratic scan
    started = _time.perf_counter()
    json_depth(hostile * 1)
    assert _time.perf_counter() - started < 0.05


def test_duplicate_keys_are_refused():
    with pytest.raises(JsonError, match="duplicate key 'engagement'"):
        parse_json('{"engagement": "<img src=x>", "engagement": 50}')
    dup = state(1)[:-1] + ', "features": {"yaw": 1.0}, "features": {"yaw": 2.0}}'
    assert refused(authed(), dup) == CloseCode.BAD_JSON


@pytest.mark.parametrize("t, words", [(0, "days behind"), (9.9e10, "days ahead"), (WALL + 7200, "hours ahead"),
                                      (WALL - 3700, "minutes behind")])
def test_capture_time_far_from_the_hub_clock_is_refused(t, words):
    c = authed()
    with pytest.raises(Refusal, match=words) as err:
        c.receive(state(1, t=t), 1.0, WALL)
    assert err.value.code == CloseCode.BAD_MESSAGE
    assert isinstance(c.receive(state(2, t=WALL - 3500), 1.0, WALL), StateMessage)  # within the window


@pytest.mark.parametrize("v", [True, 1.0, "1"])
def test_version_must_be_the_integer_1(v):
    assert refused(authed(), state(1, v=v)) == CloseCode.BAD_MESSAGE
    assert refused(conn(), json.dumps({"type": "hello", "v": v, "token": auth.student_token(SECRET, "c1", "s1")})) \
        == CloseCode.BAD_MESSAGE
    with pytest.raises(SchemaError, match="v must be 1"):
        TeacherCommand.from_dict({"type": "command", "v": v, "command": "end_session"})


def test_only_segments_of_this_session_are_known():
    room = ClassRoom("c1")
    room.ensure_session(lambda: "S")
    assert room.known_segment(None) and not room.known_segment("seg1")
    room.command(TeacherCommand("start_segment", title="A"), 1.0, None)
    room.command(TeacherCommand("start_segment", title="B"), 2.0, None)
    assert room.known_segment("seg1") and room.known_segment("seg2")
    for bad in ("seg3", "seg0", "segx", "nope", "seg-1"):
        assert not room.known_segment(bad), bad


def test_tokens_decode_canonically():
    token = auth.student_token(SECRET, "c1", "s1")
    payload, sig = token.split(".")
    for forged in (payload + "." + sig[:5] + "!" + sig[5:], payload + "." + sig + "=", payload + "." + sig + "\n",
                   payload + "." + sig[:-1] + chr(ord(sig[-1]) + 1 if sig[-1] not in "z_-9" else 65)):
        with pytest.raises(auth.AuthError):
            auth.verify_token(SECRET, forged)
    assert auth.verify_token(SECRET, token).student_id == "s1"


def test_a_students_budget_survives_reconnecting():
    buckets = RateBuckets()
    limits = Limits.of(HubConfig(rate=10, burst=5))
    sent = 0
    for k in range(20):  # twenty connections of the same student, one after another at the same instant
        c = conn(limits=limits)
        c.buckets = buckets
        c.receive(hello(auth.student_token(SECRET, "c1", "s1")), 1.0, WALL)
        try:
            for seq in range(10):
                c.receive(state(k * 10 + seq + 1), 1.0, WALL)
                sent += 1
        except Refusal as exc:
            assert exc.code == CloseCode.RATE_LIMITED and "this student" in exc.reason
    assert sent == 5
    buckets.sweep(100.0)  # refilled: forgotten
    assert len(buckets) == 0


def test_a_class_has_a_budget_of_its_own():
    buckets = RateBuckets()
    limits = Limits.of(HubConfig(rate=100, burst=100, class_rate=10, class_burst=12))
    taken = 0
    with pytest.raises(Refusal, match="this class sends more than 10 messages/s"):
        for s in range(1, 5):
            c = Connection("student", "c1", f"s{s}", SECRET, limits, 0.0, buckets)
            c.receive(hello(auth.student_token(SECRET, "c1", f"s{s}")), 0.0, WALL)
            for seq in range(5):
                c.receive(state(seq + 1, student_id=f"s{s}"), 0.0, WALL)
                taken += 1
    assert taken == 12


def test_join_gate_limits_addresses_classes_and_class_size():
    gate = JoinGate(JoinLimits.of(HubConfig(join_rate_per_address=1, join_burst_per_address=3, join_rate_per_class=1,
                                    join_burst_per_class=4, max_students_per_class=6)))
    for _ in range(3):
        gate.attempt("10.0.0.1", 0.0)
    with pytest.raises(HttpRefusal) as err:
        gate.attempt("10.0.0.1", 0.0)
    assert err.value.status == 429 and 0 < err.value.retry_after <= 1
    for _ in range(10):
        gate.attempt("127.0.0.1", 0.0, trusted=True)  # this machine's kernels
    for size in range(4):
        gate.admit("c1", size, 0.0)
    with pytest.raises(HttpRefusal, match="too many students joining") as err:
        gate.admit("c1", 4, 0.0)
    assert err.value.status == 429
    gate.admit("c1", 4, 1.0)  # a second later, one more
    with pytest.raises(HttpRefusal, match="class is full") as err:
        gate.admit("c1", 6, 100.0)
    assert err.value.status == 503


def test_teacher_seats_replace_per_token_and_cap_per_class():
    seats = TeacherSeats(per_token=2, per_class=3)
    assert seats.admit("c1", "A", "a1") == [] and seats.admit("c1", "A", "a2") == []
    assert seats.admit("c1", "A", "a3") == ["a1"]  # the token's oldest page makes room
    assert seats.admit("c1", "B", "b1") == []
    with pytest.raises(Refusal) as err:
        seats.admit("c1", "C", "c1")
    assert err.value.code == CloseCode.TOO_MANY
    seats.leave("c1", "b1")
    assert seats.admit("c1", "C", "c1") == [] and seats.count("c1") == 3
    assert seats.admit("c2", "C", "x") == []  # another class has its own seats


def test_connection_limiter_per_address_total_and_transfer():
    lim = ConnectionLimiter(max_total=4, per_address=2, trusted={"127.0.0.1"})
    assert lim.acquire("a", "10.0.0.1") is None and lim.acquire("b", "10.0.0.1") is None
    assert "from your address" in lim.acquire("c", "10.0.0.1")
    assert lim.acquire("k1", "127.0.0.1") is None and lim.acquire("k2", "127.0.0.1") is None
    assert "open connections" in lim.acquire("k3", "127.0.0.1")
    assert lim.transfer("a", "ws-a") and not lim.transfer("nobody", "x")
    lim.release("a")  # already handed over: nothing
    assert lim.total == 4
    lim.release("ws-a")
    lim.release("ws-a")  # twice is harmless
    assert lim.total == 3 and lim.by_address["10.0.0.1"] == 1


def test_quiet_log_caps_lines_and_counts_the_rest():
    lines, clock = [], [0.0]
    quiet = QuietLog(lambda msg, *a: lines.append(msg % a), per_period=3, period=10, clock=lambda: clock[0])
    for i in range(50):
        quiet("refused %d", i)
    assert lines == ["refused 0", "refused 1", "refused 2"]
    clock[0] = 11.0
    quiet("refused %d", 99)
    assert lines[3:] == ["... 47 more like these in the last 10 s were not logged", "refused 99"]


@pytest.mark.parametrize("good", ["c1", "a.b-c_D9", "x" * 64])
@pytest.mark.parametrize("bad", ["", "x" * 65, "caf\u00e9", "\u0661\u0662", "a b", "a/b", "c1\n"])
def test_one_id_pattern_for_messages_routes_and_join_links(good, bad):
    """Messages, the hub's URL routes and the student page's join link accept exactly the same ids."""
    import re

    from smartsession.hub.core import Hub
    from smartsession.hub.server import hub_handlers
    from smartsession.pages.student import JoinRequest

    route = next(r for r, *_ in hub_handlers(Hub()) if r.endswith("/sessions"))
    for value, ok in ((good, True), (bad, False)):
        as_state = json.loads(state(1))
        as_state["class_id"] = value
        try:
            StateMessage.from_dict(as_state)
            in_message = True
        except SchemaError:
            in_message = False
        in_route = re.fullmatch(route, f"/smartsession/api/classes/{value}/sessions") is not None
        in_link = JoinRequest(value, "CODE1234").problem() == ""
        assert (in_message, in_route, in_link) == (ok, ok, ok), value
