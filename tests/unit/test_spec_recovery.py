"""The specification's failure vocabulary, without NATS: its FailureEvent read by the gateway, every
failure type, severity and recovery strategy it names, and what each new strategy plans."""

from __future__ import annotations

import typing
from pathlib import Path

import msgspec
import pytest

from services.gateway.errors import ApiError
from services.gateway.recovery import reported_failure
from services.gateway.recovery_schemas import FailureHandleRequest
from services.recovery.decide import Requeue
from services.recovery.incidents import FailAttempt, Incident, plan_incident
from shared.domain.breaker_policy import BreakerPolicy, Probe, Trip
from shared.domain.breakers import BreakersState, BreakerView
from shared.domain.fleet import FleetState, apply_fleet
from shared.domain.starts import START_REPORTED_WITHIN_S
from shared.domain.strategies import ACTIONS, SEVERITIES, STRATEGIES, choose_strategy, describe_strategies
from shared.events import (
    AgentRegistered,
    AnyEvent,
    FailureType,
    RecoveryStrategy,
    Severity,
    TaskAssigned,
    TaskStarted,
    TaskSubmitted,
)
from shared.recorded import Recorded

SPEC_FAILURE_TYPES = (
    "agent_unresponsive",
    "task_timeout",
    "task_execution_error",
    "resource_exhaustion",
    "communication_failure",
    "performance_degradation",
    "dependency_failure",
    "security_violation",
    "system_overload",
)
SPEC_SEVERITIES = ("critical", "high", "medium", "low", "info")
SPEC_STRATEGIES = (
    "immediate_reassignment",
    "graceful_reassignment",
    "retry_with_backoff",
    "circuit_breaker",
    "degraded_service",
    "emergency_shutdown",
    "load_shedding",
    "failover_cluster",
)


def request(**fields: object) -> FailureHandleRequest:
    return msgspec.convert(fields, FailureHandleRequest)


def fleet(*events: AnyEvent) -> FleetState:
    state = FleetState()
    for seq, event in enumerate(events, start=1):
        apply_fleet(state, Recorded(seq, event.subject, event))
    return state


def one_started_one_waiting() -> FleetState:
    """Agent a holds t1 (running) and t2 (assigned, not started)."""
    return fleet(
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=3, session="s"),
        TaskSubmitted(task_id="t1", task_type="x", workflow_id="w"),
        TaskAssigned(agent_id="a", task_id="t1", attempt=1, session="s", ts=90.0),
        TaskStarted(task_id="t1", agent_id="a", attempt=1),
        TaskSubmitted(task_id="t2", task_type="x"),
        TaskAssigned(agent_id="a", task_id="t2", attempt=1, session="s", ts=90.0),
    )


def incident(**fields: typing.Any) -> Incident:
    base: dict[str, typing.Any] = {
        "incident_id": "i",
        "failure_type": "system_overload",
        "severity": "medium",
        "ts": 100.0,
        "agent_id": "a",
    }
    base.update(fields)
    return Incident(**base)


# --- the gateway reads the document's FailureEvent --------------------------------------------------


def test_the_documents_failure_event_is_read_with_its_names_its_enum_spelling_and_an_iso_timestamp() -> None:
    report = reported_failure(
        request(
            event_id="6f1c2a4e-8d1b-4c7e-9f0a-2b3c4d5e6f70",
            failure_type="AGENT_UNRESPONSIVE",
            severity="HIGH",
            timestamp="2025-07-28T19:30:00Z",
            agent_id="failed-agent-123",
            error_message="no heartbeat",
        ),
        now=1_753_731_000.0,
    )
    assert report.scope == "6f1c2a4e-8d1b-4c7e-9f0a-2b3c4d5e6f70"
    assert (report.failure_type, report.severity) == ("agent_unresponsive", "high")
    assert report.occurred_ts == 1_753_731_000.0 and report.detail == "no heartbeat"


