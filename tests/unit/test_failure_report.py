"""The failure answer's figures, reach and advice, from what recovery did and the fleet after it."""

from __future__ import annotations

from services.gateway.failure_report import (
    Outcome,
    affected_tasks,
    impact_level,
    improvement_recommendations,
    recovery_metrics,
    system_impact,
)
from services.gateway.health import component_states
from shared.domain.fleet import AgentView, TaskView
from shared.events import TaskSubmitted


def outcome(**changes: object) -> Outcome:
    fields: dict[str, object] = {
        "incident_id": "inc-1",
        "failure_type": "agent_unresponsive",
        "severity": "high",
        "strategy": "reassign",
        "acted": True,
        "escalated": False,
        "actions": 2,
        "agent_id": "a1",
        "task_ids": ("t1", "t2"),
    }
    fields.update(changes)
    return Outcome(**fields)  # type: ignore[arg-type]


def test_times_are_given_only_when_recovery_acted() -> None:
    acted = recovery_metrics(outcome(), requested_ts=100.0, answered_ts=100.25, occurred_ts=99.0)
    assert acted.handled_in_ms == 250.0 and acted.since_failure_ms == 1250.0
    assert acted.tasks_moved == 2 and acted.actions_taken == 2
    waiting = recovery_metrics(outcome(acted=False), 100.0, 100.25, 99.0)
    assert waiting.handled_in_ms is None and waiting.since_failure_ms is None and waiting.actions_taken == 0
    assert recovery_metrics(outcome(), 100.0, 100.5, None).since_failure_ms is None


def test_the_impact_counts_the_lost_agent_and_the_workflows_of_its_tasks() -> None:
    agents = {
        "a1": AgentView(agent_id="a1", capacity=4, status="unresponsive"),
        "a2": AgentView(agent_id="a2", capacity=2, in_flight={"t1": 2}),
        "a3": AgentView(agent_id="a3", capacity=2),
    }
    tasks = {
        "t1": TaskView(spec=TaskSubmitted(task_id="t1", task_type="x", workflow_id="wf")),
        "t2": TaskView(spec=TaskSubmitted(task_id="t2", task_type="x")),
    }
    impact = system_impact(outcome(), agents, tasks)
    assert impact.affected_agents == ["a1"] and impact.affected_workflows == ["wf"]
    assert impact.capacity_lost == 4 and impact.active_agents == 2 and impact.fleet_capacity == 4
    assert impact.fleet_load == 0.25 and impact.level == "high"  # 4 of 8 slots gone


def test_impact_levels() -> None:
    assert impact_level(0, 10, 0) == "none"
    assert impact_level(0, 10, 1) == "low"
    assert impact_level(1, 10, 0) == "medium"
    assert impact_level(0, 40, 5) == "medium"
    assert impact_level(3, 10, 0) == "high"
    assert impact_level(2, 2, 0) == "high"  # the whole fleet


def test_advice_names_the_agent_and_says_when_a_person_must_look() -> None:
    plain = improvement_recommendations(outcome())
    assert len(plain) == 1 and "a1" in plain[0] and "HEARTBEAT_TIMEOUT_S" in plain[0]
    escalated = improvement_recommendations(outcome(escalated=True, failure_type="security_violation"))
    assert "hive auth agent" in escalated[0] and "aggregate=system&id=inc-1" in escalated[1]
    waiting = improvement_recommendations(outcome(acted=False), times_opened=3)
    assert "reassign is its plan" in waiting[1] and "opened 3 times" in waiting[2]


def test_an_action_names_each_task_once() -> None:
    assert affected_tasks(["t2", "t1", "t2"]) == ("t2", "t1")


def test_a_component_is_as_healthy_as_the_least_ready_service_it_needs() -> None:
    ok = [{"status": "ok"}]
    everything = {name: ok for name in ("router", "balancer", "recovery", "workflow", "gateway")}
    assert set(component_states(everything).values()) == {"healthy"}
    states = component_states({**everything, "balancer": [{"status": "starting"}], "router": []})
    assert states["orchestration_engine"] == "starting"
    assert states["task_router"] == "missing" and states["persona_system"] == "missing"
    assert states["workflow_engine"] == "healthy"
