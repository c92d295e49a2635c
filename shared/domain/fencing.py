"""Fencing: may this agent still report on this attempt of a task? Pure, from the task's events."""

from __future__ import annotations

from collections.abc import Iterable

from shared.events import (
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.recorded import Recorded


def attempt_verdict(events: Iterable[Recorded], agent_id: str, attempt: int) -> str | None:
    """None if `agent_id` may report on `attempt`; otherwise why the report is refused."""
    current = 0
    terminal = ""
    started_by: dict[int, str] = {}
    failed: dict[int, str] = {}
    for recorded in events:
        event = recorded.event
        match event:
            case TaskSubmitted():
                current = max(current, 1)
            case TaskRequeued():
                current = max(current, event.attempt)
            case TaskStarted():
                started_by.setdefault(event.attempt, event.agent_id)
            case TaskAttemptFailed():
                failed.setdefault(event.attempt, event.failure_type)
            case TaskCompleted():
                terminal = terminal or "completed"
            case TaskFailed():
                terminal = terminal or "failed"
            case TaskCancelled():
                terminal = terminal or "cancelled"
            case _:
                pass
    if current == 0:
        return "unknown task"
    if terminal:
        return f"task already {terminal}"
    if attempt != current:
        return f"attempt {attempt} superseded by attempt {current}"
    if attempt in failed:
        return f"attempt {attempt} already failed ({failed[attempt]})"
    owner = started_by.get(attempt)
    if owner is not None and owner != agent_id:
        return f"attempt {attempt} is held by agent {owner}"
    return None
