"""What the student page shows, as pure functions: data in, markup or words out (no widgets, no kernel, no network).

The markup comes from ``templates/student.html`` through the same Jinja2 environment (autoescape on) as the
teacher page's, so a name, class id or reason from outside is escaped by default; ``pages.student`` puts the
results into widgets.
"""

from __future__ import annotations

import math
import time
from typing import Any

from smartsession.markup import templates
from smartsession.palette import colour_of, symbol_of, text_colour
from smartsession.schema import EMOTION_STATES, STATES, StateMessage

_PAGE = templates("smartsession.pages").get_template("student.html").module

#: What each state means for the student, as a short friendly tip.
TIPS = {
    "focused": "You look focused. Nice.",
    "happy": "You look cheerful.",
    "confused": "Something may be unclear: a question to your teacher could help.",
    "distracted": "You seem to be looking away.",
    "drowsy": "You seem tired: a stretch or a sip of water can help.",
    "away": "We cannot see your face: sit in front of the camera.",
    "uncertain": "Hard to tell right now: light on your face helps.",
}


def tip_for(state: str, face: bool = True) -> str:
    if not face:
        return TIPS["away"]
    return TIPS.get(state, TIPS["uncertain"])


def announcement(state: str, face: bool = True) -> str:
    """What a screen reader says when the student's state has settled: the state and its tip."""
    return f"{state}: {tip_for(state, face)}"


def style_html() -> str:
    return str(_PAGE.style())


def chip(state: str) -> str:
    """The state as a word with its symbol on its colour: colour is never the only carrier."""
    colour = colour_of(state)
    return _PAGE.chip(state, colour, text_colour(colour), symbol_of(state))


def feedback_html(obs: Any) -> str:
    """The student's live view of one observation: state, score, what the score is made of, a tip."""
    components = {k: float(v) for k, v in (obs.engagement_components or {}).items() if math.isfinite(float(v))}
    bars = [(name.replace("_", " "), max(0.0, min(100.0, value * 100 if value <= 1.0 else value)))
            for name, value in components.items()]
    return str(_PAGE.feedback(obs.state, chip(obs.state), obs.engagement, bars, tip_for(obs.state, obs.face)))


def teacher_view_html(msg: StateMessage | None, ended: bool = False) -> str:
    """Exactly what the last message to the hub said, as the teacher's card shows it; after the teacher ended the
    lesson, what the teacher's page shows then: this student as disconnected, nothing measured."""
    if ended:
        return ('<div class="ss-teacher"><b>What your teacher sees</b><div>The lesson ended: your teacher\'s page '
                'shows you as <b>disconnected</b>. Nothing is measured or sent.</div></div>')
    if msg is None:
        return str(_PAGE.teacher_view(False, "", False, 0.0, "", ""))
    numbers = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in msg.features.items())
    return str(_PAGE.teacher_view(True, chip("paused" if msg.paused else msg.state), msg.paused, msg.engagement,
                                  time.strftime("%H:%M:%S", time.localtime(msg.t)), numbers))


def consent_html(emotions: bool, mode: str = "server") -> str:
    """What the student agrees to, for the analysis mode in use: "browser" (the face is analysed in this browser,
    only numbers leave it), "server" (pictures go to the class server) or "" (not known yet: nothing to agree to)."""
    states = [s for s in STATES if emotions or s not in EMOTION_STATES]
    return str(_PAGE.consent(mode, ", ".join(states)))


def error_html(text: str) -> str:
    return str(_PAGE.error(text))


def muted_html(text: str, inline: bool = False) -> str:
    return str(_PAGE.muted_line(text) if inline else _PAGE.muted(text))


def tip_html(text: str) -> str:
    return str(_PAGE.tip(text))


def note_html(text: str) -> str:
    """A note in place of the feedback (the session ended, a pause)."""
    return str(_PAGE.note(text))
