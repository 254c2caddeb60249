"""Temporal smoothing with hysteresis: a steady face keeps a steady state; a change needs evidence over time.

Time-based (seconds of media time, not frame counts) so it behaves the same at 5 or 30 frames per second.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Mapping

#: Seconds of evidence considered for a state change.
WINDOW = 1.0
#: A new state takes over only when it holds at least this share of the (confidence-weighted) evidence in the
#: window, and the window covers at least ``MIN_SPAN`` seconds; the current state stays otherwise (hysteresis).
SWITCH_SHARE = 0.6
MIN_SPAN = 0.5
#: Attention is smoothed over ``WINDOW``; the expression of an attending face over this shorter window with this
#: shorter span: a smile comes and goes within a second while the student keeps attending, and flicker between
#: expressions costs less than a missed smile (the rule's hysteresis still holds a steady face steady).
EXPRESSION_WINDOW, EXPRESSION_MIN_SPAN = 0.5, 0.25
#: Time constant (seconds) of the exponential smoothing of the engagement score.
ENGAGEMENT_TAU = 1.0
#: A gap longer than this (seconds) between frames starts afresh: old evidence says nothing about now.
RESET_GAP = 3.0


class StateSmoother:
    """Feed raw per-frame states; get the smoothed state, its evidence share, and a smoothed engagement."""

    def __init__(self, window: float = WINDOW, switch_share: float = SWITCH_SHARE, min_span: float = MIN_SPAN,
                 engagement_tau: float = ENGAGEMENT_TAU):
        self.window = window
        self.switch_share = switch_share
        self.min_span = min_span
        self.engagement_tau = engagement_tau
        self.reset()

    def reset(self) -> None:
        self._evidence: deque[tuple[float, str, float]] = deque()
        self.state: str | None = None
        self.engagement: float | None = None
        self.components: dict[str, float] = {}
        self._t: float | None = None

    def update(self, t: float, state: str, confidence: float, engagement: float,
               components: Mapping[str, float] | None = None) -> tuple[str, float, float]:
        """Add one frame; return (smoothed state, its share of the window's evidence, smoothed engagement).

        ``components`` (the score's parts) are smoothed alike into :attr:`components`, so bars shown beside the
        smoothed score add up to it.
        """
        if self._t is not None and (t < self._t or t - self._t > RESET_GAP):
            self.reset()
        dt = 0.0 if self._t is None else t - self._t
        self._t = t
        # A floor on the weight keeps low-confidence frames from vanishing from the evidence entirely.
        self._evidence.append((t, state, max(confidence, 0.05)))
        while self._evidence and self._evidence[0][0] < t - self.window:
            self._evidence.popleft()
        totals: dict[str, float] = {}
        for _, s, w in self._evidence:
            totals[s] = totals.get(s, 0.0) + w
        whole = sum(totals.values())
        leader = max(totals, key=totals.get)
        span = t - self._evidence[0][0]
        if self.state is None:
            self.state = state
        elif leader != self.state and totals[leader] / whole >= self.switch_share and span >= self.min_span:
            self.state = leader
        alpha = 1.0 if self.engagement is None else 1.0 - math.exp(-dt / self.engagement_tau)
        self.engagement = engagement if self.engagement is None else self.engagement + alpha * (engagement - self.engagement)
        for name, value in (components or {}).items():
            old = self.components.get(name)
            self.components[name] = value if old is None else old + alpha * (value - old)
        return self.state, totals.get(self.state, 0.0) / whole, self.engagement
