"""The teacher page's lesson controls: the plan (teleprompter) and the check-ins (ask, auto-ask, live tally).

Controllers only: markup from ``lesson_html`` (pure), moves of the plan from ``lesson.plan`` (pure); what goes
to the hub goes through the callables the page hands in (``command``, ``ask``, ``save``).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Callable

import ipywidgets as w

from smartsession.lesson.plan import MAX_PLAN_CHARS, LessonPlan, PlanError, parse_plan
from smartsession.pages import lesson_html as render
from smartsession.pages.hotkey import Hotkey
from smartsession.schema import CHECKIN_PRESETS, MAX_OPTIONS, MIN_OPTIONS

#: Largest plan file read from an upload (bytes); the plan itself is bounded again when parsed.
MAX_PLAN_FILE = 4 * MAX_PLAN_CHARS


class PlanPanel:
    """The outline, the current and next item, Next (button and key N / PageDown), Back, Skip, Add.

    ``start_segment(title)`` starts a segment; ``save(text)`` stores the plan with the class (returns its items);
    ``notify(text)`` tells the teacher what happened."""

    def __init__(self, start_segment: Callable[[str], None], save: Callable[[str], Any],
                 notify: Callable[[str], None]):
        self.start_segment, self.save, self.notify = start_segment, save, notify
        self.plan = LessonPlan()
        self.now = w.HTML(render.plan_now_html(None, None, -1, 0))
        self.next_button = w.Button(description="Next item", button_style="primary",
                                    tooltip="Start the next item's segment (key: N or PageDown)")
        self.next_button.on_click(lambda _: self.advance())
        self.back_button = w.Button(description="Back", tooltip="Start the previous item's segment again")
        self.back_button.on_click(lambda _: self._move(self.plan.back(), "already at the first item"))
        self.skip_button = w.Button(description="Skip", tooltip="Pass over the next item")
        self.skip_button.on_click(lambda _: self._move(self.plan.skip(), "nothing to skip to"))
        self.add_input = w.Text(placeholder="an item to do next", continuous_update=False,
                                layout=w.Layout(width="220px"))
        self.add_button = w.Button(description="Add as next")
        self.add_button.on_click(lambda _: self._add())
        self.text = w.Textarea(placeholder="One item per line, or Markdown headings (# Intro, # Exercise 1, ...)",
                               layout=w.Layout(width="420px", height="120px"), continuous_update=False)
        self.upload = w.FileUpload(accept=".md,.txt,.markdown", multiple=False, description="Load file")
        self.upload.observe(self._on_upload, "value")
        self.save_button = w.Button(description="Save plan", tooltip="Keep this plan with the class")
        self.save_button.on_click(lambda _: self._save())
        self.hotkey = Hotkey()
        self.hotkey.observe(lambda _: self.advance(), "presses")
        # Above the grid only what a lesson needs every few minutes (three tab stops); the editor sits below it.
        self.box = w.VBox([self.now, w.HBox([self.next_button, self.back_button, self.skip_button]), self.hotkey])
        self.editor = w.VBox([self.text, w.HBox([self.upload, self.save_button]),
                              w.HBox([self.add_input, self.add_button])])

    def load(self, items: list[str]) -> None:
        """The plan stored with the class (at page start): shown, not started."""
        self.plan = LessonPlan(list(items))
        self.text.value = "\n".join(items)
        self._draw()

    def advance(self) -> None:
        self._move(self.plan.advance(), "that was the last item: add one, or end the lesson")

    def _move(self, title: str | None, otherwise: str) -> None:
        if title is None:
            self.notify("Lesson plan: " + otherwise)
            return
        self.start_segment(title)
        self._draw()

    def _add(self) -> None:
        try:
            self.plan.add(self.add_input.value)
        except PlanError as exc:
            self.notify(f"Lesson plan: {exc}")
            return
        self.add_input.value = ""
        self._draw()

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        content = files[0]["content"]
        if len(content) > MAX_PLAN_FILE:
            self.notify(f"Lesson plan: that file is larger than {MAX_PLAN_FILE // 1000} kB: load a short outline")
            return
        try:
            self.text.value = bytes(content).decode("utf-8")
        except UnicodeDecodeError:
            self.notify("Lesson plan: the file is not UTF-8 text: save it as plain text or Markdown")
            return
        self._save()

    def _save(self) -> None:
        try:
            items = parse_plan(self.text.value)
        except PlanError as exc:
            self.notify(f"Lesson plan not saved: {exc}")
            return
        position = self.plan.position if self.plan.items[: self.plan.position + 1] == items[
            : self.plan.position + 1] else -1
        self.plan = LessonPlan(items, position)
        self._draw()
        self.save(self.text.value)

    def _draw(self) -> None:
        p = self.plan
        self.now.value = render.plan_now_html(p.current, p.next, p.position, len(p.items))


class CheckinPanel:
    """Preset and custom check-ins, optional automatic asking (every N minutes with jitter), and the tally.

    ``ask(kind, question, options, seconds, research)`` sends one; ``present()`` counts connected students."""

    #: The automatic check-in comes ``every`` minutes times a random factor from this range.
    JITTER = (0.7, 1.3)
    #: Seconds in one of those minutes (a test makes them shorter to watch several questions go out).
    minute_s = 60.0

    def __init__(self, ask: Callable[..., None], present: Callable[[], int], notify: Callable[[str], None]):
        self.ask_hub, self.present, self.notify = ask, present, notify
        self.checkin: dict[str, Any] | None = None
        self.counts: list[int] = []
        self.answered = 0
        self.open = False
        self.asked_present = 0
        presets = []
        for kind, (question, _) in CHECKIN_PRESETS.items():
            b = w.Button(description=question, layout=w.Layout(width="auto"),
                         tooltip="Ask every student now (one tap to answer, optional)")
            b.on_click(lambda _, kind=kind: self.send(kind))
            presets.append(b)
        self.question = w.Text(placeholder="your own question", continuous_update=False,
                               layout=w.Layout(width="300px"))
        self.options = w.Text(placeholder=f"{MIN_OPTIONS}-{MAX_OPTIONS} options, separated by ;",
                              continuous_update=False, layout=w.Layout(width="260px"))
        custom = w.Button(description="Ask")
        custom.on_click(lambda _: self._send_custom())
        self.seconds = w.BoundedIntText(value=60, min=10, max=600, description="Open for (s)",
                                        layout=w.Layout(width="170px"))
        self.research = w.Checkbox(value=False, description="Use answers for research", indent=False,
                                   tooltip="Only answers of students who agreed on their consent screen")
        self.auto = w.Checkbox(value=False, description="Ask 'Where was your mind?' by itself every", indent=False)
        self.every = w.BoundedIntText(value=10, min=2, max=60, description="", layout=w.Layout(width="70px"))
        self.auto.observe(lambda _: self._auto_changed(), "value")
        self.tally = w.HTML(render.tally_html(None, [], 0, 0, False))
        self._auto_task: asyncio.Task | None = None
        self.box = w.VBox([
            w.HBox(presets),
            w.HBox([self.question, self.options, custom]),
            w.HBox([self.seconds, self.research, self.auto, self.every, w.HTML("minutes")]),
            self.tally,
        ])

    def send(self, kind: str, question: str | None = None, options: list[str] | None = None) -> None:
        self.ask_hub(kind, question, options, float(self.seconds.value), bool(self.research.value))

    def _send_custom(self) -> None:
        options = [o.strip() for o in self.options.value.split(";") if o.strip()]
        if not self.question.value.strip() or not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
            self.notify(f"A check-in needs a question and {MIN_OPTIONS}-{MAX_OPTIONS} options separated by ;")
            return
        self.send("custom", self.question.value, options)

    def handle(self, event: dict[str, Any]) -> None:
        """The hub's check-in events (``snapshot``'s open one, ``checkin``, ``answered``, ``checkin_closed``)."""
        kind = event.get("type")
        if kind == "snapshot":
            open_ = event.get("checkin")
            if open_:
                self.checkin, self.open = open_, True
                self.counts, self.answered = list(open_.get("counts", [])), int(open_.get("answered", 0))
                self.asked_present = self.present()
        elif kind == "checkin":
            self.checkin, self.open, self.answered = event, True, 0
            self.counts = [0] * len(event.get("options", []))
            self.asked_present = self.present()
        elif self.checkin is None or event.get("checkin_id") != self.checkin.get("checkin_id"):
            return
        elif kind == "answered":
            self.counts, self.answered = list(event.get("counts", self.counts)), int(event.get("answered", 0))
        elif kind == "checkin_closed":
            self.open = False
            self.counts, self.answered = list(event.get("counts", self.counts)), int(event.get("answered", 0))
        else:
            return
        self.draw()

    def draw(self) -> None:
        present = max(self.asked_present, self.answered)
        self.tally.value = render.tally_html(self.checkin, self.counts, self.answered, present, self.open)

    def _auto_changed(self) -> None:
        if self._auto_task is not None:
            self._auto_task.cancel()
            self._auto_task = None
        if self.auto.value:
            self._auto_task = asyncio.get_running_loop().create_task(self._auto_loop())

    async def _auto_loop(self) -> None:
        while True:
            minutes = float(self.every.value)
            # Jitter: students who can predict the question answer the prediction, not the moment.
            await asyncio.sleep(self.minute_s * minutes * random.uniform(*self.JITTER))
            self.send("mind")

    def close(self) -> None:
        if self._auto_task is not None:
            self._auto_task.cancel()
            self._auto_task = None
