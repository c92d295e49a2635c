"""The figures of ``hive bench keys``, read back from the event log alone. Pure.

``key_peaks`` replays assignments and their ends per concurrency key, independently of the router's
own bookkeeping: the peak running per key (a limit violation is a peak above the key's limit) and
what still runs at the end (a leaked slot would show there). ``slot_use`` integrates, over the run,
the tasks running against what the limits allowed given the work waiting: for each key the smaller
of its limit and its unfinished tasks, summed, capped by the fleet's capacity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.events import (
    AnyEvent,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRequeued,
    TaskSubmitted,
)


def key_peaks(events: Sequence[AnyEvent]) -> tuple[dict[str, int], dict[str, int]]:
    """(peak running per concurrency key, running at the end), replayed from the log."""
    key_of: dict[str, str] = {}
    running: dict[tuple[str, int], str] = {}
    load: dict[str, int] = {}
    peak: dict[str, int] = {}
    for event in events:
        if isinstance(event, TaskSubmitted) and event.concurrency_key is not None:
            key_of[event.task_id] = event.concurrency_key
        elif isinstance(event, TaskAssigned) and event.task_id in key_of:
            if (event.task_id, event.attempt) not in running:
                key = key_of[event.task_id]
                running[(event.task_id, event.attempt)] = key
                load[key] = load.get(key, 0) + 1
                peak[key] = max(peak.get(key, 0), load[key])
        elif isinstance(event, TaskCompleted | TaskAttemptFailed):
            _end(running, load, event.task_id, event.attempt)
        elif isinstance(event, TaskRequeued):
            _end(running, load, event.task_id, event.attempt - 1)
        elif isinstance(event, TaskFailed | TaskCancelled):
            for attempt in [a for (t, a) in running if t == event.task_id]:
                _end(running, load, event.task_id, attempt)
    return peak, load


def _end(running: dict[tuple[str, int], str], load: dict[str, int], task_id: str, attempt: int) -> None:
    key = running.pop((task_id, attempt), None)
    if key is not None:
        load[key] -= 1


def violations(peaks: Mapping[str, int], limits: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """Keys whose peak exceeded their limit: key -> (peak, limit)."""
    return {key: (peak, limits[key]) for key, peak in peaks.items() if key in limits and peak > limits[key]}


@dataclass(frozen=True)
class SlotUse:
    used_slot_s: float
    """Task-seconds run."""
    allowed_slot_s: float
    """Task-seconds the limits (and the fleet's capacity) allowed, given the unfinished work."""

    @property
    def utilisation(self) -> float:
        return self.used_slot_s / self.allowed_slot_s if self.allowed_slot_s > 0 else 0.0


def slot_use(events: Sequence[AnyEvent], limits: Mapping[str, int], capacity: int) -> SlotUse:
    """Integrate running tasks and allowed slots over the log's time, from the first submission
    to the last end (each task's key's limit; a task without a limited key counts 1 slot per task)."""
    key_of: dict[str, str] = {}
    unfinished: dict[str, int] = {}
    running: set[tuple[str, int]] = set()
    allowed = 0
    used = 0.0
    possible = 0.0
    last_ts: float | None = None

    def allowance(key: str) -> int:
        return min(limits.get(key, unfinished.get(key, 0)), unfinished.get(key, 0))

    for event in events:
        if last_ts is not None and event.ts > last_ts:
            span = event.ts - last_ts
            used += len(running) * span
            possible += min(capacity, allowed) * span
        if last_ts is not None:
            last_ts = max(last_ts, event.ts)
        elif isinstance(event, TaskSubmitted):
            last_ts = event.ts  # the run starts at its first submission
        if isinstance(event, TaskSubmitted):
            key = event.concurrency_key or event.task_id
            key_of[event.task_id] = key
            before = allowance(key)
            unfinished[key] = unfinished.get(key, 0) + 1
            allowed += allowance(key) - before
        elif isinstance(event, TaskAssigned) and event.task_id in key_of:
            running.add((event.task_id, event.attempt))
        elif isinstance(event, TaskAttemptFailed | TaskCompleted):
            running.discard((event.task_id, event.attempt))
        elif isinstance(event, TaskRequeued):
            running.discard((event.task_id, event.attempt - 1))
        if isinstance(event, TaskCompleted | TaskFailed | TaskCancelled) and event.task_id in key_of:
            for attempt in [a for (t, a) in running if t == event.task_id]:
                running.discard((event.task_id, attempt))
            key = key_of.pop(event.task_id)
            before = allowance(key)
            unfinished[key] -= 1
            allowed += allowance(key) - before
    return SlotUse(used_slot_s=used, allowed_slot_s=possible)


def refill_gaps(events: Sequence[AnyEvent]) -> list[float]:
    """For each end of a keyed task while tasks of its key still wait: seconds until the key's next
    assignment (how long a freed slot stays empty; the router's share of lost utilisation)."""
    key_of: dict[str, str] = {}
    waiting: dict[str, int] = {}
    freed: dict[str, list[float]] = {}
    gaps: list[float] = []
    for event in events:
        if isinstance(event, TaskSubmitted) and event.concurrency_key is not None:
            key_of[event.task_id] = event.concurrency_key
            waiting[event.concurrency_key] = waiting.get(event.concurrency_key, 0) + 1
        elif isinstance(event, TaskAssigned) and event.task_id in key_of:
            key = key_of[event.task_id]
            waiting[key] = max(0, waiting.get(key, 0) - 1)
            if freed.get(key):
                gaps.append(max(0.0, event.ts - freed[key].pop(0)))
        elif isinstance(event, TaskCompleted) and event.task_id in key_of:
            key = key_of[event.task_id]
            if waiting.get(key, 0) > 0:
                freed.setdefault(key, []).append(event.ts)
    return gaps


def fill_time(events: Sequence[AnyEvent], slots: int, share: float = 0.9) -> float | None:
    """Seconds from the first submission until `share` of `slots` ran at once (None: never)."""
    start: float | None = None
    running = 0
    for event in events:
        if isinstance(event, TaskSubmitted) and start is None:
            start = event.ts
        elif isinstance(event, TaskAssigned):
            running += 1
            if start is not None and running >= share * slots:
                return event.ts - start
        elif isinstance(event, TaskCompleted | TaskAttemptFailed):
            running -= 1
    return None
