"""Which student page requests get a kernel: a cap in total and per address, pages that never connect, and reloads.

Each student page costs a kernel of 80-300 MB (the model; MediaPipe too in server mode, see sizing.py), so a loop
of GETs on the join link would exhaust the machine. Pure bookkeeping, no I/O: the server asks
:meth:`StudentKernels.reclaim` (a reload presenting its page's seat) or :meth:`StudentKernels.admit` before
rendering, and shuts down what :meth:`StudentKernels.unconnected` and :meth:`StudentKernels.idle` name.
"""

from __future__ import annotations

import hmac
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Iterable

from smartsession.hub.auth import new_student_id


class Refused(Exception):
    """A student page that gets no kernel now; ``status``, ``title`` and ``text`` make the page that says so."""

    def __init__(self, status: int, title: str, text: str, retry_after: int | None = None) -> None:
        super().__init__(text)
        self.status, self.title, self.text = status, title, text
        self.retry_after = RETRY_AFTER if retry_after is None else retry_after


#: Seconds a refused page asks the browser (and the student) to wait: about one cull of unconnected pages.
RETRY_AFTER = 60


def class_full() -> Refused:
    return Refused(
        503,
        "This class is full, try again in a minute",
        "Every place on this server is taken right now. Pages that were opened but never used are closed "
        "within a minute, so try again in a minute. If this keeps happening, tell your teacher: the server "
        "may need a higher <code>--max-students</code>.",
    )


def too_many_from_address(limit: int) -> Refused:
    pages = "one class page" if limit == 1 else f"{limit} class pages"
    return Refused(
        429,
        "Too many pages open from this device, try again in a minute",
        f"This server serves {pages} at once to one device, and this one has that many open. Close the "
        "other SmartSession tabs, then try again in a minute.",
    )


def still_opening() -> Refused:
    return Refused(
        429,
        "This page is still opening, wait a few seconds",
        "This page is still opening in another tab or from an earlier reload. Wait a few seconds, then reload.",
        retry_after=5,
    )


#: The ticket of the page request being rendered in this task, so the kernel manager can tell which request a
#: cold kernel starts for (Voila starts it deep inside its handler, without saying so).
page_ticket: ContextVar["Ticket | None"] = ContextVar("page_ticket", default=None)


@dataclass
class Ticket:
    """One admitted page request: reserved before its kernel exists, bound to it once Voila picked one."""

    address: str
    class_id: str = ""
    #: The secret a reload of this page presents (its HttpOnly seat cookie) to take this place over.
    seat: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: The student this page joins the hub as (through a seat token its kernel alone gets): the same for every
    #: reload that takes the place over, so a reload is the same student to the hub, never a new one.
    student_id: str = field(default_factory=new_student_id)
    kernel_id: str | None = None
    served_at: float | None = None  # when its page was sent; None while rendering
    connected: bool = False  # its page opened the kernel's websocket at least once
    engaged: bool = False  # its page sent widget traffic the kernel handled (the widget handshake, frames)


