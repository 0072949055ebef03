"""CPU time of whole process trees, from /proc: where a heartbeat's cost goes, beyond the ingest process.

A PostgreSQL server is a postmaster and a process per connection; a connection that has closed is no longer
listed, but its CPU time is not lost: the postmaster reaped it, and the kernel adds a reaped child's time to
its parent's `cutime`/`cstime`. So a tree's time is, for each live process in it, its own time plus its
reaped children's.
"""

import os
from collections.abc import Mapping
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Fields after the command name, which may itself hold spaces and parentheses.
    return text.rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_cpu_seconds(pid: int, children: Mapping[int, list[int]] | None = None) -> float:
    """User + system time of `pid` and its descendants, live or reaped."""
    for _attempt in range(5):
        listed = _children() if children is None else children
        total_ticks, reaped_ticks = _tree_ticks(pid, listed)
        # A child reaped between reading its parent and reading it would be in neither: read the parents'
        # reaped-children time again, and start over if it moved meanwhile.
        if all(_reaped_ticks(parent) == ticks for parent, ticks in reaped_ticks.items()):
            break
        children = None
    return total_ticks / _TICKS_PER_SECOND


def _tree_ticks(pid: int, children: Mapping[int, list[int]]) -> tuple[int, dict[int, int]]:
    total_ticks, reaped_ticks, pending = 0, {}, [pid]
    while pending:
        current = pending.pop()
        if (fields := _stat_fields(current)) is None:
            continue
        # utime, stime, cutime, cstime: fields 14–17 of proc(5), counted from the state field as 3.
        total_ticks += sum(int(value) for value in fields[11:15])
        reaped_ticks[current] = int(fields[13]) + int(fields[14])
        pending += children.get(current, [])
    return total_ticks, reaped_ticks


def _reaped_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[13]) + int(fields[14])


class CpuMeter:
    """CPU seconds spent by named process trees between `start()` and `stop()`."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._before: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        children = _children()
        return {name: tree_cpu_seconds(pid, children) for name, pid in self.pids.items()}

    def start(self) -> "CpuMeter":
        self._before = self._now()
        return self

    def stop(self) -> dict[str, float]:
        after = self._now()
        self.spent = {name: after[name] - self._before[name] for name in self.pids}
        return self.spent
