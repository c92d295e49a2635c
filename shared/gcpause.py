"""Garbage-collector pauses: keep what a service holds from its start out of later collections, and
count every collection's pause.

CPython's full (generation 2) collection walks every object the collector tracks, and while it runs
nothing else in the process does: the router's event loop stops deciding and appending. Most of
those objects are the process's own (modules, classes, the libraries' tables: about 40,000 of the
router's 58,000 with 2,000 tasks in its view) and live as long as it does. ``freeze_startup_heap``
moves them to the permanent generation once the service has started (its projections loaded from
their snapshot and caught up), so no later collection walks them again: a full collection of the
router's view then costs about 2 ms of CPU instead of 12 (measured with ``gc.collect`` on that
view), and under a load a full collection paused the router for up to 137 ms (wall time, on the
shared 2-core machine, during ``hive bench assign``), long enough to put every task submitted
meanwhile in the latency's last percent. What is frozen is still freed when nothing refers to it
any more; only a reference cycle among frozen objects that becomes garbage later is kept (none of
what a service loads forms one: projections are trees of structs, lists and dicts).

``GcPauses`` times each collection (``gc.callbacks``) into plain numbers, read by the service's
health answer and by Prometheus at scrape time: a callback must not take the metrics' locks, since
a collection can start while this very thread holds one.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
"""Upper bounds of the pause histogram, in seconds (then +Inf)."""
GENERATIONS = (0, 1, 2)


def freeze_startup_heap() -> int:
    """Collect once, then leave everything alive now out of every later collection; returns how
    many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses(Collector):
    """Pauses of this process's collections, per generation (``hive_gc_pause_seconds``)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.counts = {generation: [0] * (len(BUCKETS_S) + 1) for generation in GENERATIONS}
        """Per generation, collections per bucket (the last: longer than every bound)."""
        self.total_s = dict.fromkeys(GENERATIONS, 0.0)
        self.max_s = dict.fromkeys(GENERATIONS, 0.0)
        self.cpu_total_s = dict.fromkeys(GENERATIONS, 0.0)
        self.cpu_max_s = dict.fromkeys(GENERATIONS, 0.0)
        """The same in this thread's CPU time: what the collection itself cost, whatever else ran
        on the machine meanwhile (the wall-clock pause also counts the process waiting for a core)."""
        self._started = 0.0
        self._started_cpu = 0.0
        self._installed = False

    def reset(self) -> None:
        """Forget the collections so far (the service's start, the freeze's own collection)."""
        for generation in GENERATIONS:
            self.counts[generation] = [0] * (len(BUCKETS_S) + 1)
            self.total_s[generation] = 0.0
            self.max_s[generation] = 0.0
            self.cpu_total_s[generation] = 0.0
            self.cpu_max_s[generation] = 0.0

    def install(self) -> GcPauses:
        if not self._installed:
            gc.callbacks.append(self._on_gc)
            self._installed = True
        return self

    def close(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._on_gc)
            self._installed = False

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._started_cpu = time.thread_time()
            return
        self.record(
            info["generation"], time.perf_counter() - self._started, time.thread_time() - self._started_cpu
        )

    def record(self, generation: int, pause_s: float, cpu_s: float = 0.0) -> None:
        bucket = next((i for i, bound in enumerate(BUCKETS_S) if pause_s <= bound), len(BUCKETS_S))
        self.counts[generation][bucket] += 1
        self.total_s[generation] += pause_s
        self.max_s[generation] = max(self.max_s[generation], pause_s)
        self.cpu_total_s[generation] += cpu_s
        self.cpu_max_s[generation] = max(self.cpu_max_s[generation], cpu_s)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per generation: collections, their total and longest pause (ms) in wall-clock and CPU
        time, for the health answer."""
        return {
            str(generation): {
                "count": sum(self.counts[generation]),
                "total_ms": round(self.total_s[generation] * 1e3, 2),
                "max_ms": round(self.max_s[generation] * 1e3, 2),
                "cpu_total_ms": round(self.cpu_total_s[generation] * 1e3, 2),
                "cpu_max_ms": round(self.cpu_max_s[generation] * 1e3, 2),
            }
            for generation in GENERATIONS
        }

    def collect(self) -> Iterator[Any]:
        family = HistogramMetricFamily(
            "hive_gc_pause_seconds",
            "Pauses of the Python garbage collector, per generation (2: full collections)",
            labels=["service", "generation"],
        )
        for generation in GENERATIONS:
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip((*BUCKETS_S, float("inf")), self.counts[generation], strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            family.add_metric(
                [self.service, str(generation)], buckets=buckets, sum_value=self.total_s[generation]
            )
        yield family
