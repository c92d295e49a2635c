"""Orchestration figures from a log: each one computed as documented, over its window, and judged."""

from __future__ import annotations

import msgspec
import pytest

from shared.configured import performance_targets
from shared.domain.performance_metrics import METRICS_VIEW, MetricsView, figures
from shared.domain.performance_targets import check_targets, performance_score
from shared.domain.windows import BIN_RATIO
from shared.events import (
    AgentRegistered,
    AgentUnresponsive,
    AnyEvent,
    FailureReported,
    RecoveryActionTaken,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskQueued,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    WorkflowCompleted,
    WorkflowFailed,
)
from shared.projection import Snapshot
from shared.projection_spec import fold
from shared.recorded import Recorded
from shared.settings import load_settings

LATENCY_TARGET = "TASK_ASSIGNMENT_LATENCY_TARGET_MS"


def view_of(*events: AnyEvent) -> MetricsView:
    return fold(METRICS_VIEW, [Recorded(seq, e.subject, e) for seq, e in enumerate(events, start=1)])


def agents(*ids: str) -> list[AnyEvent]:
    return [
        AgentRegistered(agent_id=agent_id, capabilities={"x": 1.0}, capacity=4, ts=1.0) for agent_id in ids
    ]


def near(measured: float | None, expected: float) -> bool:
    """A percentile is its histogram bin's upper edge: at most one bin (4%) above the true value."""
    return measured is not None and expected <= measured <= expected * BIN_RATIO * 1.0001


def test_assignment_latency_runs_from_routable_to_assigned_and_leaves_out_held_attempts() -> None:
    view = view_of(
        *agents("a"),
        TaskSubmitted(task_id="fast", task_type="x", ts=100.0),
        TaskAssigned(agent_id="a", task_id="fast", attempt=1, ts=100.012),
        TaskSubmitted(task_id="held", task_type="x", ts=100.0),
        TaskQueued(task_id="held", attempt=1, reason="all_capable_agents_busy", ts=100.001),
        TaskAssigned(agent_id="a", task_id="held", attempt=1, ts=105.0),
        TaskSubmitted(task_id="retry", task_type="x", ts=100.0),
        TaskAssigned(agent_id="a", task_id="retry", attempt=1, ts=100.005),
        TaskAttemptFailed(task_id="retry", agent_id="a", attempt=1, ts=100.1),
        TaskRequeued(task_id="retry", attempt=2, not_before_ts=100.5, ts=100.2),
        TaskAssigned(agent_id="a", task_id="retry", attempt=2, ts=100.52),
    )
    found = figures(view.metrics, now=110.0, window_s=60.0)
    assert found.task_assignment_latency_ms.samples == 3  # fast, retry's two attempts; not held
    assert near(found.task_assignment_latency_ms.value, 20.0)  # the retry's, from its backoff's end
    assert near(found.assignment_latency_ms["p50"], 12.0)


