"""Cumulative histograms over the whole log, in Prometheus's shape (counts per upper bound). Pure.

The windows of ``windows.py`` answer "over the last N seconds"; Prometheus wants counters that only
grow, so it can compute rates and quantiles over any range itself. A projection folds each
observation into one of these; the gateway exports them as ``*_bucket``, ``*_sum`` and ``*_count``.
Replaying the log gives the same counts.
"""

from __future__ import annotations

import bisect
from typing import Final

import msgspec

ASSIGNMENT_BUCKETS_S: Final = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
"""orchestration_task_assignment_duration_seconds: around the 20 ms target."""
RECOVERY_BUCKETS_S: Final = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
"""orchestration_failure_recovery_duration_seconds: around the 1.5 s target."""


class CumulativeHistogram(msgspec.Struct, kw_only=True):
    bounds: tuple[float, ...]
    """Upper bounds (inclusive), ascending; a last bucket without bound (+Inf) follows."""
    counts: list[int] = []
    """Observations per bucket (not cumulative), one more than ``bounds``."""
    total: float = 0.0
    """Sum of the observations."""

    def observe(self, value: float) -> None:
        if len(self.counts) != len(self.bounds) + 1:
            self.counts = [0] * (len(self.bounds) + 1)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), the last bound being +Inf."""
        counts = self.counts or [0] * (len(self.bounds) + 1)
        running = 0
        out = []
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            out.append((bound, running))
        return out


def assignment_histogram() -> CumulativeHistogram:
    return CumulativeHistogram(bounds=ASSIGNMENT_BUCKETS_S)


def recovery_histogram() -> CumulativeHistogram:
    return CumulativeHistogram(bounds=RECOVERY_BUCKETS_S)
