"""The fleet projection: stale facts change nothing, capacity is accounted exactly."""

from __future__ import annotations

from collections.abc import Iterable

from shared.domain.fleet import FleetState, apply_fleet, correlation_of, waiting_tasks
from shared.events import (
    AgentRegistered,
    AnyEvent,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.recorded import Recorded


def fold(events: Iterable[AnyEvent], state: FleetState | None = None) -> FleetState:
    state = state or FleetState()
    for seq, event in enumerate(events, start=1):
        apply_fleet(state, Recorded(seq, event.subject, event))
    return state


def test_submitted_tasks_wait_most_urgent_first_then_oldest() -> None:
    state = fold(
        [
            TaskSubmitted(task_id="low", task_type="x", priority="low"),
            TaskSubmitted(task_id="n1", task_type="x"),
            TaskSubmitted(task_id="crit", task_type="x", priority="critical"),
            TaskSubmitted(task_id="n2", task_type="x"),
        ]
    )
    assert [t.task_id for t in waiting_tasks(state)] == ["crit", "n1", "n2", "low"]


def test_an_assignment_takes_a_slot_and_completion_gives_it_back() -> None:
    state = fold(
        [
            AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=2),
            TaskSubmitted(task_id="t", task_type="x"),
            TaskAssigned(agent_id="a", task_id="t", attempt=1),
        ]
    )
    assert state.agents["a"].in_flight == {"t": 1}
    assert state.queue == []
    fold(
        [
            TaskStarted(task_id="t", agent_id="a", attempt=1),
            TaskCompleted(task_id="t", agent_id="a", attempt=1),
        ],
        state,
    )
    assert state.agents["a"].in_flight == {}
    assert state.tasks["t"].status == "completed"
    assert state.totals == {"submitted": 1, "completed": 1}


def test_a_second_assignment_of_the_same_attempt_is_ignored() -> None:
    state = fold(
        [
            AgentRegistered(agent_id="a", capabilities={"x": 1.0}),
            AgentRegistered(agent_id="b", capabilities={"x": 1.0}),
            TaskSubmitted(task_id="t", task_type="x"),
            TaskAssigned(agent_id="a", task_id="t", attempt=1),
            TaskAssigned(agent_id="b", task_id="t", attempt=1),
        ]
    )
    assert state.tasks["t"].agent_id == "a"
    assert state.agents["b"].in_flight == {}


def test_a_result_for_a_superseded_attempt_changes_nothing() -> None:
    state = fold(
        [
            AgentRegistered(agent_id="a", capabilities={"x": 1.0}),
            AgentRegistered(agent_id="b", capabilities={"x": 1.0}),
            TaskSubmitted(task_id="t", task_type="x"),
            TaskAssigned(agent_id="a", task_id="t", attempt=1),
            TaskRequeued(task_id="t", attempt=2, reason="agent_unresponsive"),
            TaskAssigned(agent_id="b", task_id="t", attempt=2),
            TaskCompleted(task_id="t", agent_id="a", attempt=1),
        ]
    )
    task = state.tasks["t"]
    assert task.status == "assigned" and task.attempt == 2 and task.agent_id == "b"
    assert state.agents["a"].in_flight == {}
    assert state.agents["b"].in_flight == {"t": 2}


def test_a_failed_attempt_frees_the_slot_and_waits_for_a_retry_decision() -> None:
    state = fold(
        [
            AgentRegistered(agent_id="a", capabilities={"x": 1.0}),
            TaskSubmitted(task_id="t", task_type="x"),
            TaskAssigned(agent_id="a", task_id="t", attempt=1),
            TaskAttemptFailed(task_id="t", agent_id="a", attempt=1, error="boom"),
        ]
    )
    assert state.tasks["t"].status == "retrying"
    assert state.tasks["t"].task_failures == 1
    assert state.agents["a"].in_flight == {}
    assert state.queue == []


def test_cancelling_a_waiting_task_removes_it_from_the_queue_and_is_final() -> None:
    state = fold(
        [
            TaskSubmitted(task_id="t", task_type="x"),
            TaskCancelled(task_id="t", reason="no longer needed"),
            TaskRequeued(task_id="t", attempt=2),
        ]
    )
    assert state.tasks["t"].status == "cancelled"
    assert state.queue == []


