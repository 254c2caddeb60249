"""What ``smartsession serve`` lets an anonymous browser reach: two pages, their kernels' widget traffic, the hub.

Voila serves a directory with a notebook tree, a contents API and every notebook in it; serve routes only what it
lists (an allow-list: its own handlers, the hub's, and the few of Voila's in ``seams.jupyter.VOILA_ROUTES``), so a
route Voila adds or renames is never reachable. Only the two dashboards render, the teacher page needs its token,
and kernel channels carry widget (comm) traffic but never code. docs/SERVE.md lists what is reachable and why.
"""

from __future__ import annotations

import html
import logging
import re

import tornado.web
from voila.request_info_handler import RequestInfoSocketHandler
from voila.static_file_handler import TemplateStaticFileHandler
from voila.tornado.handler import TornadoVoilaHandler

from smartsession.hub.auth import AuthError, check_join_code, peek_claims, seat_token, verify_token
from smartsession.hub.server import reason_of
from smartsession.schema import is_ident
from smartsession.serve import linkcookie
from smartsession.serve.admission import Refused, page_ticket
from smartsession.serve.pool import next_kernel

STUDENT_PAGE = "student.ipynb"
TEACHER_PAGE = "teacher.ipynb"
PAGES = (STUDENT_PAGE, TEACHER_PAGE)

#: Kernel messages a page may send over ``/api/kernels/{id}/channels``: widgets (comm) and the handshake.
#: ``execute_request``, ``inspect_request``, ``complete_request``, ``history_request``, ``debug_request``... are
#: dropped: the page's code ran when it rendered, and nothing a browser sends may run more.
#: ``shutdown_request`` stays because it only ends the kernel of the page that sends it, as closing the tab does.
KERNEL_MESSAGES = (
    "comm_open",
    "comm_close",
    "comm_msg",
    "comm_info_request",
    "kernel_info_request",
    "shutdown_request",
)

FONT_AWESOME_CSS = "smartsession/static/font-awesome/css/font-awesome.min.css"

_SECRET_PARAMS = re.compile(r"(?i)\b(token|join|seat)=[^&\s\"'<>]+")
_CDN_STYLESHEET = re.compile(
    r"""<link\b[^>]*\bhref=["']https?://[^"']*(?:fontawesome|font-awesome)[^"']*["'][^>]*>\s*""", re.I
)

_CDN_DIAGRAMS = re.compile(r"<script type=\"module\">(?:(?!</script>).)*?\.jp-Mermaid(?:(?!</script>).)*</script>", re.S)


def redact(text: str) -> str:
    """Hide the values of ``token=``, ``join=`` and ``seat=`` so that logs never carry a working link."""
    return _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}=[redacted]", text)


class RedactingFilter(logging.Filter):
    """Logging filter that redacts page tokens in any record (tornado logs request URIs on errors)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


access_log = logging.getLogger("tornado.access")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log line, with page tokens redacted."""
    status = handler.get_status()
    log = access_log.info if status < 400 else access_log.warning if status < 500 else access_log.error
    request = handler.request
    log(
        "%d %s %s (%s) %.2fms",
        status,
        request.method,
        redact(request.uri or ""),
        request.remote_ip,
        1000.0 * request.request_time(),
    )


def offline_html(snippet: str, base_url: str) -> str:
    """Make a page snippet name no outside host (classrooms may be offline, and pages should not leak visits).

    The icon stylesheet points at the copy served here; nbconvert's diagram (mermaid) loader, which imports
    from a CDN and is not configurable, is dropped: our pages hold no diagrams.
    """
    local = f'<link rel="stylesheet" href="{base_url}{FONT_AWESOME_CSS}" type="text/css" />\n'
    found = False

    def swap(match: re.Match) -> str:
        nonlocal found
        first, found = not found, True
        return local if first else ""

    return _CDN_DIAGRAMS.sub("", _CDN_STYLESHEET.sub(swap, snippet))


def message_page(title: str, text: str) -> str:
    """A small self-contained HTML page (no external resources) for refusals and the landing page."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}"
        "h1{font-size:1.4em}code{background:#f2f2f2;padding:0 .2em}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1><p>{text}</p></main></body></html>"
    )


def with_pool_status(snippet: str, base_url: str) -> str:
    """Add the student pool's progress note to the teacher page (at its end, so the page renders first)."""
    script = (
        f'<script src="{html.escape(base_url)}smartsession/static/pool-status.js" '
        f'data-health="{html.escape(base_url)}smartsession/health"></script>\n'
    )
    return snippet.replace("</body>", script + "</body>", 1)


class PageRefused(Exception):
    """A dashboard request without the link that grants it; ``str(err)`` says what to do."""


