"""How many student kernels a machine can hold and preheat for a class, and how long preheating takes.

Pure arithmetic on a :class:`Machine` (cores, memory), so the defaults of ``smartsession serve`` are testable
for any machine; only :meth:`Machine.here` reads this one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

MB = 2**20
#: Memory one more student kernel takes, by (analysis mode, forked from one preloaded process): its PSS, the
#: private pages plus its share of those shared with the other kernels, measured with ``benchmarks/capacity.py``
#: (docs/SERVE.md has the figures). A server-mode kernel holds MediaPipe and its graph; a browser-mode kernel
#: does not, unless its browser falls back to sending pictures (then it grows to the server-mode figure, which
#: RESERVE_BYTES covers for a few); a forked kernel shares what the fork server imported.
KERNEL_BYTES = {
    ("server", False): 300 * MB,
    ("server", True): 230 * MB,
    ("browser", False): 200 * MB,
    ("browser", True): 80 * MB,
}
#: Memory left for the server, the hub, the teacher's kernel and the rest of the machine.
RESERVE_BYTES = 2**30
#: CPU seconds one student kernel needs to warm (36 kernels took about 3 minutes on 2 cores).
WARM_CORE_SECONDS = 10.0
#: A default pool warms within about this many seconds: beyond, the teacher waits and late kernels help no one.
WARM_TARGET_SECONDS = 120.0
#: Pool kernels per expected student: every reload takes a kernel too.
RELOAD_MARGIN = 1.2


@dataclass(frozen=True)
class Machine:
    cores: int
    memory: int  # bytes available for kernels when the server starts
    kernel_bytes: int = KERNEL_BYTES["server", False]  # what one student kernel takes (the largest unless told)

    @classmethod
    def here(cls, analysis: str = "server", forked: bool = False) -> "Machine":
        """This machine: the cores this process may use and the memory the kernel reports as available, for
        student kernels that analyse faces as ``analysis`` says and are forked or not."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return cls(cores=max(1, cores), memory=_available_memory(), kernel_bytes=KERNEL_BYTES[analysis, forked])

    @property
    def kernels_fit(self) -> int:
        """Student kernels (pool and pages together) that fit in memory, at least 1."""
        return max(1, (self.memory - RESERVE_BYTES) // self.kernel_bytes)


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_pool_size(machine: Machine, class_size: int) -> int:
    """Preheated kernels: the class plus reloads, no more than warm in about two minutes or memory holds."""
    warmable = int(machine.cores * WARM_TARGET_SECONDS / WARM_CORE_SECONDS)
    return max(1, min(math.ceil(class_size * RELOAD_MARGIN), warmable, machine.kernels_fit))


#: Students one core carries at full rate, measured by ``benchmarks/capacity.py`` (docs/BENCHMARKS.md, 2026-12-07,
#: at the page's rates): 200 in browser mode (0.5 s batches through the face pipe, the machine 77 % busy with the
#: benchmark's own simulated pages and browser on it, so ~80 a core leaves room for teachers and reloads) and
#: 13-15 in server mode on 2 cores.
STUDENTS_PER_CORE = {"browser": 80, "server": 7}


def cpu_students(cores: int, analysis: str) -> int:
    """About how many students this machine's cores measure at full rate in ``analysis`` mode."""
    return STUDENTS_PER_CORE.get(analysis, STUDENTS_PER_CORE["server"]) * max(1, cores)


def default_max_students(machine: Machine) -> int:
    """Student pages served at once: what memory holds (pool refills wait while it is full, see pool.py)."""
    return machine.kernels_fit


def warm_seconds(pool_size: int, cores: int) -> float:
    """About how long ``pool_size`` kernels take to warm on ``cores`` cores."""
    return pool_size * WARM_CORE_SECONDS / max(1, cores)


def about(seconds: float) -> str:
    """A duration as a person says it: "about 40 seconds", "about 2 minutes"."""
    if seconds < 90:
        return f"about {max(10, round(seconds / 10) * 10):.0f} seconds"
    return f"about {round(seconds / 60):.0f} minutes"
