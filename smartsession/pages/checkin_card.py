"""The student's check-in card: the teacher's question with one button per option, calm and optional.

``question_html`` is pure (escaped markup from a ``checkin`` event); ``CheckinCard`` wires the buttons, the
screen-reader announcement and the hub's replies. It never takes focus and sits beside the camera, never over it.
"""

from __future__ import annotations

import html
import time
from typing import Any, Callable

import ipywidgets as w

#: The sentence a student agrees to on the consent screen before any answer may be used for research.
RESEARCH_CONSENT = (
    "I agree that my answers to my teacher's check-in questions, together with the states and scores this page "
    "sent in the seconds before each answer, may be used for research to check and improve this measure "
    "(never pictures)."
)


def question_html(event: dict[str, Any], now: float | None = None) -> str:
    """The card's text: who asks, the question, and that answering is optional (all escaped)."""
    now = time.time() if now is None else now
    left = max(0, int(event.get("closes", now) - now))
    return (
        '<div class="ss-checkin-q"><b>Your teacher asks</b>'
        f'<div class="ss-checkin-text">{html.escape(str(event.get("question", "")))}</div>'
        f'<div class="ss-muted">Optional: answer if you like; this closes in about {left} s.</div></div>'
    )


CARD_STYLE = """<style>
.ss-checkin { margin-top: 12px; padding: 10px 12px; border: 1px solid #b0bec5; border-left: 4px solid #4f7cac;
              border-radius: 6px; background: #f7f9fb; }
.ss-checkin-text { font-size: 1.15em; margin: 4px 0; }
</style>"""


class CheckinCard:
    """Shows the open check-in; ``send(checkin_id, option)`` is the publisher's ``answer``; ``say(text)`` reads
    a text out in the page's live region. ``handle(msg)`` takes the hub's check-in messages."""

    def __init__(self, send: Callable[[str, int], bool], say: Callable[[str], None]):
        self.send, self.say = send, say
        self.checkin_id: str | None = None
        self.text = w.HTML()
        self.buttons = w.HBox([])
        self.status = w.HTML()
        self.dismiss = w.Button(description="Not now", tooltip="Close this question without answering")
        self.dismiss.on_click(lambda _: self.hide())
        self.box = w.VBox([w.HTML(CARD_STYLE), self.text, self.buttons, w.HBox([self.status, self.dismiss])],
                          layout=w.Layout(display="none"))
        self.box.add_class("ss-checkin")

    def handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "checkin":
            self.show(msg)
        elif kind == "checkin_closed" and msg.get("checkin_id") == self.checkin_id:
            if self.box.layout.display != "none":
                self.say("The check-in question closed.")
            self.hide()
        elif kind == "answer_ok" and msg.get("checkin_id") == self.checkin_id:
            self.status.value = "<span class='ss-muted'>Thank you: your answer was sent.</span>"
            self.say("Thank you: your answer was sent.")
            self.dismiss.description = "Close"
        elif kind == "answer_refused" and msg.get("checkin_id") == self.checkin_id:
            reason = str(msg.get("reason", ""))
            self.status.value = f"<span class='ss-muted'>Not sent: {html.escape(reason)}</span>"
            self.buttons.children = []

    def show(self, event: dict[str, Any]) -> None:
        self.checkin_id = event["checkin_id"]
        self.text.value = question_html(event)
        options = list(event.get("options", []))
        if event.get("answered"):
            self.buttons.children = []
            self.status.value = "<span class='ss-muted'>You answered this one already.</span>"
        else:
            buttons = []
            for i, label in enumerate(options):
                # A Button's description is plain text in the browser: markup in an option stays text.
                b = w.Button(description=str(label), layout=w.Layout(width="auto"))
                b.on_click(lambda _, i=i: self.choose(i))
                buttons.append(b)
            self.buttons.children = buttons
            self.status.value = ""
        self.dismiss.description = "Not now"
        self.box.layout.display = None
        # Read out, never focused: the student keeps whatever they were doing.
        self.say(f"Your teacher asks: {event.get('question', '')} Options: {', '.join(map(str, options))}.")

    def choose(self, option: int) -> None:
        if self.checkin_id is None:
            return
        if not self.send(self.checkin_id, option):
            self.status.value = "<span class='ss-muted'>Not connected to your class: try again in a moment.</span>"
            return
        for b in self.buttons.children:
            b.disabled = True

    def hide(self) -> None:
        self.box.layout.display = "none"
        self.buttons.children = []
