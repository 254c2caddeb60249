"""What a screen reader hears: a polite live region, and the rule that keeps a flickering state from chattering.

``Announcer`` is pure (time comes in as an argument); ``LiveRegion`` is a small anywidget, ``announce.js``
beside it, whose ``role="status"`` element stays in the page so that assistive technology notices each change.
"""

from __future__ import annotations

import pathlib

import anywidget
import traitlets


class Announcer:
    """Decides when a text is worth announcing.

    A text is announced once it has been offered unchanged for ``settle`` seconds (a state that flickers
    for a frame or two is never read out), at most once every ``min_gap`` seconds, and never twice in a
    row. ``say_now`` is for the student's own actions and errors, which are confirmed at once.
    """

    def __init__(self, *, settle: float = 2.0, min_gap: float = 5.0):
        self.settle = settle
        self.min_gap = min_gap
        self.last = ""
        self._last_at = float("-inf")
        self._candidate = ""
        self._since = 0.0

    def offer(self, text: str, now: float) -> None:
        """The text that would describe the situation at ``now``."""
        if text != self._candidate:
            self._candidate, self._since = text, now

    def poll(self, now: float) -> str | None:
        """The text to announce at ``now``, or None to stay quiet."""
        text = self._candidate
        if not text or text == self.last:
            return None
        if now - self._since < self.settle or now - self._last_at < self.min_gap:
            return None
        self.last, self._last_at = text, now
        return text

    def say_now(self, text: str, now: float) -> str:
        """Announce ``text`` at once (and count it for the gap)."""
        self.last, self._last_at = text, now
        self._candidate, self._since = text, now
        return text


class LiveRegion(anywidget.AnyWidget):
    """A visually hidden polite live region; assign ``text`` to have it read out."""

    _esm = pathlib.Path(__file__).with_name("announce.js")

    text = traitlets.Unicode("").tag(sync=True)
