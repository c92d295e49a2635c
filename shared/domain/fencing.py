"""Fencing: may this agent still report on this attempt of a task? Pure, from the task's events."""

from __future__ import annotations

from collections.abc import Iterable

from shared.events import (
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskQueued,
    TaskReport,
    TaskRequeued,
    TaskSubmitted,
)
from shared.recorded import Recorded


def attempt_verdict(events: Iterable[Recorded], agent_id: str, attempt: int) -> str | None:
    """None if `agent_id` may report on `attempt`; otherwise why the report is refused.

    `events` may be the task's whole history or only its last events that matter (the last on the
    subjects services append to, the last report naming this agent, the last completion). Another
    agent's report never makes this agent give up: it is a forgery no projection applies, or about
    a later attempt that the services' own events already show superseded this one (a completion of
    that attempt then only says why).
    """
    current = 0
    terminal = ""
    failed: dict[int, str] = {}
    completed_by_others: set[int] = set()
    for recorded in events:
        event = recorded.event
        if isinstance(event, TaskReport) and event.agent_id != agent_id:
            if isinstance(event, TaskCompleted):
                completed_by_others.add(event.attempt)
            continue
        match event:
            case TaskSubmitted():
                current = max(current, 1)
            case TaskRequeued() | TaskQueued():
                current = max(current, event.attempt)
            case TaskAttemptFailed():
                failed.setdefault(event.attempt, event.failure_type)
                current = max(current, event.attempt)
            case TaskCompleted():
                terminal = terminal or "completed"
            case TaskReport():
                current = max(current, event.attempt)
            case TaskFailed():
                terminal = terminal or "failed"
                current = max(current, event.attempt)
            case TaskCancelled():
                terminal = terminal or "cancelled"
            case _:
                pass
    if current > attempt and current in completed_by_others:
        terminal = terminal or "completed"
    if current == 0 and not terminal:
        return "unknown task"
    if terminal:
        return f"task already {terminal}"
    if attempt != current:
        return f"attempt {attempt} superseded by attempt {current}"
    if attempt in failed:
        return f"attempt {attempt} already failed ({failed[attempt]})"
    return None
