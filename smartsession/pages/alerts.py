"""Calm alerts for the teacher: a condition must persist before it is worth a word, and then not again for a while.

Pure logic on (time, states) so it is tested on synthetic time series; the teacher page calls
``AlertRules.check`` a few times a second with what ``ClassView`` holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from smartsession.pages.classview import LOW_ATTENTION, StudentState

#: Plain words for the states in alert sentences.
_STATE_WORDS = {
    "distracted": "looking elsewhere",
    "drowsy": "drowsy",
    "away": "away from the camera",
    "confused": "confused",
}


@dataclass(frozen=True)
class Alert:
    """One alert: ``key`` names the condition (rule and subject) for the cooldown; ``reason`` says why."""

    key: str
    rule: str
    t: float
    message: str
    reason: str
    student_id: str | None = None


class AlertRules:
    """Student and class alert rules with persistence and a per-condition cooldown.

    - ``student``: one student stays distracted, drowsy or away for ``persist`` seconds.
    - ``class_low``: class engagement stays below ``class_low`` for ``class_persist`` seconds.
    - ``confused``: at least ``confused_share`` of the active students (and at least two) stay
      confused for ``persist`` seconds.
    After a condition fires it stays quiet for ``cooldown`` seconds even if it still holds.
    """

    def __init__(
        self,
        *,
        persist: float = 30.0,
        class_low: float = 40.0,
        class_persist: float = 60.0,
        confused_share: float = 0.3,
        cooldown: float = 300.0,
    ):
        self.persist = persist
        self.class_low = class_low
        self.class_persist = class_persist
        self.confused_share = confused_share
        self.cooldown = cooldown
        self._since: dict[str, float] = {}  # condition key -> when it started holding
        self._fired: dict[str, float] = {}  # condition key -> when it last fired

    def check(
        self, t: float, students: Mapping[str, StudentState], class_engagement: float | None
    ) -> list[Alert]:
        """Alerts that fire at time ``t`` given every student (their state, label and ``presence`` as the page
        shows it: ``ClassView.presence``) and the class engagement. Only ``state``, ``presence`` and ``label``
        are read."""
        holding: dict[str, tuple[str, str | None, float, str, str]] = {}

        active = {sid: s for sid, s in students.items() if s.presence == "connected" and s.state}
        for sid, s in active.items():
            if s.state in LOW_ATTENTION:
                key = f"student:{sid}:{s.state}"
                words = _STATE_WORDS[s.state]
                holding[key] = (
                    "student", sid, self.persist,
                    f"{s.label or sid} has been {words} for {{held}} s",
                    f"state '{s.state}' held for {{held}} s (alerts after {self.persist:g} s)",
                )

        if class_engagement is not None and class_engagement < self.class_low:
            holding["class_low"] = (
                "class_low", None, self.class_persist,
                f"Class engagement has stayed below {self.class_low:g} for {{held}} s (now {class_engagement:.0f})",
                f"class engagement under {self.class_low:g} for {{held}} s (alerts after {self.class_persist:g} s)",
            )

        confused = [sid for sid, s in active.items() if s.state == "confused"]
        if active and len(confused) >= 2 and len(confused) / len(active) >= self.confused_share:
            holding["confused"] = (
                "confused", None, self.persist,
                f"{len(confused)} of {len(active)} students seem confused: a good moment to check understanding",
                f"{len(confused) / len(active):.0%} confused for {{held}} s "
                f"(alerts at {self.confused_share:.0%} after {self.persist:g} s)",
            )

        for key in list(self._since):
            if key not in holding:
                del self._since[key]

        alerts = []
        for key, (rule, sid, persist, message, reason) in holding.items():
            since = self._since.setdefault(key, t)
            held = t - since
            if held < persist:
                continue
            if t - self._fired.get(key, float("-inf")) < self.cooldown:
                continue
            self._fired[key] = t
            alerts.append(
                Alert(
                    key=key, rule=rule, t=t, student_id=sid,
                    message=message.format(held=round(held)), reason=reason.format(held=round(held)),
                )
            )
        return alerts