class StudentKernels:
    """Counts student kernels per address and in total, and finds those whose page never connected.

    ``max_total`` and ``max_per_address`` of 0 mean no limit. A page counts from :meth:`admit` (so a burst
    of requests cannot all slip past the check while kernels start) until its kernel is gone.
    """

    def __init__(
        self,
        max_total: int,
        max_per_address: int,
        connect_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.connect_timeout = connect_timeout
        self._clock = clock
        self._tickets: list[Ticket] = []

    def __len__(self) -> int:
        return len(self._tickets)

    def from_address(self, address: str) -> int:
        return sum(1 for t in self._tickets if t.address == address)

    def admit(self, address: str, class_id: str = "") -> Ticket:
        """Reserve a place for a page from ``address``, or raise :class:`Refused`."""
        if self.max_total and len(self._tickets) >= self.max_total:
            raise self.full()
        if self.max_per_address and self.from_address(address) >= self.max_per_address:
            raise self.too_many(address)
        ticket = Ticket(address=address, class_id=class_id)
        self._tickets.append(ticket)
        return ticket

    def reclaim(self, seat: str, address: str, class_id: str) -> tuple[Ticket, str] | None:
        """A reload's place: the page of ``class_id`` that handed out ``seat`` gives its place to this request,
        which gets a new seat and keeps the student id; returns the new ticket and the old page's kernel (to shut
        down now). None when no page holds that seat (a forged or stale cookie, a culled kernel): the request is
        admitted as any other.

        The seat is a secret only the browser that loaded the page holds (HttpOnly cookie), so nobody frees or
        takes over another's place; the count never grows (the old ticket goes as the new one comes), and the
        address's own cap still holds when the reload comes from elsewhere. A seat whose page is still being
        rendered is not handed over: its kernel is not known yet, so it could not be shut down.
        """
        if not seat:
            return None
        presented = seat.encode("utf-8", "replace")  # compare_digest takes only ASCII str; a cookie may be anything
        old = next((t for t in self._tickets
                    if hmac.compare_digest(t.seat.encode(), presented) and t.class_id == class_id), None)
        if old is None:
            return None
        if old.kernel_id is None or old.served_at is None:
            raise still_opening()
        if self.max_per_address and address != old.address and self.from_address(address) >= self.max_per_address:
            raise self.too_many(address)
        self._tickets.remove(old)
        ticket = Ticket(address=address, class_id=class_id, student_id=old.student_id)
        self._tickets.append(ticket)
        return ticket, old.kernel_id

    def full(self) -> Refused:
        return class_full()

    def too_many(self, address: str) -> Refused:
        return too_many_from_address(self.max_per_address)

    def served(self, ticket: Ticket) -> None:
        """The page was sent: from now on its kernel has ``connect_timeout`` seconds to see the page connect."""
        if ticket.kernel_id is None:
            self.release(ticket)  # rendering failed before a kernel was picked: nothing holds the place
        else:
            ticket.served_at = self._clock()

    def release(self, ticket: Ticket) -> None:
        if ticket in self._tickets:
            self._tickets.remove(ticket)

    def has_kernel(self, kernel_id: str) -> bool:
        """Whether an admitted page got this kernel."""
        return any(t.kernel_id == kernel_id for t in self._tickets)

    def connected(self, kernel_id: str) -> None:
        for ticket in self._tickets:
            if ticket.kernel_id == kernel_id:
                ticket.connected = True

    def engaged(self, kernel_id: str) -> None:
        for ticket in self._tickets:
            if ticket.kernel_id == kernel_id:
                ticket.engaged = True

    def idle(self, seat_timeout: float) -> list[str]:
        """Kernels whose page was sent more than ``seat_timeout`` seconds ago and never sent widget traffic: a bare
        websocket holding a seat, or a page that broke before its widgets came up (a reload takes its place over,
        :meth:`reclaim`)."""
        now = self._clock()
        return [
            t.kernel_id
            for t in self._tickets
            if t.kernel_id and not t.engaged and t.served_at is not None and now - t.served_at > seat_timeout
        ]

    def unconnected(self) -> list[str]:
        """Kernels whose page was sent more than ``connect_timeout`` seconds ago and never connected."""
        now = self._clock()
        return [
            t.kernel_id
            for t in self._tickets
            if t.kernel_id and not t.connected and t.served_at is not None and now - t.served_at > self.connect_timeout
        ]

    def keep_only(self, running: Iterable[str]) -> None:
        """Forget the kernels that are gone (shut down, culled, closed tab); pages still rendering stay."""
        alive = set(running)
        self._tickets = [t for t in self._tickets if t.kernel_id is None or t.kernel_id in alive]

    def counts(self) -> dict[str, int]:
        return {"running": len(self._tickets), "max": self.max_total}


class TeacherKernels(StudentKernels):
    """Teacher page kernels (~155 MB each), counted in total and per teacher link instead of per address: a loop
    of GETs with one teacher token, no browser needed, would otherwise start a kernel each. The key is the link's
    token; a page that never connects is shut down like a student's."""

    def full(self) -> Refused:
        return Refused(503, "Too many teacher pages are open, try again in a minute",
                       f"This server keeps {self.max_total} teacher pages open at once. Close teacher tabs "
                       "you no longer use; pages opened but never used close within a minute.")

    def too_many(self, token: str) -> Refused:
        return Refused(429, "This teacher link has too many pages open, try again in a minute",
                       f"One teacher link opens {self.max_per_address} pages at once. Close the other tabs "
                       "of this class's teacher page, then try again in a minute.")
