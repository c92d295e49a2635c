"""Message ids (``Nats-Msg-Id``) that several writers must agree on, so that whichever appends a
decision first stores it and the others' copies are dropped as duplicates. Pure, no events."""

from __future__ import annotations


def cancel_msg_id(task_id: str) -> str:
    """A task's cancellation: one per task."""
    return f"cancel:{task_id}"


def notice_msg_id(task_id: str, attempt: int) -> str:
    """Telling an agent to stop an attempt: one per attempt (gateway, workflow, recovery, balancer)."""
    return f"cancel-request:{task_id}:{attempt}"


def report_msg_id(event_type: str, task_id: str, attempt: int) -> str:
    """A report on an attempt: one of each kind per attempt, whoever (the agent, or recovery on its
    behalf) appends it first."""
    return f"{event_type}:{task_id}:{attempt}"


def alert_msg_id(scope: str, version: int) -> str:
    """A performance alert decided at a version of its target's alerts: one, whichever gateway decides."""
    return f"alert:{scope}:{version}"
