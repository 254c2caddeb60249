"""The student's page: join a class, consent, calibrate, then live feedback while states go to the hub.

``dashboards/student.ipynb`` is two cells over this module: ``StudentPage.preheat()`` then ``page.open(query)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from html import escape
from typing import Any
from urllib.parse import parse_qs

import ipywidgets as w
import numpy as np

from smartsession.pages.announce import Announcer, LiveRegion
from smartsession.pages.checkin_card import RESEARCH_CONSENT, CheckinCard
from smartsession.pages.student_html import (
    announcement,
    consent_html,
    error_html,
    feedback_html,
    muted_html,
    note_html,
    style_html,
    teacher_view_html,
    tip_html,
)
from smartsession.schema import MAX_BATCH_STATES, StateMessage, is_ident
from smartsession.widgets.camera import ANALYSIS_MODES, ERROR_STATUSES, Camera
from smartsession.widgets.overlay import LandmarkOverlay

log = logging.getLogger(__name__)

#: Seconds between state messages to the hub with the per-frame transport (``Camera.batch_seconds == 0``), which
#: sends the latest state only. Batches send every frame's state, one ``states`` message per batch.
PUBLISH_EVERY = 0.2
#: Seconds between overlay redraws: the mesh is decoration, not worth a message per frame.
OVERLAY_EVERY = 0.15
#: Seconds (of capture time) between redraws of the score and its bars while the state and tip stay the same, with
#: the per-frame transport (pictures: every ``Camera.batch_seconds``; batches of faces: FEEDBACK_BATCHED_EVERY).
#: The numbers move every frame, nobody reads them 12 times a second, and every redraw is a widget message the
#: frame's ack queues behind, on the kernel's iopub and in the browser. A new state or tip shows at once.
FEEDBACK_EVERY = 0.25
#: The same for batches of faces (browser analysis). With batches through serve's face pipe, these redraws are
#: most of the Jupyter messages a student costs (~0.6 a second at 3 s): a new state or tip still shows with the
#: batch that brought it, the score and bars of an unchanged one every 5 s.
FEEDBACK_BATCHED_EVERY = 5.0
#: Seconds between redraws of "What your teacher sees" while the state shown stays the same: every message to
#: the hub redrew it (5 a second), each redraw a widget message the kernel sends and the server relays, for a
#: box that names the time to the second. A new state, or a pause, shows at once.
TEACHER_VIEW_EVERY = 1.0
#: The same with batches, where it is one of the few Jupyter messages a student costs a second: the state and a
#: pause still show at once, the time and numbers of an unchanged state every 10 s.
TEACHER_VIEW_BATCHED_EVERY = 10.0
#: Frames per second the page captures, and its own landmarker reads (browser analysis). Each of them is a state
#: the kernel analyses, the hub validates and the store keeps, and the smoothing is time-based: 5 a second read a
#: student's state as well as 12 did (the eye-closure timer counts seconds, the windows are 0.5 and 1 s), at
#: less than half the kernel, hub and store work a student costs, and of the student's own CPU for the face model.
#: With batches through the face pipe the analysis is most of what a student costs the server.
CAMERA_FPS = 5.0
#: Pictures per second a student sends when the class server analyses them (the fallback for browsers that
#: cannot run the face model): each costs the server 20-25 ms of CPU against 0.4 ms for a packed face, and
#: states are smoothed over seconds (benchmarks/capacity.py feeds server-mode students this rate).
PICTURE_FPS = 5.0
#: Length of the neutral-face calibration.
CALIBRATION_SECONDS = 3.0

@dataclass(frozen=True)
class JoinRequest:
    """Class, join code and name from the join link ``?class=ID&join=CODE[&name=NAME]``; ``seat``, the seat token
    ``smartsession serve`` adds for the kernel alone (the browser never sees it), joins a reload as the same
    student."""

    class_id: str = ""
    join_code: str = ""
    name: str = ""
    seat: str = ""

    @classmethod
    def from_query(cls, query: str | None) -> "JoinRequest":
        params = parse_qs((query or "").lstrip("?"))

        def first(key: str) -> str:
            return (params.get(key) or [""])[0].strip()

        return cls(class_id=first("class"), join_code=first("join"), name=first("name")[:120], seat=first("seat"))

    def problem(self) -> str:
        """What is missing or malformed, in words for the student; empty when the request can be tried."""
        if not self.class_id or not self.join_code:
            return "Enter the class and join code from your teacher's link."
        if not is_ident(self.class_id):
            return "That class id does not look right: copy the link from your teacher again."
        if not is_ident(self.join_code):
            return "That join code does not look right: copy the link from your teacher again."
        return ""


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a worker thread's
        return None


class StudentPage:
    """All of the student page: widgets, the frame callback, and the link to the hub.

    Frames (server analysis) or packed faces (browser analysis) arrive on the camera's worker thread, are
    analysed there and dropped; only the resulting observation crosses to the kernel's event loop, the one thread
    that writes widgets, and from there its ``StateMessage`` goes on to the hub. ``analysis`` is the mode to try ("browser" needs ``assets``, the URLs of the browser
    landmarker's files); by default both come from what ``smartsession serve`` sets for its kernels.
    """

    def __init__(self, analyzer: Any, *, hub_url: str | None = None, analysis: str | None = None,
                 assets: dict[str, str] | None = None):
        from smartsession.vision import browser_assets

        self.analyzer = analyzer
        self.hub_url = hub_url  # None: SMARTSESSION_HUB_URL, which `smartsession serve` sets for its kernels
        base = os.environ.get(browser_assets.ENV_BASE_URL)
        self.assets = assets if assets is not None else (browser_assets.asset_urls(base) if base else {})
        self.analysis = analysis or os.environ.get("SMARTSESSION_ANALYSIS") or (
            "browser" if self.assets else "server")
        if self.analysis not in ANALYSIS_MODES:
            raise ValueError(f"analysis must be one of {', '.join(ANALYSIS_MODES)}, got {self.analysis!r} "
                             "(from SMARTSESSION_ANALYSIS or the analysis argument)")
        if self.analysis == "browser" and not self.assets:
            raise ValueError("browser analysis needs the URLs of the landmarker's files (assets=...): "
                             "run the page under `smartsession serve`, or use analysis='server'")
        self.request = JoinRequest()
        self.student_id = ""
        self.segment: str | None = None
        self.paused = False
        self.session_ended = False  # the teacher ended the session: paused until the student resumes
        self.consented = False  # frames are decoded only once the student agreed
        self.last_message: StateMessage | None = None
        self.last_observation: Any = None
        self._last_publish = 0.0
        self._outgoing: list[StateMessage] = []  # states of frames analysed since the last message to the hub
        self._last_overlay = 0.0
        self._feedback_shown: tuple[str, bool] | None = None  # (state, face) on screen; None: other text is
        self._feedback_at = 0.0  # capture time of the frame last drawn in the feedback
        self._teacher_view_shown: tuple[str, bool] | None = None  # (state, paused) of the message drawn there
        self._teacher_view_at = 0.0  # its time
        self._calibrating = False
        self._t0: float | None = None  # capture time of the first frame; the analysis runs on time since then
        # Held while a frame is analysed, so a pause never races a state message out after it.
        self._frame_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publisher: Any = None
        self._hub_task: asyncio.Task | None = None
        self._closed = False
        self._build()

    # --- construction ---

    @classmethod
    def preheat(cls, **kwargs: Any) -> "StudentPage":
        """Load the analysis (the state model; MediaPipe too in server analysis) and build the widgets before any
        student arrives."""
        from smartsession.analysis import Analyzer

        analyzer = Analyzer(mode="stream")
        page = cls(analyzer, **kwargs)
        if page.analysis == "server":
            # The first frame initialises MediaPipe's graph (a few hundred ms); pay that now, not in front of a
            # student. In browser analysis MediaPipe loads only if a browser falls back to sending frames.
            analyzer.process(np.zeros((480, 640, 3), np.uint8))
        return page

    def _build(self) -> None:
        self.title = w.HTML()
        self.notice = w.HTML()
        # Join form, shown when the link lacks the class or the join code.
        # Synced when the field is left, not per keystroke: keystrokes queue behind each other, and a button
        # pressed right after typing (Tab, Enter) would reach the kernel before the text does.
        self.class_input = w.Text(description="Class", placeholder="class id from your teacher", continuous_update=False)
        self.code_input = w.Text(description="Join code", placeholder="join code", continuous_update=False)
        self.join_button = w.Button(description="Continue", button_style="primary")
        self.join_button.on_click(lambda _: self._submit_form())
        self.form = w.VBox([w.HTML("<h3>Join your class</h3>"), self.class_input, self.code_input, self.join_button])
        # Consent.
        self.consent_text = w.HTML(consent_html(emotions=True, mode=self._consent_mode()))
        self.name_input = w.Text(description="Your name", placeholder="as your teacher will see it",
                                 continuous_update=False)
        self.agree_button = w.Button(description="I agree, start my camera", button_style="primary",
                                     layout=w.Layout(width="auto"))
        self.agree_button.on_click(lambda _: self._agree())
        # Unticked by default: answers are used for research only with this agreement (and the teacher's).
        self.research_text = w.HTML(f"<p style='max-width: 640px'><b>Research (optional).</b> "
                                    f"{escape(RESEARCH_CONSENT)}</p>")
        self.research_box = w.Checkbox(value=False, description="I agree to this research use", indent=False,
                                       layout=w.Layout(width="auto"))
        self.consent = w.VBox([self.consent_text, self.research_text, self.research_box, self.name_input,
                               self.agree_button])
        # Live view.
        # The browser's landmarker runs at CAMERA_FPS; pictures for the server go at PICTURE_FPS.
        self.camera = Camera(active=False, accept_frames=False, fps=CAMERA_FPS, picture_fps=PICTURE_FPS,
                             analysis=self.analysis,
                             assets=self.assets)
        self.agree_button.disabled = self._consent_mode() == ""
        self.overlay = LandmarkOverlay(layout=w.Layout(display="none"))
        self.overlay.add_class("ss-overlay-box")
        stack = w.Box([self.camera, self.overlay])
        stack.add_class("ss-stack")
        self.pause_button = w.ToggleButton(description="Pause", tooltip="Stop the camera and the measuring")
        self.pause_button.observe(lambda ch: self.set_paused(ch["new"]), names="value")
        self.calibrate_button = w.Button(description="Calibrate again", tooltip="3 seconds with a relaxed face",
                                         layout=w.Layout(width="auto"))
        self.calibrate_button.on_click(lambda _: self.calibrate())
        self.overlay_toggle = w.Checkbox(description="Show face points", indent=False)
        self.overlay_toggle.observe(self._toggle_overlay, names="value")
        self.calibration = w.HTML()
        self.feedback = w.HTML(note_html("Waiting for the camera..."))
        self.teacher_view = w.HTML(teacher_view_html(None))
        self.connection = w.HTML()
        # Polite and rate-limited: a state is read out once it has held for a moment, not at every frame.
        self.announce = LiveRegion()
        self.announcer = Announcer()
        self.checkin = CheckinCard(self._answer, lambda said: setattr(
            self.announce, "text", self.announcer.say_now(said, time.time())))
        controls = w.VBox([w.HBox([self.pause_button, self.calibrate_button]), self.overlay_toggle])
        left = w.VBox([stack, controls], layout=w.Layout(width="360px"))
        right = w.VBox([self.calibration, self.feedback, self.checkin.box, self.teacher_view, self.connection],
                       layout=w.Layout(flex="1", padding="0 0 0 16px"))
        # On the page from the start, hidden until the student agrees: the camera's browser half loads the face
        # landmarker meanwhile (it only renders when on the page), and the consent says which analysis runs.
        self.live = w.HBox([left, right], layout=w.Layout(display="none"))
        self.body = w.VBox([])
        self.root = w.VBox([w.HTML(style_html()), self.title, self.notice, self.body, self.live, self.announce])
        self.root.add_class("ss-page")
        self.camera.on_frame(self._on_frame)
        self.camera.on_faces(self._on_faces)
        self.camera.observe(self._on_camera_status, names="status")
        self.camera.observe(self._on_mode, names="mode")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    # --- steps ---

    def open(self, query: str | None) -> "StudentPage":
        """Start from the join link's query string (read after the request arrived, see the notebook)."""
        self._loop = asyncio.get_running_loop()  # the kernel runs the notebook's cells on its event loop
        self.request = JoinRequest.from_query(query)
        self.class_input.value, self.code_input.value = self.request.class_id, self.request.join_code
        self.name_input.value = self.request.name
        problem = self.request.problem()
        if problem:
            self._show(self.form, problem if (self.request.class_id or self.request.join_code) else "")
        else:
            self._show(self.consent)
        return self

    def _show(self, step: w.Widget, notice: str = "") -> None:
        self.notice.value = error_html(notice) if notice else ""
        self.body.children = [] if step is self.live else [step]
        self.live.layout.display = None if step is self.live else "none"

    def _submit_form(self) -> None:
        # The seat names this page's class: a class typed in by hand joins without it.
        class_id = self.class_input.value.strip()
        self.request = JoinRequest(class_id, self.code_input.value.strip(), self.name_input.value.strip(),
                                   self.request.seat if class_id == self.request.class_id else "")
        problem = self.request.problem()
        self._show(self.form, problem) if problem else self._show(self.consent)

    def _agree(self) -> None:
        name = " ".join(self.name_input.value.split())
        if not name:
            self._show(self.consent, "Please enter your name (or a nickname) so your teacher knows who you are.")
            return
        mode = self._consent_mode()
        if not mode:
            return  # the button is disabled until the browser says which analysis it runs
        self.request = replace(self.request, name=name[:120])
        self.agree_button.disabled = True
        # Agreed to browser analysis: pictures are refused even from a page that sends them anyway.
        self.camera.accept_pictures = mode == "server"
        self.title.value = muted_html(f"{name} in class {self.request.class_id}")
        self._show(self.live)
        if self._hub_task is None or self._hub_task.done():
            self.connection.value = muted_html("Connecting to your class...", inline=True)
            self._hub_task = self._loop.create_task(self._run_hub())
        self.consented = True
        if mode == "browser":
            # Batches past Jupyter's messaging, when under `smartsession serve` (else, and meanwhile, the comm).
            self.camera.open_pipe(self._loop)
        self._camera_on(True)
        self.calibrate()

    # --- live ---

    def calibrate(self, seconds: float = CALIBRATION_SECONDS) -> None:
        """Learn this student's neutral face over the next ``seconds`` of frames."""
        with self._frame_lock:
            self.analyzer.start_calibration(seconds)
            self._calibrating = True
        self.calibration.value = tip_html(f"Calibrating: look at the screen with a relaxed face for {seconds:.0f} s.")

    def set_paused(self, paused: bool) -> None:
        """Pausing stops the camera and the analysis, and tells the teacher the student paused. While the teacher
        has ended the session there is nothing to resume: the page stays paused and says so."""
        if not paused and self.session_ended:
            self.pause_button.value = True
            self._tell("Your teacher ended the session: nothing is measured until they start a new one.")
            return
        with self._frame_lock:
            self.paused = paused
            self._outgoing = []  # analysed before the pause: the pause is what the teacher sees next
        self.pause_button.value = paused
        self.pause_button.description = "Resume" if paused else "Pause"
        self._camera_on(not paused and self.consented)
        if paused:
            self.overlay.clear()
            self._feedback_shown = None
            self._tell("Paused: nothing is measured or shared. Press Resume to continue.",
                       "Measuring paused. Nothing is measured or shared until you resume.")
            self._publish_paused()

    def _camera_on(self, on: bool) -> None:
        # accept_frames is the kernel's own switch: a page can flip ``active`` (or press Resume) before consent.
        self.camera.accept_frames = on
        self.camera.active = on

    def _toggle_overlay(self, change: dict) -> None:
        self.overlay.layout.display = None if change["new"] else "none"
        if not change["new"]:
            self.overlay.clear()

    def _on_camera_status(self, change: dict) -> None:
        status = change["new"]
        if status in ERROR_STATUSES or status == "hidden":
            # No frames will come: the teacher should see a pause, not a frozen last state.
            if status in ERROR_STATUSES:
                self._feedback_shown = None
                self.feedback.value = error_html(self.camera.message)
                self.announce.text = self.announcer.say_now(self.camera.message, time.time())
                self.calibration.value = ""
            self._publish_paused()

    def _consent_mode(self) -> str:
        """The mode the consent describes: the camera's once the browser has said, else the one asked for unless
        that is browser analysis, which a browser may yet be unable to run."""
        mode = self.camera.mode if hasattr(self, "camera") else ""
        return mode or ("" if self.analysis == "browser" else self.analysis)

    def _on_mode(self, change: dict) -> None:
        """The browser says which analysis it runs. A fall back to pictures after the student agreed to browser
        analysis stops the camera and asks again: they agreed that no picture leaves their device."""
        self.consent_text.value = consent_html(self.analyzer.emotions, self._consent_mode())
        if not self.consented:
            self.agree_button.disabled = self._consent_mode() == ""
        if change["new"] == "server" and change["old"] == "browser" and self.consented:
            self.consented = False
            self._camera_on(False)
            self.agree_button.disabled = False
            self._publish_paused()
            why = self.camera.mode_detail or "the face model stopped working in this browser"
            self._show(self.consent, f"Your face cannot be analysed in this browser: {why}. To go on, agree to "
                                     "send pictures to the class server instead (below), or close this page.")

    # --- live: the camera's worker thread analyses, the kernel's event loop writes the widgets ---

    def _on_frame(self, frame: np.ndarray, t: float) -> None:
        """Camera worker thread: analyse the frame and hand the result to the kernel's loop. The frame dies here."""
        with self._frame_lock:
            if not self.paused and not self._closed:
                if self._t0 is None:
                    self._t0 = t
                obs = self.analyzer.process(frame, t=t - self._t0, source="camera")
                obs.wall_time = t  # capture time on the student's clock: what the teacher's latency is measured from
                self._analysed([obs], batch=False)

    def _on_faces(self, faces: list, times: list[float]) -> None:
        """Camera worker thread, browser analysis: a batch of faces the browser landmarked, analysed in one call;
        one feedback redraw and one message to the hub for the batch, every frame's state in it."""
        with self._frame_lock:
            if not self.paused and not self._closed and faces:
                if self._t0 is None:
                    self._t0 = times[0]
                observations = self.analyzer.process_faces(faces, [t - self._t0 for t in times], source="camera")
                for obs, t in zip(observations, times):
                    obs.wall_time = t
                self._analysed(observations, batch=self.camera.batch_seconds > 0)

    def _analysed(self, observations: list, batch: bool) -> None:
        calibrated = None  # once a calibration has just ended: its error, "" when it worked
        if self._calibrating and not self.analyzer.calibrating:
            self._calibrating = False
            calibrated = self.analyzer.calibration_error or ""
        self._on_loop(self._present, observations, batch, calibrated)

    def _on_loop(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the kernel's event loop: now when called there (a batch of faces is analysed in
        its message handler, and its redraws must go out before the kernel's "idle" that acknowledges it), else
        soon. Widgets are written from one thread only, the kernel's, which also sends their messages."""
        loop = self._loop
        if loop is None or _running_loop() is loop:
            fn(*args)  # also a page not opened yet, which has no loop: this thread is the only one writing
        elif not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _present(self, observations: list, batch: bool, calibrated: str | None) -> None:
        """On the kernel's loop: show what a frame, or a batch of them, gave, say what changed, publish. A batch is
        redrawn once and sent to the hub as one message; single frames (pictures, or the per-frame transport) are
        redrawn and published now and then."""
        if self.paused or self._closed:
            return  # paused after the frames were analysed: nothing more is shown or sent
        obs = observations[-1]
        t = obs.wall_time
        self.last_observation = obs
        shown = (obs.state, obs.face)
        # A new state or tip shows at once; moving numbers every FEEDBACK_BATCHED_EVERY with batches of faces,
        # every batch_seconds with pictures, every FEEDBACK_EVERY with the per-frame transport.
        every = FEEDBACK_BATCHED_EVERY if batch else self.camera.batch_seconds or FEEDBACK_EVERY
        if shown != self._feedback_shown or not 0 <= t - self._feedback_at < every:
            self._feedback_shown, self._feedback_at = shown, t
            self.feedback.value = feedback_html(obs)
        if calibrated is not None:
            self.calibration.value = (
                error_html(f"Calibration did not work: {calibrated} Face the camera in good light and press "
                           "Calibrate again.")
                if calibrated else muted_html("Calibrated to your relaxed face.")
            )
            said = f"Calibration failed: {calibrated} Press Calibrate again." if calibrated else "Calibration finished."
            self.announce.text = self.announcer.say_now(said, time.time())
        now = time.time()
        self.announcer.offer(announcement(obs.state, obs.face), now)
        said = self.announcer.poll(now)
        if said:
            self.announce.text = said
        if self.overlay_toggle.value and now - self._last_overlay >= OVERLAY_EVERY:
            self._last_overlay = now
            self.overlay.show(obs.landmarks if obs.face else None)
        self._publish(observations, batch, now)

    # --- hub ---

    def _publish(self, observations: list, batch: bool, now: float) -> None:
        """Every frame's state goes to the hub, gathered into one message per camera batch (or per
        ``batch_seconds`` of pictures); the per-frame transport sends the latest state every PUBLISH_EVERY."""
        if self._publisher is None:
            return
        # seq and segment are stamped by the publisher on the event loop.
        states = [StateMessage.from_observation(
            obs, class_id=self.request.class_id, student_id=self.student_id, seq=0, segment=self.segment,
        ) for obs in observations]
        every = self.camera.batch_seconds
        if every == 0:
            if now - self._last_publish >= PUBLISH_EVERY:
                self._last_publish = now
                self._send(states[-1])
            return
        self._outgoing = (self._outgoing + states)[-MAX_BATCH_STATES:]
        if batch or not 0 <= now - self._last_publish < every:
            self._last_publish = now
            outgoing, self._outgoing = self._outgoing, []
            self._send(outgoing)

    def _publish_paused(self) -> None:
        if self._publisher is None:
            return
        self._send(StateMessage(
            class_id=self.request.class_id, student_id=self.student_id, seq=0, t=time.time(),
            state="uncertain", engagement=0.0, confidence=0.0, segment=self.segment, paused=True,
        ))

    def _send(self, msg: StateMessage | list[StateMessage]) -> None:
        if self._loop is not None:
            self._on_loop(self._publish_now, msg)

    def _publish_now(self, msg: StateMessage | list[StateMessage]) -> None:
        """On the kernel's event loop: hand the state (or a batch's) to the publisher, show what was sent."""
        if self._publisher is None or self._closed:
            return
        if isinstance(msg, list):
            sent = self._publisher.publish_batch(msg)[-1]
        else:
            sent = self._publisher.publish(msg)
        self.last_message = sent
        if self.session_ended:
            return  # the hub records nothing now: the teacher's view stays as _on_class set it
        shown = (sent.state, sent.paused)
        every = TEACHER_VIEW_BATCHED_EVERY if self.camera.batch_seconds else TEACHER_VIEW_EVERY
        if shown != self._teacher_view_shown or not 0 <= sent.t - self._teacher_view_at < every:
            self._teacher_view_shown, self._teacher_view_at = shown, sent.t
            self.teacher_view.value = teacher_view_html(sent)

    def _on_class(self, status: dict[str, Any]) -> None:
        """The hub's class settings: the current segment, whether emotions may be inferred, whether the teacher
        ended the session (the camera goes off until the student resumes)."""
        segment = status.get("segment")
        self.segment = segment.get("segment_id") if isinstance(segment, dict) else None
        emotions = status.get("emotions")
        if isinstance(emotions, bool) and emotions != self.analyzer.emotions:
            self.analyzer.emotions = emotions
            self.consent_text.value = consent_html(emotions, self._consent_mode())
        ended = status.get("ended") is True and status.get("session_id") is None
        if ended and not self.session_ended:
            # The lesson is over: the camera goes off; nothing more is measured for a session nobody records.
            self.session_ended = True
            self.set_paused(True)
            self.teacher_view.value = teacher_view_html(None, ended=True)
            self._teacher_view_shown = None
            self._tell("Your teacher ended the session: your camera is off and nothing is measured. "
                       "You can close this page.")
        elif self.session_ended and status.get("session_id"):
            self.session_ended = False
            if self.paused:
                self._tell("Your teacher started a new session: press Resume to take part.")

    def _answer(self, checkin_id: str, option: int) -> bool:
        publisher = self._publisher
        return publisher is not None and publisher.answer(checkin_id, option, research=self.research_box.value)

    def _tell(self, shown: str, said: str | None = None) -> None:
        """A note in place of the feedback, read out at once (``said``, when the spoken words differ)."""
        self.feedback.value = note_html(shown)
        self.announce.text = self.announcer.say_now(said or shown, time.time())

    async def _run_hub(self) -> None:
        from smartsession.hub.client import StudentPublisher

        req = self.request
        try:
            publisher = await StudentPublisher.join(
                self.hub_url, req.class_id, req.join_code, req.name, seat=req.seat, on_class=self._on_class,
                on_checkin=self.checkin.handle,
            )
            await publisher.start()
        except Exception as err:  # back to the form with the reason; the page and the kernel stay usable
            log.warning("joining class %s failed: %s", req.class_id, err)
            self.consented = False  # back to the form: the student agrees again
            self._camera_on(False)
            self.agree_button.disabled = False
            self.title.value = ""
            reason = re.sub(r"^/\S+: \d{3} ", "", str(err))  # the hub's own words, without the HTTP plumbing
            self._show(self.form, f"Could not join the class: {reason}")
            return
        self.student_id = publisher.student_id
        self._publisher = publisher
        if self.paused or self.camera.status in ERROR_STATUSES:
            self._publish_paused()
        was_connected, shown = False, None
        while not self._closed:
            if not publisher.connected.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(publisher.connected.wait(), 1.0)
            connected = publisher.connected.is_set()
            was_connected = was_connected or connected
            # Drawn when it changes: this loop runs in every student's kernel for the whole lesson, and building
            # the markup twice a second was most of what a kernel with its camera paused cost.
            if (publisher.error, connected, was_connected) != shown:
                shown = (publisher.error, connected, was_connected)
                self.connection.value = self._connection_html(publisher, was_connected)
            await asyncio.sleep(1.0 if connected else 0.5)

    @staticmethod
    def _connection_html(publisher: Any, was_connected: bool) -> str:
        if publisher.error is not None:
            return error_html(f"Disconnected from the class: {publisher.error}")
        if publisher.connected.is_set():
            return muted_html("Connected to your class.", inline=True)
        if was_connected:
            return muted_html("Reconnecting to your class...", inline=True)
        return muted_html("Connecting to your class...", inline=True)

    def close(self) -> None:
        """Stop the camera, the hub link and the analysis; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self.camera.close()
        if self._hub_task is not None:
            self._hub_task.cancel()
        if self._publisher is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._publisher.stop()))
        close = getattr(self.analyzer, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "StudentPage":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