def test_old_finished_tasks_are_forgotten_beyond_the_limit() -> None:
    state = FleetState(max_finished=10)
    events: list[AnyEvent] = []
    for index in range(12):
        events += [TaskSubmitted(task_id=f"t{index}", task_type="x"), TaskCancelled(task_id=f"t{index}")]
    fold(events, state)
    assert sorted(state.tasks, key=lambda t: int(t[1:])) == [f"t{i}" for i in range(2, 12)]
    assert state.totals["cancelled"] == 12


def test_a_decision_carries_the_submissions_correlation_else_the_task_id() -> None:
    state = fold(
        [
            TaskSubmitted(task_id="mine", task_type="x", correlation_id="order-7"),
            TaskSubmitted(task_id="bare", task_type="x"),
        ]
    )
    assert correlation_of(state, "mine") == "order-7"
    assert correlation_of(state, "bare") == "bare"
    assert correlation_of(state, "forgotten") == "forgotten"


def _assigned(ts: float = 100.2) -> list[AnyEvent]:
    return [
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=2),
        TaskSubmitted(task_id="t", task_type="x", ts=100.0),
        TaskAssigned(agent_id="a", task_id="t", attempt=1, ts=ts),
    ]


def test_a_completion_straight_from_assigned_implies_the_start_when_the_work_began() -> None:
    """task.started is optional (the SDK skips it for work that ends within 0.25 s): the
    completion says the attempt ran, from its time less the handler's duration."""
    state = fold(
        [*_assigned(), TaskCompleted(task_id="t", agent_id="a", attempt=1, duration_s=0.5, ts=101.0)]
    )
    task = state.tasks["t"]
    assert task.status == "completed" and task.attempt == 1 and task.agent_id == "a"
    assert task.started_ts == 100.5 and task.finished_ts == 101.0
    assert state.agents["a"].in_flight == {} and state.agents["a"].completed == 1
    assert state.totals == {"submitted": 1, "completed": 1}
    # Never before the assignment (clocks differ), nor after the report (no duration told).
    long = fold([*_assigned(), TaskCompleted(task_id="t", agent_id="a", attempt=1, duration_s=5.0, ts=101.0)])
    assert long.tasks["t"].started_ts == 100.2
    untimed = fold([*_assigned(), TaskCompleted(task_id="t", agent_id="a", attempt=1, ts=101.0)])
    assert untimed.tasks["t"].started_ts == 101.0


def test_an_agents_failure_straight_from_assigned_implies_the_start_and_retries_as_before() -> None:
    failed = TaskAttemptFailed(task_id="t", agent_id="a", attempt=1, error="boom", duration_s=0.25, ts=101.0)
    state = fold([*_assigned(), failed])
    task = state.tasks["t"]
    assert task.status == "retrying" and task.task_failures == 1 and task.last_error == "boom"
    assert task.started_ts == 100.75 and state.agents["a"].in_flight == {}
    # A failure of no duration (recovery's timeouts, lost agents) says nothing of the work running.
    lost = TaskAttemptFailed(
        task_id="t", agent_id="a", attempt=1, failure_type="agent_unresponsive", ts=101.0
    )
    assert fold([*_assigned(), lost]).tasks["t"].started_ts is None
    retried = fold([*_assigned(), failed, TaskRequeued(task_id="t", attempt=2, ts=101.1)])
    assert retried.tasks["t"].started_ts is None and retried.tasks["t"].status == "pending"


def test_an_old_log_with_task_started_folds_as_before() -> None:
    started = TaskStarted(task_id="t", agent_id="a", attempt=1, ts=100.3)
    running = fold([*_assigned(), started])
    assert running.tasks["t"].status == "running" and running.tasks["t"].started_ts == 100.3
    done = fold([TaskCompleted(task_id="t", agent_id="a", attempt=1, duration_s=0.1, ts=101.0)], running)
    assert done.tasks["t"].status == "completed" and done.tasks["t"].started_ts == 100.3
    failed = fold(
        [TaskAttemptFailed(task_id="t", agent_id="a", attempt=1, duration_s=0.1, ts=101.0)],
        fold([*_assigned(), started]),
    )
    assert failed.tasks["t"].status == "retrying" and failed.tasks["t"].started_ts == 100.3