def test_epoch_seconds_and_the_documents_aliases_of_hives_failure_types_are_accepted() -> None:
    epoch = reported_failure(request(failure_type="TASK_EXECUTION_ERROR", agent_id="a", timestamp=1000.5))
    assert epoch.failure_type == "agent_error" and epoch.occurred_ts == 1000.5
    partition = reported_failure(request(failure_type="communication_failure", agent_id="a"))
    assert partition.failure_type == "network_partition"
    asked = reported_failure(
        request(failure_type="system_overload", agent_id="a", recovery_strategy="LOAD_SHEDDING")
    )
    assert asked.strategy == "load_shedding"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": 4_000_000_000.0}, "timestamp"),
        ({"event_id": "e1", "incident_id": "e2"}, "incident_id"),
        ({"detail": "x", "error_message": "y"}, "detail"),
    ],
)
def test_an_unreadable_time_a_future_one_or_two_names_that_disagree_are_a_400_naming_the_field(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(ApiError) as refused:
        reported_failure(request(failure_type="task_timeout", agent_id="a", **fields), now=1_753_731_000.0)
    assert refused.value.status == 400 and refused.value.field == field


def test_every_failure_type_severity_and_strategy_of_the_document_is_accepted_in_both_cases() -> None:
    for failure_type in SPEC_FAILURE_TYPES:
        for spelling in (failure_type, failure_type.upper()):
            report = reported_failure(request(failure_type=spelling, agent_id="a"))
            assert report.failure_type in typing.get_args(FailureType)
    for severity in SPEC_SEVERITIES:
        assert reported_failure(request(failure_type="task_timeout", severity=severity.upper(), agent_id="a"))
    assert set(SPEC_STRATEGIES) <= set(typing.get_args(RecoveryStrategy)) == set(ACTIONS)


# --- the table ------------------------------------------------------------------------------------


def test_every_stored_failure_type_has_a_strategy_for_every_severity_including_info() -> None:
    assert set(SEVERITIES) == set(typing.get_args(Severity))
    for failure_type in STRATEGIES:
        assert choose_strategy(failure_type, "info").strategy == "record_only"  # type: ignore[arg-type]
        assert choose_strategy(failure_type, "info").actions == []  # type: ignore[arg-type]
    used = {strategy for row in STRATEGIES.values() for strategy in row}
    assert set(ACTIONS) - used == {"immediate_reassignment"}, "reachable only when asked for by name"


def test_a_report_may_ask_for_a_strategy_instead_of_the_tables() -> None:
    plan = choose_strategy("agent_error", "low", "immediate_reassignment")
    assert plan.strategy == "immediate_reassignment" and plan.actions == ["reassign"]


# --- what the new strategies plan -------------------------------------------------------------------


def test_load_shedding_moves_only_the_work_the_agent_has_not_started() -> None:
    steps = plan_incident(
        one_started_one_waiting(), incident(), choose_strategy("system_overload", "low"), 300.0
    )
    assert [step.task_id for step in steps.task_steps] == ["t2"]
    assert isinstance(steps.task_steps[0], Requeue) and steps.quarantine_until_ts is None


def test_work_assigned_too_recently_to_have_reported_its_start_is_not_taken_as_unstarted() -> None:
    """The SDK defers task.started up to START_REPORT_AFTER_S: an attempt assigned under
    START_REPORTED_WITHIN_S before the incident may be running, and stays (with a note)."""
    young = fleet(
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=3, session="s"),
        TaskSubmitted(task_id="t2", task_type="x"),
        TaskAssigned(agent_id="a", task_id="t2", attempt=1, session="s", ts=99.9),
    )
    plan = choose_strategy("system_overload", "low")
    steps = plan_incident(young, incident(), plan, 300.0)
    assert steps.task_steps == [] and steps.stops == []
    assert any("t2" in note and "deferred" in note for note in steps.notes), steps.notes
    later = plan_incident(young, incident(ts=99.9 + START_REPORTED_WITHIN_S), plan, 300.0)
    assert later.task_ids == ["t2"]


