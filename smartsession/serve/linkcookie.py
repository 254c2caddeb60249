"""A page link's secret leaves the address on first load: it moves into a cookie only this page's path gets.

The teacher link carries the teacher token, the join link the class's join code, and an address is copied into
proxy logs, browser history and screenshots. On the first load the page's secrets (``token``, ``join``) are
checked, stored in an HttpOnly, SameSite=Strict cookie (Secure under https) scoped to the page's path, and taken
out of the address bar; a reload finds them in the cookie. The page's kernel still reads them from its request's
query string, which the server fills in from the cookie: Voila hands a kernel ``request.query`` as its
QUERY_STRING (voila/handler.py), so the address the browser shows never needs them.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl, urlencode

SECRET_PARAMS = ("token", "join")
#: What the kernel's query string may hold and the address bar never shows: the link's secrets, and the seat token
#: serve adds for the student page's kernel (lockdown.DashboardHandler).
HIDDEN_PARAMS = (*SECRET_PARAMS, "seat")
#: A cookie never outlives the link's own token; a join code has no expiry, so its cookie lasts a school day.
DEFAULT_AGE = 24 * 3600.0


def cookie_name(page: str, param: str, class_id: str) -> str:
    """``ss-<page>-<param>-<class>``: one per page, secret and class (a teacher may hold several classes)."""
    return f"ss-{page.split('.')[0]}-{param}-{class_id}"


def without_secrets(query: str) -> str:
    """The query string as the address bar should show it."""
    return urlencode([(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in HIDDEN_PARAMS])


def with_secrets(query: str, secrets: dict[str, str]) -> str:
    """The query string the page's kernel reads: the shown one plus the secrets from the cookie."""
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in secrets]
    return urlencode(pairs + sorted(secrets.items()))


def cookie_age(expires: float | None, now: float | None = None) -> int:
    now = time.time() if now is None else now
    return max(0, int(min(expires - now, 90 * 24 * 3600.0))) if expires is not None else int(DEFAULT_AGE)


def address_cleaner(path: str, query: str) -> str:
    """A script for the top of the page: the address bar (and history entry) without the secrets, at once."""
    clean = path + ("?" + without_secrets(query) if without_secrets(query) else "")
    # json.dumps, with </ escaped, keeps any query text inside the script as a string.
    target = json.dumps(clean).replace("</", "<\\/")
    return f"<script>history.replaceState(history.state, '', {target});</script>\n"
