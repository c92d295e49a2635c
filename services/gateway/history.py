"""The gateway's metric history: one sample per MONITORING_INTERVAL_SECONDS, kept METRICS_RETENTION_HOURS.

An in-memory ring per gateway instance (a restart starts it again; the log itself keeps every event,
and Prometheus keeps its own history of ``/metrics``). Bounded by both the retention and the number
of samples that retention can hold at the interval, so it never grows with uptime.
"""

from __future__ import annotations

import math
from collections import deque

import msgspec


class HistorySample(msgspec.Struct, frozen=True, kw_only=True):
    ts: float
    performance_score: float | None
    targets_met: int
    targets_measured: int
    total_targets: int
    orchestration_metrics: dict[str, float | None]
    """Each figure over METRICS_WINDOW_S ending at ``ts`` (null: nothing to measure it on)."""
    assignment_latency_p50_ms: float | None = None
    """The median beside ``task_assignment_latency_ms`` (its target is on the p99)."""


class MetricsHistory:
    def __init__(self, retention_s: float, interval_s: float) -> None:
        self.retention_s = retention_s
        self.samples: deque[HistorySample] = deque(maxlen=max(1, math.ceil(retention_s / interval_s) + 1))

    def add(self, sample: HistorySample) -> None:
        self.samples.append(sample)
        self.prune(sample.ts)

    def prune(self, now: float) -> None:
        oldest = now - self.retention_s
        while self.samples and self.samples[0].ts < oldest:
            self.samples.popleft()

    def since(self, ts: float) -> list[HistorySample]:
        """Samples taken at or after `ts`, oldest first."""
        return [sample for sample in self.samples if sample.ts >= ts]
