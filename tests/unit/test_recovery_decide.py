"""Retry decisions and orphan detection, without NATS."""

from __future__ import annotations

from services.recovery.decide import GiveUp, Requeue, after_failed_attempt, backoff_s, orphaned_by_restart
from shared.domain.fencing import attempt_verdict
from shared.domain.fleet import FleetState, apply_fleet
from shared.events import (
    AgentRegistered,
    AnyEvent,
    RetryPolicy,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.recorded import Recorded


def fold(*events: AnyEvent) -> FleetState:
    state = FleetState()
    for seq, event in enumerate(events, start=1):
        apply_fleet(state, Recorded(seq, event.subject, event))
    return state


def failed_once(policy: RetryPolicy, failure_type: str = "agent_error") -> FleetState:
    return fold(
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}),
        TaskSubmitted(task_id="t", task_type="x", retry=policy),
        TaskAssigned(agent_id="a", task_id="t", attempt=1),
        TaskAttemptFailed(task_id="t", agent_id="a", attempt=1, error="boom", failure_type=failure_type),  # type: ignore[arg-type]
    )


def test_a_failed_attempt_is_retried_with_exponential_backoff() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=0.5, backoff_multiplier=2.0, max_backoff_s=1.5)
    task = failed_once(policy).tasks["t"]
    decision = after_failed_attempt(task, retryable=True, now=100.0)
    assert isinstance(decision, Requeue)
    assert decision.attempt == 2 and decision.not_before_ts == 100.5
    task.task_failures = 3
    assert backoff_s(task) == 1.5  # 0.5 * 2**2 = 2.0, capped


def test_the_task_fails_for_good_when_its_budget_is_spent_or_the_error_is_not_retryable() -> None:
    task = failed_once(RetryPolicy(max_attempts=1)).tasks["t"]
    spent = after_failed_attempt(task, retryable=True, now=0.0)
    assert isinstance(spent, GiveUp) and "gave up after 1 attempt" in spent.error
    task = failed_once(RetryPolicy(max_attempts=5)).tasks["t"]
    fatal = after_failed_attempt(task, retryable=False, now=0.0)
    assert isinstance(fatal, GiveUp) and "not retryable" in fatal.error


def test_infrastructure_failures_do_not_use_up_the_retry_budget() -> None:
    task = failed_once(RetryPolicy(max_attempts=1), "agent_unresponsive").tasks["t"]
    decision = after_failed_attempt(task, retryable=True, now=0.0)
    assert isinstance(decision, Requeue) and decision.not_before_ts == 0.0


def test_work_held_under_an_older_session_is_orphaned_by_a_restart() -> None:
    state = fold(
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=2, session="s1"),
        TaskSubmitted(task_id="old", task_type="x"),
        TaskAssigned(agent_id="a", task_id="old", attempt=1, session="s1"),
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=2, session="s2"),
        TaskSubmitted(task_id="new", task_type="x"),
        TaskAssigned(agent_id="a", task_id="new", attempt=1, session="s2"),
    )
    assert orphaned_by_restart(state, state.agents["a"], "s2") == ["old"]


def records(*events: AnyEvent) -> list[Recorded]:
    return [Recorded(seq, e.subject, e) for seq, e in enumerate(events, start=1)]


def test_fencing_refuses_superseded_failed_foreign_and_finished_attempts() -> None:
    submitted = TaskSubmitted(task_id="t", task_type="x")
    assert attempt_verdict(records(submitted), "a", 1) is None
    assert "superseded by attempt 2" in str(
        attempt_verdict(records(submitted, TaskRequeued(task_id="t", attempt=2)), "a", 1)
    )
    # Another agent's report on a's attempt is a forgery no projection applies: a does not give up.
    forged_start = TaskStarted(task_id="t", agent_id="b", attempt=1)
    assert attempt_verdict(records(submitted, forged_start), "a", 1) is None
    forged_failure = TaskAttemptFailed(task_id="t", agent_id="b", attempt=1, failure_type="agent_error")
    assert attempt_verdict(records(submitted, forged_failure), "a", 1) is None
    timed_out = TaskAttemptFailed(task_id="t", agent_id="a", attempt=1, failure_type="task_timeout")
    assert "already failed" in str(attempt_verdict(records(submitted, timed_out), "a", 1))
    assert "already cancelled" in str(attempt_verdict(records(submitted, TaskCancelled(task_id="t")), "a", 1))
    assert attempt_verdict([], "a", 1) == "unknown task"