def test_routing_accuracy_judges_first_choices_by_their_outcome_and_threshold() -> None:
    view = view_of(
        *agents("a"),
        TaskSubmitted(task_id="good", task_type="x", expected_quality_threshold=0.7, ts=100.0),
        TaskAssigned(agent_id="a", task_id="good", attempt=1, ts=100.0),
        TaskCompleted(task_id="good", agent_id="a", attempt=1, quality=0.8, ts=101.0),
        TaskSubmitted(task_id="poor", task_type="x", expected_quality_threshold=0.7, ts=100.0),
        TaskAssigned(agent_id="a", task_id="poor", attempt=1, ts=100.0),
        TaskCompleted(task_id="poor", agent_id="a", attempt=1, quality=0.6, ts=101.0),
        TaskSubmitted(task_id="failed", task_type="x", ts=100.0),
        TaskAssigned(agent_id="a", task_id="failed", attempt=1, ts=100.0),
        TaskAttemptFailed(task_id="failed", agent_id="a", attempt=1, ts=101.0),
        TaskSubmitted(task_id="lost", task_type="x", ts=100.0),
        TaskAssigned(agent_id="a", task_id="lost", attempt=1, ts=100.0),
        TaskAttemptFailed(
            task_id="lost", agent_id="a", attempt=1, failure_type="agent_unresponsive", ts=101.0
        ),
        TaskSubmitted(task_id="bad-input", task_type="x", ts=100.0),
        TaskAssigned(agent_id="a", task_id="bad-input", attempt=1, ts=100.0),
        TaskAttemptFailed(task_id="bad-input", agent_id="a", attempt=1, retryable=False, ts=101.0),
        TaskSubmitted(task_id="unrated", task_type="x", ts=100.0),
        TaskAssigned(agent_id="a", task_id="unrated", attempt=1, ts=100.0),
        TaskCompleted(task_id="unrated", agent_id="a", attempt=1, ts=101.0),
    )
    found = figures(view.metrics, now=110.0, window_s=60.0)
    # Judged: good (right), poor (below threshold), failed (agent's fault), unrated (threshold 0).
    assert found.routing_accuracy_percent.samples == 4
    assert found.routing_accuracy_percent.value == pytest.approx(50.0)


def test_recovery_time_runs_from_the_last_heartbeat_until_the_work_runs_elsewhere() -> None:
    view = view_of(
        *agents("dead", "alive"),
        TaskSubmitted(task_id="t1", task_type="x", ts=199.0),
        TaskAssigned(agent_id="dead", task_id="t1", attempt=1, ts=199.0),
        TaskStarted(task_id="t1", agent_id="dead", attempt=1, ts=199.1),
        TaskSubmitted(task_id="t2", task_type="x", ts=199.0),
        TaskAssigned(agent_id="dead", task_id="t2", attempt=1, ts=199.0),
        TaskStarted(task_id="t2", agent_id="dead", attempt=1, ts=199.1),
        AgentUnresponsive(agent_id="dead", last_seen_ts=200.0, in_flight={"t1": 1, "t2": 1}, ts=200.6),
        TaskRequeued(task_id="t1", attempt=2, ts=200.61),
        TaskAssigned(agent_id="alive", task_id="t1", attempt=2, ts=200.62),
        TaskStarted(task_id="t1", agent_id="alive", attempt=2, ts=200.7),
        TaskRequeued(task_id="t2", attempt=2, ts=200.61),
        TaskAssigned(agent_id="alive", task_id="t2", attempt=2, ts=200.62),
        TaskStarted(task_id="t2", agent_id="alive", attempt=2, ts=200.9),
    )
    found = figures(view.metrics, now=210.0, window_s=60.0)
    assert found.failure_recovery_time_ms.samples == 1
    assert near(found.failure_recovery_time_ms.value, 900.0)  # until the last of its two tasks


def test_recovery_settles_at_the_start_a_later_attempts_outcome_implies_without_task_started() -> None:
    """Work that ends within the SDK's start-report bound appends no task.started: its completion
    (or its agent's failure) says when it began running elsewhere."""
    view = view_of(
        *agents("dead", "alive"),
        TaskSubmitted(task_id="t1", task_type="x", ts=199.0),
        TaskAssigned(agent_id="dead", task_id="t1", attempt=1, ts=199.0),
        TaskSubmitted(task_id="t2", task_type="x", ts=199.0),
        TaskAssigned(agent_id="dead", task_id="t2", attempt=1, ts=199.0),
        AgentUnresponsive(agent_id="dead", last_seen_ts=200.0, in_flight={"t1": 1, "t2": 1}, ts=200.6),
        TaskRequeued(task_id="t1", attempt=2, ts=200.61),
        TaskAssigned(agent_id="alive", task_id="t1", attempt=2, ts=200.62),
        TaskCompleted(task_id="t1", agent_id="alive", attempt=2, duration_s=0.05, ts=200.75),
        TaskRequeued(task_id="t2", attempt=2, ts=200.61),
        TaskAssigned(agent_id="alive", task_id="t2", attempt=2, ts=200.62),
        TaskAttemptFailed(task_id="t2", agent_id="alive", attempt=2, duration_s=0.1, ts=201.0),
    )
    found = figures(view.metrics, now=210.0, window_s=60.0)
    assert found.failure_recovery_time_ms.samples == 1
    assert near(found.failure_recovery_time_ms.value, 900.0)  # t2 began at 200.9