def test_graceful_reassignment_keeps_new_work_away_and_lets_started_work_finish() -> None:
    plan = choose_strategy("system_overload", "high")
    assert plan.strategy == "graceful_reassignment"
    steps = plan_incident(one_started_one_waiting(), incident(), plan, 300.0)
    assert steps.quarantine_until_ts == 400.0 and steps.task_ids == ["t2"]


def test_circuit_breaker_opens_the_agents_breaker_until_the_open_period_passes() -> None:
    plan = choose_strategy("performance_degradation", "high")
    assert plan.strategy == "circuit_breaker"
    policy = BreakerPolicy(open_s=30.0)
    steps = plan_incident(one_started_one_waiting(), incident(), plan, 300.0, BreakersState(), policy)
    assert isinstance(steps.breaker, Trip) and steps.breaker.retry_after_ts == 130.0
    assert steps.task_ids == ["t2"]
    opened = BreakersState(breakers={"a": BreakerView(agent_id="a", status="open")})
    again = plan_incident(one_started_one_waiting(), incident(), plan, 300.0, opened, policy)
    assert again.breaker is None and "already open" in again.notes[0]


def test_degraded_service_makes_the_breaker_half_open_and_moves_nothing() -> None:
    plan = choose_strategy("performance_degradation", "medium")
    assert plan.strategy == "degraded_service"
    steps = plan_incident(
        one_started_one_waiting(), incident(), plan, 300.0, BreakersState(), BreakerPolicy(half_open_probes=2)
    )
    assert steps.breaker == Probe(probes_allowed=2) and steps.task_steps == []


def test_with_circuit_breakers_disabled_the_breaker_strategies_quarantine_instead() -> None:
    plan = choose_strategy("performance_degradation", "medium")
    steps = plan_incident(
        one_started_one_waiting(), incident(), plan, 300.0, BreakersState(), BreakerPolicy(enabled=False)
    )
    assert steps.breaker is None and steps.quarantine_until_ts == 400.0
    assert "ENABLE_CIRCUIT_BREAKERS" in steps.notes[0]


def test_emergency_shutdown_stops_the_agent_moves_all_its_work_and_escalates() -> None:
    plan = choose_strategy("security_violation", "critical")
    assert plan.strategy == "emergency_shutdown" and plan.escalated
    steps = plan_incident(one_started_one_waiting(), incident(failure_type="security_violation"), plan, 300.0)
    assert steps.restart_session == "s" and steps.quarantine_until_ts == 400.0
    assert steps.task_ids == ["t1", "t2"]


def test_a_dependency_failure_retries_the_attempts_with_its_own_type() -> None:
    plan = choose_strategy("dependency_failure", "medium")
    steps = plan_incident(one_started_one_waiting(), incident(failure_type="dependency_failure"), plan, 300.0)
    assert all(
        isinstance(step, FailAttempt) and step.failure_type == "dependency_failure"
        for step in steps.task_steps
    )


def test_a_failure_naming_a_workflow_concerns_only_that_workflows_tasks() -> None:
    plan = choose_strategy("agent_error", "medium")
    steps = plan_incident(
        one_started_one_waiting(),
        incident(failure_type="agent_error", workflow_id="w", agent_id=None),
        plan,
        300.0,
    )
    assert steps.task_ids == ["t1"] and steps.agent_id == "a"


def test_a_failure_seen_in_a_session_the_agent_has_left_leaves_its_current_session_alone() -> None:
    plan = choose_strategy("security_violation", "high")
    steps = plan_incident(one_started_one_waiting(), incident(session="old"), plan, 300.0)
    assert steps.task_steps == [] and steps.restart_session is None and steps.quarantine_until_ts is None
    assert "restarted since" in steps.notes[0]
    current = plan_incident(one_started_one_waiting(), incident(session="s"), plan, 300.0)
    assert current.restart_session == "s"


def test_the_readme_shows_the_strategy_table_exactly() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert describe_strategies() in readme
