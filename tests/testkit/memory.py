"""What a process really costs in memory: RSS, PSS and USS from ``/proc/<pid>/smaps_rollup``, and a server's kernels.

Kernels share pages (libraries mapped from the same files, pages inherited across a fork), so RSS counts shared
pages once per kernel; USS (private pages) is what one more kernel adds, PSS splits shared pages among sharers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Footprint:
    """One process's memory in bytes: ``uss`` is what ending it would free, ``pss`` its fair share of the rest."""

    rss: int
    pss: int
    uss: int  # Private_Clean + Private_Dirty
    swap: int = 0

    def __add__(self, other: "Footprint") -> "Footprint":
        return Footprint(self.rss + other.rss, self.pss + other.pss, self.uss + other.uss, self.swap + other.swap)

    def mb(self) -> dict[str, float]:
        return {k: round(v / 2**20, 1) for k, v in vars(self).items()}


ZERO = Footprint(0, 0, 0, 0)


def parse_smaps_rollup(text: str) -> Footprint:
    """The totals of a ``smaps_rollup`` file (values in kB there)."""
    kb: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) == 2 and fields[1] == "kB" and fields[0].isdigit():
            kb[name.strip()] = int(fields[0])
    if "Rss" not in kb:
        raise ValueError("not a smaps_rollup file: no Rss line")
    return Footprint(
        rss=kb["Rss"] * 1024,
        pss=kb.get("Pss", kb["Rss"]) * 1024,
        uss=(kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) * 1024,
        swap=kb.get("Swap", 0) * 1024,
    )


def footprint(pid: int) -> Footprint | None:
    """``pid``'s memory now, or None if it is gone (or not ours to read)."""
    try:
        return parse_smaps_rollup((PROC / str(pid) / "smaps_rollup").read_text())
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return None


def parent_of(stat: str) -> int:
    """The parent pid in a ``/proc/<pid>/stat`` line (the command name in parentheses may hold spaces)."""
    return int(stat.rsplit(")", 1)[1].split()[1])


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (a server's kernels are its children)."""
    found = []
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            try:
                if parent_of((PROC / entry.name / "stat").read_text()) == pid:
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except (FileNotFoundError, ProcessLookupError):
        return []


def is_kernel(pid: int) -> bool:
    """A Jupyter kernel started on a connection file (``-f .../kernel-<id>.json``)."""
    return any(arg.endswith(".json") and "kernel-" in arg for arg in cmdline(pid))


def is_fork_server(pid: int) -> bool:
    """The process ``smartsession serve --fork-kernels`` forks kernels from (they keep its command line)."""
    return "smartsession.serve.forking" in cmdline(pid)


def kernels_of(server_pid: int) -> dict[int, Footprint]:
    """Each running kernel of the server ``server_pid`` (its children, or its fork server's) and its memory."""
    found = {}
    for pid in children(server_pid):
        if is_fork_server(pid):
            kernels = children(pid)
        elif is_kernel(pid):
            kernels = [pid]
        else:
            continue
        for kernel in kernels:
            if (fp := footprint(kernel)) is not None:
                found[kernel] = fp
    return found