def test_the_cumulative_histograms_count_every_assignment_and_recovery_since_the_start_of_the_log() -> None:
    view = view_of(
        *agents("dead", "alive"),
        TaskSubmitted(task_id="fast", task_type="x", ts=100.0),
        TaskAssigned(agent_id="alive", task_id="fast", attempt=1, ts=100.012),
        TaskSubmitted(task_id="slow", task_type="x", ts=100.0),
        TaskAssigned(agent_id="alive", task_id="slow", attempt=1, ts=103.0),
        TaskSubmitted(task_id="held", task_type="x", ts=100.0),
        TaskQueued(task_id="held", attempt=1, reason="all_capable_agents_busy", ts=100.001),
        TaskAssigned(agent_id="dead", task_id="held", attempt=1, ts=105.0),
        TaskStarted(task_id="held", agent_id="dead", attempt=1, ts=105.1),
        AgentUnresponsive(agent_id="dead", last_seen_ts=200.0, in_flight={"held": 1}, ts=200.6),
        TaskRequeued(task_id="held", attempt=2, ts=200.61),
        TaskAssigned(agent_id="alive", task_id="held", attempt=2, ts=200.62),
        TaskStarted(task_id="held", agent_id="alive", attempt=2, ts=200.9),
    )
    assignments = dict(view.metrics.assignment_s.cumulative())
    assert assignments[0.0075] == 0 and assignments[0.015] == 2  # the requeue's 10 ms, 12 ms
    assert assignments[2.5] == 2 and assignments[float("inf")] == 3  # 3 s
    assert view.metrics.assignment_s.count == 3  # the held first attempt is not routing's wait
    assert view.metrics.assignment_s.total == pytest.approx(0.012 + 3.0 + 0.01, abs=1e-6)
    recoveries = dict(view.metrics.recovery.seconds.cumulative())
    assert recoveries[0.75] == 0 and recoveries[1.0] == 1  # 200.0 -> 200.9
    far_later = figures(view.metrics, now=100_000.0, window_s=60.0)
    assert far_later.task_assignment_latency_ms.samples == 0, "the window moved on; the counts did not"
    assert view.metrics.recovery.seconds.count == 1


def test_a_reported_failure_counts_from_the_report_until_the_moved_work_starts() -> None:
    view = view_of(
        *agents("a", "b"),
        TaskSubmitted(task_id="t", task_type="x", ts=299.0),
        TaskAssigned(agent_id="a", task_id="t", attempt=1, ts=299.0),
        TaskStarted(task_id="t", agent_id="a", attempt=1, ts=299.1),
        FailureReported(scope="incident-1", failure_type="network_partition", agent_id="a", ts=300.0),
        TaskRequeued(task_id="t", attempt=2, ts=300.1),
        RecoveryActionTaken(scope="incident-1", strategy="reassign", task_ids=["t"], ts=300.2),
        TaskAssigned(agent_id="b", task_id="t", attempt=2, ts=300.3),
        TaskStarted(task_id="t", agent_id="b", attempt=2, ts=300.5),
    )
    found = figures(view.metrics, now=310.0, window_s=60.0)
    assert near(found.failure_recovery_time_ms.value, 500.0)


