"""Signed tokens and join codes: who may publish as which student, and who may watch which class.

Tokens are ``payload.signature`` (base64url JSON, HMAC-SHA256 with the server secret); no database lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

ROLES = ("admin", "teacher", "student")
#: Longest token accepted. A student token carries the display name (up to 120 characters of any script, as
#: UTF-8, never as \\u escapes: 120 emoji are 480 bytes) and stays under it (test_auth checks the worst case).
MAX_TOKEN = 1024
TEACHER_TTL = 90 * 24 * 3600.0  # a term
STUDENT_TTL = 24 * 3600.0  # a school day, with margin


class AuthError(Exception):
    """A token or join code that does not grant what was asked. ``str(err)`` is safe to show the client."""


@dataclass(frozen=True)
class Claims:
    role: str
    class_id: str | None = None
    student_id: str | None = None
    expires: float | None = None
    name: str | None = None  # the display name a student joined with
    issued: float | None = None  # unix time; a teacher token issued before its class's rotation is refused


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _unb64(text: str) -> bytes:
    """Decode unpadded base64url, canonically: any other character, padding or a non-zero trailing bit is refused
    (``urlsafe_b64decode`` silently drops stray characters, so two spellings would carry one token)."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not canonical base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _mac(secret: str, purpose: str, payload: str) -> bytes:
    return hmac.new(secret.encode(), f"{purpose}\n{payload}".encode(), hashlib.sha256).digest()


def issue_token(
    secret: str,
    role: str,
    class_id: str | None = None,
    student_id: str | None = None,
    ttl: float | None = None,
    name: str | None = None,
) -> str:
    """Sign a token for ``role``; ``ttl`` in seconds (``None``: never expires, used for the admin token)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    body = {"r": role, "c": class_id, "s": student_id, "n": secrets.token_hex(4), "i": round(time.time(), 3)}
    if name:
        body["m"] = name
    if ttl is not None:
        body["e"] = round(time.time() + ttl, 3)
    token = _sign(secret, "token", body)
    if len(token) > MAX_TOKEN:
        raise ValueError(f"a token of {len(token)} characters (at most {MAX_TOKEN}): shorten the name")
    return token


def _sign(secret: str, purpose: str, body: dict) -> str:
    payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{payload}.{_b64(_mac(secret, purpose, payload))}"


def teacher_token(secret: str, class_id: str, ttl: float = TEACHER_TTL) -> str:
    return issue_token(secret, "teacher", class_id=class_id, ttl=ttl)


def student_token(
    secret: str, class_id: str, student_id: str, ttl: float = STUDENT_TTL, name: str | None = None
) -> str:
    return issue_token(secret, "student", class_id=class_id, student_id=student_id, ttl=ttl, name=name)


def verify_token(secret: str, token: object, now: float | None = None, purpose: str = "token") -> Claims:
    """Check signature and expiry; raise :class:`AuthError` with a reason fit for the client."""
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > MAX_TOKEN:
        raise AuthError("malformed token: use the token the server issued")
    payload, signature = token.split(".")
    try:
        given = _unb64(signature)
    except ValueError:
        raise AuthError("malformed token: use the token the server issued") from None
    if not hmac.compare_digest(given, _mac(secret, purpose, payload)):
        raise AuthError("invalid token signature: get a new token from this server")
    claims = _claims(payload)  # a payload we did not write is refused there (signed: only with a leaked secret)
    if claims.expires is not None and (time.time() if now is None else now) > claims.expires:
        raise AuthError("token expired: join the class again or ask the teacher for a new link")
    return claims


def seat_token(secret: str, class_id: str, student_id: str, ttl: float = STUDENT_TTL) -> str:
    """The student id a student page's seat keeps across reloads, signed for the hub's join (``rejoin``).

    ``smartsession serve`` gives it to the page's kernel only (its request's query string, which the browser never
    sees) and the same id again to the kernel of each reload presenting the page's seat cookie, so a reload joins
    as the same student. Signed for another purpose than tokens: it never opens a hub connection by itself.
    """
    return _sign(secret, "seat", {"r": "student", "c": class_id, "s": student_id, "n": secrets.token_hex(4),
                                  "e": round(time.time() + ttl, 3)})


def seat_student(secret: str, seat: object, class_id: object) -> str:
    """The student id a seat token from :func:`seat_token` names for ``class_id``, or :class:`AuthError`."""
    claims = verify_token(secret, seat, purpose="seat")
    if claims.role != "student" or claims.class_id != class_id or not isinstance(claims.student_id, str):
        raise AuthError("this page's seat is for another class: open the join link your teacher shared")
    return claims.student_id


def peek_claims(token: object) -> Claims:
    """A token's claims WITHOUT checking its signature or expiry: only for a page to explain a plainly wrong
    token before using it. Whatever it says, the hub verifies every token (``verify_token``)."""
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > MAX_TOKEN:
        raise AuthError("malformed token: use the token the server issued")
    return _claims(token.split(".")[0])


def _claims(payload: str) -> Claims:
    try:
        body = json.loads(_unb64(payload))
    except ValueError:
        raise AuthError("malformed token: use the token the server issued") from None
    if not isinstance(body, dict) or body.get("r") not in ROLES:
        raise AuthError("malformed token: use the token the server issued")
    expires, issued = body.get("e"), body.get("i")
    return Claims(role=body["r"], class_id=body.get("c"), student_id=body.get("s"),
                  expires=expires if isinstance(expires, (int, float)) else None, name=body.get("m"),
                  issued=issued if isinstance(issued, (int, float)) else None)


def join_code(secret: str, class_id: str) -> str:
    """The short code students type or follow to join ``class_id`` (derived, so nothing to store)."""
    return base64.b32encode(_mac(secret, "join", class_id)[:10]).decode().lower()


def check_join_code(secret: str, class_id: object, code: object) -> None:
    if not isinstance(class_id, str) or not isinstance(code, str):
        raise AuthError("class_id and join_code must be strings")
    if not hmac.compare_digest(code.strip().lower().encode(), join_code(secret, class_id).encode()):
        raise AuthError("wrong join code for this class: ask the teacher for the join link")


def new_class_id() -> str:
    return "c" + secrets.token_hex(4)


def new_student_id() -> str:
    # Server-chosen so a student can never claim another student's id.
    return "s" + secrets.token_hex(5)


def _private_file(path: Path, make) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def load_secret(data_dir: str | os.PathLike) -> str:
    """The server secret in ``<data_dir>/secret``, created (mode 0600) on first use."""
    return _private_file(Path(data_dir) / "secret", lambda: secrets.token_hex(32))


def load_admin_token(data_dir: str | os.PathLike, secret: str) -> str:
    """The admin token in ``<data_dir>/admin_token`` (0600): whoever can read it may create classes."""
    path = Path(data_dir) / "admin_token"
    token = _private_file(path, lambda: issue_token(secret, "admin"))
    try:
        if verify_token(secret, token).role == "admin":
            return token
    except AuthError:
        pass
    # The secret changed (given on the command line): issue a token for the new one.
    token = issue_token(secret, "admin")
    path.write_text(token + "\n")
    return token
