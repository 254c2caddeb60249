"""The preheated kernel pool for the student page: refills that wait for a quiet moment, warm a few at a time, and
its status.

Voila's pool refills right after each page takes a kernel; when a whole class arrives together those refills
compete with the pages being served (30 refills pushed page time from 0.2 s to 9.3 s here), so refills wait here.
A quiet second is no promise that the class has all arrived: 20 refills warming together held both cores for
half a minute while the last pages of the class waited for their kernels to answer (they timed out after 30 s),
so only a few pool kernels warm at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import zmq
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from traitlets import Dict, Float, Unicode, default

from smartsession.hub.httpserver import raise_fd_limit
from smartsession.serve.admission import StudentKernels, page_ticket
from smartsession.serve.channels import message_types
from smartsession.seams.jupyter import keep_activity_stream, pool_entries, starts_a_pool_kernel, waiting_for_its_page
from smartsession.seams.kernel import KERNEL_ARGUMENTS


class QuietRefillKernelManager(AsyncMappingKernelManager):
    """Kernel manager whose pool refills start only once page requests have been quiet for ``refill_quiet`` s.

    Voila builds its pooling ``VoilaKernelManager`` on top of this class, so pool kernels reach
    :meth:`start_kernel` here; cold kernels (the teacher page, an exhausted pool) start at once.
    ``students`` (set by the app) learns which kernel each admitted page got and when a page connects.
    """

    students: StudentKernels | None = None
    teachers: StudentKernels | None = None  # teacher pages (admission.TeacherKernels), bound to kernels alike
    #: Kernels this machine holds (0: no limit); pool refills wait while that many run (pages, pool, teacher).
    kernel_budget: int = 0
    #: Pool kernels that warm at once (0: no limit; the app sets the cores). More would only share the same
    #: cores, each ready later. Once pages have been asked for, one core is kept for them.
    warm_slots: int = 0
    #: A pool kernel that has not reached its page request by then no longer holds its slot (a stuck notebook).
    warm_timeout: float = 300.0

    refill_quiet = Float(
        5.0,
        config=True,
        help="Seconds without page requests before the kernel pool refills (0: refill at once).",
    )

    kernel_env = Dict(
        value_trait=Unicode(),
        config=True,
        help="Environment every kernel gets on top of the server's (serve sets where the hub is, the analysis "
        "mode and what Voila's page handshake needs); the server's own environment is left alone.",
    )

    @default("cull_idle_timeout")
    def _default_cull_idle_timeout(self) -> int:
        # A closed tab leaves its kernel behind (MediaPipe and all); cull it once unconnected and idle.
        # Connected kernels are never culled (cull_connected stays False), pool kernels neither (Voila).
        return 300

    @default("cull_interval")
    def _default_cull_interval(self) -> int:
        return 60

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # libzmq holds at most 1023 sockets in a context unless told otherwise, and the server keeps about eight
        # for each kernel (its manager's channels and those of its page's connection): near 125 students every
        # further kernel or page failed with "Too many open files" (a ZMQError), whatever the open-file limit.
        # A socket takes a descriptor or two, so the bound follows the open-file limit. Set on the shared
        # context before any kernel made a socket in it, which is when libzmq reads it.
        self.context.set(zmq.MAX_SOCKETS, max(1023, min(self.context.get(zmq.SOCKET_LIMIT), raise_fd_limit() // 2)))
        self._last_demand = float("-inf")
        self._warming: set[object] = set()  # the warm slots taken, each until its kernel is warm
        self._watches: set[asyncio.Task] = set()

    def note_demand(self) -> None:
        """Called for each page request so pool refills keep out of the way of an arriving class."""
        self._last_demand = time.monotonic()

    async def start_kernel(self, *args, **kwargs):
        # Every kernel here runs a page (python3, ipykernel): see seams/kernel.py.
        kwargs["extra_arguments"] = [*kwargs.get("extra_arguments", ()), *KERNEL_ARGUMENTS]
        kwargs["env"] = {**(kwargs.get("env") or os.environ), **self.kernel_env}
        if starts_a_pool_kernel(kwargs):
            while (wait := self._last_demand + self.refill_quiet - time.monotonic()) > 0 or self._full() or (
                self._no_warm_slot()
            ):
                await asyncio.sleep(wait if wait > 0 else 0.5)
            slot = object()
            self._warming.add(slot)  # taken before the first await, so two refills cannot both take the last one
            try:
                kernel_id = await super().start_kernel(*args, **kwargs)
            except BaseException:
                self._warming.discard(slot)
                raise
            watch = asyncio.get_running_loop().create_task(self._free_slot_once_warm(kernel_id, slot))
            self._watches.add(watch)
            watch.add_done_callback(self._watches.discard)
            return kernel_id
        kernel_id = await super().start_kernel(*args, **kwargs)
        ticket = page_ticket.get()
        if ticket is not None and ticket.kernel_id is None:
            ticket.kernel_id = kernel_id  # a cold kernel for the admitted student page being rendered
        return kernel_id

    def _no_warm_slot(self) -> bool:
        if not self.warm_slots:
            return False
        slots = self.warm_slots if self._last_demand == float("-inf") else max(1, self.warm_slots - 1)
        return len(self._warming) >= slots

    async def _free_slot_once_warm(self, kernel_id: str, slot: object) -> None:
        """Hold a warm slot until the kernel waits for its page request (it ran the preheat cell), a page took it
        or it is gone."""
        deadline = time.monotonic() + self.warm_timeout
        try:
            while time.monotonic() < deadline and kernel_id in self and not self._warm(kernel_id):
                await asyncio.sleep(0.25)
        finally:
            self._warming.discard(slot)

    def _warm(self, kernel_id: str) -> bool:
        if waiting_for_its_page(kernel_id):
            return True
        return self.students is not None and self.students.has_kernel(kernel_id)

    def _full(self) -> bool:
        # A refill beyond memory would push pages' kernels into swap; it starts once a kernel has gone.
        return bool(self.kernel_budget) and len(self) >= self.kernel_budget

    def start_watching_activity(self, kernel_id: str) -> None:
        """Jupyter's activity watch (``last_activity`` for culling, ``execution_state``), reading only the headers.

        Jupyter's own deserializes every message a kernel publishes (signature check, date parsing), and a
        student page's kernel publishes two or three a frame, all of them read once more by the page's websocket
        connection. The messages come from the server's own kernel over a socket in its private directory.
        """
        kernel = self.get_kernel(kernel_id)
        kernel.reason = ""
        kernel.last_activity = datetime.now(timezone.utc)
        stream = kernel.connect_iopub()
        keep_activity_stream(kernel, stream)  # jupyter_server's stop_watching_activity closes it
        track = self.track_message_type

        engaged = False

        def record_activity(msg_list: list) -> None:
            nonlocal engaged
            try:
                msg_type, parent_type, state = activity_of(msg_list)
            except ValueError:
                self.log.warning("kernel %s published a message that is not Jupyter's", kernel_id)
                return
            if not engaged and parent_type == "comm_msg":
                # The kernel handled a widget message from its page: the page is more than a bare websocket.
                engaged = True
                for pages in (self.students, self.teachers):
                    if pages is not None:
                        pages.engaged(kernel_id)
            if track(msg_type) or track(parent_type) or kernel.execution_state == "busy":
                self.last_kernel_activity = kernel.last_activity = datetime.now(timezone.utc)
            if state is not None:
                if track(parent_type):
                    kernel.execution_state = state
                elif kernel.execution_state == "starting" and state != "starting":
                    kernel.execution_state = "idle"

        stream.on_recv(record_activity, copy=True)

    def notify_connect(self, kernel_id: str) -> None:
        super().notify_connect(kernel_id)
        for pages in (self.students, self.teachers):
            if pages is not None:
                pages.connected(kernel_id)


DELIMITER = b"<IDS|MSG>"


def activity_of(msg_list: list[bytes]) -> tuple[str | None, str | None, str | None]:
    """:func:`~smartsession.serve.channels.message_types` of a whole kernel message (identities, delimiter, then
    its parts); ValueError for anything that is not Jupyter's wire format."""
    try:
        at = msg_list.index(DELIMITER)
    except ValueError:
        raise ValueError("not a Jupyter message: no delimiter") from None
    return message_types(msg_list[at + 1:])