def test_throughput_and_workflow_completion_cover_only_the_window() -> None:
    events: list[AnyEvent] = [*agents("a")]
    for index in range(10):
        task_id = f"t{index}"
        events += [
            TaskSubmitted(task_id=task_id, task_type="x", ts=100.0 + index),
            TaskAssigned(agent_id="a", task_id=task_id, attempt=1, ts=100.0 + index),
            TaskCompleted(task_id=task_id, agent_id="a", attempt=1, ts=100.5 + index),
        ]
    events += [
        WorkflowFailed(workflow_id="old", ts=10.0),
        WorkflowCompleted(workflow_id="w1", ts=105.0),
        WorkflowCompleted(workflow_id="w2", ts=106.0),
        WorkflowCompleted(workflow_id="w3", ts=107.0),
        WorkflowFailed(workflow_id="w4", ts=108.0),
    ]
    view = view_of(*events)
    found = figures(view.metrics, now=110.5, window_s=60.0)
    assert found.system_throughput_tasks_per_second.samples == 10
    assert found.system_throughput_tasks_per_second.value == pytest.approx(10 / 10.0)
    assert found.workflow_completion_rate.value == pytest.approx(0.75)
    earlier = figures(view.metrics, now=104.9, window_s=10.0)  # a window ending in the past
    assert earlier.system_throughput_tasks_per_second.samples == 5  # t0..t4, completed in seconds 100-104
    assert earlier.workflow_completion_rate.value is None  # the workflows ended after it
    later = figures(view.metrics, now=1000.0, window_s=60.0)
    assert later.system_throughput_tasks_per_second.value is None
    assert later.workflow_completion_rate.value is None


def test_targets_come_from_the_settings_and_unmeasured_figures_are_neither_met_nor_missed() -> None:
    view = view_of(
        *agents("a"),
        TaskSubmitted(task_id="t", task_type="x", ts=100.0),
        TaskAssigned(agent_id="a", task_id="t", attempt=1, ts=100.030),
        TaskCompleted(task_id="t", agent_id="a", attempt=1, quality=0.9, ts=101.0),
    )
    found = figures(view.metrics, now=101.0, window_s=60.0)
    strict = check_targets(
        found, performance_targets(load_settings({"TASK_ASSIGNMENT_LATENCY_TARGET_MS": "20"}))
    )
    lenient = check_targets(
        found, performance_targets(load_settings({"TASK_ASSIGNMENT_LATENCY_TARGET_MS": "50"}))
    )
    latency = {c.metric: c for c in strict}["task_assignment_latency_ms"]
    assert latency.met is False and latency.variable == "TASK_ASSIGNMENT_LATENCY_TARGET_MS"
    assert {c.metric: c for c in lenient}["task_assignment_latency_ms"].met is True
    recovery = {c.metric: c for c in strict}["failure_recovery_time_ms"]
    assert recovery.measured is None and recovery.met is None and recovery.attainment is None
    score = performance_score(strict)
    assert score is not None and score < (performance_score(lenient) or 0.0) <= 100.0


def test_the_metrics_survive_a_snapshot_round_trip() -> None:
    view = view_of(
        *agents("a", "b"),
        TaskSubmitted(task_id="t", task_type="x", ts=100.0),
        TaskAssigned(agent_id="a", task_id="t", attempt=1, ts=100.01),
        AgentUnresponsive(agent_id="a", last_seen_ts=100.5, in_flight={"t": 1}, ts=101.0),
        TaskSubmitted(task_id="waiting", task_type="x", ts=101.0),
        WorkflowCompleted(workflow_id="w", ts=101.0),
    )
    blob = msgspec.msgpack.encode(Snapshot(seq=9, state=view, versions={}))
    restored = msgspec.msgpack.decode(blob, type=Snapshot[MetricsView]).state
    assert restored == view
    assert figures(restored.metrics, 110.0, 60.0) == figures(view.metrics, 110.0, 60.0)


def test_a_delayed_tasks_assignment_latency_runs_from_its_start() -> None:
    view = view_of(
        *agents("a"),
        TaskSubmitted(task_id="later", task_type="x", ts=100.0, not_before_ts=160.0),
        TaskAssigned(agent_id="a", task_id="later", attempt=1, ts=160.015),
    )
    found = figures(view.metrics, now=170.0, window_s=60.0)
    assert found.task_assignment_latency_ms.samples == 1
    assert near(found.task_assignment_latency_ms.value, 15.0)
