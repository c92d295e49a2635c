"""Bounded windows over event time: per-second sums and latency histograms. Pure.

Figures "over the last N seconds" must not grow with history: a window keeps one small entry per
second of event time (the ``ts`` of the events, so a replay gives the same figures), dropped once
older than its horizon, never one entry per event.
"""

from __future__ import annotations

import math
from typing import Final, TypeVar

import msgspec

V = TypeVar("V")

HORIZON_S: Final = 3600.0
"""Oldest second a window keeps: the longest window a figure may be asked for."""

BIN_FLOOR_MS: Final = 0.1
BIN_RATIO: Final = 1.04
"""Latency histogram bins: (0, 0.1 ms], then each 4% wider than the last (a percentile is reported
as its bin's upper edge: at most 4% above the true value, never below it)."""


class Sums(msgspec.Struct, frozen=True, kw_only=True):
    a: float = 0.0
    b: float = 0.0
    first_ts: float | None = None
    """Event time of the first addition within the window (None: nothing added)."""


class WindowSums(msgspec.Struct, kw_only=True):
    """Per-second sums of two quantities (hits and trials, misplaced and in-flight tasks, ...)."""

    horizon_s: float = HORIZON_S
    buckets: dict[int, list[float]] = {}
    """second -> [sum of a, sum of b, first ts]; seconds in insertion order (oldest first)."""
    newest: int = 0

    def add(self, ts: float, a: float, b: float = 1.0) -> None:
        second = math.floor(ts)
        bucket = self.buckets.get(second)
        if bucket is None:
            self.buckets[second] = [a, b, ts]
            if second > self.newest:
                self.newest = second
                _prune(self.buckets, second - self.horizon_s)
            return
        bucket[0] += a
        bucket[1] += b
        if ts < bucket[2]:
            bucket[2] = ts

    def sums(self, since_ts: float, until_ts: float = math.inf) -> Sums:
        """Sums over the seconds from `since_ts` to `until_ts` (whole seconds, both ends included)."""
        start, end = math.floor(since_ts), until_ts
        a = b = 0.0
        first: float | None = None
        for second, (sa, sb, ts) in self.buckets.items():
            if second < start or second > end:
                continue
            a += sa
            b += sb
            if first is None or ts < first:
                first = ts
        return Sums(a=a, b=b, first_ts=first)


class LatencyWindow(msgspec.Struct, kw_only=True):
    """Per-second histograms of durations (ms) on log-spaced bins, for percentiles over a window."""

    horizon_s: float = HORIZON_S
    buckets: dict[int, dict[int, int]] = {}
    """second -> bin -> count."""
    newest: int = 0

    def add(self, ts: float, ms: float) -> None:
        second = math.floor(ts)
        bucket = self.buckets.get(second)
        if bucket is None:
            bucket = self.buckets[second] = {}
            if second > self.newest:
                self.newest = second
                _prune(self.buckets, second - self.horizon_s)
        index = bin_of(ms)
        bucket[index] = bucket.get(index, 0) + 1

    def merged(self, since_ts: float, until_ts: float = math.inf) -> dict[int, int]:
        """The histogram of the seconds from `since_ts` to `until_ts` (whole seconds, both included)."""
        start, end = math.floor(since_ts), until_ts
        total: dict[int, int] = {}
        for second, bins in self.buckets.items():
            if second < start or second > end:
                continue
            for index, count in bins.items():
                total[index] = total.get(index, 0) + count
        return total


def _prune(buckets: dict[int, V], before: float) -> None:
    """Drop the oldest seconds (insertion order is nearly time order) older than `before`."""
    while buckets:
        oldest = next(iter(buckets))
        if oldest >= before:
            return
        del buckets[oldest]


def bin_of(ms: float) -> int:
    if ms <= BIN_FLOOR_MS:
        return 0
    return max(1, math.ceil(math.log(ms / BIN_FLOOR_MS) / math.log(BIN_RATIO) - 1e-9))


def bin_upper_ms(index: int) -> float:
    return BIN_FLOOR_MS * BIN_RATIO**index


def histogram_count(histogram: dict[int, int]) -> int:
    return sum(histogram.values())


def histogram_percentile(histogram: dict[int, int], q: float) -> float | None:
    """The nearest-rank `q`-th percentile (0-100) as its bin's upper edge; None when empty."""
    total = histogram_count(histogram)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total / 100 - 1e-9))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bin_upper_ms(index)
    return bin_upper_ms(max(histogram))
