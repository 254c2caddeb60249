"""The teacher's live dashboard: the widgets of ``dashboards/teacher.ipynb`` and the loop that feeds them.

Hub events arrive on the kernel's asyncio loop and only update ``ClassView``; a second task redraws the
widgets a few times a second from it, so 30+ students publishing at 5-10 Hz never flood the browser. The
markup comes from ``teacher_html`` (pure), the hub's HTTP API from ``hub.client``.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import ipywidgets as w
import plotly.graph_objects as go

from smartsession.hub import auth
from smartsession.pages import teacher_html as render
from smartsession.pages.alerts import Alert, AlertRules
from smartsession.pages.announce import Announcer, LiveRegion
from smartsession.pages.classgrid import ClassGrid
from smartsession.pages.classview import ClassView
from smartsession.pages import lesson_html
from smartsession.pages.hotkey import Focus
from smartsession.pages.lesson_panel import CheckinPanel, PlanPanel

#: Cards and counts are redrawn as soon as a change arrives, then at most every CARDS_EVERY seconds:
#: a lone student shows up at once, a busy class costs at most four redraws a second.
CARDS_EVERY = 0.25
#: The housekeeping tick (silent students, connection status), the chart and the alert check (seconds).
TICK_EVERY = 0.5
CHART_EVERY = 2.0
ALERTS_EVERY = 1.0
#: The class chart shows this much history.
CHART_WINDOW = 3600.0
#: How many alerts stay on screen (newest first); older ones remain in ``TeacherPage.alerts``.
ALERTS_SHOWN = 5
#: Seconds between two alert announcements to a screen reader; alerts meanwhile are read out together.
ANNOUNCE_EVERY = 10.0


class TokenError(ValueError):
    """A teacher token that cannot open this class; the message says what to do."""


def peek_token(token: str) -> auth.Claims:
    """The claims of what looks like a teacher token, read WITHOUT checking the signature, to explain a
    wrong token early: the page does not even connect with a token that is plainly not a teacher token.
    The hub verifies every token."""
    try:
        claims = auth.peek_claims(token.strip())
    except auth.AuthError:
        raise TokenError("this is not a SmartSession token: copy the teacher token `smartsession serve` printed") from None
    if claims.role != "teacher" or not isinstance(claims.class_id, str):
        raise TokenError("this is not a teacher token: use the teacher link or token `smartsession serve` printed")
    if claims.expires is not None and claims.expires < time.time():
        raise TokenError("this teacher token has expired: create a new one with `smartsession class`")
    return claims


def session_report_html(doc: dict[str, Any]) -> str:
    """The report of an exported session (``smartsession.report``), as one self-contained HTML document."""
    from smartsession.report.build import SessionData, build_report

    # The teacher's own page: names, not "Student 1"; the report files written for sharing stay anonymous.
    return build_report(SessionData.from_export(doc), names=True).to_html()


def _last_ten_minutes(now: float) -> list[datetime]:
    """The class chart's time axis while it has no points."""
    return [datetime.fromtimestamp(now - 600), datetime.fromtimestamp(now)]