def check_page_access(secret: str, page: str, arguments: dict[str, str]) -> None:
    """Decide, before anything of a class renders, whether ``arguments`` (the query) open ``page``.

    The teacher page needs a teacher token for the class in ``class`` (or the admin token); the student page
    needs the class's join code (or a student token of that class). Raises :class:`PageRefused`.
    """
    class_id, token = arguments.get("class"), arguments.get("token")
    if page == TEACHER_PAGE:
        if not token:
            raise PageRefused(
                "This page needs the teacher link printed by <code>smartsession serve</code> "
                "(it ends in <code>?class=…&amp;token=…</code>). Ask whoever runs the server for it."
            )
        try:
            claims = verify_token(secret, token)
        except AuthError as err:
            raise PageRefused(f"{html.escape(str(err))}.") from None
        if claims.role == "admin" or (claims.role == "teacher" and claims.class_id == class_id):
            return
        raise PageRefused(
            "This teacher link is for another class: open the link printed for this class by "
            "<code>smartsession serve</code> or <code>smartsession class create</code>."
        )
    if page == STUDENT_PAGE:
        if token:
            try:
                claims = verify_token(secret, token)
            except AuthError as err:
                raise PageRefused(f"{html.escape(str(err))}, or open the join link your teacher shared.") from None
            if claims.role == "student" and claims.class_id == class_id:
                return
            raise PageRefused("This link is for another class: open the join link your teacher shared.")
        try:
            check_join_code(secret, class_id, arguments.get("join"))
        except AuthError:
            raise PageRefused(
                "Open the join link your teacher shared (it ends in <code>?class=…&amp;join=…</code>); "
                "this one is incomplete or for another class."
            ) from None
        return
    raise PageRefused("No such page.")


class MessagePageMixin:
    """Error pages that are plain and offline instead of Voila's (which load icons from a CDN)."""

    def write_error(self, status_code: int, **kwargs) -> None:
        reason = reason_of(status_code, kwargs.get("exc_info", (None, None))[1])
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(message_page(f"{status_code} {reason}", html.escape(reason)))


