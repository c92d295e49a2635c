"""What a failure report's answer says beyond the action: its figures, its reach, and advice.

The specification's failure/handle answer carries ``recovery_metrics``, ``system_impact`` and
``improvement_recommendations``. They are computed here from what recovery did and the gateway's
view of the fleet after it, without I/O, so each rule is testable on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec

from shared.domain.fleet import AgentView, TaskView


class RecoveryMetricsOut(msgspec.Struct, kw_only=True):
    """How the recovery went, in numbers."""

    handled_in_ms: float | None
    """From the request to recovery's action, as this gateway saw it (None: not acted yet)."""
    since_failure_ms: float | None
    """From the reported ``timestamp`` of the failure to recovery's action (None without either)."""
    actions_taken: int
    tasks_moved: int
    """Attempts taken from the failed agent (or stopped) and sent back to the queue."""
    escalated: bool


class SystemImpactOut(msgspec.Struct, kw_only=True):
    """What the failure touched, and what the fleet has left."""

    affected_agents: list[str]
    affected_tasks: list[str]
    affected_workflows: list[str]
    """Workflows one of the affected tasks belongs to."""
    capacity_lost: int
    """Slots of the affected agent no longer offered (it is not active any more)."""
    active_agents: int
    fleet_capacity: int
    """Slots of the active agents."""
    fleet_load: float
    """Attempts in flight over ``fleet_capacity`` (0 when there is none)."""
    level: str
    """none, low, medium or high: how much of the fleet's capacity the failure took."""


@dataclass(frozen=True)
class Outcome:
    """What recovery did about one report (or the strategy it will follow, not acted yet)."""

    incident_id: str
    failure_type: str
    severity: str
    strategy: str
    acted: bool
    escalated: bool
    actions: int
    agent_id: str | None
    task_ids: tuple[str, ...]


def recovery_metrics(
    outcome: Outcome, requested_ts: float, answered_ts: float, occurred_ts: float | None
) -> RecoveryMetricsOut:
    """The answer's figures: times only when recovery acted (an unacted report has none)."""
    handled = round((answered_ts - requested_ts) * 1000, 1) if outcome.acted else None
    since = (
        round(max(0.0, answered_ts - occurred_ts) * 1000, 1)
        if outcome.acted and occurred_ts is not None
        else None
    )
    return RecoveryMetricsOut(
        handled_in_ms=handled,
        since_failure_ms=since,
        actions_taken=outcome.actions if outcome.acted else 0,
        tasks_moved=len(outcome.task_ids),
        escalated=outcome.escalated,
    )


def system_impact(
    outcome: Outcome, agents: Mapping[str, AgentView], tasks: Mapping[str, TaskView]
) -> SystemImpactOut:
    """The reach of the failure from the fleet as it is after recovery acted."""
    active = [agent for agent in agents.values() if agent.status == "active"]
    capacity = sum(agent.capacity for agent in active)
    in_flight = sum(len(agent.in_flight) for agent in active)
    victim = agents.get(outcome.agent_id) if outcome.agent_id else None
    lost = victim.capacity if victim is not None and victim.status != "active" else 0
    workflows = {
        task.spec.workflow_id
        for task_id in outcome.task_ids
        if (task := tasks.get(task_id)) is not None and task.spec.workflow_id
    }
    return SystemImpactOut(
        affected_agents=[outcome.agent_id] if outcome.agent_id else [],
        affected_tasks=list(outcome.task_ids),
        affected_workflows=sorted(workflows),
        capacity_lost=lost,
        active_agents=len(active),
        fleet_capacity=capacity,
        fleet_load=round(in_flight / capacity, 4) if capacity else 0.0,
        level=impact_level(lost, capacity + lost, len(outcome.task_ids)),
    )


def impact_level(capacity_lost: int, capacity_before: int, tasks_moved: int) -> str:
    """none: nothing lost or moved; high: a quarter of the slots or more gone, or no slot left."""
    if capacity_lost == 0 and tasks_moved == 0:
        return "none"
    if capacity_before and capacity_lost == capacity_before:
        return "high"
    share = capacity_lost / capacity_before if capacity_before else 0.0
    if share >= 0.25:
        return "high"
    if share >= 0.1 or tasks_moved >= 5:
        return "medium"
    return "low"


ADVICE: dict[str, str] = {
    "agent_unresponsive": "Check the host and network of agent {agent}: it stopped heartbeating; "
    "if it is often slow rather than dead, raise HEARTBEAT_TIMEOUT_S.",
    "agent_stalled": "Agent {agent} heartbeats but stopped reading its assignments: look for a "
    "blocked event loop or a stuck consumer in it (STALL_AFTER_S sets how long Hive waits).",
    "task_timeout": "Tasks ran past their timeout on {agent}: raise the task's timeout_s or its "
    "estimated_duration_s, or give the agent fewer slots.",
    "deadline_exceeded": "Work missed its deadline: submit it earlier, with a higher priority, or "
    "add agents of its capability (see GET /api/v1/orchestration/metrics' scale recommendations).",
    "agent_error": "Agent {agent} reported errors: read its attempt errors with "
    "GET /api/v1/events?aggregate=agent&id={agent}; its circuit breaker opens if they go on.",
    "resource_exhaustion": "Agent {agent} ran out of a resource: lower its capacity or give its "
    "host more memory or CPU.",
    "network_partition": "The network between agent {agent} and NATS failed: check the route; the "
    "agent's work was moved so nothing waits on it.",
    "performance_degradation": "Agent {agent} got slower or worse: compare its recent qualities "
    "and durations in GET /api/v1/agents/{agent}; routing already weighs them.",
    "dependency_failure": "A service the work depends on failed: retries back off; check that "
    "dependency before reopening the flow.",
    "security_violation": "Agent {agent} broke a rule: it stays quarantined until someone looks; "
    "rotate its credentials (hive auth agent) before it comes back.",
    "system_overload": "The fleet is overloaded: add agents (hive agent ...) or shed load; the "
    "queue and the scale recommendations in the metrics say where.",
    "rebalanced": "The balancer moved work off agent {agent}: nothing to fix unless it recurs.",
    "agent_restarted": "Agent {agent} restarted: if it recurs, read its own logs for the crash.",
}


def improvement_recommendations(outcome: Outcome, times_opened: int = 0) -> list[str]:
    """Advice on avoiding the failure next time, most specific first."""
    agent = outcome.agent_id or "the agent"
    advice: list[str] = []
    known = ADVICE.get(outcome.failure_type)
    if known:
        advice.append(known.format(agent=agent))
    if outcome.escalated:
        advice.append(
            "Recovery escalated this failure: a person must decide; its story is at "
            f"GET /api/v1/events?aggregate=system&id={outcome.incident_id}."
        )
    if not outcome.acted:
        advice.append(
            f"Recovery had not acted when this answer was given ({outcome.strategy} is its plan): "
            f"GET /api/v1/events?aggregate=system&id={outcome.incident_id} shows when it does."
        )
    if times_opened >= 2:
        advice.append(
            f"{agent}'s circuit breaker opened {times_opened} times: consider deregistering it or "
            "lowering its capacity."
        )
    return advice


def affected_tasks(task_ids: Iterable[str]) -> tuple[str, ...]:
    """The tasks of an action, each once, in the order recovery named them."""
    return tuple(dict.fromkeys(task_ids))