class TeacherPage:
    """The dashboard for one class. ``TeacherPage.from_request()`` reads class and token from the URL.

    Without a token the page shows only a form to type one; class data appears only after the hub
    accepted the token and sent its snapshot.
    """

    def __init__(
        self,
        class_id: str | None = None,
        token: str | None = None,
        *,
        join_code: str | None = None,
        hub_url: str | None = None,
        rules: AlertRules | None = None,
        environ: Any = os.environ,
    ):
        self.class_id = class_id
        self.token = token
        self.join_code = join_code
        self.hub_url = hub_url
        self.rules = rules or AlertRules()
        self.environ = environ
        self.view: ClassView | None = None
        self.alerts: list[Alert] = []
        self.status = "idle"
        self._tasks: list[asyncio.Task] = []
        self._subscriber = None
        self._changed: set[str] = set()
        self._dirty = False
        self._flush_at: asyncio.TimerHandle | None = None
        self._last_flush = 0.0  # time.monotonic() of the last card redraw
        self._last = {"chart": 0.0, "alerts": 0.0}
        self._history_for: str | None = None  # the session whose earlier history was asked for
        self._chart_points = 0
        self._syncing = False  # set while the page itself moves the emotions switch
        self._plan_loaded = False
        self._detail_for: str | None = None
        self._lessons: list[dict[str, Any]] = []
        self._build()
        if token:
            self.open(class_id, token)
        else:
            self._show_form("Type the teacher token that `smartsession serve` printed to open your class.")

    @classmethod
    def from_request(cls, **kwargs) -> "TeacherPage":
        """Build the page from the Voila request's query string (``?class=ID&token=TOKEN[&join=CODE]``)."""
        from voila.utils import get_query_string

        query = parse_qs(get_query_string() or "")
        first = lambda k: (query.get(k) or [None])[0]  # noqa: E731
        return cls(first("class"), first("token"), join_code=first("join"), **kwargs)

    # -- layout --------------------------------------------------------------------------------

    def _build(self) -> None:
        self.header = w.HTML()
        self.status_line = w.HTML()
        self.token_input = w.Password(placeholder="teacher token", layout=w.Layout(width="420px"))
        self.token_button = w.Button(description="Open class", button_style="primary")
        self.token_button.on_click(lambda _: self.open(None, self.token_input.value))
        self.form = w.HBox([self.token_input, self.token_button])

        self.join = w.HTML()
        self.session_button = w.Button(description="Start session")
        self.session_button.on_click(lambda _: self._toggle_session())
        # Synced when the field is left: a button pressed right after typing must not overtake the text.
        self.segment_title = w.Text(placeholder="segment title, e.g. Exercise 2", layout=w.Layout(width="240px"),
                                    continuous_update=False)
        self.segment_button = w.Button(description="Start segment")
        self.segment_button.on_click(lambda _: self._start_segment())
        self.emotions_box = w.Checkbox(value=True, description="Emotion states (happy, confused)", indent=False)
        self.emotions_box.observe(self._on_emotions_box, "value")
        self.report_button = w.Button(description="Session report", tooltip="The report of this session so far")
        self.report_button.on_click(lambda _: self._toggle_report())
        self.report = w.HTML()
        self.plan_panel = PlanPanel(lambda title: self._command("start_segment", title=title), self._save_plan,
                                    self._notify)
        self.checkin_panel = CheckinPanel(self._ask, self._present, self._notify)
        self.history = w.HTML()
        self.history_chart = w.HTML()
        self.history_pick = w.Dropdown(description="Lesson", options=[], layout=w.Layout(width="420px"))
        self.history_open = w.Button(description="Open its report")
        self.history_open.on_click(lambda _: self._open_past_report())
        self.history_refresh = w.Button(description="Refresh")
        self.history_refresh.on_click(lambda _: self._load_lessons())
        lessons = w.VBox([self.history_chart, self.history,
                          w.HBox([self.history_pick, self.history_open, self.history_refresh])])
        self.lesson_tabs = w.Accordion([self.plan_panel.editor, self.checkin_panel.box, lessons],
                                       titles=("Lesson plan", "Check-ins", "Past lessons"))
        self.lesson_tabs.add_class("ss-lesson-tabs")
        controls = w.HBox(
            [self.session_button, self.segment_title, self.segment_button, self.emotions_box, self.report_button]
        )
        self.notice = w.HTML()
        self.lesson_line = w.HTML()

        self.gauge = w.HTML(render.gauge_html(None))
        self.counts = w.HTML()
        self.alerts_box = w.HTML(render.alerts_html([]))
        # The class chart in words, and the polite live region that reads out new alerts.
        self.chart_text = w.HTML(render.chart_text_html([], [], 0.0))
        self.announce = LiveRegion()
        self.announcer = Announcer(settle=0.0, min_gap=ANNOUNCE_EVERY)
        self._unannounced: list[Alert] = []
        # The trace must exist at construction: FigureWidget syncs its data to the browser only then.
        self.chart = go.FigureWidget(
            data=[go.Scatter(x=[], y=[], mode="lines", line=dict(color="#1565c0", width=2), name="class")],
            layout=go.Layout(
                height=260,
                margin=dict(l=40, r=10, t=30, b=30),
                title=dict(text="Class engagement", font=dict(size=14)),
                yaxis=dict(range=[0, 100], title=None, gridcolor="#eceff1"),
                # An empty date axis would read "Jan 2000 ... Nov 2000": it starts on the last ten minutes.
                xaxis=dict(type="date", gridcolor="#eceff1", autorange=False, range=_last_ten_minutes(time.time())),
                plot_bgcolor="#ffffff",
                showlegend=False,
            )
        )
        # The chart's plotly toolbar is ten tab stops before the first student card: off (a view, not an editor).
        self.chart._config = {"displayModeBar": False}
        self.focus = Focus()
        self.grid = ClassGrid()
        self.grid.observe(lambda _: self._draw_detail(), "selected")
        self.show_hidden = w.Checkbox(value=False, description="Show hidden students", indent=False)
        self.show_hidden.observe(lambda _: self._mark_dirty(), "value")

        self.detail_title = w.HTML()
        self.detail_timeline = w.HTML()
        self.rename_input = w.Text(placeholder="new display name", layout=w.Layout(width="200px"),
                                   continuous_update=False)
        rename = w.Button(description="Rename")
        rename.on_click(lambda _: self._rename())
        self.hide_button = w.Button(description="Hide")
        self.hide_button.on_click(lambda _: self._toggle_hidden())
        self.detail = w.VBox(
            [self.detail_title, self.detail_timeline, w.HBox([self.rename_input, rename, self.hide_button])],
            layout=w.Layout(display="none", border="1px solid #e0e0e0", padding="8px"),
        )
        self.detail.add_class("ss-detail-box")
        self.report_box = w.VBox([self.report])
        self.report_box.add_class("ss-report-box")

        summary = w.VBox([self.gauge, self.counts], layout=w.Layout(width="300px"))
        self.dashboard = w.VBox(
            [
                self.join,
                controls,
                self.lesson_line,
                self.notice,
                self.plan_panel.box,
                w.HBox([summary, w.VBox([w.HTML("<b>Alerts</b>"), self.alerts_box], layout=w.Layout(flex="1"))]),
                self.chart,
                self.chart_text,
                self.show_hidden,
                self.grid,
                self.detail,
                self.lesson_tabs,
                self.report_box,
                self.focus,
            ],
            layout=w.Layout(display="none"),
        )
        self.root = w.VBox([w.HTML(render.style_html()), w.HTML(lesson_html.LESSON_STYLE), self.header, self.status_line, self.form, self.dashboard, self.announce])
        self.root.add_class("ss-teacher")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _set_status(self, status: str, text: str) -> None:
        self.status = status
        self.status_line.value = render.status_html(status, text)

    def _notify(self, text: str) -> None:
        """Feedback on the teacher's last action (empty clears it)."""
        self.notice.value = render.notice_html(text)

    def _show_form(self, why: str, status: str = "idle") -> None:
        self.form.layout.display = None
        self.dashboard.layout.display = "none"
        self._set_status(status, why)

    # -- connecting ----------------------------------------------------------------------------

    def open(self, class_id: str | None, token: str) -> None:
        """Connect to the hub as the teacher of ``class_id`` (taken from the token when not given)."""
        self.close()
        try:
            claims = peek_token(token or "")
        except TokenError as exc:
            self._show_form(str(exc), "error")
            return
        if class_id and claims.class_id != class_id:
            self._show_form("this teacher token is for another class: use the link printed for this class", "error")
            return
        self.class_id, self.token = claims.class_id, token.strip()
        self.view = ClassView(self.class_id)
        self._history_for: str | None = None
        self.alerts = []
        self.header.value = render.header_html(f"Class {self.class_id}")
        self.form.layout.display = "none"
        self._set_status("connecting", "Connecting to the hub…")
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._redraw_loop())]

    def __enter__(self) -> "TeacherPage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening and redrawing; harmless to call twice."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self.checkin_panel.close()
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        self._subscriber = None

    async def _listen(self) -> None:
        from smartsession.hub.client import TeacherSubscriber

        try:
            async with TeacherSubscriber(self.class_id, self.token, url=self.hub_url) as sub:
                self._subscriber = sub
                async for event in sub:
                    self.handle(event, time.time())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # no hub URL, or the hub cannot be reached at all
            self._refused(str(exc))

    def _refused(self, why: str) -> None:
        """Forget the class (nothing of it stays on screen) and ask for a token again."""
        self.close()
        self.view = None
        self.grid.cards = []
        self._show_form(f"The hub did not accept this page: {why}", "error")

    def _mark_dirty(self) -> None:
        self._dirty = True
        self._schedule()

    def handle(self, event: dict[str, Any], now: float) -> None:
        """Fold one hub event into the class model and schedule a redraw (never more than one pending)."""
        if self.view is None:
            return
        if event.get("type") == "snapshot":
            self.join_code = event.get("join_code") or self.join_code
            if not self._plan_loaded:
                self._plan_loaded = True
                self._tasks.append(asyncio.get_running_loop().create_task(self._load_plan()))
                self._load_lessons()
        if event.get("type") in ("snapshot", "checkin", "answered", "checkin_closed"):
            self.checkin_panel.handle(event)
        if event.get("type") == "class" and event.get("session_id") is None and self.view.session_id:
            self._load_lessons()  # the lesson just ended: it belongs to the history now
        self._changed |= self.view.apply(event, now)
        session_id = self.view.session_id
        if event.get("type") == "snapshot" and session_id and session_id != self._history_for:
            # Opened (or reopened) mid-session: the chart, sparklines and bands start at the session's start.
            self._history_for = session_id
            self._tasks.append(asyncio.get_running_loop().create_task(self._load_history(session_id)))
        self._mark_dirty()

    async def _load_history(self, session_id: str) -> None:
        from smartsession.hub.client import fetch_history

        try:
            doc = await asyncio.get_running_loop().run_in_executor(
                None, fetch_history, self.hub_url, session_id, self.token)
        except Exception as exc:  # the live page works without its past
            self._notify(f"Earlier history of this session could not be loaded: {exc}")
            return
        if self.view is None:
            return
        self._changed |= self.view.load_history(doc)
        self._last["chart"] = 0.0  # draw the filled-in chart at the next tick
        self._mark_dirty()

    def _schedule(self) -> None:
        if self._flush_at is not None or not self._tasks:
            return
        delay = max(0.0, self._last_flush + CARDS_EVERY - time.monotonic())
        self._flush_at = asyncio.get_running_loop().call_later(delay, self._flush)

    def _flush(self) -> None:
        self._flush_at = None
        self._last_flush = time.monotonic()
        self._safe_redraw()

    def _safe_redraw(self) -> None:
        try:
            self.redraw(time.time())
        except Exception as exc:  # a drawing bug must not stop the live page
            self._notify(f"Redraw failed: {exc!r}; the page keeps trying")

    # -- drawing -------------------------------------------------------------------------------

    async def _redraw_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_EVERY)
            sub = self._subscriber
            if sub is not None and sub.error is not None:
                # Fatal refusals (bad token, other class) end the subscriber; reconnecting cannot help.
                self._refused(str(sub.error))
                return
            if sub is not None and self.view is not None and self.view.ready:
                connected = sub.connected.is_set()
                if connected != (self.status == "live"):
                    self._set_status(*(("live", "Live") if connected else ("reconnecting", "Reconnecting to the hub…")))
            self._safe_redraw()

    def redraw(self, now: float) -> None:
        view = self.view
        if view is None or not view.ready:
            return
        if self.dashboard.layout.display == "none":
            self._show_dashboard()
        self._changed |= view.expire(now)
        if self._changed or self._dirty:
            shown = view.students.values() if self.show_hidden.value else view.visible()
            ordered = sorted(shown, key=lambda c: render.natural_key(c.label))
            self.grid.cards = [view.card(c.student_id, now) for c in ordered]
            self.gauge.value = render.gauge_html(view.class_engagement(now))
            self.counts.value = render.counts_html(view.counts(now), view.emotions)
            self._draw_controls()
            if self.grid.selected in self._changed:
                self._draw_detail()
            self._changed.clear()
            self._dirty = False
        if now - self._last["alerts"] >= ALERTS_EVERY:
            self._last["alerts"] = now
            view.sample(now)
            self._check_alerts(now)
        if now - self._last["chart"] >= CHART_EVERY:
            self._last["chart"] = now
            self._draw_chart(now)

    def _show_dashboard(self) -> None:
        view = self.view
        self.header.value = render.header_html(f"{view.title or 'Class'} ({view.class_id})")
        self._set_status("live", "Live")
        self.form.layout.display = "none"
        link = render.join_url(view.class_id, self.join_code, self.environ) if self.join_code else None
        self.join.value = render.join_html(link)
        self.dashboard.layout.display = None

    def _draw_controls(self) -> None:
        view = self.view
        self.session_button.description = "End lesson" if view.session_id else "Start lesson"
        # One rule, said the same way before and during a lesson: whichever comes first opens it.
        self.session_button.tooltip = ("Lesson ended: students' cameras are off until you start the next one"
                                       if view.ended else "End the lesson when the class is over"
                                       if view.session_id else "Start the lesson now (or it starts when a student joins)")
        self.lesson_line.value = render.notice_html(
            "Lesson running: a lesson starts when you press Start lesson or when the first student joins, "
            "whichever comes first. The plan's Next item marks its parts; End lesson when the class is over."
            if view.session_id else
            "No lesson running: it starts when you press Start lesson or when the first student joins, "
            "whichever comes first.")
        current = view.current_segment()
        self.segment_button.tooltip = f"now: {current.title}" if current else "no segment yet"
        if self.emotions_box.value != view.emotions:
            self._syncing = True
            try:
                self.emotions_box.value = view.emotions
            finally:
                self._syncing = False

    def _draw_chart(self, now: float) -> None:
        view = self.view
        series = [(t, e) for t, e in view.series if now - t <= CHART_WINDOW]
        bands = view.segment_bands(now)
        if series and len(series) == self._chart_points and not bands:
            return
        if not series and not bands and not self._chart_points:
            # Nothing drawn yet: the constructor's axis stands. An update sent while the browser is still
            # rendering the chart (the page's first ticks) can leave it deaf to every later update.
            return
        self._chart_points = len(series)
        self.chart_text.value = render.chart_text_html(series, bands, now)
        shapes, notes = [], []
        for i, (start, end, title) in enumerate(bands):
            x0, x1 = datetime.fromtimestamp(start), datetime.fromtimestamp(end)
            shapes.append(
                dict(type="rect", xref="x", yref="paper", x0=x0, x1=x1, y0=0, y1=1, line=dict(width=0),
                     fillcolor="#bbdefb" if i % 2 == 0 else "#e1bee7", opacity=0.45, layer="below")
            )
            notes.append(dict(x=x0, y=1, xref="x", yref="paper", text=title, showarrow=False, xanchor="left", yanchor="bottom", font=dict(size=10)))
        if series:
            xrange = None
        else:
            xrange = _last_ten_minutes(now)
        with self.chart.batch_update():
            self.chart.layout.xaxis.range = xrange
            self.chart.layout.xaxis.autorange = xrange is None
            self.chart.data[0].x = [datetime.fromtimestamp(t) for t, _ in series]
            self.chart.data[0].y = [round(e, 1) for _, e in series]
            self.chart.layout.shapes = shapes
            self.chart.layout.annotations = notes

    def _check_alerts(self, now: float) -> None:
        view = self.view
        students = {
            c.student_id: replace(c, presence=view.presence(c, now)) for c in view.visible()
        }
        fired = self.rules.check(now, students, view.class_engagement(now))
        if fired:
            self.alerts.extend(fired)
            self.alerts_box.value = render.alerts_html(self.alerts[::-1][:ALERTS_SHOWN])
            self._unannounced.extend(fired)
        if self._unannounced:
            self.announcer.offer(render.alerts_announcement(self._unannounced), now)
            said = self.announcer.poll(now)
            if said:
                self.announce.text = said
                self._unannounced = []

    def _draw_detail(self) -> None:
        sid = self.grid.selected
        view = self.view
        if view is None or not sid or sid not in view.students:
            self.detail.layout.display = "none"
            return
        card = view.students[sid]
        opening = self.detail.layout.display == "none" or self._detail_for != sid
        self._detail_for = sid
        self.detail.layout.display = None
        if opening:
            self.focus.bring(".ss-detail-box")
        self.detail_title.value = render.detail_title_html(sid, card.label, view.presence(card, time.time()),
                                                           card.state)
        self.detail_timeline.value = render.detail_html(view.timeline(sid))
        self.hide_button.description = "Show" if card.hidden else "Hide"

    # -- teacher commands ----------------------------------------------------------------------

    def _command(self, command: str, **args: Any) -> None:
        sub = self._subscriber
        if sub is None:
            self._notify("Not connected to the hub yet: wait a moment and try again")
            return
        task = asyncio.get_running_loop().create_task(sub.send_command(command, **args))
        task.add_done_callback(lambda t: self._command_done(command, t))

    def _command_done(self, command: str, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._notify(f"{command} failed: {exc}")
        elif command == "end_session":
            self._notify("Session ended: the students' cameras are off and nothing more is recorded until you start "
                         "the next session. Its report is under Session report.")
        else:
            self._notify("")

    def _toggle_report(self) -> None:
        if self.report.value:
            self.report.value = ""
            self.report_button.description = "Session report"
            return
        # The open session, else the one just ended (its report is what a teacher asks for after "End session").
        session_id = self.view.last_session_id if self.view is not None else None
        if not session_id and self._lessons:
            session_id = self._lessons[-1]["session_id"]  # reopened after a restart: the last lesson's report
        if not session_id:
            self._notify("No lesson yet: the report covers a lesson, which starts when you press Start lesson or "
                         "when the first student joins")
            return
        self._notify("Building the session report…")
        self.report_button.disabled = True
        asyncio.get_running_loop().create_task(self._build_report(session_id))

    async def _build_report(self, session_id: str) -> None:
        from smartsession.hub.client import fetch_session

        loop = asyncio.get_running_loop()
        try:
            # Off the event loop: the export and the report take a moment with a long session.
            doc = await loop.run_in_executor(None, fetch_session, self.hub_url, session_id, self.token)
            page = await loop.run_in_executor(None, session_report_html, doc)
        except Exception as exc:  # a failed report must not disturb the live page
            self._notify(f"The report could not be built: {exc}")
            return
        finally:
            self.report_button.disabled = False
        self.report.value = render.report_html(session_id, page)
        self.report_button.description = "Hide report"
        self._notify("")
        self.focus.bring(".ss-report-box")

    # -- lesson plan, check-ins, history -------------------------------------------------------

    async def _load_plan(self) -> None:
        from smartsession.hub.client import fetch_plan

        try:
            items = await asyncio.get_running_loop().run_in_executor(
                None, fetch_plan, self.hub_url, self.class_id, self.token)
        except Exception as exc:
            self._notify(f"The lesson plan could not be loaded: {exc}")
            return
        self.plan_panel.load(items)

    def _save_plan(self, text: str) -> None:
        from smartsession.hub.client import save_plan

        async def save() -> None:
            try:
                items = await asyncio.get_running_loop().run_in_executor(
                    None, save_plan, self.hub_url, self.class_id, text, self.token)
            except Exception as exc:
                self._notify(f"The lesson plan was not saved: {exc}")
                return
            self._notify(f"Lesson plan saved with the class: {len(items)} items.")

        self._tasks.append(asyncio.get_running_loop().create_task(save()))

    def _present(self) -> int:
        view = self.view
        if view is None:
            return 0
        now = time.time()
        return sum(1 for c in view.visible() if view.presence(c, now) in ("connected", "paused"))

    def _ask(self, kind: str, question: str | None, options: list[str] | None, seconds: float,
             research: bool) -> None:
        sub = self._subscriber
        if sub is None:
            self._notify("Not connected to the hub yet: wait a moment and try again")
            return
        task = asyncio.get_running_loop().create_task(sub.ask(kind, question, options, seconds, research))
        task.add_done_callback(lambda t: self._command_done("check-in", t))

    def _load_lessons(self) -> None:
        from smartsession.hub.client import fetch_lessons

        async def load() -> None:
            try:
                lessons = await asyncio.get_running_loop().run_in_executor(
                    None, fetch_lessons, self.hub_url, self.class_id, self.token)
            except Exception as exc:
                self._notify(f"The past lessons could not be loaded: {exc}")
                return
            self._lessons = lessons
            self.history.value = lesson_html.history_html(lessons)
            self.history_chart.value = lesson_html.history_chart_svg(lessons)
            chosen = self.history_pick.value
            self.history_pick.options = [
                (f"{datetime.fromtimestamp(s['started']):%Y-%m-%d %H:%M} {s.get('title') or ''}".strip(),
                 s["session_id"]) for s in reversed(lessons)]
            # New options leave the dropdown on nothing: keep the teacher's pick, else the newest lesson.
            ids = [s["session_id"] for s in lessons]
            self.history_pick.value = chosen if chosen in ids else (ids[-1] if ids else None)

        if self.class_id and self.token:
            self._tasks.append(asyncio.get_running_loop().create_task(load()))

    def _open_past_report(self) -> None:
        session_id = self.history_pick.value
        if not session_id:
            self._notify("No past lesson to open yet")
            return
        self._notify("Building the lesson's report…")
        self.report_button.disabled = True
        asyncio.get_running_loop().create_task(self._build_report(session_id))

    def _toggle_session(self) -> None:
        if self.view is not None and self.view.session_id:
            self._command("end_session")
        else:
            self._command("start_session")

    def _start_segment(self) -> None:
        title = self.segment_title.value.strip()
        if not title:
            self._notify("Give the segment a title first (e.g. 'Exercise 2')")
            return
        self._command("start_segment", title=title)
        self.segment_title.value = ""

    def _on_emotions_box(self, change) -> None:
        if self._syncing or self.view is None or change["new"] == self.view.emotions:
            return
        self._command("set_emotions", emotions=bool(change["new"]))

    def _rename(self) -> None:
        name = self.rename_input.value.strip()
        if self.grid.selected and name:
            self._command("rename_student", student_id=self.grid.selected, name=name)
            self.rename_input.value = ""

    def _toggle_hidden(self) -> None:
        sid = self.grid.selected
        if self.view is not None and sid in self.view.students:
            self._command("hide_student", student_id=sid, hidden=not self.view.students[sid].hidden)