class DashboardHandler(MessagePageMixin, TornadoVoilaHandler):
    """Renders ``student.ipynb`` and ``teacher.ipynb`` only, each after checking the link's class and token."""

    def initialize(self, secret: str, current_teacher=None, **kwargs):
        self.secret = secret
        # async (Claims) -> bool: whether a teacher token survived its class's rotations (Hub.teacher_token_current)
        self.current_teacher = current_teacher
        super().initialize(**kwargs)

    @tornado.web.authenticated
    async def get(self, path=None):
        if path not in PAGES:
            raise tornado.web.HTTPError(404, reason="Not Found")
        self.page = path
        arguments = {name: self.get_query_argument(name, "") for name in ("class", "token", "join")}
        from_cookie = self._secrets_from_cookies(path, arguments)
        try:
            check_page_access(self.secret, path, arguments)
        except PageRefused as refused:
            self.set_status(403)
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(message_page("This link does not open this page", str(refused)))
            return
        if path == TEACHER_PAGE and self.current_teacher is not None \
                and not await self.current_teacher(verify_token(self.secret, arguments["token"])):
            self.clear_cookie(linkcookie.cookie_name(path, "token", arguments["class"]), path=self.request.path)
            self.set_status(403)
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(message_page("This teacher link was replaced",
                                     "Open the new teacher link (<code>smartsession class rotate-token</code> "
                                     "prints it)."))
            return
        self._keep_secrets(path, arguments, from_cookie)
        if path == STUDENT_PAGE:
            students, who = self.kernel_manager.students, self.request.remote_ip
        else:
            students, who = self.kernel_manager.teachers, arguments["token"]
        class_id = arguments["class"]
        # Only an id names a cookie (the admin token opens a teacher page with any ``class``).
        seat_cookie = linkcookie.cookie_name(path, "seat", class_id) if is_ident(class_id) else None
        try:
            reclaimed = students.reclaim(self.get_cookie(seat_cookie, ""), who, class_id) if seat_cookie else None
            ticket = reclaimed[0] if reclaimed else students.admit(who, class_id)
        except Refused as refused:
            self.set_status(refused.status)
            self.set_header("Retry-After", str(refused.retry_after))
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(message_page(refused.title, refused.text))
            return
        # A session cookie: the place lasts as long as the page's kernel, and a reload presents it (admission.py).
        if seat_cookie:
            self.set_cookie(seat_cookie, ticket.seat, path=self.request.path, httponly=True, samesite="Strict",
                            secure=self.request.protocol == "https")
        if reclaimed:
            await self._end_replaced(reclaimed[1])
        if path == STUDENT_PAGE and seat_cookie:
            # For the kernel alone (the browser's address never holds it): the student this seat keeps.
            self.request.query = linkcookie.with_secrets(
                self.request.query, {"seat": seat_token(self.secret, class_id, ticket.student_id)})
        if path == STUDENT_PAGE:
            # After admission: a flood of refused requests must not hold pool refills back.
            self.kernel_manager.note_demand()
        reset = page_ticket.set(ticket)
        try:
            await self._render(path)
        finally:
            page_ticket.reset(reset)
            students.served(ticket)

    async def _end_replaced(self, kernel_id: str) -> None:
        """Shut down the kernel of the page this reload replaces, before its own starts: at once, it holds
        nothing to save (its states are in the hub)."""
        self.log.info("Closing kernel %s: its page was reloaded", kernel_id)
        try:
            await self.kernel_manager.shutdown_kernel(kernel_id, now=True)
        except (KeyError, tornado.web.HTTPError):
            pass  # its page closed it meanwhile

    def _secrets_from_cookies(self, path: str, arguments: dict[str, str]) -> dict[str, str]:
        """Fill the link's secrets the address no longer shows from this page's cookies (linkcookie.py)."""
        found = {}
        if not is_ident(arguments["class"]):
            return found
        for param in linkcookie.SECRET_PARAMS:
            if not arguments[param]:
                value = self.get_cookie(linkcookie.cookie_name(path, param, arguments["class"]), "")
                if value:
                    arguments[param] = found[param] = value
        return found

    def _keep_secrets(self, path: str, arguments: dict[str, str], from_cookie: dict[str, str]) -> None:
        """Secrets that came in the address go into cookies, and the address bar loses them (see _render);
        secrets that came from cookies go into the query string the page's kernel reads."""
        self.clean_address = False
        for param in linkcookie.SECRET_PARAMS:
            value = arguments[param]
            if not value or param in from_cookie:
                continue
            try:
                expires = peek_claims(value).expires if param == "token" else None
            except AuthError:
                expires = None
            self.set_cookie(linkcookie.cookie_name(path, param, arguments["class"]), value, path=self.request.path,
                            max_age=linkcookie.cookie_age(expires), httponly=True, samesite="Strict",
                            secure=self.request.protocol == "https")
            self.clean_address = True
        if from_cookie:
            self.request.query = linkcookie.with_secrets(self.request.query, from_cookie)

    async def _render(self, path: str) -> None:
        # Sets the _xsrf cookie that the page echoes when its tab closes (Voila's beforeunload beacon to
        # /voila/api/shutdown); without it that request is refused and the kernel outlives its page.
        self.xsrf_token
        cleaner = linkcookie.address_cleaner(self.request.path, self.request.query) if self.clean_address else ""
        async for snippet in self.get_generator(path=path):
            if cleaner and "<head>" in snippet:
                snippet, cleaner = snippet.replace("<head>", "<head>\n" + cleaner, 1), ""
            snippet = offline_html(snippet, self.base_url)
            if path == TEACHER_PAGE:
                snippet = with_pool_status(snippet, self.base_url)
            self.write(snippet)
            self.flush()

    def should_use_rendered_notebook(self, notebook_data, pool_size, template_name, theme, request_args):
        # Voila would wait for a pool kernel that has not even started (222 s once, here); a cold one is quicker.
        kernel_id = next_kernel(self.kernel_manager, self.page)
        use_pool = kernel_id is not None and super().should_use_rendered_notebook(
            notebook_data, pool_size, template_name, theme, request_args
        )
        ticket = page_ticket.get()
        if use_pool and ticket is not None:
            # Voila takes exactly this kernel next, with no await in between: the page's kernel is known here.
            ticket.kernel_id = kernel_id
        return use_pool


class LandingHandler(MessagePageMixin, tornado.web.RequestHandler):
    """The server root: says where the pages are without listing anything."""

    def get(self):
        self.finish(
            message_page(
                "SmartSession",
                "Students: open the join link your teacher shared. Teachers: open the teacher link printed "
                "by <code>smartsession serve</code>.",
            )
        )


class LogoutHandler(MessagePageMixin, tornado.web.RequestHandler):
    """``/logout``: pages here open with their links, there is no session to end; back to the root.

    Jupyter's own handler renders a template that needs a static path standalone Voila lacks (a 500).
    """

    def get(self):
        self.redirect(self.settings.get("base_url", "/"))


class TemplateAssetsHandler(TemplateStaticFileHandler):
    """Voila's template assets, with a 404 instead of a 500 for paths that are not ``<template>/static/<file>``."""

    @classmethod
    def get_absolute_path(cls, root, path):
        try:
            return super().get_absolute_path(root, path)
        except (ValueError, AssertionError):
            raise tornado.web.HTTPError(404, reason="Not Found") from None


class LocalRequestInfoHandler(RequestInfoSocketHandler):
    """Voila's channel that hands a preheated kernel its page request (query string included): kernels only.

    Kernels run on this machine, so only its own addresses may connect; anyone else could read a join link.
    """

    def initialize(self, local_addresses: frozenset[str]):
        self.local_addresses = local_addresses

    async def get(self, *args, **kwargs):
        if self.request.remote_ip not in self.local_addresses:
            self.set_status(403)
            self.finish("kernels only")
            return
        await super().get(*args, **kwargs)