@dataclass(frozen=True)
class PoolStatus:
    """How ready the student page's pool is: ``warm`` once every kernel has run the notebook."""

    size: int  # configured
    started: int  # kernels running
    warm_count: int  # kernels that finished the notebook (or wait for their page request)

    @property
    def warm(self) -> bool:
        return self.warm_count >= self.size

    def to_dict(self) -> dict:
        return {**asdict(self), "warm": self.warm}


def pool_status(kernel_manager, notebook: str, size: int) -> PoolStatus:
    """Read Voila's pool of ``notebook``: each entry is a task that resolves once its kernel has started."""
    started = warm = 0
    for entry in pool_entries(kernel_manager, notebook):
        if not entry.done() or entry.cancelled() or entry.exception() is not None:
            continue
        started += 1
        content = entry.result()
        # A notebook that calls voila.utils.wait_for_request() blocks there until a page takes the kernel:
        # it has imported everything it needs, which is what warm means.
        if content["task"].done() or waiting_for_its_page(content["kernel_id"]):
            warm += 1
    return PoolStatus(size=size, started=started, warm_count=warm)


def next_kernel(kernel_manager, notebook: str) -> str | None:
    """The running kernel a page would take next from the pool, or None (then a cold kernel is quicker)."""
    pool = pool_entries(kernel_manager, notebook)
    if pool and pool[0].done() and not pool[0].cancelled() and pool[0].exception() is None:
        return pool[0].result()["kernel_id"]
    return None
