"""What ``smartsession serve`` says on its terminal after the banner: one line per event a teacher cares about.

Pure: ``Terminal.lines(now, pool, students)`` compares with what it said before and returns the lines to print;
the app asks it every few seconds. Kernel bookkeeping stays in the log at ``--SmartSessionApp.log_level=INFO``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from smartsession.serve.pool import PoolStatus


@dataclass
class Terminal:
    """The pool warm, emptied by arriving students and warm again; how many students are connected, at most
    every ``every`` seconds (a class arriving is a few lines, not one per student)."""

    every: float = 10.0
    _pool: str = "filling"  # "filling" until first warm, then "warm" or "empty"
    _students: int = 0
    _said_students_at: float = field(default=float("-inf"))

    def lines(self, now: float, pool: PoolStatus, students: int) -> list[str]:
        out = []
        if pool.size:
            if pool.warm and self._pool != "warm":
                out.append(f"student kernels ready: {pool.warm_count} warm, student pages open at once")
                self._pool = "warm"
            elif pool.warm_count == 0 and self._pool == "warm":
                out.append("student kernels all in use: new pages start their own kernel (slower) until refilled")
                self._pool = "empty"
        if students != self._students and now - self._said_students_at >= self.every:
            out.append(f"students connected: {students}")
            self._students, self._said_students_at = students, now
        return [f"{time.strftime('%H:%M:%S', time.localtime(now))}  {line}" for line in out]
