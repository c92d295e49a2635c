"""Recovery decisions, pure: what follows a failed or lost attempt, which attempts a restart orphaned."""

from __future__ import annotations

import msgspec

from shared.domain.fleet import INFRASTRUCTURE_FAILURES, AgentView, FleetState, TaskView
from shared.events import FailureType

MAX_INFRASTRUCTURE_REQUEUES = 10
"""Attempts lost to dead agents are retried this many times beyond the task's own budget."""


class Requeue(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    attempt: int
    reason: str
    previous_agent_id: str
    not_before_ts: float
    excluded_agent_ids: list[str] = []


class GiveUp(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    attempt: int
    error: str
    failure_type: FailureType


def backoff_s(task: TaskView) -> float:
    """Exponential backoff after the task's n-th own failure (0 after infrastructure failures)."""
    policy = task.spec.retry
    if task.failure_type in INFRASTRUCTURE_FAILURES or task.task_failures == 0:
        return 0.0
    delay = policy.initial_backoff_s * policy.backoff_multiplier ** (task.task_failures - 1)
    return float(min(delay, policy.max_backoff_s))


def after_failed_attempt(task: TaskView, retryable: bool, now: float) -> Requeue | GiveUp:
    """Retry with backoff while the budget lasts, else fail the task for good."""
    budget = task.spec.retry.max_attempts
    out_of_budget = task.task_failures >= budget or task.attempt >= budget + MAX_INFRASTRUCTURE_REQUEUES
    if not retryable or out_of_budget:
        why = "not retryable" if not retryable else f"gave up after {task.attempt} attempt(s)"
        return GiveUp(
            task_id=task.task_id,
            attempt=task.attempt,
            error=f"{task.last_error} ({why})" if task.last_error else why,
            failure_type=task.failure_type or "agent_error",  # type: ignore[arg-type]
        )
    return Requeue(
        task_id=task.task_id,
        attempt=task.attempt + 1,
        reason=task.failure_type or "agent_error",
        previous_agent_id=task.agent_id or "",
        not_before_ts=now + backoff_s(task),
    )


def after_lost_attempt(task: TaskView, reason: FailureType) -> Requeue | GiveUp:
    """An attempt lost to the infrastructure (agent dead, restarted, quarantined): run it again now.

    Not charged to the task's retry budget, but bounded: a task that keeps taking agents down with
    it fails after ``MAX_INFRASTRUCTURE_REQUEUES`` attempts beyond its budget.
    """
    if task.attempt >= task.spec.retry.max_attempts + MAX_INFRASTRUCTURE_REQUEUES:
        return GiveUp(
            task_id=task.task_id,
            attempt=task.attempt,
            error=f"gave up after {task.attempt} attempt(s), the last lost to {reason}",
            failure_type=reason,
        )
    return Requeue(
        task_id=task.task_id,
        attempt=task.attempt + 1,
        reason=reason,
        previous_agent_id=task.agent_id or "",
        not_before_ts=0.0,
    )


def orphaned_by_restart(fleet: FleetState, agent: AgentView, session: str) -> list[str]:
    """Tasks the agent held under an older session: the new process does not know them."""
    orphans = []
    for task_id, attempt in agent.in_flight.items():
        task = fleet.tasks.get(task_id)
        if task is None or task.attempt != attempt or not task.assignments:
            continue
        if task.assignments[-1].session != session:
            orphans.append(task_id)
    return sorted(orphans)
