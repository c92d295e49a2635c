"""Cancelling a task: the terminal event and the word to the agent holding it, built in one place.

The gateway (one task) and the workflow service (the tasks of cancelled steps) append the same
events with the same message ids, so a cancellation requested twice is stored once.
"""

from __future__ import annotations

from shared.domain.fleet import TaskView
from shared.events import TaskCancelled, TaskCancelRequested


def holder_of(task: TaskView) -> str | None:
    """The agent working on the task's current attempt, if any."""
    return task.agent_id if task.status in ("assigned", "running") else None


def cancellation(task: TaskView, reason: str, causation_id: str = "") -> TaskCancelled:
    """The terminal event; append it against the task's last sequence with ``cancel_msg_id``."""
    return TaskCancelled(
        task_id=task.task_id,
        reason=reason,
        agent_id=holder_of(task) or "",
        attempt=task.attempt,
        correlation_id=task.spec.correlation_id,
        causation_id=causation_id,
    )


def cancel_notice(task: TaskView, reason: str, causation_id: str = "") -> TaskCancelRequested | None:
    """What tells the holding agent to stop (None when no agent holds the task).

    A notification, not a decision: it cannot conflict, so it is appended without a guard.
    """
    holder = holder_of(task)
    if holder is None:
        return None
    return TaskCancelRequested(
        agent_id=holder,
        task_id=task.task_id,
        attempt=task.attempt,
        reason=reason,
        correlation_id=task.spec.correlation_id,
        causation_id=causation_id,
    )
