"""Reading concurrency keys back from the event log, independently of the router's code."""

from __future__ import annotations

from collections.abc import Sequence

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
    """Replay assignments and their ends: (peak running per concurrency key, running at the end)."""
    key_of: dict[str, str] = {}
    running: dict[tuple[str, int], str] = {}
    load: dict[str, int] = {}
    peak: dict[str, int] = {}
    for event in events:
        if isinstance(event, TaskSubmitted) and event.concurrency_key is not None:
            key_of[event.task_id] = event.concurrency_key
        elif isinstance(event, TaskAssigned) and event.task_id in key_of:
            key = key_of[event.task_id]
            if (event.task_id, event.attempt) not in running:
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
