"""CPU time of a benchmark's processes, read from /proc: what a task costs, whatever the clock says.

On a shared machine wall-clock rates move by tens of percent from run to run; the CPU a process
spent (user + system, all its threads) over a window moves much less, so every throughput figure
is reported beside it, per process and per completed task.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (all its threads), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU spent by named processes between ``start`` and ``stop``.

    A label may name several processes (e.g. three router instances); a process that dies during
    the window counts up to its last sample, which ``sample`` refreshes.
    """

    pids: Mapping[str, list[int]]
    _first: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        self._first = self._read()
        self._last = dict(self._first)

    def sample(self) -> None:
        self._last.update(self._read())

    def stop(self) -> dict[str, float]:
        """Seconds of CPU per label over the window."""
        self.sample()
        return {
            label: sum(self._last.get(pid, 0.0) - self._first.get(pid, 0.0) for pid in pids)
            for label, pids in self.pids.items()
        }

    def _read(self) -> dict[int, float]:
        found: dict[int, float] = {}
        for pids in self.pids.values():
            for pid in pids:
                seconds = cpu_seconds(pid)
                if seconds is not None:
                    found[pid] = seconds
        return found


def per_task_ms(cpu_s: Mapping[str, float], tasks: int) -> dict[str, float]:
    """Milliseconds of CPU per task for each label (0 tasks: every figure 0)."""
    return {label: (seconds * 1000 / tasks if tasks else 0.0) for label, seconds in cpu_s.items()}
