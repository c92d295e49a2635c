"""CPU and memory utilisation of the machine the gateway runs on, read from /proc.

``GET /orchestration/metrics`` reports them in ``system_metrics``: the host's, not Hive's own
processes' (which may run on other machines), so on ``hive up`` they say how busy the one machine
running everything is. CPU is measured between two readings of ``/proc/stat``: since the previous
request (at least ``MIN_INTERVAL_S`` apart, else the previous figure is given again), the first time
since boot. Memory is ``1 - MemAvailable / MemTotal`` from ``/proc/meminfo``. Without /proc (not
Linux) both are null.
"""

from __future__ import annotations

import time
from pathlib import Path

MIN_INTERVAL_S = 0.5


def cpu_times(stat: str) -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from the text of /proc/stat (idle and iowait are not busy)."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(value) for value in fields[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            total = sum(values[:8])  # guest time is already counted in user and nice
            return total - idle, total
    return None


def memory_percent(meminfo: str) -> float | None:
    """Share of memory in use, in percent, from the text of /proc/meminfo."""
    found: dict[str, int] = {}
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        if name in ("MemTotal", "MemAvailable"):
            found[name] = int(rest.split()[0])
    total, available = found.get("MemTotal"), found.get("MemAvailable")
    if not total or available is None:
        return None
    return round(100.0 * (1.0 - available / total), 2)


class HostUsage:
    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self._last: tuple[int, int] | None = None
        self._last_at = 0.0
        self._cpu: float | None = None

    def _read(self, name: str) -> str | None:
        try:
            return (self.proc / name).read_text()
        except OSError:
            return None

    def cpu_percent(self) -> float | None:
        now = time.monotonic()
        if self._cpu is not None and now - self._last_at < MIN_INTERVAL_S:
            return self._cpu
        text = self._read("stat")
        reading = cpu_times(text) if text is not None else None
        if reading is None:
            return None
        busy, total = reading
        before_busy, before_total = self._last or (0, 0)
        if total > before_total:
            self._cpu = round(100.0 * (busy - before_busy) / (total - before_total), 2)
        self._last, self._last_at = reading, now
        return self._cpu

    def memory_percent(self) -> float | None:
        text = self._read("meminfo")
        return memory_percent(text) if text is not None else None
